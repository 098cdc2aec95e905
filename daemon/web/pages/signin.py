"""Signing in to the pages: login and password on /signin, a tray's one-time link, or a typed token; signing out.

POST /signin with login and password signs a person in (daemon/auth/people.py): failures are counted per login and
per address, slowed down and, after [web] signin_lock_after in a row, lock the login for a while; the page says
which. POST /api/v1/signin-links (Bearer token, JSON {"next": "/customers/5"}) mints a link that works once within
[web] signin_link_seconds and opens a session for the person whose extension the token has (else for the token).
Only the link secret's hash is stored; it is spent by one conditional UPDATE (daemon/auth/signin.py), so it works
once even with several daemons on one database. Every sign-in and every refusal is one log line naming the login
or token id and the reason, never a password or secret.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import peewee
from flask import Blueprint, Flask, Response, jsonify, redirect, request
from gevent.threadpool import ThreadPool
from flask.sessions import SecureCookieSessionInterface

from screenpop.daemon.i18n import gettext as _
from screenpop.daemon.web.pages.base import (SESSION_UNAVAILABLE, database, end_session, formats, log, render_page, safe_next,
                                       start_session, web)
from screenpop.daemon.auth import people, signin


HASHING_THREADS = 2  # argon2id takes 64 MiB and tens of milliseconds each: a flood of sign-ins waits its turn


@functools.cache
def _hashing() -> ThreadPool:
    """The native threads that hash passwords, made on first use (on the running daemon's hub)."""
    return ThreadPool(HASHING_THREADS)


def off_loop(fn: Callable, *args: Any) -> Any:
    """fn(*args) on one of HASHING_THREADS native threads: password hashing is slow on purpose and must not stop the
    event loop, nor run many at once. fn must not raise (the pool would print the traceback): check the input first
    (people.check_password)."""
    return _hashing().apply(fn, args)


def password_signin(login: str, password: str, address: str) -> tuple[int, str, int] | people.Person:
    """Check a login and password against the throttle and the stored hash, or the directory for a login it signs in
    (no local person, or one from the directory; a local account always signs in locally): the person, or (status,
    message, seconds to wait before trying again; 0: no wait asked)."""
    config = web().config
    refusal = database(people.throttled, login, address, config)
    if refusal is not None:
        log.warning("web sign-in refused for login %r from %s: %s", login, address, refusal.message)
        if refusal.locked_until is None:
            return 429, refusal.message, refusal.wait
        return 403, _("%(why)s Try again after %(when)s, or ask an admin to unlock it.", why=refusal.message,
                      when=formats().clock(refusal.locked_until)), 0
    person = database(people.by_login, login)
    account = None
    if web().directory is not None and (person is None or person.source == people.DIRECTORY):
        from screenpop.daemon.auth import directory  # with ldap3 (0.2 s to import): only when [ldap] is on

        try:
            account = web().directory.check(login, password)
        except directory.DirectoryDown as exc:
            log.warning("web sign-in refused for login %r from %s: the directory does not answer (%s)", login, address, exc)
            return 503, _("The organisation's directory (LDAP) does not answer, so its accounts cannot sign in now. "
                          "Try again in a moment; local accounts still can."), 0
        matched, why = account is not None, "not in the directory or wrong password"
    else:
        matched = off_loop(people.password_matches, person.password_hash if person else None, password)
        why = "wrong password" if person else "no such login"
    if not matched:
        failures = database(people.failed, login, address, config)
        log.warning("web sign-in refused for login %r from %s: %s (%d failed in a row)", login, address, why, failures)
        if failures >= config.signin_lock_after:
            return 403, _("This account is locked after %(failures)s failed sign-ins in a row. Try again in %(minutes)s "
                          "minutes, or ask an admin to unlock it.", failures=failures,
                          minutes=formats().number(config.signin_lock_minutes)), 0
        return 403, _("Wrong login or password."), 0
    if person is not None and person.disabled_at is not None:
        log.warning("web sign-in refused for login %r from %s: the person is disabled", login, address)
        return 403, _("This account is disabled. Ask an admin if you need it again."), 0
    if account is not None:
        if account.role is None:
            ended = database(directory.refused, login)
            log.warning("web sign-in refused for login %r from %s: %s is in none of the [ldap] groups (%d session(s) "
                        "ended)", login, address, account.dn, ended)
            return 403, _("Your directory account is in none of screenpop's groups. Ask an admin to add you to one."), 0
        try:
            person = database(directory.adopt, login, account)
        except people.PeopleError as exc:
            log.warning("web sign-in refused for login %r from %s: the directory's values do not fit: %s", login,
                        address, exc.message)
            return exc.status, _("Your directory account cannot be used here: %(why)s", why=exc.message), 0
    database(people.succeeded, login)
    if account is None and people.needs_rehash(person.password_hash):
        database(people.replace_hash, person.id, off_loop(people.hash_password, password))
    return person


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
            return jsonify(error=_("request body larger than 8192 bytes")), 413
        try:
            body = request.get_json(silent=True) if request.mimetype == "application/json" else None
        except RecursionError:  # nested too deeply for the parser: not the object wanted either
            body = None
        if not isinstance(body, dict) or set(body) - {"next"}:
            return jsonify(error=_('the body must be a JSON object, optionally {"next": "/path"}')), 400
        next_path = safe_next(body.get("next", "/"), None)
        if next_path is None:
            log.warning("sign-in link refused for token %d: next is not a path on this site", check.token_id)
            return jsonify(error=_("next: must be a path on this site, starting with /")), 400
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
            return render_page("signin.html", status=403, title=_("Sign in"), next="/",
                               error=_("This sign-in link does not work any more (each link works once, for a minute). "
                                       "Open the page from the tray again, or sign in with a token."))
        token_id, next_path = result
        check = database(signin.token_state, token_id)
        if not check.ok:
            log.warning("web sign-in refused from %s: %s", request.remote_addr, check.reason)
            return render_page("signin.html", status=403, title=_("Sign in"), next="/", error=_("That token is no longer valid."))
        owner = database(people.owner_of_token, token_id)
        start_session(owner.id if owner else None, token_id)
        log.info("web sign-in: token %d (%s%s) from %s by one-time link, as %s", token_id, check.role,
                 f" {check.extension}" if check.extension else "", request.remote_addr,
                 f"{owner.login} (person {owner.id}, {owner.role})" if owner else "the token (no person has its extension)")
        return redirect(safe_next(next_path), 303)

    @bp.get("/signin")
    def form():
        return render_page("signin.html", title=_("Sign in"), next=safe_next(request.args.get("next")))

    @bp.post("/signin")
    def with_password():
        next_path = safe_next(request.form.get("next"))
        if "token" in request.form:
            return with_token(next_path)
        login = request.form.get("login", "").strip().lower()[:people.MAX_LOGIN]
        password = request.form.get("password", "")
        if not login or not password or len(password) > people.MAX_PASSWORD:
            return render_page("signin.html", status=400, title=_("Sign in"), next=next_path, login=login,
                               error=_("Type your login and your password."))
        if not set(login) <= people.LOGIN_CHARS:  # no such login can exist; nothing to count or look up
            return render_page("signin.html", status=400, title=_("Sign in"), next=next_path,
                               error=_("Logins are letters a-z, digits and . _ - @ only."))
        outcome = password_signin(login, password, request.remote_addr or "")
        if isinstance(outcome, tuple):
            status, message, wait = outcome
            response = render_page("signin.html", status=status, title=_("Sign in"), next=next_path, login=login,
                                   error=message)
            if wait:
                response.headers["Retry-After"] = str(wait)
            return response
        start_session(outcome.id, None)
        log.info("web sign-in: %s (person %d, %s) from %s with a password", outcome.login, outcome.id, outcome.role,
                 request.remote_addr)
        return redirect(next_path, 303)

    def with_token(next_path: str):
        clear = request.form.get("token", "").strip()
        check = web().hub.check_token(clear) if 0 < len(clear) <= 200 else None
        if check is None or not check.ok:
            log.warning("web sign-in refused from %s: %s", request.remote_addr, check.reason if check else "no token typed")
            return render_page("signin.html", status=403, title=_("Sign in"), next=next_path,
                               error=_("That token is not valid."))
        start_session(None, check.token_id)
        log.info("web sign-in: token %d (%s%s) from %s with a typed token", check.token_id, check.role,
                 f" {check.extension}" if check.extension else "", request.remote_addr)
        return redirect(next_path, 303)

    @bp.post("/signout")
    def signout():
        user = end_session()
        if user is not None:
            log.info("web sign-out: %s from %s", user.label, request.remote_addr)
        return redirect("/signin", 303)

    return bp
