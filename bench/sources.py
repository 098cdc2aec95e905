"""Sources: the pop's latency with and without a source configured, and how long after the source's answer its
update comes.

Real parts: a stream recorded once from `screenpop simulate --generate` (100 calls/s over 50 extensions, a number
from a list of a fresh one per call, so nearly every pop asks the source; bench/recording.py), replayed restamped
at its own pace (`--replay --restamp --speed 1`, which costs the simulator a fraction of what generating live
does, so the load does not eat the core the daemon needs) -> `screenpop daemon` (SQLite) -> SSE, read by an admin
stream of every extension in this process, which stamps each `pop` and `update` message as it arrives. The source
is an HTTP service in a child process answering after a set delay, which notes for each request when it came and
when its answer was sent, by number; its cache is off. Three phases in the same run: no source (the baseline), an
http source, and (if MariaDB answers on 127.0.0.1:3306) a MariaDB ERP holding every number of the stream.

The first WARM_UP seconds of each phase are left out.

- pop: arrival of the ringing card minus the ring's time on the card (`at`, the simulator's clock, ms): the
  pop's latency through the daemon; with a source it must not move (goal p99 < 50 ms).
- source's own latency (http): the service's request in -> answer sent, for the request each update answered.
- update - answer sent (http): the update's arrival minus the moment the service finished sending the answer it
  carries: what screenpop adds to the source's own latency (goal p99 < 10 ms).
- update - pop - delay (http, the older and coarser measure) and update - pop (MariaDB, where the query's own time
  is inside: the daemon does not log it).
- pops without an update: each should have one (every number is known to the source); the daemon's log says
  why not (a source timing out or paused, the pool full).

    python bench/sources.py [--seconds 20] [--rate 100] [--delay 0.05] [--code ../main --code . --rounds 3]

With `--code` (checkouts, each with its own .venv) only the http phase runs, once per checkout per round, the
checkouts taking turns: on a shared machine, compare code in the same run.

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import free_port, http_ready, simulator, wait_for, write_config  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from checkouts import daemon_of  # noqa: E402
from recording import record  # noqa: E402

from screenpop.tray.stream import SSEParser  # noqa: E402

WARM_UP = 2.0  # seconds of the first pops left out (the daemon loads the pages and warms its caches)

SERVICE = """
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote
delay, out, lock = float(sys.argv[1]), open(sys.argv[2], "a", buffering=1), threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        came = time.time()
        time.sleep(delay)
        body = json.dumps({"customer": {"tier": "gold", "id": "C-1"}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
        sent = time.time()
        with lock:
            out.write(f"{unquote(self.path.rsplit('/', 1)[-1])} {came} {sent}\\n")
s = ThreadingHTTPServer(("127.0.0.1", 0), H); s.daemon_threads = True
print(s.server_address[1], flush=True); s.serve_forever()
"""


class Reader(threading.Thread):
    """An admin stream of every extension: (arrival, event, card) of each message."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", "/api/v1/events", headers={"Authorization": f"Bearer {token}"})
        self.resp = self.conn.getresponse()
        self.got: list[tuple[float, str, dict]] = []
        self.start()

    def run(self) -> None:
        parser = SSEParser()
        try:
            while chunk := self.resp.read1(65536):
                now = time.time()
                for msg in parser.feed(chunk):
                    self.got.append((now, msg.event, json.loads(msg.data)))
        except OSError:
            pass


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<34} (none)"
    return (f"{name:<34} n={len(values):5d}  p50 {pct(values, .5) * 1000:7.1f} ms  p99 {pct(values, .99) * 1000:7.1f} ms"
            f"  max {max(values) * 1000:7.1f} ms")


def served(log: Path) -> dict[str, list[tuple[float, float]]]:
    """The HTTP service's requests by number: (came, answer sent) of each, in order."""
    out: dict[str, list[tuple[float, float]]] = {}
    for row in log.read_text(encoding="utf-8").splitlines():
        number, came, sent = row.split()
        out.setdefault(number, []).append((float(came), float(sent)))
    return out


def phase(folder: Path, name: str, sources: str, recording: Path, delay: float, requests: Path | None,
          code: Path = ROOT) -> None:
    """One replay of the recording through the daemon of checkout code with these sources; requests: the HTTP
    service's log."""
    from screenpop.daemon.auth import tokens
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    work = folder / re.sub(r"[^\w.-]+", "_", name)
    work.mkdir()
    url = f"sqlite:///{work / 'screenpop.db'}"
    db = open_database(url)
    migrate(db)
    _, admin = tokens.create(None, role="admin")
    db.close()
    esl, web = free_port(), free_port()
    config = write_config(work / "screenpop.toml", esl, url, http_port=web, sources=sources)
    d = daemon_of(code, work, config)
    try:
        wait_for(lambda: http_ready(f"http://127.0.0.1:{web}") or d.popen.poll() is not None, 30, "the daemon")
        reader = Reader(web, admin)
        if requests is not None:
            requests.write_text("", encoding="utf-8")
        sim = simulator(work, esl, "--replay", str(recording), "--restamp", "--speed", "1", "--linger", "3")
        sim.wait(600)
        time.sleep(1.0)
        def ring(card: dict) -> float:
            return dt.datetime.fromisoformat(card["at"].replace("Z", "+00:00")).timestamp()

        pops = {c["id"]: (t, c) for t, e, c in reader.got if e == "pop" and c["event"] == "ringing"}
        start = min((ring(c) for _, c in pops.values()), default=0.0) + WARM_UP
        pops = {i: (t, c) for i, (t, c) in pops.items() if ring(c) >= start}  # the first seconds warm the daemon up
        latency = [t - ring(c) for t, c in pops.values()]
        updates = [(t, c) for t, e, c in reader.got if e == "update" and c["id"] in pops]
        after = [t - pops[c["id"]][0] - delay for t, c in updates]
        print(f"-- {name}: {len(pops)} ringing pops after the warm-up, {len(updates)} of their updates "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        print(line("  pop (arrival - ring)", latency))
        if sources and requests is not None:
            asked = served(requests)
            own, overhead = [], []
            for t, c in updates:  # the latest request for the number that came before the update
                answered = [r for r in asked.get(c["number"], ()) if r[0] <= t]
                if answered:
                    own.append(answered[-1][1] - answered[-1][0])
                    overhead.append(t - answered[-1][1])
            print(line("  source's own latency", own))
            print(line("  update - answer sent", overhead))
            print(line(f"  update - pop - {delay * 1000:g} ms", after))
        elif sources:
            print(line("  update - pop (query inside)", after))
        warnings = [r for r in d.log().splitlines() if "screenpop.sources" in r or "ERROR" in r]
        if warnings:
            print(f"  daemon log: {len(warnings)} line(s) of the sources or errors:\n    " + "\n    ".join(warnings[:5]))
        if "Traceback" in d.log():
            print("  daemon log:\n" + d.log()[-2000:])
    finally:
        d.terminate(30)
        d.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--delay", type=float, default=0.05, help="the http source's own latency, seconds")
    ap.add_argument("--code", type=Path, action="append", help="a checkout whose daemon to measure (repeat to compare)")
    ap.add_argument("--rounds", type=int, default=1, help="http phases per checkout, taking turns")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-sources-") as tmp:
        folder = Path(tmp)
        count = int(args.seconds * args.rate) + 100
        numbers = folder / "numbers.txt"
        numbers.write_text("".join(f"+3545{i:06d}\n" for i in range(count)), encoding="utf-8")
        recording = folder / "load.plain.esl"
        record(recording, "--rate", str(args.rate), "--duration", str(args.seconds), "--extensions", "1001-1050",
               "--numbers", str(numbers), "--mix", "inbound_answered=1", "--seed", "9")
        requests = folder / "requests.log"
        service = subprocess.Popen([sys.executable, "-c", SERVICE, str(args.delay), str(requests)],
                                   stdout=subprocess.PIPE, text=True)
        port = int(service.stdout.readline())
        http_source = (f'[[sources]]\nname = "crm"\ntype = "http"\nurl = "http://127.0.0.1:{port}/c/{{e164}}"\n'
                       'cache_seconds = 0\nfields = { Tier = "customer.tier" }\n')
        try:
            print(f"{args.rate:g} calls/s for {args.seconds:g} s over 50 extensions, a number of {count} each call "
                  f"(a recorded stream replayed restamped); uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
            if args.code:
                for r in range(args.rounds):
                    for code in args.code:
                        phase(folder, f"http source ({args.delay * 1000:g} ms), {code.resolve()}, round {r + 1}",
                              http_source, recording, args.delay, requests, code.resolve())
                return
            phase(folder, "no source", "", recording, args.delay, None)
            phase(folder, f"http source ({args.delay * 1000:g} ms)", http_source, recording, args.delay, requests)
            try:
                from erp import erp, sources_toml

                with erp({f"5{i:06d}": f"Customer {i}" for i in range(count)}) as prefix:
                    phase(folder, "MariaDB source", sources_toml(None, prefix).replace(
                        "timeout = 0.3", "timeout = 0.3\ncache_seconds = 0"), recording, 0.0, None)
            except BaseException as exc:  # noqa: BLE001 - no MariaDB here: that phase is skipped, said so
                print(f"-- MariaDB source: skipped ({type(exc).__name__}: {exc})")
        finally:
            service.terminate()


if __name__ == "__main__":
    main()
