"""Start to following: from the daemon's process start to FreeSWITCH subscribed and resynchronised.

After a `kill -9` (or a crash) systemd starts the daemon again RestartSec later; until the new process follows
FreeSWITCH it is blind, and a call that begins and ends in that window is only recovered afterwards. This
measures the daemon's part of the window: the clock starts just before the process is spawned and stops when
it logs `resynchronised with FreeSWITCH` (connected, authenticated, subscribed, the channel list applied).
The time to `HTTP listening` is printed beside it.

The simulator stands in for FreeSWITCH, generating calls, so calls are up at every start; the database is
SQLite, then PostgreSQL (schemas of the bench's own, dropped at the end). Every run ends with SIGKILL, the crash
it stands for, so each start finds the calls of the run before still open. The baseline is the code of another
git revision (default `main`, unpacked with `git archive` and run by the same interpreter), started alternately
with this tree's code in the same run, on the same simulator.

    python bench/startup.py [--runs 7] [--baseline main] [--pg postgresql://postgres@127.0.0.1:5432/test]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import free_port, simulator, write_config  # noqa: E402

FOLLOWING = "resynchronised with FreeSWITCH"
LISTENING = "HTTP listening"


def unpack(revision: str, folder: Path) -> dict[str, str]:
    """The code of revision under folder, importable as screenpop.* ahead of this tree: the environment to run it."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision, "daemon", "db", "tray"],
                             check=True, capture_output=True).stdout
    src = folder / "src"
    src.mkdir()
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    shim = folder / "shim" / "screenpop"
    shim.mkdir(parents=True)
    for name in ("daemon", "db", "tray"):
        (shim / name).symlink_to(src / name)
    env = {"PYTHONPATH": str(folder / "shim")}
    where = subprocess.run([sys.executable, "-c", "import screenpop.daemon.runtime as s; print(s.__file__)"],
                           env={**os.environ, **env}, check=True, capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(folder)):
        raise SystemExit(f"the baseline does not import from {folder}: {where}")
    return env


def start_once(config: Path, env: dict[str, str]) -> tuple[float, float]:
    """Spawn the daemon, time its FOLLOWING and LISTENING lines from the spawn, let it run a second, kill -9 it."""
    seen: dict[str, float] = {}
    lines: list[str] = []
    done = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "daemon", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            for mark in (FOLLOWING, LISTENING):
                if mark in line and mark not in seen:
                    seen[mark] = time.perf_counter() - t0
            if len(seen) == 2:
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done.wait(60)
    time.sleep(1.0)  # calls go on; the ones up now are open in the database at the next start
    proc.kill()
    proc.wait()
    reader.join(5)
    if len(seen) < 2:
        raise SystemExit(f"the daemon did not reach both lines within 60 s (saw {sorted(seen)}):\n{''.join(lines[-20:])}")
    return seen[FOLLOWING], seen[LISTENING]


def pg_schemas(url: str, names: list[str], create: bool) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            if create:
                conn.execute(f"CREATE SCHEMA {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7, help="measured starts per variant and database (default 7)")
    parser.add_argument("--baseline", default="main", help="git revision to compare with (default main)")
    parser.add_argument("--pg", default=os.environ.get("SCREENPOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
                        help="PostgreSQL URL ('' to skip PostgreSQL)")
    parser.add_argument("--rate", type=float, default=10.0, help="simulated calls per second (default 10)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="screenpop-bench-startup-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "base").mkdir()
        variants = {f"baseline ({args.baseline})": unpack(args.baseline, tmp / "base"), "this tree": {}}
        port = free_port()
        sim = simulator(tmp, port, "--generate", "--rate", str(args.rate), "--seed", "11")
        schemas = [f"bench_startup_{i}" for i in range(len(variants))]
        backends = {"sqlite": [f"sqlite:///{tmp}/{i}.db" for i in range(len(variants))]}
        if args.pg:
            pg_schemas(args.pg, schemas, create=True)
            backends["postgresql"] = [f"{args.pg}?schema={name}" for name in schemas]
        print(f"start to following (spawn -> '{FOLLOWING}'), and to '{LISTENING}'; simulator at {args.rate:g} "
              f"calls/s; {args.runs} starts each after a warm-up, every run ended by SIGKILL; "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        try:
            for backend, urls in backends.items():
                configs = [write_config(tmp / f"{backend}-{i}.toml", port, url) for i, url in enumerate(urls)]
                times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
                for run in range(args.runs + 1):
                    for (name, env), config in zip(variants.items(), configs):
                        measured = start_once(config, env)
                        if run:  # the first start of each migrates a new database: not counted
                            times[name].append(measured)
                for name, values in times.items():
                    follow = [f for f, _ in values]
                    listen = [h for _, h in values]
                    print(f"  {backend:<10} {name:<22} following: median {statistics.median(follow):.3f} s, "
                          f"max {max(follow):.3f} s   HTTP: median {statistics.median(listen):.3f} s, "
                          f"max {max(listen):.3f} s")
                base, this = (statistics.median(f for f, _ in values) for values in times.values())
                print(f"  {backend:<10} this tree follows in {this / base:.0%} of the baseline's median time")
        finally:
            sim.close()
            if args.pg:
                pg_schemas(args.pg, schemas, create=False)


if __name__ == "__main__":
    main()
