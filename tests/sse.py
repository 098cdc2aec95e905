"""A small Server-Sent Events client for the tests (http.client, one reader thread), parsing
with the tray's own parser (screenpop.tray.stream.SSEParser)."""
from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

from screenpop.tray.stream import SSEParser

from support import SLACK


@dataclass
class Message:
    id: int | None
    event: str
    data: str

    @property
    def card(self) -> dict:
        return json.loads(self.data)


@dataclass
class Stream:
    """One open GET /api/v1/events; messages, comments and retry as they arrive; ended once the server closes."""

    port: int
    token: str | None
    last_event_id: int | None = None
    query: str = ""
    host: str = "127.0.0.1"
    language: str | None = None  # sent as Accept-Language, as the tray sends its own
    messages: list[Message] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    raw_lines: list[str] = field(default_factory=list)
    status: int = 0
    body: bytes = b""
    error: str = ""

    def __post_init__(self) -> None:
        self.ended = threading.Event()
        self.opened = threading.Event()
        self._lock = threading.Lock()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"Accept": "text/event-stream"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        if self.language is not None:
            headers["Accept-Language"] = self.language
        self.conn.request("GET", "/api/v1/events" + (f"?{self.query}" if self.query else ""), headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        if self.status != 200:
            self.body = self.response.read()
            self.ended.set()
            self.opened.set()
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        """Lines as they come (kept raw, comments noted); the tray's own parser makes the messages."""
        parser = SSEParser()
        try:
            self.opened.set()
            while True:
                raw = self.response.readline()
                if not raw:
                    break
                line = raw.decode("utf-8").rstrip("\n")
                self.raw_lines.append(line)
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                msg = parser.line(line)
                self.retry = parser.retry
                if msg is not None:
                    with self._lock:
                        self.messages.append(Message(None if msg.id is None else int(msg.id), msg.event, msg.data))
        except Exception as exc:  # the connection cut off, or closed by the test
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended.set()

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return [m.id for m in self.messages]

    @property
    def cards(self) -> list[dict]:
        with self._lock:
            return [m.card for m in self.messages]

    def wait_count(self, n: int, timeout: float = 10.0) -> list[Message]:
        """Wait until at least n messages arrived (timeout stretched by SLACK); the messages so far."""
        deadline = time.monotonic() + timeout * SLACK
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            if self.ended.is_set():
                break
            time.sleep(0.02)
        with self._lock:
            raise AssertionError(f"got {len(self.messages)} of {n} messages (ended={self.ended.is_set()}, {self.error})")

    def close(self) -> None:
        try:
            self.response.fp and self.response.fp.raw._sock.shutdown(2)  # type: ignore[union-attr]
        except Exception:
            pass
        self.conn.close()
        self.ended.wait(5)


def get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain GET: status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body
