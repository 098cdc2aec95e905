"""The analysis process: the daemon starts it (`python -m screenpop.daemon.analysis.runner CONFIG-JSON`) and sends
it one recording a line as JSON on stdin; it answers each with one JSON line on stdout. CPU work (levels, speech
recognition) runs here, at a lower priority (the daemon starts it niced, before its first import), so the daemon's
hub never waits for it (docs/analysis.md)."""
from __future__ import annotations

import json
import sys

from screenpop.daemon.analysis.job import analyse
from screenpop.daemon.analysis.stt import build
from screenpop.daemon.config import AnalysisConfig


def main(argv: list[str]) -> int:
    """Read jobs until stdin closes; a job's own failure is its answer, never the end of the process."""
    config = AnalysisConfig(**json.loads(argv[1]))
    engine = build(config)
    out = sys.stdout
    print(json.dumps({"ready": True, "engine": engine.name if engine is not None else ""}), file=out, flush=True)
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
