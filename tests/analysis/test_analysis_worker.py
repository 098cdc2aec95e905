"""The analysis worker on a real database (SQLite and PostgreSQL): recordings found, queued in a bounded queue,
analysed in the analysis process, stored with their figures, transcript and phrase matches; bad files and a file
that hangs fail alone, and the next recording goes on (issue 19, parts 2 and 3)."""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest

from screenpop.daemon.analysis import store
from screenpop.daemon.analysis.worker import Analyser
from screenpop.daemon.config import AnalysisConfig, RecordingsConfig
from screenpop.daemon.record.recordings import Keeper
from screenpop.db.models import (Call, Customer, Employee, PhraseMatch, Recording, RecordingAnalysis, SideMetrics,
                                 TranscriptLine)
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.worker import DbWorker
from screenpop.simulator import speech

from support import SLACK

SHORT = (
    speech.Line("customer", 0.3, "I want to cancel my contract"),
    speech.Line("operator", 0.6, "I understand the refund is on its way"),
)
START = dt.datetime(2026, 3, 2, 9, 0)


def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait on the gevent hub (the worker's greenlets run meanwhile) until predicate holds."""
    deadline = time.monotonic() + timeout * SLACK
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        gevent.sleep(0.05)


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return speech.render(SHORT, rate=8000)[0]


def _started(db) -> Iterator[DbWorker]:
    w = DbWorker(db)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def worker(db) -> Iterator[DbWorker]:
    """A database worker on the test's database, on SQLite and on PostgreSQL."""
    yield from _started(db)


@pytest.fixture
def lite_worker(sqlite_url: str) -> Iterator[DbWorker]:
    """A database worker on a migrated SQLite database: for what does not depend on the database kind."""
    db = open_database(sqlite_url)
    migrate(db)
    yield from _started(db)
    db.close()


def recording(n: int, path: Path, customer: Customer | None = None, employee: Employee | None = None,
              status: str = "ok") -> Recording:
    uuid = f"call-{n}"
    Call.create(uuid=uuid, direction="INCOMING", started_at=START + dt.timedelta(minutes=n), customer=customer,
                employee=employee, extension=employee.extension if employee else None, external_number="+3545551234")
    return Recording.create(call_uuid=uuid, leg_uuid=f"leg-{n}", party="customer", fs_path=str(path), path=str(path),
                            started_at=START, status=status)


def test_recordings_are_analysed_and_bad_ones_fail_alone(db, worker: DbWorker, voice: bytes, tmp_path: Path) -> None:
    anna = Employee.create(name="Anna", extension="1001")
    jon = Customer.create(name="Jón")
    good = tmp_path / "good.wav"
    good.write_bytes(voice)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(voice[:30])
    recs = [recording(1, good, jon, anna), recording(2, broken), recording(3, tmp_path / "gone"),
            recording(4, good, jon, anna), recording(5, good, status="recording")]  # 5: still recording, not yet
    config = AnalysisConfig(engine="pocketsphinx", phrases=["cancel my contract"], scan_interval=0.2)
    analyser = Analyser(config, worker)
    analyser.start()
    try:
        until(lambda: analyser.done + analyser.failed == 4, 60, "four recordings analysed")
    finally:
        analyser.stop()
    assert (analyser.done, analyser.failed) == (2, 2)
    states = {a.recording_id: (a.state, a.error) for a in RecordingAnalysis.select()}
    assert states[recs[0].id] == ("done", "") and states[recs[3].id] == ("done", "")
    assert "not a PCM WAV file" in states[recs[1].id][1]
    assert states[recs[2].id][1] == "file not found"
    assert recs[4].id not in states
    metrics = {m.side: m for m in SideMetrics.select().where(SideMetrics.recording_id == recs[0].id)}
    assert metrics["customer"].spoke_first and metrics["operator"].spoke_last
    assert metrics["operator"].talk > metrics["customer"].talk > 1.0
    lines = list(TranscriptLine.select().where(TranscriptLine.recording_id == recs[0].id).order_by(TranscriptLine.start))
    assert [line.side for line in lines] == ["customer", "operator"] and "cancel" in lines[0].text
    assert PhraseMatch.select().where(PhraseMatch.phrase == "cancel my contract").count() == 2 or \
        "cancel my contract" not in lines[0].text
    # what the pages read
    found = store.search("CANCEL", side="customer")
    assert {row["call_uuid"] for row in found} == {"call-1", "call-4"}
    assert found[0]["customer"] == "Jón"
    assert store.search("cancel", side="operator") == []
    assert store.search("100%") == [] and store.search("   ") == []
    analysis = store.call_analysis("call-1")
    assert analysis[0]["state"] == "done" and [m.side for m in analysis[0]["metrics"]] == ["customer", "operator"]
    assert [r["call_uuid"] for r in store.transcript_rows(["call-4"])] == ["call-4", "call-4"]


def test_a_file_that_hangs_fails_alone(lite_worker: DbWorker, voice: bytes, tmp_path: Path) -> None:
    """A recording whose reading never ends (a FIFO nobody writes): its process is ended at the timeout, the
    recording failed with the reason, and the next recording is analysed by a fresh process."""
    stuck = tmp_path / "stuck.wav"
    os.mkfifo(stuck)
    good = tmp_path / "good.wav"
    good.write_bytes(voice)
    first, second = recording(1, stuck), recording(2, good)
    analyser = Analyser(AnalysisConfig(engine="none", scan_interval=0.2, timeout=5.0), lite_worker)
    analyser.start()
    try:
        until(lambda: analyser.done + analyser.failed == 2, 30, "both recordings handled")
    finally:
        analyser.stop()
    states = {a.recording_id: (a.state, a.error) for a in RecordingAnalysis.select()}
    assert states[first.id] == ("failed", "no answer within 5 s: analysis ended")
    assert states[second.id] == ("done", "")
    assert analyser.status()["last_error"] == f"recording {first.id}: no answer within 5 s: analysis ended"


def test_the_queue_is_bounded_and_the_rest_waits_in_the_database(db, worker: DbWorker, tmp_path: Path) -> None:
    for n in range(1, 6):
        recording(n, tmp_path / f"{n}.wav")
    analyser = Analyser(AnalysisConfig(engine="none", queue_max=2), worker)
    analyser._look()
    assert analyser.queue.qsize() == 2 and analyser.waiting == 3
    analyser._look()  # nothing queued twice
    assert analyser.queue.qsize() == 2 and analyser.waiting == 3
    status = analyser.status()
    assert (status["queued"], status["queue_max"], status["waiting"], status["done"]) == (2, 2, 3, 0)


def test_analysis_of_deleted_recordings_is_removed(db, worker: DbWorker, voice: bytes, tmp_path: Path) -> None:
    """Retention deletes the recording (the Keeper, with the analysis's forget hook): its figures, transcript and
    matches go too, in the same transaction."""
    path = tmp_path / "a.wav"
    path.write_bytes(voice)
    rec = recording(1, path)
    job = store.Job(rec.id, rec.call_uuid, str(path), "customer")
    result = {"ok": True, "duration": 5.0, "engine": "x", "metrics": [
        {"side": s, "duration": 5.0, "talk": 1.0, "overtalk": 0.0, "silence": 0.5, "longest_silence": 0.5,
         "spoke_first": s == "customer", "spoke_last": s == "operator", "interruptions": 0} for s in store.SIDES],
        "lines": [{"side": "customer", "start": 0.3, "end": 2.0, "text": "I want my Lawyer!"}]}
    assert store.save(job, result, ["lawyer"]) == 1
    keeper = Keeper(RecordingsConfig(roots=[str(tmp_path)], keep_days=1), worker, forget=[store.forget],
                    clock=lambda: START + dt.timedelta(days=2))
    assert keeper.sweep_once() == 1
    assert not path.exists() and Recording.get().status == "deleted"
    assert [m.select().count() for m in (RecordingAnalysis, SideMetrics, TranscriptLine, PhraseMatch)] == [0, 0, 0, 0]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_analysis_process_runs_idle_and_the_hub_never_waits_on_it(lite_worker: DbWorker, tmp_path: Path) -> None:
    """The analysis process runs at the idle class (CPU and I/O) while the daemon keeps its own; and while it works on
    a recording (one that never ends: a FIFO nobody writes) the hub goes on: a greenlet runs and a call is written
    through the database worker, before any analysis result exists."""
    stuck = tmp_path / "stuck.wav"
    os.mkfifo(stuck)
    recording(1, stuck)
    analyser = Analyser(AnalysisConfig(engine="none", scan_interval=0.2, timeout=600.0), lite_worker)
    analyser.start()
    try:
        until(lambda: analyser.status()["priority"], 30, "the analysis process started")
        assert analyser.status()["priority"] == {"cpu": "idle", "io": "idle"}
        pid = analyser._proc.pid
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        assert re.search(r"^policy\s*:\s*(\d+)$", Path(f"/proc/{pid}/sched").read_text(), re.M).group(1) == "5"
        assert subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True).stdout.strip() == "idle"
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the daemon's own is untouched
        ran = gevent.spawn(lambda: "hub")
        assert ran.get(timeout=10 * SLACK) == "hub"
        lite_worker.run(lambda: Call.create(uuid="pop-1", direction="INCOMING", started_at=START, extension="1001"))
        assert Call.get(Call.uuid == "pop-1") and analyser.running is not None
        assert RecordingAnalysis.select().count() == 0
    finally:
        analyser.stop()
