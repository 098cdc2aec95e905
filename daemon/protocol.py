"""ESL wire format: header blocks, URL-encoded values, and the event object everything downstream reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from binascii import a2b_qp
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


def _unquote_fast(value: str) -> str:
    """decode_value for a str that came from valid UTF-8 without CR/LF or NUL, with the %XX work done in C.

    binascii.a2b_qp decodes '=XX'; after turning '=' into '=3D' and '%' into '=', every valid %XX escape
    shortens the value by exactly 2 bytes and anything else (an invalid escape, a '%' at the end) by less,
    so the length tells whether the fast result is exact; if not, the reference decoder runs instead.
    """
    raw = value.encode("utf-8")
    out = a2b_qp(raw.replace(b"=", b"=3D").replace(b"%", b"="))
    if len(out) != len(raw) - 2 * raw.count(b"%"):
        out = unquote_to_bytes(raw)
    return out.decode("utf-8", "replace").replace("\x00", "\ufffd")


_decoded: dict[str, str] = {}
_DECODED_MAX = 8192  # a call's events repeat most encoded values (dates, channel names, caller IDs, URIs)


def parse_headers(block: bytes, decode: bool = True) -> dict[str, str]:
    """Split a header block into lines first, then decode each value, so an encoded newline cannot forge a header.

    A repeated header name keeps its first value, as FreeSWITCH's own event reader does.
    Lines without ': ' are ignored.
    """
    # Fast path (the usual case: valid UTF-8, no CR): decode the block once, split, and percent-decode only
    # values holding a '%'. Same result as _parse_headers_bytes, which handles everything else.
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return _parse_headers_bytes(block, decode)
    if "\r" in text or "\x00" in text:
        return _parse_headers_bytes(block, decode)
    headers: dict[str, str] = {}
    for line in text.split("\n"):
        name, sep, value = line.partition(": ")
        if not sep or not name:
            continue
        key = name.strip()
        if key in headers:
            continue
        if decode and "%" in value:
            decoded = _decoded.get(value)
            if decoded is None:
                decoded = _unquote_fast(value)
                if len(_decoded) >= _DECODED_MAX:
                    _decoded.clear()
                _decoded[value] = decoded
            value = decoded
        headers[key] = value
    return headers


def _parse_headers_bytes(block: bytes, decode: bool = True) -> dict[str, str]:
    """parse_headers working on bytes line by line: for blocks with invalid UTF-8, CR or NUL characters."""
    headers: dict[str, str] = {}
    for line in block.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        name, sep, value = line.partition(b": ")
        if not sep or not name:
            continue
        key = name.decode("utf-8", "replace").strip()
        if key in headers:
            continue
        headers[key] = decode_value(value) if decode else value.decode("utf-8", "replace").replace("\x00", "\ufffd")
    return headers


def render_headers(headers: list[tuple[str, str]] | dict[str, str]) -> bytes:
    """Serialise headers as a plain event body: 'Name: url-encoded value' lines and a closing blank line."""
    items = headers.items() if isinstance(headers, dict) else headers
    return "".join(f"{k}: {encode_value(v)}\n" for k, v in items).encode("utf-8") + b"\n"


@dataclass
class Event:
    """One FreeSWITCH event: decoded headers plus the optional body after them."""

    headers: dict[str, str]
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
    head, sep, rest = data.partition(b"\n\n")
    headers = parse_headers(head)
    body = ""
    if sep and "Content-Length" in headers:
        try:
            length = max(0, int(headers["Content-Length"]))
        except ValueError:
            length = len(rest)
        body = rest[:length].decode("utf-8", "replace")
    return Event(headers=headers, body=body)


@dataclass
class Frame:
    """One message on the socket: its outer header block and its body bytes (possibly empty)."""

    headers: dict[str, str]
    body: bytes = b""
    raw: bytes = field(default=b"", repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")
