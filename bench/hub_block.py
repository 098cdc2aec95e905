"""How long the daemon's gevent hub is blocked at start, and whether that happens while the node's lock is held.

The election's lock session pings every hang_timeout / 3 from a greenlet; PostgreSQL ends the session after
hang_timeout idle ([cluster], idle_session_timeout). So anything that holds the hub for seconds once the election
started (imports, building the web app, a password hash at import) can cost the daemon its node. This runs one
daemon in this process (monkey-patched, as `screenpop daemon` is) against a simulator and a fresh PostgreSQL
schema, with a ticker greenlet every 10 ms; every gap over 100 ms is printed with the time since the election
started (negative: before it). Run it with a baseline checkout's code the same way (PYTHONPATH) to compare.

    python bench/hub_block.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--runs 3]

Not a test: prints numbers, never fails.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import free_port, simulator, write_config  # noqa: E402

TICK = 0.01
REPORT = 0.1


def run_once(tmp: Path, pg: str, esl_port: int) -> list[tuple[float, float]]:
    """One in-process daemon start: the hub gaps over REPORT as (seconds after the election started, gap)."""
    import psycopg

    from screenpop.daemon import config as config_module, runtime

    schema = f"bench_hub_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        path = write_config(tmp / f"{schema}.toml", esl_port, f"{pg}?schema={schema}")
        daemon = runtime.Daemon(config_module.load(path))
        gaps: list[tuple[float, float]] = []
        elected: list[float] = []
        start = daemon.election.start
        daemon.election.start = lambda: (elected.append(time.perf_counter()), start())

        def ticker() -> None:
            last = time.perf_counter()
            while True:
                gevent.sleep(TICK)
                now = time.perf_counter()
                if now - last - TICK > REPORT:
                    gaps.append((last, now - last))
                last = now

        tick = gevent.spawn(ticker)
        gevent.sleep(0)
        daemon.start()
        gevent.sleep(3.0)
        daemon.stop()
        tick.kill()
        origin = elected[0] if elected else 0.0
        return [(at - origin, gap) for at, gap in gaps]
    finally:
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=1, help="starts in one process (the first pays the imports)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        port = free_port()
        sim = simulator(tmp, port, "--generate", "--calls", "1000", "--rate", "2", "--speed", "1")
        try:
            for run in range(args.runs):
                gaps = run_once(tmp, args.pg, port)
                after = [gap for at, gap in gaps if at >= 0]
                print(f"run {run + 1}: hub gaps over {REPORT * 1000:.0f} ms (s after election start, gap s): "
                      + ", ".join(f"({at:+.2f}, {gap:.2f})" for at, gap in gaps))
                print(f"run {run + 1}: longest hub block after the election started: {max(after, default=0):.2f} s")
        finally:
            sim.popen.kill()


if __name__ == "__main__":
    main()
