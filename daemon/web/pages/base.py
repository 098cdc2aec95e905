"""What every web page shares: the daemon's parts behind the pages, the signed-in user, CSRF, rendering.

A session is a signed cookie holding a session id and its CSRF secret; the database keeps the session (daemon/auth/signin.py:
its person or token, expiry, and whether it was signed out), so signing out ends it on every daemon, whoever kept
a copy of the cookie. Every page request re-reads the session, its person and its token, so a disabled person, a
revoked token or a changed role takes effect at once. What a role may do is daemon/auth/roles.py's alone.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Response, current_app, g, redirect, render_template, request, session
from markupsafe import Markup, escape

from screenpop.daemon.i18n import gettext as _
from screenpop.daemon import i18n
from screenpop.daemon.auth import roles, signin
from screenpop.daemon.config import RecordingsConfig, WebConfig
from screenpop.daemon.customers import fields as custom
from screenpop.db import audit
from screenpop.db.models import Employee, Person
from screenpop.db.numbers import NumberRules

log = logging.getLogger("screenpop.web")

EXTENSION = "screenpop.web"
SESSION_UNAVAILABLE = "screenpop.session_unavailable"
MAX_NEXT = 2000
LANGUAGE_COOKIE = "screenpop_language"  # a person's own choice of language (the language menu in the header)


@dataclass
class Web:
    """The daemon's parts the pages use: the hub (and through it the database worker), photos, settings, the call
    linker, the call centre's time zone, click-to-call, the hook that refreshes the daemon's employee snapshot, the
    recordings' settings, and the directory people may sign in with."""

    hub: Any
    photos: Any
    config: WebConfig
    on_link: Callable[[int, str | None, str | None], None] | None = None
    zone: dt.tzinfo = dt.timezone.utc
    originator: Any = None  # click-to-call (daemon/pbx/originate.py); None when this daemon does not follow FreeSWITCH
    sources: Any = None  # the other systems' fields on the record page (daemon/sources/fetch.py); None: none configured
    on_employees_changed: Callable[[], None] | None = None  # None: no employee snapshot here to refresh
    recordings: RecordingsConfig = field(default_factory=RecordingsConfig)  # who may listen, the folders served
    formats: dict[str, i18n.Formats] = field(default_factory=dict)  # per language, made on first use
    directory: Any = None  # the organisation's LDAP (daemon/auth/directory.py); None: [ldap] is off


@dataclass(frozen=True)
class User:
    """Who is signed in: a person (signed in with a password, or by their tray's link) or a token, with the role,
    extension and name the pages go by; language is the person's own choice (None: the browser's)."""

    person_id: int | None
    token_id: int | None
    role: str
    extension: str | None
    name: str
    login: str = ""
    language: str | None = None

    def can(self, capability: str) -> bool:
        """Whether this user's role allows capability (daemon/auth/roles.py)."""
        return roles.allows(self.role, capability)

    @property
    def actor(self) -> audit.Actor:
        """Who the audit trail names for this user's changes."""
        return audit.Actor(self.person_id, self.token_id)

    @property
    def label(self) -> str:
        """How logs name this user: the login, else the token id."""
        return f"{self.login} (person {self.person_id})" if self.person_id else f"token {self.token_id}"


def formats() -> i18n.Formats:
    """How this request's reader writes times, amounts and figures: their language's locale, the call centre's zone."""
    language = i18n.language()
    cache = web().formats
    if language not in cache:
        cache[language] = i18n.Formats.for_language(language, web().hub.cards.layout.formats.config, web().zone)
    return cache[language]


def choose_language() -> None:
    """Before every request: speak the signed-in person's language if they set one (their account), else the one
    chosen in this browser's language menu, else the browser's first that we have (Accept-Language), else the
    organisation's ([i18n] default_language). The API speaks its caller's Accept-Language."""
    own = None
    if not request.path.startswith(("/api/", "/static/")) and session.get("sid"):
        user = current_user()
        own = user.language if user else None
    i18n.set_language(i18n.best(own, request.cookies.get(LANGUAGE_COOKIE))
                      or i18n.from_accept_language(request.accept_languages))


def web() -> Web:
    return current_app.extensions[EXTENSION]


def database(fn: Callable, *args: Any) -> Any:
    """fn(*args) in one transaction on the database worker (db/worker.py: its own greenlet and connection), its result
    returned; the signed-in user (if any) is the one the audit trail names for its changes."""
    user = g.get("user")
    return web().hub.worker.atomic(audit.acting(user.actor if user else None, fn), *args)


def number_rules() -> NumberRules:
    return web().hub.cards.lookup().rules


def categories() -> list[custom.Category]:
    """The category list (daemon/customers/fields.py), read once per request: the selects and badges of a page."""
    if "categories" not in g:
        g.categories = database(custom.load_categories, web().hub.db)
    return g.categories


def category(name: str | None) -> custom.Category | None:
    """The list's entry for a customer's category, or None when the list has no such name (templates' badges)."""
    return next((c for c in categories() if c.name == name), None)


def field_defs(entity: str) -> list[custom.Field]:
    """The custom fields defined on customers or orders, for a page's forms and record."""
    return database(custom.load_fields, web().hub.db, entity)


# ---- sessions ----------------------------------------------------------------------------------------


def start_session(person_id: int | None, token_id: int | None) -> None:
    """Sign in as a person or a token: a fresh session (new id, new CSRF secret) that ends after [web] session_hours."""
    sid = database(signin.open_session, person_id, token_id, int(web().config.session_hours * 3600),
                   request.remote_addr or "")
    session.clear()
    session.permanent = True
    session["sid"] = sid
    session["csrf"] = secrets.token_urlsafe(32)


def end_session() -> User | None:
    """Sign out: the session ended in the database (for every daemon) and the cookie cleared; who it was, if anyone."""
    sid, user = session.get("sid"), current_user()
    session.clear()
    if isinstance(sid, str):
        database(signin.end_session, sid)
    return user


def session_id() -> str | None:
    """This browser's session id (to keep it when the person changes their own password)."""
    sid = session.get("sid")
    return sid if isinstance(sid, str) else None


def _read_user(sid: str) -> User | str:
    """The user of a live session, as their person and token are now; else why there is none (a database step)."""
    owner = signin.session_owner(sid)
    if isinstance(owner, str):
        return owner
    person_id, token_id = owner
    check = signin.token_state(token_id) if token_id is not None else None
    if check is not None and not check.ok:
        return check.reason
    if person_id is not None:
        person = Person.get_or_none(Person.id == person_id)
        if person is None or person.disabled_at is not None:
            return f"person {person_id} is {'disabled' if person else 'deleted'}"
        return User(person.id, token_id, person.role, person.extension, person.name, person.login, person.language)
    emp = Employee.get_or_none(Employee.extension == check.extension) if check.extension else None
    return User(None, token_id, check.role, check.extension, emp.name if emp else "")


def _load_user() -> User | None:
    sid = session.get("sid")
    if not isinstance(sid, str) or len(sid) > 100:
        return None
    user = database(_read_user, sid)
    if isinstance(user, str):
        log.log(logging.INFO if "session" in user else logging.WARNING, "web session refused for %s: %s",
                request.remote_addr, user)
        session.clear()
        return None
    return user


def current_user() -> User | None:
    """The signed-in user of this request (read once per request), or None."""
    if "user" not in g:
        g.user = None  # stays None if reading fails, so the error page itself does not try again
        g.user = _load_user()
    return g.user


def login_required(capability: str | None = None) -> Callable:
    """Decorator for a page view: no session redirects to /signin (and back afterwards); a capability the user's
    role does not allow (daemon/auth/roles.py) gives a 403 page that says why.

    The dashboard pages (another blueprint) use it like every page here:

        @bp.get("/dashboard")
        @login_required("dashboard")
        def dashboard(): return render_page("dashboard.html", title=_("Dashboard"), figures=database(figures))
    """
    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return redirect("/signin?next=" + quote(request.full_path.rstrip("?"), safe="/"), 303)
            if capability is not None and not user.can(capability):
                log.warning("403 for %s %s: %s is %s, %s needs %s", request.method, request.path, user.label,
                            user.role, capability, roles.NEEDS[capability])
                return error_page(403, roles.refusal(user.role, capability))
            return view(*args, **kwargs)
        return inner
    return wrap


def safe_next(value: Any, default: str | None = "/") -> str | None:
    """value if it is a path on this site ("/customers/5?x=1"), else default: never another host or scheme."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > MAX_NEXT:
        return default
    if any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


# ---- CSRF --------------------------------------------------------------------------------------------


def csrf_token() -> str:
    """This session's CSRF secret (made on first use, also for the sign-in form before anyone is signed in)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_field() -> Markup:
    """The hidden input every POST form carries."""
    return Markup(f'<input type="hidden" name="csrf" value="{escape(csrf_token())}">')


def session_unavailable() -> Response | None:
    """Before every page request: no session could be opened (the database is down), so answer 503 at once."""
    if request.environ.get(SESSION_UNAVAILABLE):
        response = error_page(503, _("The database does not answer; try again in a moment."))
        response.headers["Retry-After"] = "2"
        return response
    return None


def check_csrf() -> Response | None:
    """Before every page POST: the form's csrf must equal the session's, else 403 and nothing happens."""
    if request.method != "POST" or request.path.startswith("/api/"):
        return None
    sent = request.form.get("csrf", "")
    expected = session.get("csrf")
    if isinstance(expected, str) and sent and secrets.compare_digest(sent.encode("utf-8", "replace"), expected.encode()):
        return None
    log.warning("403 for POST %s from %s: missing or wrong CSRF token", request.path, request.remote_addr)
    return error_page(403, _("This form has expired or did not come from this site. Go back, reload the page and try again."))


# ---- rendering ---------------------------------------------------------------------------------------


def render_page(template: str, status: int = 200, **context: Any) -> Response:
    """A template extending base.html, with the user, the nav bar and the CSRF field available; autoescaped."""
    html = render_template(template, user=current_user(), **context)
    return Response(html, status, mimetype="text/html")


def error_page(status: int, message: i18n.Message, **context: Any) -> Response:
    """An HTML error page with the status."""
    return render_page("error.html", status=status, title=f"{status}", message=message, status_code=status, **context)


# no scripts, no framing; the card layout editor alone adds its own script (pages/admin.py)
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; media-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def security_headers(response: Response) -> Response:
    """Pages: no scripts from anywhere, no framing, no caching of customer data, no referrer (links carry secrets)."""
    if not request.path.startswith("/api/"):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
    return response
