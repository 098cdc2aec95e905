"""ESL wire format: header blocks, URL-encoded values, and the event object everything downstream reads."""
from __future__ import annotations

import json
import re
from binascii import a2b_qp
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes

MAX_HEADER_BLOCK = 256 * 1024
MAX_BODY = 32 * 1024 * 1024


def decode_value(raw: bytes | str) -> str:
    """Percent-decode one header value; bytes that are not UTF-8, and NUL, become U+FFFD instead of killing the
    reader, or every later write (PostgreSQL text cannot hold a NUL, and a caller-ID name is anyone's to set)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def encode_value(value: str) -> str:
    """Percent-encode a header value exactly as FreeSWITCH's switch_url_encode() does: control characters,
    non-ASCII bytes and \r\n "#%&+:;<=>?@[\\]^`{|} and space are escaped, other printable ASCII is not."""
    return quote(value, safe="-_./,*~!$'()")


_decoded: dict[bytes, str] = {}
_DECODED_MAX = 8192  # a call's events repeat most encoded values (dates, channel names, caller IDs, URIs)


def _decode_raw(raw: bytes) -> str:
    """decode_value for the bytes of one header line's value, with the %XX work done in C where that is exact.

    binascii.a2b_qp decodes '=XX'; after turning '=' into '=3D' and '%' into '=', every valid %XX escape
    shortens the value by exactly 2 bytes and anything else (an invalid escape, a '%' at the end) by less,
    so the length tells whether the fast result is exact; if not, or a CR could make a soft line break,
    urllib's decoder runs instead. Decoded values are cached (bounded): a call's events repeat most of them.
    """
    if b"%" not in raw:
        text = raw.decode("utf-8", "replace")
        return text.replace("\x00", "\ufffd") if "\x00" in text else text
    decoded = _decoded.get(raw)
    if decoded is None:
        out = None
        if b"\r" not in raw:
            out = a2b_qp(raw.replace(b"=", b"=3D").replace(b"%", b"="))
            if len(out) != len(raw) - 2 * raw.count(b"%"):
                out = None
        if out is None:
            out = unquote_to_bytes(raw)
        decoded = out.decode("utf-8", "replace").replace("\x00", "\ufffd")
        if len(_decoded) >= _DECODED_MAX:
            _decoded.clear()
        _decoded[raw] = decoded
    return decoded


def parse_headers(block: bytes, decode: bool = True) -> dict[str, str]:
    """Split a header block into 'Name: value' lines first, then decode each value, so an encoded newline cannot
    forge a header.

    A repeated header name keeps its first value, as FreeSWITCH's own event reader does; a CR ending a line is
    dropped; lines without ': ' or without a name are ignored. Names are taken as they are, not stripped.
    """
    headers: dict[str, str] = {}
    for line in block.split(b"\n"):
        name, sep, value = line.partition(b": ")
        if not sep or not name:
            continue
        key = name.decode("utf-8", "replace")
        if key in headers:
            continue
        if value.endswith(b"\r"):
            value = value[:-1]
        headers[key] = _decode_raw(value) if decode else value.decode("utf-8", "replace").replace("\x00", "\ufffd")
    return headers


class Headers(Mapping[str, str]):
    """An event's header block, each header found and decoded only when it is read.

    Reads give exactly what parse_headers(block) holds. An event carries ~200 headers and the daemon reads
    about six of them, so finding those few in the raw bytes costs a fraction of decoding all of them.
    Iterating, len() or comparing decode the whole block once.
    """

    __slots__ = ("_raw", "_end", "_read", "_all")

    def __init__(self, raw: bytes, end: int | None = None) -> None:
        self._raw = raw
        self._end = len(raw) if end is None else end
        self._read: dict[str, str | None] = {}
        self._all: dict[str, str] | None = None

    def _find(self, key: str) -> str | None:
        raw, end = self._raw, self._end
        needle = key.encode("ascii") + b": "
        if raw.startswith(needle, 0, end):
            start = len(needle)
        else:
            at = raw.find(b"\n" + needle, 0, end)
            if at < 0:
                return None
            start = at + 1 + len(needle)
        stop = raw.find(b"\n", start, end)
        value = raw[start : end if stop < 0 else stop]
        if value.endswith(b"\r"):
            value = value[:-1]
        return _decode_raw(value)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The decoded value of header `key`, or default."""
        try:
            value = self._read[key]
        except KeyError:
            if key.isascii() and key and "\n" not in key and ": " not in key:
                value = self._find(key)
            else:  # a name the byte search cannot match exactly
                value = self._every().get(key)
            self._read[key] = value
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def _every(self) -> dict[str, str]:
        if self._all is None:
            self._all = parse_headers(self._raw[: self._end])
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._every())

    def __len__(self) -> int:
        return len(self._every())

    def __repr__(self) -> str:
        return f"Headers({self._every()!r})"


@dataclass
class Event:
    """One FreeSWITCH event: decoded headers plus the optional body after them."""

    headers: Mapping[str, str]
    body: str = ""
    content_type: str = "text/event-plain"

    @property
    def name(self) -> str:
        """Event-Name, or for CUSTOM events the subclass (e.g. 'sofia::transferee')."""
        name = self.headers.get("Event-Name", "")
        if name == "CUSTOM":
            return self.headers.get("Event-Subclass", "CUSTOM")
        return name

    def get(self, key: str, default: str = "") -> str:
        """A header's decoded value, or default."""
        return self.headers.get(key, default)


def parse_event_body(data: bytes) -> Event:
    """Parse the payload of a text/event-plain frame: headers, then a body if an inner Content-Length says so."""
    end = data.find(b"\n\n")
    headers = Headers(data, len(data) if end < 0 else end)
    rest = data[end + 2 :] if end >= 0 else b""
    body = ""
    if end >= 0 and "Content-Length" in headers:
        try:
            length = max(0, int(headers["Content-Length"]))
        except ValueError:
            length = len(rest)
        body = rest[:length].decode("utf-8", "replace")
    return Event(headers=headers, body=body)


def _json_value(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # plain renders array variables as ARRAY::a|:b
        return "ARRAY::" + "|:".join(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value)
    return json.dumps(value, ensure_ascii=False)


def parse_event_json(body: bytes) -> tuple[Event | None, str]:
    """A text/event-json payload as the same Event a plain frame gives (arrays as ARRAY::a|:b), or None and why:
    the one JSON event decoder of the daemon, the simulator and capture reading."""
    try:
        obj = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError) as exc:
        return None, f"event-json frame that is not JSON ({str(exc)[:80]})"
    if not isinstance(obj, dict):
        return None, f"event-json frame holding a {type(obj).__name__}, not an object"
    headers = {str(k): _json_value(v) for k, v in obj.items() if k != "_body"}
    raw_body = obj.get("_body", "")
    return Event(headers=headers, body=_json_value(raw_body), content_type="text/event-json"), ""


@dataclass
class Frame:
    """One message on the socket: its outer header block and its body bytes (possibly empty).

    `raw` holds its exact bytes when the splitter keeps them; `problem` says why a frame is not to be acted on
    (a Content-Length that is not a number, a header block over the limit), else it is empty.
    """

    headers: dict[str, str]
    body: bytes = b""
    raw: bytes = field(default=b"", repr=False)
    problem: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class FrameError(ValueError):
    """A stream the splitter cannot go on with: a body or header block over its limit (when not discarded)."""


_CRLF_END = re.compile(rb"\r?\n\r?\n")


class FrameSplitter:
    """The one ESL frame splitter (the daemon's reader, the simulator's command reader, capture reading): feed
    bytes, take complete frames, a header block up to its blank line and then Content-Length bytes of body.

    Frames come out byte-exact: with keep_raw, b"".join(raw of every frame) + tail() is all that was fed (stray
    blank lines between frames go with the next frame's raw; FreeSWITCH sends none). A Content-Length that is not
    a number gives a frame with no body and a `problem` (its body is then read as further frames); a header block
    over max_head is discarded up to its blank line, leaving one frame with only a `problem`, or with
    discard_long=False raises FrameError, as a body over max_body always does. crlf also ends a header block at
    a CRLF blank line (commands from clients that send them).
    """

    __slots__ = ("_buf", "_pos", "_scan", "_parts", "_have", "_need", "_discarding", "_start",
                 "max_head", "max_body", "keep_raw", "discard_long", "crlf")

    def __init__(self, max_head: int = MAX_HEADER_BLOCK, max_body: int = MAX_BODY, keep_raw: bool = False,
                 discard_long: bool = True, crlf: bool = False) -> None:
        self.max_head, self.max_body = max_head, max_body
        self.keep_raw, self.discard_long, self.crlf = keep_raw, discard_long, crlf
        self._buf = b""
        self._pos = 0  # start of what is not split yet
        self._start = 0  # start of the next frame's raw bytes (before any stray blank lines)
        self._scan = 0  # where to look for the next blank line
        self._parts: list[bytes] = []  # chunks of a long body, joined once it is whole
        self._have = 0
        self._need = 0  # bytes still missing from the frame in hand (0: unknown)
        self._discarding = False  # inside a header block too long to keep

    @property
    def missing(self) -> int:
        """Bytes still missing from a frame whose body is being read (0 when that is not known): a read size."""
        return self._need - self._have

    def tail(self) -> bytes:
        """What was fed and is not in a complete frame yet."""
        if self._parts:
            self._join()
        return self._buf[self._start:]

    def unread(self, count: int) -> None:
        """Split the last `count` bytes of the frame just taken again, as the start of the next frame."""
        self._pos = self._scan = self._start = self._pos - count

    def _join(self) -> None:
        self._buf = self._buf[self._start:] + b"".join(self._parts)
        self._parts.clear()
        self._pos -= self._start
        self._scan = max(0, self._scan - self._start)
        self._start = 0

    def feed(self, data: bytes) -> None:
        """Add bytes read from the stream; a long body's chunks are kept apart and joined once, when it is whole."""
        if self._need:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            self._join()
            self._have = self._need = 0
            return
        start = self._start
        if start < len(self._buf):
            self._buf = self._buf[start:] + data
            self._pos -= start
            self._scan = max(0, self._scan - start)
        else:
            self._buf, self._pos, self._scan = data, 0, 0
        self._start = 0

    def frames(self) -> Iterator[Frame]:
        """The complete frames fed so far, in order (a generator: unread() may be called between them)."""
        buf = self._buf
        max_head = self.max_head
        while True:
            pos = self._pos
            if self.crlf:
                match = _CRLF_END.search(buf, self._scan)
                end, after = (match.start(), match.end()) if match else (-1, -1)
            else:
                end = buf.find(b"\n\n", self._scan)
                after = end + 2
            if end < 0:
                if len(buf) - pos > max_head:
                    if not self.discard_long:
                        raise FrameError(f"header block over {max_head} bytes")
                    if not self._discarding:
                        self._discarding = True
                        yield Frame({}, problem=f"header block longer than {max_head} bytes; discarding it up to "
                                                "its blank line")
                    self._pos = self._start = len(buf) - 1  # keep a last '\n' that may pair with the next byte
                self._scan = max(self._pos, len(buf) - 3)
                return
            self._pos = self._scan = after
            if self._discarding or end - pos > max_head:
                if not self.discard_long:
                    raise FrameError(f"header block over {max_head} bytes")
                self._start = after
                if not self._discarding:
                    yield Frame({}, problem=f"header block longer than {max_head} bytes: discarded")
                self._discarding = False
                continue
            if end == pos:
                continue  # a stray blank line between frames
            headers = parse_headers(buf[pos:end], decode=False)
            length = headers.get("Content-Length")
            problem = ""
            if length is None:
                length = 0
            elif length.isascii() and length.isdigit():
                length = int(length)
                if length > self.max_body:
                    raise FrameError(f"frame announces a {length}-byte body, over the {self.max_body}-byte limit")
            else:
                problem = f"frame with Content-Length {length[:40]!r} skipped (its body is read as further frames)"
                length = 0
            if length:
                stop = after + length
                if stop > len(buf):
                    self._need = stop - len(buf)
                    self._pos = self._scan = pos
                    return
                self._need = 0
                body = buf[after:stop]
                self._pos = self._scan = stop
            else:
                body, stop = b"", after
            raw = buf[self._start:stop] if self.keep_raw else b""
            self._start = stop
            yield Frame(headers, body, raw, problem)
            buf = self._buf
