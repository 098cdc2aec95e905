"""Admin pages: employees and their extensions (the configuration capability), and the API tokens (list, revoke;
the tokens capability): daemon/auth/roles.py gives both to admins."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, request

from screenpop.daemon.i18n import gettext as _, language
from screenpop.daemon.auth import tokens
from screenpop.daemon.customers import data
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.web.pages import forms
from screenpop.daemon.web.pages.base import database, error_page, log, login_required, render_page, web
from screenpop.db import audit, collation
from screenpop.db.models import ApiToken, Employee

bp = Blueprint("employees", __name__)


def _fields(required: bool) -> dict:
    values: dict = forms.pick(("name", "extension"))
    if "active" in request.form or not required:
        values["active"] = request.form.get("active") == "on"
    return data.employee_fields(values, required=required)


def _changed() -> None:
    """An employee was added, changed or deleted: the daemon's employee snapshot (cards, number rules) follows now."""
    hook = web().on_employees_changed
    if hook is not None:
        hook()


def employees_page(status: int = 200, error: str | None = None):
    """The employees A to Z in the reader's language, and the latest changes to them (who, what, when)."""
    lang = language()
    staff, history = database(lambda: (list(Employee.select()), audit.for_kind("employee")))
    staff.sort(key=lambda e: (collation.sort_key(e.name, lang), e.id))
    return render_page("employees.html", status=status, title=_("Employees"), employees=staff, history=history,
                       error=error)


@bp.get("/employees")
@login_required("configuration")
def employees():
    return employees_page()


@bp.post("/employees")
@login_required("configuration")
def create():
    try:
        emp = database(data.create_employee, _fields(required=True))
    except DataError as exc:
        return employees_page(exc.status, exc.message)
    _changed()
    log.info("employee %d (extension %s) added on the web", emp.id, emp.extension)
    flash(_("Employee added."))
    return redirect("/employees", 303)


@bp.post("/employees/<int:employee_id>")
@login_required("configuration")
def update(employee_id: int):
    try:
        database(data.update_employee, employee_id, _fields(required=False))
    except DataError as exc:
        return employees_page(exc.status, exc.message)
    _changed()
    flash(_("Employee saved."))
    return redirect("/employees", 303)


@bp.post("/employees/<int:employee_id>/delete")
@login_required("configuration")
def delete(employee_id: int):
    try:
        database(data.delete_employee, employee_id)
    except DataError as exc:
        return employees_page(exc.status, exc.message)
    _changed()
    log.info("employee %d deleted on the web", employee_id)
    flash(_("Employee deleted; their calls and orders stay."))
    return redirect("/employees", 303)


@bp.get("/tokens")
@login_required("tokens")
def token_list():
    rows = database(tokens.list_tokens)
    return render_page("tokens.html", title=_("Tokens"), tokens=rows)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required("tokens")
def revoke(token_id: int):
    if not database(lambda: ApiToken.get_or_none(ApiToken.id == token_id)):
        return error_page(404, _("There is no token %(id)s.", id=token_id))
    if database(tokens.revoke, token_id):
        log.info("token %d revoked on the web", token_id)
        flash(_("Token %(id)s revoked: its tray stream and web sessions end now.", id=token_id))
    return redirect("/tokens", 303)
