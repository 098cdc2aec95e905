"""Pop latency: from the ESL event leaving the simulator to the notification arriving at the notification server.

Real parts end to end: `screenpop simulate --generate` → a timing relay on loopback → `screenpop daemon` →
SSE → `screenpop tray` → D-Bus → dunst, under Xvfb with a session bus (the desktop test harness). The relay
notes when each CHANNEL_PROGRESS of a leg to the tray's extension passes (the event leaving the simulator);
`dbus-monitor` notes when each new Notify call reaches the bus (the notification arriving). Each ring of
the extension is matched with the first later new notification that shows the caller's number.

Two phases in the same run: a baseline with only the measured calls (2 calls/s, all to the tray's
extension), then the measured extension among ten while the simulator pushes 100 calls/s in all.

    python bench/pop_latency.py [--seconds 30]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from desktop import Desktop, missing_tools  # noqa: E402
from support import Proc, daemon, free_port, simulator, wait_for, write_config  # noqa: E402

EXTENSION = "1001"
RING_MARK = f"Channel-Name: sofia/internal/{EXTENSION}%40".encode()


class Relay(threading.Thread):
    """Forwards the daemon's ESL connection to the simulator and stamps each ring of the measured extension."""

    def __init__(self, listen_port: int, sim_port: int) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.sim_port = sim_port
        self.rings: list[tuple[float, str]] = []

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.sim_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            self._down(upstream, client)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        """Simulator to daemon: forward at once, then look at the frames that are complete."""
        buf = b""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                now = time.time()
                buf += data
                while True:
                    head_end = buf.find(b"\n\n")
                    if head_end < 0:
                        break
                    m = re.search(rb"Content-Length: (\d+)", buf[:head_end])
                    end = head_end + 2 + (int(m.group(1)) if m else 0)
                    if len(buf) < end:
                        break
                    frame, buf = buf[:end], buf[end:]
                    if b"Event-Name: CHANNEL_PROGRESS\n" in frame and RING_MARK in frame:
                        number = re.search(rb"\nCaller-Caller-ID-Number: ([^\n]*)", frame)
                        self.rings.append((now, unquote(number.group(1).decode()) if number else ""))
        except OSError:
            pass
        finally:
            src.close()
            dst.close()


def notifications(log: Path) -> list[tuple[float, str]]:
    """(time, message text) of each new notification (Notify with replaces_id 0) in a dbus-monitor log."""
    found: list[tuple[float, list[str]]] = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("method call", "signal", "method return", "error")):
            found.append((float(re.search(r"time=([\d.]+)", line).group(1)) if "member=Notify" in line else -1.0, []))
        elif found:
            found[-1][1].append(line.strip())
    return [(t, "\n".join(args)) for t, args in found if t >= 0 and len(args) > 1 and args[1] == "uint32 0"]


def match(rings: list[tuple[float, str]], notes: list[tuple[float, str]]) -> list[float]:
    """Each ring with the first later notification that shows its number: the latencies in ms."""
    latencies, used = [], set()
    for at, number in rings:
        for i, (shown, text) in enumerate(notes):
            if i not in used and shown >= at and number and number in text:
                used.add(i)
                latencies.append((shown - at) * 1000)
                break
    return latencies


def phase(folder: Path, desktop: Desktop, rate: float, seconds: float, extensions: str) -> list[float]:
    """One run: simulator, relay, daemon, tray; returns the latencies in ms."""
    from screenpop.daemon.auth.tokens import create
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    folder.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{folder / 'screenpop.db'}"
    db = open_database(db_url)
    migrate(db)
    _, token = create(EXTENSION)
    db.close()
    sim_port, esl_port, http_port = free_port(), free_port(), free_port()
    relay = Relay(esl_port, sim_port)
    relay.start()
    config = write_config(folder / "screenpop.toml", esl_port, db_url, http_port=http_port)
    config.write_text(config.read_text().replace('level = "info"', 'level = "warning"'))
    d = daemon(folder, config)
    tray_config = folder / "tray.toml"
    subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", "tray", "--setup", "--config", str(tray_config),
                    "--server", f"http://127.0.0.1:{http_port}", "--extension", EXTENSION, "--token", token],
                   check=True, capture_output=True, env=desktop.env)
    monitor_log = folder / "dbus-monitor.log"
    monitor = desktop.spawn("dbus-monitor", ["dbus-monitor", "--session",
                                             "interface='org.freedesktop.Notifications',member='Notify'"])
    monitor_out = desktop.folder / "dbus-monitor.log"
    tray = Proc(["-m", "screenpop.daemon.cli", "tray", "--config", str(tray_config)], folder / "tray.log", env=desktop.env)
    wait_for(lambda: "state connected" in tray.log(), 20, "the tray to connect")
    sim = simulator(folder, sim_port, "--generate", "--rate", str(rate), "--duration", str(seconds), "--speed", "1",
                    "--mix", "inbound_answered=1", "--extensions", extensions, "--seed", "9", "--linger", "3")
    try:
        sim.wait(seconds + 120)
        time.sleep(2)
    finally:
        for p in (sim, tray):
            p.close()
        d.terminate()
        d.close()
        monitor.terminate()
        relay.server.close()
    monitor_log.write_bytes(monitor_out.read_bytes())
    monitor_out.unlink()
    latencies = match(relay.rings, notifications(monitor_log))
    if len(latencies) != len(relay.rings):
        print(f"  note: {len(relay.rings)} rings of {EXTENSION} relayed, {len(latencies)} matched to a notification")
    return latencies


def report(name: str, ms: list[float]) -> None:
    if not ms:
        print(f"{name}: no measurements")
        return
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    print(f"{name}: {len(ms)} pops, p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of calls in the loaded phase")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print(f"pop latency: needs {', '.join(missing)} (run .ci/setup)")
        return
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-") as tmp:
        desktop = Desktop(Path(tmp) / "desktop").start()
        try:
            baseline = phase(Path(tmp) / "baseline", desktop, 2, 20, EXTENSION)
            loaded = phase(Path(tmp) / "loaded", desktop, 100, args.seconds, "1001-1010")
        finally:
            desktop.stop()
    report("baseline, measured calls only (2 calls/s)", baseline)
    report("loaded, 100 calls/s in all (~10/s to the measured extension)", loaded)
    if loaded:
        print(f"goal: p99 under 50 ms under load -> {'met' if sorted(loaded)[int(0.99 * (len(loaded) - 1))] < 50 else 'not met'}")


if __name__ == "__main__":
    main()
