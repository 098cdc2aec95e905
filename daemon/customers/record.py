"""A customer's whole record for the record page, in four precompiled queries (no query builder on this path)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import peewee

from screenpop.daemon.customers import fields as custom
from screenpop.db.models import Call, Customer

CENT = Decimal("0.01")
MAX_CALLS = 500
_when = Call.started_at.python_value  # SQLite hands back text; PostgreSQL datetimes pass through


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)  # SQLite gives floats back; str() is their shortest exact form


def customer_record(db: peewee.Database, customer_id: int, calls_limit: int = 50,
                    calls_before: int | None = None) -> dict | None:
    """Everything the record page shows about one customer, or None if there is no such customer.

    Returns {"id", "external_id", "name", "company", "category", "note", "city", "country", "photo",
    "created_at", "updated_at" (naive UTC datetimes),
    "fields": the custom field values it has, in the definitions' order ({key, label, type, value, text}),
    "phones": [{"id", "e164", "raw", "label"}] in the order added,
    "orders": [{"id", "number", "title", "stage", "status", "responsible_id", "responsible" (employee name or
    None), "amount", "paid", "debt" (Decimals), "fields" (as the customer's), "custom" ({key: stored value})}] in
    the order added,
    "debt": the debt of the open orders together (Decimal),
    "calls": the newest calls_limit (at most MAX_CALLS) calls, newest first: [{"id", "uuid", "started_at",
    "answered_at", "ended_at", "direction", "external_number", "external_name", "extension", "employee_id",
    "operator" (that employee's name or None), "ring_seconds", "talk_seconds", "missed"}],
    "calls_before": the id to pass as calls_before for the next, older page, or None when there is none}.
    calls_before=ID pages on: only calls older than call ID (by start time, then id).
    """
    p = db.param
    row = db.execute_sql(
        "SELECT id, external_id, name, company, category, note, city, country, photo, created_at, updated_at, custom "
        f"FROM customer WHERE id = {p}", (customer_id,)).fetchone()
    if row is None:
        return None
    keys = ("id", "external_id", "name", "company", "category", "note", "city", "country", "photo", "created_at", "updated_at")
    record: dict[str, Any] = dict(zip(keys, row))
    defs = custom.load_fields(db)
    record["fields"] = custom.shown([f for f in defs if f.entity == "customer"], custom.decode(row[-1]))
    order_defs = [f for f in defs if f.entity == "order"]
    record["created_at"] = Customer.created_at.python_value(record["created_at"])
    record["updated_at"] = Customer.updated_at.python_value(record["updated_at"])
    record["phones"] = [
        {"id": i, "e164": e164, "raw": raw, "label": label}
        for i, e164, raw, label in db.execute_sql(
            f"SELECT id, e164, raw, label FROM phone WHERE customer_id = {p} ORDER BY id", (customer_id,))
    ]
    record["orders"] = orders = []
    debt = Decimal("0.00")
    for i, number, title, stage, status, resp_id, resp, amount, paid, stored in db.execute_sql(
        'SELECT o.id, o.number, o.title, o.stage, o.status, o.responsible_id, e.name, o.amount, o.paid, o.custom '
        f'FROM "order" o LEFT JOIN employee e ON e.id = o.responsible_id WHERE o.customer_id = {p} ORDER BY o.id',
        (customer_id,)
    ):
        amount, paid = _money(amount), _money(paid)
        found = custom.decode(stored)
        orders.append({"id": i, "number": number, "title": title, "stage": stage, "status": status,
                       "responsible_id": resp_id, "responsible": resp, "amount": amount, "paid": paid,
                       "debt": amount - paid, "fields": custom.shown(order_defs, found), "custom": found})
        if status == "open":
            debt += amount - paid
    record["debt"] = debt
    record["calls"], record["calls_before"] = _calls(db, customer_id, max(1, min(calls_limit, MAX_CALLS)), calls_before)
    return record


def _calls(db: peewee.Database, customer_id: int, limit: int, before: int | None) -> tuple[list[dict], int | None]:
    """One page of the customer's calls, newest first, on the (customer_id, started_at, id) index."""
    p = db.param
    params: list[Any] = [customer_id]
    older = ""
    if before is not None:
        # Keyset: strictly after the given call in (started_at DESC, id DESC) order; the <= is the index range.
        at = f"(SELECT started_at FROM call WHERE id = {p})"
        older = f"AND c.started_at <= {at} AND (c.started_at < {at} OR c.id < {p}) "
        params += [before, before, before]
    rows = db.execute_sql(
        "SELECT c.id, c.uuid, c.started_at, c.answered_at, c.ended_at, c.direction, c.external_number, "
        "c.external_name, c.extension, c.employee_id, e.name, c.ring_seconds, c.talk_seconds, c.missed "
        f"FROM call c LEFT JOIN employee e ON e.id = c.employee_id WHERE c.customer_id = {p} {older}"
        f"ORDER BY c.started_at DESC, c.id DESC LIMIT {p}", (*params, limit + 1)).fetchall()
    calls = [
        {"id": i, "uuid": uuid, "started_at": _when(started), "answered_at": _when(answered), "ended_at": _when(ended),
         "direction": direction, "external_number": number, "external_name": name, "extension": extension,
         "employee_id": employee_id, "operator": operator, "ring_seconds": ring, "talk_seconds": talk,
         "missed": bool(missed)}
        for i, uuid, started, answered, ended, direction, number, name, extension, employee_id, operator, ring, talk, missed
        in rows[:limit]
    ]
    return calls, (calls[-1]["id"] if len(rows) > limit else None)
