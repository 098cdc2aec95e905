"""ESL wire format: header blocks, URL-encoded values, and the event object everything downstream reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes

MAX_HEADER_BLOCK = 256 * 1024
MAX_BODY = 32 * 1024 * 1024


def decode_value(raw: bytes | str) -> str:
    """Percent-decode one header value; bytes that are not UTF-8 become U+FFFD instead of killing the reader."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def encode_value(value: str) -> str:
    """Percent-encode a header value the way FreeSWITCH's plain event serialiser does."""
    return quote(value, safe="-_./,*~")


def parse_headers(block: bytes, decode: bool = True) -> dict[str, str]:
    """Split a header block into lines first, then decode each value, so an encoded newline cannot forge a header.

    A repeated header name keeps its first value, as FreeSWITCH's own event reader does.
    Lines without ': ' are ignored.
    """
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
        headers[key] = decode_value(value) if decode else value.decode("utf-8", "replace")
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
