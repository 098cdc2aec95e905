"""Events as the FreeSWITCH simulator sends them: FreeSWITCH's exact plain/JSON serialisation, rendered lazily and cheaply.

A SimEvent is either a recorded frame (replay: its bytes are sent untouched, or with only its times rewritten
when the replay restamps) or a list of header blocks (generator: the big, mostly static blocks of a
leg are encoded once and reused by every event of that leg).
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable

from screenpop.daemon.pbx.protocol import decode_value, encode_value


DATE_NAMES = ("Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp")
# The channels' timetables (switch_channel.c; µs since the epoch, 0 until reached): the event's own leg ("Caller-")
# and the leg bridged to it ("Other-Leg-"). A restamped replay moves them with the events, or a tracker reading
# them would mix the recording's dates with the live ones. (Channel-Hold-Accum is a duration: it stays.)
TIME_NAMES = tuple(f"{leg}-{name}" for leg in ("Caller", "Other-Leg") for name in (
    "Profile-Created-Time", "Channel-Created-Time", "Channel-Answered-Time", "Channel-Progress-Time",
    "Channel-Progress-Media-Time", "Channel-Hangup-Time", "Channel-Transfer-Time", "Channel-Resurrect-Time",
    "Channel-Bridged-Time", "Channel-Last-Hold"))


@functools.lru_cache(maxsize=8)
def _dates(secs: int) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs))
    gmt = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(secs))
    return (local, encode_value(local).encode()), (gmt, encode_value(gmt).encode())


def date_values(ts_us: int) -> dict[str, tuple[str, bytes]]:
    """Event-Date-Local, -GMT and -Timestamp for a microsecond timestamp: (value, its plain encoding) each."""
    local, gmt = _dates(ts_us // 1_000_000)
    stamp = str(ts_us)
    return {"Event-Date-Local": local, "Event-Date-GMT": gmt, "Event-Date-Timestamp": (stamp, stamp.encode())}


def _micros(value: str | bytes) -> int:
    """A timetable value (µs since the epoch, 0 when not reached); anything not a number counts as not reached."""
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def _json_str(value: str) -> str:
    # cJSON_PrintUnformatted: escapes " \ and control characters, leaves UTF-8 and '/' alone, like json.dumps(ensure_ascii=False).
    return json.dumps(value, ensure_ascii=False)


def json_value(value: str) -> str:
    """A header value as FreeSWITCH's JSON serialiser writes it: 'ARRAY::a|:b' becomes ["a","b"]."""
    if value.startswith("ARRAY::"):
        return "[" + ",".join(_json_str(v) for v in value[7:].split("|:")) + "]"
    return _json_str(value)


def json_member(name: str, value: str) -> str:
    return _json_str(name) + ":" + json_value(value)


def plain_line(name: str, value: str) -> bytes:
    return f"{name}: {encode_value(value)}\n".encode("utf-8")


def plain_frame(body: bytes) -> bytes:
    """The outer frame FreeSWITCH wraps around a text/event-plain body."""
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body


def json_frame(body: bytes) -> bytes:
    """The outer frame FreeSWITCH wraps around a text/event-json body (no trailing newline)."""
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body


def split_plain_body(data: bytes) -> tuple[list[tuple[str, str]], str]:
    """The decoded (name, value) pairs of a plain event body, duplicates and order kept, and its inner body."""
    head, sep, rest = data.partition(b"\n\n")
    items: list[tuple[str, str]] = []
    length = None
    for line in head.split(b"\n"):
        name, colon, value = line.partition(b": ")
        if not colon or not name:
            continue
        key = name.decode("utf-8", "replace")
        val = decode_value(value)
        if key == "Content-Length":
            try:
                length = int(val)
            except ValueError:
                length = None
            continue
        items.append((key, val))
    body = rest[:length].decode("utf-8", "replace") if (sep and length is not None) else ""
    return items, body


class Block:
    """An ordered group of headers whose plain and JSON encodings are cached line by line.

    FreeSWITCH moves a channel variable to the end when it is set again; `set(..., to_end=True)` does the same.
    """

    __slots__ = ("values", "_plain_lines", "_json_members", "_plain", "_json", "frozen")

    def __init__(self, items=()):
        self.values: dict[str, str] = dict(items)
        self._plain_lines: dict[str, bytes] = {}
        self._json_members: dict[str, str] = {}
        self._plain: bytes | None = None
        self._json: str | None = None
        self.frozen = False   # set once an event refers to this block: its owner must copy() before changing it

    def copy(self) -> "Block":
        """An unfrozen copy that keeps the cached encodings."""
        b = Block.__new__(Block)
        b.values = dict(self.values)
        b._plain_lines = dict(self._plain_lines)
        b._json_members = dict(self._json_members)
        b._plain, b._json, b.frozen = self._plain, self._json, False
        return b

    def set(self, name: str, value: str, to_end: bool = False) -> None:
        if to_end and name in self.values:
            del self.values[name]
        elif self.values.get(name) == value:
            return
        self.values[name] = value
        self._plain_lines.pop(name, None)
        self._json_members.pop(name, None)
        self._plain = self._json = None

    def update(self, items, to_end: bool = False) -> None:
        for k, v in (items.items() if isinstance(items, dict) else items):
            self.set(k, v, to_end)

    def pop(self, name: str) -> None:
        if name in self.values:
            del self.values[name]
            self._plain_lines.pop(name, None)
            self._json_members.pop(name, None)
            self._plain = self._json = None

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def plain(self) -> bytes:
        if self._plain is None:
            lines = self._plain_lines
            out = []
            for k, v in self.values.items():
                line = lines.get(k)
                if line is None:
                    line = lines[k] = plain_line(k, v)
                out.append(line)
            self._plain = b"".join(out)
        return self._plain

    def json(self) -> str:
        if self._json is None:
            members = self._json_members
            out = []
            for k, v in self.values.items():
                m = members.get(k)
                if m is None:
                    m = members[k] = json_member(k, v)
                out.append(m)
            self._json = ",".join(out)
        return self._json


class SimEvent:
    """One event for the simulator's subscribers.

    Either recorded (`raw_plain` holds the exact frame received from FreeSWITCH) or composed of Blocks and
    (name, value) lists. The owner of a Block freezes it when an event refers to it and copies it before
    changing it again, so an event stays valid after its leg has moved on.
    """

    __slots__ = ("name", "subclass", "ts_us", "parts", "body", "_plain", "_json", "_lookup", "seq_index", "_head",
                 "_head_end", "_stamp")

    def __init__(self, name: str, subclass: str = "", ts_us: int = 0, parts=None, body: str = "",
                 raw_plain: bytes | None = None):
        self.name = name
        self.subclass = subclass
        self.ts_us = ts_us
        self.parts = parts if parts is not None else []
        self.body = body
        self._plain = raw_plain
        self._json: bytes | None = None
        self._lookup: dict[str, str] | None = None
        self.seq_index = -1     # >= 0: Event-Sequence is still to be assigned, at parts[0][seq_index]
        self._head: bytes | None = None   # a recorded plain event's body, not decoded yet (see from_plain_frame)
        self._head_end = 0                # where its header block ends in _head
        self._stamp: tuple | None = None   # the frame cut around its time values (see prepare_restamp)

    def set_sequence(self, seq: int) -> None:
        """Number the event when it is delivered, as FreeSWITCH numbers events when it fires them."""
        if self.seq_index >= 0:
            self.parts[0][self.seq_index] = ("Event-Sequence", str(seq))
            self.seq_index = -1
            self._plain = self._json = None

    @classmethod
    def from_plain_frame(cls, raw: bytes, body: bytes) -> "SimEvent":
        """A recorded text/event-plain frame; `raw` is sent as it is.

        Its headers are decoded only when read, one by one (`get`), or all at once for items/json/xml:
        a replay reads a handful of the ~200 headers of an event, and decoding them all cost more than the
        whole replay.
        """
        ev = cls("", "", 0, None, "", raw_plain=raw)
        ev._head = body
        ev._head_end = body.find(b"\n\n")
        if ev._head_end < 0:
            ev._head_end = len(body)
        ev._lookup = {}
        ev.name = next(filter(None, ev._head_values("Event-Name")), "")
        ev.subclass = next(filter(None, ev._head_values("Event-Subclass")), "")
        for value in ev._head_values("Event-Date-Timestamp"):
            try:
                ev.ts_us = int(value)
            except ValueError:
                continue
            if ev.ts_us:
                break
        return ev

    def _head_spans(self, name: str):
        """Where each value of header `name` lies in a recorded body not decoded yet, in order (split_plain_body's view)."""
        head, end = self._head, self._head_end
        key = b"\n" + name.encode("utf-8") + b": "
        first = head.startswith(key[1:])         # the first line has no newline before it: as if at -1
        pos = -1 if first else head.find(key, 0, end)
        if pos < 0 and not first:
            return
        while True:
            start = pos + len(key)
            stop = head.find(b"\n", start, end)
            yield start, (stop if stop >= 0 else end)
            pos = head.find(key, stop, end) if stop >= 0 else -1
            if pos < 0:
                return

    def _head_values(self, name: str):
        head = self._head
        return (decode_value(head[start:stop]) for start, stop in self._head_spans(name))

    def prepare_restamp(self) -> None:
        """Cut a recorded plain event around its date and timetable values once, before the clock starts, so
        that restamp only joins bytes."""
        if self._head is None or self._stamp is not None:
            return
        cuts = sorted((span, name) for name in DATE_NAMES + TIME_NAMES if (span := next(self._head_spans(name), None)))
        pieces, names, recorded, pos = [], [], [], 0
        for (start, stop), name in cuts:
            pieces.append(self._head[pos:start])
            names.append(name)
            recorded.append(self._head[start:stop])
            pos = stop
        pieces.append(self._head[pos:])
        self._stamp = (pieces, names, recorded)

    def restamp(self, ts_us: int, clock: Callable[[int], int] | None = None) -> None:
        """Give the event the time `ts_us` (Event-Date-Timestamp, -Local and -GMT), as FreeSWITCH stamps an
        event when it fires it, and each time of its timetables that was reached the moment `clock` maps it to
        (the replay's timeline); every other byte stays as it was."""
        self.ts_us = ts_us
        values = date_values(ts_us)
        if self._head is not None:
            self.prepare_restamp()
            pieces, names, recorded = self._stamp
            chunks = [pieces[0]]
            for name, raw, piece in zip(names, recorded, pieces[1:]):
                if name in values:
                    raw = values[name][1]
                elif clock is not None and (reached := _micros(raw)):
                    new = str(clock(reached))
                    self._lookup[name], raw = new, new.encode()
                chunks += (raw, piece)
            body = b"".join(chunks)
            old = self._head
            # Real stamps keep their width; a recorded value of another width changes the frame's Content-Length.
            outer = self._plain[:len(self._plain) - len(old)]
            self._plain = outer + body if len(body) == len(old) else plain_frame(body)
            self._head, self._head_end = body, self._head_end + len(body) - len(old)
            for name in names:
                if name in values:
                    self._lookup[name] = values[name][0]
            self._json = None
            return
        for name in DATE_NAMES + TIME_NAMES:
            for part in self.parts:
                if isinstance(part, list):
                    i = next((i for i, (k, _) in enumerate(part) if k == name), -1)
                    if i >= 0:
                        if name in values:
                            part[i] = (name, values[name][0])
                        elif clock is not None and (reached := _micros(part[i][1])):
                            part[i] = (name, str(clock(reached)))
                        break
        self._plain = self._json = self._lookup = None

    def _decode(self) -> None:
        """Decode every header of a recorded plain event (needed for items, json and xml)."""
        if self._head is not None:
            items, self.body = split_plain_body(self._head)
            self.parts = [items]
            self._head = None
            self._lookup = None

    @classmethod
    def from_json_frame(cls, raw: bytes, body: bytes) -> "SimEvent | None":
        """A recorded text/event-json frame; `raw` is sent as it is to json subscribers, plain is rendered."""
        try:
            pairs = json.loads(body.decode("utf-8", "replace"), object_pairs_hook=list)
        except ValueError:
            return None
        if not isinstance(pairs, list):
            return None
        items, inner = [], ""
        for k, v in pairs:
            if k == "_body":
                inner = v if isinstance(v, str) else str(v)
            elif k != "Content-Length":
                items.append((k, "ARRAY::" + "|:".join(map(str, v)) if isinstance(v, list) else str(v)))
        get = dict(reversed(items)).get
        try:
            ts = int(get("Event-Date-Timestamp", "0"))
        except ValueError:
            ts = 0
        ev = cls(get("Event-Name", ""), get("Event-Subclass", ""), ts, [items], inner)
        ev._json = raw
        return ev

    def _iter_items(self):
        self._decode()
        for part in self.parts:
            if isinstance(part, Block):
                yield from part.values.items()
            else:
                yield from part

    def items(self) -> list[tuple[str, str]]:
        return list(self._iter_items())

    def get(self, name: str, default: str = "") -> str:
        """First value of a header (exact name), like FreeSWITCH's switch_event_get_header."""
        if self._head is not None:
            value = self._lookup.get(name, self)
            if value is self:
                if name == "Content-Length" or not name or ": " in name or "\n" in name or "\ufffd" in name:
                    self._decode()           # names the one-by-one search cannot tell apart: decode all
                    return self.get(name, default)
                value = self._lookup[name] = next(self._head_values(name), None)
            return default if value is None else value
        for part in self.parts:
            if isinstance(part, Block):
                v = part.values.get(name)
                if v is not None:
                    return v
            elif len(part) > 24:          # a recorded event: one long list, index it once
                if self._lookup is None:
                    self._lookup = {}
                    for k, v in part:
                        self._lookup.setdefault(k, v)
                v = self._lookup.get(name)
                if v is not None:
                    return v
            else:
                for k, v in part:
                    if k == name:
                        return v
        return default

    def plain(self) -> bytes:
        """The whole text/event-plain frame."""
        if self._plain is None:
            chunks = []
            for part in self.parts:
                if isinstance(part, Block):
                    chunks.append(part.plain())
                else:
                    chunks.extend(plain_line(k, v) for k, v in part)
            if self.body:
                data = self.body.encode("utf-8")
                chunks.append(b"Content-Length: %d\n\n" % len(data))
                chunks.append(data)
            else:
                chunks.append(b"\n")
            self._plain = plain_frame(b"".join(chunks))
        return self._plain

    def json(self) -> bytes:
        """The whole text/event-json frame."""
        if self._json is None:
            self._decode()
            members = []
            for part in self.parts:
                if isinstance(part, Block):
                    if part.values:
                        members.append(part.json())
                else:
                    members.extend(json_member(k, v) for k, v in part)
            if self.body:
                data = self.body.encode("utf-8")
                members.append(json_member("Content-Length", str(len(data))))
                members.append('"_body":' + _json_str(self.body))
            self._json = json_frame(("{" + ",".join(members) + "}").encode("utf-8"))
        return self._json

    def xml(self) -> bytes:
        """The whole text/event-xml frame (switch_event_xmlize layout; rarely used, not cached)."""
        from xml.sax.saxutils import escape
        lines = ["<event>", "  <headers>"]
        lines += [f"    <{k}>{escape(v)}</{k}>" for k, v in self._iter_items()]
        lines.append("  </headers>")
        if self.body:
            lines.append(f"  <body>{escape(self.body)}</body>")
        lines.append("</event>")
        data = "\n".join(lines).encode("utf-8")
        return b"Content-Length: %d\nContent-Type: text/event-xml\n\n" % len(data) + data
