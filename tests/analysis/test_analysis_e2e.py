"""End to end with real parts: the simulator generates answered calls over ESL and records each one (espeak-ng's
scripted conversation, stereo WAV, RECORD_START / RECORD_STOP); the daemon links the recordings, checks their
files and analyses them in its analysis process; the figures stored match the script, cut where each call ended
(issue 19, part 2)."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from screenpop.daemon.analysis.metrics import measure
from screenpop.db.models import Call, Recording, RecordingAnalysis, SideMetrics
from screenpop.simulator import speech
from screenpop.simulator.recording import RATE

from support import daemon, free_port, simulator, wait_for, write_config

EDGE = 0.06  # as tests/analysis/test_audio.py: 20 ms frames, an edge may move a frame or two


def clipped(spoken: list[speech.Spoken], seconds: float, left: str) -> dict[str, list[tuple[float, float]]]:
    """Where the script's speech lies in a recording of this length (its left channel's party first)."""
    out: dict[str, list[tuple[float, float]]] = {"customer": [], "operator": []}
    for s in spoken:
        if s.start < seconds:
            out[s.side].append((s.start, min(s.end, seconds)))
    return out


def test_generated_calls_are_recorded_and_analysed(tmp_path, db_url, db) -> None:
    rec_dir = tmp_path / "rec"
    port = free_port()
    sim = simulator(tmp_path, port, "--generate", "--calls", "6", "--rate", "10", "--speed", "20", "--seed", "3",
                    "--linger", "0.5", "--record-dir", str(rec_dir))
    config = write_config(tmp_path / "screenpop.toml", port, db_url,
                          recordings=f'[recordings]\nroots = ["{rec_dir}"]\ncheck_interval = 0.2',
                          analysis='[analysis]\nengine = "none"\nscan_interval = 0.2')
    d = daemon(tmp_path, config)
    try:
        assert sim.wait(60) == 0, sim.log()
        wait_for(lambda: Recording.select().count() > 0 and RecordingAnalysis.select().count()
                 == Recording.select().where(Recording.status == "ok").count() == Recording.select().count(),
                 30, "every recording analysed")
        assert d.terminate() == 0, d.log()
    finally:
        sim.close()
        d.close()
    _, spoken = speech.render(speech.CONVERSATION, RATE)
    recordings = list(Recording.select())
    assert {a.state for a in RecordingAnalysis.select()} == {"done"}
    for rec in recordings:
        duration = RecordingAnalysis.get(RecordingAnalysis.recording_id == rec.id).duration
        assert duration == pytest.approx(rec.seconds, abs=0.01)
        want = measure(duration, clipped(spoken, duration, rec.party))
        got = {m.side: m for m in SideMetrics.select().where(SideMetrics.recording_id == rec.id)}
        for side in ("customer", "operator"):
            assert got[side].talk == pytest.approx(want[side].talk, abs=8 * EDGE), (rec.party, side)
            assert got[side].spoke_first == want[side].spoke_first
            assert got[side].interruptions == want[side].interruptions


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_calls_are_written_while_a_backlog_waits_for_the_idle_analysis(tmp_path, db_url, db) -> None:
    """A daemon with a backlog of recordings to analyse: its analysis process runs at the idle class, the daemon at
    its own; the calls that come meanwhile are all written while most of the backlog still waits (the pause between
    results alone takes minutes for it): the calls never queue behind the analysis."""
    backlog = 400
    source = tmp_path / "conversation.wav"
    speech.write_script(source, rate=8000)
    with db.atomic():
        for n in range(backlog):
            path = tmp_path / f"{n}.wav"
            os.link(source, path)
            Call.create(uuid=f"old-{n}", direction="INCOMING", started_at=dt.datetime(2026, 1, 5, 9), extension="1001")
            Recording.create(call_uuid=f"old-{n}", leg_uuid=f"old-{n}", party="customer", fs_path=str(path),
                             path=str(path), started_at=dt.datetime(2026, 1, 5, 9), status="ok", seconds=21.4)
    port = free_port()
    config = write_config(tmp_path / "screenpop.toml", port, db_url,
                          recordings=f'[recordings]\nroots = ["{tmp_path}"]',
                          analysis='[analysis]\nengine = "none"\nscan_interval = 0.2')
    sim = simulator(tmp_path, port, "--generate", "--calls", "20", "--rate", "10", "--speed", "20", "--seed", "3",
                    "--linger", "0.5")
    d = daemon(tmp_path, config)
    try:
        wait_for(lambda: RecordingAnalysis.select().count() > 0, 60, "the analysis to start")
        child = _children(d.popen.pid)
        assert len(child) == 1 and os.sched_getscheduler(child[0]) == os.SCHED_IDLE, d.log()
        assert os.sched_getscheduler(d.popen.pid) == os.SCHED_OTHER
        assert sim.wait(60) == 0, sim.log()
        new = Call.select().where(~Call.uuid.startswith("old-"))
        wait_for(lambda: new.count() == 20 and all(c.ended_at for c in new), 60, "the calls written")
        assert RecordingAnalysis.select().count() < backlog / 2
        assert d.terminate() == 0, d.log()
    finally:
        sim.close()
        d.close()
