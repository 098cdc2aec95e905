"""FreeSWITCH event socket client: greenswitch's InboundESL made safe, and a supervisor that keeps it connected.

greenswitch 0.0.19 (required by the product brief) has defects that this module overrides:

a. it URL-decodes a whole event before splitting it into lines, so a '%0A' inside a value (a caller-ID
   name, say) forges headers: here lines are split first and each value is decoded on its own
   (protocol.FrameSplitter and parse_headers, and protocol.Headers, which finds the few headers read in the raw lines);
b. it mis-parses events that carry a body (BACKGROUND_JOB: inner Content-Length, blank line, body);
c. raw non-UTF-8 bytes, or an `event json` frame, kill its reader greenlet;
d. a connection cut in the middle of a body makes its _read_socket loop on empty reads forever, at
   100% CPU, without ever yielding to the gevent hub;
e. send() waits forever for a reply that never comes, and pending commands are never failed when the
   connection drops;
f. it never reconnects.

GuardedInboundESL keeps greenswitch's interface (connect, send, register_handle, stop) and replaces the
reader, the frame dispatch and send(). EslSupervisor owns the connection lifecycle: connect,
authenticate, subscribe, let the consumer resync (on_connected) before any event is dispatched, dispatch
events in order, and reconnect with exponential backoff.
"""
from __future__ import annotations

import collections
import logging
import re
import socket as _socket
import time
import uuid
from typing import Callable, Iterable

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket
from greenswitch.esl import InboundESL, NotConnectedError

from screenpop.daemon.pbx import protocol
from screenpop.daemon.pbx.protocol import Event, Headers, parse_event_json

log = logging.getLogger("screenpop.esl")

__all__ = [
    "AuthenticationError",
    "CommandReply",
    "CommandTimeoutError",
    "CONNECTION_LOST",
    "EslSupervisor",
    "JobTimeoutError",
    "GuardedInboundESL",
    "NotConnectedError",
    "SubscriptionError",
    "subscription_command",
]


class CommandTimeoutError(NotConnectedError, TimeoutError):
    """FreeSWITCH did not answer a command in time; the connection was dropped (a late reply would be
    taken for the answer to the next command)."""


class JobTimeoutError(TimeoutError):
    """A bgapi job's BACKGROUND_JOB did not come in time; the connection stays up (FreeSWITCH may still run it)."""


class AuthenticationError(NotConnectedError, ValueError):
    """FreeSWITCH rejected the ESL password (a ValueError, as greenswitch's own 'Invalid password.')."""


class SubscriptionError(NotConnectedError):
    """FreeSWITCH refused the `event plain ...` subscription."""


class _ConnectionClosed(Exception):
    """The reader's way of ending: the peer closed, cut a frame short, or broke the protocol beyond repair."""


class _Lost:
    def __repr__(self) -> str:
        return "CONNECTION_LOST"


CONNECTION_LOST = _Lost()
"""Queued after the last event of a connection: GuardedInboundESL.next_event returns it once the connection is gone."""

_COMMAND_TYPES = ("command/reply", "api/response")
_MAX_LOGGED_ANOMALIES = 20


class CommandReply:
    """FreeSWITCH's answer to one command: a command/reply (Reply-Text) or an api/response (body)."""

    __slots__ = ("headers", "body", "content_type")

    def __init__(self, headers: dict[str, str], body: str = "", content_type: str = "command/reply"):
        self.headers = headers
        self.body = body
        self.content_type = content_type

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def ok(self) -> bool:
        """True for '+OK ...' replies and for api responses that do not start with '-ERR' / '-USAGE'."""
        if self.content_type == "api/response":
            return not self.body.startswith(("-ERR", "-USAGE"))
        return self.reply_text.startswith("+OK")

    @property
    def data(self) -> str:
        """What greenswitch puts in its reply's .data: the Reply-Text, or an api response's body."""
        return self.body if self.content_type == "api/response" else self.reply_text

    def __repr__(self) -> str:
        return f"CommandReply({self.content_type}, {self.data[:60]!r})"


def _describe(command: str) -> str:
    """A command as it may be logged: its first line, cut short, never a password."""
    first = command.split("\n", 1)[0]
    if first.startswith("auth ") or first.startswith("userauth "):
        return first.split(" ", 1)[0] + " ***"
    return first if len(first) <= 80 else first[:77] + "..."


def _text(data: bytes, limit: int = 200) -> str:
    """Bytes from the wire shortened and made printable for a log line."""
    text = data[:limit].decode("utf-8", "replace")
    return repr(text) if len(data) <= limit else repr(text) + "..."


def _tune_socket(sock) -> None:
    """Small commands go out at once; TCP keepalive notices a peer that vanished without a FIN."""
    for level, option, value in (
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_NODELAY", None), 1),
        (_socket.SOL_SOCKET, getattr(_socket, "SO_KEEPALIVE", None), 1),
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPIDLE", None), 30),
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPINTVL", None), 10),
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPCNT", None), 3),
    ):
        if option is not None:
            try:
                sock.setsockopt(level, option, value)
            except OSError:
                pass


def _parse_plain(body: bytes) -> tuple[Event | None, int, str]:
    """Parse a text/event-plain payload strictly.

    Returns (event or None, stray byte count, problem). FreeSWITCH ends an event's headers with a blank
    line and, when the event has a body, announces it with an inner Content-Length. Stray bytes after
    that mean the outer Content-Length was too big: they are the start of the next frame, and the reader
    reads them again. A payload without the blank line, or shorter than its inner Content-Length, was
    cut by a too-small outer Content-Length and is dropped.
    """
    end = body.find(b"\n\n")
    if end < 0:
        return None, 0, "event without the blank line that ends its headers (outer Content-Length too small?)"
    headers = Headers(body, end)
    rest = len(body) - end - 2
    inner = headers.get("Content-Length")
    if inner is None:
        return Event(headers=headers), rest, ""
    if not (inner.isascii() and inner.isdigit()):
        return Event(headers=headers, body=body[end + 2 :].decode("utf-8", "replace")), 0, ""
    length = int(inner)
    if length > rest:
        return None, 0, f"event body shorter ({rest} bytes) than its inner Content-Length {length}"
    return Event(headers=headers, body=body[end + 2 : end + 2 + length].decode("utf-8", "replace")), rest - length, ""


class GuardedInboundESL(InboundESL):
    """greenswitch's InboundESL with a safe reader, command timeouts and a clean end of connection.

    Drop-in for greenswitch: connect(), send(), register_handle(name, handler) (handlers run in order in
    one greenlet, as in greenswitch), stop(). With dispatch=False no handler greenlet runs and the owner
    takes events itself with next_event() (that is what EslSupervisor does). One instance serves one
    connection: after the connection is lost, make a new one.
    """

    recv_size = 64 * 1024
    max_queue = 20000
    """Queued events above which the reader stops reading (TCP then pushes back on FreeSWITCH), unless a
    command waits for its reply: the reply has to be read."""

    def __init__(self, host: str, port: int, password: str, timeout: float = 5,
                 command_timeout: float | None = 5.0, dispatch: bool = True):
        super().__init__(host, port, password, timeout=timeout)
        self.command_timeout = command_timeout
        self.dispatch = dispatch
        self.sock = None
        self.sock_file = None
        self._commands_sent = collections.deque()
        self.jobs: dict[str, gevent.event.AsyncResult] = {}  # bgapi Job-UUID -> its BACKGROUND_JOB body
        self._send_lock = gevent.lock.Semaphore()
        self._resume = gevent.event.Event()
        self._paused = False
        self._lost = False
        self.lost_reason = ""
        self.events_received = 0
        self.events_before_reply = 0
        self.anomalies = 0

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("lost: " + self.lost_reason if self._lost else "new")
        return f"<GuardedInboundESL {self.host}:{self.port} {state}>"

    # -- connection ---------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, wait for auth/request and authenticate, all within the timeouts; NotConnectedError else."""
        if self._lost or self.sock is not None:
            raise NotConnectedError("this GuardedInboundESL was already used; make a new one to reconnect")
        where = f"{self.host}:{self.port}"
        try:
            sock = gevent.socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            reason = "timed out" if isinstance(exc, _socket.timeout) else (exc.strerror or str(exc))
            raise NotConnectedError(f"cannot connect to {where}: {reason}") from None
        if self._lost:  # stopped while connecting
            sock.close()
            raise NotConnectedError(self.lost_reason)
        sock.settimeout(None)
        _tune_socket(sock)
        self.sock = sock
        self.connected = True
        self._run = True
        self.start_event_handlers()
        if not self._auth_request_event.wait(self.timeout):
            self._connection_lost(f"no auth/request from {where} within {self.timeout:g} s")
        if not self.connected:
            raise NotConnectedError(self.lost_reason)
        self.authenticate()

    def authenticate(self) -> None:
        if "\n" in self.password or "\r" in self.password:
            self._connection_lost("the ESL password contains a line break")
            raise AuthenticationError("the ESL password contains a line break")
        reply = self.send(f"auth {self.password}")
        if not reply.ok:
            self._connection_lost("FreeSWITCH rejected the ESL password")
            raise AuthenticationError("FreeSWITCH rejected the ESL password")

    def start_event_handlers(self) -> None:
        self._receive_events_greenlet = gevent.spawn(self.receive_events)
        if self.dispatch:
            self._process_events_greenlet = gevent.spawn(self.process_events)

    def stop(self, timeout: float | None = None) -> None:
        """Say `exit` if connected (within timeout, default min(command_timeout, 2 s)), then close."""
        if self.connected:
            if timeout is None:
                timeout = min(self.command_timeout or 2.0, 2.0)
            try:
                self.send("exit", timeout=timeout)
            except (NotConnectedError, OSError):
                pass
        self.close("stopped")
        current = gevent.getcurrent()
        for greenlet in (self._receive_events_greenlet, self._process_events_greenlet):
            if greenlet is not None and greenlet is not current:
                greenlet.join(1.0)
                if not greenlet.dead:
                    greenlet.kill(block=False)

    def close(self, reason: str = "closed") -> None:
        """Drop the connection now, without `exit`."""
        self._connection_lost(reason)

    def _connection_lost(self, reason: str) -> None:
        """Once per connection: fail every pending command at once, close, queue CONNECTION_LOST."""
        if self._lost:
            return
        self._lost = True
        self.connected = False
        self._run = False
        self.lost_reason = reason
        log.debug("connection to FreeSWITCH %s:%s ended: %s", self.host, self.port, reason)
        pending = list(self._commands_sent) + list(self.jobs.values())
        self._commands_sent.clear()
        self.jobs.clear()
        for result in pending:
            result.set_exception(NotConnectedError(f"connection to FreeSWITCH lost: {reason}"))
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self._auth_request_event.set()
        self._resume.set()
        self._esl_event_queue.put(CONNECTION_LOST)
        reader = self._receive_events_greenlet
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill(block=False)

    # -- commands -----------------------------------------------------------------------------------

    def send(self, data: str, timeout: float | None = None) -> CommandReply:
        """Send one command and wait for its reply, at most timeout seconds (default command_timeout).

        No reply in time: the connection is dropped (every later reply would be matched to the wrong
        command) and CommandTimeoutError raised. Connection gone before the reply: NotConnectedError.
        """
        if "\r" in data or "\n\n" in data or data.startswith("\n") or data.endswith("\n"):
            raise ValueError("an ESL command cannot contain a blank line, a CR, or start or end with a newline")
        if not self.connected:
            raise NotConnectedError(self.lost_reason or "not connected to FreeSWITCH")
        if timeout is None:
            timeout = self.command_timeout
        result = gevent.event.AsyncResult()
        raw = (data + "\n\n").encode("utf-8")
        timer = gevent.Timeout(timeout) if timeout else None
        if timer is not None:
            timer.start()
        try:
            with self._send_lock:
                if not self.connected:
                    raise NotConnectedError(self.lost_reason or "not connected to FreeSWITCH")
                self._commands_sent.append(result)
                if self._paused:
                    self._resume.set()
                self.sock.sendall(raw)
            return result.get()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            what = _describe(data)
            self._connection_lost(f"no reply to '{what}' within {timeout:g} s")
            raise CommandTimeoutError(
                f"FreeSWITCH did not answer '{what}' within {timeout:g} s; connection dropped"
            ) from None
        except OSError as exc:
            self._connection_lost(f"cannot send '{_describe(data)}': {exc.strerror or exc}")
            raise NotConnectedError(self.lost_reason) from None
        finally:
            if timer is not None:
                timer.close()

    def bgapi(self, command: str, timeout: float) -> str:
        """Run `bgapi <command>` and wait up to timeout seconds for its BACKGROUND_JOB; the job's answer (its body).

        The Job-UUID is ours, sent with the command, so the answer cannot arrive before anyone waits for it.
        No answer in time: JobTimeoutError, the connection kept. Connection gone: NotConnectedError.
        """
        job = str(uuid.uuid4())
        result = gevent.event.AsyncResult()
        self.jobs[job] = result
        try:
            reply = self.send(f"bgapi {command}\nJob-UUID: {job}")
            if not reply.ok:
                raise NotConnectedError(f"FreeSWITCH refused the job: {reply.reply_text[:200]}")
            try:
                return result.get(timeout=timeout)
            except gevent.Timeout:
                raise JobTimeoutError(f"FreeSWITCH did not finish '{_describe(command)}' within {timeout:g} s") from None
        finally:
            self.jobs.pop(job, None)

    # -- events -------------------------------------------------------------------------------------

    def next_event(self, timeout: float | None = None):
        """The next event in arrival order; CONNECTION_LOST once the connection is gone (and on every
        call after that); None if timeout seconds pass without one."""
        queue = self._esl_event_queue
        try:
            item = queue.get(timeout=timeout)
        except gevent.queue.Empty:
            return None
        if item is CONNECTION_LOST:
            queue.put(item)
        if self._paused and queue.qsize() < self.max_queue // 2:
            self._resume.set()
        return item

    def process_events(self) -> None:
        """dispatch=True: hand each event to the handlers registered for its name (or '*'), in order."""
        while True:
            event = self.next_event()
            if event is CONNECTION_LOST:
                return
            handlers = self.event_handlers.get(event.name) or self.event_handlers.get("*")
            for handler in list(handlers or ()):
                try:
                    handler(event)
                except Exception:
                    log.exception("ESL handler %s failed on %s (Unique-ID %s)",
                                  getattr(handler, "__name__", handler), event.name, event.get("Unique-ID"))

    # -- the reader ---------------------------------------------------------------------------------

    def receive_events(self) -> None:
        """The reader greenlet: read frames until the connection ends, then fail everything pending."""
        try:
            self._read_frames()
        except _ConnectionClosed as exc:
            reason = str(exc)
        except OSError as exc:
            reason = f"socket error: {exc.strerror or exc}"
        except Exception:
            log.exception("ESL reader failed; dropping the connection")
            reason = "internal error in the ESL reader"
        self._connection_lost(reason)

    def _anomaly(self, message: str, *args) -> None:
        """Log something odd on the wire; past the first few per connection only at debug level."""
        self.anomalies += 1
        if self.anomalies <= _MAX_LOGGED_ANOMALIES:
            log.warning("FreeSWITCH %s:%s: " + message, self.host, self.port, *args)
            if self.anomalies == _MAX_LOGGED_ANOMALIES:
                log.warning("further protocol anomalies on this connection are logged at debug level")
        else:
            log.debug("FreeSWITCH %s:%s: " + message, self.host, self.port, *args)

    def _make_room(self) -> None:
        """Called before each recv while events are queued: let the consumer run (the reader would
        otherwise never yield while data keeps coming) and stop reading when it falls far behind."""
        queue = self._esl_event_queue
        if queue.qsize() >= self.max_queue and not self._commands_sent:
            log.warning("%d events waiting: the consumer is falling behind; pausing reads from FreeSWITCH",
                        queue.qsize())
            while queue.qsize() >= self.max_queue // 2 and not self._commands_sent and not self._lost:
                self._paused = True
                self._resume.clear()
                self._resume.wait()
            self._paused = False
        else:
            gevent.sleep(0)

    def _read_frames(self) -> None:
        """Read frames with protocol.FrameSplitter and act on each; a long body is read in reads of its size."""
        recv = self.sock.recv
        size = self.recv_size
        queue = self._esl_event_queue
        splitter = protocol.FrameSplitter()
        frames = splitter.frames
        handle = self._handle_frame
        while True:
            missing = splitter.missing
            if queue.qsize() and not missing:  # a body half read is read through first, as it always was
                self._make_room()
            chunk = recv(min(max(size, missing), 1 << 20) if missing else size)
            if not chunk:
                if missing:
                    raise _ConnectionClosed("FreeSWITCH closed the connection in the middle of a frame body")
                if splitter.tail().strip():
                    raise _ConnectionClosed("FreeSWITCH closed the connection in the middle of a frame")
                raise _ConnectionClosed("FreeSWITCH closed the connection")
            splitter.feed(chunk)
            try:
                for frame in frames():
                    if frame.problem:
                        self._anomaly("%s", frame.problem)
                        continue
                    back = handle(frame.headers, frame.body)
                    if back:
                        splitter.unread(back)
            except protocol.FrameError as exc:
                raise _ConnectionClosed(f"{exc}; dropping the connection") from None

    def _event_in(self, event: Event) -> None:
        """Queue an event for dispatch; the BACKGROUND_JOB of a job bgapi() waits for goes to it instead."""
        self.events_received += 1
        if self.jobs and event.headers.get("Event-Name") == "BACKGROUND_JOB":
            job = self.jobs.pop(event.headers.get("Job-UUID") or "", None)
            if job is not None:
                job.set(event.body)
                return
        self._esl_event_queue.put(event)

    def _handle_frame(self, headers: dict[str, str], body: bytes) -> int:
        """Act on one frame; returns how many bytes at the end of its body belong to the next frame."""
        kind = headers.get("Content-Type")
        if kind == "text/event-plain":
            event, stray, problem = _parse_plain(body)
            if event is not None:
                self._event_in(event)
            if problem:
                self._anomaly("%s: dropped %s", problem, _text(body, 120))
            if stray:
                self._anomaly("event-plain frame %d bytes longer than its event (outer Content-Length too big?); "
                              "reading those bytes as the next frame", stray)
            return stray
        if kind in _COMMAND_TYPES:
            if not self._commands_sent:
                self._anomaly("%s with no command waiting for it: ignored (%s)", kind,
                              _text(body) if body else headers.get("Reply-Text", "")[:80])
                return 0
            text = body.decode("utf-8", "replace")
            self.events_before_reply = self.events_received
            self._commands_sent.popleft().set(CommandReply(headers, text, kind))
            return 0
        if kind == "text/event-json":
            event, problem = parse_event_json(body)
            if event is None:
                self._anomaly("%s: dropped %s", problem, _text(body, 120))
            else:
                self._event_in(event)
            return 0
        if kind == "auth/request":
            self._auth_request_event.set()
            return 0
        if kind == "text/disconnect-notice":
            if headers.get("Content-Disposition") == "linger":
                self._lingering = True
                log.debug("FreeSWITCH %s:%s: linger: %s", self.host, self.port, _text(body))
                return 0
            raise _ConnectionClosed("FreeSWITCH ended the session (disconnect notice)")
        if kind == "text/rude-rejection":
            text = body.decode("utf-8", "replace").strip()
            raise _ConnectionClosed(f"FreeSWITCH refused the connection: {text[:200]!r} "
                                    "(is this host allowed by event_socket.conf's apply-inbound-acl?)")
        if kind == "log/data":
            log.debug("FreeSWITCH %s:%s: ignoring log/data frame", self.host, self.port)
            return 0
        if kind is None:
            self._anomaly("header block without Content-Type skipped: %s", _text(b"\n".join(
                f"{k}: {v}".encode() for k, v in list(headers.items())[:4]) or b"(no headers)", 120))
            return 0
        log.debug("FreeSWITCH %s:%s: ignoring a %r frame", self.host, self.port, kind[:60])
        return 0


_EVENT_WORD = re.compile(r"[A-Za-z0-9_.:\-]+")


def subscription_command(events: Iterable[str], fmt: str = "plain") -> str:
    """The `event plain ...` command for a list of event names.

    Items may hold several words. 'CUSTOM' and any word holding '::' are custom subclasses: FreeSWITCH
    reads every word after CUSTOM as a subclass, so those go last, after one CUSTOM:
    ['CHANNEL_CREATE', 'CUSTOM sofia::transferee', 'callcenter::info', 'CHANNEL_ANSWER'] ->
    'event plain CHANNEL_CREATE CHANNEL_ANSWER CUSTOM sofia::transferee callcenter::info'.
    """
    names: list[str] = []
    subclasses: list[str] = []
    custom = False
    for item in events:
        if "\n" in item or "\r" in item:
            raise ValueError(f"not an event name: {item!r}")
        after_custom = False
        for word in item.split():
            if not _EVENT_WORD.fullmatch(word):
                raise ValueError(f"not an event name: {word!r}")
            if word == "CUSTOM":
                custom = after_custom = True
            elif after_custom or "::" in word:
                custom = True
                if word not in subclasses:
                    subclasses.append(word)
            elif word not in names:
                names.append(word)
    if not names and not custom:
        raise ValueError("no events to subscribe to")
    return " ".join(["event", fmt, *names, *(["CUSTOM", *subclasses] if custom else [])])


def _secs(value: float) -> str:
    return f"{value:.3g}"


_REPEAT_LOG_EVERY = 60.0  # seconds: how often the same failure is logged again at its own level


class EslSupervisor:
    """Keeps one ESL connection to FreeSWITCH alive and feeds its events, in order, to on_event.

    Each connection: connect (connect_timeout) -> authenticate -> subscribe to `events` ->
    on_connected(api) -> events to on_event(event) until the connection ends -> on_disconnected().
    A connection that stayed up stable_after seconds is retried at once when it drops; a failed attempt
    (or a connection that dropped sooner) is retried after reconnect_min seconds, doubling up to
    reconnect_max while attempts keep failing.

    on_connected runs before any event of that connection is dispatched (they wait in the queue), so the
    consumer can resync from api('show channels as json') first. api(cmd) runs `api <cmd>` with
    command_timeout and returns the response body. An exception in on_event is logged with the event's
    Event-Name and Unique-ID and the loop goes on. After keepalive seconds without any event, an
    `api status` probes the connection and must be answered within min(keepalive, command_timeout), so a
    frozen connection is noticed within keepalive + min(keepalive, command_timeout) seconds. stop() ends
    the connection with `exit`, then dispatches every event read before it closed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        events: list[str],
        on_event: Callable[[Event], None],
        on_connected: Callable[[Callable[[str], str]], None] | None = None,
        on_disconnected: Callable[[], None] | None = None,
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 10.0,
        stable_after: float = 1.0,
        keepalive: float | None = 2.0,
    ):
        self.host = host
        self.port = int(port)
        self._password = password
        self.subscription = subscription_command(events)
        self.on_event = on_event
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = max(reconnect_max, reconnect_min)
        self.stable_after = stable_after
        self.keepalive = keepalive
        self.esl: GuardedInboundESL | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False
        self._wake = gevent.event.Event()
        self.first_attempt = gevent.event.Event()
        """Set once the first connection attempt is over: subscribed, on_connected done and the events that came
        before its last command's reply dispatched (the consumer's resync is complete), or failed."""
        self._up = False
        self.events_dispatched = 0  # the runtime's stop line says how many events were tracked
        self._dispatched_here = 0
        self._events_earlier = 0
        self.last_error = ""  # the last failure, for systemd's STATUS line while FreeSWITCH is out of reach
        self._logged_failure = ("", 0.0)

    def __repr__(self) -> str:
        return f"<EslSupervisor {self.address} {'connected' if self.connected else 'not connected'}>"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """Connected, authenticated and subscribed."""
        return self._up and self.esl is not None and self.esl.connected

    @property
    def serving(self) -> bool:
        """A connection is up, or the events it read are still being dispatched: the consumer can still hear how
        its calls go on. False between connections, before the first and after the last (events can tell nothing)."""
        return self._up

    @property
    def events_received(self) -> int:
        current = self.esl.events_received if self.esl is not None and self._up else 0
        return self._events_earlier + current

    @property
    def backlog(self) -> int:
        """Events that arrived on this connection before the last command's reply and are not dispatched yet.

        In on_connected, after api('show channels as json'): the events that happened before that snapshot.
        """
        if self.esl is None or not self._up:
            return 0
        return max(0, self.esl.events_before_reply - self._dispatched_here)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> "EslSupervisor":
        """Run the connection loop in its own greenlet."""
        if self._greenlet is None or self._greenlet.dead:
            self._stopping = False
            self._wake.clear()
            self._greenlet = gevent.spawn(self.run)
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop to end; True if it did."""
        if self._greenlet is None:
            return True
        self._greenlet.join(timeout)
        return self._greenlet.dead

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop: `exit` to FreeSWITCH if connected (within the command timeout), so nothing more is
        read; close; then wait up to timeout seconds while the events already read are dispatched."""
        self._stopping = True
        self._wake.set()
        esl = self.esl
        if esl is not None:
            esl.stop(timeout=min(self.command_timeout, timeout))
        greenlet = self._greenlet
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.join(timeout)
            if not greenlet.dead:
                left = esl._esl_event_queue.qsize() if esl is not None else 0
                log.error("ESL supervisor did not stop within %s s; killing it with %d event(s) not processed",
                          _secs(timeout), max(0, left - 1))
                greenlet.kill(block=True, timeout=1.0)

    def api(self, command: str, timeout: float | None = None) -> str:
        """Run `api <command>` on the current connection; the response body. NotConnectedError (or its
        subclass CommandTimeoutError) if there is no connection or no answer in time."""
        if "\n" in command or "\r" in command:
            raise ValueError("an api command must be a single line")
        esl = self.esl
        if esl is None or not esl.connected:
            raise NotConnectedError("not connected to FreeSWITCH")
        return esl.send("api " + command, timeout=timeout).body

    def bgapi(self, command: str, timeout: float) -> str:
        """Run `bgapi <command>` on the current connection and wait up to timeout seconds for the job's answer
        (e.g. '+OK <uuid>' or '-ERR USER_NOT_REGISTERED'); `events` must include BACKGROUND_JOB. NotConnectedError
        without a connection or when it goes; JobTimeoutError when the answer does not come in time."""
        if "\n" in command or "\r" in command:
            raise ValueError("a bgapi command must be a single line")
        esl = self.esl
        if esl is None or not self.connected:
            raise NotConnectedError("not connected to FreeSWITCH")
        return esl.bgapi(command, timeout)

    def run(self) -> None:
        """The connection loop, in the calling greenlet, until stop()."""
        delay = self.reconnect_min
        while not self._stopping:
            esl = GuardedInboundESL(self.host, self.port, self._password, timeout=self.connect_timeout,
                                    command_timeout=self.command_timeout, dispatch=False)
            self.esl = esl
            try:
                esl.connect()
                reply = esl.send(self.subscription)
                if not reply.ok:
                    raise SubscriptionError(f"FreeSWITCH refused '{self.subscription}': {reply.reply_text}")
            except AuthenticationError as exc:
                esl.close("authentication failed")
                if self._stopping:
                    break
                self._failed(logging.ERROR, str(exc),
                             f"{exc} ({self.address}); check the [freeswitch] password or password_file; "
                             f"retrying in {_secs(delay)} s")
            except SubscriptionError as exc:
                esl.close("subscription refused")
                if self._stopping:
                    break
                self._failed(logging.ERROR, str(exc), f"{exc}; retrying in {_secs(delay)} s")
            except (NotConnectedError, OSError) as exc:
                esl.close(str(exc))
                if self._stopping:
                    break
                reason = str(exc).removeprefix(f"cannot connect to {self.address}: ")
                self._failed(logging.WARNING, str(exc),
                             f"cannot connect to FreeSWITCH {self.address}: {reason}; retrying in {_secs(delay)} s")
            except Exception as exc:  # a bug must not end the supervisor: log it and try again later
                esl.close("internal error")
                if self._stopping:
                    break
                log.exception("unexpected error while connecting to FreeSWITCH %s; retrying in %s s",
                              self.address, _secs(delay))
                self.last_error = f"internal error: {exc!r}"[:200]
            else:
                up_at = time.monotonic()
                self._serve(esl)
                if self._stopping:
                    break
                if time.monotonic() - up_at >= self.stable_after:
                    delay = 0.0  # it was working: try again at once, back off only if that fails
                self.last_error = esl.lost_reason
                self._logged_failure = ("", 0.0)
                log.warning("lost connection to FreeSWITCH %s (%s); %s", self.address, esl.lost_reason,
                            f"retrying in {_secs(delay)} s" if delay else "reconnecting now")
            self.first_attempt.set()
            self._wake.wait(delay)
            delay = min(max(delay * 2, self.reconnect_min), self.reconnect_max)
        self.first_attempt.set()
        esl = self.esl
        if esl is not None:
            esl.close("stopped")

    def _failed(self, level: int, error: str, message: str) -> None:
        """Note and log a failed attempt; the same failure again within a minute only at debug level."""
        self.last_error = error
        now = time.monotonic()
        last_error, last_at = self._logged_failure
        if error == last_error and now - last_at < _REPEAT_LOG_EVERY:
            level = logging.DEBUG
        else:
            self._logged_failure = (error, now)
        log.log(level, "%s", message)

    def _serve(self, esl: GuardedInboundESL) -> None:
        """One established connection: on_connected, then events in order until it ends."""
        self._up = True
        self._dispatched_here = 0
        log.info("connected to FreeSWITCH %s", self.address)
        try:
            if self.on_connected is not None:
                try:
                    self.on_connected(self.api)
                except NotConnectedError as exc:
                    log.log(logging.INFO if self._stopping else logging.WARNING,
                            "connection to FreeSWITCH %s lost while resyncing: %s", self.address, exc)
                except Exception:
                    log.exception("on_connected failed; dispatching events anyway")
            self._dispatch(esl)
        finally:
            self._up = False
            self._events_earlier += esl.events_received
            if self.on_disconnected is not None:
                try:
                    self.on_disconnected()
                except Exception:
                    log.exception("on_disconnected failed")

    def _dispatch(self, esl: GuardedInboundESL) -> None:
        """Events in arrival order until the connection ends, including those read before a stop closed it."""
        on_event = self.on_event
        keepalive = self.keepalive or None
        probe_timeout = min(keepalive, self.command_timeout) if keepalive else None
        next_event = esl.next_event
        first = self.first_attempt
        while True:
            if not first.is_set() and not self.backlog:
                first.set()
            event = next_event(keepalive)
            if event is CONNECTION_LOST:
                return
            if event is None:  # quiet for `keepalive` seconds: is anybody there?
                try:
                    esl.send("api status", timeout=probe_timeout)
                except NotConnectedError:
                    pass
                continue
            self.events_dispatched += 1
            self._dispatched_here += 1
            try:
                on_event(event)
            except Exception:
                subclass = event.headers.get("Event-Subclass")
                log.exception("event handler failed on %s%s (Unique-ID %s); carrying on",
                              event.headers.get("Event-Name", "?"), f" {subclass}" if subclass else "",
                              event.headers.get("Unique-ID", "-"))
