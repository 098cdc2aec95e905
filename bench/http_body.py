"""The daemon's resident memory while strangers stream oversized request bodies at it (issue 14, item 6).

Starts `screenpop daemon` (SQLite in a temporary folder; no FreeSWITCH needed), reads its resident memory once
it serves HTTP (the baseline), then streams --posts bodies of --mb MB at once, each on its own connection, at
POST /signin with no session (so no CSRF token either), and samples the daemon's memory every 50 ms until every
connection has ended. Prints the baseline, the peak and the difference, what each sender got to send, how each
POST was answered, and how long a GET /api/v1/health took while they ran.

    flock /tmp/screenpop-bench.lock python bench/http_body.py [--posts 3] [--mb 300] [--kind form|multipart|raw|chunked]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHUNK = b"a" * 65536
TYPES = {"form": "application/x-www-form-urlencoded", "multipart": "multipart/form-data; boundary=xyz",
         "raw": "application/octet-stream", "chunked": "application/x-www-form-urlencoded"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """The process's resident set size in MB, from /proc."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def health_seconds(port: int) -> float | None:
    """How long GET /api/v1/health takes (None: no answer within 30 s)."""
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/v1/health")
        conn.getresponse().read()
        conn.close()
    except OSError:
        return None
    return time.monotonic() - started


class Sender(threading.Thread):
    """One POST of `size` bytes, streamed as fast as the daemon takes it; then whatever the daemon answered."""

    def __init__(self, port: int, size: int, content_type: str, chunked: bool) -> None:
        super().__init__(daemon=True)
        self.port, self.size, self.content_type, self.chunked = port, size, content_type, chunked
        self.sent, self.answer, self.seconds = 0, "", 0.0

    def run(self) -> None:
        started = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        try:
            length = "Transfer-Encoding: chunked" if self.chunked else f"Content-Length: {self.size}"
            sock.sendall(f"POST /signin HTTP/1.1\r\nHost: bench\r\nContent-Type: {self.content_type}\r\n"
                         f"{length}\r\n\r\n".encode())
            while self.sent < self.size:
                n = min(len(CHUNK), self.size - self.sent)
                sock.sendall(b"%x\r\n%s\r\n" % (n, CHUNK[:n]) if self.chunked else CHUNK[:n])
                self.sent += n
            if self.chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:
            self.answer = f"sending stopped: {type(exc).__name__}"
        try:
            first = sock.recv(200).split(b"\r\n", 1)[0].decode("latin-1")
            self.answer = first or self.answer or "closed without an answer"
        except OSError as exc:
            self.answer = self.answer or f"no answer: {type(exc).__name__}"
        finally:
            sock.close()
            self.seconds = time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=3)
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--kind", choices=sorted(TYPES), default="form")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-") as tmp:
        port = free_port()
        config = Path(tmp) / "screenpop.toml"
        config.write_text(f'[freeswitch]\nport = {free_port()}\n\n[database]\nurl = "sqlite:///{tmp}/bench.db"\n'
                          f'photo_dir = "{tmp}/photos"\n\n[http]\nlisten = "127.0.0.1:{port}"\n\n'
                          '[log]\nlevel = "warning"\n')
        log = open(Path(tmp) / "daemon.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "daemon", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": tmp})
        try:
            deadline = time.monotonic() + 30
            while health_seconds(port) is None:
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("the daemon did not start: " + (Path(tmp) / "daemon.log").read_text())
                time.sleep(0.2)
            time.sleep(1)
            baseline = rss_mb(proc.pid)
            senders = [Sender(port, args.mb * 1_000_000, TYPES[args.kind], args.kind == "chunked")
                       for _ in range(args.posts)]
            started = time.monotonic()
            for s in senders:
                s.start()
            peak, health = baseline, []
            while any(s.is_alive() for s in senders):
                peak = max(peak, rss_mb(proc.pid))
                if len(health) < 20 and time.monotonic() - started > 0.5 * len(health):
                    health.append(health_seconds(port))
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            time.sleep(1)
            after = rss_mb(proc.pid)
            chunked = ", chunked" if args.kind == "chunked" else ""
            print(f"{args.posts} x {args.mb} MB POST /signin ({TYPES[args.kind]}{chunked}), no session, over loopback")
            print(f"daemon resident memory: {baseline:.0f} MB before (baseline), peak {peak:.0f} MB "
                  f"(+{peak - baseline:.0f} MB), {after:.0f} MB a second after the last connection ended")
            for i, s in enumerate(senders, 1):
                print(f"  POST {i}: sent {s.sent / 1e6:.1f} of {s.size / 1e6:.0f} MB in {s.seconds:.1f} s; "
                      f"answer: {s.answer}")
            answered = [h for h in health if h is not None]
            print(f"GET /api/v1/health meanwhile: {len(answered)} of {len(health)} answered, slowest "
                  f"{max(answered) * 1000:.0f} ms" if answered else "GET /api/v1/health meanwhile: never answered")
            print(f"all senders done in {elapsed:.1f} s")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


if __name__ == "__main__":
    main()
