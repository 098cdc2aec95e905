"""A generated call stream recorded once, byte for byte as the daemon's subscription receives it (a .plain.esl
file like the real captures), so a bench can replay it as load or as input at no cost to the simulator."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from screenpop.daemon.calls.tracker import SUBSCRIBED_EVENTS
from screenpop.daemon.pbx.esl import subscription_command
from screenpop.simulator.capture import read_capture


def record(path: Path, *generate: str) -> int:
    """Record what `simulate --generate *generate` sends, as fast as it can; returns the number of events."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "screenpop.simulator.cli", "--port", str(port), "--generate",
                             *generate, "--speed", "0", "--linger", "0.3"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=0.5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(120)
        with sock, open(path, "wb") as out:
            out.write(sock.recv(1 << 16))
            sock.sendall(b"auth ClueCon\n\n")
            out.write(sock.recv(1 << 16))
            sock.sendall(subscription_command(SUBSCRIBED_EVENTS).encode() + b"\n\n")
            while chunk := sock.recv(1 << 20):
                out.write(chunk)
                if b"text/disconnect-notice" in chunk[-200:]:
                    break
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return sum(1 for f in read_capture(path) if f.content_type == "text/event-plain")
