"""Recorded streams as replayable events: a capture's event frames as SimEvents that resend their exact bytes,
the switch identity they carry, and the date headers a restamped event gets."""
from __future__ import annotations

import time
from pathlib import Path

from screenpop.simulator.capture import read_capture
from screenpop.simulator.events import SimEvent
from screenpop.simulator.protocol import CORE

def date_headers(ts_us: int) -> list[tuple[str, str]]:
    """Event-Date-Local / -GMT / -Timestamp for a microsecond timestamp."""
    secs = ts_us // 1_000_000
    return [("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs))),
            ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(secs))),
            ("Event-Date-Timestamp", str(ts_us))]


def load_capture_events(path: str | Path) -> list[SimEvent]:
    """The event frames of a recorded stream (plain or json), as SimEvents that resend their exact bytes.

    Replies and notices the recording client received (auth/request, command/reply...) are not events; a
    truncated last frame is dropped.
    """
    out = []
    for frame in read_capture(path):
        try:
            whole = len(frame.body) == int(frame.headers.get("Content-Length", "-1"))
        except ValueError:
            whole = False
        if not whole:
            continue
        if frame.content_type == "text/event-plain":
            out.append(SimEvent.from_plain_frame(frame.raw, frame.body))
        elif frame.content_type == "text/event-json":
            ev = SimEvent.from_json_frame(frame.raw, frame.body)
            if ev is not None:
                out.append(ev)
    return out


def _core_identity(events: list[SimEvent]) -> dict[str, str]:
    for ev in events:
        if ev.get("Core-UUID"):
            return {k: ev.get(k) for k in CORE}
    return {}

