"""The daemon of another checkout, so a bench can compare code in one run (each checkout with its own .venv, made
as in docs/testing.md): on a shared machine the other work moves the figures from run to run, so code is compared
in turns, never across runs."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def daemon_of(code: Path, folder: Path, config: Path, trace: bool = False):
    """`screenpop daemon --config config` run by checkout code's own .venv (through bench/trace_daemon.py of this
    checkout when tracing: its stamps go to folder/trace.jsonl); a tests/support.py Proc logging to folder/daemon.log."""
    from support import Proc

    python = str(code / ".venv" / "bin" / "python")
    args = [str(ROOT / "bench" / "trace_daemon.py"), "--config", str(config)] if trace else \
        ["-m", "screenpop.daemon.cli", "daemon", "--config", str(config)]
    env = {**os.environ, "SCREENPOP_TRACE": str(folder / "trace.jsonl")} if trace else None
    proc = Proc.__new__(Proc)  # Proc runs this interpreter; the daemon runs the compared checkout's
    proc.log_path = folder / "daemon.log"
    proc._log = open(proc.log_path, "ab")
    proc.popen = subprocess.Popen([python, *args], stdout=proc._log, stderr=subprocess.STDOUT, env=env)
    return proc
