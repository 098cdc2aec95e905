"""/missed: the team's missed calls followed up (daemon/reports/missed.py), by state, filterable by extension and days;
each row with the record (or new-customer) link, Call back, Mark done / Undo, and who returned or marked it when.

A manager or admin sees the team's list, an operator the missed calls that rang their own extension; Mark done and
Undo follow the API's rule: an operator acts on the missed calls that rang their own extension, a manager or admin
on any (daemon/auth/roles.py).
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, request

from screenpop.daemon.i18n import gettext as _, lazy_gettext
from screenpop.daemon.auth import roles
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.reports import missed as missed_calls
from screenpop.daemon.web.pages import forms
from screenpop.daemon.web.pages.base import current_user, database, login_required, render_page, safe_next, web

PER_PAGE = 50
LABELS = {"open": lazy_gettext("Not returned"), "returned": lazy_gettext("Returned"), "done": lazy_gettext("Done"),
          "anonymous": lazy_gettext("Withheld")}

bp = Blueprint("missed", __name__)


@bp.get("/missed")
@login_required()
def missed():
    state = request.args.get("state", "open")
    page = forms.page()
    extension = request.args.get("extension", "").strip()
    try:
        if state not in missed_calls.STATES:
            raise DataError(400, lazy_gettext("state: one of %(states)s", states=', '.join(missed_calls.STATES)))
        if len(extension) > 32 or any(not c.isalnum() for c in extension):
            raise DataError(400, lazy_gettext("extension: letters and digits, at most 32"))
        user = current_user()
        if not user.can("team_calls"):
            if extension and extension != user.extension:
                raise DataError(403, roles.refusal(user.role, "team_calls"))
            extension = user.extension or ""
        since, until = forms.days(web().zone)
    except DataError as exc:
        return render_page("missed.html", status=exc.status, title=_("Missed calls"), error=exc.message, rows=[], counts={},
                           state="open", labels=LABELS, args=request.args, page=1, more=False, zone=str(web().zone))
    scope = missed_calls.Scope(since, until, extension or None)

    def read() -> tuple[dict, list[dict]]:
        return missed_calls.counts(scope), missed_calls.listing(state, scope, PER_PAGE + 1, (page - 1) * PER_PAGE)

    counts, rows = database(read)
    return render_page("missed.html", title=_("Missed calls"), rows=rows[:PER_PAGE], more=len(rows) > PER_PAGE, page=page,
                       counts=counts, state=state, labels=LABELS, args=request.args, zone=str(web().zone))


def _act(call_uuid: str, done: bool):
    """Mark done (or undo) from a row's button; the outcome in words as the flash message, back to the list."""
    back = safe_next(request.form.get("next"), "/missed")
    uuid = forms.call_uuid(call_uuid)
    user = current_user()
    own = None if user.can("team_calls") else user.extension
    try:
        if uuid is None:
            raise missed_calls.FollowUpError(404, lazy_gettext("there is no call with this uuid"))
        if done:
            database(missed_calls.mark_done, uuid, own, user.extension, user.token_id)
        else:
            database(missed_calls.undo, uuid, own)
    except missed_calls.FollowUpError as exc:
        flash(_("Not changed: %(reason)s.", reason=exc.message))
    else:
        flash(_("Marked done.") if done else _("Done mark taken back: the call is to be returned again."))
    return redirect(back, 303)


@bp.post("/missed/<call_uuid>/done")
@login_required()
def mark_done(call_uuid: str):
    return _act(call_uuid, True)


@bp.post("/missed/<call_uuid>/undo")
@login_required()
def undo(call_uuid: str):
    return _act(call_uuid, False)
