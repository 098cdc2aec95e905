"""Admin pages for what the records are made of (docs/customfields.md): the custom fields on customers and orders
(define, change, remove with their values after a confirmation) and the category list (name, colour, the pop's
flag; delete, moving its customers). The badge colours are served as /categories.css (the pages' CSP allows no
inline style)."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import peewee
from flask import Blueprint, Response, flash, redirect, request

from screenpop.daemon.customers import admin as steps, fields as custom
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.web.pages.base import categories, database, error_page, log, login_required, render_page, web
from screenpop.db.models import Customer

bp = Blueprint("admin", __name__)

_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")
_SAFE_COLOUR = re.compile(r"#[0-9a-f]{6}")
KIND_NAMES = {"text": "text", "longtext": "long text", "number": "number", "money": "money", "date": "date",
              "choice": "choice", "yesno": "yes/no", "link": "link"}


def _position(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 5:
        raise DataError(400, "position: a whole number from 0 to 10000")
    return int(raw)


def _field_form(creating: bool) -> dict:
    """The definition form as the API's JSON, checked by the same steps."""
    form = request.form
    body: dict[str, Any] = {k: form[k] for k in (("entity", "key", "type", "label") if creating else ("label",))
                            if k in form}
    body["required"] = form.get("required") == "on"
    if "options" in form:
        body["options"] = form["options"].splitlines()
        if not any(o.strip() for o in body["options"]) and body.get("type", "choice") != "choice":
            del body["options"]
    if (position := _position(form.get("position", ""))) is not None:
        body["position"] = position
    return steps.field_input(body, creating=creating)


def fields_page(status: int = 200, error: str | None = None):
    rows = database(custom.load_fields, web().hub.db)
    return render_page("fields.html", status=status, title="Fields", rows=rows, kinds=KIND_NAMES, error=error,
                       form=request.form if status != 200 else {})


@bp.get("/fields")
@login_required("admin")
def fields():
    return fields_page()


def _done(page: Callable, work: Callable[[], str], back: str):
    """Run a form's step (work: its database steps, the message to flash); the page again with the refusal."""
    try:
        note = work()
    except DataError as exc:
        if exc.status == 404:
            return error_page(404, exc.message)
        return page(exc.status, exc.message)
    log.info("%s %s on the web: %s", request.method, request.path, note)
    flash(note)
    return redirect(back, 303)


@bp.post("/fields")
@login_required("admin")
def create_field():
    def work() -> str:
        field = database(steps.create_field, _field_form(creating=True))
        return f"Field {field.label} ({field.entity}.{field.key}, {KIND_NAMES[field.kind]}) added."
    return _done(fields_page, work, "/fields")


@bp.post("/fields/<int:field_id>")
@login_required("admin")
def update_field(field_id: int):
    def work() -> str:
        return f"Field {database(steps.update_field, field_id, _field_form(creating=False)).label} saved."
    return _done(fields_page, work, "/fields")


@bp.post("/fields/<int:field_id>/delete")
@login_required("admin")
def delete_field(field_id: int):
    def work() -> str:
        field = database(steps.get_field, field_id)
        removed = database(steps.delete_field, field_id, request.form.get("confirm", "").strip())
        return f"Field {field.label} ({field.entity}.{field.key}) removed with its {removed} value(s)."
    return _done(fields_page, work, "/fields")


# ---- categories -----------------------------------------------------------------------------------------


def categories_page(status: int = 200, error: str | None = None):
    db = web().hub.db

    def work():
        counts = dict(Customer.select(Customer.category, peewee.fn.COUNT(Customer.id)).group_by(Customer.category).tuples())
        return [(c, counts.get(c.name, 0)) for c in custom.load_categories(db)]

    rows = database(work)
    return render_page("categories.html", status=status, title="Categories", rows=rows, error=error)


def _category_form(creating: bool) -> dict:
    form = request.form
    body: dict[str, Any] = {k: form[k] for k in ("name", "colour", "flag") if k in form}
    if form.get("default") == "on":
        body["default"] = True
    if (position := _position(form.get("position", ""))) is not None:
        body["position"] = position
    return steps.category_input(body, creating=creating)


@bp.get("/categories")
@login_required("admin")
def category_list():
    return categories_page()


@bp.post("/categories")
@login_required("admin")
def create_category():
    def work() -> str:
        return f"Category {database(steps.create_category, _category_form(creating=True)).name} added."
    return _done(categories_page, work, "/categories")


@bp.post("/categories/<name>")
@login_required("admin")
def update_category(name: str):
    def work() -> str:
        return f"Category {database(steps.update_category, name, _category_form(creating=False)).name} saved."
    return _done(categories_page, work, "/categories")


@bp.post("/categories/<name>/delete")
@login_required("admin")
def delete_category(name: str):
    def work() -> str:
        moved = database(steps.delete_category, name, request.form.get("move_to", ""))
        return f"Category {name} deleted" + (f"; {moved} customer(s) moved to another." if moved else ".")
    return _done(categories_page, work, "/categories")


@bp.get("/categories.css")
def category_css():
    """Each category's badge colour, for every page (a stylesheet: the pages allow no inline style)."""
    rules = [f".badge-{c.name} {{ background: {c.colour}; }}" for c in categories()
             if _SAFE_NAME.fullmatch(c.name) and _SAFE_COLOUR.fullmatch(c.colour)]
    out = Response("\n".join(rules) + "\n", mimetype="text/css")
    out.headers["Cache-Control"] = "no-cache"
    return out

