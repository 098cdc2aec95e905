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
        return render_page("dashboard.html", title="Dashboard", figures=figures)

Its templates (in daemon/web/templates/) `{% extends "base.html" %}` and fill `{% block content %}`; a form that POSTs includes
`{{ csrf_field() }}` (every page POST without it is refused with 403). Register it in
daemon/web/server.py's create_app, after init_app.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Flask, redirect

from screenpop.daemon.auth import roles
from screenpop.daemon.config import RecordingsConfig, WebConfig
from screenpop.daemon.web.pages import signin as auth, admin, calls, customers, employees, missed, orders, people, recordings
from screenpop.daemon.web.pages.base import (User, Web, category, check_csrf, csrf_field, current_user, database,
                                             error_page, login_required, render_page, security_headers,
                                             session_unavailable)
from screenpop.daemon.web.pages.base import EXTENSION as _EXTENSION

__all__ = ["User", "current_user", "database", "error_page", "init_app", "local_time", "login_required", "render_page"]


def local_time(value: str | dt.datetime | None, zone: dt.tzinfo) -> str:
    """A time as every page shows it: in the call centre's zone ([analytics] timezone), the zone named
    ("2026-01-31 08:05 GMT"). value: naive UTC as stored, ISO text, or an aware time."""
    if not value:
        return ""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    local = (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def changed_at(value: dt.datetime, zone: dt.tzinfo, now: dt.datetime | None = None) -> str:
    """When a change was made, as the audit lines say it: "14:02" today, "2026-12-05 14:02" before, in the
    call centre's zone. value: naive UTC as stored."""
    local = value.replace(tzinfo=dt.timezone.utc).astimezone(zone)
    today = (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone).date()
    return f"{local:%H:%M}" if local.date() == today else f"{local:%Y-%m-%d %H:%M}"


AUDIT_THINGS = {"customer": "customer", "phone": "number", "order": "order", "person": "person"}


def audit_line(entry: Any, zone: dt.tzinfo) -> str:
    """One audit entry in words: "number +3545551234 (office) added by Anna, 14:02"."""
    what = f"{AUDIT_THINGS.get(entry.entity, entry.entity)} {entry.detail}".strip() if entry.entity != "person" else entry.detail
    return f"{what} {entry.action} by {entry.actor}, {changed_at(entry.at, zone)}".strip()


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
             recordings_config: RecordingsConfig | None = None) -> None:
    """Add the pages to the daemon's Flask app: sessions, CSRF, security headers, the blueprints.

    tls: the server speaks HTTPS (session cookies are then Secure); on_link(customer_id, e164, call_uuid) tells
    the daemon's call tracker when a number or call was given to a customer during a call; zone: the call
    centre's time zone, every time on every page is shown in it; originator places the Call buttons' calls; sources
    (daemon/sources/) give the record page the other systems' fields; on_employees_changed() tells the daemon an
    employee was added, changed or deleted (its snapshot follows); recordings_config: who may listen to recordings
    and the folders they are served from (docs/recordings.md).
    """
    app.extensions[_EXTENSION] = Web(hub, photos, config, on_link, zone, originator, sources, on_employees_changed,
                                     recordings_config or RecordingsConfig())
    app.session_interface = auth.DatabaseKeySessions()
    app.config.update(
        SESSION_COOKIE_NAME="screenpop_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=tls,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=config.session_hours),
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.jinja_env.globals["csrf_field"] = csrf_field
    app.jinja_env.globals["category"] = category
    listen = (recordings_config or RecordingsConfig()).listen
    # whether a role may hear recordings at all, so read what was said in them (per call: web/recordings.py)
    app.jinja_env.globals["may_hear"] = lambda role: roles.allows(role, "recordings", listen)
    app.jinja_env.filters["when"] = lambda value: local_time(value, zone)
    app.jinja_env.filters["duration"] = _duration
    app.jinja_env.filters["changed_at"] = lambda value: changed_at(value, zone)
    app.jinja_env.filters["audit_line"] = lambda entry: audit_line(entry, zone)
    app.jinja_env.filters["currency"] = hub.cards.layout.money  # amounts as the pop writes them ([card])
    app.before_request(session_unavailable)
    app.before_request(check_csrf)
    app.after_request(security_headers)
    app.register_blueprint(auth.blueprint(authenticate))
    for bp in (customers.bp, orders.bp, calls.bp, missed.bp, employees.bp, admin.bp, people.bp, recordings.bp):
        app.register_blueprint(bp)
    app.add_url_rule("/", "home", login_required()(lambda: redirect("/customers", 303)))
