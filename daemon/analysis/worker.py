"""The analysis worker: finds recordings not yet analysed, queues them (a bounded queue: the rest wait in the
database for the next look) and hands them one at a time to the analysis process (daemon/analysis/runner.py).

All CPU work happens in that process, at the idle scheduling class (runner.py); this side only writes a job line, waits on the
answer's pipe cooperatively and stores the result through the database worker, so pops and the call writer never
wait for an analysis. A file that hangs or kills the process fails that recording only: the process is started
again for the next one. Progress (queued, running, done, failed, waiting in the database) is `status()`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from typing import Any

import gevent
import gevent.event
import gevent.queue
import peewee
from gevent import subprocess

from screenpop.daemon.analysis import store
from screenpop.daemon.analysis.store import Job
from screenpop.daemon.config import AnalysisConfig
from screenpop.db.worker import DbWorker

log = logging.getLogger("screenpop.analysis")

START_SECONDS = 120.0  # the analysis process's start (loading the speech model) may take this long

class AnalysisProcessError(Exception):
    """The analysis process did not answer: it died, hung past the timeout, or would not start."""


class Analyser:
    """The background worker: a feeder greenlet filling a bounded queue, a runner greenlet draining it."""

    def __init__(self, config: AnalysisConfig, worker: DbWorker) -> None:
        self.config = config
        self.worker = worker
        self.queue: gevent.queue.Queue = gevent.queue.Queue(maxsize=config.queue_max)
        self._queued: set[int] = set()
        self.running: Job | None = None
        self.done = 0
        self.failed = 0
        self.matches = 0
        self.waiting = 0  # in the database beyond the queue, at the last look
        self.last_error = ""
        self.seconds_of_audio = 0.0
        self.priority: dict[str, str] = {}  # what the running analysis process got: {"cpu": "idle", "io": "idle"}
        self._proc: subprocess.Popen | None = None
        self._stopped = gevent.event.Event()
        self._wake = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        """Start looking for recordings and analysing them."""
        self._greenlets = [gevent.spawn(self._feed), gevent.spawn(self._run)]

    def stop(self) -> None:
        """Stop both greenlets and end the analysis process; a recording half-analysed is analysed again next start."""
        self._stopped.set()
        self._wake.set()
        gevent.killall(self._greenlets, timeout=5)
        self._end_process()

    def poke(self) -> None:
        """Look for new recordings now (a recording just stopped), not at the next scan."""
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """Progress for the status endpoint and the dashboard line (with the configuration's phrase alerts)."""
        return {"engine": self.config.engine, "queued": self.queue.qsize(), "queue_max": self.config.queue_max,
                "running": self.running.recording_id if self.running else None, "done": self.done,
                "failed": self.failed, "waiting": self.waiting, "matches": self.matches,
                "audio_seconds": round(self.seconds_of_audio, 1), "last_error": self.last_error,
                "priority": self.priority,
                "phrases": list(self.config.phrases)}

    # ---- the feeder -----------------------------------------------------------------------------------------

    def _feed(self) -> None:
        while not self._stopped.is_set():
            try:
                self._look()
            except peewee.DatabaseError as exc:
                log.warning("could not look for recordings to analyse: %s", exc)
            self._wake.wait(self.config.scan_interval)
            self._wake.clear()

    def _look(self) -> None:
        """Fill the queue's free room with the oldest recordings not yet analysed; count the rest as waiting."""
        room = self.config.queue_max - self.queue.qsize()
        skip = set(self._queued) | ({self.running.recording_id} if self.running else set())
        jobs = self.worker.run(store.pending, room, skip) if room > 0 else []
        for job in jobs:
            self._queued.add(job.recording_id)
            self.queue.put(job)
        self.waiting = max(0, self.worker.run(store.backlog) - self.queue.qsize() - (1 if self.running else 0))

    # ---- the runner -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            self._one()
            # a backlog of quick analyses (no speech engine) would otherwise store results back to back: each is a
            # transaction on the hub's thread (SQLite commits block it), so the pops would queue behind them
            self._stopped.wait(max(0.0, self.config.pause - (time.monotonic() - started)))

    def _one(self) -> None:
        """Take the next recording (waiting for one), analyse it and store the result."""
        job: Job = self.queue.get()
        self._queued.discard(job.recording_id)
        self.running = job
        try:
            result = self._analyse(job)
        except AnalysisProcessError as exc:
            result = {"ok": False, "error": str(exc)}
        try:
            found = self.worker.run(store.save, job, result, self.config.phrases)
        except peewee.DatabaseError as exc:
            log.warning("analysis of recording %d not stored (%s); it is analysed again later", job.recording_id, exc)
            return
        finally:
            self.running = None
        if result.get("ok"):
            self.done += 1
            self.matches += found
            self.seconds_of_audio += result.get("duration") or 0.0
            log.info("recording %d analysed: %.1f s of audio, %d transcript line(s), %d phrase match(es)",
                     job.recording_id, result.get("duration") or 0.0, len(result.get("lines", [])), found)
        else:
            self.failed += 1
            self.last_error = f"recording {job.recording_id}: {result['error']}"
            log.warning("recording %d (%s) not analysed: %s", job.recording_id, job.path, result["error"])

    def _process(self) -> subprocess.Popen:
        """The analysis process, started (and its engine loaded) if it is not running."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.analysis.runner",
                                 json.dumps(dataclasses.asdict(self.config))],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self._proc = proc
        ready = self._answer(START_SECONDS)
        if not ready.get("ready"):
            self._end_process()
            raise AnalysisProcessError(f"the analysis process did not start: {ready}")
        self.priority = ready.get("priority") or {}
        log.info("analysis process %d started (engine %s; CPU %s, I/O %s)", proc.pid, ready.get("engine") or "none",
                 self.priority.get("cpu"), self.priority.get("io"))
        return proc

    def _answer(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            with gevent.Timeout(timeout):
                line = self._proc.stdout.readline()
        except gevent.Timeout:
            self._end_process()
            raise AnalysisProcessError(f"no answer within {timeout:g} s: analysis ended") from None
        if not line:
            code = self._proc.wait()
            self._proc = None
            raise AnalysisProcessError(f"the analysis process ended (exit status {code})")
        return json.loads(line)

    def _analyse(self, job: Job) -> dict[str, Any]:
        proc = self._process()
        assert proc.stdin is not None
        started = time.monotonic()
        try:
            proc.stdin.write((json.dumps({"id": job.recording_id, "path": job.path, "left": job.left}) + "\n").encode())
            proc.stdin.flush()
        except OSError as exc:
            self._end_process()
            raise AnalysisProcessError(f"the analysis process is gone ({exc})") from None
        answer = self._answer(self.config.timeout)
        log.debug("recording %d answered in %.2f s", job.recording_id, time.monotonic() - started)
        return answer

    def _end_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()
