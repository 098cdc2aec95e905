"""People and sessions (admin: the people capability), and each person's own account page (docs/accounts.md).

/people lists everyone and adds a person; /people/<id> changes their name, role, extension and language, resets
their password, disables, enables or unlocks them, and shows their audit trail; /sessions lists the live sign-ins
and ends any of them; /account lets a signed-in person change their own password and language. The rules for the
input and the rows are daemon/auth/people.py's; passwords are hashed off the event loop.
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, request

from screenpop.daemon.i18n import gettext as _, language, ngettext
from screenpop.daemon.auth import people, roles, signin
from screenpop.daemon.web.pages import forms
from screenpop.daemon.web.pages.base import (current_user, database, error_page, log, login_required, render_page,
                                             session_id, web)
from screenpop.daemon.web.pages.signin import off_loop
from screenpop.db import audit

bp = Blueprint("people", __name__)

PERSON_KEYS = ("login", "name", "role", "extension", "language")


def people_page(status: int = 200, error: str | None = None, values: dict | None = None):
    config, lang = web().config, language()

    def read():
        return people.listing(lang), people.locked(config)

    everyone, locked = database(read)
    return render_page("people.html", status=status, title=_("People"), people=everyone, locked=locked, error=error,
                       values=values or {}, roles=roles.ROLES, languages=people.LANGUAGES)


def person_page(person_id: int, status: int = 200, error: str | None = None):
    config = web().config

    def read():
        person = people.get(person_id)
        return person, people.locked(config).get(person.login), audit.for_entity("person", person_id)

    try:
        person, locked_until, history = database(read)
    except people.PeopleError as exc:
        return error_page(exc.status, exc.message)
    return render_page("person.html", status=status, title=person.name, p=person, locked_until=locked_until,
                       history=history, error=error, roles=roles.ROLES, languages=people.LANGUAGES)


def _not_yourself(person_id: int, refusal: str):
    """An admin cannot lock themselves out: no disabling or demoting their own account (another admin can)."""
    user = current_user()
    if user.person_id == person_id:
        return person_page(person_id, 409, refusal)
    return None


@bp.get("/people")
@login_required("people")
def listing():
    return people_page()


@bp.post("/people")
@login_required("people")
def create():
    values = forms.pick(PERSON_KEYS)
    try:
        fields = people.person_fields(values, creating=True)
        password_hash = off_loop(people.hash_password, people.check_password(request.form.get("password", "")))
        person = database(people.create, fields, password_hash)
    except people.PeopleError as exc:
        return people_page(exc.status, exc.message, values)
    log.info("person %d (%s, %s) added on the web by %s", person.id, person.login, person.role, current_user().label)
    flash(_("%(name)s can now sign in as %(login)s.", name=person.name, login=person.login))
    return redirect("/people", 303)


@bp.get("/people/<int:person_id>")
@login_required("people")
def person(person_id: int):
    return person_page(person_id)


@bp.post("/people/<int:person_id>")
@login_required("people")
def update(person_id: int):
    values = forms.pick(("name", "role", "extension", "language"))
    if values.get("role", "admin") != "admin" and (refused := _not_yourself(person_id, _("You cannot take the admin role from your own account; another admin can."))):
        return refused
    try:
        database(people.update, person_id, people.person_fields(values, creating=False))
    except people.PeopleError as exc:
        return person_page(person_id, exc.status, exc.message) if exc.status != 404 else error_page(404, exc.message)
    log.info("person %d changed on the web by %s", person_id, current_user().label)
    flash(_("Saved."))
    return redirect(f"/people/{person_id}", 303)


@bp.post("/people/<int:person_id>/password")
@login_required("people")
def reset_password(person_id: int):
    try:
        password_hash = off_loop(people.hash_password, people.check_password(request.form.get("password", "")))
        ended = database(people.set_password, person_id, password_hash, session_id())
    except people.PeopleError as exc:
        return person_page(person_id, exc.status, exc.message) if exc.status != 404 else error_page(404, exc.message)
    log.info("password of person %d reset on the web by %s; %d session(s) ended", person_id, current_user().label, ended)
    flash(ngettext("Password set; %(num)s session of theirs ended. Tell them the new password in person.",
                   "Password set; %(num)s sessions of theirs ended. Tell them the new password in person.", ended))
    return redirect(f"/people/{person_id}", 303)


def _switch(person_id: int, disabled: bool):
    if disabled and (refused := _not_yourself(person_id, _("You cannot disable your own account; another admin can."))):
        return refused
    try:
        changed = database(people.set_disabled, person_id, disabled)
    except people.PeopleError as exc:
        return person_page(person_id, exc.status, exc.message) if exc.status != 404 else error_page(404, exc.message)
    if changed:
        log.info("person %d %s on the web by %s", person_id, "disabled" if disabled else "enabled", current_user().label)
    flash(_("Disabled: they cannot sign in, and their sessions have ended.") if disabled else _("Enabled: they can sign in again."))
    return redirect(f"/people/{person_id}", 303)


@bp.post("/people/<int:person_id>/disable")
@login_required("people")
def disable(person_id: int):
    return _switch(person_id, True)


@bp.post("/people/<int:person_id>/enable")
@login_required("people")
def enable(person_id: int):
    return _switch(person_id, False)


@bp.post("/people/<int:person_id>/unlock")
@login_required("people")
def unlock(person_id: int):
    def work():
        person = people.get(person_id)
        return person.login, people.unlock(person.login)

    try:
        login, done = database(work)
    except people.PeopleError as exc:
        return error_page(exc.status, exc.message)
    if done:
        log.info("login %r unlocked on the web by %s", login, current_user().label)
    flash(_("Unlocked: they can try again now.") if done else _("They were not locked."))
    return redirect(f"/people/{person_id}", 303)


# ---- sessions ----------------------------------------------------------------------------------------


@bp.get("/sessions")
@login_required("people")
def sessions():
    return render_page("sessions.html", title=_("Sessions"), sessions=database(signin.live_sessions),
                       mine=current_user())


@bp.post("/sessions/<int:session_ref>/end")
@login_required("people")
def end(session_ref: int):
    if database(signin.end_session_id, session_ref):
        log.info("web session %d ended by %s", session_ref, current_user().label)
        flash(_("Session %(ref)s ended: that browser is signed out.", ref=session_ref))
    else:
        flash(_("Session %(ref)s had ended already.", ref=session_ref))
    return redirect("/sessions", 303)


# ---- one's own account -------------------------------------------------------------------------------


@bp.get("/account")
@login_required()
def account(status: int = 200, error: str | None = None):
    user = current_user()
    managed = user.person_id is not None and database(people.get, user.person_id).source == people.DIRECTORY
    return render_page("account.html", status=status, title=_("Your account"), error=error, languages=people.LANGUAGES,
                       managed=managed)


@bp.post("/account/password")
@login_required()
def change_password():
    user = current_user()
    if user.person_id is None:
        return account(409, _("You are signed in with a token; tokens have no password."))
    if database(people.get, user.person_id).source == people.DIRECTORY:
        return account(409, str(people.MANAGED_BY_DIRECTORY))
    current, new = request.form.get("current", ""), request.form.get("password", "")
    if new != request.form.get("again", ""):
        return account(400, _("The new password and its repetition differ; nothing changed."))
    config, address = web().config, request.remote_addr or ""
    refusal = database(people.throttled, user.login, address, config)
    if refusal is not None:
        return account(429, refusal.message)
    stored = database(lambda: people.get(user.person_id).password_hash)
    if len(current) > people.MAX_PASSWORD or not off_loop(people.password_matches, stored, current):
        database(people.failed, user.login, address, config)
        log.warning("password change refused for %s from %s: wrong current password", user.label, address)
        return account(403, _("That is not your current password; nothing changed."))
    try:
        password_hash = off_loop(people.hash_password, people.check_password(new))
    except people.PeopleError as exc:
        return account(exc.status, exc.message)
    ended = database(people.set_password, user.person_id, password_hash, session_id(), False)
    log.info("%s changed their password from %s; %d other session(s) ended", user.label, address, ended)
    flash(ngettext("Password changed. Your %(num)s other session was signed out.",
                   "Password changed. Your %(num)s other sessions were signed out.", ended) if ended else _("Password changed."))
    return redirect("/account", 303)


@bp.post("/account/language")
@login_required()
def change_language():
    user = current_user()
    if user.person_id is None:
        return account(409, _("You are signed in with a token; the language is a person's setting."))
    try:
        database(people.update, user.person_id, people.person_fields(forms.pick(("language",)), creating=False))
    except people.PeopleError as exc:
        return account(exc.status, exc.message)
    flash(_("Language saved."))
    return redirect("/account", 303)
