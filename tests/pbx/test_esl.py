"""ESL client tests against a scripted fake FreeSWITCH on real loopback TCP sockets.

Each greenswitch defect the client guards against has a test parametrized over [our class, plain
greenswitch]; the plain one is xfail(strict=True), so the test proves the defect exists upstream and
that our class fixes it. gevent sockets are used explicitly: nothing is monkey-patched.
"""
from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote_to_bytes

import gevent
import gevent.event
import gevent.lock
import gevent.server
import greenswitch.esl
import pytest

from screenpop.daemon.pbx import protocol
from screenpop.daemon.pbx.esl import (
    CONNECTION_LOST,
    AuthenticationError,
    CommandTimeoutError,
    EslSupervisor,
    GuardedInboundESL,
    JobTimeoutError,
    NotConnectedError,
    subscription_command,
)
from screenpop.daemon.pbx.protocol import Headers, decode_value, parse_event_body, parse_headers
from screenpop.simulator.events import plain_line

from support import CAPTURES, SLACK, Proxy

pytestmark = pytest.mark.timeout(120)  # a hang fails in two minutes; waits are sized for a busy machine (SLACK)

needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason="shared/esl-captures not found")

PASSWORD = "ClueCon"
AUTH_REQUEST = b"Content-Type: auth/request\n\n"
AUTH_OK = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
DISCONNECT_NOTICE = (b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
                     b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")
AUTH_BAD = b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n" + DISCONNECT_NOTICE


# -- the fake FreeSWITCH ----------------------------------------------------------------------------


def reply(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode()


def api_response(body: bytes | str) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body


def render_headers(headers: list[tuple[str, str]]) -> bytes:
    """Headers as a plain event body, FreeSWITCH's way (the simulator's lines), closed by a blank line."""
    return b"".join(plain_line(name, value) for name, value in headers) + b"\n"


def plain_payload(uuid: str, name: str = "CHANNEL_CREATE", **extra: str) -> bytes:
    headers = [("Event-Name", name), ("Core-UUID", "core-1"), ("Unique-ID", uuid),
               ("Caller-Caller-ID-Name", "Jón Jónsson"), ("Event-Sequence", "1")]
    headers += [(k.replace("_", "-"), v) for k, v in extra.items()]
    return render_headers(headers)


def frame(payload: bytes, content_type: str = "text/event-plain", length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return b"Content-Length: %d\nContent-Type: %s\n\n" % (n, content_type.encode()) + payload


def event(uuid: str, name: str = "CHANNEL_CREATE", **extra: str) -> bytes:
    return frame(plain_payload(uuid, name, **extra))


def capture_frames(path: Path) -> list[tuple[dict[str, str], bytes, bytes]]:
    """(outer headers, body, raw frame bytes) for each frame of a capture file."""
    data = path.read_bytes()
    out, pos = [], 0
    while True:
        end = data.find(b"\n\n", pos)
        if end < 0:
            return out
        start = pos
        headers = parse_headers(data[pos:end], decode=False)
        pos = end + 2
        length = int(headers.get("Content-Length", "0"))
        out.append((headers, data[pos:pos + length], data[start:pos + length]))
        pos += length


class Conn:
    """One accepted connection, from the fake FreeSWITCH's side."""

    def __init__(self, sock, number: int):
        self.sock = sock
        self.number = number
        self.commands: list[str] = []
        self.buf = b""
        self.lock = gevent.lock.Semaphore()
        self.closed = False

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def read_command(self, timeout: float = 5.0) -> str | None:
        """The next command the client sent, or None when the client closed."""
        with gevent.Timeout(timeout):
            while b"\n\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self.buf += chunk
        command, _, self.buf = self.buf.partition(b"\n\n")
        text = command.decode()
        self.commands.append(text)
        return text

    def handshake(self, password: str = PASSWORD) -> bool:
        self.send(AUTH_REQUEST)
        command = self.read_command()
        if command != f"auth {password}":
            self.send(AUTH_BAD)
            return False
        self.send(AUTH_OK)
        return True

    def serve(self, api=None, after_subscribe=None) -> None:
        """Answer commands until the client leaves: event -> +OK, api -> api(cmd) or '+OK', exit -> bye."""
        while True:
            command = self.read_command(timeout=60)
            if command is None:
                return
            if command.startswith("event "):
                self.send(reply("+OK event listener enabled plain"))
                if after_subscribe is not None:
                    gevent.spawn(after_subscribe, self)
            elif command.startswith("api "):
                answer = api(self, command[4:]) if api is not None else "+OK"
                if answer is not None:
                    self.send(api_response(answer))
            elif command == "exit":
                self.send(reply("+OK bye") + DISCONNECT_NOTICE)
                return
            else:
                self.send(reply("+OK"))

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(2)
        except OSError:
            pass
        self.sock.close()


class FakeFreeSWITCH:
    """A scripted FreeSWITCH on 127.0.0.1:<ephemeral>: script(conn) runs for each accepted connection."""

    def __init__(self, script):
        self.script = script
        self.conns: list[Conn] = []
        self.accepted_at: list[float] = []
        self.errors: list[BaseException] = []
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock, _addr) -> None:
        conn = Conn(sock, len(self.conns) + 1)
        self.conns.append(conn)
        self.accepted_at.append(time.monotonic())
        try:
            self.script(conn)
        except (OSError, gevent.Timeout):
            pass
        except Exception as exc:  # a broken script must show up in the test, not vanish
            self.errors.append(exc)
            raise
        finally:
            if not conn.closed:
                conn.close()

    def wait_conns(self, n: int, timeout: float = 5.0) -> bool:
        """Whether n connections were accepted within timeout seconds (stretched by SLACK)."""
        deadline = time.monotonic() + timeout * SLACK
        while len(self.conns) < n and time.monotonic() < deadline:
            gevent.sleep(0.01)
        return len(self.conns) >= n

    def stop(self) -> None:
        self.server.stop(timeout=0.5)


@pytest.fixture
def fake_fs():
    servers = []

    def make(script):
        server = FakeFreeSWITCH(script)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    for server in servers:
        assert not server.errors, server.errors


def wait_for(predicate, timeout: float = 5.0) -> bool:
    """support.wait_for for in-process greenlets: polls with gevent.sleep, and says whether predicate came to hold."""
    deadline = time.monotonic() + timeout * SLACK
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(0.005)
    return predicate()


@pytest.fixture
def clients():
    """Make clients of either class; tear them down without trusting plain greenswitch's stop()."""
    made = []

    def make(cls, port, password=PASSWORD, **kwargs):
        client = cls("127.0.0.1", port, password, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        if isinstance(client, GuardedInboundESL):
            client.close("test over")
        greenlets = [g for g in (client._receive_events_greenlet, client._process_events_greenlet) if g]
        gevent.killall(greenlets, timeout=1)
        if getattr(client, "sock", None) is not None:
            client.sock.close()


@pytest.fixture
def supervisors():
    made = []

    def make(port, events=("CHANNEL_CREATE",), **kwargs):
        kwargs.setdefault("on_event", lambda ev: None)
        kwargs.setdefault("connect_timeout", 2.0)
        kwargs.setdefault("command_timeout", 2.0)
        sup = EslSupervisor("127.0.0.1", port, kwargs.pop("password", PASSWORD), list(events), **kwargs)
        made.append(sup)
        return sup.start()

    yield make
    for sup in made:
        sup.stop(timeout=2)


OURS = pytest.param(GuardedInboundESL, id="guarded")
PLAIN = pytest.param(greenswitch.esl.InboundESL, id="plain-greenswitch",
                     marks=pytest.mark.xfail(strict=True, reason="greenswitch 0.0.19 defect"))


def connect_and_collect(cls, fake_fs, clients, frames: list[bytes]):
    """Connect a client of cls; after it subscribes the fake sends frames. Returns (client, received list)."""

    def script(conn):
        if conn.handshake():
            conn.serve(after_subscribe=lambda c: c.send(b"".join(frames)))

    fs = fake_fs(script)
    got = []
    client = clients(cls, fs.port)
    client.register_handle("*", got.append)
    with gevent.Timeout(3, AssertionError("connect() hung")):
        client.connect()
        client.send("event plain ALL")
    return client, got


# -- defects of plain greenswitch -----------------------------------------------------------------


@pytest.mark.parametrize("cls", [OURS, PLAIN])
def test_a_encoded_newline_cannot_forge_a_header(cls, fake_fs, clients):
    forged = b"Caller-Caller-ID-Name: x%0AUnique-ID: forged\n"
    payload = plain_payload("real-uuid").replace(b"Event-Sequence", forged + b"Event-Sequence")
    _, got = connect_and_collect(cls, fake_fs, clients, [frame(payload), event("next")])
    assert wait_for(lambda: len(got) >= 2, 2)
    ev = got[0]
    assert ev.headers["Unique-ID"] == "real-uuid"
    assert ev.headers["Caller-Caller-ID-Name"] == "Jón Jónsson"  # the first value wins, as in FreeSWITCH
    ev2_payload = plain_payload("u2", Caller_Orig_Caller_ID_Name="x\nUnique-ID: forged")
    assert b"%0A" in ev2_payload
    _, got2 = connect_and_collect(cls, fake_fs, clients, [frame(ev2_payload)])
    assert wait_for(lambda: got2, 2)
    assert got2[0].headers["Unique-ID"] == "u2"
    assert got2[0].headers["Caller-Orig-Caller-ID-Name"] == "x\nUnique-ID: forged"


@needs_captures
@pytest.mark.parametrize("cls", [OURS, PLAIN])
def test_b_event_with_a_body(cls, fake_fs, clients):
    job = next(raw for h, body, raw in capture_frames(CAPTURES / "outbound-c2c.plain.esl")
               if b"Event-Name: BACKGROUND_JOB" in body)
    body = b"-ERR oops\n\nContent-Type: text/event-plain\n\nUnique-ID: x\n"  # blank lines inside the body
    multi = render_headers([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "job-2"),
                            ("Content-Length", str(len(body)))])
    frames = [job, frame(multi + body), event("after")]
    _, got = connect_and_collect(cls, fake_fs, clients, frames)
    assert wait_for(lambda: len(got) >= 3, 2)
    assert got[0].headers["Job-UUID"] == "82938fde-b499-4703-9b2a-213fb4b733bb"
    assert got[0].headers["Content-Length"] == "41"
    assert getattr(got[0], "body", None) == "+OK e9c71ace-46b8-40e4-a596-6d9cae2b3d30\n"
    assert got[1].headers["Job-UUID"] == "job-2"
    assert getattr(got[1], "body", None) == body.decode()
    assert got[2].headers["Unique-ID"] == "after"


def json_frame_from_capture() -> bytes:
    return next(raw for h, body, raw in capture_frames(CAPTURES / "inbound-answered.json.esl")
                if h.get("Content-Type") == "text/event-json")


@needs_captures
@pytest.mark.parametrize("kind", ["raw-non-utf8", "event-json"])
@pytest.mark.parametrize("cls", [OURS, PLAIN])
def test_c_non_utf8_bytes_and_json_frames_do_not_kill_the_reader(cls, kind, fake_fs, clients):
    if kind == "raw-non-utf8":
        first = frame(plain_payload("bad").replace(b"J%C3%B3n", b"J\xf3n\xff\xfe"))
    else:
        first = json_frame_from_capture()
    _, got = connect_and_collect(cls, fake_fs, clients, [first, event("after")])
    assert wait_for(lambda: len(got) >= 2, 1.5), "the reader died: later events never arrived"
    if kind == "raw-non-utf8":
        assert got[0].headers["Unique-ID"] == "bad"
        assert got[0].headers["Caller-Caller-ID-Name"] == "J\ufffdn\ufffd\ufffd J\ufffdn\ufffd\ufffdsson"
    else:
        assert got[0].headers["Event-Name"] == "CHANNEL_STATE"
        assert got[0].headers["FreeSWITCH-IPv6"] == "fd00::2"
    assert got[1].headers["Unique-ID"] == "after"


SPIN_CHILD = r"""
import json, os, sys, threading, time, logging
logging.disable(logging.CRITICAL)
def watchdog():
    time.sleep(4)
    os.write(1, b'{"blocked": true}\n')
    os._exit(3)
threading.Thread(target=watchdog, daemon=True).start()
import gevent, gevent.server
from greenswitch.esl import InboundESL
from screenpop.daemon.pbx.esl import GuardedInboundESL
cls = GuardedInboundESL if sys.argv[1] == "guarded" else InboundESL
def handle(sock, addr):
    sock.sendall(b"Content-Type: auth/request\n\n")
    buf = b""
    while b"\n\n" not in buf:
        buf += sock.recv(1000)
    sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
    gevent.sleep(0.1)
    sock.sendall(b"Content-Length: 1000\nContent-Type: text/event-plain\n\nEvent-Name: CHANNEL_CREATE\nUnique-ID: cut")
    sock.shutdown(2)
    sock.close()
server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
server.start()
client = cls("127.0.0.1", server.server_port, "ClueCon")
client.connect()
cpu0, ticks = time.process_time(), 0
for _ in range(20):
    gevent.sleep(0.05)
    ticks += 1
print(json.dumps({"ticks": ticks, "cpu": time.process_time() - cpu0, "connected": client.connected}))
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.parametrize("which", [pytest.param("guarded", id="guarded"),
                                   pytest.param("plain", id="plain-greenswitch", marks=PLAIN.marks)])
def test_d_connection_cut_mid_body_does_not_spin(which):
    # In a child process: plain greenswitch spins without yielding, so nothing in its process runs again.
    proc = subprocess.run([sys.executable, "-c", SPIN_CHILD, which], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, timeout=15)
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert proc.returncode == 0 and not result.get("blocked"), "the gevent hub was blocked"
    assert result["ticks"] == 20
    assert result["cpu"] < 0.5, f"{result['cpu']:.2f} s of CPU in 1 s of idling"
    assert result["connected"] is False


@pytest.mark.parametrize("cls", [OURS, PLAIN])
def test_e_send_times_out_when_no_reply_comes(cls, fake_fs, clients):
    def script(conn):
        if conn.handshake():
            while conn.read_command(timeout=10) is not None:
                pass  # never answers

    fs = fake_fs(script)
    kwargs = {"command_timeout": 0.3} if cls is GuardedInboundESL else {}
    client = clients(cls, fs.port, **kwargs)
    with gevent.Timeout(3, AssertionError("connect() hung")):
        client.connect()
    started = time.monotonic()
    with gevent.Timeout(1.5, AssertionError("send() still waiting after 1.5 s")):
        with pytest.raises(NotConnectedError) as info:
            client.send("api status")
    assert isinstance(info.value, CommandTimeoutError)
    assert isinstance(info.value, TimeoutError)
    assert 0.25 < time.monotonic() - started < 1.0
    assert "api status" in str(info.value)
    assert not client.connected  # a late reply must not be taken for the next command's


@pytest.mark.parametrize("cls", [OURS, PLAIN])
def test_e_pending_commands_fail_when_the_connection_drops(cls, fake_fs, clients):
    def script(conn):
        if conn.handshake():
            conn.read_command()
            gevent.sleep(0.1)
            conn.close()

    fs = fake_fs(script)
    client = clients(cls, fs.port)
    with gevent.Timeout(3, AssertionError("connect() hung")):
        client.connect()
    started = time.monotonic()
    with gevent.Timeout(1.5, AssertionError("send() still waiting after the connection dropped")):
        with pytest.raises(NotConnectedError):
            client.send("api status")
    assert time.monotonic() - started < 1.0
    with pytest.raises(NotConnectedError):
        client.send("api status")


def start_supervisor(port, supervisors):
    return supervisors(port, reconnect_min=0.1)


def start_plain(port, supervisors):
    client = greenswitch.esl.InboundESL("127.0.0.1", port, PASSWORD)
    with gevent.Timeout(3):
        client.connect()
    return client


@pytest.mark.parametrize("start", [pytest.param(start_supervisor, id="supervisor"),
                                   pytest.param(start_plain, id="plain-greenswitch", marks=PLAIN.marks)])
def test_f_reconnects_after_the_connection_drops(start, fake_fs, supervisors):
    def script(conn):
        if conn.handshake():
            if conn.number == 1:
                gevent.sleep(0.2)
                return  # FreeSWITCH restarts
            conn.serve()

    fs = fake_fs(script)
    client = start(fs.port, supervisors)
    try:
        assert fs.wait_conns(2, timeout=1.5), "no new connection after the first one dropped"
    finally:
        if not isinstance(client, EslSupervisor):
            gevent.killall([client._receive_events_greenlet, client._process_events_greenlet], timeout=1)
            client.sock.close()


# -- supervisor behaviour ---------------------------------------------------------------------------


def test_connect_subscribe_and_receive(fake_fs, supervisors, caplog):
    caplog.set_level(logging.INFO, logger="screenpop.esl")

    def script(conn):
        if conn.handshake():
            conn.serve(after_subscribe=lambda c: c.send(event("u1") + event("u2", "CUSTOM",
                                                                            Event_Subclass="sofia::transferee")))

    fs = fake_fs(script)
    got = []
    sup = supervisors(fs.port, events=["CHANNEL_CREATE", "CUSTOM sofia::transferee", "CHANNEL_ANSWER",
                                       "callcenter::info"], on_event=got.append)
    assert wait_for(lambda: len(got) == 2)
    assert sup.connected
    assert fs.conns[0].commands == [
        "auth ClueCon",
        "event plain CHANNEL_CREATE CHANNEL_ANSWER CUSTOM sofia::transferee callcenter::info",
    ]
    assert [e.name for e in got] == ["CHANNEL_CREATE", "sofia::transferee"]
    assert f"connected to FreeSWITCH 127.0.0.1:{fs.port}" in caplog.text
    assert sup.events_received == 2 and sup.events_dispatched == 2 and len(fs.conns) == 1


def test_wrong_password_is_reported_and_retried(fake_fs, supervisors, clients, caplog):
    caplog.set_level(logging.DEBUG, logger="screenpop.esl")
    secret = "n0t-the-S3cret"
    bad_recv = (CAPTURES / "auth_handshake.bad.recv.raw").read_bytes() if CAPTURES.is_dir() else (
        AUTH_REQUEST + AUTH_BAD)

    def script(conn):
        conn.send(bad_recv[:len(AUTH_REQUEST)])
        assert conn.read_command() == f"auth {secret}"
        conn.send(bad_recv[len(AUTH_REQUEST):])

    fs = fake_fs(script)
    sup = supervisors(fs.port, password=secret, reconnect_min=0.05, reconnect_max=0.1)
    assert fs.wait_conns(3, timeout=3)
    assert not sup.connected
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "FreeSWITCH rejected the ESL password" in errors[0].getMessage()
    assert secret not in caplog.text
    assert sup.last_error == "FreeSWITCH rejected the ESL password"
    client = clients(GuardedInboundESL, fs.port, password=secret)
    with pytest.raises(AuthenticationError, match="rejected the ESL password") as info:
        client.connect()
    assert isinstance(info.value, ValueError)  # as greenswitch's own 'Invalid password.'
    assert secret not in str(info.value)


def test_a_password_with_a_line_break_is_refused_not_sent(fake_fs, supervisors, caplog):
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve())
    sup = supervisors(fs.port, password="pass\nword", reconnect_min=0.05)
    assert fs.wait_conns(2)
    assert all(conn.commands == [] for conn in fs.conns)
    assert "line break" in sup.last_error and sup.join(0) is False  # still trying


def test_password_is_never_logged(fake_fs, supervisors, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-Pa55"

    def script(conn):
        if conn.handshake(secret):
            if conn.number == 1:
                conn.read_command()
                return  # no reply to the subscription, then gone
            conn.serve()

    fs = fake_fs(script)
    sup = supervisors(fs.port, password=secret, reconnect_min=0.05, command_timeout=0.3)
    assert wait_for(lambda: sup.connected and len(fs.conns) == 2)
    sup.stop()
    assert secret not in caplog.text
    assert secret not in repr(sup) and secret not in repr(sup.esl)


def test_command_timeout_drops_connection_and_a_late_reply_cannot_desync(fake_fs, supervisors):
    def api(conn, command):
        if command == "slow":
            gevent.sleep(0.6)
            return "late answer to slow"
        return f"answer to {command}"

    def script(conn):
        if conn.handshake():
            conn.serve(api=api)

    fs = fake_fs(script)
    sup = supervisors(fs.port, command_timeout=0.3, reconnect_min=0.05)
    assert wait_for(lambda: sup.connected)
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError, match="'api slow' within 0.3 s"):
        sup.api("slow")
    assert time.monotonic() - started < 0.6
    assert wait_for(lambda: sup.connected and len(fs.conns) == 2)
    assert sup.api("status") == "answer to status"
    assert sup.api("version") == "answer to version"
    assert len(fs.conns) == 2


def test_api_rejects_multiline_commands(fake_fs, supervisors):
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve())
    sup = supervisors(fs.port)
    assert wait_for(lambda: sup.connected)
    with pytest.raises(ValueError):
        sup.api("status\n\nexit")
    with pytest.raises(ValueError):
        sup.esl.send("api status\n\nexit")
    assert sup.api("status") == "+OK"


def _job(job: str, answer: str) -> bytes:
    body = answer.encode()
    return frame(render_headers([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", job), ("Job-Command", "originate"),
                                 ("Content-Length", str(len(body)))]) + body)


def test_bgapi_waits_for_its_own_background_job(fake_fs, supervisors):
    """bgapi sends its own Job-UUID; another client's job goes on to on_event, ours comes back as the answer; a
    connection lost while waiting fails the wait at once."""
    def script(conn):
        if not conn.handshake():
            return
        while (command := conn.read_command(timeout=60)) is not None:
            if command.startswith("event "):
                conn.send(reply("+OK event listener enabled plain"))
            elif command.startswith("bgapi originate"):
                job = command.split("\nJob-UUID: ", 1)[1]
                conn.send(reply(f"+OK Job-UUID: {job}"))
                conn.send(_job("someone-elses", "+OK other\n"))
                if "drop" in command:
                    conn.close()
                    return
                gevent.sleep(0.1)
                conn.send(_job(job, "-ERR USER_NOT_REGISTERED\n"))
            else:
                conn.send(reply("+OK"))

    fs = fake_fs(script)
    got = []
    sup = supervisors(fs.port, events=["CHANNEL_CREATE", "BACKGROUND_JOB"], on_event=got.append, reconnect_min=0.05)
    assert wait_for(lambda: sup.connected)
    assert sup.bgapi("originate user/1001 +3545559876 XML default", timeout=2) == "-ERR USER_NOT_REGISTERED\n"
    assert fs.conns[0].commands[-1].startswith("bgapi originate user/1001 +3545559876 XML default\nJob-UUID: ")
    assert wait_for(lambda: [e.get("Job-UUID") for e in got] == ["someone-elses"])
    with pytest.raises(NotConnectedError):
        sup.bgapi("originate drop", timeout=5)
    with pytest.raises(ValueError):
        sup.bgapi("originate x\n\nexit", timeout=1)


def test_bgapi_timeout_keeps_the_connection(fake_fs, supervisors):
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve())  # answers bgapi +OK, never the job
    sup = supervisors(fs.port)
    assert wait_for(lambda: sup.connected)
    with pytest.raises(JobTimeoutError, match="within 0.2 s"):
        sup.bgapi("originate user/1001 1002 XML default", timeout=0.2)
    assert sup.connected and not sup.esl.jobs and sup.api("status") == "+OK"


def test_pending_commands_all_fail_at_once(fake_fs, clients):
    def script(conn):
        if conn.handshake():
            conn.read_command()
            conn.read_command()
            conn.read_command()
            gevent.sleep(0.1)
            conn.close()

    fs = fake_fs(script)
    client = clients(GuardedInboundESL, fs.port, command_timeout=10)
    client.connect()
    results = []

    def call(cmd):
        try:
            client.send(cmd)
        except NotConnectedError as exc:
            results.append((cmd, time.monotonic(), exc))

    started = time.monotonic()
    gevent.joinall([gevent.spawn(call, f"api c{i}") for i in range(3)], timeout=3)
    assert len(results) == 3
    assert all(t - started < 1.0 for _, t, _ in results)
    assert not isinstance(results[0][2], CommandTimeoutError)


def closing_script(conn):
    conn.close()  # accepted, then dropped before the handshake


def test_first_retry_is_under_a_second_with_defaults(fake_fs, supervisors, caplog):
    caplog.set_level(logging.WARNING, logger="screenpop.esl")
    fs = fake_fs(closing_script)
    supervisors(fs.port, connect_timeout=5, command_timeout=5)
    assert fs.wait_conns(2, timeout=2)
    gap = fs.accepted_at[1] - fs.accepted_at[0]
    assert 0.4 < gap < 1.0
    assert "retrying in 0.5 s" in caplog.text
    assert f"FreeSWITCH 127.0.0.1:{fs.port}" in caplog.text


def test_a_down_freeswitch_is_logged_once_a_minute_not_every_retry(supervisors, caplog):
    caplog.set_level(logging.DEBUG, logger="screenpop.esl")
    supervisors(1, reconnect_min=0.01, reconnect_max=0.02)  # port 1: connection refused

    def refused() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "cannot connect to FreeSWITCH 127.0.0.1:1" in r.getMessage()]

    assert wait_for(lambda: len(refused()) >= 5)
    records = refused()
    assert [r.levelno for r in records[:5]] == [logging.WARNING] + [logging.DEBUG] * 4
    assert "retrying in 0.01 s" in records[0].getMessage()


def test_backoff_doubles_up_to_the_cap(fake_fs, supervisors, caplog):
    """The waits after failed attempts double from reconnect_min up to reconnect_max: the delays the supervisor
    chose (its log, repeats at debug level) exactly, and no gap FreeSWITCH sees shorter than its delay (a busy
    machine only makes them longer)."""
    caplog.set_level(logging.DEBUG, logger="screenpop.esl")
    fs = fake_fs(closing_script)
    sup = supervisors(fs.port, reconnect_min=0.05, reconnect_max=0.2)
    assert fs.wait_conns(7, timeout=5)
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+) s", caplog.text)]
    assert delays[:6] == [0.05, 0.1, 0.2, 0.2, 0.2, 0.2], delays
    gaps = [b - a for a, b in zip(fs.accepted_at, fs.accepted_at[1:])]
    assert all(gap > delay - 0.01 for gap, delay in zip(gaps[:6], delays)), (gaps, delays)
    assert not sup.connected and sup.last_error  # every attempt failed, and the supervisor says why


def test_an_established_connection_that_drops_is_retried_at_once_and_failures_back_off(fake_fs, supervisors, caplog):
    caplog.set_level(logging.WARNING, logger="screenpop.esl")
    up_for = {1: 0.6, 2: 0.6, 5: 0.1}  # seconds each connection stays up; 3 and 4 fail before the handshake

    def script(conn):
        if conn.number in (3, 4):
            return
        if conn.handshake():
            conn.read_command()
            conn.send(reply("+OK event listener enabled plain"))
            gevent.sleep(up_for.get(conn.number, 10))

    fs = fake_fs(script)
    supervisors(fs.port, reconnect_min=1.0, reconnect_max=2.0, stable_after=0.4)
    assert fs.wait_conns(6, timeout=20)
    gaps = [b - a for a, b in zip(fs.accepted_at, fs.accepted_at[1:])]
    slack = 0.8  # a busy machine; still below reconnect_min, which the old policy waited after each of these
    assert 0.6 <= gaps[0] < 0.6 + slack and 0.6 <= gaps[1] < 0.6 + slack, gaps  # dropped after 0.6 s: back at once
    assert 1.0 <= gaps[2] < 1.0 + slack and 2.0 <= gaps[3] < 2.0 + slack, gaps  # failed attempts: 1 s, then doubled
    assert 2.1 <= gaps[4] < 2.1 + slack, gaps  # up for less than stable_after: still backing off (capped at 2 s)
    assert "reconnecting now" in caplog.text


def test_on_connected_runs_before_queued_events(fake_fs, supervisors):
    def api(conn, command):
        assert command == "show channels as json"
        gevent.sleep(0.2)  # the events below arrive meanwhile
        return '{"row_count":0}'

    def script(conn):
        if conn.handshake():
            conn.serve(api=api, after_subscribe=lambda c: c.send(event("u1") + event("u2") + event("u3")))

    fs = fake_fs(script)
    order = []

    def on_connected(api_call):
        order.append("resync-start")
        body = api_call("show channels as json")
        order.append(("resync-done", body, sup.events_received))

    sup = supervisors(fs.port, on_connected=on_connected,
                      on_event=lambda ev: order.append(ev.headers["Unique-ID"]),
                      on_disconnected=lambda: order.append("disconnected"))
    assert wait_for(lambda: len(order) == 5)
    assert order == ["resync-start", ("resync-done", '{"row_count":0}', 3), "u1", "u2", "u3"]
    sup.stop()
    assert order[-1] == "disconnected"
    assert fs.conns[0].commands[-1] == "exit"


def test_the_first_attempt_is_over_once_the_resync_has_caught_up(fake_fs, supervisors):
    """The daemon loads its HTTP side when first_attempt is set: not before the events that came before the resync's
    reply are through, or the resync would wait for the load."""
    def api(conn, command):
        gevent.sleep(0.2)  # the events below arrive meanwhile
        return '{"row_count":0}'

    fs = fake_fs(lambda conn: conn.handshake() and conn.serve(
        api=api, after_subscribe=lambda c: c.send(event("u1") + event("u2") + event("u3"))))
    seen = []
    sup = supervisors(fs.port, on_connected=lambda api_call: api_call("show channels as json"),
                      on_event=lambda ev: seen.append((ev.headers["Unique-ID"], sup.first_attempt.is_set())))
    assert sup.first_attempt.wait(5)
    assert seen == [("u1", False), ("u2", False), ("u3", False)]


def test_handler_exceptions_do_not_stop_the_loop(fake_fs, supervisors, caplog):
    def script(conn):
        if conn.handshake():
            conn.serve(after_subscribe=lambda c: c.send(event("u1", "CHANNEL_ANSWER") + event("u2") + event("u3")))

    fs = fake_fs(script)
    got = []

    def on_event(ev):
        got.append(ev.headers["Unique-ID"])
        if ev.headers["Unique-ID"] == "u1":
            raise KeyError("boom")

    sup = supervisors(fs.port, on_event=on_event)
    assert wait_for(lambda: len(got) == 3)
    assert got == ["u1", "u2", "u3"]
    assert sup.connected
    failure = [r for r in caplog.records if r.name == "screenpop.esl" and r.levelno == logging.ERROR]
    assert "CHANNEL_ANSWER" in failure[0].getMessage() and "u1" in failure[0].getMessage()


def test_on_connected_failure_does_not_block_events(fake_fs, supervisors):
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve(after_subscribe=lambda c: c.send(event("u1"))))
    got = []

    def on_connected(api):
        raise RuntimeError("resync bug")

    supervisors(fs.port, on_connected=on_connected, on_event=got.append)
    assert wait_for(lambda: len(got) == 1)


def test_stop_sends_exit_and_ends_quickly(fake_fs, supervisors):
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve())
    downs = []
    sup = supervisors(fs.port, on_disconnected=lambda: downs.append(1))
    assert wait_for(lambda: sup.connected)
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 0.5
    assert sup.join(0) and not sup.connected
    assert fs.conns[0].commands[-1] == "exit"
    assert downs == [1]
    assert len(fs.conns) == 1


def test_stop_dispatches_every_event_read_before_the_exit(fake_fs, supervisors):
    """SIGTERM's order: no more reading (`exit` answered), then every event already read goes to on_event."""
    many = b"".join(event(f"u{i}") for i in range(500))
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve(after_subscribe=lambda c: c.send(many)))
    gate = gevent.event.Event()
    got = []

    def on_event(ev):
        gate.wait()  # a busy consumer: everything is read, nothing dispatched yet
        got.append(ev.headers["Unique-ID"])

    sup = supervisors(fs.port, on_event=on_event)
    assert wait_for(lambda: sup.events_received == 500)
    stopping = gevent.spawn(sup.stop, 10)
    assert wait_for(lambda: fs.conns[0].commands[-1] == "exit")
    gate.set()
    stopping.join(10)
    assert stopping.dead and sup.join(0)
    assert got == [f"u{i}" for i in range(500)]


def test_stop_does_not_wait_for_a_silent_freeswitch(fake_fs, supervisors):
    def script(conn):
        if conn.handshake():
            conn.read_command()
            conn.send(reply("+OK event listener enabled plain"))
            while conn.read_command(timeout=10) is not None:
                pass

    fs = fake_fs(script)
    sup = supervisors(fs.port, command_timeout=0.3)
    assert wait_for(lambda: sup.connected)
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 1.0
    assert sup.join(0)


def test_stop_while_freeswitch_is_down(supervisors):
    sup = supervisors(1, reconnect_min=5)  # port 1: connection refused
    assert wait_for(lambda: "Connection refused" in sup.last_error)
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 0.5 and sup.join(0)


def test_keepalive_probe_notices_a_dead_connection(fake_fs, supervisors):
    def script(conn):
        if conn.handshake():
            if conn.number == 1:
                conn.read_command()
                conn.send(reply("+OK event listener enabled plain"))
                while conn.read_command(timeout=10) is not None:
                    pass  # a black hole: no events, no replies
            else:
                conn.serve()

    fs = fake_fs(script)
    supervisors(fs.port, keepalive=0.2, command_timeout=0.2, reconnect_min=0.05)
    assert fs.wait_conns(2, timeout=2)
    assert fs.conns[0].commands[-1] == "api status"


def test_a_frozen_connection_is_noticed_within_seconds_with_the_defaults(supervisors):
    """The simulator as FreeSWITCH behind a relay that freezes: the default keepalive probe notices it and
    the supervisor reconnects, well within FreeSWITCH's 20 s HEARTBEAT interval."""
    from screenpop.simulator.server import Simulator

    sim = Simulator("127.0.0.1", 0, PASSWORD)
    sim.start()
    proxy = Proxy(("127.0.0.1", sim.port))
    proxy.start()
    try:
        sup = supervisors(proxy.port, connect_timeout=5.0, command_timeout=5.0)  # [freeswitch]'s defaults
        assert wait_for(lambda: sup.connected)
        proxy.freeze()
        assert wait_for(lambda: "no reply to 'api status'" in sup.last_error and sup.connected, timeout=12), sup.last_error
    finally:
        proxy.close()
        sim.stop_listening()
        sim.close_clients(notice=False)


def test_rude_rejection(fake_fs, clients, supervisors, caplog):
    caplog.set_level(logging.WARNING, logger="screenpop.esl")
    text = b"Access Denied, go away.\n"

    def script(conn):
        conn.send(b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n" % len(text) + text)

    fs = fake_fs(script)
    client = clients(GuardedInboundESL, fs.port)
    with pytest.raises(NotConnectedError, match="refused the connection: 'Access Denied, go away.'"):
        client.connect()
    supervisors(fs.port, reconnect_min=0.05)
    assert fs.wait_conns(3)
    assert "Access Denied" in caplog.text


def test_slow_consumer_pauses_reads_but_commands_still_work(fake_fs, supervisors, monkeypatch):
    monkeypatch.setattr(GuardedInboundESL, "max_queue", 10)
    many = b"".join(event(f"u{i}") for i in range(300))
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve(after_subscribe=lambda c: c.send(many)))
    got, answers = [], []

    def on_event(ev):
        got.append(ev.headers["Unique-ID"])
        if len(got) in (1, 150):
            answers.append(sup.api("status"))  # must not deadlock with the paused reader
        gevent.sleep(0)

    sup = supervisors(fs.port, on_event=on_event)
    assert wait_for(lambda: len(got) == 300)
    assert got == [f"u{i}" for i in range(300)]
    assert answers == ["+OK", "+OK"]
    assert sup.connected


# -- malformed input: logged and skipped, the connection goes on -----------------------------------


def junk_cases():
    lying = plain_payload("liar")
    job_headers = render_headers([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "j"), ("Content-Length", "9")])
    return {
        "garbage-lines": b"hello world\n\x00\x01\xff garbage: yes\nno colon here\n\n",
        "blank-lines": b"\n\n\n\n\n",
        "no-content-type": b"Content-Length: 5\n\nabcde",
        "non-numeric-length": b"Content-Length: abc\nContent-Type: text/event-plain\n\n" + plain_payload("lost"),
        "negative-length": b"Content-Length: -5\nContent-Type: text/event-plain\n\n" + plain_payload("lost"),
        "underscore-length": b"Content-Length: 1_0\nContent-Type: text/event-plain\n\n" + plain_payload("lost"),
        "length-too-big": frame(lying, length=len(lying) + 37),
        "length-too-small": frame(lying, length=len(lying) - 25),
        "length-too-small-body": frame(job_headers + b"+OK done\n", length=len(job_headers) + 4),
        "1MB-header-block": b"X-Junk: " + b"a" * (1 << 20) + b"\nContent-Type: text/event-plain\n\n",
        "1MB-no-newline": b"\xff" * (1 << 20) + b"\n\n",
        "non-utf8-outer": b"Content-Type: text/ev\xffent-plain\nContent-Length: 3\n\n\xff\xfe\n",
        "non-utf8-name": frame(plain_payload("odd").replace(b"Core-UUID", b"Core-\xffUUID")),
        "unknown-type": b"Content-Type: text/event-xml\nContent-Length: 11\n\n<event/>\n\n\n",
        "log-data": b"Content-Type: log/data\nContent-Length: 4\n\nlog\n",
        "bad-json": frame(b"{not json", "text/event-json"),
        "json-array": frame(b"[1, 2, 3]", "text/event-json"),
        "deep-json": frame(b"[" * 200000, "text/event-json"),
        "json-non-utf8": frame(b'{"Event-Name": "CHANNEL_CREATE", "Unique-ID": "j\xff"}', "text/event-json"),
        "empty-event": b"Content-Length: 0\nContent-Type: text/event-plain\n\n",
        "unsolicited-reply": reply("+OK nobody asked"),
        "unsolicited-api-with-frames-inside": api_response(b"Content-Type: command/reply\nReply-Text: +OK\n\n"
                                                           + event("injected")),
        "linger-notice": b"Content-Type: text/disconnect-notice\nContent-Disposition: linger\n"
                         b"Content-Length: 7\n\nlinger\n",
    }


@pytest.mark.parametrize("case", sorted(junk_cases()))
def test_malformed_input_is_skipped_and_later_events_arrive(case, fake_fs, supervisors, caplog):
    junk = junk_cases()[case]
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve(
        after_subscribe=lambda c: c.send(event("before") + junk + event("after"))))
    got = []
    sup = supervisors(fs.port, on_event=got.append)
    assert wait_for(lambda: got and got[-1].headers.get("Unique-ID") == "after", 3)
    uuids = [e.headers.get("Unique-ID") for e in got]
    assert uuids[0] == "before" and "injected" not in uuids and "lost" not in uuids
    if case == "length-too-big":
        assert uuids == ["before", "liar", "after"]  # the stray bytes are read again as the next frame
    if case == "non-utf8-name":
        assert got[1].headers["Core-\ufffdUUID"] == "core-1"
    if case == "json-non-utf8":
        assert got[1].headers["Unique-ID"] == "j\ufffd"
    assert sup.connected and len(fs.conns) == 1, "the connection should have survived"
    assert sup.api("status") == "+OK"  # replies still line up


def test_all_malformed_input_at_once(fake_fs, supervisors):
    junk = b"".join(v for _, v in sorted(junk_cases().items()))
    n = 50
    stream = b"".join(junk + event(f"after-{i}") for i in range(n))
    fs = fake_fs(lambda conn: conn.handshake() and conn.serve(after_subscribe=lambda c: c.send(stream)))
    got = []
    sup = supervisors(fs.port, on_event=lambda ev: got.append(ev.headers.get("Unique-ID")))
    assert wait_for(lambda: f"after-{n - 1}" in got, 10)
    assert [u for u in got if u and u.startswith("after-")] == [f"after-{i}" for i in range(n)]
    assert sup.connected and len(fs.conns) == 1
    assert sup.esl.anomalies > 0


@pytest.mark.parametrize("cut", ["oversized-length", "eof-mid-body", "eof-mid-header"])
def test_broken_connection_reconnects_cleanly(cut, fake_fs, supervisors, caplog):
    caplog.set_level(logging.WARNING, logger="screenpop.esl")
    breaking = {
        "oversized-length": b"Content-Length: 99999999999\nContent-Type: text/event-plain\n\n",
        "eof-mid-body": event("cut")[:-20],
        "eof-mid-header": b"Content-Length: 100\nContent-Ty",
    }[cut]

    def script(conn):
        if conn.handshake():
            if conn.number == 1:
                conn.read_command()
                conn.send(reply("+OK event listener enabled plain") + event("before") + breaking)
                gevent.sleep(0.05)
                return
            conn.serve(after_subscribe=lambda c: c.send(event("after")))

    fs = fake_fs(script)
    got, downs = [], []
    supervisors(fs.port, on_event=lambda ev: got.append(ev.headers["Unique-ID"]),
                on_disconnected=lambda: downs.append(1), reconnect_min=0.05)
    assert wait_for(lambda: got == ["before", "after"], 3)
    assert downs == [1]
    assert "lost connection to FreeSWITCH" in caplog.text
    reason = {"oversized-length": "over the", "eof-mid-body": "middle of a frame body",
              "eof-mid-header": "middle of a frame"}[cut]
    assert reason in caplog.text


# -- real captures ----------------------------------------------------------------------------------


def capture_names():
    return sorted(p.name[: -len(".plain.esl")] for p in CAPTURES.glob("*.plain.esl")) if CAPTURES.is_dir() else []


def replay_script(path: Path, seed: int):
    """Serve a capture as FreeSWITCH sent it: auth/request, the two command/replies, then its events."""
    frames = capture_frames(path)
    assert [h.get("Content-Type") for h, _, _ in frames[:3]] == ["auth/request", "command/reply", "command/reply"]
    rest = b"".join(raw for _, _, raw in frames[3:])

    def script(conn):
        conn.send(frames[0][2])
        conn.read_command()
        conn.send(frames[1][2])
        conn.read_command()
        conn.send(frames[2][2])
        rng = random.Random(seed)
        pos = 0
        while pos < len(rest):  # in random pieces, so frames and blank lines straddle reads
            size = rng.choice([1, 2, 3, 17, 500, 4096, 65536])
            conn.send(rest[pos:pos + size])
            pos += size
            if rng.random() < 0.3:
                gevent.sleep(0)
        conn.serve()

    return script, len(frames) - 3


def json_truth(name: str) -> list[dict]:
    return [json.loads(body) for h, body, _ in capture_frames(CAPTURES / f"{name}.json.esl")
            if h.get("Content-Type") == "text/event-json"]


def assert_same_as_json(event, truth: dict) -> None:
    assert set(event.headers) == set(truth) - {"_body"}
    for key, value in truth.items():
        if key == "_body":
            assert event.body == value
        elif isinstance(value, list):  # ARRAY::a|:b in plain
            assert event.headers[key] == "ARRAY::" + "|:".join(value), key
        else:
            assert event.headers[key] == value, key


@needs_captures
@pytest.mark.parametrize("name", capture_names())
def test_replayed_capture_parses_like_its_json_twin(name, fake_fs, supervisors):
    script, count = replay_script(CAPTURES / f"{name}.plain.esl", seed=len(name))
    fs = fake_fs(script)
    got = []
    sup = supervisors(fs.port, events=["ALL"], on_event=got.append)
    assert wait_for(lambda: len(got) == count, 10)
    truth = json_truth(name)
    assert len(truth) == count
    for event, expected in zip(got, truth):
        assert_same_as_json(event, expected)
    assert sup.esl.anomalies == 0


@needs_captures
@pytest.mark.parametrize("name", ["transfer", "outbound-c2c", "awkward-fs"])
def test_event_json_frames_give_the_same_events(name, fake_fs, clients):
    script, count = replay_script(CAPTURES / f"{name}.json.esl", seed=1)
    fs = fake_fs(script)
    got = []
    client = clients(GuardedInboundESL, fs.port)
    client.register_handle("*", got.append)
    client.connect()
    client.send("event json ALL")
    assert wait_for(lambda: len(got) == count, 10)
    plain = [parse_event_body(body) for h, body, _ in capture_frames(CAPTURES / f"{name}.plain.esl")
             if h.get("Content-Type") == "text/event-plain"]
    for event, expected in zip(got, plain):
        assert event.content_type == "text/event-json"
        assert event.headers == expected.headers and event.body == expected.body
    assert client.anomalies == 0


class ScriptedSocket:
    """Stands in for the socket: recv returns the stream in the given piece sizes, then EOF."""

    def __init__(self, data: bytes, sizes):
        self.data, self.pos, self.sizes = data, 0, sizes

    def recv(self, n):
        size = min(n, next(self.sizes))
        chunk = self.data[self.pos:self.pos + size]
        self.pos += len(chunk)
        return chunk

    def close(self):
        pass


def read_all(data: bytes, sizes) -> tuple[list, GuardedInboundESL]:
    client = GuardedInboundESL("127.0.0.1", 0, PASSWORD, dispatch=False)
    client.sock = ScriptedSocket(data, sizes)
    client.connected = True
    client.receive_events()
    events = []
    while (item := client.next_event(0)) is not CONNECTION_LOST:
        events.append(item)
    return events, client


@needs_captures
def test_reader_handles_every_split_point():
    frames = capture_frames(CAPTURES / "outbound-c2c.plain.esl")
    job = next(i for i, (h, body, raw) in enumerate(frames) if b"BACKGROUND_JOB" in body)
    data = b"".join(raw for _, _, raw in frames[job - 1:job + 2]) + b"\n\n"
    expected = [parse_event_body(body) for _, body, _ in frames[job - 1:job + 2]]
    events, client = read_all(data, iter(lambda: 1, 0))  # one byte per recv
    assert [(e.headers, e.body) for e in events] == [(e.headers, e.body) for e in expected]
    assert client.lost_reason == "FreeSWITCH closed the connection" and client.anomalies == 0
    rng = random.Random(7)
    whole = b"".join(raw for _, _, raw in frames[3:])
    events, client = read_all(whole, iter(lambda: rng.randint(1, 9000), 0))
    assert len(events) == len(frames) - 3 and client.anomalies == 0


def test_subscription_command():
    assert subscription_command(["CHANNEL_CREATE", "CUSTOM sofia::transferee sofia::transferor callcenter::info",
                                 "CHANNEL_ANSWER", "CHANNEL_CREATE"]) == (
        "event plain CHANNEL_CREATE CHANNEL_ANSWER CUSTOM sofia::transferee sofia::transferor callcenter::info")
    assert subscription_command(["callcenter::info", "HEARTBEAT"]) == "event plain HEARTBEAT CUSTOM callcenter::info"
    assert subscription_command(["ALL"]) == "event plain ALL"
    for bad in (["CHANNEL_CREATE\nexit"], ["a;b"], []):
        with pytest.raises(ValueError):
            subscription_command(bad)


def reference_parse_headers(block: bytes, decode: bool = True) -> dict[str, str]:
    """protocol.parse_headers in its plainest form: one line at a time, every value through decode_value (which
    makes NUL U+FFFD), names as they are."""
    headers: dict[str, str] = {}
    for line in block.split(b"\n"):
        pair = line.removesuffix(b"\r").split(b": ", 1)
        if len(pair) == 2 and pair[0]:
            text = decode_value(pair[1]) if decode else pair[1].decode("utf-8", "replace").replace("\x00", "\ufffd")
            headers.setdefault(pair[0].decode("utf-8", "replace"), text)
    return headers


def test_a_nul_in_a_header_value_becomes_a_replacement_character():
    """PostgreSQL text cannot hold NUL: a caller-ID name carrying one (raw or as %00) stopped every later write."""
    expected = {"Caller-Caller-ID-Name": "Evil\ufffdName", "Unique-ID": "a"}
    for name in (b"Evil%00Name", b"Evil\x00Name"):
        block = b"Caller-Caller-ID-Name: " + name + b"\nUnique-ID: a\n"
        assert parse_headers(block) == expected
        assert parse_event_body(block + b"\n").headers == expected
    assert decode_value("x%00") == decode_value(b"x\x00") == "x\ufffd"


def test_fast_parse_headers_matches_the_reference():
    pieces = [b"%", b"=", b"0", b"A", b"a", b"f", b"G", b"z", b"\n", b"\r", b": ", b" ", b"\xc3", b"\xb3",
              b"\xff", b"%0A", b"%0d", b"%3D", b"%C3", b"%B3", b"%F", b"k", b":", b"\t", b"%%", b"==", b"_", b"=%",
              b"%00", b"\x00"]
    rng = random.Random(3)
    for _ in range(40000):
        block = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 24)))
        for decode in (True, False):
            assert parse_headers(block, decode) == reference_parse_headers(block, decode), block
        expected = reference_parse_headers(block)
        lazy = Headers(block + b"\n\nbody: x", len(block))  # lookups stop where the header block ends
        for key in [*expected, "k", "A", "a", "body", "", "a\nb", "k: k", "\ufffd"]:
            assert lazy.get(key) == expected.get(key), (block, key)
            assert (key in lazy) == (key in expected)
        assert lazy == expected and list(lazy) == list(expected) and len(lazy) == len(expected)
    if CAPTURES.is_dir():
        for h, body, _ in capture_frames(CAPTURES / "awkward-fs.plain.esl"):
            assert parse_headers(body) == reference_parse_headers(body)
    assert unquote_to_bytes(b"%zz") == b"%zz"  # the reference keeps invalid escapes; so does the fast path
    assert parse_headers(b"A: %zz%4%\nB: a=b%3D\n") == {"A": "%zz%4%", "B": "a=b="}
    assert len(protocol._decoded) <= protocol._DECODED_MAX  # the cache of decoded values stays bounded
