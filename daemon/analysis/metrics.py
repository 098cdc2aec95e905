"""How a call went, from where each side speaks: talk time, overtalk, silence, who spoke first and last, and who
interrupted whom (docs/analysis.md says each figure's definition)."""
from __future__ import annotations

from dataclasses import dataclass

Spans = list[tuple[float, float]]

INTERRUPT_SECONDS = 0.5  # starting to speak while the other side has been speaking at least this long is an interruption


@dataclass(frozen=True)
class SideMetrics:
    """One side's figures for one recording, in seconds; ratio is its talk time over the other side's."""

    side: str
    duration: float
    talk: float
    overtalk: float  # both sides speaking (the same on both sides)
    silence: float  # neither side speaking, from the first speech to the last
    longest_silence: float
    spoke_first: bool
    spoke_last: bool
    interruptions: int  # times this side started speaking over the other


def _union(spans: Spans) -> Spans:
    merged: Spans = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap(a: Spans, b: Spans) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _interruptions(mine: Spans, theirs: Spans) -> int:
    """How often a stretch of mine starts while theirs has been going on for INTERRUPT_SECONDS and goes on."""
    return sum(1 for start, _ in mine
               if any(s + INTERRUPT_SECONDS <= start < e for s, e in theirs))


def measure(duration: float, speech: dict[str, Spans]) -> dict[str, SideMetrics]:
    """Each side's figures from its stretches of speech (two sides, by name) in a recording of duration seconds."""
    (a, spans_a), (b, spans_b) = speech.items()
    spans_a, spans_b = _union(spans_a), _union(spans_b)
    both = _overlap(spans_a, spans_b)
    anyone = _union(spans_a + spans_b)
    gaps = [nxt[0] - cur[1] for cur, nxt in zip(anyone, anyone[1:])]
    first = min((spans[0][0], side) for side, spans in ((a, spans_a), (b, spans_b)) if spans)[1] if anyone else None
    last = max((spans[-1][1], side) for side, spans in ((a, spans_a), (b, spans_b)) if spans)[1] if anyone else None
    out = {}
    for side, mine, theirs in ((a, spans_a, spans_b), (b, spans_b, spans_a)):
        out[side] = SideMetrics(
            side=side, duration=round(duration, 3), talk=round(sum(e - s for s, e in mine), 3), overtalk=round(both, 3),
            silence=round(sum(gaps), 3), longest_silence=round(max(gaps, default=0.0), 3),
            spoke_first=first == side, spoke_last=last == side, interruptions=_interruptions(mine, theirs))
    return out
