"""Recordings end to end (docs/recordings.md): how fast recorded calls become checked rows, and how fast the daemon
serves byte ranges of them.

Starts `screenpop simulate --generate --record-dir` (FreeSWITCH's paths mapped to the folder) into `screenpop daemon`
on SQLite in a temporary folder, waits until every recording the simulator wrote is checked `ok`, then asks the
daemon for --requests random 64 KiB ranges of those files from --clients threads (as players seeking) and prints
requests/s, MB/s and the latency percentiles, with the load average.

    flock /tmp/screenpop-bench.lock python bench/recordings.py [--calls 200] [--rate 50] [--requests 2000] [--clients 8]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FS_DIR = "/var/lib/freeswitch/recordings"
RANGE = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenpop(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", *args], **kwargs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()

    from screenpop.daemon.auth import tokens
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate
    from screenpop.db.models import Recording

    folder = Path(tempfile.mkdtemp(prefix="screenpop-bench-rec-"))
    rec_dir = folder / "rec"
    url = f"sqlite:///{folder / 'screenpop.db'}"
    db = open_database(url)
    migrate(db)
    _, admin = tokens.create(None, role="admin")
    esl, http_port = free_port(), free_port()
    config = folder / "screenpop.toml"
    config.write_text(f'[freeswitch]\nport = {esl}\n[database]\nurl = "{url}"\n[http]\nlisten = "127.0.0.1:{http_port}"\n'
                      f'[numbers]\ndefault_region = "IS"\n[log]\nlevel = "warning"\n'
                      f'[recordings]\nroots = []\ncheck_interval = 0.2\n[recordings.paths]\n"{FS_DIR}" = "{rec_dir}"\n')
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sim = screenpop("simulate", "--generate", "--port", str(esl), "--calls", str(args.calls), "--rate", str(args.rate),
                    "--speed", "20", "--seed", "3", "--linger", "1", "--record-dir", str(rec_dir),
                    "--record-fs-dir", FS_DIR, **quiet)
    time.sleep(0.5)
    daemon = screenpop("daemon", "--config", str(config), **quiet)
    try:
        started = time.monotonic()
        sim.wait(600)
        sim_done = time.monotonic()
        written = len(list(rec_dir.rglob("*.wav")))
        while Recording.select().where(Recording.status == "ok").count() < written:
            if time.monotonic() - sim_done > 120:
                break
            time.sleep(0.1)
        checked = time.monotonic()
        rows = list(Recording.select().where(Recording.status == "ok"))
        print(f"recordings: {written} written by the simulator, {len(rows)} checked ok "
              f"{checked - sim_done:.2f} s after the simulator finished ({sim_done - started:.1f} s of calls)")
        if not rows:
            return 0
        latencies: list[float] = []
        sizes = 0
        lock = threading.Lock()
        per_client = args.requests // args.clients

        def client(seed: int) -> None:
            nonlocal sizes
            rng = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
            for _ in range(per_client):
                rec = rng.choice(rows)
                first = rng.randrange(0, max(1, (rec.size or 1) - RANGE))
                t = time.perf_counter()
                conn.request("GET", f"/api/v1/calls/{rec.call_uuid}/recordings/{rec.id}/audio",
                             headers={"Authorization": f"Bearer {admin}", "Range": f"bytes={first}-{first + RANGE - 1}"})
                resp = conn.getresponse()
                body = resp.read()
                elapsed = time.perf_counter() - t
                assert resp.status == 206, resp.status
                with lock:
                    latencies.append(elapsed)
                    sizes += len(body)
            conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        latencies.sort()
        q = statistics.quantiles(latencies, n=100)
        print(f"ranges: {len(latencies)} requests of 64 KiB from {args.clients} clients in {wall:.2f} s: "
              f"{len(latencies) / wall:.0f} requests/s, {sizes / wall / 1e6:.1f} MB/s; "
              f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for proc in (sim, daemon):
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
