"""The call list with filters: date range, extension, direction, missed only, customer (daemon/reports/callrecords.py);
an operator sees their own extension's calls, a manager or admin everyone's."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, request

from screenpop.daemon.i18n import gettext as _, lazy_gettext
from screenpop.daemon.auth import roles
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.reports.callrecords import calls_query, records
from screenpop.daemon.web import recordings
from screenpop.daemon.web.pages import forms
from screenpop.daemon.pbx.originate import OriginateError
from screenpop.daemon.web.pages.base import current_user, database, login_required, render_page, safe_next, web
from screenpop.db.models import DIRECTIONS, Customer, Employee

PER_PAGE = 50

bp = Blueprint("calls", __name__)


def _filters() -> dict:
    since, until = forms.days(web().zone)  # the days are the call centre's, as every time the pages show
    extension = request.args.get("extension", "").strip()
    if len(extension) > 32:
        raise DataError(400, lazy_gettext("extension: at most 32 characters"))
    user = current_user()
    if not user.can("team_calls"):  # an operator sees their own extension's calls (daemon/auth/roles.py)
        if extension and extension != user.extension:
            raise DataError(403, roles.refusal(user.role, "team_calls"))
        extension = user.extension or ""
    direction = request.args.get("direction", "").strip().upper()
    if direction and direction not in DIRECTIONS:
        raise DataError(400, lazy_gettext("direction: one of %(directions)s", directions=', '.join(DIRECTIONS)))
    customer = request.args.get("customer", "").strip()
    if customer and not (customer.isascii() and customer.isdigit() and len(customer) <= 9):
        raise DataError(400, lazy_gettext("customer: a customer number"))
    return {
        "since": since,
        "until": until,
        "extension": extension or None,
        "direction": direction or None,
        "missed": True if request.args.get("missed") else None,
        "customer_id": int(customer) if customer else None,
    }


@bp.get("/calls")
@login_required()
def calls():
    page = forms.page()
    try:
        filters = _filters()
    except DataError as exc:
        return render_page("calls.html", status=exc.status, title=_("Calls"), error=exc.message, calls=[], page=1, more=False,
                           args=request.args, directions=DIRECTIONS, operators={}, customer=None, playable={})
    user, listen = current_user(), web().recordings.listen

    def work():
        rows = list(calls_query(**filters).limit(PER_PAGE + 1).offset((page - 1) * PER_PAGE))
        customer = Customer.get_or_none(Customer.id == filters["customer_id"]) if filters["customer_id"] else None
        shown = rows[:PER_PAGE]
        # "unknown: add" only where there is a number to add: a withheld or unstorable one has no stored form
        calls = [{**record, "addable": bool(row.external_e164)} for record, row in zip(records(shown), shown)]
        playable = recordings.playable([row.uuid for row in shown], listen, user.role, user.extension)
        return (calls, len(rows) > PER_PAGE, customer, dict(Employee.select(Employee.extension, Employee.name).tuples()),
                playable)

    rows, more, customer, operators, playable = database(work)
    return render_page("calls.html", title=_("Calls"), calls=rows, page=page, more=more, args=request.args,
                       directions=DIRECTIONS, operators=operators, customer=customer, playable=playable)


@bp.post("/call")
@login_required()
def call():
    """A Call button: the signed-in operator's phone rings, then FreeSWITCH dials the number (the API's rules and rate
    limit, docs/originate.md); FreeSWITCH's answer, in words, is the flash message on the page the button was on."""
    back = safe_next(request.form.get("next"), "/calls")
    number = request.form.get("number", "")
    originator = web().originator
    if originator is None:
        flash(_("This daemon does not follow FreeSWITCH: the call cannot be placed here."))
        return redirect(back, 303)
    user = current_user()
    try:
        originator.place(user.token_id or ("person", user.person_id), user.can("team_calls"), user.extension, None, number)
    except OriginateError as exc:
        flash(_("Not called: %(reason)s.", reason=exc.message))
    else:
        flash(_("Your phone answered: dialling %(number)s.", number=number.strip()))
    return redirect(back, 303)
