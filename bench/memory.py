"""Daemon memory with many concurrent calls: resident memory of the daemon's pipeline at the peak of concurrency.

The simulator (its own process) generates calls arriving faster than they end: by default 1,500 calls per
second of simulated time, ~8 s each, 16,000 calls, so more than 10,000 are up at once. This process runs
what the daemon runs: the supervised ESL connection subscribed to the daemon's events, the call tracker, and
the writer into SQLite. Prints the peak number of calls held and the resident memory then, against the same
process before the first call (the baseline), and the cost per call.

    python bench/memory.py [--calls 16000] [--rate 1500]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from intake import simulator  # noqa: E402

from screenpop.daemon.calls.direction import DirectionRules  # noqa: E402
from screenpop.daemon.calls.tracker import SUBSCRIBED_EVENTS, CallTracker  # noqa: E402
from screenpop.daemon.pbx.esl import EslSupervisor  # noqa: E402
from screenpop.daemon.record.writer import Writer  # noqa: E402
from screenpop.daemon.staff import Staff  # noqa: E402
from screenpop.db.database import open_database  # noqa: E402
from screenpop.db.migrations import migrate  # noqa: E402
from screenpop.db.models import Call  # noqa: E402
from screenpop.db.numbers import NumberRules  # noqa: E402


def rss_mb() -> float:
    """Current resident set size in MB (from /proc, so it can go down as well as up)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=16000)
    parser.add_argument("--rate", type=float, default=1500.0, help="calls per second of simulated time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-") as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'memory.db'}")
        migrate(db)
        numbers = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)
        writer = Writer(db, staff=Staff(), e164=lambda raw: numbers.classify(raw).e164)  # a fresh database: no employees
        tracker = CallTracker(DirectionRules(frozenset({"external"}), frozenset({"public"}), numbers.is_extension), writer)
        gc.collect()
        baseline = rss_mb()
        proc, port = simulator("--generate", "--rate", str(args.rate), "--calls", str(args.calls), "--speed", "0",
                               "--linger", "1", "--seed", "3")
        writer_greenlet = gevent.spawn(writer.run)
        esl = EslSupervisor("127.0.0.1", port, "ClueCon", SUBSCRIBED_EVENTS, tracker.handle, keepalive=None).start()
        peak_calls, peak_rss, started = 0, 0.0, time.monotonic()
        while proc.poll() is None:
            gevent.sleep(0.25)
            if len(tracker.calls) > peak_calls:
                peak_calls, peak_rss = len(tracker.calls), rss_mb()
        writer.wait_idle(60)
        esl.stop()
        writer.stop()
        writer_greenlet.kill()
        print(f"{Call.select().count()} calls stored, {esl.events_dispatched} events tracked "
              f"in {time.monotonic() - started:.0f} s")
        print(f"peak concurrent calls held by the tracker: {peak_calls:,}")
        print(f"resident memory: {baseline:.1f} MB before the first call, {peak_rss:.1f} MB at the peak "
              f"(+{peak_rss - baseline:.1f} MB, {(peak_rss - baseline) * 1e6 / max(peak_calls, 1) / 1024:.1f} KiB a call)")
        verdict = "met" if peak_calls >= 10000 and peak_rss < 150 else "not met"
        print(f"goal: under 150 MB with 10,000 concurrent calls: {verdict}")
        db.close()


if __name__ == "__main__":
    main()
