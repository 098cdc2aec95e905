"""A call's recording made of real speech: Debian's espeak-ng speaks a script, the customer (caller) on the left channel and
the operator on the right (FreeSWITCH's stereo record_session), with silences, overtalk and a hold.

The script is data: each line says who speaks, when (after the previous line ends; negative is overtalk) and
what. `render` returns where each line's speech really lies, so tests check the daemon's metrics and transcripts
against what the script says (docs/analysis.md).
"""
from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CUSTOMER, OPERATOR = "customer", "operator"
CHANNEL = {CUSTOMER: 0, OPERATOR: 1}  # left, right
VOICE = {CUSTOMER: "en-us+f5", OPERATOR: "en-us+f2"}
WORDS_PER_MINUTE = 150
ESPEAK_RATE = 22050  # espeak-ng's output rate
AUDIBLE_DB = -50.0  # 10 ms frames quieter than this (dBFS) at either end are espeak-ng's lead-in and tail, trimmed


@dataclass(frozen=True)
class Line:
    """One scripted utterance: side speaks text, starting `after` seconds after the previous line's speech ends
    (negative: before it ends, so both speak at once)."""

    side: str
    after: float
    text: str


@dataclass(frozen=True)
class Spoken:
    """Where a line's speech lies in the rendered recording, in seconds."""

    side: str
    start: float
    end: float
    text: str


# a service call: greeting, a refund asked for, a 3 s hold, the caller talking over the operator, the operator
# interrupting the caller, goodbye; 0.6 s of ringing silence before the operator speaks, 0.8 s after the last line
CONVERSATION = (
    Line(OPERATOR, 0.6, "Thank you for calling Acme my name is Anna how can I help you"),
    Line(CUSTOMER, 0.7, "Hello I would like a refund for my order"),
    Line(OPERATOR, 0.5, "Let me check that order for you one moment please"),
    Line(OPERATOR, 3.0, "Thanks for waiting I can see the order here"),
    Line(CUSTOMER, -0.8, "I want to cancel my contract"),
    Line(OPERATOR, -0.6, "I understand the refund is on its way"),
    Line(CUSTOMER, 0.9, "Thank you goodbye"),
)
TAIL_SECONDS = 0.8

_cache: dict[tuple[str, str], np.ndarray] = {}
_rendered: dict[tuple[tuple[Line, ...], int], tuple[np.ndarray, list[Spoken]]] = {}


def espeak_available() -> bool:
    """Whether Debian's espeak-ng is installed (apt package espeak-ng)."""
    return shutil.which("espeak-ng") is not None


def _speak(side: str, text: str) -> np.ndarray:
    """espeak-ng's speech of text in the side's voice, as float samples at ESPEAK_RATE, lead-in and tail trimmed."""
    key = (side, text)
    if key not in _cache:
        out = subprocess.run(["espeak-ng", "-v", VOICE[side], "-s", str(WORDS_PER_MINUTE), "--stdout", text],
                             check=True, capture_output=True, timeout=60).stdout
        with wave.open(io.BytesIO(out)) as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
        frame = ESPEAK_RATE // 100
        n = len(samples) // frame
        power = np.square(samples[:n * frame].reshape(n, frame) / 32768.0).mean(axis=1)
        loud = np.flatnonzero(10 * np.log10(power + 1e-12) > AUDIBLE_DB)
        _cache[key] = samples[loud[0] * frame:(loud[-1] + 1) * frame] if loud.size else samples[:0]
    return _cache[key]


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == ESPEAK_RATE:
        return samples
    n = int(round(len(samples) * rate / ESPEAK_RATE))
    return np.interp(np.arange(n) * ESPEAK_RATE / rate, np.arange(len(samples)), samples).astype(np.float32)


def stereo(script: tuple[Line, ...] = CONVERSATION, rate: int = 16000) -> np.ndarray:
    """The script's audio as 16-bit samples (frames x 2: customer, operator), made once per script and rate."""
    key = (script, rate)
    if key not in _rendered:
        _rendered[key] = _mix(script, rate)
    return _rendered[key][0]


def render(script: tuple[Line, ...] = CONVERSATION, rate: int = 16000) -> tuple[bytes, list[Spoken]]:
    """The script as a stereo 16-bit WAV file's bytes at rate, and where each line's speech lies."""
    samples = stereo(script, rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buffer.getvalue(), _rendered[(script, rate)][1]


def _mix(script: tuple[Line, ...], rate: int) -> tuple[np.ndarray, list[Spoken]]:
    """Each line placed after the one before (overlapping when its `after` is negative) on its side's channel."""
    placed: list[tuple[Spoken, np.ndarray]] = []
    end = 0.0
    for line in script:
        audio = _resample(_speak(line.side, line.text), rate)
        start = max(0.0, end + line.after)
        start = round(start * rate) / rate
        spoken = Spoken(line.side, start, start + len(audio) / rate, line.text)
        placed.append((spoken, audio))
        end = spoken.end
    total = int(round((max(s.end for s, _ in placed) + TAIL_SECONDS) * rate))
    mixed = np.zeros((total, 2), dtype=np.float32)
    for spoken, audio in placed:
        at = int(round(spoken.start * rate))
        mixed[at:at + len(audio), CHANNEL[spoken.side]] += audio
    return np.clip(mixed, -32768, 32767).astype("<i2"), [s for s, _ in placed]


def write_script(path: str | Path, script: tuple[Line, ...] = CONVERSATION, rate: int = 16000) -> list[Spoken]:
    """Write the script's recording to path (a stereo WAV file, customer left) and say where its speech lies."""
    data, spoken = render(script, rate)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return spoken
