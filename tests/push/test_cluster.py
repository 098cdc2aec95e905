"""Several daemons on one PostgreSQL (docs/cluster.md), with real processes: simulators as FreeSWITCH nodes,
daemons, SSE trays, and PostgreSQL itself (through a TCP proxy the test can cut, for the outage)."""
from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import gevent
import psycopg
import pytest

from screenpop.daemon.auth import tokens
from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import CallTracker
from screenpop.daemon.cluster import Election
from screenpop.daemon.push import fanout
from screenpop.daemon.record.pops import POP_COLUMNS, PopRow
from screenpop.daemon.push.fanout import Listener, Publisher
from screenpop.daemon.record.writer import Writer
from screenpop.daemon.reports.callrecords import call_records
from screenpop.db.database import open_database, pg_session
from screenpop.db.migrations import migrate
from screenpop.db.models import Call, CallEvent
from screenpop.db.numbers import NumberRules
from screenpop.simulator.capture import read_events

from sse import Stream
from pgserver import PrivateServer
from support import CAPTURES, SLACK, Proxy, Started, daemon, free_port, serving, simulator, staff, wait_for
from support import write_config

pytestmark = pytest.mark.postgres


class Cluster(Started):
    """Simulators, daemons and streams of one test, all closed at the end."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        super().__init__()
        self.tmp = tmp
        self.db_url = db_url

    def simulate(self, name: str, *args: str) -> tuple[int, object]:
        port = free_port()
        return port, self.keep(simulator(self.tmp, port, *args, name=name))

    def daemon(self, name: str, node: str, esl_port: int, db_url: str | None = None):
        http_port = free_port()
        path = write_config(self.tmp / f"{name}.toml", esl_port, db_url or self.db_url, http_port=http_port,
                            http="heartbeat = 0.5")
        path.write_text(f'node = "{node}"\n' + path.read_text(encoding="utf-8"), encoding="utf-8")
        d = self.keep(daemon(self.tmp, path, name=name))
        d.http_port = http_port
        return serving(d, f"http://127.0.0.1:{http_port}")

    def stream(self, d, token: str, **kwargs) -> Stream:
        return self.keep(Stream(d.http_port, token, **kwargs))


@pytest.fixture
def cluster(tmp_path, pg_url, pg_db):
    with contextlib.closing(Cluster(tmp_path, pg_url)) as c:
        yield c


def stored(extension: str | None = None) -> list[tuple[int, str, str, str]]:
    """(id, uuid, extension, event) of the stored pops, in id order."""
    q = CallEvent.select(CallEvent.id, CallEvent.uuid, CallEvent.extension, CallEvent.event).order_by(CallEvent.id)
    if extension:
        q = q.where(CallEvent.extension == extension)
    return list(q.tuples())


def settled(*procs) -> None:
    for p in procs:
        assert p.wait(60) == 0, p.log()


# ---- fan-out: a tray on either daemon gets its extension's pops from both nodes --------------------------


def test_trays_get_pops_from_both_nodes_and_replay_on_either_daemon(cluster, pg_db):
    _, operator = tokens.create("1001")
    _, admin = tokens.create(None, role="admin")
    gen = ("--generate", "--calls", "24", "--rate", "8", "--speed", "4", "--extensions", "1001-1003", "--linger", "1")
    port1, sim1 = cluster.simulate("sim1", *gen, "--seed", "1")
    port2, sim2 = cluster.simulate("sim2", *gen, "--seed", "2")
    d1 = cluster.daemon("daemon1", "fs1", port1)
    d2 = cluster.daemon("daemon2", "fs2", port2)
    on1 = cluster.stream(d1, operator, last_event_id=0)  # calls start as soon as a daemon connects
    on2 = cluster.stream(d2, operator, last_event_id=0)
    everything = cluster.stream(d2, admin, last_event_id=0)
    wait_for(lambda: len(on1.ids) >= 6, 30, "the first pops on daemon 1")
    moved = on1.ids[-1]
    on1.close()  # the tray moves to the other daemon mid-run, resuming after the last pop it had
    resumed = cluster.stream(d2, operator, last_event_id=moved)
    settled(sim1, sim2)
    want = stored("1001")
    nodes = {r["uuid"]: r["node"] for r in call_records()}
    assert {nodes[uuid] for _, uuid, _, _ in want} == {"fs1", "fs2"}, "pops of 1001 from calls on both nodes"
    wait_for(lambda: len(on2.ids) >= len(want) and len(everything.ids) >= len(stored()), 15, "every pop on daemon 2")
    time.sleep(1.0)  # anything doubled would arrive meanwhile
    assert on2.ids == [i for i, *_ in want], "daemon 2's tray: every pop of 1001 once, in id order"
    assert everything.ids == [i for i, *_ in stored()]
    assert [(c["call_uuid"], c["event"]) for c in on2.cards] == [(u, e) for _, u, _, e in want]
    before = [i for i in on1.ids if i <= moved]
    assert before + resumed.ids == [i for i, *_ in want], "moved tray: nothing lost, nothing twice across daemons"
    late = cluster.stream(d1, operator, last_event_id=want[len(want) // 2][0])
    late.wait_count(len(want) - len(want) // 2 - 1)
    assert late.ids == [i for i, *_ in want][len(want) // 2 + 1:]


def test_ids_follow_commit_order_across_writers(pg_url, pg_db):
    """The order lock: a writer that starts inserting while another holds it gets higher ids and commits later."""
    first, second = open_database(pg_url), open_database(pg_url)
    pub = Publisher(pg_db.execute_sql("SELECT current_schema()").fetchone()[0])
    pg_db.execute_sql("INSERT INTO call (uuid, direction, started_at, node, matches, missed) "
                      "VALUES ('u', 'INCOMING', now(), 'x', 0, false)")
    call_id = pg_db.execute_sql("SELECT id FROM call WHERE uuid = 'u'").fetchone()[0]
    insert = ("INSERT INTO call_event (call_id, uuid, extension, event, direction, peer_number, peer_name, "
              "matches, \"at\") VALUES (%s, 'u', '1001', %s, 'INCOMING', '', '', 0, now()) RETURNING id")
    got: dict[str, int] = {}

    def late_writer() -> None:
        with second.atomic():
            second.execute_sql(*pub.order_lock())
            got["late"] = second.execute_sql(insert, (call_id, "answered")).fetchone()[0]
        second.close()

    with first.atomic():
        first.execute_sql(*pub.order_lock())
        got["early"] = first.execute_sql(insert, (call_id, "ringing")).fetchone()[0]
        thread = threading.Thread(target=late_writer)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and "late" not in got, "the second writer waits for the first to commit"
    thread.join(10)
    first.close()
    assert got["late"] > got["early"]
    assert [e for _, _, _, e in stored()] == ["ringing", "answered"]


def test_the_listener_pushes_the_pops_a_notification_carries_and_reads_the_table_otherwise(pg_url, pg_db,
                                                                                              monkeypatch, caplog):
    """A notification carries its batch's pops; they are pushed without a query when they follow the watermark.
    A gap (a rolled-back batch's ids), an id-only payload (a batch too big for a notification) or a payload that
    is not pops sends the listener to the table instead, and every pop arrives once, in order, exactly."""
    monkeypatch.setattr(fanout, "IDLE_CHECK_SECONDS", 30.0)  # no quiet-second reads during the test
    schema = pg_db.execute_sql("SELECT current_schema()").fetchone()[0]
    pub = Publisher(schema)
    pg_db.execute_sql("INSERT INTO call (uuid, direction, started_at, node, matches, missed) "
                      "VALUES ('u', 'INCOMING', now(), 'x', 0, false)")
    call_id = pg_db.execute_sql("SELECT id FROM call WHERE uuid = 'u'").fetchone()[0]
    got: list = []
    listener = Listener(pg_db, schema, got.extend)
    listener.watermark = 0
    reads = []
    catch_up = listener._catch_up
    monkeypatch.setattr(listener, "_catch_up", lambda conn: (reads.append(listener.watermark), catch_up(conn)))
    conn = pg_session(pg_db)
    conn.execute(f'LISTEN "{pub.channel}"')

    def follow() -> None:  # the listener's loop, in a thread of its own (this process is not monkey-patched)
        with contextlib.suppress(psycopg.Error):
            listener._follow(conn)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    wait_for(lambda: reads, timeout=10, what="the listener's first read")
    hostile = 'Ev"il\\ <b>x</b>\u2028 \U0001F600 %0A'

    def write(count: int, name: str = hostile) -> None:
        insert = (f"INSERT INTO call_event (call_id, uuid, extension, event, direction, peer_number, "
                  f"peer_name, matches, \"at\") SELECT %s, 'u', '1001', 'ringing', 'INCOMING', '+3545554000', "
                  f"%s, 0, now() FROM generate_series(1, %s) ORDER BY 1 RETURNING {POP_COLUMNS}")
        with pg_db.atomic():
            pg_db.execute_sql(*pub.order_lock())
            pg_db.execute_sql(pub.announce(insert), (call_id, name, count, pub.channel))

    def arrived(total: int) -> None:
        wait_for(lambda: len(got) >= total, timeout=10, what=f"{total} pops pushed")
        gevent.sleep(0.2)
        table = [PopRow(*row) for row in pg_db.execute_sql(f"SELECT {POP_COLUMNS} FROM call_event ORDER BY id")]
        assert got == table, "every pop once, in id order, exactly as stored"

    write(3)
    arrived(3)
    assert len(reads) == 1 and got[0].name == hostile, "carried by the notification: no read"
    pg_db.execute_sql("SELECT nextval(pg_get_serial_sequence('call_event', 'id'))")  # a rolled-back batch's id
    write(1)
    arrived(4)
    assert len(reads) == 2, "a gap before the carried pops: the table is read"
    write(60, "x" * 200)  # too big for a notification: only its highest id is sent
    arrived(64)
    assert len(reads) == 3
    write(1)
    arrived(65)
    assert len(reads) == 3
    forged = (f'[[{listener.watermark + 1}.0, "ringing", "u", "INCOMING", "2026-11-27T08:00:00", "1001", "", '
              '"forged", null, 0]]')  # a pop in every field, and next in line, but its id is not an integer
    pg_db.execute_sql("SELECT pg_notify(%s, %s)", (pub.channel, forged))
    wait_for(lambda: len(reads) > 3 or len(got) > 65, timeout=10, what="the forged notification handled")
    assert len(got) == 65 and len(reads) == 4, "refused, and the table read instead"
    for payload in ('{"x": 1}', '[["a"]]', '[[1.5, "e", "u", "d", "2026-01-01"]]', "[["):
        pg_db.execute_sql("SELECT pg_notify(%s, %s)", (pub.channel, payload))
    write(1)
    arrived(66)
    assert "not a list of pops" in caplog.text
    pg_db.execute_sql("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    thread.join(10)
    assert not thread.is_alive()
    conn.close()


def test_a_notification_gives_each_pop_time_all_six_digits_of_microseconds(pg_db):
    """JSON cuts a timestamp's trailing zeros ("...:00.5"), which Python 3.10's fromisoformat refuses: the carried
    pops would be dropped for a table read. Every time in a notification has six digits after the second."""
    pub = Publisher(pg_db.execute_sql("SELECT current_schema()").fetchone()[0])
    pg_db.execute_sql("INSERT INTO call (uuid, direction, started_at, node, matches, missed) "
                      "VALUES ('u', 'INCOMING', now(), 'x', 0, false)")
    conn = pg_session(pg_db)
    conn.execute(f'LISTEN "{pub.channel}"')
    insert = (f"INSERT INTO call_event (call_id, uuid, extension, event, direction, peer_number, peer_name, "
              f"matches, \"at\") SELECT id, 'u', '1001', 'ringing', 'INCOMING', '', '', 0, t FROM call, "
              f"unnest(%s::timestamp[]) AS t ORDER BY t RETURNING {POP_COLUMNS}")
    with pg_db.atomic():
        pg_db.execute_sql(*pub.order_lock())
        pg_db.execute_sql(pub.announce(insert), (["2026-11-27 08:00:00", "2026-11-27 08:00:00.5",
                                                   "2026-11-27 08:00:00.12"], pub.channel))
    notes = list(conn.notifies(timeout=5, stop_after=1))
    conn.close()
    assert [row[4] for row in json.loads(notes[0].payload)] == [
        "2026-11-27T08:00:00.000000", "2026-11-27T08:00:00.120000", "2026-11-27T08:00:00.500000"]


def test_a_writer_whose_lock_session_is_gone_writes_nothing(pg_url, pg_db):
    """The fence, checked in the database in the batch's one round trip: once the session holding the node is
    gone, the whole batch fails and nothing of it is stored; a writer that holds the node writes."""
    db = open_database(pg_url)
    schema = db.execute_sql("SELECT current_schema()").fetchone()[0]
    election = Election(db, schema, "fs1", poll_interval=0.1, hang_timeout=5.0, on_acquired=lambda: None,
                        on_lost=lambda: None)
    election.start()
    deadline = time.monotonic() + 10 * SLACK
    while election.pid is None and time.monotonic() < deadline:
        gevent.sleep(0.05)  # the election is a greenlet
    assert election.pid is not None
    numbers = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)
    writer = Writer(db, staff=staff(), e164=lambda raw: numbers.classify(raw).e164, node="fs1", fence=election,
                    publisher=Publisher(schema))
    tracker = CallTracker(DirectionRules(frozenset({"external"}), frozenset({"public"}), numbers.is_extension), writer)
    events = read_events(CAPTURES / "ring-group-users.plain.esl")
    first = 0
    while not writer.pending:
        tracker.handle(events[first][1])
        first += 1
    writer.flush_once()
    assert Call.select().count() == 1
    pops = CallEvent.select().count()
    pid = election.pid
    election.stop()  # its greenlet would otherwise notice the loss and lock the node again under a new pid
    pg_db.execute_sql("SELECT pg_terminate_backend(%s)", (pid,))
    election.pid = pid  # as if the loss were not noticed yet: the database must refuse
    for _, event in events[first:]:
        tracker.handle(event)
    with pytest.raises(Exception, match="no longer holds its node"):
        writer.flush_once()
    assert CallEvent.select().count() == pops and Call.get().ended_at is None, "nothing of the failed batch is stored"
    gevent.sleep(0)
    db.close()


# ---- redundancy: two daemons on one node, the active one killed mid-call --------------------------------


@pytest.mark.parametrize("failure", ["killed", "hung"])
def test_standby_takes_over_mid_call(cluster, pg_db, failure):
    """kill -9, or SIGSTOP for longer than hang_timeout (then SIGCONT: it finds the node taken and exits)."""
    _, operator = tokens.create("1001")
    # at half speed the call talks 10 s after the answer: the hung case's takeover (hang_timeout, 3 s, then a
    # reconnect and a resync) must end before the hangup for the survivor to see how the call ended
    port, sim = cluster.simulate("sim", "--replay", str(CAPTURES / "inbound-answered.plain.esl"), "--speed", "0.5",
                                 "--linger", "1")
    active = cluster.daemon("active", "fs1", port)
    wait_for(lambda: "records node" in active.log(), 10, "the first daemon to hold the node")
    standby = cluster.daemon("standby", "fs1", port)
    wait_for(lambda: "standby for node" in standby.log(), 10, "the second daemon to wait")
    tray = cluster.stream(standby, operator, last_event_id=0)
    wait_for(lambda: CallEvent.select().where(CallEvent.event == "answered").exists(), 20, "the answered pop")
    if failure == "killed":
        active.kill()
    else:
        active.popen.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    wait_for(lambda: "records node" in standby.log(), 30, "the standby to take over")
    print(f"takeover noticed {time.monotonic() - stopped:.2f} s after the active daemon was {failure}")
    if failure == "hung":
        active.popen.send_signal(signal.SIGCONT)
        assert active.wait(15) == 1, active.log()
        assert "took node 'fs1' over" in active.log()
    assert sim.wait(30) == 0, sim.log()
    wait_for(lambda: len(tray.ids) >= 3, 60, "the pops on the survivor")  # room for a busy machine
    time.sleep(0.5)
    assert standby.terminate() == 0, standby.log()
    (record,) = call_records()
    assert record["ended_at"] is not None and record["hangup_cause"] == "NORMAL_CLEARING"
    assert record["answered_by"] == "1001" and record["direction"] == "INCOMING" and record["node"] == "fs1"
    assert [(e, x) for _, _, x, e in stored()] == [("ringing", "1001"), ("answered", "1001"), ("ended", "1001")]
    assert [c["event"] for c in tray.cards] == ["ringing", "answered", "ended"], "each pop once on the survivor"
    assert tray.ids == [i for i, *_ in stored()]


# ---- PostgreSQL out of reach: pops from memory, writes queued, stored once when it is back --------------


def test_database_outage_pops_go_on_and_everything_is_stored_once(cluster, pg_url, pg_db, tmp_path):
    parts = urlsplit(pg_url)
    proxy = Proxy((parts.hostname, parts.port or 5432))
    proxy.start()
    via_proxy = re.sub(r"@[^/]+/", f"@127.0.0.1:{proxy.port}/", pg_url)
    _, admin = tokens.create(None, role="admin")
    expect = tmp_path / "expect.jsonl"
    port, sim = cluster.simulate("sim", "--generate", "--calls", "40", "--rate", "4", "--speed", "1", "--seed", "7",
                                 "--extensions", "1001-1004", "--expect", str(expect), "--linger", "1")
    d = cluster.daemon("daemon", "fs1", port, db_url=via_proxy)
    try:
        tray = cluster.stream(d, admin, last_event_id=0)  # calls start as soon as the daemon connects
        wait_for(lambda: len(tray.messages) >= 5, 20, "pops before the outage")
        proxy.cut()
        wait_for(lambda: "database write failed" in d.log(), 20, "the daemon to notice the outage")
        wait_for(lambda: sum(c["id"] is None for c in tray.cards) >= 3, 10,
                 "pops from memory, without an id yet, while the database is away")
        proxy.up = True
        assert sim.wait(60) == 0, sim.log()
        wait_for(lambda: "writes work again" in d.log(), 30, "the queued writes")
        assert d.terminate() == 0, d.log()
    finally:
        proxy.close()
    wanted = [json.loads(line) for line in expect.read_text(encoding="utf-8").splitlines()]
    records = {r["uuid"]: r for r in call_records()}
    assert sorted(records) == sorted(w["a_leg"] for w in wanted), "every call stored once"
    for w in wanted:
        assert records[w["a_leg"]]["answered_by"] == w["call"]["answered_by"], w["scenario"]
    rows = stored()
    want_pops = sorted((w["a_leg"], p["extension"], p["event"]) for w in wanted for p in w["pops"])
    assert sorted((u, x, e) for _, u, x, e in rows) == want_pops, "every pop stored exactly once"
    shown = [(c["call_uuid"], c["extension"], c["event"]) for c in tray.cards]
    assert sorted(shown) == want_pops, "the tray showed every pop once, outage or not"
    id_lines = [int(line[4:]) for line in tray.raw_lines if line.startswith("id: ")]
    assert id_lines == [i for i, *_ in rows], "every stored id reached the tray once, in order"


@pytest.fixture
def private_pg():
    """A PostgreSQL of this test's own, so stopping it never disturbs the machine's shared server."""
    server = PrivateServer()
    yield server
    server.remove()


def test_postgresql_restart_mid_call_loses_and_doubles_nothing(tmp_path, private_pg):
    db = open_database(private_pg.url)
    migrate(db)
    _, operator = tokens.create("1001")
    db.close()
    c = Cluster(tmp_path, private_pg.url)
    try:
        port, sim = c.simulate("sim", "--replay", str(CAPTURES / "inbound-answered.plain.esl"), "--speed", "1",
                               "--linger", "1")
        d = c.daemon("daemon", "fs1", port)
        tray = c.stream(d, operator, last_event_id=0)
        tray.wait_count(1)
        private_pg.stop()
        wait_for(lambda: len(tray.messages) >= 2, 10, "the answered pop, from memory")
        private_pg.start()
        assert sim.wait(30) == 0, sim.log()
        wait_for(lambda: "writes work again" in d.log(), 20, "the queued writes")
        wait_for(lambda: sum(line.startswith("id: ") for line in tray.raw_lines) >= 3, 10, "every id on the tray")
        assert d.terminate() == 0, d.log()
    finally:
        c.close()
    db = open_database(private_pg.url)
    (record,) = call_records()
    assert record["answered_by"] == "1001" and record["hangup_cause"] == "NORMAL_CLEARING"
    rows = stored()
    assert [e for *_, e in rows] == ["ringing", "answered", "ended"]
    assert [card["event"] for card in tray.cards] == ["ringing", "answered", "ended"]
    assert [int(line[4:]) for line in tray.raw_lines if line.startswith("id: ")] == [i for i, *_ in rows]
    db.close()


# ---- the lock session killed under a daemon that nobody replaces: it regains its node and loses nothing --------


def test_a_daemon_stopped_while_its_lock_session_is_gone_writes_everything_once_the_lock_is_back(cluster, pg_db):
    """The lock session's backend killed (as idle_session_timeout does to a hub stalled past hang_timeout) while
    calls run, and the daemon stopped while its writes fail: nobody else took the node, so the same daemon locks
    it again and writes everything queued before it exits (before, the writer gave up at its first failure)."""
    port, sim = cluster.simulate("sim", "--generate", "--calls", "200", "--rate", "8", "--speed", "1", "--seed", "5",
                                 "--extensions", "1001-1004", "--linger", "1")
    d = cluster.daemon("daemon", "fs1", port)
    wait_for(lambda: "records node" in d.log(), 20, "the daemon to hold its node")
    wait_for(lambda: CallEvent.select().count() >= 5, 20, "pops before the lock session is killed")
    schema = pg_db.execute_sql("SELECT current_schema()").fetchone()[0]
    lock_ids = Election(pg_db, schema, "fs1", 1.0, 3.0, on_acquired=lambda: None, on_lost=lambda: None)._lock_ids
    (pid,) = pg_db.execute_sql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                               "classid::bigint = %s AND objid::bigint = %s AND objsubid = 1", lock_ids).fetchone()
    pg_db.execute_sql("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: "database write failed" in d.log(), 20, "a write refused for want of the lock")
    assert d.terminate() == 0, d.log()
    assert "still ours" in d.log() and "could not write" not in d.log(), d.log()
    shown = {(c.uuid, c.extension, c.event) for c in CallEvent.select()}
    assert len(shown) == CallEvent.select().count(), "nothing stored twice"
    sim.kill()
