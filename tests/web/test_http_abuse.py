"""The HTTP side under abuse (issue 14, item 6), from a machine with no credentials: out-of-range input answers
400 with a message; stranger text in a request cannot forge a log line; bodies above their ceiling are refused
unread (memory stays flat); idle, half-sent and stalled requests are timed out; a flood of them stays within the
connection cap and the open-file limit while a tray keeps getting its pops. In process (Flask's test client) on
SQLite and PostgreSQL, and against the real daemon (and the simulator) over loopback TCP."""
from __future__ import annotations

import logging
import select
import socket
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest


from screenpop.daemon.auth import tokens
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate

from sse import Stream
from support import HubApp, Proc, daemon, free_port, http_ready, simulator, tls_daemon, wait_for, write_config



class Site(HubApp):
    """The daemon's Flask app on a started push hub; a browser signed in as admin, and the admin token."""

    def __init__(self, db, tmp_path) -> None:
        super().__init__(db, tmp_path / "photos")
        _, self.token = tokens.create(None, role="admin", name="admin")
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.browser = self.app.test_client()
        link = self.app.test_client().post("/api/v1/signin-links", json={}, headers=self.auth).get_json()["url"]
        assert self.browser.get(link.split("localhost", 1)[1]).status_code == 303


@pytest.fixture
def site(db, tmp_path):
    with closing(Site(db, tmp_path)) as s:
        yield s


@pytest.mark.parametrize("path", [
    "/calls?until=9999-12-31", "/calls?since=0001-01-01", "/calls?since=9999-12-31",
    "/dashboard?since=9999-12-25&until=9999-12-31", "/dashboard?since=0001-01-01&until=0001-01-02",
    "/missed?until=9999-12-31", "/missed?since=0001-01-01&until=0001-01-05",
    "/reports/calls.csv?until=9999-12-31", "/reports/employees.csv?since=0001-01-01&until=0001-01-01",
])
def test_dates_out_of_range_on_pages(site, path):
    r = site.browser.get(path)
    assert r.status_code == 400 and "must lie between 1970-01-01 and 9998-12-31" in r.get_data(as_text=True), path


def test_dates_in_range_still_work(site):
    for path in ("/calls?since=1970-01-01&until=9998-12-31", "/missed?since=9998-12-01&until=9998-12-31",
                 "/reports/calls.csv?since=1970-01-01&until=1970-01-31"):
        assert site.browser.get(path).status_code == 200, path


@pytest.mark.parametrize("query", ["since=0001-01-01T00:00:00%2B14:00", "until=9999-12-31T23:59:59-14:00",
                                   "since=0001-01-01", "until=9998-12-31T23:59:59-14:00&since=0001-01-01T00:00:00Z"])
def test_api_times_out_of_range(site, query):
    r = site.app.test_client().get(f"/api/v1/calls?{query}", headers=site.auth)
    assert r.status_code == 400 and "must lie between 1970-01-01 and 9998-12-31" in r.get_json()["error"], query
    r = site.app.test_client().get("/api/v1/calls?since=1970-01-01T00:00:00%2B14:00&until=9998-12-31T23:59:59-14:00",
                                   headers=site.auth)
    assert r.status_code == 200


@pytest.mark.parametrize("digits", ["99999999999999999999", "2147483648", "9" * 5000])
def test_ids_out_of_range(site, digits):
    r = site.browser.get(f"/customers/{digits}")
    assert r.status_code == 400 and "is not an id (at most 2147483647)" in r.get_data(as_text=True)
    r = site.app.test_client().get(f"/api/v1/customers/{digits}", headers=site.auth)
    assert r.status_code == 400 and r.get_json()["error"].endswith("is not an id (at most 2147483647)")
    assert site.app.test_client().get("/api/v1/customers/2147483647", headers=site.auth).status_code == 404


def test_deeply_nested_json(site):
    nested = "[" * 4000 + "]" * 4000
    r = site.app.test_client().post("/api/v1/signin-links", data=nested,
                                    headers={**site.auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON object" in r.get_json()["error"]
    r = site.app.test_client().post("/api/v1/customers", data=nested,
                                    headers={**site.auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.get_json()["error"]


@pytest.mark.parametrize("last", ["9" * 5000, "²", "1" * 19])
def test_last_event_id_out_of_range(site, last):
    r = site.app.test_client().get("/api/v1/events", headers={**site.auth, "Last-Event-ID": last})
    assert r.status_code == 400 and "Last-Event-ID must be a pop id" in r.get_json()["error"]


# ---- the real daemon ---------------------------------------------------------------------------------


class Daemon:
    """`screenpop daemon` on SQLite with HTTP on a free port; FreeSWITCH (the simulator) at esl_port, if anyone
    starts it there. nofile: the daemon's open-file limit, as systemd's LimitNOFILE would set it."""

    def __init__(self, tmp: Path, sqlite_url: str, http: str = "", esl_port: int | None = None,
                 nofile: int | None = None) -> None:
        self.port = free_port()
        self.esl_port = esl_port or free_port()
        config = write_config(tmp / "screenpop.toml", self.esl_port, sqlite_url, http_port=self.port, http=http)
        if nofile is None:
            self.proc = daemon(tmp, config)
        else:
            self.proc = Proc(["-c", "import resource, runpy, sys\n"
                              f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n"
                              f"sys.argv = ['screenpop', 'daemon', '--config', {str(config)!r}]\n"
                              "runpy.run_module('screenpop.daemon.cli', run_name='__main__')"], tmp / "daemon.log")
        wait_for(lambda: http_ready(self.base) or self.proc.popen.poll() is not None, 20, "the daemon's HTTP server")
        assert self.proc.popen.poll() is None, self.proc.log()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def send(self, raw: bytes, timeout: float = 10.0) -> bytes:
        """raw bytes on a fresh connection; everything the daemon answers until it closes or goes quiet."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(raw)
            chunks = []
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except (TimeoutError, ConnectionResetError):
                pass
            return b"".join(chunks)


@pytest.fixture
def running(tmp_path, sqlite_url):
    d = Daemon(tmp_path, sqlite_url)
    yield d
    d.proc.close()


def test_request_text_cannot_forge_a_log_line(running):
    forged = "INFO screenpop.web: web sign-in: token 1 (admin) from 10.0.0.1 with a typed token"
    path = "/x%0a" + forged.replace(" ", "%20") + "%0d%1b[2J"
    answer = running.send(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    wait_for(lambda: "missing or wrong CSRF token" in running.proc.log(), 10, "the 403's log line")
    lines = running.proc.log().splitlines()
    assert not [line for line in lines if line.startswith(forged)], "a second line was forged"
    escaped = [line for line in lines if "403 for POST /x\\x0aINFO screenpop.web: web sign-in" in line]
    assert escaped and "\\x0d\\x1b[2J" in escaped[0]


@pytest.mark.parametrize("kind", ["TerminalFormatter", "JournalFormatter"])
def test_log_messages_are_one_line_tracebacks_keep_theirs(kind):
    from screenpop.daemon import logformat

    formatter = getattr(logformat, kind)()
    record = logging.LogRecord("screenpop.http", logging.WARNING, __file__, 1, "401 for GET %s", ("/a\nb\x1b\x85",), None)
    assert formatter.format(record).endswith("401 for GET /a\\x0ab\\x1b\\x85")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("screenpop.http", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = formatter.format(record).splitlines()
    assert len(lines) > 3 and lines[-1].endswith("ValueError: boom")


# ---- request bodies ----------------------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


@pytest.mark.parametrize("path, content_type, allowed", [
    ("/signin", "application/x-www-form-urlencoded", 256 * 1024),
    ("/customers/1/edit", "multipart/form-data; boundary=x", 256 * 1024),
    ("/customers/1/photo", "multipart/form-data; boundary=x", 10 * 1024 * 1024 + 64 * 1024),
    ("/api/v1/customers", "application/json", 64 * 1024),
    ("/api/v1/signin-links", "application/json", 64 * 1024),
])
def test_body_above_its_limit_is_refused_from_its_length_unread(running, path, content_type, allowed):
    """Only the headers are sent: the 413 comes at once, before any CSRF, sign-in or token check, and the
    connection is closed rather than read to the end of the announced body."""
    with socket.create_connection(("127.0.0.1", running.port), timeout=20) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {allowed + 1}\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head, head
    assert f"{allowed}".encode() in body or f"{allowed // 1024:,} KiB".encode() in body, body[:300]
    with socket.create_connection(("127.0.0.1", running.port), timeout=20) as s:  # the limit itself is fine
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
                  f"Content-Length: {allowed}\r\n\r\n".encode())
        s.settimeout(1)
        try:
            early = s.recv(100)  # the pages wait for the body now; the API refuses the missing token at once
        except TimeoutError:
            early = b""
        if path.startswith("/api/"):
            assert early.startswith(b"HTTP/1.1 401"), early
        else:
            assert early == b"", early


def test_chunked_body_cut_off_while_reading(running):
    """No length given: the daemon reads up to the limit, answers 413 and closes; the sender is stopped early."""
    sent = 0
    with socket.create_connection(("127.0.0.1", running.port), timeout=20) as s:
        s.sendall(b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
        try:
            while sent < 100_000_000:
                s.sendall(chunk)
                sent += 65536
        except OSError:
            pass
        try:
            answer = s.recv(200)
        except ConnectionResetError:
            answer = b""
    assert sent < 30_000_000, f"{sent} bytes went in before the daemon stopped reading"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer
    refused = "413 for POST /signin from 127.0.0.1: a body sent without a length, above the 262144 allowed here"
    assert refused in running.proc.log()


def test_small_unread_body_keeps_the_connection(running):
    """A refused form (no CSRF token) with a small body: its rest is skipped and the connection serves on."""
    with socket.create_connection(("127.0.0.1", running.port), timeout=20) as s:
        s.sendall(b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: 5000\r\n\r\n" + b"a" * 5000 + b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b'"status":"ok"' not in answer:
            chunk = s.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403") and b"HTTP/1.1 200" in answer


def test_oversized_posts_leave_memory_flat(running):
    """Three 300 MB form posts streamed at /signin at once: refused early; the daemon's memory stays flat."""
    import threading

    baseline = _rss_mb(running.proc.popen.pid)
    sent = [0, 0, 0]

    def post(i: int) -> None:
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as s:
            s.sendall(b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 300000000\r\n\r\n")
            try:
                while sent[i] < 300_000_000:
                    s.sendall(b"a" * 65536)
                    sent[i] += 65536
            except OSError:
                pass

    threads = [threading.Thread(target=post, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    peak = baseline
    while any(t.is_alive() for t in threads):
        peak = max(peak, _rss_mb(running.proc.popen.pid))
        threads[0].join(0.02)
    assert peak - baseline < 50, f"resident memory went from {baseline:.0f} MB to {peak:.0f} MB"
    assert max(sent) < 100_000_000, f"{sent} bytes were taken before refusing"


# ---- slow and idle clients, and a flood of them --------------------------------------------------------


def _closed_by_daemon(socks: list[socket.socket]) -> int:
    """How many of socks the daemon has closed (readable, and nothing or a reset to read)."""
    closed = 0
    for i in range(0, len(socks), 500):
        readable, _, _ = select.select(socks[i:i + 500], [], [], 0)
        for s in readable:
            try:
                closed += s.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                closed += 1
    return closed


def test_idle_half_sent_and_stalled_requests_are_timed_out(tmp_path, sqlite_url):
    d = Daemon(tmp_path, sqlite_url, http="header_timeout = 2.0\nidle_timeout = 3.0")
    try:
        idle = socket.create_connection(("127.0.0.1", d.port))
        idle_since = time.monotonic()
        half = socket.create_connection(("127.0.0.1", d.port))
        half.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        dribble = socket.create_connection(("127.0.0.1", d.port))
        stalled = socket.create_connection(("127.0.0.1", d.port))
        stalled.sendall(b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                        b"Content-Length: 100\r\n\r\ncsrf=x&tok")
        wait_for(lambda: _closed_by_daemon([half]) == 1, 30, "the half-sent request to be closed")
        for _ in range(3):  # a header line a second keeps no request alive past header_timeout
            try:
                dribble.sendall(b"X-A: b\r\n" if _ else b"GET / HTTP/1.1\r\n")
            except OSError:
                break
            time.sleep(1)
        wait_for(lambda: _closed_by_daemon([idle]) == 1, 30, "the idle connection to be closed")
        assert time.monotonic() - idle_since >= 2.9, "the idle connection was given its idle_timeout"
        wait_for(lambda: _closed_by_daemon([dribble]) == 1, 30, "the dribbling connection to be closed")
        stalled.settimeout(30)
        answer = stalled.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408") and b"Connection: close" in answer, answer[:300]
        assert "408 for POST /signin from 127.0.0.1: the request body stopped arriving" in d.proc.log()
        for s in (idle, half, dribble, stalled):
            s.close()
        assert http_ready(d.base)
    finally:
        d.proc.close()


def test_flood_of_half_sent_requests(tmp_path, sqlite_url):
    """More half-sent requests than the daemon may open files: the cap keeps it within its files, the header
    timeout clears them, event streams (more of them than the cap) are not counted, and the tray connected
    before the flood keeps getting its pops while the flood is on."""
    db = open_database(sqlite_url)
    migrate(db)
    _, operator = tokens.create("1001")
    _, admin = tokens.create(None, role="admin")
    db.close()
    d = Daemon(tmp_path, sqlite_url, http="heartbeat = 0.5\nheader_timeout = 2.0\nmax_connections = 20",
               nofile=160)
    streams: list[Stream] = []
    flood: list[socket.socket] = []
    sim = None
    try:
        tray = Stream(d.port, operator)
        streams = [tray] + [Stream(d.port, admin, query="extension=1002") for _ in range(24)]
        assert [s.status for s in streams] == [200] * 25, "25 streams with a cap of 20 connections"
        assert http_ready(d.base)
        sim = simulator(tmp_path, d.esl_port, "--generate", "--calls", "40", "--rate", "1", "--speed", "1", "--seed", "5",
                        "--extensions", "1001", "--mix", "inbound_answered=1", "--linger", "0.3")
        tray.wait_count(2, 60)
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
            flood.append(s)
        before = len(tray.messages)
        during = 0
        deadline = time.monotonic() + 120
        while (closed := _closed_by_daemon(flood)) < len(flood):
            assert time.monotonic() < deadline, f"only {closed} of {len(flood)} half-sent requests were closed"
            if closed < len(flood) // 2:
                during = len(tray.messages) - before
            time.sleep(0.2)
        assert during >= 1, "the tray got no pop while the flood was on"
        assert not tray.ended.is_set() and not tray.error
        assert http_ready(d.base)
        log = d.proc.log()
        assert log.count("connections open, the [http] max_connections") == 1, log[-3000:]
        assert "Too many open files" not in log and "EMFILE" not in log, log[-3000:]
    finally:
        for s in flood:
            s.close()
        for s in streams:
            s.close()
        if sim is not None:
            sim.close()
        d.proc.close()


def test_tls_handshake_within_header_timeout(tmp_path, sqlite_url):
    d, port, answers = tls_daemon(tmp_path, sqlite_url, "header_timeout = 2.0")
    try:
        wait_for(lambda: answers() or d.popen.poll() is not None, 20, "HTTPS")
        silent = socket.create_connection(("127.0.0.1", port))  # no ClientHello, ever
        started = time.monotonic()
        wait_for(lambda: _closed_by_daemon([silent]) == 1, 30, "the silent TLS connection to be closed")
        assert time.monotonic() - started < 20, "closed by header_timeout, not idle_timeout (60 s)"
        silent.close()
        assert answers()
    finally:
        d.close()
