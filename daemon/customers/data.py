"""Customer data: the input checks and the database steps shared by the JSON API (api.py) and the web pages (web/).

Each step works on the bound models inside the caller's transaction and raises DataError with the HTTP status
that fits (400 bad input, 404 missing, 409 conflict), so both front ends refuse the same things the same way.
Values go in as the API's JSON gives them (strings; ids as ints); a web form's strings are converted first. The
rules for the values themselves (amounts, categories, extensions, text lengths) are daemon/customers/values.py's, which the CSV
importer uses too.

Every change to a customer, a number, an order or an employee is also one line of the audit trail (db/audit.py), written here,
in the same transaction, so the API and the pages cannot make a change that leaves no trace.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import peewee

from screenpop.daemon.customers import fields as custom, values
from screenpop.daemon.customers.lookup import phone_columns
from screenpop.daemon.i18n import lazy_gettext
from screenpop.daemon.reports.callrecords import calls_query, records
from screenpop.db import audit, collation
from screenpop.db.models import Call, CallParty, Customer, Employee, Order, Phone, database, utcnow
from screenpop.db.numbers import Number, NumberRules

MAX_PHONES = 20
CUSTOMER_CALLS = 20
CUSTOMER_FIELDS = {k: values.MAX_CHARS["customer"][k] for k in ("name", "company", "city", "country", "note", "external_id")}
ORDER_FIELDS = {k: values.MAX_CHARS["order"][k] for k in ("title", "stage")}
MAX_ID = 2**31 - 1  # PostgreSQL's serial ids; the same bound on SQLite
FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(9998, 12, 31)  # what a period of calls may start or end on


class DataError(Exception):
    """Refused input or a conflict with what is stored; status is the HTTP status, extra goes into the answer."""

    def __init__(self, status: int, message: Message, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# ---- input checks ------------------------------------------------------------------------------------


def text(body: dict, key: str, max_len: int, required: bool = False) -> str | None:
    """A string field: must be a string, no NUL, valid Unicode, at most max_len characters (None if absent)."""
    if key not in body:
        if required:
            raise DataError(400, lazy_gettext("%(key)s: required", key=key))
        return None
    value = body[key]
    if not isinstance(value, str):
        raise DataError(400, lazy_gettext("%(key)s: must be a string", key=key))
    if "\x00" in value:
        raise DataError(400, lazy_gettext("%(key)s: must not contain NUL characters", key=key))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(400, lazy_gettext("%(key)s: must be valid Unicode (no lone surrogates)", key=key)) from None
    if len(value) > max_len:
        raise DataError(400, lazy_gettext("%(key)s: at most %(max_len)s characters", key=key, max_len=max_len))
    if required and not value.strip():
        raise DataError(400, lazy_gettext("%(key)s: must not be empty", key=key))
    return value


def ident(value: Any, key: str) -> int:
    """A row id: a whole number from 1 up."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise DataError(400, lazy_gettext("%(key)s: must be a positive whole number", key=key))
    return value


def in_period_range(value: dt.date, key: str) -> None:
    """A date or time bounding a period of calls: DataError 400 outside FIRST_DAY..LAST_DAY (there are no calls
    there, and days or zone offsets added to it would leave what dates can hold)."""
    day = value.date() if isinstance(value, dt.datetime) else value
    if not FIRST_DAY <= day <= LAST_DAY:
        raise DataError(400, lazy_gettext("%(key)s: must lie between %(first)s and %(last)s",
                                          key=key, first=FIRST_DAY, last=LAST_DAY))


def amount(value: Any, key: str, positive: bool = False) -> Decimal:
    """A money amount given as a decimal string, e.g. "1250.50": 0 or more, at most 2 decimals (daemon/customers/values.py)."""
    if not isinstance(value, str):
        raise DataError(400, lazy_gettext('%(key)s: must be a decimal string such as "1250.50" (no sign, at most 2 '
                                          'decimals)', key=key))
    try:
        result = values.amount(value)
    except ValueError as exc:
        raise DataError(400, lazy_gettext("%(key)s: %(reason)s", key=key, reason=exc)) from None
    if positive and result <= 0:
        raise DataError(400, lazy_gettext("%(key)s: must be more than 0", key=key))
    return result


def only(body: dict, allowed: set[str]) -> None:
    """Refuse unknown fields."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise DataError(400, lazy_gettext("unknown field(s): %(unknown)s", unknown=', '.join(unknown)))


def custom_input(body: dict) -> dict | None:
    """The custom field values of body's "fields" object as given (checked against the definitions when stored), or
    None when absent."""
    if "fields" not in body:
        return None
    given = body["fields"]
    if not isinstance(given, dict):
        raise DataError(400, lazy_gettext('fields: must be an object of field key: value, e.g. {"contract": "A-12"}'))
    return given


def customer_fields(body: dict) -> dict:
    """The customer columns present in body, checked; "" or None clears external_id. The category (checked against
    the list) and the custom values ("custom", checked against the definitions) are checked when stored."""
    fields = {}
    for key, max_len in CUSTOMER_FIELDS.items():
        value = text(body, key, max_len)
        if value is not None:
            fields[key] = value
    if "external_id" in body and body["external_id"] is None:
        fields["external_id"] = None
    elif fields.get("external_id") == "":
        fields["external_id"] = None
    if "category" in body:
        if not isinstance(body["category"], str):
            raise DataError(400, lazy_gettext("category: must be a string"))
        fields["category"] = body["category"]
    given = custom_input(body)
    if given is not None:
        fields["custom"] = given
    return fields


def phone_input(value: Any, key: str, rules: NumberRules) -> tuple[Number, str, str]:
    """(normalised number, as typed, label) from a number string or {"number", "label"}."""
    if isinstance(value, str):
        value = {"number": value}
    if not isinstance(value, dict):
        raise DataError(400, lazy_gettext("%(key)s: must be a number string or an object with number and label",
                                          key=key))
    try:
        only(value, {"number", "label"})
    except DataError as exc:
        raise DataError(400, lazy_gettext("%(key)s: %(reason)s", key=key, reason=exc.message)) from None
    raw = text(value, "number", 64, required=True)
    label = text(value, "label", 64) or ""
    number = rules.classify(raw)
    if number.kind == "extension":
        raise DataError(400, lazy_gettext("%(key)s: %(raw)r is an internal extension", key=key, raw=raw))
    if number.kind != "e164":
        raise DataError(400, lazy_gettext("%(key)s: %(raw)r is not a phone number that can be made E.164", key=key,
                                          raw=raw))
    return number, raw.strip(), label


def order_fields(body: dict, creating: bool) -> dict:
    """Order columns from body: number and amount only when creating; responsible_id an employee id or None."""
    fields: dict[str, Any] = {}
    if creating:
        fields["number"] = text(body, "number", values.MAX_CHARS["order"]["number"], required=True)
        fields["amount"] = amount(body["amount"], "amount") if "amount" in body else Decimal(0)
    for key, max_len in ORDER_FIELDS.items():
        value = text(body, key, max_len)
        if value is not None:
            fields[key] = value
        elif creating:
            fields[key] = ""
    if "responsible_id" in body:
        emp = body["responsible_id"]
        fields["responsible"] = None if emp is None else ident(emp, "responsible_id")
    given = custom_input(body)
    if given is not None or creating:
        fields["custom"] = given or {}
    return fields


def employee_fields(body: dict, required: bool) -> dict:
    """Employee columns from body: name, extension (letters, digits and * # + _ . -), active."""
    fields: dict[str, Any] = {}
    name = text(body, "name", values.MAX_CHARS["employee"]["name"], required=required)
    if name is not None:
        if not name.strip():
            raise DataError(400, lazy_gettext("name: must not be empty"))
        fields["name"] = name
    extension = text(body, "extension", values.MAX_CHARS["employee"]["extension"], required=required)
    if extension is not None:
        try:
            fields["extension"] = values.extension(extension)
        except ValueError as exc:
            raise DataError(400, lazy_gettext("extension: %(reason)s", reason=exc)) from None
    if "active" in body:
        if not isinstance(body["active"], bool):
            raise DataError(400, lazy_gettext("active: must be true or false"))
        fields["active"] = body["active"]
    return fields


# ---- representations ---------------------------------------------------------------------------------


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=dt.timezone.utc).isoformat(timespec="seconds")


def money(value: Any) -> str:
    return str(Decimal(value or 0).quantize(Decimal("0.01")))


def customer_brief(c: Customer) -> dict:
    return {"id": c.id, "external_id": c.external_id, "name": c.name, "company": c.company, "category": c.category,
            "city": c.city, "country": c.country}


CUSTOMER_SORTS = ("recent", "name", "company")


def customer_order(sort: str, lang: str) -> list:
    """ORDER BY terms of a customer list (one of CUSTOMER_SORTS): the latest changed first, or A to Z (Ö in
    Icelandic) in the reader's language by name or by company, the ones without last; ties by id, so pages never
    overlap."""
    if sort == "recent":
        return [Customer.updated_at.desc(), Customer.id.desc()]
    lang = lang if lang in collation.LANGUAGES else "en"
    name, company = getattr(Customer, f"name_key_{lang}"), getattr(Customer, f"company_key_{lang}")
    return [name, company, Customer.id] if sort == "name" else [company, name, Customer.id]


def customer_full(c: Customer) -> dict:
    out = customer_brief(c)
    out.update(note=c.note, has_photo=bool(c.photo), created_at=iso(c.created_at), updated_at=iso(c.updated_at),
               fields=custom.decode(c.custom))
    return out


def phone_dict(p: Phone) -> dict:
    return {"id": p.id, "e164": p.e164, "raw": p.raw, "label": p.label}


def order_dict(o: Order) -> dict:
    total, paid = Decimal(o.amount or 0), Decimal(o.paid or 0)
    return {"id": o.id, "customer_id": o.customer_id, "number": o.number, "title": o.title, "stage": o.stage,
            "responsible_id": o.responsible_id, "amount": money(total), "paid": money(paid),
            "debt": money(total - paid), "status": o.status, "fields": custom.decode(o.custom)}


def employee_dict(e: Employee) -> dict:
    return {"id": e.id, "name": e.name, "extension": e.extension, "active": e.active}


# ---- customers ---------------------------------------------------------------------------------------


def get_customer(customer_id: int) -> Customer:
    customer = Customer.get_or_none(Customer.id == customer_id)
    if customer is None:
        raise DataError(404, lazy_gettext("no customer %(customer_id)s", customer_id=customer_id))
    return customer


def customer_detail(customer_id: int, calls: int = CUSTOMER_CALLS) -> dict:
    """One customer with phones, orders, open debt and the latest calls (as GET /api/v1/customers/<id> gives it)."""
    c = get_customer(customer_id)
    out = customer_full(c)
    out["phones"] = [phone_dict(p) for p in Phone.select().where(Phone.customer == c.id).order_by(Phone.id)]
    out["orders"] = [order_dict(o) for o in Order.select().where(Order.customer == c.id).order_by(Order.id)]
    out["debt"] = money(sum((Decimal(o["debt"]) for o in out["orders"] if o["status"] == "open"), Decimal(0)))
    out["calls"] = records(list(calls_query(customer_id=c.id).limit(calls))) if calls else []
    return out


def check_name(fields: dict, current: Customer | None = None) -> None:
    """A customer needs a name or a company."""
    name = fields.get("name", current.name if current else "")
    company = fields.get("company", current.company if current else "")
    if not (name.strip() or company.strip()):
        raise DataError(400, lazy_gettext("name or company: one of them is required"))


def _stored_fields(fields: dict, current: Customer | None) -> dict:
    """fields with the category checked against the list (the default when creating without one) and the custom
    values checked against the definitions and merged into the stored ones (custom, custom_text); with the name's
    and company's sort keys when either changes."""
    db = database.obj
    out = {k: v for k, v in fields.items() if k != "custom"}
    if current is None or "name" in fields or "company" in fields:
        out.update(collation.customer_keys(fields.get("name", current.name if current else ""),
                                           fields.get("company", current.company if current else "")))
    if "category" in fields or current is None:
        listed = custom.load_categories(db)
        if "category" in fields:
            try:
                out["category"] = values.category(fields["category"], [c.name for c in listed])
            except ValueError as exc:
                raise DataError(400, lazy_gettext("category: %(reason)s", reason=exc)) from None
        else:
            out["category"] = custom.default_category(listed)
    if "custom" in fields or current is None:
        defs = custom.load_fields(db, "customer")
        try:
            change = custom.changes(defs, fields.get("custom") or {}, creating=current is None)
        except ValueError as exc:
            raise DataError(400, lazy_gettext("fields.%(reason)s", reason=exc)) from None
        found = custom.merged(custom.decode(current.custom) if current else {}, change)
        out["custom"], out["custom_text"] = custom.encode(found), custom.search_text(defs, found)
    return out


def create_customer(fields: dict, phones: list[tuple[Number, str, str]]) -> int:
    """A new customer with its numbers (checked with customer_fields / phone_input); its id."""
    check_name(fields)
    if fields.get("external_id") and Customer.get_or_none(Customer.external_id == fields["external_id"]):
        raise DataError(409, lazy_gettext("external_id: already used by another customer"))
    c = Customer.create(**_stored_fields(fields, None))
    audit.record("customer", c.id, "added", c.company or c.name, c.id)
    for number, raw, label in phones:
        store_phone(c.id, number, raw, label)
    return c.id


def update_customer(customer_id: int, fields: dict) -> None:
    c = get_customer(customer_id)
    check_name(fields, c)
    ext = fields.get("external_id")
    if ext and Customer.get_or_none((Customer.external_id == ext) & (Customer.id != c.id)):
        raise DataError(409, lazy_gettext("external_id: already used by another customer"))
    if fields:
        stored = _stored_fields(fields, c)
        Customer.update(**stored, updated_at=utcnow()).where(Customer.id == c.id).execute()
        changed = [key for key, value in stored.items() if key not in ("custom_text", *collation.KEY_COLUMNS)
                   and getattr(c, key) != value]
        if changed:
            audit.record("customer", c.id, "changed", ", ".join(_names(changed)), c.id)


def delete_customer(customer_id: int) -> str | None:
    """Delete a customer with phones and orders; calls keep their history, unlinked. Returns its photo file name."""
    c = get_customer(customer_id)
    # SQLite may not enforce ON DELETE without pragmas: unlink and delete explicitly.
    Call.update(customer=None).where(Call.customer == customer_id).execute()
    Phone.delete().where(Phone.customer == customer_id).execute()
    Order.delete().where(Order.customer == customer_id).execute()
    Customer.delete().where(Customer.id == customer_id).execute()
    audit.record("customer", customer_id, "deleted", c.company or c.name, customer_id)
    return c.photo


# ---- phones ------------------------------------------------------------------------------------------


def store_phone(customer_id: int, number: Number, raw: str, label: str) -> Phone:
    """Add a number; a number any customer has already is refused (409 naming the owner), never moved."""
    owner = Phone.get_or_none(Phone.e164 == number.e164)
    if owner is not None:
        if owner.customer_id == customer_id:
            raise DataError(409, lazy_gettext("%(e164)s is already a number of this customer", e164=number.e164),
                            customer_id=owner.customer_id)
        raise DataError(409, lazy_gettext("%(e164)s is already a number of customer %(id)s", e164=number.e164,
                                          id=owner.customer_id), customer_id=owner.customer_id)
    phone = Phone.create(customer=customer_id, **phone_columns(number), raw=raw, label=label)
    audit.record("phone", phone.id, "added", f"{number.e164} ({label})" if label else number.e164, customer_id)
    return phone


def add_phone(customer_id: int, number: Number, raw: str, label: str) -> Phone:
    get_customer(customer_id)
    phone = store_phone(customer_id, number, raw, label)
    Customer.update(updated_at=utcnow()).where(Customer.id == customer_id).execute()
    return phone


def remove_phone(customer_id: int, phone_id: int) -> None:
    phone = Phone.get_or_none((Phone.id == phone_id) & (Phone.customer == customer_id))
    if phone is None or not Phone.delete().where(Phone.id == phone_id).execute():
        raise DataError(404, lazy_gettext("no phone %(phone_id)s of customer %(customer_id)s",
                                          phone_id=phone_id, customer_id=customer_id))
    audit.record("phone", phone_id, "removed", phone.e164, customer_id)


def link_calls(customer_id: int, e164: str | None, call_uuid: str | None) -> int:
    """Give the call call_uuid, and every call from e164 that has no customer, to this customer; how many."""
    which = []
    if e164:
        which.append(Call.external_e164 == e164)
    if call_uuid:
        which.append(Call.uuid == call_uuid)
    if not which:
        return 0
    cond = which[0] if len(which) == 1 else which[0] | which[1]
    return Call.update(customer=customer_id, matches=1).where(Call.customer.is_null() & cond).execute()


def link_call(customer_id: int, call_uuid: str) -> None:
    """Give one call to this customer: the operator chose them among the customers who share its number. Only a
    call nobody has yet: one already on a record stays there (409), so a second click cannot move it."""
    get_customer(customer_id)
    call = Call.get_or_none(Call.uuid == call_uuid)
    if call is None:
        raise DataError(404, lazy_gettext("no call %(call_uuid)s", call_uuid=call_uuid))
    if call.customer_id == customer_id:
        return
    if call.customer_id is not None:
        raise DataError(409, lazy_gettext("This call is on another customer's record already."),
                        customer_id=call.customer_id)
    Call.update(customer=customer_id, matches=1).where(Call.id == call.id).execute()


# ---- orders ------------------------------------------------------------------------------------------


def get_order(order_id: int) -> Order:
    order = Order.get_or_none(Order.id == order_id)
    if order is None:
        raise DataError(404, lazy_gettext("no order %(order_id)s", order_id=order_id))
    return order


def _check_employee(fields: dict) -> None:
    emp = fields.get("responsible")
    if emp is not None and Employee.get_or_none(Employee.id == emp) is None:
        raise DataError(400, lazy_gettext("responsible_id: no employee %(emp)s", emp=emp))


def _order_custom(fields: dict, current: Order | None) -> dict:
    """fields with the custom values checked against the order fields' definitions and merged into the stored ones."""
    if "custom" not in fields:
        return fields
    defs = custom.load_fields(database.obj, "order")
    try:
        change = custom.changes(defs, fields["custom"], creating=current is None)
    except ValueError as exc:
        raise DataError(400, lazy_gettext("fields.%(reason)s", reason=exc)) from None
    found = custom.merged(custom.decode(current.custom) if current else {}, change)
    return {**fields, "custom": custom.encode(found)}


def create_order(customer_id: int, fields: dict) -> Order:
    get_customer(customer_id)
    _check_employee(fields)
    if Order.get_or_none(Order.number == fields["number"]):
        raise DataError(409, lazy_gettext("number: order %(number)r exists already", number=fields['number']))
    order = Order.create(customer=customer_id, **_order_custom(fields, None))
    audit.record("order", order.id, "added", order.number, customer_id)
    return order


def update_order(order_id: int, fields: dict) -> Order:
    order = get_order(order_id)
    if order.status != "open":
        raise DataError(409, lazy_gettext("order %(order_id)s is closed", order_id=order_id))
    _check_employee(fields)
    if fields:
        Order.update(**_order_custom(fields, order)).where(Order.id == order_id).execute()
        audit.record("order", order_id, "changed", f"{order.number}: {', '.join(_names(fields))}", order.customer_id)
    return get_order(order_id)


def pay(order_id: int, paid_now: Decimal) -> Order:
    """Record a payment; refused when the order is closed or the total paid would pass the amount."""
    query = Order.select().where(Order.id == order_id)
    if not isinstance(database.obj, peewee.SqliteDatabase):
        query = query.for_update()  # a payment recorded alongside waits for this one (SQLite: one writer anyway)
    order = query.get_or_none()
    if order is None:
        raise DataError(404, lazy_gettext("no order %(order_id)s", order_id=order_id))
    if order.status != "open":
        raise DataError(409, lazy_gettext("order %(order_id)s is closed", order_id=order_id))
    paid = Decimal(order.paid or 0) + paid_now
    if paid > Decimal(order.amount or 0):
        raise DataError(400, lazy_gettext("amount: paid would be %(paid)s, above the order amount %(amount)s",
                                          paid=money(paid), amount=money(order.amount)),
                        debt=money(Decimal(order.amount or 0) - Decimal(order.paid or 0)))
    Order.update(paid=paid).where(Order.id == order_id).execute()
    audit.record("order", order_id, "paid", f"{order.number}: {money(paid_now)}", order.customer_id)
    return get_order(order_id)


def close_order(order_id: int) -> Order:
    order = get_order(order_id)
    Order.update(status="closed").where(Order.id == order_id).execute()
    audit.record("order", order_id, "closed", order.number, order.customer_id)
    return get_order(order_id)


def _names(columns: list[str] | dict) -> list[str]:
    """Changed columns as an audit line names them: the custom field values are "fields"."""
    return ["fields" if column == "custom" else column for column in columns]


# ---- employees ---------------------------------------------------------------------------------------


def get_employee(employee_id: int) -> Employee:
    emp = Employee.get_or_none(Employee.id == employee_id)
    if emp is None:
        raise DataError(404, lazy_gettext("no employee %(employee_id)s", employee_id=employee_id))
    return emp


def _extension_free(extension: str | None, employee_id: int | None) -> None:
    if extension is None:
        return
    other = Employee.get_or_none(Employee.extension == extension)
    if other is not None and other.id != employee_id:
        raise DataError(409, lazy_gettext("extension: %(extension)s belongs to employee %(id)s",
                                          extension=extension, id=other.id), employee_id=other.id)


def employee_line(extension: str, name: str) -> str:
    """An employee as an audit line names them: "1001 Anna Jónsdóttir"."""
    return f"{extension} {name}"


def create_employee(fields: dict) -> Employee:
    _extension_free(fields["extension"], None)
    emp = Employee.create(**fields)
    audit.record("employee", emp.id, "added", employee_line(emp.extension, emp.name))
    return emp


def update_employee(employee_id: int, fields: dict) -> Employee:
    current = get_employee(employee_id)
    _extension_free(fields.get("extension"), employee_id)
    changed = {k: v for k, v in fields.items() if getattr(current, k) != v}
    if changed:
        Employee.update(**changed).where(Employee.id == employee_id).execute()
        audit.record("employee", employee_id, "changed", employee_line(current.extension, current.name) + ": " + ", ".join(
            f"{k} {('yes' if v else 'no') if isinstance(v, bool) else v}" for k, v in changed.items()))
    return get_employee(employee_id)


def delete_employee(employee_id: int) -> None:
    """Delete an employee; their orders, calls and call parties stay, without them."""
    emp = get_employee(employee_id)
    Order.update(responsible=None).where(Order.responsible == employee_id).execute()
    Call.update(employee=None).where(Call.employee == employee_id).execute()
    CallParty.update(employee=None).where(CallParty.employee == employee_id).execute()
    Employee.delete().where(Employee.id == employee_id).execute()
    audit.record("employee", employee_id, "deleted", employee_line(emp.extension, emp.name))
