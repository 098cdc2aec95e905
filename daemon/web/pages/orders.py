"""Order forms on a customer's record: new order, stage and responsible employee, payments, closing."""
from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, flash, redirect, request

from screenpop.daemon.i18n import gettext as _
from screenpop.daemon.customers import data
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.web.pages import forms
from screenpop.daemon.web.pages.base import database, error_page, formats, log, login_required
from screenpop.daemon.web.pages.customers import record_page

bp = Blueprint("orders", __name__)


def _order_form(creating: bool) -> dict:
    values: dict = forms.pick(("number", "title", "stage") if creating else ("title", "stage"))
    if creating and request.form.get("amount", "").strip():
        values["amount"] = forms.money(request.form["amount"])
    if "responsible_id" in request.form:
        values["responsible_id"] = forms.employee_id(request.form["responsible_id"], "responsible_id")
    given = forms.custom_values()
    if given or creating:
        values["fields"] = given
    return data.order_fields(values, creating=creating)


def _on_order(order_id: int, step: Callable[[], str]):
    """Run a step on an order; back to its customer's record with a note, or the record with the refusal."""
    try:
        customer_id = database(lambda: data.get_order(order_id).customer_id)
    except DataError as exc:
        return error_page(exc.status, exc.message)
    try:
        note = step()
    except DataError as exc:
        return record_page(customer_id, exc.status, exc.message)
    flash(note)
    return redirect(f"/customers/{customer_id}#orders", 303)


@bp.post("/customers/<int:customer_id>/orders")
@login_required()
def create(customer_id: int):
    try:
        fields = _order_form(creating=True)
        order = database(data.create_order, customer_id, fields)
    except DataError as exc:
        return error_page(404, exc.message) if exc.status == 404 else record_page(customer_id, exc.status, exc.message)
    log.info("customer %d: order %d created on the web", customer_id, order.id)
    flash(_("Order added."))
    return redirect(f"/customers/{customer_id}#orders", 303)


@bp.post("/orders/<int:order_id>/update")
@login_required()
def update(order_id: int):
    def step() -> str:
        database(data.update_order, order_id, _order_form(creating=False))
        return _("Order saved.")
    return _on_order(order_id, step)


@bp.post("/orders/<int:order_id>/payments")
@login_required()
def pay(order_id: int):
    def step() -> str:
        paid_now = data.amount(forms.money(request.form.get("amount", "")), "amount", positive=True)
        order = data.order_dict(database(data.pay, order_id, paid_now))
        log.info("order %d: payment recorded on the web", order_id)
        money = formats().money  # in the reader's language, with [card]'s currency
        return _("Payment of %(paid)s recorded on order %(order)s; debt now %(debt)s.", paid=money(paid_now), order=order["number"],
                 debt=money(order["debt"]))
    return _on_order(order_id, step)


@bp.post("/orders/<int:order_id>/close")
@login_required()
def close(order_id: int):
    def step() -> str:
        database(data.close_order, order_id)
        return _("Order closed.")
    return _on_order(order_id, step)
