"""Pop latency: the daemon's own share (event frame in -> SSE frame out) and the whole path to the notification.

Real parts end to end: `screenpop simulate --replay --restamp` -> a timing relay on loopback -> `screenpop
daemon` (SQLite) -> SSE -> `screenpop tray` -> D-Bus -> dunst, under Xvfb with a session bus (the desktop test
harness). The load is a recording made once by the simulator's generator and replayed restamped at its own
pace (`--speed 1`): replaying costs the simulator a fraction of what generating live does, so the load does
not eat the core the daemon needs.

Three clocks, each in its own process so none waits on another's work:
- the relay (this process) notes when each leg to an extension starts ringing (its first CHANNEL_PROGRESS or
  CHANNEL_PROGRESS_MEDIA, 180 or 183) leaves for the daemon;
- an SSE reader (a child process, an admin token's stream of every extension) notes when each `ringing`
  card arrives: ring -> card is the daemon's share, measured for every extension;
- `dbus-monitor` notes when each new Notify call from the tray (extension 1001) reaches the bus: ring ->
  notification is the whole path to the operator's desktop.

Two phases in the same run: a baseline (2 calls/s, all to 1001), then 100 calls/s over ten extensions. On a shared
machine the other work moves the p99 from run to run, so compare code in the same run: `--code` names checkouts
(each with its own .venv) whose daemons take turns, `--rounds` times each. `--trace` runs the daemon through
bench/trace_daemon.py and prints, for each stage of a pop's way through it (frame decoded, dispatched, queued for
the writer, its transaction, its card, its stream's write), the p50, the p99 and the mean over the slowest 2%.

    python bench/pop_latency.py [--seconds 30] [--keep FOLDER] [--trace] [--no-baseline]
                                [--code ../main --code . --rounds 3]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
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

sys.path.insert(0, str(ROOT / "bench"))
from checkouts import daemon_of  # noqa: E402
from recording import record  # noqa: E402

EXTENSION = "1001"
RING = re.compile(rb"\nChannel-Name: sofia/internal/(\d+)%40")
NUMBER = re.compile(rb"\nCaller-Caller-ID-Number: ([^\n]*)")
LEG = re.compile(rb"\nUnique-ID: ([^\n]*)")

SSE_READER = r"""
import sys, time
from screenpop.tray import http
from screenpop.tray.stream import SSEParser
port, token, out = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "w", buffering=1)
conn = http.Connection(f"http://127.0.0.1:{port}/api/v1/events", timeout=120)
conn.connect()
resp = conn.get(headers={"Accept": "text/event-stream", "Authorization": f"Bearer {token}"})
assert resp.status == 200, resp.status
print("connected", flush=True)
parser = SSEParser()
while chunk := resp.read1(65536):
    now = time.time()
    for msg in parser.feed(chunk):
        if msg.event == "pop":
            out.write(f"{now} {msg.id} {msg.data}\n")
"""


class Relay(threading.Thread):
    """Forwards the daemon's ESL connection to the simulator and stamps each ring of an extension."""

    def __init__(self, listen_port: int, sim_port: int) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.sim_port = sim_port
        self.rings: list[tuple[float, str, str]] = []  # (time, extension, caller's number)

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        """One connection of the daemon's, on a thread of its own: the simulator may be too busy loading its
        recording to greet the first one in time, and the daemon then gives up on it and connects again."""
        try:
            upstream = socket.create_connection(("127.0.0.1", self.sim_port))
        except OSError:
            client.close()
            return
        for sock in (client, upstream):  # as the simulator's own socket: without it, Nagle holds a frame sent while
            # the one before is unacknowledged until the daemon's delayed ACK (the relay's own ~20 ms p99 until now)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
        self._down(upstream, client)

    @staticmethod
    def _up(src: socket.socket, dst: socket.socket) -> None:
        """Daemon to simulator, as it comes; when the daemon hangs up, so does the simulator's side."""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        """Simulator to daemon: stamp, forward at once, then look at the frames that are complete."""
        buf, rung = b"", set()
        try:
            while data := src.recv(65536):
                now = time.time()  # before forwarding: the daemon may be done before this thread runs again
                dst.sendall(data)
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
                    if b"Event-Name: CHANNEL_PROGRESS" not in frame or not (ring := RING.search(frame)):
                        continue
                    leg = LEG.search(frame)  # a leg rings once: the first of 180 Ringing and 183 Session Progress
                    if leg is None or leg.group(1) in rung:
                        continue
                    rung.add(leg.group(1))
                    number = NUMBER.search(frame)
                    self.rings.append((now, ring.group(1).decode(), unquote(number.group(1).decode()) if number else ""))
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


def cards(log: Path) -> list[tuple[float, str, str, str]]:
    """(time, extension, number, pop id) of each `ringing` card the SSE reader got."""
    found = []
    for line in log.read_text(encoding="utf-8").splitlines():
        at, pop_id, data = line.split(" ", 2)
        card = json.loads(data)
        if card.get("event") == "ringing":
            found.append((float(at), card.get("extension") or "", card.get("number") or "", pop_id))
    return found


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def match(rings: list[tuple[float, str, str]], seen: list[tuple], key) -> tuple[list[tuple[float, tuple]], list[tuple]]:
    """Each ring with the first later sighting that key() says is the same call: ([(latency ms, sighting)], rings
    unseen)."""
    found, missing, used = [], [], set()
    for ring in rings:
        at, extension, number = ring
        for i, shown in enumerate(seen):
            if i not in used and shown[0] >= at and key(extension, number, shown):
                used.add(i)
                found.append(((shown[0] - at) * 1000, shown))
                break
        else:
            missing.append(ring)
    return found, missing


def phase(folder: Path, desktop: Desktop, recording: Path, code: Path, trace: bool) -> dict:
    """One replay through relay, daemon, SSE reader and tray: {share: [(ms, card)], shown: [(ms, _)], rings,
    stages: {pop id: stamps} when traced}."""
    from screenpop.daemon.auth.tokens import create
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    folder.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{folder / 'screenpop.db'}"
    db = open_database(db_url)
    migrate(db)
    _, token = create(EXTENSION)
    _, admin = create(None, role="admin")
    db.close()
    sim_port, esl_port, http_port = free_port(), free_port(), free_port()
    relay = Relay(esl_port, sim_port)
    relay.start()
    config = write_config(folder / "screenpop.toml", esl_port, db_url, http_port=http_port)
    config.write_text(config.read_text().replace('level = "info"', 'level = "warning"'))
    d = daemon_of(code, folder, config, trace)
    tray_config = folder / "tray.toml"
    subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", "tray", "--setup", "--config", str(tray_config),
                    "--server", f"http://127.0.0.1:{http_port}", "--extension", EXTENSION, "--token", token],
                   check=True, capture_output=True, env=desktop.env)
    monitor = desktop.spawn("dbus-monitor", ["dbus-monitor", "--session",
                                             "interface='org.freedesktop.Notifications',member='Notify'"])
    monitor_out = desktop.folder / "dbus-monitor.log"
    tray = Proc(["-m", "screenpop.daemon.cli", "tray", "--config", str(tray_config)], folder / "tray.log", env=desktop.env)
    wait_for(lambda: "state connected" in tray.log(), 60, "the tray to connect")
    sse_log = folder / "sse.log"
    reader = subprocess.Popen([sys.executable, "-c", SSE_READER, str(http_port), admin, str(sse_log)],
                              stdout=subprocess.PIPE, text=True)
    reader.stdout.readline()  # "connected"
    load = os.getloadavg()[0]
    sim = simulator(folder, sim_port, "--replay", str(recording), "--restamp", "--speed", "1", "--linger", "3")
    try:
        sim.wait(600)
        time.sleep(2)
    finally:
        load = (load + os.getloadavg()[0]) / 2
        for p in (sim, tray):
            p.close()
        reader.terminate()
        d.terminate()
        d.close()
        monitor.terminate()
        relay.server.close()
    (folder / "rings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in relay.rings))
    monitor_log = folder / "dbus-monitor.log"
    monitor_log.write_bytes(monitor_out.read_bytes())
    monitor_out.unlink()
    share, unseen = match(relay.rings, cards(sse_log), lambda ext, num, c: c[1] == ext and c[2] == num)
    mine = [r for r in relay.rings if r[1] == EXTENSION]
    # the pop shows the number as people read it ("555 1234", "+45 45 55 12 34"): compare the last 7 digits
    shown, unshown = match(mine, [(t, _digits(text)) for t, text in notifications(monitor_log)],
                           lambda ext, num, n: bool(_digits(num)) and _digits(num)[-7:] in n[1])
    for what, missing, rings in (("card", unseen, relay.rings), ("notification", unshown, mine)):
        if missing:
            print(f"  note: {len(missing)} of {len(rings)} rings had no {what}, e.g. {missing[:3]}")
    stages = {}
    if trace and (folder / "trace.jsonl").exists():
        for line in (folder / "trace.jsonl").read_text().splitlines():
            row = json.loads(line)
            stages[str(row["id"])] = row
    return {"share": share, "shown": shown, "rings": len(relay.rings), "stages": stages, "load": load}


STAGES = ["recv", "dispatch", "queued", "build", "built", "taken", "sent"]  # the pop's way (the write: queued>commit)


def percentile(ms: list[float], q: float) -> float:
    ms = sorted(ms)
    return ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]


def report(name: str, ms: list[float], goal: float | None = None) -> None:
    if not ms:
        print(f"  {name}: no measurements")
        return
    ms = sorted(ms)
    p99 = percentile(ms, 0.99)
    verdict = f"  (goal p99 < {goal:g} ms: {'met' if p99 < goal else 'not met'})" if goal else ""
    print(f"  {name}: {len(ms)} pops, p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, "
          f"max {ms[-1]:.1f} ms{verdict}")


def report_stages(share: list[tuple[float, tuple]], stages: dict) -> None:
    """Where the time goes: each stage's p50 / p99, and its mean over the slowest 2% of pops (the tail)."""
    rows = []
    for ms, card in share:
        s = stages.get(card[3])
        if s is None or not all(s.get(k) for k in [*STAGES, "commit"]):
            continue
        times = [card[0] - ms / 1000, *(s[k] for k in STAGES), card[0]]
        rows.append((ms, [(b - a) * 1000 for a, b in zip(times, times[1:])] + [(s["commit"] - s["queued"]) * 1000]))
    if not rows:
        print("  stages: no traced pops")
        return
    names = ["relay>recv", *(f"{a}>{b}" for a, b in zip(STAGES, STAGES[1:])), "sent>reader", "(queued>commit)"]
    rows.sort()
    tail = rows[-max(1, len(rows) // 50):]
    print(f"  stages of {len(rows)} traced pops (ms): p50 / p99 / mean over the slowest {len(tail)}")
    for i, name in enumerate(names):
        column = [r[1][i] for r in rows]
        print(f"    {name:<16} {statistics.median(column):7.2f} {percentile(column, 0.99):7.2f} "
              f"{statistics.fmean(r[1][i] for r in tail):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of calls in the loaded phase")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, recordings, databases)")
    parser.add_argument("--code", type=Path, action="append",
                        help="a checkout (with its .venv) whose daemon to measure; repeat to compare, interleaved "
                             "(default: this one)")
    parser.add_argument("--rounds", type=int, default=1, help="loaded runs per checkout, interleaved")
    parser.add_argument("--no-baseline", action="store_true", help="skip the 2 calls/s phase")
    parser.add_argument("--trace", action="store_true",
                        help="run the daemon through bench/trace_daemon.py and print where each pop's time goes")
    args = parser.parse_args()
    codes = [c.resolve() for c in args.code] if args.code else [ROOT]
    missing = missing_tools()
    if missing:
        print(f"pop latency: needs {', '.join(missing)} (run .ci/setup)")
        return
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        runs = {"baseline: 2 calls/s, all to 1001": (2, 20.0, EXTENSION),
                "loaded: 100 calls/s over 1001-1010": (100, args.seconds, "1001-1010")}
        recordings = {}
        for i, (name, (rate, seconds, extensions)) in enumerate(runs.items()):
            recordings[name] = folder / f"load{i}.plain.esl"
            record(recordings[name], "--rate", str(rate), "--duration", str(seconds), "--mix", "inbound_answered=1",
                   "--extensions", extensions, "--seed", "9")
        plan = [] if args.no_baseline else [(name, code, 0) for name in list(runs)[:1] for code in codes]
        plan += [(list(runs)[1], code, r) for r in range(args.rounds) for code in codes]
        desktop = Desktop(folder / "desktop").start()
        results = []
        try:
            for i, (name, code, r) in enumerate(plan):
                result = phase(folder / f"phase{i}", desktop, recordings[name], code, args.trace)
                results.append((name, code, r, result))
                print(f"{name}, {code} (round {r + 1}): load average {result['load']:.1f}, p99 "
                      f"{percentile([m for m, _ in result['share']], 0.99) if result['share'] else 0:.1f} ms",
                      flush=True)
        finally:
            desktop.stop()
    for name, code, r, result in results:
        print(f"{name}, daemon of {code}, round {r + 1} ({result['rings']} rings relayed, load average "
              f"{result['load']:.1f})")
        report("daemon's share, event frame in -> SSE card out (every extension)", [m for m, _ in result["share"]], 5)
        report("simulator -> notification on the bus (1001)", [m for m, _ in result["shown"]], 20)
        if args.trace:
            report_stages(result["share"], result["stages"])
    if len(codes) > 1 or args.rounds > 1:
        print("all loaded rounds pooled, per checkout")
        for code in codes:
            mine = [res for name, c, _, res in results if c == code and name.startswith("loaded")]
            p99s = ", ".join(f"{percentile([m for m, _ in x['share']], 0.99):.1f}" for x in mine if x["share"])
            print(f" {code}: loaded runs' p99 {p99s} ms")
            report("daemon's share", [m for x in mine for m, _ in x["share"]], 5)
            report("to notification", [m for x in mine for m, _ in x["shown"]], 20)


if __name__ == "__main__":
    main()
