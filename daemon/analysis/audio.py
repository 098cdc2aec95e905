"""A call recording read safely and each side's speech found in it, without speech recognition.

FreeSWITCH's stereo record_session puts the customer (caller) on the left channel and the operator on the right. The file is
read in chunks (a huge file costs no memory), each channel cut into 20 ms frames, and a frame counts as speech when
its level is well above that channel's own noise floor; short pauses inside a sentence are bridged, clicks dropped.
"""
from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAME_SECONDS = 0.02
CHUNK_SECONDS = 60.0  # read this much audio at a time
FLOOR_DB = -55.0  # a frame quieter than this (dBFS) is never speech
ABOVE_NOISE_DB = 15.0  # speech is this far above the channel's noise floor (its 10th percentile frame)
BRIDGE_SECONDS = 0.35  # pauses shorter than this inside speech are part of it (between words, at commas)
SHORTEST_SECONDS = 0.12  # speech shorter than this is a click or a breath
SIDES = ("customer", "operator")  # channel 0, channel 1


class AudioError(Exception):
    """The file cannot be analysed; the message says why, for the admin."""


@dataclass(frozen=True)
class Audio:
    """A recording's speech: per side, (start, end) seconds of each stretch of speech; its length in seconds."""

    duration: float
    rate: int
    speech: dict[str, list[tuple[float, float]]]
    truncated: bool = False


def _open(path: Path, max_seconds: float) -> wave.Wave_read:
    try:
        w = wave.open(str(path), "rb")
    except FileNotFoundError:
        raise AudioError("file not found") from None
    except (wave.Error, EOFError, struct.error) as exc:
        raise AudioError(f"not a PCM WAV file ({str(exc) or 'it ends inside its header'})") from None
    except OSError as exc:
        raise AudioError(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        _check(w, max_seconds)
    except AudioError:
        w.close()
        raise
    return w


def _check(w: wave.Wave_read, max_seconds: float) -> None:
    """A file this module can analyse: PCM stereo at a telephone-to-studio rate, not empty, not over the limit."""
    if w.getsampwidth() not in (1, 2, 4):
        raise AudioError(f"unsupported sample width: {w.getsampwidth() * 8} bits")
    if w.getnchannels() != 2:
        raise AudioError(f"{w.getnchannels()} channel(s): a stereo recording is needed to tell caller from operator "
                         "(record_session with RECORD_STEREO=true)")
    if not 4000 <= w.getframerate() <= 96000:
        raise AudioError(f"unsupported sample rate {w.getframerate()} Hz")
    if w.getnframes() == 0:
        raise AudioError("no audio in the file")
    if w.getnframes() / w.getframerate() > max_seconds:
        raise AudioError(f"longer than the limit of {max_seconds:g} s ({w.getnframes() / w.getframerate():.0f} s)")


def _samples(raw: bytes, width: int) -> np.ndarray:
    """Interleaved PCM as float samples scaled to [-1, 1]."""
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    dtype = "<i2" if width == 2 else "<i4"
    return np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(2 ** (8 * width - 1))


def levels(path: str | Path, max_seconds: float = 4 * 3600.0) -> tuple[np.ndarray, int, int, bool]:
    """Each 20 ms frame's level in dBFS per channel (shape frames x 2), the sample rate, the frame count read, and
    whether the file held less audio than its header says (truncated: what is there is analysed)."""
    with _open(Path(path), max_seconds) as w:
        rate, width, expected = w.getframerate(), w.getsampwidth(), w.getnframes()
        frame = max(1, int(rate * FRAME_SECONDS))
        chunk = frame * int(CHUNK_SECONDS / FRAME_SECONDS)
        parts, carry, read = [], np.zeros((0, 2), dtype=np.float32), 0
        while True:
            try:
                raw = w.readframes(chunk)
            except (wave.Error, EOFError, struct.error, OSError) as exc:
                raise AudioError(f"unreadable audio data: {exc}") from None
            if not raw:
                break
            usable = len(raw) - len(raw) % (2 * width)
            block = _samples(raw[:usable], width).reshape(-1, 2)
            read += len(block)
            block = np.concatenate([carry, block]) if len(carry) else block
            whole = len(block) - len(block) % frame
            carry = block[whole:]
            if whole:
                power = np.square(block[:whole]).reshape(-1, frame, 2).mean(axis=1)
                parts.append(10.0 * np.log10(power + 1e-12))
            if len(raw) < chunk * 2 * width:
                break
    if not parts:
        raise AudioError("no audio in the file")
    return np.concatenate(parts), rate, read, read < expected


def _stretches(speaking: np.ndarray) -> list[tuple[float, float]]:
    """Frames marked speaking as (start, end) seconds, pauses bridged and clicks dropped."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], speaking.astype(np.int8), [0]])))
    runs = [(s * FRAME_SECONDS, e * FRAME_SECONDS) for s, e in zip(edges[::2], edges[1::2])]
    merged: list[tuple[float, float]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] < BRIDGE_SECONDS:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return [(round(float(s), 3), round(float(e), 3)) for s, e in merged if e - s >= SHORTEST_SECONDS]


def read_speech(path: str | Path, max_seconds: float = 4 * 3600.0) -> Audio:
    """Where each side speaks in the recording at path; AudioError when it cannot be analysed."""
    db, rate, read, truncated = levels(path, max_seconds)
    speech = {}
    for channel, side in enumerate(SIDES):
        level = db[:, channel]
        threshold = max(FLOOR_DB, float(np.percentile(level, 10)) + ABOVE_NOISE_DB)
        speech[side] = _stretches(level > threshold)
    return Audio(duration=read / rate, rate=rate, speech=speech, truncated=truncated)


def read_side(path: str | Path, side: str, start: float, end: float, rate: int = 16000) -> np.ndarray:
    """One side's audio between start and end seconds as 16-bit mono samples at rate (for speech recognition)."""
    with _open(Path(path), float("inf")) as w:
        src, width = w.getframerate(), w.getsampwidth()
        w.setpos(min(w.getnframes(), int(start * src)))
        raw = w.readframes(max(0, int((end - start) * src)))
    samples = _samples(raw[:len(raw) - len(raw) % (2 * width)], width).reshape(-1, 2)[:, SIDES.index(side)]
    if src != rate and len(samples):
        n = int(round(len(samples) * rate / src))
        samples = np.interp(np.arange(n) * src / rate, np.arange(len(samples)), samples)
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
