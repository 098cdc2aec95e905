"""Read raw ESL streams (as recorded byte for byte from FreeSWITCH) back into frames and events."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from screenpop.daemon.pbx.protocol import (Event, Frame, FrameSplitter, parse_event_body, parse_event_json,
                                           parse_headers)

EVENT_TYPES = ("text/event-plain", "text/event-json")


def split_frames(data: bytes) -> list[Frame]:
    """Split a raw ESL stream into frames with protocol.FrameSplitter, byte-exactly:
    b"".join(f.raw for f in frames) == data.

    A truncated last frame (header block without its blank line, or a body shorter than announced) is kept as
    it is, so nothing is lost; its `headers` are whatever could be parsed.
    """
    splitter = FrameSplitter(max_head=len(data) + 1, max_body=len(data) + 1, keep_raw=True)
    splitter.feed(data)
    frames = list(splitter.frames())
    rest = splitter.tail()
    if rest:
        head, _, body = rest.partition(b"\n\n")
        frames.append(Frame(headers=parse_headers(head), body=body, raw=rest))
    return frames


def read_capture(path: str | Path) -> list[Frame]:
    """All frames of a raw ESL stream file, in order, byte-exact (see split_frames)."""
    return split_frames(Path(path).read_bytes())


def frame_event(frame: Frame) -> Event | None:
    """The Event carried by an event frame (text/event-plain or text/event-json), else None.

    JSON is decoded as the daemon decodes it (daemon/pbx/protocol.py's parse_event_json: arrays as ARRAY::a|:b),
    so a plain and a JSON capture of one call give equal events.
    """
    ctype = frame.content_type
    if ctype == "text/event-plain":
        return parse_event_body(frame.body)
    if ctype == "text/event-json":
        return parse_event_json(frame.body)[0]
    return None


def iter_events(frames: list[Frame]) -> Iterator[tuple[Frame, Event]]:
    """(frame, event) for every event frame that parses, in order; other frames (replies, notices) are skipped."""
    for frame in frames:
        if frame.content_type in EVENT_TYPES:
            event = frame_event(frame)
            if event is not None:
                yield frame, event


def read_events(path: str | Path) -> list[tuple[Frame, Event]]:
    """The event frames of a capture file with their parsed events."""
    return list(iter_events(read_capture(path)))
