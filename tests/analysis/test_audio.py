"""Audio figures from real speech: espeak-ng speaks the simulator's script on each side, and the figures the
daemon finds in the recording are checked against where the script put each line (issue 19, part 2)."""
from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest

from screenpop.daemon.analysis.audio import AudioError, read_speech
from screenpop.daemon.analysis.job import analyse
from screenpop.daemon.analysis.metrics import measure
from screenpop.simulator import speech

# the speech finder works in 20 ms frames and bridges pauses under 0.35 s: each edge of a line may move by a frame
# or two; a figure summing n edges may move by n of those
EDGE = 0.06


def truth(spoken: list[speech.Spoken]) -> dict[str, list[tuple[float, float]]]:
    return {side: [(s.start, s.end) for s in spoken if s.side == side] for side in ("customer", "operator")}


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[speech.Spoken]]:
    path = tmp_path_factory.mktemp("audio") / "call.wav"
    return path, speech.write_script(path)


def test_the_script_has_overtalk_a_hold_and_both_sides() -> None:
    """The scripted call exercises every figure: both sides, lines overlapping, a 3 s hold."""
    sides = {line.side for line in speech.CONVERSATION}
    assert sides == {"customer", "operator"}
    assert sum(1 for line in speech.CONVERSATION if line.after < 0) == 2
    assert max(line.after for line in speech.CONVERSATION) == 3.0


@pytest.mark.parametrize("rate", [16000, 8000])
def test_figures_match_the_script(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "call.wav"
    spoken = speech.write_script(path, rate=rate)
    audio = read_speech(path)
    found = measure(audio.duration, audio.speech)
    expected = measure(audio.duration, truth(spoken))
    assert audio.duration == pytest.approx(spoken[-1].end + speech.TAIL_SECONDS, abs=0.03)
    for side in ("customer", "operator"):
        got, want = found[side], expected[side]
        lines = sum(1 for s in spoken if s.side == side)
        assert got.talk == pytest.approx(want.talk, abs=2 * lines * EDGE), side
        assert got.overtalk == pytest.approx(want.overtalk, abs=4 * EDGE)
        assert got.silence == pytest.approx(want.silence, abs=2 * len(spoken) * EDGE)
        assert got.longest_silence == pytest.approx(3.0, abs=2 * EDGE)  # the hold
        assert (got.spoke_first, got.spoke_last, got.interruptions) == (want.spoke_first, want.spoke_last, 1)
    assert found["operator"].spoke_first and found["customer"].spoke_last
    # each line is found as one stretch, where the script put it
    for side, spans in truth(spoken).items():
        assert len(audio.speech[side]) == len(spans)
        for (s, e), (ts, te) in zip(audio.speech[side], spans):
            assert s == pytest.approx(ts, abs=EDGE) and e == pytest.approx(te, abs=EDGE)


def test_the_operator_on_the_left_channel(conversation, tmp_path: Path) -> None:
    """RECORD_STEREO_SWAP, or the operator's own leg recorded: the left channel is the operator's."""
    path, spoken = conversation
    straight = analyse(path, "customer", None, 3600)
    swapped = analyse(path, "operator", None, 3600)
    by_side = {m["side"]: m for m in straight["metrics"]}
    for m in swapped["metrics"]:
        other = "customer" if m["side"] == "operator" else "operator"
        assert m["talk"] == by_side[other]["talk"]
        assert m["spoke_first"] == by_side[other]["spoke_first"]


def test_figures_by_hand() -> None:
    """The definitions on spans small enough to check by eye (docs/analysis.md)."""
    m = measure(20.0, {"customer": [(2.0, 5.0), (9.0, 12.0)], "operator": [(0.5, 2.5), (4.0, 8.0), (11.0, 13.0)]})
    c, o = m["customer"], m["operator"]
    assert (c.talk, o.talk) == (6.0, 8.0)
    assert c.overtalk == o.overtalk == 0.5 + 1.0 + 1.0  # 2-2.5, 4-5, 11-12
    assert c.silence == 1.0  # 8-9: nobody; before 0.5 and after 13 are not the conversation's silence
    assert c.longest_silence == 1.0
    assert (o.spoke_first, c.spoke_last, o.spoke_last) == (True, False, True)
    assert o.interruptions == 2  # at 4.0 and 11.0 the customer had been talking 2 s
    assert c.interruptions == 1  # at 2.0 the operator had been talking 1.5 s; at 9.0 nobody was
    quiet = measure(10.0, {"customer": [], "operator": []})
    assert quiet["customer"].talk == 0 and not quiet["customer"].spoke_first and quiet["operator"].silence == 0


def _wav(path: Path, channels: int = 2, rate: int = 8000, frames: bytes = b"\x00\x00" * 2 * 800,
         width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "not a PCM WAV file"),
    (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 3), "not a PCM WAV file"),
    (lambda p: p.write_bytes(b"ID3\x03\x00\x00\x00" + bytes(range(256)) * 8), "not a PCM WAV file"),  # an MP3
    (lambda p: p.write_text("<html>404</html>"), "not a PCM WAV file"),
    (lambda p: _wav(p, channels=1), "1 channel(s): a stereo recording is needed"),
    (lambda p: _wav(p, width=3, frames=b"\x00" * 6 * 10), "unsupported sample width: 24 bits"),
    (lambda p: _wav(p, frames=b""), "no audio in the file"),
    (lambda p: _wav(p, rate=2000), "unsupported sample rate"),
    (lambda p: p.mkdir(), "cannot read the file"),
    (lambda p: None, "file not found"),
])
def test_files_that_cannot_be_analysed_say_why(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "rec.wav"
    make(path)
    result = analyse(path, "customer", None, 3600)
    assert result["ok"] is False and message in result["error"]


def test_a_truncated_file_is_analysed_as_far_as_it_goes(conversation, tmp_path: Path) -> None:
    """FreeSWITCH died mid-call: the header promises more than the file holds; what is there is analysed."""
    path, spoken = conversation
    cut = tmp_path / "cut.wav"
    data = path.read_bytes()
    cut.write_bytes(data[:len(data) // 2 + 1])  # an odd cut: half a sample at the end
    result = analyse(cut, "customer", None, 3600)
    assert result["ok"] and result["truncated"]
    assert result["duration"] == pytest.approx((len(data) // 2 - 44) / 4 / 16000, abs=0.01)


def test_a_recording_over_the_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A header saying 10 hours (or a real huge file): refused at once, by the limit, not read into memory."""
    path = _wav(tmp_path / "huge.wav")
    with open(path, "r+b") as fh:  # the data chunk's length: 10 hours of 8 kHz stereo
        fh.seek(40)
        fh.write(struct.pack("<I", 10 * 3600 * 8000 * 4))
    with pytest.raises(AudioError, match="longer than the limit of 14400 s"):
        read_speech(path, max_seconds=4 * 3600)


def test_a_long_recording_is_read_in_chunks(tmp_path: Path) -> None:
    """Several read chunks (60 s each) of 8 kHz audio: frames across chunk edges are counted once."""
    import numpy as np

    rate, seconds = 8000, 130.0
    t = np.arange(int(rate * seconds)) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000 * ((t % 10) < 4)).astype("<i2")  # 4 s on, 6 s off, on the left
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)
    path = _wav(tmp_path / "long.wav", rate=rate, frames=stereo.tobytes())
    audio = read_speech(path)
    assert audio.duration == pytest.approx(seconds)
    assert len(audio.speech["customer"]) == 13 and audio.speech["operator"] == []
    assert sum(e - s for s, e in audio.speech["customer"]) == pytest.approx(13 * 4.0, abs=0.2)
