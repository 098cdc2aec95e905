"""ESL wire format: header blocks, URL-encoded values, and the event object everything downstream reads."""
from __future__ import annotations

import json
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


def render_headers(headers: list[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """Serialise headers as a plain event body: 'Name: url-encoded value' lines and a closing blank line."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return "".join(f"{k}: {encode_value(v)}\n" for k, v in items).encode("utf-8") + b"\n"


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

    @property
    def timestamp_us(self) -> int:
        """Event-Date-Timestamp in microseconds since the epoch (0 when missing or malformed)."""
        try:
            return int(self.headers.get("Event-Date-Timestamp", "0"))
        except ValueError:
            return 0


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
    """One message on the socket: its outer header block and its body bytes (possibly empty)."""

    headers: dict[str, str]
    body: bytes = b""
    raw: bytes = field(default=b"", repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")
