"""The daemon under systemd's eyes: sd_notify over a real datagram socket, SIGTERM under load, SIGHUP, journald logs.

Each test runs the real daemon as a process against the simulator, with NOTIFY_SOCKET pointing at a socket the
test owns (as systemd's would), and reads what the daemon said there and in its log.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from screenpop.daemon.auth import tokens
from screenpop.daemon.sdnotify import Notifier
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import Call

from sse import Stream
from support import Proc, Proxy, free_port, http_ready, simulator, wait_for, write_config

ESL_PASSWORD = "esl-secret-4f9a2c"


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket; keeps each message with its arrival time."""

    def __init__(self, tmp: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if tmp is None:
            self.name = f"@screenpop-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + self.name[1:])
        else:
            self.name = str(tmp / "notify")
            self.sock.bind(self.name)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.sock.settimeout(0.2)
        self._open = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self._open:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def all(self, key: str | None = None) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return [m for m in self.messages if key is None or key in m[1]]

    def first(self, key: str) -> tuple[float, dict[str, str]] | None:
        found = self.all(key)
        return found[0] if found else None

    def close(self) -> None:
        self._open = False
        self.thread.join(2)
        self.sock.close()


class Run:
    """A simulator port, a database, a config and a daemon started under a notify socket with a watchdog."""

    def __init__(self, tmp: Path, db_url: str, startup_wait: float = 30.0) -> None:
        self.tmp = tmp
        self.db_url = db_url
        self.esl_port = free_port()
        self.http_port = free_port()
        self.notify = NotifySocket()
        self.config = tmp / "screenpop.toml"
        self.write(startup_wait=startup_wait)
        self.procs: list[Proc] = []

    def write(self, startup_wait: float = 30.0, level: str = "info", region: str = "IS") -> None:
        write_config(self.config, self.esl_port, self.db_url, http_port=self.http_port)
        text = self.config.read_text(encoding="utf-8")
        text = text.replace("[freeswitch]\n", f'[freeswitch]\npassword = "{ESL_PASSWORD}"\nstartup_wait = {startup_wait}\n')
        text = text.replace('level = "info"', f'level = "{level}"').replace('default_region = "IS"', f'default_region = "{region}"')
        self.config.write_text(text, encoding="utf-8")

    def start_daemon(self, env: dict[str, str] | None = None) -> Proc:
        env = {"NOTIFY_SOCKET": self.notify.name, "WATCHDOG_USEC": "1000000", **(env or {})}  # pings every 0.5 s
        daemon = Proc(["-m", "screenpop.daemon.cli", "daemon", "--config", str(self.config)], self.tmp / "daemon.log", env=env)
        self.procs.append(daemon)
        return daemon

    def simulate(self, *args: str) -> Proc:
        sim = simulator(self.tmp, self.esl_port, "--password", ESL_PASSWORD, *args)
        self.procs.append(sim)
        return sim

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def close(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                os.kill(p.popen.pid, signal.SIGCONT)
            p.close()
        self.notify.close()


@pytest.fixture
def run(tmp_path, sqlite_url):
    with closing(Run(tmp_path, sqlite_url)) as r:
        yield r


def test_ready_only_once_http_answers_and_freeswitch_is_subscribed_then_watchdog_and_stopping(run):
    d = run.start_daemon()
    wait_for(lambda: http_ready(run.url) or d.popen.poll() is not None, 15, "the daemon's HTTP server")
    assert d.popen.poll() is None, d.log()
    wait_for(lambda: any("waiting for FreeSWITCH" in m["STATUS"] for _, m in run.notify.all("STATUS")), 5,
             "STATUS to say it waits for FreeSWITCH")
    assert run.notify.first("READY") is None, "READY before FreeSWITCH is there"
    sim = run.simulate()
    wait_for(lambda: run.notify.first("READY"), 15, "READY=1")
    ready_at, ready = run.notify.first("READY")
    assert ready["READY"] == "1" and "connected" in ready["STATUS"], ready
    assert "connected to FreeSWITCH" in d.log()

    time.sleep(2.5)  # the watchdog interval is WATCHDOG_USEC / 2 = 0.5 s
    pings = [at for at, _ in run.notify.all("WATCHDOG") if at > ready_at]
    assert len(pings) >= 3, pings
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert min(gaps) >= 0.4, gaps  # paced by the interval, not a flood

    assert d.terminate() == 0, d.log()
    stopping = run.notify.first("STOPPING")
    assert stopping and stopping[1]["STOPPING"] == "1" and stopping[1]["STATUS"].startswith("stopping")
    assert sim.popen.poll() is None


def test_a_stalled_process_misses_its_watchdog_pings(run):
    run.simulate()
    d = run.start_daemon()
    wait_for(lambda: run.notify.first("READY") or d.popen.poll() is not None, 15, "READY=1")
    wait_for(lambda: len(run.notify.all("WATCHDOG")) >= 2, 5, "watchdog pings")
    os.kill(d.popen.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    time.sleep(2.0)  # four intervals: systemd (WatchdogSec=1s here) would have killed it
    resumed_at = time.monotonic()
    os.kill(d.popen.pid, signal.SIGCONT)
    assert not [at for at, _ in run.notify.all("WATCHDOG") if stopped_at + 0.2 < at < resumed_at]
    wait_for(lambda: [at for at, _ in run.notify.all("WATCHDOG") if at > resumed_at], 5, "pings after SIGCONT")
    assert d.terminate() == 0, d.log()


def test_freeswitch_down_at_start_reports_ready_after_the_wait_and_says_so(tmp_path, sqlite_url):
    run = Run(tmp_path, sqlite_url, startup_wait=1.0)
    run.write(startup_wait=1.0, level="debug")
    try:
        d = run.start_daemon()
        wait_for(lambda: run.notify.first("READY") or d.popen.poll() is not None, 15, "READY=1")
        _, ready = run.notify.first("READY")
        assert ready["STATUS"].startswith(f"waiting for FreeSWITCH 127.0.0.1:{run.esl_port}"), ready
        assert "reporting ready anyway" in d.log()
        assert http_ready(run.url)
        run.simulate()
        wait_for(lambda: any("connected" in m["STATUS"] and "waiting" not in m["STATUS"]
                             for _, m in run.notify.all("STATUS")), 15, "STATUS to say it is connected")
        assert d.terminate() == 0, d.log()
        assert " DEBUG " in d.log() and ESL_PASSWORD not in d.log()  # not even at debug level
    finally:
        run.close()


def test_a_pending_migration_asks_systemd_for_more_start_time_first(run, monkeypatch):
    from screenpop.db import migrations

    db = open_database(run.db_url)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:-1])
    migrate(db)  # one version behind, as after an upgrade
    monkeypatch.undo()
    db.close()
    run.simulate()
    d = run.start_daemon()
    wait_for(lambda: run.notify.first("READY") or d.popen.poll() is not None, 15, "READY=1")
    extend_at, extend = run.notify.first("EXTEND_TIMEOUT_USEC")
    assert int(extend["EXTEND_TIMEOUT_USEC"]) >= 600 * 1_000_000
    assert "migrating" in run.notify.first("STATUS")[1]["STATUS"] and extend_at < run.notify.first("READY")[0]
    assert "schema migrated to version" in d.log()
    assert d.terminate() == 0, d.log()


def test_sdnotify_paths_abstract_names_and_no_socket(tmp_path):
    for receiver in (NotifySocket(tmp_path), NotifySocket()):
        try:
            n = Notifier({"NOTIFY_SOCKET": receiver.name, "WATCHDOG_USEC": "4000000"})
            assert n.watchdog_interval == 2.0
            n.ready("up\nREADY=0")
            n.status("up READY=0")  # unchanged: not sent again
            n.reloading()
            wait_for(lambda: len(receiver.all()) == 2, 5, "two datagrams")
            (_, first), (_, second) = receiver.all()
            assert first == {"READY": "1", "STATUS": "up READY=0"}  # a line break cannot add a field
            assert second["RELOADING"] == "1" and int(second["MONOTONIC_USEC"]) > 0
        finally:
            receiver.close()
    silent = Notifier({})
    assert not silent.enabled and silent.watchdog_interval is None
    silent.ready("nobody listens")
    assert Notifier({"NOTIFY_SOCKET": "/nonexistent/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval is None


ENDED = re.compile(r"call (\S+) (?:INCOMING|OUTGOING|INTERNAL) ended")


def _journal_env(log_path: Path) -> dict[str, str]:
    """JOURNAL_STREAM as systemd sets it: the device:inode of the stream the daemon's stderr is."""
    log_path.touch()
    st = log_path.stat()
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def run_any(request, tmp_path):
    r = Run(tmp_path, request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    yield r
    r.close()


def test_sigterm_under_load_writes_every_ended_call_closes_streams_and_logs_no_secrets(run_any):
    run = run_any
    db = open_database(run.db_url)
    migrate(db)
    _, admin = tokens.create(None, role="admin")
    _, operator = tokens.create("1001")
    db.close()
    d = run.start_daemon(env=_journal_env(run.tmp / "daemon.log"))
    wait_for(lambda: http_ready(run.url) or d.popen.poll() is not None, 15, "the daemon's HTTP server")
    streams = [Stream(run.http_port, admin), Stream(run.http_port, operator), Stream(run.http_port, admin)]
    run.simulate("--generate", "--rate", "10", "--speed", "4", "--seed", "3", "--extensions", "1001-1004")
    try:
        wait_for(lambda: len(ENDED.findall(d.log())) >= 10, 30, "calls to end")
        assert streams[1].messages and not streams[0].ended.is_set()
        maps = Path(f"/proc/{d.popen.pid}/maps").read_text()
        assert not [line for line in maps.splitlines() if line.split()[1].startswith("rwx")], "MemoryDenyWriteExecute"
        assert d.terminate() == 0, d.log()  # the daemon stops within Proc.terminate's 15 s or the test fails
        for s in streams:
            assert s.ended.wait(5) and not s.error, s.error
    finally:
        for s in streams:
            s.close()
    log = d.log()
    ended_in_log = set(ENDED.findall(log))
    db = open_database(run.db_url)
    ended_in_db = {u for (u,) in Call.select(Call.uuid).where(Call.ended_at.is_null(False)).tuples()}
    db.close()
    assert ended_in_db == ended_in_log

    lines = log.splitlines()
    assert lines and all(re.match(r"<[2-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) screenpop", line) for line in lines), lines[:5]
    assert "<6>INFO screenpop.daemon: stopped" in lines
    stopping = next(i for i, line in enumerate(lines) if "screenpop.daemon: stopping:" in line)
    assert not [line for line in lines[stopping:] if line.startswith(("<4>", "<3>", "<2>"))], "a normal stop warns of nothing"
    for secret in (ESL_PASSWORD, admin, operator):
        assert secret not in log
    from screenpop.simulator.generator import CALLER_NAMES

    assert not [name for name in CALLER_NAMES if name in log]
    assert "+354555" not in log
    for line in lines:  # every line about a call names it by its UUID
        if re.search(r"\bcall\b", line) and "call(s)" not in line:
            assert re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", line), line


def test_sigterm_tracks_every_event_already_read_then_writes_it(run_any):
    """FreeSWITCH sending as fast as the daemon reads: on SIGTERM the daemon says `exit`, and every event that came
    before FreeSWITCH's reply is tracked and written, none dropped from the queue."""
    run = run_any
    d = run.start_daemon()
    wait_for(lambda: http_ready(run.url) or d.popen.poll() is not None, 15, "the daemon's HTTP server")
    sim = run.simulate("--generate", "--calls", "20000", "--rate", "200", "--speed", "0", "--seed", "4")
    wait_for(lambda: len(ENDED.findall(d.log())) >= 200, 60, "calls to end")
    assert d.terminate(timeout=40) == 0, d.log()

    def sent_to() -> list[int]:
        return [int(n) for n in re.findall(r"disconnected \((\d+) events sent\)", sim.log())]

    wait_for(lambda: any(sent_to()), 10, "the simulator to see the daemon go")
    sent = max(sent_to())  # the other client was the test's check that the simulator listens
    counts = re.search(r"closed for the stop: (\d+) event\(s\) received, (\d+) tracked", d.log())
    assert counts, d.log()[-3000:]
    assert (int(counts.group(1)), int(counts.group(2))) == (sent, sent)
    ended_in_log = set(ENDED.findall(d.log()))
    ended_in_db = {c.uuid for c in _calls(run.db_url) if c.ended_at is not None}
    assert ended_in_db == ended_in_log


@pytest.mark.postgres
def test_sigterm_during_a_database_outage_exits_non_zero_and_says_what_was_lost(tmp_path, pg_url):
    """systemd must see a failed stop when calls could not be stored: exit status 1 and an ERROR line."""
    parts = urlsplit(pg_url)
    proxy = Proxy((parts.hostname, parts.port or 5432))
    proxy.start()
    run = Run(tmp_path, re.sub(r"@[^/]+/", f"@127.0.0.1:{proxy.port}/", pg_url))
    try:
        d = run.start_daemon()
        run.simulate("--generate", "--rate", "10", "--speed", "4", "--seed", "3", "--extensions", "1001-1004")
        wait_for(lambda: len(ENDED.findall(d.log())) >= 3 or d.popen.poll() is not None, 30, "calls to end")
        proxy.cut()

        def queued() -> bool:
            return any(not m["STATUS"].endswith(" 0 write(s) queued") for _, m in run.notify.all("STATUS")[-1:])

        wait_for(queued, 30, "writes to queue up while the database is away")
        assert d.terminate(timeout=40) == 1, d.log()
        log = d.log()
        assert re.search(r"ERROR screenpop.daemon: could not write \d+ queued event\(s\).* they are lost", log), log
    finally:
        proxy.close()
        run.close()


def _calls(db_url: str) -> list[Call]:
    db = open_database(db_url)
    try:
        return list(Call.select())
    finally:
        db.close()


def _epoch(value: dt.datetime | None) -> float:
    """A stored UTC time as seconds since the epoch (a call not ended yet: infinity)."""
    return value.replace(tzinfo=dt.timezone.utc).timestamp() if value else float("inf")


def test_sighup_reloads_log_level_and_number_rules_without_dropping_calls(tmp_path, sqlite_url):
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("5551234\n", encoding="utf-8")
    run = Run(tmp_path, sqlite_url)
    try:
        run.simulate("--generate", "--rate", "3", "--seed", "5", "--numbers", str(numbers),
                     "--mix", "inbound_answered=1", "--extensions", "1001-1004")
        d = run.start_daemon()
        wait_for(lambda: run.notify.first("READY") or d.popen.poll() is not None, 15, "READY=1")
        wait_for(lambda: [c for c in _calls(sqlite_url) if c.ended_at], 20, "a call stored as ended under the first rules")
        assert " DEBUG " not in d.log()
        run.write(level="debug", region="GB")
        run.config.write_text(run.config.read_text().replace("[http]\n", "[http]\nheartbeat = 5.0\n"))
        hup_at = time.time()
        d.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log(), 10, "the reload")
        wait_for(lambda: run.notify.first("RELOADING"), 5, "RELOADING=1")
        assert run.notify.all("READY")[-1][0] >= run.notify.first("RELOADING")[0]
        assert "[http] heartbeat changed: needs a restart" in d.log()
        wait_for(lambda: " DEBUG " in d.log().split("configuration reloaded", 1)[1], 10, "debug lines")
        wait_for(lambda: [c for c in _calls(sqlite_url) if _epoch(c.started_at) > hup_at + 0.5]
                 and [c for c in _calls(sqlite_url) if _epoch(c.started_at) < hup_at - 0.5 < hup_at + 0.5 < _epoch(c.ended_at) < 1e12],
                 15, "a call started after the reload, and one that went on across it")

        run.config.write_text("[numbers\nbroken", encoding="utf-8")
        before = len(ENDED.findall(d.log()))
        d.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded, the running one stays" in d.log(), 10, "the refusal")
        wait_for(lambda: len(ENDED.findall(d.log())) > before, 15, "calls still recorded after a broken reload")
        assert d.terminate() == 0, d.log()
        assert d.log().count("connected to FreeSWITCH") == 1, "the ESL connection was never dropped"
    finally:
        run.close()

    calls = _calls(sqlite_url)
    before = [c for c in calls if _epoch(c.ended_at) < hup_at]
    after = [c for c in calls if _epoch(c.started_at) > hup_at + 0.5]
    across = [c for c in calls if _epoch(c.started_at) < hup_at - 0.5 and hup_at + 0.5 < _epoch(c.ended_at) < 1e12]
    assert before and after and across, (len(before), len(after), len(across))
    assert {c.external_e164 for c in before} == {"+3545551234"}
    assert {c.external_e164 for c in after} == {"+445551234"}
    assert all(c.answered_by for c in across)


def test_journal_lines_each_carry_the_priority_and_only_our_stream_counts(tmp_path, monkeypatch):
    from screenpop.daemon.logformat import JournalFormatter, under_journald

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("screenpop.x", logging.ERROR, __file__, 1, "failed on %s", ("call 1",), sys.exc_info())
    lines = JournalFormatter().format(record).split("\n")
    assert lines[0] == "<3>ERROR screenpop.x: failed on call 1" and len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)
    other = tmp_path / "elsewhere"
    other.touch()
    with open(other, "rb") as fh:
        monkeypatch.setenv("JOURNAL_STREAM", _journal_env(tmp_path / "journal")["JOURNAL_STREAM"])
        assert not under_journald(fh.fileno())  # an inherited variable, the stream redirected elsewhere
        monkeypatch.setenv("JOURNAL_STREAM", _journal_env(other)["JOURNAL_STREAM"])
        assert under_journald(fh.fileno())


def test_a_refusal_quoted_in_the_log_is_english_whatever_the_request_spoke():
    """A sysadmin's journal is in one language: a lazy message a request made in Icelandic is logged in English."""
    from screenpop.daemon import i18n
    from screenpop.daemon.logformat import JournalFormatter

    message = i18n.lazy_gettext("the body is not valid JSON")
    record = logging.LogRecord("screenpop.web", logging.WARNING, __file__, 1, "refused: %s", (message,), None)
    with i18n.use("is"):
        assert str(message) != "the body is not valid JSON"  # the page says it in Icelandic
        assert JournalFormatter().format(record) == "<4>WARNING screenpop.web: refused: the body is not valid JSON"
