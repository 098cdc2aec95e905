"""The daemon's push stream: Server-Sent Events over one long HTTP GET, reconnected for ever.

`GET {server}/api/v1/events` with `Authorization: Bearer <token>`, `Accept-Language` (the tray's language, which
the daemon writes the pops in unless the operator's own setting says otherwise) and, after the first connection,
`Last-Event-ID`, so pops sent while the connection was down are replayed by the daemon. Parsing follows the
WHATWG event-stream rules (CR, LF or CRLF line ends, possibly split across reads; `data` lines joined with
newlines; comments; `id`; `retry`). Standard library only, and not even http.client: the connection is
tray/http.py's plain-socket GET, so a tray on a plain-http daemon never loads ssl, http.client or email.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from screenpop.tray import http

log = logging.getLogger("screenpop.tray.stream")

MIN_BACKOFF = 0.5
MAX_BACKOFF = 10.0
UNAUTHORIZED_DELAY = 30.0  # a wrong or revoked token will not fix itself quickly
READ_TIMEOUT = 45.0  # no byte (not even a keepalive) for this long: the connection is dead
HEALTHY_AFTER = 5.0  # a connection that lived this long resets the backoff
MAX_LINE = 1 << 20


@dataclass(frozen=True)
class Message:
    """One dispatched event."""

    event: str
    data: str
    id: str | None  # the last event id in force when it was dispatched


class SSEParser:
    """Incremental event-stream parser: feed bytes, get messages. Keeps `last_id` and `retry` (ms)."""

    def __init__(self, last_id: str | None = None) -> None:
        self.last_id = last_id  # the "last event ID string": set when a blank line dispatches
        self._id_buffer = last_id
        self.retry: int | None = None
        self._buf = b""
        self._skip_lf = False  # the previous chunk ended in CR; an LF first in the next one belongs to it
        self._first = True
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[Message]:
        """Messages completed by this chunk, in order."""
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buf = self._buf + chunk
        start = 0
        n = len(buf)
        while True:
            cr = buf.find(b"\r", start)
            lf = buf.find(b"\n", start)
            if cr < 0 and lf < 0:
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            line = buf[start:end]
            if buf[end:end + 1] == b"\r":
                if end + 1 < n:
                    start = end + 2 if buf[end + 1:end + 2] == b"\n" else end + 1
                else:
                    start = end + 1
                    self._skip_lf = True
            else:
                start = end + 1
            msg = self.line(line.decode("utf-8", errors="replace"))
            if msg is not None:
                yield msg
        self._buf = buf[start:]
        if len(self._buf) > MAX_LINE:
            raise ValueError(f"event-stream line longer than {MAX_LINE} bytes")

    def line(self, line: str) -> Message | None:
        """Process one line without its line end; a blank line dispatches."""
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment: a keepalive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> Message | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        self.last_id = self._id_buffer
        if not data:
            return None
        return Message(event or "message", "\n".join(data), self.last_id)


class Unauthorized(Exception):
    """401/403: the token is wrong or was revoked."""


class EventStream:
    """Keeps one SSE connection to the daemon open from a thread of its own and hands every message to
    `on_message`. `on_state(state, detail)` is told "connecting", "connected", "disconnected" or
    "unauthorized". Backoff between attempts: the server's `retry` (else 0.5 s) after a connection that was
    healthy, doubling on each failure to 10 s; 30 s after a 401."""

    def __init__(
        self,
        server: str,
        token: Callable[[], str],
        on_message: Callable[[Message], None],
        on_state: Callable[[str, str], None] = lambda state, detail: None,
        path: str = "/api/v1/events",
        on_batch: Callable[[list[Message], bool], None] | None = None,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        unauthorized_delay: float = UNAUTHORIZED_DELAY,
        read_timeout: float = READ_TIMEOUT,
        language: str | None = None,
    ) -> None:
        """language: what the pops should be written in (Accept-Language; None: the daemon's choice)."""
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {server!r}")
        self._host = parts.hostname
        self._url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"
        self._token = token
        self._on_message = on_message
        # when set, gets each read's messages at once, and whether they are the replay after a reconnect (the
        # first messages on a connection opened with Last-Event-ID; the daemon writes its backlog at once)
        self._on_batch = on_batch
        self._language = language
        self._on_state = on_state
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.unauthorized_delay = unauthorized_delay
        self.read_timeout = read_timeout
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self.state = "idle"
        self._lock = threading.Lock()
        # the current connection, kept here for stop/reconnect to shut its socket down from another thread
        self._conn: http.Connection | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- control, from any thread --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="sse", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._abort()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def reconnect(self) -> None:
        """Drop the connection (if any) and connect again now, without waiting out a backoff."""
        self._wake.set()
        self._abort()

    def _abort(self) -> None:
        with self._lock:
            conn = self._conn
        if conn is not None:
            conn.shutdown()

    # ---- the loop ------------------------------------------------------------------------------

    def _set_state(self, state: str, detail: str = "") -> None:
        self.state = state
        try:
            self._on_state(state, detail)
        except Exception:  # noqa: BLE001 - a display problem must not end the stream
            log.exception("state handler failed")

    def run(self) -> None:
        backoff = self.min_backoff
        while not self._stop.is_set():
            self._wake.clear()
            started = time.monotonic()
            delivered = False
            try:
                self._set_state("connecting", self._host)
                delivered = self._connect_and_read()
                detail = "the daemon closed the stream"
            except Unauthorized as exc:
                self._set_state("unauthorized", str(exc))
                log.warning("the daemon refused the token (%s); retrying in %g s", exc, self.unauthorized_delay)
                self._sleep(self.unauthorized_delay)
                backoff = self.min_backoff
                continue
            except (OSError, ValueError) as exc:  # http.HTTPError is an OSError
                detail = str(exc) or type(exc).__name__
            if self._stop.is_set():
                break
            healthy = delivered or time.monotonic() - started >= HEALTHY_AFTER
            if healthy:
                backoff = self.retry_ms / 1000.0 if self.retry_ms is not None else self.min_backoff
                backoff = min(max(backoff, 0.0), self.max_backoff)
            self._set_state("disconnected", detail)
            log.info("stream: %s; reconnecting in %g s", detail, backoff)
            self._sleep(backoff)
            backoff = min(max(backoff, self.min_backoff) * 2, self.max_backoff)
        self._set_state("stopped")

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)

    def _connect(self) -> http.Connection:
        return http.Connection(self._url, timeout=self.read_timeout)

    def _connect_and_read(self) -> bool:
        """One connection: True when it delivered at least one message before it ended."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache",
                   "Authorization": f"Bearer {self._token()}"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        if self._language:
            headers["Accept-Language"] = self._language
        conn = self._connect()
        delivered = False
        try:
            with self._lock:
                self._conn = conn
            conn.connect()
            if self._stop.is_set() or self._wake.is_set():
                return False
            resp = conn.get(headers=headers)
            if resp.status in (401, 403):
                raise Unauthorized(f"HTTP {resp.status} {resp.reason}")
            if resp.status != 200:
                raise http.HTTPError(f"HTTP {resp.status} {resp.reason}")
            ctype = resp.header("Content-Type")
            if not ctype.startswith("text/event-stream"):
                raise http.HTTPError(f"not an event stream ({ctype or 'no Content-Type'})")
            self._set_state("connected", self._host)
            parser = SSEParser(self.last_id)
            while not (self._stop.is_set() or self._wake.is_set()):
                chunk = resp.read1(65536)
                if not chunk:
                    break
                msgs = list(parser.feed(chunk))
                if msgs:
                    replayed = "Last-Event-ID" in headers and not delivered
                    delivered = True
                    self.last_id = msgs[-1].id
                    try:
                        if self._on_batch is not None:
                            self._on_batch(msgs, replayed)
                        else:
                            for msg in msgs:
                                self._on_message(msg)
                    except Exception:  # noqa: BLE001
                        log.exception("message handler failed")
                if parser.last_id is not None:
                    self.last_id = parser.last_id
                self.retry_ms = parser.retry if parser.retry is not None else self.retry_ms
            return delivered
        finally:
            with self._lock:
                self._conn = None
            conn.close()
