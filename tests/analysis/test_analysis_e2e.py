"""End to end with real parts: the simulator generates answered calls over ESL and records each one (espeak-ng's
scripted conversation, stereo WAV, RECORD_START / RECORD_STOP); the daemon links the recordings, checks their
files and analyses them in its analysis process; the figures stored match the script, cut where each call ended
(issue 19, part 2)."""
from __future__ import annotations

import pytest

from screenpop.daemon.analysis.metrics import measure
from screenpop.db.models import Recording, RecordingAnalysis, SideMetrics
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
