"""What the recordings tell (docs/analysis.md): a call's conversation page (its figures per side, its transcript
beside the player: a click on a line plays from there), transcript search and CSV export, the admin's phrase
alerts, and the analysis worker's progress as JSON (/api/v1/analysis)."""
from __future__ import annotations

import io
from urllib.parse import quote
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, flash, jsonify, redirect, request

from screenpop.daemon.i18n import gettext as _, lazy_gettext
from screenpop.daemon.analysis import store
from screenpop.daemon.auth import roles
from screenpop.daemon.auth.tokens import TokenCheck
from screenpop.daemon.reports.export import write_csv
from screenpop.daemon.web import recordings
from screenpop.daemon.web.pages.base import CSP, current_user, database, error_page, login_required, render_page, web
from screenpop.db.models import Call, Customer, Employee, PhraseAlert

MAX_QUERY = 200
MAX_CSV_LINES = 200_000


def _search_args() -> tuple[str, str]:
    """q and side from the URL: q at most MAX_QUERY characters on one line, side customer, operator or empty."""
    q = " ".join(request.args.get("q", "").split())
    side = request.args.get("side", "")
    if len(q) > MAX_QUERY:
        raise ValueError(lazy_gettext("q: at most %(max)s characters", max=MAX_QUERY))
    if side not in ("", *store.SIDES):
        raise ValueError(lazy_gettext("side: customer, operator or empty (either)"))
    return q, side


def _call_page(call_id: int, who: Who) -> dict[str, Any] | None:
    call = Call.get_or_none(Call.id == call_id)
    if call is None:
        return None
    customer = Customer.get_or_none(Customer.id == call.customer_id) if call.customer_id else None
    employee = Employee.get_or_none(Employee.id == call.employee_id) if call.employee_id else None
    matches = store.recent_matches(limit=1000, call_uuid=call.uuid)
    return {"call": call, "customer": customer, "employee": employee, "recordings": store.call_analysis(call.uuid),
            "matches": matches, "hear": _hears(call.uuid, who)}


def _deaf() -> Response | None:
    """A 403 page for a user who may not hear recordings, so may not read what was said in them either."""
    user = current_user()
    if user is not None and current_app.jinja_env.globals["may_hear"](user.role):
        return None
    return error_page(403, _("Recordings and their transcripts are for the roles [recordings] listen names."))


Who = tuple[str, str, "str | None"]  # [recordings] listen, the user's role and extension


def _who() -> Who:
    """What the recordings' rule needs to know of the signed-in user, read in the request (steps run elsewhere)."""
    user = current_user()
    return web().recordings.listen, user.role if user else "", user.extension if user else None


def _hears(call_uuid: str, who: Who) -> bool:
    """Whether the user may hear this call's recordings, so read its transcript (database step; the rule is the
    recordings' own: daemon/web/recordings.py)."""
    return recordings.may_listen(*who, recordings.call_extensions(call_uuid))


def _heard_lines(q: str, side: str, limit: int, who: Who) -> list[dict[str, Any]]:
    """The search's lines of the calls this user may hear (database step)."""
    heard: dict[str, bool] = {}
    rows = store.search(q, side, limit)
    return [r for r in rows if heard.setdefault(r["call_uuid"], _hears(r["call_uuid"], who))]


def audio_url(call_uuid: str, recording_id: int) -> str:
    """Where the player streams a recording from (the recordings' own endpoint, with ranges and the listen log)."""
    return f"/calls/{quote(call_uuid, safe='')}/recordings/{recording_id}"


def blueprint(authenticate: Callable[[], TokenCheck | Response], status: Callable[[], dict] | None) -> Blueprint:
    """The pages and the progress endpoint; status: the worker's progress, None when analysis is off."""
    bp = Blueprint("conversation", __name__)

    @bp.get("/calls/<int:call_id>/conversation")
    @login_required()
    def call_conversation(call_id: int):
        data = database(_call_page, call_id, _who())
        if data is None:
            return error_page(404, _("There is no such call."))
        response = render_page("conversation.html", title=_("Conversation"), audio_url=audio_url, **data)
        response.headers["Content-Security-Policy"] = CSP + "; script-src 'self'; media-src 'self'"
        return response

    @bp.get("/transcripts")
    @login_required()
    def transcripts():
        if (refused := _deaf()) is not None:
            return refused
        try:
            q, side = _search_args()
        except ValueError as exc:
            return render_page("transcripts.html", status=400, title=_("Transcripts"), error=str(exc), rows=[], q="",
                               side="")
        rows = database(_heard_lines, q, side, store.SEARCH_LIMIT, _who()) if q else []
        return render_page("transcripts.html", title=_("Transcripts"), rows=rows, q=q, side=side,
                           limit=store.SEARCH_LIMIT)

    @bp.get("/transcripts.csv")
    @login_required()
    def transcripts_csv():
        """One call's transcript (call=<id>), the lines a search finds (q, side), or, for an admin, every line."""
        if (refused := _deaf()) is not None:
            return refused
        try:
            q, side = _search_args()
        except ValueError as exc:
            return error_page(400, str(exc))
        call_id = request.args.get("call", "")
        if call_id and not (call_id.isascii() and call_id.isdigit() and len(call_id) <= 12):
            return error_page(400, _("call: a call number"))

        if not call_id and not q and not current_user().can("configuration"):
            return error_page(400, _("Name a call (call=) or a search (q=); every transcript at once is for admins."))

        who = _who()

        def rows() -> list[dict]:
            if call_id:
                call = Call.get_or_none(Call.id == int(call_id))
                return store.transcript_rows([call.uuid]) if call is not None and _hears(call.uuid, who) else []
            if q:
                found = _heard_lines(q, side, MAX_CSV_LINES, who)
                return store.transcript_rows(sorted({r["call_uuid"] for r in found}))
            return store.transcript_rows()[:MAX_CSV_LINES]
        out = io.StringIO()
        write_csv(database(rows), out, ["call_id", "call_uuid", "started_at", "recording_id", "side", "start", "end",
                                        "text"])
        response = Response(out.getvalue(), mimetype="text/csv")
        response.headers["Content-Disposition"] = 'attachment; filename="screenpop-transcripts.csv"'
        response.headers["Cache-Control"] = "no-store"
        return response

    def alerts_page(code: int = 200, error: str | None = None) -> Response:
        def read() -> tuple[list, list]:
            return list(PhraseAlert.select().order_by(PhraseAlert.phrase)), store.recent_matches()
        stored, matches = database(read)
        configured = status().get("phrases", []) if status else []
        return render_page("alerts.html", status=code, title=_("Phrase alerts"), alerts=stored, configured=configured,
                           matches=matches, error=error)

    @bp.get("/alerts")
    @login_required("configuration")
    def alerts():
        return alerts_page()

    @bp.post("/alerts")
    @login_required("configuration")
    def add_alert():
        try:
            alert = database(store.add_alert, request.form.get("phrase", ""), request.form.get("side", ""))
        except ValueError as exc:
            return alerts_page(400, str(exc))
        flash(_("Alert “%(phrase)s” added: recordings analysed from now on are searched for it.", phrase=alert.phrase))
        return redirect("/alerts", 303)

    @bp.post("/alerts/<int:alert_id>/delete")
    @login_required("configuration")
    def delete_alert(alert_id: int):
        if not database(store.remove_alert, alert_id):
            return error_page(404, _("There is no such alert."))
        flash(_("Alert deleted, with the matches found for it."))
        return redirect("/alerts", 303)

    @bp.get("/api/v1/analysis")
    def progress():
        check = authenticate()
        if isinstance(check, Response):
            return check
        if status is None:
            return jsonify(enabled=False)
        body: dict[str, Any] = {"enabled": True, **status()}
        if roles.allows(check.role, "configuration"):
            body["failures"] = [{"recording_id": f["recording_id"], "call_uuid": f["call_uuid"], "error": f["error"],
                                 "at": f["analysed_at"].isoformat()} for f in database(store.failures)]
        return jsonify(body)

    return bp
