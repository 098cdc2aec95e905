"""The JSON API for customer data (docs/api.md): customers, phones, orders, employees, calls.

A Flask blueprint on the daemon's HTTP server. Every database step runs on the push hub's worker greenlet
(``hub.call``), in one short transaction, with its own connection, so it never holds the call writer up for
long. Authentication is the server's own Bearer check; operators read and edit customers, phones and orders;
employee writes and every delete need an admin token. Every error is JSON ``{"error": "..."}``.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import peewee
from flask import Blueprint, Response, jsonify, request

from screenpop.db.callrecords import calls_query, records
from screenpop.db.models import CATEGORIES, DIRECTIONS, Call, CallParty, Customer, Employee, Order, Phone, utcnow
from screenpop.db.search import MAX_RESULTS, search_customers

MAX_BODY = 64 * 1024
MAX_NOTE = 10_000
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
CUSTOMER_CALLS = 20
_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
_MAX_AMOUNT = Decimal("999999999999.99")
_MAX_ID = 2**31 - 1


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# ---- input checks ------------------------------------------------------------------------------------


def _text(body: dict, key: str, max_len: int, required: bool = False) -> str | None:
    """A string field: must be a string, no NUL, valid Unicode, at most max_len characters (None if absent)."""
    if key not in body:
        if required:
            raise ApiError(400, f"{key}: required")
        return None
    value = body[key]
    if not isinstance(value, str):
        raise ApiError(400, f"{key}: must be a string")
    if "\x00" in value:
        raise ApiError(400, f"{key}: must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{key}: must be valid Unicode (no lone surrogates)") from None
    if len(value) > max_len:
        raise ApiError(400, f"{key}: at most {max_len} characters")
    if required and not value.strip():
        raise ApiError(400, f"{key}: must not be empty")
    return value


def _id(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ID:
        raise ApiError(400, f"{key}: must be a positive whole number")
    return value


def _amount(value: Any, key: str, positive: bool = False) -> Decimal:
    """A money amount given as a decimal string, e.g. "1250.50": 0 or more, at most 2 decimals."""
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
        raise ApiError(400, f'{key}: must be a decimal string such as "1250.50" (no sign, at most 2 decimals)')
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ApiError(400, f"{key}: not a number") from None
    if amount > _MAX_AMOUNT:
        raise ApiError(400, f"{key}: too large")
    if positive and amount <= 0:
        raise ApiError(400, f"{key}: must be more than 0")
    return amount


def _only(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")


def _body(allowed: set[str]) -> dict:
    """The request's JSON object: 413 when too big, 415 when not JSON, 400 when not an object or unknown fields."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"request body larger than {MAX_BODY} bytes")
    if request.mimetype != "application/json":
        raise ApiError(415, "the body must be JSON (Content-Type: application/json)")
    data = request.stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise ApiError(413, f"request body larger than {MAX_BODY} bytes")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    _only(body, allowed)
    return body


def _page() -> tuple[int, int]:
    def number(key: str, default: int, low: int, high: int) -> int:
        raw = request.args.get(key)
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
            raise ApiError(400, f"{key}: must be a whole number")
        value = int(raw)
        if not low <= value <= high:
            raise ApiError(400, f"{key}: must be between {low} and {high}")
        return value

    return number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT), number("offset", 0, 0, 10**9)


def _when(key: str) -> dt.datetime | None:
    raw = request.args.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ApiError(400, f"{key}: must be an ISO 8601 date or time, e.g. 2026-01-31T08:00:00Z") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=dt.timezone.utc).isoformat(timespec="seconds")


def _money(value: Any) -> str:
    return str(Decimal(value or 0).quantize(Decimal("0.01")))


# ---- representations ---------------------------------------------------------------------------------


def _customer_brief(c: Customer) -> dict:
    return {"id": c.id, "external_id": c.external_id, "name": c.name, "company": c.company, "category": c.category,
            "city": c.city, "country": c.country}


def _customer_full(c: Customer) -> dict:
    out = _customer_brief(c)
    out.update(note=c.note, has_photo=bool(c.photo), created_at=_iso(c.created_at), updated_at=_iso(c.updated_at))
    return out


def _phone(p: Phone) -> dict:
    return {"id": p.id, "e164": p.e164, "raw": p.raw, "label": p.label}


def _order(o: Order) -> dict:
    amount, paid = Decimal(o.amount or 0), Decimal(o.paid or 0)
    return {"id": o.id, "customer_id": o.customer_id, "number": o.number, "title": o.title, "stage": o.stage,
            "responsible_id": o.responsible_id, "amount": _money(amount), "paid": _money(paid),
            "debt": _money(amount - paid), "status": o.status}


def _employee(e: Employee) -> dict:
    return {"id": e.id, "name": e.name, "extension": e.extension, "active": e.active}



CUSTOMER_FIELDS = {"name": 300, "company": 300, "city": 200, "country": 200, "note": MAX_NOTE, "external_id": 100}


def blueprint(hub, authenticate: Callable[[], Any]) -> Blueprint:
    """The /api/v1 customer-data routes; hub runs the database work, authenticate is the server's token check."""
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    db = hub.db

    def rules():
        return hub.cards.lookup().rules

    def run(fn: Callable, *args: Any) -> Any:
        """fn in one transaction on the hub's worker (its own connection)."""
        def tx():
            with db.atomic():
                return fn(*args)
        return hub.call(tx)

    @bp.before_request
    def check_token():
        check = authenticate()
        if isinstance(check, Response):
            return check
        request.environ["screenpop.role"] = check.role
        return None

    def admin(what: str) -> None:
        if request.environ.get("screenpop.role") != "admin":
            raise ApiError(403, f"{what} needs an admin token")

    @bp.errorhandler(ApiError)
    def api_error(exc: ApiError):
        response = jsonify(error=exc.message, **exc.extra)
        response.status_code = exc.status
        return response

    # ---- customers ---------------------------------------------------------------------------------

    def customer_fields(body: dict) -> dict:
        fields = {}
        for key, max_len in CUSTOMER_FIELDS.items():
            value = _text(body, key, max_len)
            if value is not None:
                fields[key] = value
        if "external_id" in body and body["external_id"] is None:
            fields["external_id"] = None
        elif fields.get("external_id") == "":
            fields["external_id"] = None
        if "category" in body:
            if body["category"] not in CATEGORIES:
                raise ApiError(400, f"category: must be one of {', '.join(CATEGORIES)}")
            fields["category"] = body["category"]
        return fields

    def get_customer(customer_id: int) -> Customer:
        customer = Customer.get_or_none(Customer.id == customer_id)
        if customer is None:
            raise ApiError(404, f"no customer {customer_id}")
        return customer

    @bp.get("/customers")
    def list_customers():
        limit, offset = _page()
        q = request.args.get("q", "").strip()
        if len(q) > 200:
            raise ApiError(400, "q: at most 200 characters")
        if "\x00" in q:
            raise ApiError(400, "q: must not contain NUL characters")
        site_rules = rules()

        def work():
            if q:
                found = search_customers(db, q, MAX_RESULTS, rules=site_rules)
                total, page = len(found), found[offset : offset + limit]
                by_id = {c.id: c for c in Customer.select().where(Customer.id.in_(page))} if page else {}
                rows = [by_id[i] for i in page if i in by_id]
            else:
                query = Customer.select()
                total = query.count()
                rows = list(query.order_by(Customer.id).limit(limit).offset(offset))
            phones: dict[int, list[dict]] = defaultdict(list)
            if rows:
                for p in Phone.select().where(Phone.customer.in_([c.id for c in rows])).order_by(Phone.id):
                    phones[p.customer_id].append(_phone(p))
            return {"total": total, "limit": limit, "offset": offset,
                    "customers": [{**_customer_brief(c), "phones": phones[c.id]} for c in rows]}

        return jsonify(run(work))

    @bp.get("/customers/<int:customer_id>")
    def get_one(customer_id: int):
        def work():
            c = get_customer(customer_id)
            out = _customer_full(c)
            out["phones"] = [_phone(p) for p in Phone.select().where(Phone.customer == c.id).order_by(Phone.id)]
            out["orders"] = [_order(o) for o in Order.select().where(Order.customer == c.id).order_by(Order.id)]
            out["debt"] = _money(sum((Decimal(o["debt"]) for o in out["orders"] if o["status"] == "open"), Decimal(0)))
            out["calls"] = records(list(calls_query(customer_id=c.id).limit(CUSTOMER_CALLS)))
            return out

        return jsonify(run(work))

    @bp.post("/customers")
    def create_customer():
        body = _body(set(CUSTOMER_FIELDS) | {"category", "phones"})
        fields = customer_fields(body)
        if not (fields.get("name", "").strip() or fields.get("company", "").strip()):
            raise ApiError(400, "name or company: one of them is required")
        phones = body.get("phones", [])
        if not isinstance(phones, list) or len(phones) > 20:
            raise ApiError(400, "phones: must be a list of at most 20 numbers")
        wanted = [phone_input(p, f"phones[{i}]") for i, p in enumerate(phones)]

        def work():
            if fields.get("external_id") and Customer.get_or_none(Customer.external_id == fields["external_id"]):
                raise ApiError(409, "external_id: already used by another customer")
            c = Customer.create(**fields)
            for number, raw, label in wanted:
                store_phone(c.id, number, raw, label)
            return c.id

        customer_id = run(work)
        response = get_one(customer_id)
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/customers/{customer_id}"
        return response

    @bp.patch("/customers/<int:customer_id>")
    def update_customer(customer_id: int):
        body = _body(set(CUSTOMER_FIELDS) | {"category"})
        fields = customer_fields(body)

        def work():
            c = get_customer(customer_id)
            name = fields.get("name", c.name)
            company = fields.get("company", c.company)
            if not (name.strip() or company.strip()):
                raise ApiError(400, "name or company: one of them must stay non-empty")
            ext = fields.get("external_id")
            if ext and Customer.get_or_none((Customer.external_id == ext) & (Customer.id != c.id)):
                raise ApiError(409, "external_id: already used by another customer")
            if fields:
                Customer.update(**fields, updated_at=utcnow()).where(Customer.id == c.id).execute()

        run(work)
        return get_one(customer_id)

    @bp.delete("/customers/<int:customer_id>")
    def delete_customer(customer_id: int):
        admin("deleting a customer")

        def work():
            get_customer(customer_id)
            # Calls keep their history; only the link goes (SQLite may not enforce ON DELETE without pragmas).
            Call.update(customer=None).where(Call.customer == customer_id).execute()
            Phone.delete().where(Phone.customer == customer_id).execute()
            Order.delete().where(Order.customer == customer_id).execute()
            Customer.delete().where(Customer.id == customer_id).execute()

        run(work)
        return "", 204

    # ---- phones ------------------------------------------------------------------------------------

    def phone_input(value: Any, key: str):
        if isinstance(value, str):
            value = {"number": value}
        if not isinstance(value, dict):
            raise ApiError(400, f"{key}: must be a number string or an object with number and label")
        try:
            _only(value, {"number", "label"})
        except ApiError as exc:
            raise ApiError(400, f"{key}: {exc.message}") from None
        raw = _text(value, "number", 64, required=True)
        label = _text(value, "label", 64) or ""
        number = rules().classify(raw)
        if number.kind != "e164":
            why = "an internal extension" if number.kind == "extension" else "not a phone number that can be made E.164"
            raise ApiError(400, f"{key}: {raw!r} is {why}")
        return number, raw.strip(), label

    def store_phone(customer_id: int, number, raw: str, label: str) -> Phone:
        owner = Phone.get_or_none(Phone.e164 == number.e164)
        if owner is not None:
            whose = "this customer" if owner.customer_id == customer_id else f"customer {owner.customer_id}"
            raise ApiError(409, f"{number.e164} is already a number of {whose}", customer_id=owner.customer_id)
        return Phone.create(customer=customer_id, e164=number.e164, rev=number.rev, raw=raw, label=label)

    @bp.post("/customers/<int:customer_id>/phones")
    def add_phone(customer_id: int):
        body = _body({"number", "label"})
        number, raw, label = phone_input(body, "phone")

        def work():
            get_customer(customer_id)
            phone = store_phone(customer_id, number, raw, label)
            Customer.update(updated_at=utcnow()).where(Customer.id == customer_id).execute()
            return _phone(phone)

        return jsonify(run(work)), 201

    @bp.delete("/customers/<int:customer_id>/phones/<int:phone_id>")
    def remove_phone(customer_id: int, phone_id: int):
        admin("removing a number")

        def work():
            if not Phone.delete().where((Phone.id == phone_id) & (Phone.customer == customer_id)).execute():
                raise ApiError(404, f"no phone {phone_id} of customer {customer_id}")

        run(work)
        return "", 204

    # ---- orders ------------------------------------------------------------------------------------

    def get_order(order_id: int) -> Order:
        order = Order.get_or_none(Order.id == order_id)
        if order is None:
            raise ApiError(404, f"no order {order_id}")
        return order

    def responsible(body: dict) -> dict:
        if "responsible_id" not in body:
            return {}
        if body["responsible_id"] is None:
            return {"responsible": None}
        return {"responsible": _id(body["responsible_id"], "responsible_id")}

    def check_employee(fields: dict) -> None:
        emp = fields.get("responsible")
        if emp is not None and Employee.get_or_none(Employee.id == emp) is None:
            raise ApiError(400, f"responsible_id: no employee {emp}")

    @bp.post("/customers/<int:customer_id>/orders")
    def create_order(customer_id: int):
        body = _body({"number", "title", "stage", "responsible_id", "amount"})
        fields: dict[str, Any] = {"number": _text(body, "number", 64, required=True),
                                  "title": _text(body, "title", 300) or "", "stage": _text(body, "stage", 100) or ""}
        fields["amount"] = _amount(body["amount"], "amount") if "amount" in body else Decimal(0)
        fields.update(responsible(body))

        def work():
            get_customer(customer_id)
            check_employee(fields)
            if Order.get_or_none(Order.number == fields["number"]):
                raise ApiError(409, f"number: order {fields['number']!r} exists already")
            return _order(Order.create(customer=customer_id, **fields))

        return jsonify(run(work)), 201

    @bp.get("/orders/<int:order_id>")
    def read_order(order_id: int):
        return jsonify(run(lambda: _order(get_order(order_id))))

    @bp.patch("/orders/<int:order_id>")
    def update_order(order_id: int):
        body = _body({"title", "stage", "responsible_id"})
        fields: dict[str, Any] = {}
        for key, max_len in (("title", 300), ("stage", 100)):
            value = _text(body, key, max_len)
            if value is not None:
                fields[key] = value
        fields.update(responsible(body))

        def work():
            order = get_order(order_id)
            if order.status != "open":
                raise ApiError(409, f"order {order_id} is closed")
            check_employee(fields)
            if fields:
                Order.update(**fields).where(Order.id == order_id).execute()
            return _order(get_order(order_id))

        return jsonify(run(work))

    @bp.post("/orders/<int:order_id>/payments")
    def pay(order_id: int):
        body = _body({"amount"})
        if "amount" not in body:
            raise ApiError(400, "amount: required")
        amount = _amount(body["amount"], "amount", positive=True)

        def work():
            query = Order.select().where(Order.id == order_id)
            if not isinstance(db, peewee.SqliteDatabase):
                query = query.for_update()  # a payment recorded alongside waits for this one (SQLite: one writer anyway)
            order = query.get_or_none()
            if order is None:
                raise ApiError(404, f"no order {order_id}")
            if order.status != "open":
                raise ApiError(409, f"order {order_id} is closed")
            paid = Decimal(order.paid or 0) + amount
            if paid > Decimal(order.amount or 0):
                raise ApiError(400, f"amount: paid would be {_money(paid)}, above the order amount {_money(order.amount)}",
                               debt=_money(Decimal(order.amount or 0) - Decimal(order.paid or 0)))
            Order.update(paid=paid).where(Order.id == order_id).execute()
            return _order(get_order(order_id))

        return jsonify(run(work))

    @bp.post("/orders/<int:order_id>/close")
    def close(order_id: int):
        def work():
            get_order(order_id)
            Order.update(status="closed").where(Order.id == order_id).execute()
            return _order(get_order(order_id))

        return jsonify(run(work))

    # ---- employees ---------------------------------------------------------------------------------

    def employee_fields(body: dict, required: bool) -> dict:
        fields: dict[str, Any] = {}
        name = _text(body, "name", 200, required=required)
        if name is not None:
            if not name.strip():
                raise ApiError(400, "name: must not be empty")
            fields["name"] = name
        extension = _text(body, "extension", 32, required=required)
        if extension is not None:
            if not re.fullmatch(r"[0-9A-Za-z*#+_.-]+", extension):
                raise ApiError(400, "extension: letters, digits and * # + _ . - only")
            fields["extension"] = extension
        if "active" in body:
            if not isinstance(body["active"], bool):
                raise ApiError(400, "active: must be true or false")
            fields["active"] = body["active"]
        return fields

    def get_employee(employee_id: int) -> Employee:
        emp = Employee.get_or_none(Employee.id == employee_id)
        if emp is None:
            raise ApiError(404, f"no employee {employee_id}")
        return emp

    def extension_free(extension: str | None, employee_id: int | None) -> None:
        if extension is None:
            return
        other = Employee.get_or_none(Employee.extension == extension)
        if other is not None and other.id != employee_id:
            raise ApiError(409, f"extension: {extension} belongs to employee {other.id}", employee_id=other.id)

    @bp.get("/employees")
    def list_employees():
        limit, offset = _page()
        def work():
            query = Employee.select()
            return {"total": query.count(), "limit": limit, "offset": offset,
                    "employees": [_employee(e) for e in query.order_by(Employee.id).limit(limit).offset(offset)]}
        return jsonify(run(work))

    @bp.post("/employees")
    def create_employee():
        admin("adding an employee")
        fields = employee_fields(_body({"name", "extension", "active"}), required=True)

        def work():
            extension_free(fields["extension"], None)
            return _employee(Employee.create(**fields))

        return jsonify(run(work)), 201

    @bp.patch("/employees/<int:employee_id>")
    def update_employee(employee_id: int):
        admin("changing an employee")
        fields = employee_fields(_body({"name", "extension", "active"}), required=False)

        def work():
            get_employee(employee_id)
            extension_free(fields.get("extension"), employee_id)
            if fields:
                Employee.update(**fields).where(Employee.id == employee_id).execute()
            return _employee(get_employee(employee_id))

        return jsonify(run(work))

    @bp.delete("/employees/<int:employee_id>")
    def delete_employee(employee_id: int):
        admin("deleting an employee")

        def work():
            get_employee(employee_id)
            Order.update(responsible=None).where(Order.responsible == employee_id).execute()
            Call.update(employee=None).where(Call.employee == employee_id).execute()
            CallParty.update(employee=None).where(CallParty.employee == employee_id).execute()
            Employee.delete().where(Employee.id == employee_id).execute()

        run(work)
        return "", 204

    # ---- calls -------------------------------------------------------------------------------------

    @bp.get("/calls")
    def list_calls():
        limit, offset = _page()
        since, until = _when("since"), _when("until")
        extension = request.args.get("extension", "").strip()
        if len(extension) > 32:
            raise ApiError(400, "extension: at most 32 characters")
        direction = request.args.get("direction", "").strip().upper()
        if direction and direction not in DIRECTIONS:
            raise ApiError(400, f"direction: must be one of {', '.join(DIRECTIONS)}")
        missed = request.args.get("missed", "").strip().lower()
        if missed not in ("", "true", "false", "1", "0"):
            raise ApiError(400, "missed: must be true or false")
        raw_customer = request.args.get("customer_id")
        customer_id = None
        if raw_customer is not None:
            if not raw_customer.isascii() or not raw_customer.isdigit() or len(raw_customer) > 9:
                raise ApiError(400, "customer_id: must be a whole number")
            customer_id = int(raw_customer)

        def work():
            wanted = {"true": True, "1": True, "false": False, "0": False}.get(missed)
            query = calls_query(since, until, extension, direction, wanted, customer_id)
            total = query.count()
            page = list(query.limit(limit).offset(offset))
            return {"total": total, "limit": limit, "offset": offset, "calls": records(page)}

        return jsonify(run(work))

    return bp
