"""Speech to text behind one small interface: an engine turns one stretch of one side's speech (16 kHz, 16-bit mono)
into text. PocketSphinx's English model ships in its PyPI package; Vosk and faster-whisper read model files the
admin installed and named in [analysis] model. Nothing is downloaded at run time (docs/analysis.md)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from screenpop.daemon.config import AnalysisConfig, ConfigError

if TYPE_CHECKING:  # numpy is the analysis process's; the daemon checks the engine without loading it
    import numpy as np

RATE = 16000
ENGINES = ("none", "pocketsphinx", "vosk", "faster-whisper")
PACKAGE = {"pocketsphinx": "pocketsphinx", "vosk": "vosk", "faster-whisper": "faster_whisper"}


class Engine(Protocol):
    """A speech-to-text engine: text of one stretch of speech."""

    name: str

    def text(self, samples: np.ndarray) -> str: ...


class PocketSphinx:
    """CMU PocketSphinx with the US English acoustic model, dictionary and language model its package ships."""

    name = "pocketsphinx"

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=RATE, loglevel="FATAL")

    def text(self, samples: np.ndarray) -> str:
        d = self._decoder
        d.start_utt()
        d.process_raw(samples.astype("<i2").tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""


class Vosk:
    """Vosk (Kaldi) with the model folder the admin unpacked (alphacephei's vosk-model-*)."""

    name = "vosk"

    def __init__(self, model: str) -> None:
        import vosk

        vosk.SetLogLevel(-1)
        self._vosk = vosk
        self._model = vosk.Model(model)

    def text(self, samples: np.ndarray) -> str:
        recognizer = self._vosk.KaldiRecognizer(self._model, RATE)
        recognizer.AcceptWaveform(samples.astype("<i2").tobytes())
        return json.loads(recognizer.FinalResult()).get("text", "")


class FasterWhisper:
    """faster-whisper (CTranslate2) on the CPU with the converted model folder the admin installed."""

    name = "faster-whisper"

    def __init__(self, model: str, language: str) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(model, device="cpu", compute_type="int8", local_files_only=True)
        self._language = language

    def text(self, samples: np.ndarray) -> str:
        segments, _ = self._model.transcribe(samples.astype("float32") / 32768.0, language=self._language,
                                             vad_filter=False, condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments).strip()


def check(config: AnalysisConfig) -> None:
    """At start-up: the engine is known, its package installed, its model present, its language one it has;
    otherwise a ConfigError naming what to install or set."""
    engine = config.engine
    if engine not in ENGINES:
        raise ConfigError("[analysis] engine must be one of %(engines)s, got %(engine)s", engines=", ".join(ENGINES),
                          engine=repr(engine))
    if engine == "none":
        return
    if importlib.util.find_spec(PACKAGE[engine]) is None:
        raise ConfigError("[analysis] engine %(engine)s: its Python package is not installed (pip install %(engine)s "
                          "into the daemon's environment)", engine=engine)
    if engine == "pocketsphinx":
        if config.language.split("-")[0].split("_")[0].lower() != "en":
            raise ConfigError("[analysis] language %(language)s: the pocketsphinx package ships only an English model; "
                              "use engine vosk or faster-whisper with a model for that language",
                              language=repr(config.language))
        return
    if not config.model:
        raise ConfigError("[analysis] engine %(engine)s needs model: the path of the model folder you installed",
                          engine=engine)
    if not Path(config.model).is_dir():
        raise ConfigError("[analysis] model %(model)s is not a folder (engine %(engine)s)", model=repr(config.model),
                          engine=engine)


def build(config: AnalysisConfig) -> Engine | None:
    """The configured engine, loaded (None when transcription is off); call check() first."""
    if config.engine == "pocketsphinx":
        return PocketSphinx()
    if config.engine == "vosk":
        return Vosk(config.model)
    if config.engine == "faster-whisper":
        return FasterWhisper(config.model, config.language.split("-")[0].split("_")[0].lower())
    return None
