"""Click-to-call: from the Call back click (POST /api/v1/originate) to the operator's `dialing` pop on its event stream.

The daemon (SQLite) follows the simulator in protocol-only mode; each originate is carried out by the simulator
with the `outbound-c2c` capture's events at --originate-speed 0 (the phone answers at once), so the figure is the
software path: HTTP, the token check, `bgapi originate` over the event socket, the simulator's events, the
tracker, the writer's commit, the card, the SSE frame. Printed beside it, from the same run: the time to the
API's answer (FreeSWITCH's BACKGROUND_JOB), and a baseline, the same POST with a number that cannot be dialled
(HTTP, token check, JSON and the 400 in words, nothing sent to FreeSWITCH), which is what the originate adds to.

    python bench/click_to_call.py [--calls 200] [--rate 5]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sse import Stream  # noqa: E402
from support import daemon, free_port, http_ready, simulator, wait_for, write_config  # noqa: E402


def post(port: int, token: str, number: str) -> tuple[int, float]:
    """POST /api/v1/originate; (status, seconds until the answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("POST", "/api/v1/originate", body=json.dumps({"number": number}).encode(),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    took = time.perf_counter() - started
    conn.close()
    return response.status, took


def figures(name: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:<44} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms   p99 {p99:7.1f} ms   max {ms[-1]:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="click-to-calls per second")
    args = parser.parse_args()

    from screenpop.daemon.auth import tokens
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    with tempfile.TemporaryDirectory(prefix="screenpop-c2c-bench-") as folder:
        tmp = Path(folder)
        url = f"sqlite:///{tmp / 'screenpop.db'}"
        db = open_database(url)
        migrate(db)
        _, token = tokens.create("1001")
        db.close()
        esl_port, http_port = free_port(), free_port()
        sim = simulator(tmp, esl_port, "--originate-speed", "0")
        config = write_config(tmp / "screenpop.toml", esl_port, url, http_port,
                              originate="[originate]\nrate_limit = 100\nrate_window = 1.0\n")
        d = daemon(tmp, config)
        stream = None
        try:
            wait_for(lambda: http_ready(f"http://127.0.0.1:{http_port}") or d.popen.poll() is not None, 30, "HTTP")
            wait_for(lambda: "connected to FreeSWITCH" in d.log(), 30, "the daemon to follow the simulator")
            stream = Stream(http_port, token)
            baseline, answered, popped = [], [], []
            for i in range(args.calls):
                status, took = post(http_port, token, "not a number")
                assert status == 400, status
                baseline.append(took)
                number = f"+354555{i % 10000:04d}"
                seen = len(stream.messages)
                result: list[tuple[int, float]] = []
                click = threading.Thread(target=lambda: result.append(post(http_port, token, number)))
                started = time.perf_counter()
                click.start()  # the pop may come before the API's answer: watch the stream meanwhile
                while True:
                    cards = [m.card for m in stream.messages[seen:]]
                    if any(c["event"] == "dialing" and c["number"] == number for c in cards):
                        popped.append(time.perf_counter() - started)
                        break
                    if time.perf_counter() - started > 30:
                        raise SystemExit(f"no dialing pop for {number} within 30 s")
                    time.sleep(0.0002)
                click.join()
                status, took = result[0]
                assert status == 200, (status, d.log()[-2000:])
                answered.append(took)
                time.sleep(max(0.0, 1 / args.rate - (time.perf_counter() - started)))
            print(f"click-to-call through the simulator, {args.calls} calls at {args.rate:g}/s, SQLite, one machine")
            figures("baseline: POST refused (400, no FreeSWITCH)", baseline)
            figures("POST -> API answer (the job's +OK)", answered)
            figures("POST -> operator's dialing pop on SSE", popped)
        finally:
            if stream is not None:
                stream.close()
            d.terminate()
            d.close()
            sim.close()


if __name__ == "__main__":
    main()
