"""Signing in to the pages: a tray's one-time link, or a token typed into /signin; signing out.

POST /api/v1/signin-links (Bearer token, JSON {"next": "/customers/5"}) mints a link that works once within
[web] signin_link_seconds and opens a session for that token. Only the link secret's hash is stored; it is
spent by one conditional UPDATE (daemon/auth/signin.py), so it works once even with several daemons on one database.
Every sign-in and every refusal is one log line naming the token id or the reason, never a secret.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee
from flask import Blueprint, Flask, Response, jsonify, redirect, request
from flask.sessions import SecureCookieSessionInterface

from screenpop.daemon.web.pages.base import (SESSION_UNAVAILABLE, database, end_session, log, render_page, safe_next,
                                       start_session, web)
from screenpop.daemon.auth import signin


class DatabaseKeySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing key read from the database on first use (daemon/auth/signin.py).

    The API (Bearer tokens) gets no session and never waits for the key. A page request that cannot read the
    key (database down) gets an empty session and the mark that base.session_unavailable turns into a 503.
    """

    def open_session(self, app: Flask, request):
        if request.path.startswith("/api/"):
            return self.make_null_session(app)
        if not app.secret_key:
            try:
                app.secret_key = database(signin.session_key)
            except peewee.DatabaseError as exc:
                log.warning("%s %s from %s: cannot read the session key (%s)", request.method, request.path,
                            request.remote_addr, exc)
                request.environ[SESSION_UNAVAILABLE] = True
                return self.make_null_session(app)
        return super().open_session(app, request)


def blueprint(authenticate: Callable[[], Any]) -> Blueprint:
    """Sign-in routes, and the pages' templates and static files; authenticate is the server's Bearer check."""
    bp = Blueprint("auth", __name__, template_folder="../templates", static_folder="../static", static_url_path="/static")

    @bp.post("/api/v1/signin-links")
    def mint():
        check = authenticate()
        if isinstance(check, Response):
            return check
        if request.content_length and request.content_length > 8192:
            return jsonify(error="request body larger than 8192 bytes"), 413
        try:
            body = request.get_json(silent=True) if request.mimetype == "application/json" else None
        except RecursionError:  # nested too deeply for the parser: not the object wanted either
            body = None
        if not isinstance(body, dict) or set(body) - {"next"}:
            return jsonify(error='the body must be a JSON object, optionally {"next": "/path"}'), 400
        next_path = safe_next(body.get("next", "/"), None)
        if next_path is None:
            log.warning("sign-in link refused for token %d: next is not a path on this site", check.token_id)
            return jsonify(error="next: must be a path on this site, starting with /"), 400
        seconds = web().config.signin_link_seconds
        secret = database(signin.mint, check.token_id, next_path, seconds)
        base = web().hub.cards.base or request.host_url.rstrip("/")
        log.info("sign-in link minted for token %d from %s", check.token_id, request.remote_addr)
        return jsonify(url=f"{base}/signin/{secret}", expires_in=seconds), 201

    @bp.get("/signin/<secret>")
    def by_link(secret: str):
        result = database(signin.spend, secret) if len(secret) <= 100 else "unknown link"
        if isinstance(result, str):
            log.warning("web sign-in refused from %s: %s", request.remote_addr, result)
            return render_page("signin.html", status=403, title="Sign in", next="/",
                               error="This sign-in link does not work any more (each link works once, for a minute). "
                                     "Open the page from the tray again, or sign in with a token.")
        token_id, next_path = result
        check = database(signin.token_state, token_id)
        if not check.ok:
            log.warning("web sign-in refused from %s: %s", request.remote_addr, check.reason)
            return render_page("signin.html", status=403, title="Sign in", next="/", error="That token is no longer valid.")
        start_session(token_id)
        log.info("web sign-in: token %d (%s%s) from %s by one-time link", token_id, check.role,
                 f" {check.extension}" if check.extension else "", request.remote_addr)
        return redirect(safe_next(next_path), 303)

    @bp.get("/signin")
    def form():
        return render_page("signin.html", title="Sign in", next=safe_next(request.args.get("next")))

    @bp.post("/signin")
    def with_token():
        next_path = safe_next(request.form.get("next"))
        clear = request.form.get("token", "").strip()
        check = web().hub.check_token(clear) if 0 < len(clear) <= 200 else None
        if check is None or not check.ok:
            log.warning("web sign-in refused from %s: %s", request.remote_addr, check.reason if check else "no token typed")
            return render_page("signin.html", status=403, title="Sign in", next=next_path,
                               error="That token is not valid.")
        start_session(check.token_id)
        log.info("web sign-in: token %d (%s%s) from %s with a typed token", check.token_id, check.role,
                 f" {check.extension}" if check.extension else "", request.remote_addr)
        return redirect(next_path, 303)

    @bp.post("/signout")
    def signout():
        token_id = end_session()
        if token_id is not None:
            log.info("web sign-out: token %d from %s", token_id, request.remote_addr)
        return redirect("/signin", 303)

    return bp
