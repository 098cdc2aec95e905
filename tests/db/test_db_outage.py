"""Every database user of the daemon survives the database going away and coming back: PostgreSQL restarted
under load (a private cluster, never the machine's shared server), and a full disk under SQLite."""
from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import time

import pytest

from screenpop.daemon.auth import tokens
from screenpop.daemon.customers.lookup import add_phone
from screenpop.daemon.record.writer import Writer
from screenpop.db.database import DatabaseUnreachable, guarded, open_database, outage
from screenpop.db.migrations import migrate
from screenpop.db.models import Call, Customer, utcnow

from pgserver import PrivateServer
from sse import Stream
from support import RULES, daemon, free_port, http_ready, simulator, staff, wait_for, write_config

CUSTOMER_NUMBER = "+3545551234"


@pytest.fixture
def private_pg():
    """A PostgreSQL of this test's own, so restarting it never disturbs the machine's shared server."""
    server = PrivateServer()
    yield server
    server.remove()


@pytest.mark.postgres
def test_postgresql_restart_under_load_every_database_user_comes_back(tmp_path, private_pg):
    db = open_database(private_pg.url)
    migrate(db)
    customer = Customer.create(name="Jón Jónsson", company="Norðurljós ehf.", category="vip")
    add_phone(customer, CUSTOMER_NUMBER, "mobile", RULES)
    _, admin = tokens.create(None, role="admin")  # an open stream: the push hub checks its token every second
    db.close()
    numbers = tmp_path / "numbers.txt"
    numbers.write_text(CUSTOMER_NUMBER + "\n", encoding="utf-8")
    esl_port, http_port = free_port(), free_port()
    sim = simulator(tmp_path, esl_port, "--generate", "--rate", "3", "--speed", "1", "--numbers", str(numbers),
                    "--extensions", "1001-1004", "--mix", "inbound_answered=1", "--seed", "3")
    config = write_config(tmp_path / "daemon.toml", esl_port, private_pg.url, http_port=http_port,
                          http="heartbeat = 0.5")
    config.write_text(config.read_text(encoding="utf-8").replace("[database]\n", "[database]\nemployee_reload = 0.5\n"),
                      encoding="utf-8")
    d = daemon(tmp_path, config)
    tray = None
    try:
        wait_for(lambda: http_ready(f"http://127.0.0.1:{http_port}") or d.popen.poll() is not None, 20, "daemon HTTP")
        tray = Stream(http_port, admin)
        wait_for(lambda: sum(card["customer"] is not None for card in tray.cards) >= 3, 30, "cards with the customer")

        private_pg.stop()
        wait_for(lambda: "database write failed" in d.log(), 30, "the daemon to notice the outage")
        for _ in range(3):  # a tray (re)connecting meanwhile: its token cannot be checked
            refused = Stream(http_port, admin)
            refused.close()
            assert refused.status == 503
        time.sleep(3)  # calls go on meanwhile: lookups, pops from memory, revocation checks, employee reloads
        private_pg.start()
        wait_for(lambda: "writes work again" in d.log(), 60, "the writes queued meanwhile")
        back = utcnow()  # lookups start again with the writes (none while the writer cannot write)

        db = open_database(private_pg.url)
        after = lambda: list(Call.select().where(Call.started_at > back + dt.timedelta(seconds=1)))  # noqa: E731
        wait_for(lambda: len(after()) >= 6, 60, "calls after the restart")
        assert [c.customer_id for c in after()] == [customer.id] * len(after()), d.log()[-3000:]
        db.close()
        again = Stream(http_port, admin, last_event_id=0)  # token check and replay: the push hub's connection
        again.close()
        assert again.status == 200

        employees = tmp_path / "employees.csv"
        employees.write_text("extension,name\n4321,Nýráðin Starfsdóttir\n", encoding="utf-8")
        subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", "import", "--config", str(config), "employees",
                        str(employees)], check=True, capture_output=True, timeout=60)
        wait_for(lambda: "employee extensions changed" in d.log(), 30, "the reload to pick the new employee up")
        assert d.terminate() == 0, d.log()[-3000:]
        log = d.log()
    finally:
        if tray is not None:
            tray.close()
        d.close()
        sim.close()
    assert log.count("database unreachable") == 1, log
    assert log.count("database reachable again") == 1, log
    for noise in ("customer lookup failed", "could not check for revoked tokens", "could not reload employees",
                  "database error"):
        assert noise not in log, log


def test_a_long_lived_greenlet_reconnects_after_a_postgresql_restart(private_pg, caplog):
    """The unit under the daemon test: a step on a connection the restart ended works, and an outage is one line."""
    db = open_database(private_pg.url)
    try:
        assert guarded(db, lambda: db.execute_sql("SELECT 1").fetchone()) == (1,)
        private_pg.stop()
        private_pg.start()
        assert guarded(db, lambda: db.execute_sql("SELECT 2").fetchone()) == (2,), "the dead connection is replaced"
        private_pg.stop()
        with caplog.at_level(logging.INFO, logger="screenpop.database"):
            for _ in range(3):
                with pytest.raises(DatabaseUnreachable):
                    guarded(db, lambda: db.execute_sql("SELECT 3").fetchone())
            private_pg.start()
            assert guarded(db, lambda: db.execute_sql("SELECT 4").fetchone()) == (4,)
        lines = [r.getMessage() for r in caplog.records if r.name == "screenpop.database"]
        assert [line.split(":")[0].split(" after")[0] for line in lines] == ["database unreachable",
                                                                            "database reachable again"], lines
        assert not outage.down
    finally:
        db.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real full disk (ENOSPC), unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({getattr(exc, 'stderr', b'').decode().strip() or exc})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_under_sqlite_is_logged_as_such_and_everything_is_stored_once_there_is_room(small_disk, caplog):
    import gevent

    from screenpop.daemon.calls.tracker import CallState

    path = small_disk / "screenpop.db"
    db = open_database(f"sqlite:///{path}")
    migrate(db)
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164)
    runner = gevent.spawn(writer.run)
    queued = 0
    with caplog.at_level(logging.ERROR, logger="screenpop.writer"):
        while not writer.stalled and queued < 2000:
            call = CallState(uuid=f"full-{queued}", a_leg=None, started_at=utcnow())
            call.direction, call.external_number, call.external_name = "INCOMING", CUSTOMER_NUMBER, "Jón " * 500
            writer.queue_pop(call, "1001", "ringing", utcnow(), CUSTOMER_NUMBER, call.external_name)
            queued += 1
            gevent.sleep(0.01)
        assert writer.stalled, "the writes never filled the disk"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "disk full" in errors[0] and str(path) in errors[0], errors
    assert "cannot rollback" not in errors[0]
    filler.unlink()
    with caplog.at_level(logging.DEBUG, logger="screenpop.writer"):
        deadline = time.monotonic() + 60
        while writer.stalled and time.monotonic() < deadline:
            gevent.sleep(0.1)
        assert not writer.stalled, "the queued writes once there is room: " + caplog.text[-2000:]
    assert writer.stop(timeout=30)
    runner.join(timeout=10)
    db.close()
    db = open_database(f"sqlite:///{path}")
    assert Call.select().count() == queued
    db.close()
