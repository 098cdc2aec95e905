"""ESL intake benchmark: events per second parsed, tracked and stored by the daemon's pipeline, against plain
greenswitch receive-and-dispatch, on the same byte stream served by the simulator over loopback, in one run.

1. The simulator generates N calls (default mix) once; their events are recorded exactly as a client
   subscribed to the daemon's events receives them (a .plain.esl file like the real captures).
2. `screenpop simulate --replay` serves that file as fast as it can to (a) plain greenswitch InboundESL with
   a '*' handler, (b) the daemon's pipeline: EslSupervisor -> CallTracker -> Writer -> SQLite (WAL).
3. Prints events/s for each and the ratio, timed from the subscription (when the replay starts) to the last
   event dispatched; for (b), to the last call and pop committed.

    python bench/intake.py [--calls 1500] [--keep FILE]

Never fails the test suite: it is not a test.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import greenswitch  # noqa: E402

from screenpop.daemon.calls.direction import DirectionRules  # noqa: E402
from screenpop.daemon.calls.tracker import CallTracker  # noqa: E402
from screenpop.daemon.pbx.esl import EslSupervisor  # noqa: E402
from screenpop.daemon.record.writer import Writer  # noqa: E402
from screenpop.daemon.staff import Staff  # noqa: E402
from screenpop.db.database import open_database  # noqa: E402
from screenpop.db.migrations import migrate  # noqa: E402
from screenpop.db.models import Call, CallEvent  # noqa: E402
from screenpop.db.numbers import NumberRules  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import record  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulator(*args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "simulate", "--port", str(port), *args],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port


def run_plain(path: Path, total: int) -> float:
    """Plain greenswitch: receive and dispatch to a '*' handler."""
    proc, port = simulator("--replay", str(path), "--speed", "0", "--linger", "2")
    seen = {"n": 0, "last": 0.0}

    def handler(event) -> None:
        seen["n"] += 1
        seen["last"] = time.perf_counter()

    esl = greenswitch.InboundESL("127.0.0.1", port, "ClueCon")
    esl.connect()
    esl.register_handle("*", handler)
    seen["first"] = time.perf_counter()
    esl.send("event plain ALL")
    deadline = time.monotonic() + 120
    while seen["n"] < total and time.monotonic() < deadline:
        gevent.sleep(0.05)
    esl._run = False
    esl.sock.close()
    proc.kill()
    proc.wait()
    if seen["n"] < total:
        print(f"  plain greenswitch received only {seen['n']} of {total} events")
    return seen["n"] / (seen["last"] - seen["first"])


def run_screenpop(path: Path, total: int, workdir: Path) -> tuple[float, int, int]:
    """The daemon's pipeline: guarded ESL reader, call tracker, batched writer into SQLite."""
    db = open_database(f"sqlite:///{workdir / 'intake.db'}")
    migrate(db)
    numbers = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)
    writer = Writer(db, staff=Staff(), e164=lambda raw: numbers.classify(raw).e164)  # a fresh database: no employees
    rules = DirectionRules(frozenset({"external"}), frozenset({"public"}), numbers.is_extension)
    tracker = CallTracker(rules, writer)
    seen = {"n": 0, "first": 0.0}

    def on_event(event) -> None:
        seen["n"] += 1
        tracker.handle(event)

    def on_connected(api) -> None:
        seen["first"] = time.perf_counter()

    proc, port = simulator("--replay", str(path), "--speed", "0", "--linger", "2")
    writer_greenlet = gevent.spawn(writer.run)
    esl = EslSupervisor("127.0.0.1", port, "ClueCon", ["ALL"], on_event, on_connected, keepalive=None).start()
    deadline = time.monotonic() + 120
    while seen["n"] < total and time.monotonic() < deadline:
        gevent.sleep(0.01)
    writer.wait_idle(60)
    while writer.pending:
        gevent.sleep(0.01)
        writer.wait_idle(60)
    elapsed = time.perf_counter() - seen["first"]
    esl.stop()
    writer.stop()
    writer_greenlet.kill()
    proc.kill()
    proc.wait()
    calls, pops = Call.select().count(), CallEvent.select().count()
    db.close()
    return seen["n"] / elapsed, calls, pops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500, help="generated calls (default 1500)")
    parser.add_argument("--keep", help="keep the recorded stream in this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-") as tmp:
        workdir = Path(tmp)
        path = Path(args.keep) if args.keep else workdir / "generated.plain.esl"
        total = record(path, "--rate", "100000", "--calls", str(args.calls), "--seed", "1")
        size = path.stat().st_size
        print(f"stream: {args.calls} generated calls, {total} events the daemon subscribes to, "
              f"{size / total:.0f} bytes/event on average")
        plain = run_plain(path, total)
        print(f"plain greenswitch, receive + dispatch:          {plain:9,.0f} events/s")
        ours, calls, pops = run_screenpop(path, total, workdir)
        print(f"screenpop, receive + parse + track + store:     {ours:9,.0f} events/s  ({calls} calls, {pops} pops stored)")
        print(f"ratio: {ours / plain:.2f}x plain greenswitch (goal >= 1.5x)")


if __name__ == "__main__":
    main()
