"""The tray's one HTTP client: a GET over a plain socket, HTTP/1.1, `Connection: close`.

Why not http.client / urllib.request: on a workstation the tray stays resident all day, and those two (with
`email`, which http.client parses headers with) cost about 3.4 MB of resident memory, `ssl` another 5.4 MB.
The daemon usually listens on plain http (loopback or the LAN), where neither is needed; `ssl` is imported only
for an https:// URL. What the tray needs is small: a status line, headers, and a body framed by
`Transfer-Encoding: chunked` (gevent's WSGI server streams the event stream chunked; extensions and trailers
are skipped), by `Content-Length`, or by the end of the connection. The response is a readable binary stream:
`read1` returns what has arrived (the SSE reader's incremental reads), `read(n)` waits for n bytes or the end.
`Connection.shutdown` may be called from another thread to cut a quiet connection (Reconnect, Quit).

Errors are OSError: `socket.timeout` for a silent peer, `HTTPError` for a malformed response or one that ends
early (a connection closed mid-chunk or short of its Content-Length).
"""
from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

MAX_LINE = 65536
MAX_HEADERS = 100
RECV = 65536


class HTTPError(OSError):
    """The server's response is malformed or ended early."""


class Connection:
    """One connection to the server of `url` (http or https). `connect`, then `get` once; `shutdown` from any
    thread. `context` (an ssl.SSLContext) or `cafile` only matter for https."""

    def __init__(self, url: str, timeout: float = 30.0, context: Any = None, cafile: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if parts.port in (None, 443 if self.https else 80) else f"{host}:{parts.port}"
        self.timeout = timeout
        self.context = context
        self.cafile = cafile
        self.sock: socket.socket | None = None

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            if self.https:
                import ssl  # only here: plain-http trays never load it

                context = self.context or ssl.create_default_context(cafile=self.cafile)
                sock = context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        return sock

    def get(self, path: str | None = None, headers: dict[str, str] | None = None) -> Response:
        """Send `GET path` (default: the URL's path and query) and read the status line and headers."""
        return self.request("GET", path, headers)

    def request(self, method: str, path: str | None = None, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> Response:
        """Send one request (a body gets its Content-Length) and read the status line and headers."""
        if self.sock is None:
            self.connect()
        lines = [f"{method} {path or self.path} HTTP/1.1", f"Host: {self.host_header}"]
        given = {k.lower() for k in (headers or {})}
        for name, value in (headers or {}).items():
            if any(c in str(value) for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
                raise ValueError(f"bad header {name!r}")
            lines.append(f"{name}: {value}")
        if "connection" not in given:
            lines.append("Connection: close")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return Response(self)

    def shutdown(self) -> None:
        """End the connection now (from any thread): a read blocked on it returns or fails at once."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


class Response(io.BufferedIOBase):
    """Status, headers and the body as a readable binary stream. Closing it closes the connection."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        self._sock = conn.sock
        self._buf = bytearray()
        self._eof = False  # the body is over
        while True:
            self.status, self.reason, self.headers = self._head()
            if not (100 <= self.status < 200) or self.status == 101:
                break  # skip interim responses (100 Continue)
        te = self.header("Transfer-Encoding").lower()
        self._chunked = te.split(",")[-1].strip() == "chunked"
        self._left: int | None = None  # bytes left: of the body (Content-Length) or of the current chunk
        self._chunk_started = False
        if self.status in (204, 304):
            self._eof = True
        elif not self._chunked and self.header("Content-Length"):
            length = self.header("Content-Length").split(",")[0].strip()
            if not length.isdigit():
                raise HTTPError(f"bad Content-Length {length!r}")
            self._left = int(length)
            self._eof = self._left == 0

    # ---- the head --------------------------------------------------------------------------------

    def _fill(self) -> bool:
        """One recv into the buffer; False at the end of the connection."""
        data = self._sock.recv(RECV)
        if not data:
            return False
        self._buf += data
        return True

    def _line(self) -> bytes:
        """One line without its CRLF (or LF)."""
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) > MAX_LINE:
                raise HTTPError(f"a line longer than {MAX_LINE} bytes")
            start = len(self._buf)
            if not self._fill():
                raise HTTPError("the server closed the connection in the middle of a response")

    def _head(self) -> tuple[int, str, dict[str, str]]:
        status_line = self._line().decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
            raise HTTPError(f"not an HTTP response: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        last = None
        for _ in range(MAX_HEADERS + 1):
            line = self._line().decode("latin-1")
            if not line:
                return int(code), reason.strip(), headers
            if line[0] in " \t" and last is not None:  # obsolete line folding
                headers[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HTTPError(f"bad header line {line[:80]!r}")
            last = name.lower()
            value = value.strip()
            headers[last] = f"{headers[last]}, {value}" if last in headers else value
        raise HTTPError(f"more than {MAX_HEADERS} headers")

    def header(self, name: str, default: str = "") -> str:
        """A header's value (names in any case; repeated headers joined with ', ')."""
        return self.headers.get(name.lower(), default)

    # ---- the body --------------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def _some(self, limit: int) -> bytes:
        """Up to `limit` bytes: what is buffered, else one recv; b"" at the end of the connection."""
        if not self._buf and not self._fill():
            return b""
        data = bytes(self._buf[:limit])
        del self._buf[:limit]
        return data

    def read1(self, size: int = -1) -> bytes:
        """What has arrived of the body (at least one byte unless the body is over), at most `size` bytes."""
        if self.closed:
            raise ValueError("read of a closed response")
        size = RECV if size is None or size < 0 else size
        if self._eof or size == 0:
            return b""
        if self._chunked:
            return self._read_chunk(size)
        if self._left is None:  # until the connection ends
            data = self._some(size)
            self._eof = not data
            return data
        data = self._some(min(size, self._left))
        if not data:
            raise HTTPError(f"the server closed the connection {self._left} bytes short of the body")
        self._left -= len(data)
        self._eof = self._left == 0
        return data

    def _read_chunk(self, size: int) -> bytes:
        if not self._left:
            if self._chunk_started and self._line():  # the CRLF after a chunk's data
                raise HTTPError("no line end after a chunk")
            line = self._line().split(b";", 1)[0].strip()  # a chunk extension is ignored
            try:
                self._left = int(line, 16)
            except ValueError:
                raise HTTPError(f"bad chunk size {line[:40]!r}") from None
            if self._left < 0 or not line.isalnum():
                raise HTTPError(f"bad chunk size {line[:40]!r}")
            self._chunk_started = True
            if self._left == 0:
                while self._line():  # trailers, up to the blank line
                    pass
                self._eof = True
                return b""
        data = self._some(min(size, self._left))
        if not data:
            raise HTTPError("the server closed the connection in the middle of a chunk")
        self._left -= len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        """`size` bytes, fewer only at the end of the body; everything with -1."""
        out = bytearray()
        while size is None or size < 0 or len(out) < size:
            data = self.read1(RECV if size is None or size < 0 else size - len(out))
            if not data:
                break
            out += data
        return bytes(out)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._conn.close()
        super().close()


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 30.0, context: Any = None,
        cafile: str | None = None) -> Response:
    """GET url; the response owns the connection (close it, or use `with`)."""
    conn = Connection(url, timeout, context, cafile)
    conn.connect()
    try:
        return conn.get(headers=headers)
    except BaseException:
        conn.close()
        raise


def post_json(url: str, body: dict, headers: dict[str, str] | None = None, timeout: float = 10.0,
              limit: int = 65536) -> tuple[int, Any]:
    """POST a JSON object to url; (status, the answer's JSON or None). The answer is read up to limit bytes."""
    conn = Connection(url, timeout)
    conn.connect()
    try:
        with conn.request("POST", headers={**(headers or {}), "Content-Type": "application/json"},
                          body=json.dumps(body).encode("utf-8")) as resp:
            data = resp.read(limit)
            try:
                return resp.status, json.loads(data) if data else None
            except ValueError:
                return resp.status, None
    finally:
        conn.close()


@contextlib.contextmanager
def without_ssl(active: bool) -> Iterator[None]:
    """While PyGObject is imported (by pystray, or by tray/bus.py), `import ssl` fails: PyGObject 3.50's gi._gi
    imports asyncio, whose modules import ssl if they can (`try: import ssl except ImportError: ssl = None`) and work without
    it. ssl costs about 5 MB resident; a tray on a plain-http daemon never uses it (tray/http.py imports it
    only for https). Afterwards `import ssl` works again for anything that really needs it; only asyncio,
    which the tray does not use, keeps its ssl = None. Nothing is blocked when ssl is already loaded."""
    if not active or "ssl" in sys.modules:
        yield
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # the import system's "not importable" marker
    try:
        yield
    finally:
        if sys.modules.get("ssl", 0) is None:
            del sys.modules["ssl"]
