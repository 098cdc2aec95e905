"""What was said: PocketSphinx (its English model ships in its package) transcribes each side of espeak-ng's
scripted speech, line by line with timestamps; the other engines refuse to start without their package or model,
saying what to install (issue 19, part 3)."""
from __future__ import annotations

from pathlib import Path

import pytest

from screenpop.daemon.analysis import stt
from screenpop.daemon.analysis.job import analyse
from screenpop.daemon.config import AnalysisConfig, ConfigError
from screenpop.simulator import speech

SHORT = (  # two lines of the simulator's conversation, so the test's audio stays a few seconds long
    speech.Line("customer", 0.3, "I want to cancel my contract"),
    speech.Line("operator", 0.6, "I understand the refund is on its way"),
)


@pytest.fixture(scope="module")
def engine() -> stt.Engine:
    config = AnalysisConfig(engine="pocketsphinx")
    stt.check(config)
    built = stt.build(config)
    assert built is not None
    return built


def test_each_side_is_transcribed_with_its_times(engine: stt.Engine, tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    spoken = speech.write_script(path, SHORT)
    result = analyse(path, "customer", engine, 3600)
    assert result["ok"] and result["engine"] == "pocketsphinx"
    lines = result["lines"]
    assert [line["side"] for line in lines] == ["customer", "operator"]
    assert "cancel my contract" in lines[0]["text"]
    assert "refund" in lines[1]["text"].split()
    for line, said in zip(lines, spoken):
        assert line["start"] == pytest.approx(said.start, abs=0.06)
        assert line["end"] == pytest.approx(said.end, abs=0.06)


def test_an_8khz_recording_is_transcribed_too(engine: stt.Engine, tmp_path: Path) -> None:
    """Telephone-rate recordings are resampled to the engine's 16 kHz (with less of the words right: the shipped
    model is a wideband one; docs/analysis.md)."""
    path = tmp_path / "call.wav"
    speech.write_script(path, SHORT[:1], rate=8000)
    result = analyse(path, "customer", engine, 3600)
    assert "i want to cancel" in result["lines"][0]["text"]


def test_silence_gives_no_lines(engine: stt.Engine, tmp_path: Path) -> None:
    import wave

    path = tmp_path / "quiet.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00" * 4 * 8000)
    result = analyse(path, "customer", engine, 3600)
    assert result["ok"] and result["lines"] == [] and result["metrics"][0]["talk"] == 0


@pytest.mark.parametrize("options, message", [
    ({"engine": "dragon"}, "engine must be one of none, pocketsphinx, vosk, faster-whisper"),
    ({"engine": "pocketsphinx", "language": "de"}, "ships only an English model"),
    ({"engine": "vosk", "model": "/models/vosk-de"}, "pip install vosk"),
    ({"engine": "faster-whisper", "model": "/models/small"}, "pip install faster-whisper"),
])
def test_engines_that_cannot_run_say_what_is_missing(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        stt.check(AnalysisConfig(**options))


def test_a_model_path_is_required_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With the package installed (pretended here), the model folder must be named and exist: nothing is fetched."""
    monkeypatch.setattr(stt.importlib.util, "find_spec", lambda name: object())
    with pytest.raises(ConfigError, match="needs model"):
        stt.check(AnalysisConfig(engine="vosk"))
    with pytest.raises(ConfigError, match="is not a folder"):
        stt.check(AnalysisConfig(engine="faster-whisper", model=str(tmp_path / "nothing")))
    stt.check(AnalysisConfig(engine="vosk", model=str(tmp_path)))


def test_no_engine_means_figures_only() -> None:
    stt.check(AnalysisConfig(engine="none"))
    assert stt.build(AnalysisConfig(engine="none")) is None
