"""tray/http.py, the tray's own small HTTP client: framing (chunked split anywhere, extensions, trailers,
Content-Length, until close), errors that end cleanly instead of hanging, https with certificate checks, and
that a tray on a plain-http daemon never loads ssl, http.client, urllib.request or email."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from screenpop.tray import http
from screenpop.tray.stream import EventStream, Message

from desktop import PushServer, card, customer
from support import accept_each, wait_for


class Scripted:
    """A TCP server answering each connection with scripted bytes: the request is read up to its blank line
    and recorded, then each piece is sent on its own (with a pause, so the client sees the splits), then the
    connection is closed unless `hold` (kept open until close())."""

    def __init__(self, pieces: list[bytes], hold: bool = False, pause: float = 0.005, wrap=None) -> None:
        self.pieces, self.hold, self.pause, self.wrap = pieces, hold, pause, wrap
        self.requests: list[bytes] = []
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._done = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=accept_each, args=(self.lsock, self._one), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            if self.wrap is not None:
                conn = self.wrap(conn)
            self._conns.append(conn)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            req = b""
            while b"\r\n\r\n" not in req:
                data = conn.recv(4096)
                if not data:
                    return
                req += data
            self.requests.append(req)
            for piece in self.pieces:
                conn.sendall(piece)
                time.sleep(self.pause)
            if self.hold:
                self._done.wait(30)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._done.set()
        self.lsock.close()


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.fixture
def scripted():
    servers = []

    def make(*args, **kw):
        s = Scripted(*args, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_BODY = (b"7\r\nretry: \r\n" b"5;name=value\r\n100\n\n\r\n" b"1b ; ext\r\nid: 1\nevent: pop\ndata: {}\n\n\r\n"
                b"0\r\nX-Trailer: yes\r\n\r\n")
CHUNKED_DATA = b"retry: 100\n\nid: 1\nevent: pop\ndata: {}\n\n"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_chunked_body_split_anywhere_with_extensions_and_trailers(scripted, size):
    s = scripted(split(CHUNKED_HEAD + CHUNKED_BODY, size), hold=True)
    with http.get(s.url + "/api/v1/events", timeout=5) as resp:
        assert resp.status == 200 and resp.header("content-type") == "text/event-stream"
        got = b""
        while True:
            data = resp.read1(65536)
            if not data:
                break
            got += data
        assert got == CHUNKED_DATA, "the body ends at the last chunk even though the server keeps the connection"
        assert resp.read1(10) == b"" and resp.read() == b""


def test_the_request_has_host_the_given_headers_and_connection_close(scripted):
    body = b'{"ok": true}'
    s = scripted([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body], hold=True)
    with http.get(s.url + "/a/b?size=128", {"Authorization": "Bearer tok", "Last-Event-ID": "7"}, timeout=5) as resp:
        assert resp.read() == body, "Content-Length ends the body; the connection held open does not hang it"
    req = s.requests[0].decode()
    lines = req.split("\r\n")
    assert lines[0] == "GET /a/b?size=128 HTTP/1.1"
    assert f"Host: 127.0.0.1:{s.port}" in lines and "Authorization: Bearer tok" in lines
    assert "Last-Event-ID: 7" in lines and "Connection: close" in lines


def test_content_length_read_in_pieces_and_a_short_body_is_an_error(scripted):
    s = scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"0123", b"456789"])
    with http.get(s.url, timeout=5) as resp:
        assert resp.read(3) == b"012" and resp.read() == b"3456789"
    s = scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"0123"])
    with http.get(s.url, timeout=5) as resp, pytest.raises(http.HTTPError, match="6 bytes short"):
        resp.read()


def test_a_401_with_a_json_body(scripted):
    body = b'{"error": "unauthorized"}'
    s = scripted([b"HTTP/1.1 401 UNAUTHORIZED\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body], hold=True)
    with http.get(s.url, {"Authorization": "Bearer wrong"}, timeout=5) as resp:
        assert (resp.status, resp.reason) == (401, "UNAUTHORIZED")
        assert json.loads(resp.read()) == {"error": "unauthorized"}


def test_header_names_in_any_case_repeated_and_folded(scripted):
    s = scripted([b"HTTP/1.0 200 OK\r\ncOnTeNt-TyPe: image/png\r\nX-A: 1\r\nx-a: 2\r\nX-Long: a\r\n  b\r\n"
                  b"content-length: 3\r\n\r\nabc"])
    with http.get(s.url, timeout=5) as resp:
        assert resp.header("Content-Type") == "image/png" == resp.headers["content-type"]
        assert resp.header("X-A") == "1, 2" and resp.header("x-long") == "a b" and resp.header("absent", "-") == "-"
        assert resp.read() == b"abc"


def test_a_body_until_the_connection_ends_and_interim_responses(scripted):
    s = scripted([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", b"Content-Type: text/plain\n\n", b"one ", b"two"])
    with http.get(s.url, timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b"one two"


@pytest.mark.parametrize("pieces, words", [
    ([CHUNKED_HEAD, b"10\r\nonly six"], "middle of a chunk"),
    ([CHUNKED_HEAD, b"5\r\nhello\r\n"], "middle of a response"),  # no last chunk
    ([CHUNKED_HEAD, b"zz\r\nhello\r\n"], "bad chunk size"),
    ([CHUNKED_HEAD, b"5\r\nhelloXX\r\n0\r\n\r\n"], "no line end after a chunk"),
    ([b"HTTP/1.1 200 OK\r\nContent-Ty"], "middle of a response"),
    ([b"SSH-2.0-OpenSSH\r\n\r\n"], "not an HTTP response"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n"], "bad Content-Length"),
])
def test_a_broken_response_is_a_clean_error_not_a_hang(scripted, pieces, words):
    s = scripted(pieces)
    t0 = time.monotonic()
    with pytest.raises(http.HTTPError, match=words):
        with http.get(s.url, timeout=10) as resp:
            resp.read()
    assert time.monotonic() - t0 < 2
    assert issubclass(http.HTTPError, OSError), "the stream's reconnect loop catches OSError"


def test_a_silent_server_times_out_and_shutdown_cuts_a_quiet_read(scripted):
    s = scripted([CHUNKED_HEAD, b"3\r\nabc\r\n"], hold=True)
    with http.get(s.url, timeout=0.3) as resp:
        assert resp.read1() == b"abc"
        t0 = time.monotonic()
        with pytest.raises(socket.timeout):
            resp.read1()
        assert time.monotonic() - t0 < 2
    conn = http.Connection(s.url, timeout=30)
    conn.connect()
    resp = conn.get()
    assert resp.read1() == b"abc"
    threading.Timer(0.2, conn.shutdown).start()
    t0 = time.monotonic()
    with pytest.raises(OSError):
        resp.read1()  # the connection ends in the middle of the chunked body
    assert time.monotonic() - t0 < 2
    resp.close()


def test_headers_that_would_split_the_request_are_refused():
    conn = http.Connection("http://127.0.0.1:9/")
    conn.sock = socket.socket()  # never used: the check comes before sending
    try:
        with pytest.raises(ValueError):
            conn.get(headers={"Authorization": "Bearer x\r\nX-Evil: 1"})
    finally:
        conn.close()
    with pytest.raises(ValueError):
        http.Connection("ftp://host/")


def test_the_event_stream_over_a_chunked_response(scripted):
    events = b"retry: 5000\n\nid: 4\nevent: pop\ndata: {\"a\": 1}\n\nid: 5\nevent: pop\ndata: {\"a\": 2}\n\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in split(events, 9)) + b"0\r\n\r\n"
    s = scripted(split(CHUNKED_HEAD + body, 5))
    got = []
    stream = EventStream(s.url, lambda: "t", got.append, min_backoff=5)
    stream.start()
    try:
        wait_for(lambda: len(got) == 2, 5, "both messages")
    finally:
        stream.stop()
    assert got[:2] == [Message("pop", '{"a": 1}', "4"), Message("pop", '{"a": 2}', "5")] and stream.retry_ms == 5000
    assert s.requests[0].startswith(b"GET /api/v1/events HTTP/1.1\r\n")


# ---- https ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cert")
    key, crt = folder / "key.pem", folder / "cert.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"openssl: {r.stderr.strip()[:200]}")
    return key, crt


def test_https_with_a_self_signed_certificate(scripted, cert):
    import ssl

    key, crt = cert
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    body = b"over tls"
    s = scripted([CHUNKED_HEAD + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)],
                 wrap=lambda c: server_ctx.wrap_socket(c, server_side=True))
    url = f"https://127.0.0.1:{s.port}/x"
    with http.get(url, timeout=5, cafile=str(crt)) as resp:
        assert resp.status == 200 and resp.read() == body
    client_ctx = ssl.create_default_context(cafile=str(crt))
    with http.get(url, timeout=5, context=client_ctx) as resp:
        assert resp.read() == body
    assert s.requests[0].startswith(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % s.port)
    with pytest.raises(ssl.SSLCertVerificationError):
        http.get(url, timeout=5)  # the default context checks the certificate: this one is nobody's


# ---- what a plain-http tray loads -------------------------------------------------------------------------


def test_a_plain_http_tray_never_loads_ssl_http_client_urllib_request_or_email(tmp_path):
    server = PushServer(retry_ms=100, keepalive=0.3)
    code = f"""
import sys, threading
import screenpop.tray.app, screenpop.tray.config, screenpop.tray.notify, screenpop.tray.stream
from screenpop.tray.notify import PhotoCache
from screenpop.tray.stream import EventStream
from pathlib import Path
got = threading.Event()
s = EventStream({server.url!r}, lambda: "secret-token", lambda m: got.set())
s.start()
assert got.wait(20), "no pop"
s.stop()
icon = PhotoCache({server.url!r}, lambda: "secret-token", Path({str(tmp_path)!r})).icon_for(
    {{"customer": {{"name": "A", "photo_url": "/api/v1/customers/9/photo"}}}})
assert "/photos/" in icon, icon
print(" ".join(sorted(m for m in ("ssl", "_ssl", "http.client", "urllib.request", "email", "email.parser") if m in sys.modules)))
"""
    try:
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
        try:
            wait_for(lambda: server.streams() == 1 or p.poll() is not None, 20, "the stream")
            server.push(card(customer=customer(cid=9)))
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, err
        assert out.strip() == "", f"loaded by a plain-http tray: {out.strip()}"
        assert [r["path"] for r in server.requests if "/photo" in r["path"]] == ["/api/v1/customers/9/photo?size=64"]
    finally:
        server.close()


def test_pygobjects_asyncio_import_leaves_ssl_out_for_a_plain_http_tray():
    # gi._gi imports asyncio, and asyncio imports ssl when it can: the tray blocks that while importing pystray
    code = """
import sys
from screenpop.tray.http import without_ssl
with without_ssl(True):
    import asyncio
assert "ssl" not in sys.modules and "_ssl" not in sys.modules, sorted(m for m in sys.modules if "ssl" in m)
import ssl  # anything that really needs it later still gets it
assert ssl.create_default_context()
with without_ssl(True):
    import asyncio.sslproto  # already loaded: nothing is blocked
    assert sys.modules["ssl"] is ssl
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
