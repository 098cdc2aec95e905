"""The daemon's HTTP server: gevent's WSGI server with a small Flask app (API v1; formats in docs/card.md).

GET /api/v1/health                       no auth; {"status": "ok"}
GET /api/v1/events[?extension=N]         Server-Sent Events: the pops of the token's extension (admin: any, or all)
GET /api/v1/customers/<id>/photo?size=N  the customer's photo (or a placeholder) as a square JPEG
/api/v1/customers, /orders, /employees, /calls   the customer-data JSON API (daemon/api.py, docs/api.md)
POST /api/v1/signin-links                a one-time web sign-in link for the token (daemon/web/auth.py)
/, /customers, /calls, /employees, /signin ...   the web pages (daemon/web/, docs/web.md), signed-in sessions
GET /dashboard, /missed, /reports/<name>.csv     call analytics pages, signed-in session (daemon/dashboard.py)

Every /api/v1 route but health needs ``Authorization: Bearer <token>`` (`screenpop token create`). A missing,
unknown or revoked token gets 401 and one WARNING line naming the client and the reason, never the token.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import ssl as _ssl
from collections.abc import Callable, Iterator

import gevent
import peewee
from flask import Flask, Response, jsonify, request
from gevent.pywsgi import WSGIHandler, WSGIServer
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from screenpop.daemon import api, dashboard, web
from screenpop.daemon.config import ConfigError, HttpConfig, WebConfig
from screenpop.daemon.customerdata import MAX_ID
from screenpop.daemon.photos import Photos, photo_response
from screenpop.daemon.push import ALL, PushHub, Subscriber
from screenpop.db.database import DatabaseUnreachable
from screenpop.db.tokens import TokenCheck

log = logging.getLogger("screenpop.http")

_SIGNIN_SECRET = re.compile(r"/signin/[^ ?/]+")  # one-time link secrets never reach a log
RETRY_MS = 2000
STOP_GRACE_SECONDS = 2.0
MAX_POP_ID_DIGITS = 18  # pop ids are 64-bit; a longer Last-Event-ID is not one
FORM_MAX = 256 * 1024  # a web form's body (the longest, a customer with a 10 000-character note, is far less)
DRAIN_MAX = 64 * 1024  # after a response, the rest of a body the app left unread is skipped only up to this
BODY = "screenpop.body"  # the environ key of the request's _Body
LIMIT = "screenpop.body_limit"  # and of its ceiling


class _RowId(IntegerConverter):
    """Every route's <int:...>: ASCII digits naming a row id the databases can hold, else 400 with a message."""

    regex = r"[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value) if len(value) <= len(str(MAX_ID)) else MAX_ID + 1
        if number > MAX_ID:
            raise BadRequest(f"{value[:20]}{'…' if len(value) > 20 else ''} is not an id (at most {MAX_ID})")
        return number


class _Handler(WSGIHandler):
    """pywsgi's handler, telling the app its socket (so a stuck stream can be cut off) and its body (_Body)."""

    def get_environ(self):
        env = super().get_environ()
        env["screenpop.socket"] = self.socket
        if env["wsgi.input"] is self.wsgi_input:
            self.wsgi_input = env["wsgi.input"] = env[BODY] = _Body(self, self.wsgi_input)
        return env


class _Body:
    """A request body as the app reads it, never past the ceiling the app set for it (`limit`: more is 413);
    after the response pywsgi skips the unread rest, which is read only up to DRAIN_MAX: a larger or unknown
    rest (a refused upload, a chunked body) closes the connection instead."""

    def __init__(self, handler: WSGIHandler, body) -> None:
        self.handler = handler
        self.body = body
        self.limit: int | None = None
        self.taken = 0

    def read(self, size: int | None = None) -> bytes:
        if size is None or size < 0:  # in pieces: a chunked body's read() would otherwise hold all of it
            parts = []
            while part := self.read(65536):
                parts.append(part)
            return b"".join(parts)
        return self._count(self.body.read(size))

    def readline(self, size: int | None = None) -> bytes:
        if size is None or size < 0:
            size = 65536 if self.limit is None else self.limit - self.taken + 1
        return self._count(self.body.readline(size))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _count(self, data: bytes) -> bytes:
        self.taken += len(data)
        if self.limit is not None and self.taken > self.limit:
            raise RequestEntityTooLarge()
        return data

    def _discard(self) -> None:
        body = self.body
        if body.chunked_input or (body.content_length or 0) - body.position > DRAIN_MAX:
            self.handler.close_connection = True
        else:
            body._discard()


class _AccessLog:
    """pywsgi's access log, at debug level (it would print a line per request to stderr)."""

    def __init__(self) -> None:
        self.log = logging.getLogger("screenpop.http.access")

    def write(self, line: str) -> None:
        self.log.debug("%s", _SIGNIN_SECRET.sub("/signin/…", line.rstrip()))


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="screenpop"'
    return response


def create_app(hub: PushHub, photos: Photos, heartbeat: float, web_config: WebConfig | None = None, tls: bool = False,
               on_link: Callable[[int, str | None, str | None], None] | None = None,
               zone: dt.tzinfo = dt.timezone.utc) -> Flask:
    """The Flask app serving the push stream, photos, the JSON API and the web pages from hub.

    tls: served over HTTPS (secure session cookies); on_link: the daemon's hook for a call linked to a customer;
    zone: the call centre's time zone, for the analytics pages.
    """
    app = Flask("screenpop.daemon.httpserver", static_folder=None)  # the pages' static files: daemon/web/static
    app.url_map.converters["int"] = _RowId
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def authenticate() -> TokenCheck | Response:
        header = request.headers.get("Authorization", "")
        scheme, _, clear = header.partition(" ")
        if not header:
            check = TokenCheck(None, reason="no Authorization header")
        elif scheme.lower() != "bearer" or not clear.strip():
            check = TokenCheck(None, reason="Authorization is not a Bearer token")
        else:
            check = hub.check_token(clear.strip())
        if check.ok:
            return check
        log.warning("401 for %s %s from %s: %s", request.method, request.path, request.remote_addr, check.reason)
        public = "token revoked" if "revoked" in check.reason else "invalid token" if check.token_id or "unknown" in check.reason else "missing bearer token"
        return _error(401, public)

    @app.get("/api/v1/health")
    def health():
        return jsonify(status="ok")

    @app.get("/api/v1/events")
    def events():
        check = authenticate()
        if isinstance(check, Response):
            return check
        wanted = request.args.get("extension", "").strip()
        if check.role == "admin":
            extension = wanted or check.extension or ALL
        else:
            if wanted and wanted != check.extension:
                log.warning("403 for GET /api/v1/events from %s: token %d (extension %s) asked for extension %s",
                            request.remote_addr, check.token_id, check.extension, wanted)
                return _error(403, "an operator token sees only its own extension")
            extension = check.extension
        raw_last = request.headers.get("Last-Event-ID", "").strip() or request.args.get("last_event_id", "").strip()
        last_id = None
        if raw_last:
            if not (raw_last.isascii() and raw_last.isdigit() and len(raw_last) <= MAX_POP_ID_DIGITS):
                return _error(400, "Last-Event-ID must be a pop id (a whole number)")
            last_id = int(raw_last)
        sub = hub.subscribe(extension, check.token_id, request.environ.get("screenpop.socket"))
        log.info("stream opened for extension %s by token %d from %s%s", extension, check.token_id, request.remote_addr,
                 f", replaying after {last_id}" if last_id is not None else "")
        response = Response(_stream(hub, sub, last_id, heartbeat), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache, no-store"
        response.headers["X-Accel-Buffering"] = "no"  # nginx in front: do not buffer the stream
        return response

    @app.get("/api/v1/customers/<int:customer_id>/photo")
    def photo(customer_id: int):
        check = authenticate()
        if isinstance(check, Response):
            return check
        out = photo_response(hub, photos, customer_id, request.args.get("size"))
        return _error(404, f"no customer {customer_id}") if out is None else out

    def failed(status: int, message: str, page_message: str) -> Response:
        """JSON under /api/, an HTML page elsewhere."""
        return _error(status, message) if request.path.startswith("/api/") else web.error_page(status, page_message)

    web_config = web_config or WebConfig()

    @app.before_request
    def limit_body() -> Response | None:
        """Before anything reads it: a request body's ceiling by kind (API, photo upload, any other form). A body
        declared larger is refused unread; one sent without a length is cut off where it passes the ceiling."""
        if request.path.startswith("/api/"):
            limit = api.MAX_BODY
        elif request.endpoint == "customers.upload_photo":
            limit = web_config.upload_max_bytes()
        else:
            limit = FORM_MAX
        request.environ[LIMIT] = limit
        if request.content_length is not None and request.content_length > limit:
            return too_large(None)
        if BODY in request.environ:  # not there under Flask's test client, which always sends a length
            request.environ[BODY].limit = limit
        return None

    app.register_blueprint(api.blueprint(hub, authenticate))
    web.init_app(app, hub, photos, web_config, tls, authenticate, on_link)
    app.register_blueprint(dashboard.blueprint(zone))

    @app.errorhandler(peewee.DatabaseError)
    def database_down(exc):
        # an outage is logged once for the whole daemon (db/database.py), not once per request
        log.log(logging.DEBUG if isinstance(exc, DatabaseUnreachable) else logging.WARNING,
                "%s %s from %s: database error (%s)", request.method, request.path, request.remote_addr, exc)
        response = failed(503, "database unavailable, retry shortly", "The database does not answer; try again in a moment.")
        response.headers["Retry-After"] = "2"
        return response

    @app.errorhandler(400)
    def bad_request(exc):
        return failed(400, exc.description, exc.description)

    @app.errorhandler(404)
    def not_found(_exc):
        return failed(404, "not found", "There is no such page.")

    @app.errorhandler(405)
    def not_allowed(_exc):
        return failed(405, "method not allowed", "That is not something this page does.")

    @app.errorhandler(413)
    def too_large(_exc):
        limit = request.environ.get(LIMIT, 0)
        size = f"{request.content_length} bytes" if request.content_length else "a body sent without a length"
        log.warning("413 for %s %s from %s: %s, above the %d allowed here", request.method, request.path,
                    request.remote_addr, size, limit)
        response = failed(413, f"request body larger than {limit} bytes",
                          f"That was too large to send (at most {limit // 1024:,} KiB here).")
        response.headers["Connection"] = "close"  # the rest of it is not read
        return response

    @app.errorhandler(500)
    def broken(_exc):
        return failed(500, "internal error (see the daemon's log)", "Something went wrong; the daemon's log says what.")

    return app


def _stream(hub: PushHub, sub: Subscriber, last_id: int | None, heartbeat: float) -> Iterator[bytes]:
    """retry, then the replay after last_id (if any), then live frames; keepalive comments when idle."""
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        last = last_id if last_id is not None else 0
        if last_id is not None:
            batch: list[bytes] = []
            try:
                for pop_id, frame in hub.replay(sub.extension, last_id):
                    batch.append(frame)
                    last = pop_id
                    if len(batch) >= 50:
                        yield b"".join(batch)
                        batch = []
            except peewee.DatabaseError as exc:
                sub.reason = f"replay failed: {exc}"  # the client reconnects with the last id it got
                log.warning("replay for extension %s after %d failed (%s); ending the stream", sub.extension, last, exc)
            if batch:
                yield b"".join(batch)
            if sub.reason:
                return
        while True:
            frames = []
            for pop_id, frame in sub.take():
                if pop_id is None:  # a pop not stored yet (database out of reach): it has no id to compare
                    frames.append(frame)
                elif pop_id > last:  # live frames already sent by the replay are dropped here
                    frames.append(frame)
                    last = pop_id
            if sub.reason:
                if frames:
                    yield b"".join(frames)
                return
            if frames:
                yield b"".join(frames)
            elif not sub.wake.wait(heartbeat):
                yield b": keepalive\n\n"
    finally:
        hub.unsubscribe(sub)
        log.info("stream closed for extension %s (token %s)%s", sub.extension, sub.token_id,
                 f": {sub.reason}" if sub.reason else "")


class HttpServer:
    """The listening server; start() binds (a busy port fails the daemon's start), stop() ends streams first."""

    def __init__(self, config: HttpConfig, hub: PushHub, photos: Photos, web_config: WebConfig | None = None,
                 on_link: Callable[[int, str | None, str | None], None] | None = None,
                 zone: dt.tzinfo = dt.timezone.utc) -> None:
        self.config = config
        self.hub = hub
        tls = bool(config.certfile) or config.public_url.startswith("https:")
        self.app = create_app(hub, photos, config.heartbeat, web_config, tls, on_link, zone)
        ssl = {"certfile": config.certfile, "keyfile": config.keyfile} if config.certfile else {}
        if ssl:
            try:  # fail at start, not on each connection
                _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH).load_cert_chain(config.certfile, config.keyfile)
            except (OSError, _ssl.SSLError) as exc:
                raise ConfigError(f"[http] certfile/keyfile cannot be used: {exc}") from None
        self.server = WSGIServer(config.address(), self.app, handler_class=_Handler, log=_AccessLog(),
                                 error_log=logging.getLogger("screenpop.http"), **ssl)

    @property
    def scheme(self) -> str:
        return "https" if self.config.certfile else "http"

    def start(self) -> None:
        self.server.start()
        host, port = self.server.address[:2]
        log.info("HTTP listening on %s://%s:%d", self.scheme, host, port)

    def stop(self) -> None:
        self.hub.close_all("daemon stopping")
        gevent.sleep(0)  # let the streams write their end
        self.server.stop(timeout=STOP_GRACE_SECONDS)
