"""Tray client footprint: resident memory and CPU of `screenpop tray` connected to a daemon, idle for 30 s.

Runs the real tray (with its icon in trayer, pops shown by dunst, on a private Xvfb and session bus, as the
desktop tests do; `--no-icon` when those tools are missing) against the real daemon's push stream (its HTTP
server on a free port, SQLite, fed a few calls by the simulator so the tray has popped and drawn before the
idle window). Goal: < 60 MB resident, ~0 % CPU idle.

    python bench/tray.py [--seconds 30] [--calls 3]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from desktop import Desktop, missing_tools  # noqa: E402
from support import free_port, http_ready, wait_for  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6


def rollup_mb(pid: int) -> dict[str, float]:
    """Pss and private (USS) figures: most of the RSS of a GTK client is libraries shared with the desktop's others."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0]) * 1024 / 1e6
    out["Private"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def real_daemon(tmp: Path, calls: int):
    """The daemon with HTTP, a token for 1001, and the simulator ringing 1001 `calls` times."""
    from screenpop.daemon.auth import tokens
    from screenpop.daemon.customers.lookup import add_phone
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate
    from screenpop.db.models import Customer, Employee
    from screenpop.db.numbers import NumberRules

    url = f"sqlite:///{tmp / 'bench.db'}"
    db = open_database(url)
    migrate(db)
    Employee.create(name="Anna", extension="1001")
    c = Customer.create(name="Jón Jónsson", company="Norðurljós ehf.", category="vip")
    add_phone(c, "+3545551234", "mobile", NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8))
    _, token = tokens.create("1001")
    db.close()
    esl, http = free_port(), free_port()
    config = tmp / "daemon.toml"
    config.write_text(f'[freeswitch]\nport = {esl}\nreconnect_min = 0.2\nreconnect_max = 1.0\n\n[database]\nurl = "{url}"\n\n'
                      f'[numbers]\ndefault_region = "IS"\n\n[http]\nlisten = "127.0.0.1:{http}"\n', encoding="utf-8")
    procs = []
    log = open(tmp / "daemon.log", "ab")
    procs.append(subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "daemon", "--config", str(config)],
                                  stdout=log, stderr=subprocess.STDOUT))
    numbers = tmp / "numbers.txt"
    numbers.write_text("+3545551234\n", encoding="utf-8")

    def simulate():
        sim_log = open(tmp / "sim.log", "ab")
        p = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "simulate", "--port", str(esl), "--generate",
                              "--calls", str(calls), "--rate", "2", "--extensions", "1001", "--numbers", str(numbers),
                              "--mix", "inbound_answered=1", "--linger", "0.5"], stdout=sim_log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    return f"http://127.0.0.1:{http}", token, procs, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="idle window (default 30)")
    parser.add_argument("--calls", type=int, default=3, help="calls popped before the idle window (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-tray-") as name:
        tmp = Path(name)
        desktop = None
        procs: list[subprocess.Popen] = []
        try:
            if not missing_tools():
                desktop = Desktop(tmp / "desktop").start()
                env = desktop.env
            else:
                print(f"no desktop tools ({', '.join(missing_tools())}): tray without its icon")
                env = dict(os.environ)
            url, token, procs, simulate = real_daemon(tmp, args.calls)
            wait_for(lambda: http_ready(url), 20, "the daemon's HTTP server")
            tray_log = open(tmp / "tray.log", "ab")
            cmd = [sys.executable, "-m", "screenpop.daemon.cli", "tray", "--config", str(tmp / "none.toml"),
                   "--server", url, "--extension", "1001", "--token", token]
            if desktop is None:
                cmd.append("--no-icon")
            tray = subprocess.Popen(cmd, stdout=tray_log, stderr=subprocess.STDOUT, env=env)
            procs.append(tray)
            log = lambda: (tmp / "tray.log").read_text(errors="replace")  # noqa: E731
            wait_for(lambda: "state connected" in log(), 20, "the tray to connect")
            started = rss_mb(tray.pid)
            simulate().wait(60)
            wait_for(lambda: log().count(" ringing ") >= args.calls, 30, "the pops")
            time.sleep(1.0)
            cpu0, rss0 = cpu_seconds(tray.pid), rss_mb(tray.pid)
            t0 = time.monotonic()
            time.sleep(args.seconds)
            cpu1, rss1, wall = cpu_seconds(tray.pid), rss_mb(tray.pid), time.monotonic() - t0
            print(f"tray client against the real daemon (SQLite, simulator), "
                  f"{'with its icon (gtk, trayer, dunst)' if desktop else 'no icon'}")
            print(f"  resident after connecting:      {started:6.1f} MB")
            print(f"  resident after {args.calls} pops, idle:    {rss0:6.1f} MB -> {rss1:6.1f} MB after {wall:.0f} s "
                  f"(peak {status_mb(tray.pid, 'VmHWM'):.1f} MB; goal < 60 MB)")
            roll = rollup_mb(tray.pid)
            print(f"  of which private (USS) {roll['Private']:.1f} MB, proportional (PSS) {roll['Pss']:.1f} MB, "
                  f"shared with other processes {roll['Shared_Clean'] + roll['Shared_Dirty']:.1f} MB")
            print(f"  CPU while idle:                 {cpu1 - cpu0:.2f} s in {wall:.0f} s = {100 * (cpu1 - cpu0) / wall:.2f} %")
            print(f"  threads: {status_mb(tray.pid, 'Threads') * 1e6 / 1024:.0f}")
        except Exception:  # noqa: BLE001 - a benchmark prints, never fails
            traceback.print_exc()
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
            if desktop is not None:
                desktop.stop()


if __name__ == "__main__":
    main()
