"""One recording analysed: where each side speaks, the figures from that, and (with an engine) what was said, line
by line with timestamps. Runs in the analysis process (daemon/analysis/runner.py), never on the daemon's hub."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from screenpop.daemon.analysis.audio import SIDES, AudioError, read_side, read_speech
from screenpop.daemon.analysis.metrics import measure
from screenpop.daemon.analysis.stt import RATE, Engine

LINE_SECONDS = 20.0  # a longer stretch of speech is transcribed (and shown) in pieces of at most this


def _pieces(start: float, end: float) -> list[tuple[float, float]]:
    out = []
    while end - start > LINE_SECONDS:
        out.append((start, start + LINE_SECONDS))
        start += LINE_SECONDS
    return [*out, (start, end)]


def analyse(path: str | Path, left: str, engine: Engine | None, max_seconds: float) -> dict[str, Any]:
    """The recording at path (left: the side on its left channel, customer or operator) as a JSON-ready result:
    ok, duration, truncated, metrics per side, transcript lines; or ok False with the error for the admin."""
    try:
        audio = read_speech(path, max_seconds)
    except AudioError as exc:
        return {"ok": False, "error": str(exc)}
    names = dict(zip(SIDES, SIDES if left != "operator" else tuple(reversed(SIDES))))
    speech = {names[channel]: spans for channel, spans in audio.speech.items()}
    metrics = measure(audio.duration, speech)
    lines = []
    if engine is not None:
        for channel in SIDES:
            for start, end in audio.speech[channel]:
                for a, b in _pieces(start, end):
                    text = engine.text(read_side(path, channel, a, b, RATE)).strip()
                    if text:
                        lines.append({"side": names[channel], "start": a, "end": b, "text": text})
        lines.sort(key=lambda line: (line["start"], line["side"]))
    return {"ok": True, "duration": audio.duration, "truncated": audio.truncated,
            "metrics": [dataclasses.asdict(m) for m in metrics.values()], "lines": lines,
            "engine": engine.name if engine is not None else ""}
