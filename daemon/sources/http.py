"""HTTP sources: a URL template with the caller's number ({e164}, {national}, {digits}, each URL-encoded), GET or
POST, headers (with {secret} read from a file), and where in the JSON answer each field is.

A path is the keys from the answer's top down, joined by dots; a part that is a whole number indexes a list:
``customer.name``, ``invoices.0.amount``. A path that leads nowhere leaves its field out. 404 means the source has
no record of the number (an empty answer, not a failure); any other status but 200, an answer that is not JSON or
is larger than max_bytes, is a failure. Sockets are gevent's own, cooperative with or without monkey-patching.

Connections are kept open between lookups (HTTP keep-alive, at most IDLE a source): a new TCP (and TLS) connection
for each lookup costs more than the rest of screenpop's share of the update. One the service closed while it was
idle is replaced once, at once; one that an error, a timeout or an answer not read to its end left is closed.
"""
from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import quote, urlsplit

import gevent.socket
import gevent.ssl

from screenpop.daemon.config import ConfigError, SourceConfig
from screenpop.daemon.i18n import lazy_gettext
from screenpop.daemon.sources.source import PLACEHOLDER, Source, SourceFailed, check_placeholders
from screenpop.db.numbers import NumberForms

# A service that writes its answer's head and body apart, without TCP_NODELAY (Python's http.server, many small
# ones), holds the body back until the head is acknowledged; on a kept connection Linux delays that ACK by up to
# 40 ms unless asked, before each answer, to acknowledge at once.
QUICKACK = getattr(socket, "TCP_QUICKACK", None)
IDLE = 8  # connections one http source keeps open for its next lookups

Endpoint = tuple[bool, str, int]  # https, host, port


def parse_path(where: str, path: str) -> tuple[str | int, ...]:
    """A field's path in the answer as keys and list indexes; ConfigError for an empty part."""
    parts = path.split(".")
    if not path or any(p == "" for p in parts):
        raise ConfigError("[[sources]] %(where)s: %(path)s is not a path (keys joined by dots, e.g. customer.balance)",
                          where=where, path=repr(path))
    return tuple(int(p) if p.isascii() and p.isdigit() else p for p in parts)


def follow(answer: Any, path: tuple[str | int, ...]) -> Any:
    """The value at path in a parsed JSON answer, None where the path leads nowhere."""
    for part in path:
        if isinstance(part, int) and isinstance(answer, list) and part < len(answer):
            answer = answer[part]
        elif isinstance(answer, dict) and str(part) in answer:
            answer = answer[str(part)]
        else:
            return None
    return answer


class HttpSource(Source):
    """A [[sources]] entry of type http."""

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        check_placeholders(config.name, config.url)
        secret = config.secret()
        self.url = config.url
        self.method = config.method
        self.headers = {"Accept": "application/json", "User-Agent": "screenpop"}
        for key, value in config.headers.items():
            check_placeholders(config.name, value, allow=("secret",))
            self.headers[key] = value.replace("{secret}", secret)
        self.paths = {label: parse_path(config.name, path) for label, path in config.fields.items()}
        self.external_path = parse_path(config.name, config.external_id) if config.external_id else None
        self._idle: list[tuple[Endpoint, http.client.HTTPConnection]] = []

    def lookup(self, forms: NumberForms) -> dict[str, Any] | None:
        values = {"e164": forms.e164, "national": forms.national, "digits": forms.digits}
        url = PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), self.url)
        body = json.dumps(values).encode() if self.method == "POST" else None
        status, data = self._request(url, body)
        if status == 404:
            return None
        if status != 200:
            raise SourceFailed(f"HTTP {status}")
        try:
            answer = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise SourceFailed(lazy_gettext("the answer is not JSON (%(reason)s)", reason=str(exc)[:80])) from None
        row = {label: follow(answer, path) for label, path in self.paths.items()}
        if self.external_path is not None:
            row[self.config.external_id] = follow(answer, self.external_path)
        return row

    def _request(self, url: str, body: bytes | None) -> tuple[int, bytes]:
        """One request, on a connection kept from an earlier lookup if there is one: the status and at most
        max_bytes of the body."""
        parts = urlsplit(url)
        https = parts.scheme == "https"
        endpoint = (https, parts.hostname or "", parts.port or (443 if https else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = dict(self.headers, **({"Content-Type": "application/json"} if body is not None else {}))
        kept = next((i for i, (e, _) in enumerate(self._idle) if e == endpoint), None)
        if kept is not None:
            try:
                return self._exchange(endpoint, self._idle.pop(kept)[1], target, body, headers)
            except ConnectionError:
                pass  # the service closed it while it was idle (its own idle timeout): once more on a new one
        return self._exchange(endpoint, self._connect(endpoint), target, body, headers)

    def _connect(self, endpoint: Endpoint) -> http.client.HTTPConnection:
        https, host, port = endpoint
        sock = gevent.socket.create_connection((host, port), timeout=self.timeout)
        if https:
            sock = gevent.ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPSConnection(host, port) if https else http.client.HTTPConnection(host, port)
        conn.sock = sock
        return conn

    def _exchange(self, endpoint: Endpoint, conn: http.client.HTTPConnection, target: str, body: bytes | None,
                  headers: dict[str, str]) -> tuple[int, bytes]:
        """The request on conn; conn is kept for the next lookup when its answer was read to the end and the
        service keeps it open, else closed (also on any error or the timeout)."""
        try:
            conn.request(self.method, target, body=body, headers=headers)
            if QUICKACK is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            resp = conn.getresponse()
            length = resp.getheader("Content-Length")
            if length and length.isdigit():
                self.check_size(int(length))
            data = resp.read(self.config.max_bytes + 1)
            self.check_size(len(data))
        except BaseException:
            conn.close()
            raise
        if resp.isclosed() and not resp.will_close and conn.sock is not None and len(self._idle) < IDLE:
            self._idle.append((endpoint, conn))
        else:
            conn.close()
        return resp.status, data
