"""The analysis process: the daemon starts it (`python -m screenpop.daemon.analysis.runner CONFIG-JSON`) and sends
it one recording a line as JSON on stdin; it answers each with one JSON line on stdout. CPU work (levels, speech
recognition) runs here, at the idle scheduling class (CPU and I/O), so it only ever gets what the daemon and the
rest of the machine leave unused and the daemon's hub never waits for it (docs/analysis.md)."""
from __future__ import annotations

import ctypes
import json
import os
import platform
import sys

from screenpop.daemon.analysis.job import analyse
from screenpop.daemon.analysis.stt import build
from screenpop.daemon.config import AnalysisConfig

IOPRIO_SET = {"x86_64": 251, "aarch64": 30}  # the ioprio_set system call's number (Python's os has no wrapper)
IOPRIO_IDLE = 3 << 13  # IOPRIO_CLASS_IDLE, as `ionice -c3`
IOPRIO_WHO_PROCESS = 1


def _idle_cpu() -> str:
    """SCHED_IDLE (runs only on a CPU nothing else wants), else nice 19; what this process got, for the log."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "idle"
    except (AttributeError, OSError):  # not Linux, or a system call filter refuses it (the shipped unit's)
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    except OSError:
        pass
    return f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"


def _idle_io() -> str:
    """The idle I/O class (disk time only when no one else asks for it), where the system call is known and allowed."""
    number = IOPRIO_SET.get(platform.machine())
    if number is None or not sys.platform.startswith("linux"):
        return "unchanged"
    libc = ctypes.CDLL(None, use_errno=True)
    return "idle" if libc.syscall(number, IOPRIO_WHO_PROCESS, 0, IOPRIO_IDLE) == 0 else "unchanged"


def lower_priority() -> dict[str, str]:
    """Put this process below everything else on the machine, before it loads a model or reads a file."""
    return {"cpu": _idle_cpu(), "io": _idle_io()}


def main(argv: list[str]) -> int:
    """Read jobs until stdin closes; a job's own failure is its answer, never the end of the process."""
    priority = lower_priority()
    config = AnalysisConfig(**json.loads(argv[1]))
    engine = build(config)
    out = sys.stdout
    print(json.dumps({"ready": True, "engine": engine.name if engine is not None else "", "priority": priority}),
          file=out, flush=True)
    for raw in sys.stdin:
        job = json.loads(raw)
        try:
            result = analyse(job["path"], job.get("left", "customer"), engine, config.max_minutes * 60.0)
        except MemoryError:
            result = {"ok": False, "error": "out of memory reading the file"}
        except Exception as exc:  # noqa: BLE001 - any defect on one file is that file's error, the next goes on
            result = {"ok": False, "error": f"analysis failed: {type(exc).__name__}: {exc}"}
        print(json.dumps({"id": job["id"], **result}), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
