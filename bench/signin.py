"""Benchmark password sign-in (docs/accounts.md): the argon2id hash and check alone, a whole POST /signin through the
daemon's Flask app on SQLite, and what a sign-in costs the event loop (the hash runs on a native thread, so a
greenlet ticking every millisecond meanwhile should see no long gap). Prints p50/p95/max in ms and the load
average; never fails.

    flock /tmp/screenpop-bench.lock python bench/signin.py [--n 30]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402

from screenpop.daemon.auth import people  # noqa: E402
from screenpop.daemon.config import WebConfig  # noqa: E402
from screenpop.db.database import open_database  # noqa: E402
from screenpop.db.migrations import migrate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import HubApp  # noqa: E402

import logging  # noqa: E402

logging.disable(logging.WARNING)  # the refusals are logged, one line each: not what is measured

PASSWORD = "correct horse battery"


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f}  p95 {p95 * 1000:7.1f}  max {ordered[-1] * 1000:7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="sign-ins of each kind (default 30)")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    hashes, checks = [], []
    stored = people.hash_password(PASSWORD)
    for _ in range(args.n):
        t = time.perf_counter()
        people.hash_password(PASSWORD)
        hashes.append(time.perf_counter() - t)
        t = time.perf_counter()
        people.password_matches(stored, PASSWORD)
        checks.append(time.perf_counter() - t)
    print(f"argon2id hash          {_ms(hashes)} ms")
    print(f"argon2id check         {_ms(checks)} ms")

    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/bench.db")
        migrate(db)
        people.create(people.person_fields({"login": "anna", "name": "Anna", "role": "operator", "extension": "1001"},
                                           creating=True), stored)
        site = HubApp(db, Path(tmp) / "photos", web_config=WebConfig(signin_free_failures=10_000,
                                                                     signin_address_free_failures=10_000,
                                                                     signin_lock_after=1000))
        gaps: list[float] = []
        ticking = True

        def tick() -> None:
            last = time.perf_counter()
            while ticking:
                gevent.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = gevent.spawn(tick)
        try:
            for label, password in (("POST /signin, right", PASSWORD), ("POST /signin, wrong", "not the password")):
                times = []
                for _ in range(args.n):
                    client = site.app.test_client()
                    with client.session_transaction() as session:
                        session["csrf"] = "bench"
                    t = time.perf_counter()
                    r = client.post("/signin", data={"login": "anna", "password": password, "csrf": "bench"})
                    times.append(time.perf_counter() - t)
                    assert r.status_code in (303, 403), r.status_code
                print(f"{label:<22} {_ms(times)} ms")
        finally:
            ticking = False
            ticker.join()
            site.close()
            db.close()
        print(f"event loop gaps during the sign-ins (a 1 ms ticker): {_ms(gaps)} ms")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
