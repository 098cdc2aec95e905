"""Recordings on the pages (docs/recordings.md): a call's recording played in the browser (byte ranges, so the player
seeks), a call held from deletion or released, and the admins' log of who listened to which call."""
from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, request

from screenpop.daemon.i18n import gettext as _, lazy_gettext, ngettext
from screenpop.daemon.auth import roles
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.web import recordings
from screenpop.daemon.web.pages import forms
from screenpop.daemon.web.pages.base import current_user, database, error_page, login_required, render_page, safe_next, web

bp = Blueprint("recordings", __name__)
PER_PAGE = 100


@bp.get("/calls/<call_uuid>/recordings/<int:rec_id>")
@login_required()
def play(call_uuid: str, rec_id: int) -> Response:
    """The audio of one recording, for the pages' players; each listen from the start is logged."""
    user = current_user()
    try:
        rec, extensions = database(recordings.find, forms.known_call_uuid(call_uuid), rec_id)
        if rec is None:
            raise DataError(404, lazy_gettext("Call %(call)s has no recording %(id)s.", call=call_uuid, id=rec_id))
        if not recordings.may_listen(web().recordings.listen, user.role, user.extension, extensions):
            raise DataError(403, lazy_gettext("You may not listen to this call's recordings."))
        return recordings.audio(
            rec, web().recordings.served_roots(), request.headers.get("Range"), request.headers.get("If-Range"),
            database, lambda: database(recordings.log_listen, rec.id, rec.call_uuid, user.token_id,
                                       f"{user.name} ({user.label})" if user.name else user.label, user.role))
    except DataError as exc:
        return error_page(exc.status, exc.message)


@bp.post("/calls/<call_uuid>/hold")
@login_required()
def hold(call_uuid: str) -> Response:
    """Hold a call's recordings from deletion (keep=1) or release them (keep=0) (roles.py: hold_recordings)."""
    back = safe_next(request.form.get("next"), "/calls")
    user = current_user()
    if not user.can("hold_recordings"):
        return error_page(403, roles.refusal(user.role, "hold_recordings"))
    keep = request.form.get("keep") == "1"
    try:
        count = database(recordings.hold, forms.known_call_uuid(call_uuid), keep)
    except DataError as exc:
        return error_page(exc.status, exc.message)
    flash(ngettext("%(num)s recording of this call held from deletion.", "%(num)s recordings of this call held from deletion.", count)
          if keep else ngettext("%(num)s recording of this call released: deleted with age again.",
                                "%(num)s recordings of this call released: deleted with age again.", count))
    return redirect(back, 303)


@bp.get("/admin/listens")
@login_required("listen_log")
def listens() -> Response:
    """Who listened to which call's recording, and when, newest first."""
    page = forms.page()
    rows = database(recordings.listens, PER_PAGE + 1, (page - 1) * PER_PAGE)
    return render_page("listens.html", title=_("Recording listens"), rows=rows[:PER_PAGE], page=page,
                       more=len(rows) > PER_PAGE)
