"""Conversation analysis figures (docs/analysis.md), on the simulator's espeak-ng recordings:

1. audio figures: seconds of audio analysed per CPU second on one core (goal: at least 100x real time);
2. transcription: PocketSphinx's real-time factor here (CPU seconds per second of audio);
3. pops while analysing: the daemon's share of pop latency (event frame in -> SSE card out, as bench/pop_latency.py
   measures it) at 100 calls/s while its analysis worker works through a backlog of recordings (goal: p99 < 50 ms),
   beside the same load with analysis off, in turns (--rounds), with how many recordings were analysed during the
   calls and the CPU seconds the daemon and the analysis process got meanwhile. The daemon runs at the scheduling
   the shipped unit gives it (systemd/screenpop-daemon.service: its Nice=, reset on fork, so the analysis process
   starts at nice 0 and puts itself at the idle class). The clocks (the timing relay in this process, the SSE
   reader) and the simulator, FreeSWITCH's stand-in (which real centres run at real-time priority), run at
   real-time priority (SCHED_RR 5, as `chrt -r 5` for bench/pop_latency.py): on a busy machine a clock at nice 0
   waits for a CPU before it reads the time, and the wait would count as the daemon's. Both need root; without
   it everything runs at nice 0 and the bench says so.

    python bench/analysis.py [--backlog 1000] [--seconds 30] [--engine pocketsphinx] [--rounds 1] [--daemon unit|rr]... [--trace]
                             [--skip-single-core] [--keep FOLDER]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from pop_latency import SSE_READER, Relay, cards, match, report, report_stages  # noqa: E402
from recording import record  # noqa: E402
from support import Proc, free_port, serving, simulator, wait_for, write_config  # noqa: E402

from screenpop.daemon.analysis.audio import SIDES, read_speech  # noqa: E402
from screenpop.daemon.analysis.job import analyse  # noqa: E402
from screenpop.daemon.analysis.metrics import measure  # noqa: E402
from screenpop.daemon.analysis.stt import PocketSphinx  # noqa: E402
from screenpop.simulator import speech  # noqa: E402


def _one_core() -> None:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass


def audio_speed(folder: Path, minutes: float = 10.0) -> None:
    """Figures of a long 8 kHz call (the script over and over), CPU time of this process on one core."""
    one = speech.stereo(speech.CONVERSATION, 8000)
    repeats = int(minutes * 60 * 8000 / len(one)) + 1
    path = folder / "long.wav"
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.tile(one, (repeats, 1)).tobytes())
    for _ in range(2):  # the first run warms the page cache
        started = time.process_time()
        audio = read_speech(path)
        measure(audio.duration, audio.speech)
        cpu = time.process_time() - started
    print(f"audio figures: {audio.duration:.0f} s of audio in {cpu:.3f} CPU s on one core: "
          f"{audio.duration / cpu:.0f}x real time (goal >= 100x: {'met' if audio.duration / cpu >= 100 else 'not met'})")


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def _edits(said: list[str], heard: list[str]) -> int:
    """Word edit distance (substitutions, insertions, deletions) between the script and the transcript."""
    row = list(range(len(heard) + 1))
    for i, word in enumerate(said, 1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(heard, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (word != other))
    return row[-1]


def transcription_rtf(folder: Path) -> None:
    """PocketSphinx on the 16 kHz and the 8 kHz conversation: CPU seconds per second of audio, and word accuracy
    (1 - word edits / words) of each side's transcript against the script."""
    engine = PocketSphinx()
    for rate in (16000, 8000):
        path = folder / f"conversation-{rate}.wav"
        speech.write_script(path, rate=rate)
        started = time.process_time()
        result = analyse(path, "customer", engine, 3600)
        cpu = time.process_time() - started
        said = {s: [w for line in speech.CONVERSATION if line.side == s for w in _words(line.text)] for s in SIDES}
        heard = {s: [w for line in result["lines"] if line["side"] == s for w in _words(line["text"])] for s in SIDES}
        words = sum(len(w) for w in said.values())
        accuracy = 1 - sum(_edits(said[s], heard[s]) for s in SIDES) / words
        print(f"transcription (pocketsphinx, {rate} Hz): {result['duration']:.1f} s of audio in {cpu:.2f} CPU s: "
              f"real-time factor {cpu / result['duration']:.2f} ({len(result['lines'])} lines); word accuracy "
              f"{accuracy:.2f} of {words} words")


def _seed(db_url: str, rec_dir: Path, backlog: int) -> None:
    """backlog recordings (hard links of one conversation file), checked (status ok), waiting for analysis."""
    import datetime as dt

    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate
    from screenpop.db.models import Call, Recording

    source = rec_dir / "conversation.wav"
    speech.write_script(source, rate=8000)
    db = open_database(db_url)
    migrate(db)
    now = dt.datetime(2026, 1, 5, 9, 0)
    with db.atomic():
        for n in range(backlog):
            path = rec_dir / f"{n}.wav"
            os.link(source, path)
            Call.create(uuid=f"old-{n}", direction="INCOMING", started_at=now, extension="1001")
            Recording.create(call_uuid=f"old-{n}", leg_uuid=f"old-{n}", party="customer", fs_path=str(path),
                             path=str(path), started_at=now, status="ok", seconds=21.4)
    db.close()


def unit_nice() -> int:
    """The Nice= the shipped unit runs the daemon at."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "systemd" / "screenpop-daemon.service")
    assert unit["Service"]["CPUSchedulingResetOnFork"] == "yes"
    return int(unit["Service"].get("Nice", "0"))


def unit_daemon(folder: Path, config: Path, trace: bool, sched: str) -> Proc:
    """`screenpop daemon` at the unit's scheduling (sched "unit": SCHED_OTHER with reset on fork, so its children
    start at nice 0, at the unit's nice as root) or at real time ("rr": SCHED_RR 5 with reset on fork, as root, for
    comparison); through bench/trace_daemon.py when tracing (stamps in folder/trace.jsonl)."""
    wrap = ["chrt", "--other", "--reset-on-fork", "0"]
    if os.geteuid() == 0:
        wrap = ["chrt", "--rr", "--reset-on-fork", "5"] if sched == "rr" else [*wrap, "nice", "-n", str(unit_nice())]
    args = [str(ROOT / "bench" / "trace_daemon.py")] if trace else ["-m", "screenpop.daemon.cli", "daemon"]
    env = {**os.environ, "SCREENPOP_TRACE": str(folder / "trace.jsonl")} if trace else None
    proc = Proc.__new__(Proc)  # Proc runs this interpreter directly; here it runs under chrt and nice
    proc.log_path = folder / "daemon.log"
    proc._log = open(proc.log_path, "ab")
    proc.popen = subprocess.Popen([*wrap, sys.executable, *args, "--config", str(config)], stdout=proc._log,
                                  stderr=subprocess.STDOUT, env=env)
    return proc


def _status(http_port: int, token: str) -> dict:
    from urllib.request import Request, urlopen

    req = Request(f"http://127.0.0.1:{http_port}/api/v1/analysis", headers={"Authorization": f"Bearer {token}"})
    with urlopen(req, timeout=30) as resp:
        return json.load(resp)


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def pops(folder: Path, load: Path, backlog: int, engine: str, trace: bool, sched: str) -> dict:
    """The daemon's share of each ring's pop under the load, with the analysis worker busy on backlog recordings
    (backlog 0: analysis off); also how many it analysed during the calls, the CPU seconds its analysis process
    got meanwhile, the analysis process's scheduling policy, and the load average."""
    from screenpop.daemon.auth.tokens import create
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    folder.mkdir(parents=True, exist_ok=True)
    rec_dir = folder / "rec"
    rec_dir.mkdir()
    db_url = f"sqlite:///{folder / 'screenpop.db'}"
    if backlog:
        _seed(db_url, rec_dir, backlog)
    db = open_database(db_url)
    migrate(db)
    _, admin = create(None, role="admin")
    db.close()
    sim_port, esl_port, http_port = free_port(), free_port(), free_port()
    relay = Relay(esl_port, sim_port)
    relay.start()
    analysis = (f'[analysis]\nengine = "{engine}"\nscan_interval = 1.0' if backlog else '[analysis]\nenabled = false')
    config = write_config(folder / "screenpop.toml", esl_port, db_url, http_port=http_port, analysis=analysis,
                          recordings=f'[recordings]\nroots = ["{rec_dir}"]')
    config.write_text(config.read_text().replace('level = "info"', 'level = "warning"'))
    d = serving(unit_daemon(folder, config, trace, sched), f"http://127.0.0.1:{http_port}", timeout=60)
    sse_log = folder / "sse.log"
    reader = subprocess.Popen([sys.executable, "-c", SSE_READER, str(http_port), admin, str(sse_log)],
                              stdout=subprocess.PIPE, text=True)
    reader.stdout.readline()
    child, policy, done, cpu = None, "", 0, 0.0
    if backlog:  # the analysis process has loaded its engine and works on a recording before the calls come
        wait_for(lambda: _status(http_port, admin)["priority"], 300, "the analysis process to start")
        child = _children(d.popen.pid)[0]
        policy = {os.SCHED_OTHER: "other", os.SCHED_IDLE: "idle", os.SCHED_BATCH: "batch"}.get(
            os.sched_getscheduler(child), "?") + f", nice {os.getpriority(os.PRIO_PROCESS, child)}"
        done, cpu = _status(http_port, admin)["done"], _cpu_seconds(child)
    daemon_nice = os.getpriority(os.PRIO_PROCESS, d.popen.pid)
    loads, daemon_cpu, started = [os.getloadavg()[0]], _cpu_seconds(d.popen.pid), time.monotonic()
    sim = simulator(folder, sim_port, "--replay", str(load), "--restamp", "--speed", "1", "--linger", "3")
    try:
        sim.wait(600)
        loads.append(os.getloadavg()[0])
        daemon_cpu, seconds = _cpu_seconds(d.popen.pid) - daemon_cpu, time.monotonic() - started
        if backlog:
            done, cpu = _status(http_port, admin)["done"] - done, _cpu_seconds(child) - cpu
        time.sleep(2)
    finally:
        sim.close()
        reader.terminate()
        d.terminate()
        d.close()
        relay.server.close()
    found, unseen = match(relay.rings, cards(sse_log), lambda ext, num, c: c[1] == ext and c[2] == num)
    if unseen:
        print(f"  note: {len(unseen)} of {len(relay.rings)} rings had no card")
    if trace:
        stages = {str(row["id"]): row for row in map(json.loads, (folder / "trace.jsonl").read_text().splitlines())}
        report_stages(found, stages)
    return {"share": [ms for ms, _ in found], "rings": len(relay.rings), "done": done, "cpu": cpu, "policy": policy,
            "daemon_nice": daemon_nice, "daemon_cpu": daemon_cpu, "seconds": seconds, "load": sum(loads) / len(loads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=1000, help="recordings waiting for analysis (default 1000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of calls at 100 calls/s")
    parser.add_argument("--engine", default="pocketsphinx", help="the analysis engine during the pops (none: figures only)")
    parser.add_argument("--rounds", type=int, default=1, help="turns of analysis off / on (default 1)")
    parser.add_argument("--daemon", choices=["unit", "rr"], action="append",
                        help="the daemon's scheduling: the shipped unit's (default) or real time (SCHED_RR 5, as "
                             "bench/pop_latency.py's `chrt -r 5`); repeat to compare in turns")
    parser.add_argument("--trace", action="store_true",
                        help="run the daemon through bench/trace_daemon.py and print where each pop's time goes")
    parser.add_argument("--skip-single-core", action="store_true", help="only the pops (skip figures 1 and 2)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="screenpop-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not args.skip_single_core:
            pid = os.fork()
            if pid == 0:  # the single-core figures in a child pinned to one CPU, so the daemon runs below unpinned
                _one_core()
                audio_speed(folder)
                transcription_rtf(folder)
                os._exit(0)
            os.waitpid(pid, 0)
        if os.geteuid() == 0:  # the clocks and the simulator (children inherit it); the daemon: unit_daemon
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(5))
        else:
            print("  note: not root: the daemon runs at nice 0, not the unit's, and the clocks at nice 0 too")
        load = folder / "load.plain.esl"
        record(load, "--rate", "100", "--duration", str(args.seconds), "--mix", "inbound_answered=1",
               "--extensions", "1001-1010", "--seed", "9")
        for r in range(args.rounds):
            for sched, (name, backlog) in ((s, run) for s in args.daemon or ["unit"] for run in (
                    ("analysis off", 0), (f"analysing a backlog of {args.backlog} ({args.engine})", args.backlog))):
                res = pops(folder / f"{name.split()[0]}-{sched}-{r}", load, backlog, args.engine, args.trace, sched)
                during = (f"; {res['done']} recording(s) analysed during the calls, the analysis process "
                          f"({res['policy']}) got {res['cpu']:.1f} CPU s" if backlog else "")
                at = "SCHED_RR 5" if sched == "rr" else f"nice {res['daemon_nice']}"
                print(f"pops at 100 calls/s, round {r + 1}, {name} ({res['rings']} rings, load average "
                      f"{res['load']:.1f}; the daemon at {at} used {res['daemon_cpu']:.1f} CPU s "
                      f"in {res['seconds']:.0f} s{during})", flush=True)
                report("daemon's share, event frame in -> SSE card out", res["share"], 50)
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
