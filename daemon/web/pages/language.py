"""The language menu in every page's header (docs/i18n.md): POST /language keeps the choice in a cookie for a year, so
it wins over the browser's Accept-Language on every page after, and a signed-in person's account keeps it too (their
setting, which wins everywhere they sign in); the page they were on comes back."""
from __future__ import annotations

from flask import Blueprint, redirect, request

from screenpop.daemon import i18n
from screenpop.daemon.auth import people
from screenpop.daemon.web.pages.base import LANGUAGE_COOKIE, current_user, database, error_page, log, safe_next

bp = Blueprint("language", __name__)


@bp.post("/language")
def choose():
    chosen = i18n.best(request.form.get("language", ""))
    if chosen is None:
        return error_page(400, i18n.gettext("There is no such language here."))
    user = current_user()
    if user is not None and user.person_id is not None and user.language != chosen:
        database(people.update, user.person_id, people.person_fields({"language": chosen}, creating=False))
        log.info("%s chose the language %s from %s", user.label, chosen, request.remote_addr)
    response = redirect(safe_next(request.form.get("next")), 303)
    response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600, httponly=True, samesite="Lax",
                        secure=request.is_secure)
    return response
