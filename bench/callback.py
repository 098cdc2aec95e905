"""Call back: from the click on a missed pop's Call back to the operator's `dialing` pop on the bus, p50/p99.

Real parts: the simulator generates missed calls to 1001 and carries out each originate with the `outbound-c2c`
capture's events at --originate-speed 0 (the phone answers at once); the daemon (SQLite); `screenpop tray` on
the desktop harness (Xvfb, a session bus, dunst: tests/desktop.py). Each round waits for a missed pop on screen
and invokes its Call back through dunst's context menu (`dunstctl context` and a dmenu script, as the desktop
tests do: the cheapest way that runs dunst's own action path). `dbus-monitor` stamps, on one clock, dunst's
ActionInvoked signal to the tray (the click) and the tray's Notify of the dialing pop ("Calling …"): the figure is
the tray's handling of the action, its POST /api/v1/originate, `bgapi originate`, the simulator's events, the
tracker, the writer's commit, the card, the SSE frame, and the tray's Notify.

Baseline in the same run, against the same daemon and simulator: the same POST sent by this process, to the
dialing card on an SSE stream (bench/click_to_call.py's path), which is what the tray and D-Bus add to.

    python bench/callback.py [--rounds 30] [--keep FOLDER]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from click_to_call import post  # noqa: E402
from desktop import Desktop, missing_tools  # noqa: E402
from sse import Stream  # noqa: E402
from support import daemon, free_port, http_ready, simulator, wait_for, write_config  # noqa: E402

EXTENSION = "1001"
NUMBER = "+3545551234"


def bus_messages(log: Path) -> list[tuple[float, str, list[str]]]:
    """(time, member, argument lines) of each message in a dbus-monitor log."""
    found: list[tuple[float, str, list[str]]] = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        head = re.match(r"(?:method call|signal|method return|error) time=([\d.]+)", line)
        if head:
            member = re.search(r"member=(\w+)", line)
            found.append((float(head.group(1)), member.group(1) if member else "", []))
        elif found:
            found[-1][2].append(line.strip())
    return found


def click_to_pop(log: Path) -> list[float]:
    """ms from each Call back invoked (ActionInvoked "call") to the next new Notify of a dialing pop."""
    messages = bus_messages(log)
    latencies = []
    for at, member, args in messages:
        if member != "ActionInvoked" or 'string "call"' not in args:
            continue
        for then, other, notify in messages:
            if then >= at and other == "Notify" and len(notify) > 3 and notify[3].startswith('string "Calling'):
                latencies.append((then - at) * 1000)
                break
    return latencies


def figures(name: str, ms: list[float]) -> None:
    if not ms:
        print(f"  {name}: no measurements")
        return
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    print(f"  {name:<52} n={len(ms):<4} p50 {statistics.median(ms):6.1f} ms  p99 {p99:6.1f} ms  max {ms[-1]:6.1f} ms")


def api_baseline(port: int, token: str, calls: int) -> list[float]:
    """ms from POST /api/v1/originate to the dialing card on an SSE stream, one call at a time."""
    stream = Stream(port, token)
    popped = []
    try:
        for _ in range(calls):
            seen = len(stream.messages)
            result: list[tuple[int, float]] = []
            click = threading.Thread(target=lambda: result.append(post(port, token, NUMBER)))
            started = time.perf_counter()
            click.start()  # the pop may come before the API's answer
            while not any(m.card["event"] == "dialing" for m in stream.messages[seen:]):
                if time.perf_counter() - started > 30:
                    raise SystemExit("no dialing pop within 30 s")
                time.sleep(0.0002)
            popped.append((time.perf_counter() - started) * 1000)
            click.join()
            time.sleep(0.2)
    finally:
        stream.close()
    return popped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="missed pops called back from the tray")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, databases)")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print(f"call back: needs {', '.join(missing)} (run .ci/setup)")
        return

    from screenpop.daemon.auth import tokens
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    with tempfile.TemporaryDirectory(prefix="screenpop-callback-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / 'screenpop.db'}"
        db = open_database(url)
        migrate(db)
        _, token = tokens.create(EXTENSION)
        db.close()
        esl_port, http_port = free_port(), free_port()
        config = write_config(folder / "screenpop.toml", esl_port, url, http_port,
                              originate="[originate]\nrate_limit = 100\nrate_window = 1.0\n")
        config.write_text(config.read_text().replace('level = "info"', 'level = "warning"'))
        numbers = folder / "numbers.txt"
        numbers.write_text(f"{NUMBER}\n", encoding="utf-8")
        desktop = Desktop(folder / "desktop").start()
        d = daemon(folder, config)
        sim = simulator(folder, esl_port, "--generate", "--calls", str(args.rounds * 4), "--rate", "0.5", "--seed", "5",
                        "--extensions", EXTENSION, "--numbers", str(numbers), "--mix", "inbound_missed=1",
                        "--linger", "600", "--originate-speed", "0")
        monitor = tray = None
        try:
            wait_for(lambda: http_ready(f"http://127.0.0.1:{http_port}") or d.popen.poll() is not None, 30, "HTTP")
            baseline = api_baseline(http_port, token, 50)
            monitor = desktop.spawn("dbus-monitor", [
                "dbus-monitor", "--session", "interface='org.freedesktop.Notifications',member='Notify'",
                "type='signal',interface='org.freedesktop.Notifications',member='ActionInvoked'"])
            tray_log = desktop.folder / "tray.log"
            tray = desktop.spawn("tray", [sys.executable, "-m", "screenpop.daemon.cli", "tray", "--config",
                                          str(folder / "absent.toml"), "--server", f"http://127.0.0.1:{http_port}",
                                          "--extension", EXTENSION, "--token", token])
            pops = lambda kind: len(re.findall(rf"pop \d+ {kind} ", tray_log.read_text(encoding="utf-8")))  # noqa: E731
            wait_for(lambda: "state connected" in tray_log.read_text(encoding="utf-8"), 60, "the tray to connect")
            done = lost = 0
            for _ in range(args.rounds * 4):
                desktop.close_all()
                missed, dialing = pops("missed"), pops("dialing")
                wait_for(lambda: pops("missed") > missed, 30, "a missed pop")
                try:
                    desktop.act("call")
                except AssertionError:
                    continue  # the pop had gone (closed with the last round's); the next one will do
                try:
                    wait_for(lambda: pops("dialing") > dialing, 10, "the dialing pop")
                except AssertionError:
                    lost += 1  # reported below: a click that never became a dialing pop is a finding, not a number
                    continue
                done += 1
                if done == args.rounds:
                    break
            time.sleep(1)
        finally:
            for p in (tray, monitor):
                if p is not None:
                    p.terminate()
                    p.wait(10)
            sim.close()
            d.terminate()
            d.close()
            desktop.stop()
        clicked = click_to_pop(desktop.folder / "dbus-monitor.log")
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(f"Call back through the simulator (SQLite, one machine; {load})")
        figures("baseline: POST /api/v1/originate -> dialing card on SSE", baseline)
        figures("tray: Call back invoked (dunst) -> dialing Notify on the bus", clicked)
        if lost:
            print(f"  note: {lost} Call back(s) chosen in dunst's menu brought no dialing pop within the wait")


if __name__ == "__main__":
    main()
