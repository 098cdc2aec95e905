"""The daemon's HTTP server: gevent's WSGI server with a small Flask app (API v1; formats in docs/card.md).

GET /api/v1/health                       no auth; {"status": "ok"}
GET /api/v1/events[?extension=N]         Server-Sent Events: the pops of the token's extension (admin: any, or all)
GET /api/v1/customers/<id>/photo?size=N  the customer's photo (or a placeholder) as a square JPEG
/api/v1/customers, /orders, /employees, /calls   the customer-data JSON API (daemon/web/api.py, docs/api.md)
POST /api/v1/signin-links                a one-time web sign-in link for the token (daemon/web/pages/signin.py)
POST /api/v1/cdr                         FreeSWITCH's JSON CDRs, HTTP Basic (daemon/record/cdr.py, docs/cdr.md)
/, /customers, /calls, /employees, /signin ...   the web pages (daemon/web/, docs/web.md), signed-in sessions
GET /dashboard, /missed, /reports/<name>.csv     call analytics pages, signed-in session (daemon/web/pages/dashboard.py)

Every /api/v1 route but health and cdr needs ``Authorization: Bearer <token>`` (`screenpop token create`). A missing,
unknown or revoked token gets 401 and one WARNING line naming the client and the reason, never the token.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import resource
import socket
import ssl as _ssl
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import gevent
import peewee
from babel.support import LazyProxy
from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, RequestTimeout
from werkzeug.routing import IntegerConverter

from screenpop.daemon import i18n
from screenpop.daemon.auth import roles
from screenpop.daemon.auth.tokens import TokenCheck
from screenpop.daemon.config import AnalyticsConfig, ConfigError, HttpConfig, RecordingsConfig, WebConfig
from screenpop.daemon.customers.data import MAX_ID
from screenpop.daemon.customers.photos import Photos, photo_response
from screenpop.daemon.i18n import Message, lazy_gettext, lazy_number
from screenpop.daemon.pbx.originate import Originator
from screenpop.daemon.push.hub import ALL, PushHub, Subscriber
from screenpop.daemon.record import cdr
from screenpop.daemon.sources.fetch import Sources
from screenpop.daemon.web import api, pages as web
from screenpop.daemon.web.pages import conversation, dashboard
from screenpop.db.database import DatabaseUnreachable

if TYPE_CHECKING:
    from screenpop.daemon.auth.directory import Directory  # ldap3 is imported only when [ldap] is on

log = logging.getLogger("screenpop.http")

_SIGNIN_SECRET = re.compile(r"/signin/[^ ?/]+")  # one-time link secrets never reach a log
RETRY_MS = 2000
STOP_GRACE_SECONDS = 2.0
MAX_POP_ID_DIGITS = 18  # pop ids are 64-bit; a longer Last-Event-ID is not one
FORM_MAX = 256 * 1024  # a web form's body (the longest, a customer with a 10 000-character note, is far less)
DRAIN_MAX = 64 * 1024  # after a response, the rest of a body the app left unread is skipped only up to this
BODY = "screenpop.body"  # the environ key of the request's _Body
LIMIT = "screenpop.body_limit"  # and of its ceiling
STREAMING = "screenpop.streaming"  # and of the call that takes an event stream's connection out of the cap
CAP_LOG_SECONDS = 60.0  # at most one line a minute says the connection cap is reached
SPARE_FILES = 64  # open files besides the connections: database, FreeSWITCH, photos, the log


class _RowId(IntegerConverter):
    """Every route's <int:...>: ASCII digits naming a row id the databases can hold, else 400 with a message."""

    regex = r"[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value) if len(value) <= len(str(MAX_ID)) else MAX_ID + 1
        if number > MAX_ID:
            raise BadRequest(f"{value[:20]}{'…' if len(value) > 20 else ''} is not an id (at most {MAX_ID})")
        return number


class _Handler(WSGIHandler):
    """pywsgi's handler with the [http] time limits: a connection waits at most idle_timeout for a request to
    begin, which then has header_timeout for its request line and headers; it tells the app its socket (so a
    stuck stream can be cut off), its body (_Body) and how to leave the connection cap (an event stream)."""

    server: _Server
    head_timer: gevent.Timeout | None = None

    def handle_one_request(self):
        try:
            return super().handle_one_request()
        except gevent.Timeout as exc:
            if exc is not self.head_timer:
                raise
            log.debug("HTTP connection from %s closed: no complete request in time", self.client_address[0])
            return None  # closes the connection
        finally:
            self._stop_head_timer()

    def read_requestline(self) -> str:
        limits = self.server.limits
        self.head_timer = gevent.Timeout.start_new(limits.idle_timeout)
        if not self.rfile.peek(1):
            return ""  # the client closed the connection
        self.head_timer.close()
        self.head_timer = gevent.Timeout.start_new(limits.header_timeout)
        return super().read_requestline()

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.close()
            self.head_timer = None

    def get_environ(self):
        self._stop_head_timer()  # the head is in; the app's time is its own
        env = super().get_environ()
        env["screenpop.socket"] = self.socket
        env[STREAMING] = self.streaming
        if env["wsgi.input"] is self.wsgi_input:
            self.wsgi_input = env["wsgi.input"] = env[BODY] = _Body(self, self.wsgi_input)
        return env

    def streaming(self) -> None:
        """This connection now carries an event stream: it leaves the cap (no flood locks a tray out), closes when
        its stream ends, and sends each frame at once (no Nagle: a pop waiting for the ACK of the one before it
        would wait for the client's delayed ACK, up to 40 ms)."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # a socket without TCP (a test's Unix socket) has no Nagle to turn off
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.pool is not None:
            self.server.pool.discard(gevent.getcurrent())


class _Body:
    """A request body as the app reads it, never past the ceiling the app set for it (`limit`: more is 413), each
    read waiting at most idle_timeout for the client (then 408). After the response pywsgi skips the unread rest,
    which is read only up to DRAIN_MAX and within idle_timeout: a larger, unknown (chunked) or stalled rest
    closes the connection instead."""

    def __init__(self, handler: _Handler, body) -> None:
        self.handler = handler
        self.body = body
        self.limit: int | None = None
        self.taken = 0
        self.stalled = False

    def read(self, size: int | None = None) -> bytes:
        if size is None or size < 0:  # in pieces: a chunked body's read() would otherwise hold all of it
            parts = []
            while part := self.read(65536):
                parts.append(part)
            return b"".join(parts)
        return self._count(self._waited(self.body.read, size))

    def readline(self, size: int | None = None) -> bytes:
        if size is None or size < 0:
            size = 65536 if self.limit is None else self.limit - self.taken + 1
        return self._count(self._waited(self.body.readline, size))

    def _waited(self, read: Callable[[int], bytes], size: int) -> bytes:
        timer = gevent.Timeout.start_new(self.handler.server.limits.idle_timeout)
        try:
            return read(size)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self.stalled = True
            self.handler.close_connection = True
            raise RequestTimeout(lazy_gettext("the request body stopped arriving")) from None
        finally:
            timer.close()

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
        if self.stalled or body.chunked_input or (body.content_length or 0) - body.position > DRAIN_MAX:
            self.handler.close_connection = True
            return
        with gevent.Timeout(self.handler.server.limits.idle_timeout, False):
            body._discard()
        if body.position < (body.content_length or 0):
            self.handler.close_connection = True


class _Connections(Pool):
    """The connections being served, at most size at once: at the cap the server stops accepting (new ones wait
    in the listen backlog) until one closes, and says so in one WARNING line a minute at most. A connection that
    becomes an event stream leaves the pool (_Handler.streaming)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.warned = -CAP_LOG_SECONDS

    def full(self) -> bool:
        if not super().full():
            return False
        if time.monotonic() - self.warned >= CAP_LOG_SECONDS:
            self.warned = time.monotonic()
            log.warning("HTTP: %d connections open, the [http] max_connections (event streams not counted); "
                        "new ones wait until one closes", self.size)
        return True


class _Server(WSGIServer):
    """pywsgi's server with the [http] limits: a _Connections pool, and the TLS handshake within header_timeout."""

    def __init__(self, limits: HttpConfig, app: Flask, **kwargs) -> None:
        self.limits = limits
        super().__init__(limits.address(), app, spawn=_Connections(limits.max_connections), handler_class=_Handler,
                         **kwargs)

    def wrap_socket_and_handle(self, client_socket, address):
        too_slow = TimeoutError("no TLS handshake in time")  # an OSError: the half-made TLS socket closes itself
        timer = gevent.Timeout.start_new(self.limits.header_timeout, too_slow)
        try:
            tls_socket = self.wrap_socket(client_socket, **self.ssl_args)
        except TimeoutError as exc:
            if exc is not too_slow:
                raise
            log.debug("HTTPS connection from %s closed: %s", address[0], exc)
            return None
        finally:
            timer.close()
        try:
            return self.handle(tls_socket, address)
        finally:
            tls_socket.close()


class _AccessLog:
    """pywsgi's access log, at debug level (it would print a line per request to stderr)."""

    def __init__(self) -> None:
        self.log = logging.getLogger("screenpop.http.access")

    def write(self, line: str) -> None:
        self.log.debug("%s", _SIGNIN_SECRET.sub("/signin/…", line.rstrip()))


class _Json(DefaultJSONProvider):
    """Flask's JSON as the API writes it (unescaped, in the order given), a lazy message (i18n.lazy_gettext) written as
    its text in the language of the moment: the request's, when an error or a session's flashed note is written."""

    ensure_ascii = False
    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        return str(o) if isinstance(o, LazyProxy) else DefaultJSONProvider.default(o)


def _error(status: int, message: Message) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="screenpop"'
    return response


def create_app(hub: PushHub, photos: Photos, heartbeat: float, web_config: WebConfig | None = None, tls: bool = False,
               on_link: Callable[[int, str | None, str | None], None] | None = None,
               zone: dt.tzinfo = dt.timezone.utc, cdr_intake: cdr.CdrIntake | None = None,
               originator: Originator | None = None, sources: Sources | None = None,
               analytics: AnalyticsConfig | None = None,
               on_employees_changed: Callable[[], None] | None = None,
               analysis: Callable[[], dict] | None = None, recordings: RecordingsConfig | None = None,
               directory: Directory | None = None) -> Flask:
    """The Flask app serving the push stream, photos, the JSON API and the web pages from hub.

    tls: served over HTTPS (secure session cookies); on_link: the daemon's hook for a call linked to a customer;
    on_employees_changed: the daemon's hook for an employee added, changed or deleted through the API or the pages;
    zone: the call centre's time zone, every page's times are shown in; cdr_intake: where FreeSWITCH's CDRs go;
    originator: click-to-call through FreeSWITCH (docs/originate.md); sources: what the record page asks about a
    customer's numbers (docs/sources.md); analytics: the service figures' thresholds (docs/analytics.md);
    recordings: who may listen to call recordings and the folders they are served from (docs/recordings.md);
    analysis: the conversation analysis worker's progress (docs/analysis.md), None when it is off; directory: the
    organisation's LDAP people sign in with (docs/accounts.md), None when [ldap] is off.
    """
    recordings = recordings or RecordingsConfig()
    app = Flask("screenpop.daemon.web.server", static_folder=None)  # the pages' static files: daemon/web/static
    app.url_map.converters["int"] = _RowId
    app.json = _Json(app)

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
        if "revoked" in check.reason:
            return _error(401, lazy_gettext("token revoked"))
        if check.token_id or "unknown" in check.reason:
            return _error(401, lazy_gettext("invalid token"))
        return _error(401, lazy_gettext("missing bearer token"))

    @app.get("/api/v1/health")
    def health():
        return jsonify(status="ok")

    @app.get("/api/v1/events")
    def events():
        check = authenticate()
        if isinstance(check, Response):
            return check
        wanted = request.args.get("extension", "").strip()
        if roles.allows(check.role, "team_calls"):
            extension = wanted or check.extension or ALL
        else:
            if wanted and wanted != check.extension:
                log.warning("403 for GET /api/v1/events from %s: token %d (extension %s) asked for extension %s",
                            request.remote_addr, check.token_id, check.extension, wanted)
                return _error(403, lazy_gettext("an operator token sees only its own extension"))
            extension = check.extension
        raw_last = request.headers.get("Last-Event-ID", "").strip() or request.args.get("last_event_id", "").strip()
        last_id = None
        if raw_last:
            if not (raw_last.isascii() and raw_last.isdigit() and len(raw_last) <= MAX_POP_ID_DIGITS):
                return _error(400, lazy_gettext("Last-Event-ID must be a pop id (a whole number)"))
            last_id = int(raw_last)
        # its pops in the language of the person the token belongs to, else the tray's (Accept-Language: its config's
        # or its desktop's), else the organisation's (docs/i18n.md)
        sub = hub.subscribe(extension, check.token_id, request.environ.get("screenpop.socket"),
                            setting=hub.language_setting(check.extension),
                            asked=i18n.from_accept_language(request.accept_languages))
        if STREAMING in request.environ:  # not under Flask's test client
            request.environ[STREAMING]()
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
        return _error(404, lazy_gettext("no customer %(customer_id)s", customer_id=customer_id)) if out is None else out

    def failed(status: int, message: Message, page_message: Message) -> Response:
        """JSON under /api/, an HTML page elsewhere."""
        return _error(status, message) if request.path.startswith("/api/") else web.error_page(status, page_message)

    web_config = web_config or WebConfig()

    @app.before_request
    def limit_body() -> Response | None:
        """Before anything reads it: a request body's ceiling by kind (a CDR, API, photo upload, any other form). A
        body declared larger is refused unread; one sent without a length is cut off where it passes the ceiling."""
        if cdr_intake is not None and request.endpoint == "cdr.cdr":
            limit = cdr_intake.max_body
        elif request.path.startswith("/api/"):
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

    if cdr_intake is not None:
        app.register_blueprint(cdr.blueprint(cdr_intake))  # its own auth (HTTP Basic), not the API's Bearer token
    app.register_blueprint(api.blueprint(hub, authenticate, originator, on_employees_changed, recordings))
    web.init_app(app, hub, photos, web_config, tls, authenticate, on_link, zone, originator, sources,
                 on_employees_changed, recordings, directory)
    app.register_blueprint(dashboard.blueprint(zone, analytics or AnalyticsConfig(), analysis))
    app.register_blueprint(conversation.blueprint(authenticate, analysis))

    @app.errorhandler(peewee.DatabaseError)
    def database_down(exc):
        # an outage is logged once for the whole daemon (db/database.py), not once per request
        log.log(logging.DEBUG if isinstance(exc, DatabaseUnreachable) else logging.WARNING,
                "%s %s from %s: database error (%s)", request.method, request.path, request.remote_addr, exc)
        response = failed(503, lazy_gettext("database unavailable, retry shortly"),
                          lazy_gettext("The database does not answer; try again in a moment."))
        response.headers["Retry-After"] = "2"
        return response

    @app.errorhandler(400)
    def bad_request(exc):
        return failed(400, exc.description, exc.description)

    @app.errorhandler(404)
    def not_found(_exc):
        return failed(404, lazy_gettext("not found"), lazy_gettext("There is no such page."))

    @app.errorhandler(405)
    def not_allowed(_exc):
        return failed(405, lazy_gettext("method not allowed"), lazy_gettext("That is not something this page does."))

    @app.errorhandler(408)
    def too_slow(exc):
        log.warning("408 for %s %s from %s: %s", request.method, request.path, request.remote_addr, exc.description)
        response = failed(408, exc.description, lazy_gettext("The request took too long to arrive; try again."))
        response.headers["Connection"] = "close"
        return response

    @app.errorhandler(413)
    def too_large(_exc):
        limit = request.environ.get(LIMIT, 0)
        size = f"{request.content_length} bytes" if request.content_length else "a body sent without a length"
        log.warning("413 for %s %s from %s: %s, above the %d allowed here", request.method, request.path,
                    request.remote_addr, size, limit)
        response = failed(413, lazy_gettext("request body larger than %(limit)s bytes", limit=limit),
                          lazy_gettext("That was too large to send (at most %(kib)s KiB here).",
                                       kib=lazy_number(limit // 1024)))
        response.headers["Connection"] = "close"  # the rest of it is not read
        return response

    @app.errorhandler(500)
    def broken(_exc):
        return failed(500, lazy_gettext("internal error (see the daemon's log)"),
                      lazy_gettext("Something went wrong; the daemon's log says what."))

    return app


def _stream(hub: PushHub, sub: Subscriber, last_id: int | None, heartbeat: float) -> Iterator[bytes]:
    """retry, then the replay after last_id (if any), then live frames; keepalive comments when idle."""
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        last = last_id if last_id is not None else 0
        if last_id is not None:
            batch: list[bytes] = []
            try:
                for pop_id, frame in hub.replay(sub.extension, last_id, sub.language):
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
                 zone: dt.tzinfo = dt.timezone.utc, cdr_intake: cdr.CdrIntake | None = None,
                 originator: Originator | None = None, sources: Sources | None = None,
                 analytics: AnalyticsConfig | None = None,
                 on_employees_changed: Callable[[], None] | None = None,
                 analysis: Callable[[], dict] | None = None, recordings: RecordingsConfig | None = None,
                 directory: Directory | None = None) -> None:
        self.config = config
        self.hub = hub
        tls = bool(config.certfile) or config.public_url.startswith("https:")
        self.app = create_app(hub, photos, config.heartbeat, web_config, tls, on_link, zone, cdr_intake, originator,
                              sources, analytics, on_employees_changed, analysis, recordings, directory)
        ssl = {"certfile": config.certfile, "keyfile": config.keyfile} if config.certfile else {}
        if ssl:
            try:  # fail at start, not on each connection
                _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH).load_cert_chain(config.certfile, config.keyfile)
            except (OSError, _ssl.SSLError) as exc:
                raise ConfigError("[http] certfile/keyfile cannot be used: %(reason)s", reason=str(exc)) from None
        self.server = _Server(config, self.app, log=_AccessLog(), error_log=logging.getLogger("screenpop.http"), **ssl)

    @property
    def scheme(self) -> str:
        return "https" if self.config.certfile else "http"

    def start(self) -> None:
        _enough_open_files(self.config.max_connections + SPARE_FILES)
        self.server.start()
        host, port = self.server.address[:2]
        log.info("HTTP listening on %s://%s:%d", self.scheme, host, port)

    def stop(self) -> None:
        self.hub.close_all("daemon stopping")
        gevent.sleep(0)  # let the streams write their end
        self.server.stop(timeout=STOP_GRACE_SECONDS)


def _enough_open_files(needed: int) -> None:
    """Raise the open-file limit to needed if the hard limit allows (a shell's soft limit is often 1024); else
    one WARNING: the connection cap cannot then keep the daemon from running out of files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    wanted = needed if hard == resource.RLIM_INFINITY or hard >= needed else hard
    try:  # the unit's system call filter refuses setrlimit: there LimitNOFILE is the limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    except (OSError, ValueError):
        pass
    if soft < needed:
        log.warning("HTTP: only %d open files allowed (LimitNOFILE), but [http] max_connections needs %d and more "
                    "for the trays' streams; lower max_connections or raise the limit", soft, needed)
