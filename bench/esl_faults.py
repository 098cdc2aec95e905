"""A frozen link to FreeSWITCH: how long until the daemon notices, and until it follows FreeSWITCH again.

The daemon (with the packaged [freeswitch] defaults) reaches the simulator through a relay. Once it follows,
the relay freezes the connection: open, nothing passing either way (a stuck firewall or NAT entry); new
connections pass. Measured from the freeze: the daemon's `lost connection to FreeSWITCH` line (noticed) and
its next `resynchronised with FreeSWITCH` line (following again). Each run freezes twice, the second time
right after the first reconnect (a second drop within 30 s, where the old backoff waited longest). The
baseline is the code of another git revision (default `main`, as in bench/startup.py), measured in the same run.

    python bench/esl_faults.py [--runs 3] [--baseline main]

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
sys.path.insert(0, str(ROOT / "bench"))

from startup import unpack  # noqa: E402
from support import Proxy, free_port, simulator  # noqa: E402

NOTICED = "lost connection to FreeSWITCH"
FOLLOWING = "resynchronised with FreeSWITCH"
WAIT = 90.0  # seconds: the old keepalive alone was 30 s


class Daemon:
    """A daemon process whose log lines are kept with the moment each was read."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "daemon", "--config", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **env})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.perf_counter(), line))

    def next(self, mark: str, after: float) -> float:
        """When the first line holding mark after `after` was read (waits up to WAIT seconds)."""
        deadline = time.perf_counter() + WAIT
        while time.perf_counter() < deadline:
            for at, line in list(self.lines):
                if at > after and mark in line:
                    return at
            time.sleep(0.01)
        raise SystemExit(f"no '{mark}' line within {WAIT:g} s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def config_for(path: Path, port: int, db: Path) -> Path:
    """The packaged defaults but for the FreeSWITCH port, the database and a free HTTP port."""
    path.write_text(f'[freeswitch]\nport = {port}\n\n[database]\nurl = "sqlite:///{db}"\n\n'
                    f'[http]\nlisten = "127.0.0.1:{free_port()}"\n', encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per variant, two freezes each (default 3)")
    parser.add_argument("--baseline", default="main", help="git revision to compare with (default main)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-esl-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "base").mkdir()
        variants = {f"baseline ({args.baseline})": unpack(args.baseline, tmp / "base"), "this tree": {}}
        port = free_port()
        sim = simulator(tmp, port)
        print(f"a frozen connection to the simulator, {args.runs} runs x 2 freezes per variant; seconds from the "
              f"freeze; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        try:
            for i, (name, env) in enumerate(variants.items()):
                noticed: list[list[float]] = [[], []]
                back: list[list[float]] = [[], []]
                for run in range(args.runs):
                    proxy = Proxy(("127.0.0.1", port))
                    proxy.start()
                    d = Daemon(config_for(tmp / f"{i}-{run}.toml", proxy.port, tmp / f"{i}.db"), env)
                    try:
                        since = d.next(FOLLOWING, 0.0)
                        for freeze in range(2):
                            time.sleep(0.5)
                            proxy.freeze()
                            frozen = time.perf_counter()
                            noticed[freeze].append(d.next(NOTICED, frozen) - frozen)
                            since = d.next(FOLLOWING, frozen)
                            back[freeze].append(since - frozen)
                    finally:
                        d.stop()
                        proxy.close()
                for freeze, label in enumerate(("first freeze", "second, right after reconnecting")):
                    print(f"  {name:<18} {label:<34} noticed: median {statistics.median(noticed[freeze]):6.2f} s, "
                          f"max {max(noticed[freeze]):6.2f} s   following again: median "
                          f"{statistics.median(back[freeze]):6.2f} s, max {max(back[freeze]):6.2f} s")
        finally:
            sim.close()


if __name__ == "__main__":
    main()
