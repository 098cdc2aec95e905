"""Admin pages for what the records are made of (docs/customfields.md): the custom fields on customers and orders
(define, change, remove with their values after a confirmation) and the category list (name, colour, the pop's
flag; delete, moving its customers). The badge colours are served as /categories.css (the pages' CSP allows no
inline style). And what the pop shows (docs/card.md, "Layouts"): the card layouts and the teams that use them, with
a preview drawn by the pops' own layout code, redrawn as the admin types by /static/layout.js (the one page that
runs a script: its own, from this server)."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import peewee
from flask import Blueprint, Response, flash, jsonify, redirect, request

from screenpop.daemon.i18n import gettext as _, lazy_gettext, ngettext
from screenpop.daemon.customers import admin as steps, fields as custom
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.push import layouts as layout_steps
from screenpop.daemon.web.pages.base import (CSP, categories, current_user, database, error_page, log, login_required,
                                             render_page, web)
from screenpop.db.models import Customer

bp = Blueprint("admin", __name__)

_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")
_SAFE_COLOUR = re.compile(r"#[0-9a-f]{6}")
KIND_NAMES = {"text": lazy_gettext("text"), "longtext": lazy_gettext("long text"), "number": lazy_gettext("number"),
              "money": lazy_gettext("money"), "date": lazy_gettext("date"), "choice": lazy_gettext("choice"),
              "yesno": lazy_gettext("yes/no"), "link": lazy_gettext("link")}


def _position(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 5:
        raise DataError(400, lazy_gettext("position: a whole number from 0 to 10000"))
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
    return render_page("fields.html", status=status, title=_("Fields"), rows=rows, kinds=KIND_NAMES, error=error,
                       form=request.form if status != 200 else {})


@bp.get("/fields")
@login_required("configuration")
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
@login_required("configuration")
def create_field():
    def work() -> str:
        field = database(steps.create_field, _field_form(creating=True))
        return _("Field %(label)s (%(entity)s.%(key)s, %(kind)s) added.", label=field.label, entity=field.entity, key=field.key,
                 kind=KIND_NAMES[field.kind])
    return _done(fields_page, work, "/fields")


@bp.post("/fields/<int:field_id>")
@login_required("configuration")
def update_field(field_id: int):
    def work() -> str:
        return _("Field %(label)s saved.", label=database(steps.update_field, field_id, _field_form(creating=False)).label)
    return _done(fields_page, work, "/fields")


@bp.post("/fields/<int:field_id>/delete")
@login_required("configuration")
def delete_field(field_id: int):
    def work() -> str:
        field = database(steps.get_field, field_id)
        removed = database(steps.delete_field, field_id, request.form.get("confirm", "").strip())
        return ngettext("Field %(label)s (%(entity)s.%(key)s) removed with its %(num)s value.",
                        "Field %(label)s (%(entity)s.%(key)s) removed with its %(num)s values.", removed,
                        label=field.label, entity=field.entity, key=field.key)
    return _done(fields_page, work, "/fields")


# ---- categories -----------------------------------------------------------------------------------------


def categories_page(status: int = 200, error: str | None = None):
    db = web().hub.db

    def work():
        counts = dict(Customer.select(Customer.category, peewee.fn.COUNT(Customer.id)).group_by(Customer.category).tuples())
        return [(c, counts.get(c.name, 0)) for c in custom.load_categories(db)]

    rows = database(work)
    return render_page("categories.html", status=status, title=_("Categories"), rows=rows, error=error)


def _category_form(creating: bool) -> dict:
    form = request.form
    body: dict[str, Any] = {k: form[k] for k in ("name", "colour", "flag") if k in form}
    if form.get("default") == "on":
        body["default"] = True
    if (position := _position(form.get("position", ""))) is not None:
        body["position"] = position
    return steps.category_input(body, creating=creating)


@bp.get("/categories")
@login_required("configuration")
def category_list():
    return categories_page()


@bp.post("/categories")
@login_required("configuration")
def create_category():
    def work() -> str:
        return _("Category %(name)s added.", name=database(steps.create_category, _category_form(creating=True)).name)
    return _done(categories_page, work, "/categories")


@bp.post("/categories/<name>")
@login_required("configuration")
def update_category(name: str):
    def work() -> str:
        return _("Category %(name)s saved.", name=database(steps.update_category, name, _category_form(creating=False)).name)
    return _done(categories_page, work, "/categories")


@bp.post("/categories/<name>/delete")
@login_required("configuration")
def delete_category(name: str):
    def work() -> str:
        moved = database(steps.delete_category, name, request.form.get("move_to", ""))
        if moved:
            return ngettext("Category %(name)s deleted; %(num)s customer moved to another.",
                            "Category %(name)s deleted; %(num)s customers moved to another.", moved, name=name)
        return _("Category %(name)s deleted.", name=name)
    return _done(categories_page, work, "/categories")


@bp.get("/categories.css")
def category_css():
    """Each category's badge colour, for every page (a stylesheet: the pages allow no inline style)."""
    rules = [f".badge-{c.name} {{ background: {c.colour}; }}" for c in categories()
             if _SAFE_NAME.fullmatch(c.name) and _SAFE_COLOUR.fullmatch(c.colour)]
    out = Response("\n".join(rules) + "\n", mimetype="text/css")
    out.headers["Cache-Control"] = "no-cache"
    return out



# ---- card layouts and teams -----------------------------------------------------------------------------


def _layouts_changed() -> None:
    """This daemon's next pop reads the layouts again (other daemons within [card] layout_reload)."""
    if web().hub.cards.layouts is not None:
        web().hub.cards.layouts.changed()


def _sources() -> list[str]:
    return layout_steps.source_names(web().hub.sources)


def layouts_page(status: int = 200, error: str | None = None):
    db = web().hub.db
    layouts, teams = database(layout_steps.load, db)
    return render_page("layouts.html", status=status, title=_("Card layouts"), layouts=layouts, teams=teams, error=error,
                       form=request.form if status != 200 else {})


@bp.get("/layouts")
@login_required("configuration")
def layout_list():
    return layouts_page()


@bp.get("/layouts/new")
@login_required("configuration")
def new_layout():
    """The list page's "new layout" box: its editor, starting from the default layout."""
    name = request.args.get("name", "").strip()
    try:
        layout_steps.check_name(name, "name")
    except DataError as exc:
        return layouts_page(exc.status, exc.message)
    return redirect(f"/layouts/{name}", 303)


def _preview_extension(layout: str, teams: list[layout_steps.TeamLayout]) -> str:
    """Whose pop the preview is: the first extension of a team with this layout, else the admin's own."""
    return next((t.extensions[0] for t in teams if t.layout == layout and t.extensions), current_user().extension or "")


def _customer_id(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise DataError(400, lazy_gettext("customer: a customer's number (its id), or empty for the sample"))
    return int(raw)


def _preview(text: str, customer: str, extension: str) -> dict:
    """The card the layout in text gives (the pops' own layout code); DataError for a layout or customer refused."""
    hub, sources = web().hub, _sources()  # read here: the worker has no application context

    def work() -> dict:
        items = layout_steps.layout_items(layout_steps.text_items(text), layout_steps.known_keys(hub.db, sources))
        try:
            return hub.cards.preview(items, _customer_id(customer), extension)
        except LookupError as exc:
            raise DataError(404, exc.args[0]) from None
    return database(work)


def layout_page(name: str, status: int = 200, error: str | None = None, text: str | None = None):
    """A layout's editor: its items as text, what they may name, and the preview."""
    hub, sources = web().hub, _sources()

    def read():
        layouts, teams = layout_steps.load(hub.db)
        return layouts, teams, layout_steps.known_keys(hub.db, sources)

    layouts, teams, keys = database(read)
    stored = next((x for x in layouts if x.name == name), None)
    if text is None:
        text = layout_steps.as_text((stored or layouts[0]).items)
    customer = request.values.get("customer", "")
    extension = _preview_extension(name, teams)
    try:
        card, preview_error = _preview(text, customer, extension), None
    except DataError as exc:
        card, preview_error = None, exc.message
    response = render_page("layout.html", status=status, title=_("Layout %(name)s", name=name), name=name, stored=stored, text=text,
                           keys=keys, card=card, preview_error=preview_error, customer=customer, extension=extension,
                           error=error)
    response.headers["Content-Security-Policy"] = CSP + "; script-src 'self'; connect-src 'self'"
    return response


@bp.get("/layouts/preview")
@login_required("configuration")
def layout_preview():
    """The preview as JSON ({title, lines}) for the editor's script, redrawn after each edit."""
    try:
        card = _preview(request.args.get("items", ""), request.args.get("customer", ""),
                        request.args.get("extension", ""))
    except DataError as exc:
        return jsonify(error=exc.message), exc.status
    return jsonify(title=card["title"], lines=card["lines"])


@bp.get("/layouts/<name>")
@login_required("configuration")
def layout_editor(name: str):
    try:
        layout_steps.check_name(name, "name")
    except DataError as exc:
        return error_page(404, exc.message)
    return layout_page(name)


@bp.post("/layouts/<name>")
@login_required("configuration")
def save_layout(name: str):
    text = request.form.get("items", "")

    def work() -> str:
        layout, created = database(layout_steps.save_layout, name, layout_steps.text_items(text), _sources())
        _layouts_changed()
        if created:
            return _("Layout %(name)s added: the next pop of its extensions shows it.", name=layout.name)
        return _("Layout %(name)s saved: the next pop of its extensions shows it.", name=layout.name)
    return _done(lambda status, message: layout_page(name, status, message, text), work, f"/layouts/{name}")


@bp.post("/layouts/<name>/delete")
@login_required("configuration")
def delete_layout(name: str):
    def work() -> str:
        database(layout_steps.delete_layout, name)
        _layouts_changed()
        if name == layout_steps.DEFAULT:
            return _("Layout %(name)s deleted: the built-in layout is the default again.", name=name)
        return _("Layout %(name)s deleted.", name=name)
    return _done(layouts_page, work, "/layouts")


def _team_form() -> tuple[str, list[str]]:
    """The team form as the API's JSON, checked by the same steps: extensions one a line, or separated by commas."""
    raw = request.form.get("extensions", "").replace(",", " ").split()
    return layout_steps.team_input({"layout": request.form.get("layout", ""), "extensions": raw})


@bp.post("/teams")
@login_required("configuration")
def save_team():
    def work() -> str:
        name = request.form.get("name", "").strip()
        team, created = database(layout_steps.save_team, name, *_team_form())
        _layouts_changed()
        if created:
            return ngettext("Team %(name)s added: its %(num)s extension pops with layout %(layout)s.",
                            "Team %(name)s added: its %(num)s extensions pop with layout %(layout)s.",
                            len(team.extensions), name=team.name, layout=team.layout)
        return ngettext("Team %(name)s saved: its %(num)s extension pops with layout %(layout)s.",
                        "Team %(name)s saved: its %(num)s extensions pop with layout %(layout)s.",
                        len(team.extensions), name=team.name, layout=team.layout)
    return _done(layouts_page, work, "/layouts")


@bp.post("/teams/<name>/delete")
@login_required("configuration")
def delete_team(name: str):
    def work() -> str:
        database(layout_steps.delete_team, name)
        _layouts_changed()
        return _("Team %(name)s deleted: its extensions pop with the default layout.", name=name)
    return _done(layouts_page, work, "/layouts")
