"""The web pages (docs/web.md): server-rendered HTML on the daemon's HTTP server, one CSS file, no JavaScript but the
card layout editor's own preview script; their templates, stylesheet and that script live in daemon/web/templates/
and daemon/web/static/.

customers.py (search, record, new caller, edit, numbers, photo), orders.py, calls.py, missed.py (missed calls followed
up), employees.py (admin: staff and tokens), admin.py (admin: custom fields, categories, card layouts and teams), signin.py (sign-in),
people.py (admin: people and sessions; everyone: their own account), recordings.py (a call's recording played, held
from deletion; the listen log);
base.py holds what they share. Templates are Jinja2 with autoescaping: every
customer-, caller- or user-supplied string is escaped on output.

Another blueprint builds on these pages the same way (the dashboard pages do):

    from flask import Blueprint
    from screenpop.daemon.web.pages import database, login_required, render_page

    bp = Blueprint("dashboard", __name__)

    @bp.get("/dashboard")
    @login_required("dashboard")       # a capability (daemon/auth/roles.py): others get a 403 page saying why
    def dashboard():
        figures = database(read_figures)   # runs on the database worker, in one transaction
        return render_page("dashboard.html", title=_("Dashboard"), figures=figures)

Its templates (in daemon/web/templates/) `{% extends "base.html" %}` and fill `{% block content %}`; a form that POSTs includes
`{{ csrf_field() }}` (every page POST without it is refused with 403). Register it in
daemon/web/server.py's create_app, after init_app.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Flask, redirect, request
from markupsafe import Markup

from screenpop.daemon import i18n
from screenpop.daemon.auth import roles
from screenpop.daemon.config import RecordingsConfig, WebConfig
from screenpop.daemon.push.layout import direction_word
from screenpop.daemon.web.pages import signin as auth, admin, calls, customers, employees, language, missed, orders, people, recordings
from screenpop.daemon.web.pages.base import (User, Web, category, check_csrf, csrf_field, current_user, database,
                                             choose_language, error_page, formats, login_required, render_page,
                                             security_headers, session_unavailable)
from screenpop.daemon.web.pages.base import EXTENSION as _EXTENSION, SESSION_UNAVAILABLE

__all__ = ["User", "current_user", "database", "error_page", "formats", "init_app", "login_required", "render_page"]


def changed_at(value: dt.datetime, now: dt.datetime | None = None) -> str:
    """When a change was made, as the audit lines say it, in the reader's locale and the call centre's zone: the time
    alone today ("14:02"), else with the day ("7. des. 2026, 14:02"). value: naive UTC as stored."""
    shown = formats()
    local = shown.local(value)
    today = (now or dt.datetime.now(dt.timezone.utc)).astimezone(shown.zone).date()
    return shown.clock(value) if local and local.date() == today else shown.datetime(value).rsplit(" ", 1)[0]


AUDIT_THINGS = {"customer": i18n.lazy_gettext("customer"), "phone": i18n.lazy_gettext("number"),
                "order": i18n.lazy_gettext("order"), "employee": i18n.lazy_gettext("employee"), "person": ""}
AUDIT_ACTIONS = {"added": i18n.lazy_gettext("added"), "changed": i18n.lazy_gettext("changed"),
                 "deleted": i18n.lazy_gettext("deleted"), "removed": i18n.lazy_gettext("removed"),
                 "closed": i18n.lazy_gettext("closed"), "paid": i18n.lazy_gettext("paid"),
                 "disabled": i18n.lazy_gettext("disabled"), "enabled": i18n.lazy_gettext("enabled"),
                 "password reset": i18n.lazy_gettext("password reset"),
                 "password changed": i18n.lazy_gettext("password changed")}


def audit_line(entry: Any) -> str:
    """One audit entry in words, in the reader's language: "number +3545551234 (office) added by Anna, 14:02"."""
    what = " ".join(p for p in (str(AUDIT_THINGS.get(entry.entity, entry.entity)), entry.detail) if p)
    return i18n.gettext("%(what)s %(action)s by %(who)s, %(when)s", what=what,
                        action=str(AUDIT_ACTIONS.get(entry.action, entry.action)), who=entry.actor,
                        when=changed_at(entry.at)).strip()


def _duration(seconds: float | None) -> str:
    """Talk time as m:ss (h:mm:ss past an hour)."""
    if seconds is None:
        return ""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def init_app(app: Flask, hub: Any, photos: Any, config: WebConfig, tls: bool,
             authenticate: Callable[[], Any], on_link: Callable[[int, str | None, str | None], None] | None = None,
             zone: dt.tzinfo = dt.timezone.utc, originator: Any = None, sources: Any = None,
             on_employees_changed: Callable[[], None] | None = None,
             recordings_config: RecordingsConfig | None = None, directory: Any = None) -> None:
    """Add the pages to the daemon's Flask app: sessions, CSRF, security headers, the blueprints.

    tls: the server speaks HTTPS (session cookies are then Secure); on_link(customer_id, e164, call_uuid) tells
    the daemon's call tracker when a number or call was given to a customer during a call; zone: the call
    centre's time zone, every time on every page is shown in it; originator places the Call buttons' calls; sources
    (daemon/sources/) give the record page the other systems' fields; on_employees_changed() tells the daemon an
    employee was added, changed or deleted (its snapshot follows); recordings_config: who may listen to recordings
    and the folders they are served from (docs/recordings.md); directory: the organisation's LDAP people sign in
    with (daemon/auth/directory.py), None when [ldap] is off.
    """
    app.extensions[_EXTENSION] = Web(hub, photos, config, on_link, zone, originator, sources, on_employees_changed,
                                     recordings_config or RecordingsConfig(), directory=directory)
    app.session_interface = auth.DatabaseKeySessions()
    app.config.update(
        SESSION_COOKIE_NAME="screenpop_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=tls,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=config.session_hours),
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)
    app.jinja_env.globals["csrf_field"] = csrf_field
    app.jinja_env.globals["category"] = category
    listen = (recordings_config or RecordingsConfig()).listen
    # whether a role may hear recordings at all, so read what was said in them (per call: web/recordings.py)
    app.jinja_env.globals["may_hear"] = lambda role: roles.allows(role, "recordings", listen)
    app.jinja_env.globals["language"] = i18n.language
    app.jinja_env.globals["language_menu"] = list(i18n.NAMES.items())
    app.jinja_env.globals["language_name"] = lambda code: i18n.NAMES.get(code, code)
    app.jinja_env.globals["role_name"] = lambda role: str(roles.NAMES.get(role, role))
    # the language menu posts with the session's CSRF field, so it is left out when no session could be opened
    app.jinja_env.globals["session_open"] = lambda: not request.environ.get(SESSION_UNAVAILABLE)
    app.jinja_env.globals["bdi"] = lambda text: Markup("<bdi>%s</bdi>") % text  # a caller's text inside a sentence, isolated
    # every time, amount and figure in the reader's language, in the call centre's zone (daemon/i18n.py)
    app.jinja_env.filters["when"] = lambda value: formats().datetime(value)
    app.jinja_env.filters["day"] = lambda value: formats().date(value)
    app.jinja_env.filters["clock"] = lambda value: formats().clock(value)
    app.jinja_env.filters["number"] = lambda value, decimals=None: formats().number(value, decimals)
    app.jinja_env.filters["duration"] = _duration
    app.jinja_env.filters["changed_at"] = changed_at
    app.jinja_env.filters["audit_line"] = audit_line
    app.jinja_env.filters["direction"] = direction_word  # INCOMING, OUTGOING, INTERNAL as the pop says them
    app.jinja_env.filters["currency"] = lambda amount: formats().money(amount)
    app.before_request(choose_language)
    app.teardown_request(lambda _exc: i18n.set_language(None))  # a reused greenlet (keep-alive) starts from the default
    app.before_request(session_unavailable)
    app.before_request(check_csrf)
    app.after_request(security_headers)
    app.register_blueprint(auth.blueprint(authenticate))
    for bp in (customers.bp, orders.bp, calls.bp, missed.bp, employees.bp, admin.bp, people.bp, recordings.bp, language.bp):
        app.register_blueprint(bp)
    app.add_url_rule("/", "home", login_required()(lambda: redirect("/customers", 303)))
