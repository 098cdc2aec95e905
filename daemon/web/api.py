"""The JSON API for customer data (docs/api.md): customers, phones, orders, employees, calls, missed calls followed up,
click-to-call, custom fields and categories (docs/customfields.md), call recordings (docs/recordings.md).

A Flask blueprint on the daemon's HTTP server. Every database step runs on the database worker
(db/worker.py, ``hub.worker.atomic``), in one short transaction, with its own connection, so it never holds the call writer up for
long. Authentication is the server's own Bearer check; operators read and edit customers, phones and orders;
employee writes and every delete need an admin token. Every error is JSON ``{"error": "..."}``.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from screenpop.daemon import i18n
from screenpop.daemon.auth import roles
from screenpop.daemon.config import RecordingsConfig
from screenpop.daemon.customers import admin as admin_steps, data, fields as custom
from screenpop.daemon.customers.data import CUSTOMER_FIELDS, DataError, in_period_range
from screenpop.daemon.i18n import Message, lazy_gettext
from screenpop.daemon.pbx.originate import OriginateError, Originator
from screenpop.daemon.push import layouts as layout_steps
from screenpop.daemon.reports import missed as missed_calls
from screenpop.daemon.reports.callrecords import calls_query, records
from screenpop.daemon.web import recordings as recording_steps
from screenpop.daemon.web.pages import forms
from screenpop.db import audit
from screenpop.db.models import DIRECTIONS, Customer, Employee, Phone
from screenpop.db.search import MAX_RESULTS, search_customers

MAX_BODY = 64 * 1024  # a request body under /api/ (web/server.py refuses larger ones)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def _body(allowed: set[str]) -> dict:
    """The request's JSON object: 415 when not JSON, 400 when not an object or unknown fields.

    A body above MAX_BODY never gets here: the server refuses it (413) from its Content-Length, or while reading.
    """
    if request.mimetype != "application/json":
        raise DataError(415, lazy_gettext("the body must be JSON (Content-Type: application/json)"))
    body_bytes = request.stream.read()
    try:
        body = json.loads(body_bytes)
    except (ValueError, RecursionError):
        raise DataError(400, lazy_gettext("the body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise DataError(400, lazy_gettext("the body must be a JSON object"))
    data.only(body, allowed)
    return body


def _page() -> tuple[int, int]:
    def number(key: str, default: int, low: int, high: int) -> int:
        raw = request.args.get(key)
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
            raise DataError(400, lazy_gettext("%(key)s: must be a whole number", key=key))
        value = int(raw)
        if not low <= value <= high:
            raise DataError(400, lazy_gettext("%(key)s: must be between %(low)s and %(high)s",
                                              key=key, low=low, high=high))
        return value

    return number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT), number("offset", 0, 0, 10**9)


def _when(key: str) -> dt.datetime | None:
    raw = request.args.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise DataError(400, lazy_gettext("%(key)s: must be an ISO 8601 date or time, e.g. 2026-01-31T08:00:00Z",
                                          key=key)) from None
    in_period_range(value, key)  # before the offset is applied, which could leave what a datetime holds
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def blueprint(hub, authenticate: Callable[[], Any], originator: Originator | None = None,
              on_employees_changed: Callable[[], None] | None = None,
              recordings: RecordingsConfig | None = None) -> Blueprint:
    """The /api/v1 customer-data routes and click-to-call; hub runs the database work, authenticate is the server's
    token check, originator places calls (None: this daemon does not follow FreeSWITCH), on_employees_changed
    refreshes the daemon's employee snapshot after an employee write (None: there is none to refresh); recordings:
    who may listen to call recordings and the folders they are served from."""
    recordings = recordings or RecordingsConfig()
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    db = hub.db

    def run(fn: Callable, *args: Any) -> Any:
        """fn(*args) in one transaction on the database worker, the request's token named in the audit trail."""
        check = request.environ.get("screenpop.token")
        actor = audit.Actor(token_id=check.token_id) if check is not None else None
        return hub.worker.atomic(audit.acting(actor, fn), *args)

    def rules():
        return hub.cards.lookup().rules

    @bp.before_request
    def check_token():
        check = authenticate()
        if isinstance(check, Response):
            return check
        request.environ["screenpop.role"] = check.role
        request.environ["screenpop.token"] = check
        return None

    def admin(what: Message, capability: str = "configuration") -> None:
        """Refuse (403) unless the token's role allows capability (daemon/auth/roles.py)."""
        role = request.environ.get("screenpop.role")
        if not roles.allows(role, capability):
            raise DataError(403, lazy_gettext("%(what)s needs a token whose role allows %(allowed)s (%(needs)s)",
                                              what=what, allowed=roles.WHAT[capability],
                                              needs=roles.NAMES[roles.NEEDS[capability]]))

    @bp.errorhandler(DataError)
    def api_error(exc: DataError):
        response = jsonify(error=exc.message, **exc.extra)
        response.status_code = exc.status
        return response

    # ---- customers ---------------------------------------------------------------------------------

    @bp.get("/customers")
    def list_customers():
        limit, offset = _page()
        q = request.args.get("q", "").strip()
        if len(q) > 200:
            raise DataError(400, lazy_gettext("q: at most 200 characters"))
        if "\x00" in q:
            raise DataError(400, lazy_gettext("q: must not contain NUL characters"))
        sort = request.args.get("sort", "id")
        if sort not in ("id", *data.CUSTOMER_SORTS) or (q and sort != "id"):
            raise DataError(400, lazy_gettext("sort: id, name, company or recent, and only without q (search results "
                                              "come by relevance)"))
        order = [Customer.id] if sort == "id" else data.customer_order(sort, i18n.language())
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
                rows = list(query.order_by(*order).limit(limit).offset(offset))
            phones: dict[int, list[dict]] = defaultdict(list)
            if rows:
                for p in Phone.select().where(Phone.customer.in_([c.id for c in rows])).order_by(Phone.id):
                    phones[p.customer_id].append(data.phone_dict(p))
            return {"total": total, "limit": limit, "offset": offset,
                    "customers": [{**data.customer_brief(c), "phones": phones[c.id]} for c in rows]}

        return jsonify(run(work))

    @bp.get("/customers/<int:customer_id>")
    def get_one(customer_id: int):
        return jsonify(run(data.customer_detail, customer_id))

    @bp.post("/customers")
    def create_customer():
        body = _body(set(CUSTOMER_FIELDS) | {"category", "phones", "fields"})
        fields = data.customer_fields(body)
        data.check_name(fields)
        phones = body.get("phones", [])
        if not isinstance(phones, list) or len(phones) > data.MAX_PHONES:
            raise DataError(400, lazy_gettext("phones: must be a list of at most %(max)s numbers", max=data.MAX_PHONES))
        wanted = [data.phone_input(p, f"phones[{i}]", rules()) for i, p in enumerate(phones)]
        customer_id = run(data.create_customer, fields, wanted)
        response = get_one(customer_id)
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/customers/{customer_id}"
        return response

    @bp.patch("/customers/<int:customer_id>")
    def update_customer(customer_id: int):
        fields = data.customer_fields(_body(set(CUSTOMER_FIELDS) | {"category", "fields"}))
        run(data.update_customer, customer_id, fields)
        return get_one(customer_id)

    @bp.delete("/customers/<int:customer_id>")
    def delete_customer(customer_id: int):
        admin(lazy_gettext("deleting a customer"), "delete_customers")
        run(data.delete_customer, customer_id)
        return "", 204

    # ---- phones ------------------------------------------------------------------------------------

    @bp.post("/customers/<int:customer_id>/phones")
    def add_phone(customer_id: int):
        number, raw, label = data.phone_input(_body({"number", "label"}), "phone", rules())
        return jsonify(run(lambda: data.phone_dict(data.add_phone(customer_id, number, raw, label)))), 201

    @bp.delete("/customers/<int:customer_id>/phones/<int:phone_id>")
    def remove_phone(customer_id: int, phone_id: int):
        admin(lazy_gettext("removing a number"), "delete_customers")
        run(data.remove_phone, customer_id, phone_id)
        return "", 204

    # ---- orders ------------------------------------------------------------------------------------

    @bp.post("/customers/<int:customer_id>/orders")
    def create_order(customer_id: int):
        fields = data.order_fields(_body({"number", "title", "stage", "responsible_id", "amount", "fields"}),
                                   creating=True)
        return jsonify(run(lambda: data.order_dict(data.create_order(customer_id, fields)))), 201

    @bp.get("/orders/<int:order_id>")
    def read_order(order_id: int):
        return jsonify(run(lambda: data.order_dict(data.get_order(order_id))))

    @bp.patch("/orders/<int:order_id>")
    def update_order(order_id: int):
        fields = data.order_fields(_body({"title", "stage", "responsible_id", "fields"}), creating=False)
        return jsonify(run(lambda: data.order_dict(data.update_order(order_id, fields))))

    @bp.post("/orders/<int:order_id>/payments")
    def pay(order_id: int):
        body = _body({"amount"})
        if "amount" not in body:
            raise DataError(400, lazy_gettext("amount: required"))
        paid_now = data.amount(body["amount"], "amount", positive=True)
        return jsonify(run(lambda: data.order_dict(data.pay(order_id, paid_now))))

    @bp.post("/orders/<int:order_id>/close")
    def close(order_id: int):
        return jsonify(run(lambda: data.order_dict(data.close_order(order_id))))

    # ---- employees ---------------------------------------------------------------------------------

    @bp.get("/employees")
    def list_employees():
        limit, offset = _page()

        def work():
            query = Employee.select()
            return {"total": query.count(), "limit": limit, "offset": offset,
                    "employees": [data.employee_dict(e) for e in query.order_by(Employee.id).limit(limit).offset(offset)]}

        return jsonify(run(work))

    def employees_written(result: Any) -> Any:
        """After an employee write: the daemon's employee snapshot (cards, number rules) follows before the answer."""
        if on_employees_changed is not None:
            on_employees_changed()
        return result

    @bp.post("/employees")
    def create_employee():
        admin(lazy_gettext("adding an employee"))
        fields = data.employee_fields(_body({"name", "extension", "active"}), required=True)
        return jsonify(employees_written(run(lambda: data.employee_dict(data.create_employee(fields))))), 201

    @bp.patch("/employees/<int:employee_id>")
    def update_employee(employee_id: int):
        admin(lazy_gettext("changing an employee"))
        fields = data.employee_fields(_body({"name", "extension", "active"}), required=False)
        return jsonify(employees_written(run(lambda: data.employee_dict(data.update_employee(employee_id, fields)))))

    @bp.delete("/employees/<int:employee_id>")
    def delete_employee(employee_id: int):
        admin(lazy_gettext("deleting an employee"))
        employees_written(run(data.delete_employee, employee_id))
        return "", 204

    # ---- custom fields and categories (docs/customfields.md) -----------------------------------------

    @bp.get("/fields")
    def list_fields():
        entity = request.args.get("entity")
        if entity is not None and entity not in ("customer", "order"):
            raise DataError(400, lazy_gettext("entity: must be customer or order"))
        return jsonify(fields=[f.as_dict() for f in run(custom.load_fields, db, entity)])

    @bp.post("/fields")
    def create_field():
        admin(lazy_gettext("defining a field"))
        body = admin_steps.field_input(_body({"entity", "key", "label", "type", "required", "options", "position"}),
                                       creating=True)
        return jsonify(run(admin_steps.create_field, body).as_dict()), 201

    @bp.patch("/fields/<int:field_id>")
    def update_field(field_id: int):
        admin(lazy_gettext("changing a field"))
        body = admin_steps.field_input(_body({"label", "required", "options", "position"}), creating=False)
        return jsonify(run(admin_steps.update_field, field_id, body).as_dict())

    @bp.delete("/fields/<int:field_id>")
    def delete_field(field_id: int):
        admin(lazy_gettext("removing a field"))
        removed = run(admin_steps.delete_field, field_id, request.args.get("confirm"))
        return jsonify(removed_values=removed)

    @bp.get("/categories")
    def list_categories():
        return jsonify(categories=[c.as_dict() for c in run(custom.load_categories, db)])

    def category_dict(row) -> dict:
        return custom.Category(row.name, row.colour, row.flag, row.position, row.is_default).as_dict()

    @bp.post("/categories")
    def create_category():
        admin(lazy_gettext("adding a category"))
        fields = admin_steps.category_input(_body({"name", "colour", "flag", "position", "default"}), creating=True)
        return jsonify(category_dict(run(admin_steps.create_category, fields))), 201

    @bp.patch("/categories/<name>")
    def update_category(name: str):
        admin(lazy_gettext("changing a category"))
        fields = admin_steps.category_input(_body({"name", "colour", "flag", "position", "default"}), creating=False)
        return jsonify(category_dict(run(admin_steps.update_category, name, fields)))

    @bp.delete("/categories/<name>")
    def delete_category(name: str):
        admin(lazy_gettext("deleting a category"))
        moved = run(admin_steps.delete_category, name, request.args.get("move_to"))
        return jsonify(moved_customers=moved)

    # ---- card layouts and teams (docs/card.md, "Layouts") ----------------------------------------------

    def change(what: Message, step: Callable, *args: Any) -> Any:
        """An admin's step on the layouts or teams; this daemon's next card reads them again (other daemons within
        [card] layout_reload)."""
        admin(what)
        result = run(step, *args)
        if hub.cards.layouts is not None:
            hub.cards.layouts.changed()
        return result

    @bp.get("/layouts")
    def list_layouts():
        def read():
            layouts, teams = layout_steps.load(db)
            return layouts, teams, layout_steps.known_keys(db, layout_steps.source_names(hub.sources))
        layouts, teams, keys = run(read)
        return jsonify(layouts=[x.as_dict() for x in layouts], teams=[t.as_dict() for t in teams],
                       keys={key: str(what) for key, what in keys.items()})  # in the caller's Accept-Language

    @bp.put("/layouts/<name>")
    def put_layout(name: str):
        admin(lazy_gettext("changing a card layout"))
        body = _body({"items"})
        if "items" not in body:
            raise DataError(400, lazy_gettext("items: required"))
        layout, created = change(lazy_gettext("changing a card layout"), layout_steps.save_layout, name, body["items"],
                                 layout_steps.source_names(hub.sources))
        return jsonify(layout.as_dict()), 201 if created else 200

    @bp.delete("/layouts/<name>")
    def delete_layout(name: str):
        change(lazy_gettext("deleting a card layout"), layout_steps.delete_layout, name)
        return "", 204

    @bp.get("/teams")
    def list_teams():
        return jsonify(teams=[t.as_dict() for t in run(layout_steps.load, db)[1]])

    @bp.put("/teams/<name>")
    def put_team(name: str):
        admin(lazy_gettext("changing a team"))
        layout, extensions = layout_steps.team_input(_body({"layout", "extensions"}))
        team, created = change(lazy_gettext("changing a team"), layout_steps.save_team, name, layout, extensions)
        return jsonify(team.as_dict()), 201 if created else 200

    @bp.delete("/teams/<name>")
    def delete_team(name: str):
        change(lazy_gettext("deleting a team"), layout_steps.delete_team, name)
        return "", 204

    # ---- calls -------------------------------------------------------------------------------------

    @bp.get("/calls")
    def list_calls():
        limit, offset = _page()
        since, until = _when("since"), _when("until")
        extension = request.args.get("extension", "").strip()
        if len(extension) > 32:
            raise DataError(400, lazy_gettext("extension: at most 32 characters"))
        check = request.environ["screenpop.token"]
        if not roles.allows(check.role, "team_calls"):  # an operator's own calls only
            if extension and extension != check.extension:
                raise DataError(403, lazy_gettext("an operator token sees only the calls of its own extension"))
            extension = check.extension
        direction = request.args.get("direction", "").strip().upper()
        if direction and direction not in DIRECTIONS:
            raise DataError(400, lazy_gettext("direction: must be one of %(directions)s",
                                              directions=', '.join(DIRECTIONS)))
        missed = request.args.get("missed", "").strip().lower()
        if missed not in ("", "true", "false", "1", "0"):
            raise DataError(400, lazy_gettext("missed: must be true or false"))
        raw_customer = request.args.get("customer_id")
        customer_id = None
        if raw_customer is not None:
            if not raw_customer.isascii() or not raw_customer.isdigit() or len(raw_customer) > 9:
                raise DataError(400, lazy_gettext("customer_id: must be a whole number"))
            customer_id = int(raw_customer)

        def work():
            wanted = {"true": True, "1": True, "false": False, "0": False}.get(missed)
            query = calls_query(since, until, extension, direction, wanted, customer_id)
            total = query.count()
            page = list(query.limit(limit).offset(offset))
            return {"total": total, "limit": limit, "offset": offset, "calls": records(page)}

        return jsonify(run(work))

    # ---- missed calls followed up (docs/api.md) ----------------------------------------------------

    def own_extension() -> str | None:
        """An operator's extension (they see and mark only the missed calls that rang it); None for a manager or admin."""
        check = request.environ["screenpop.token"]
        return None if roles.allows(check.role, "team_calls") else check.extension

    def follow_up(fn: Callable, *args: Any) -> Any:
        try:
            return run(fn, *args)
        except missed_calls.FollowUpError as exc:
            raise DataError(exc.status, exc.message) from None

    @bp.get("/missed")
    def list_missed():
        limit, offset = _page()
        state = request.args.get("state", "open").strip().lower()
        if state not in missed_calls.STATES:
            raise DataError(400, lazy_gettext("state: must be one of %(states)s",
                                              states=', '.join(missed_calls.STATES)))
        extension = request.args.get("extension", "").strip()
        if len(extension) > 32:
            raise DataError(400, lazy_gettext("extension: at most 32 characters"))
        mine = own_extension()
        if mine is not None and extension not in ("", mine):
            raise DataError(403, lazy_gettext(
                "an operator token sees the missed calls of its own extension (%(mine)s) only", mine=mine))
        scope = missed_calls.Scope(_when("since"), _when("until"), mine or extension or None)
        return jsonify(follow_up(missed_calls.follow_up, state, scope, limit, offset))

    _uuid = forms.known_call_uuid

    @bp.post("/missed/<call_uuid>/done")
    def missed_done(call_uuid: str):
        check = request.environ["screenpop.token"]
        return jsonify(follow_up(missed_calls.mark_done, _uuid(call_uuid), own_extension(), check.extension,
                                 check.token_id))

    @bp.delete("/missed/<call_uuid>/done")
    def missed_undo(call_uuid: str):
        return jsonify(follow_up(missed_calls.undo, _uuid(call_uuid), own_extension()))

    # ---- recordings (docs/recordings.md) ---------------------------------------------------------------

    def listener(call_uuid: str) -> Any:
        """The token, once it may listen to this call's recordings (403 otherwise)."""
        check = request.environ["screenpop.token"]
        extensions = run(recording_steps.call_extensions, call_uuid)
        if not recording_steps.may_listen(recordings.listen, check.role, check.extension, extensions):
            raise DataError(403, lazy_gettext(
                "this token may not listen to this call's recordings ([recordings] listen)"))
        return check

    @bp.get("/calls/<call_uuid>/recordings")
    def list_recordings(call_uuid: str):
        uuid = _uuid(call_uuid)
        listener(uuid)
        return jsonify(recordings=run(recording_steps.listing, uuid))

    @bp.get("/calls/<call_uuid>/recordings/<int:rec_id>/audio")
    def recording_audio(call_uuid: str, rec_id: int):
        uuid = _uuid(call_uuid)
        check = listener(uuid)
        rec, _ = run(recording_steps.find, uuid, rec_id)
        if rec is None:
            raise DataError(404, lazy_gettext("call %(uuid)s has no recording %(rec_id)s", uuid=uuid, rec_id=rec_id))
        who = f"token {check.token_id}" + (f" ({check.extension})" if check.extension else "")
        return recording_steps.audio(
            rec, recordings.served_roots(), request.headers.get("Range"), request.headers.get("If-Range"), run,
            lambda: run(recording_steps.log_listen, rec.id, uuid, check.token_id, who, check.role))

    @bp.put("/calls/<call_uuid>/hold")
    def hold_recordings(call_uuid: str):
        body = _body({"keep"})
        if not isinstance(body.get("keep"), bool):
            raise DataError(400, lazy_gettext("keep: required, true (hold from deletion) or false (release)"))
        if not roles.allows(request.environ.get("screenpop.role"), "hold_recordings"):
            raise DataError(403, lazy_gettext("holding recordings from deletion needs a manager or admin token"))
        uuid = _uuid(call_uuid)
        count = run(recording_steps.hold, uuid, body["keep"])
        return jsonify(call_uuid=uuid, keep=body["keep"], recordings=count)

    # ---- click-to-call ----------------------------------------------------------------------------

    @bp.post("/originate")
    def originate():
        body = _body({"number", "extension"})
        number, extension = body.get("number"), body.get("extension")
        if not isinstance(number, str) or not number.strip():
            raise DataError(400, lazy_gettext("number: required, a phone number as text"))
        if extension is not None and not isinstance(extension, str):
            raise DataError(400, lazy_gettext("extension: must be text"))
        if originator is None:
            raise DataError(503, lazy_gettext("this daemon does not follow FreeSWITCH: the call cannot be placed here"))
        check = request.environ["screenpop.token"]
        try:
            uuid = originator.place(check.token_id, roles.allows(check.role, "team_calls"), check.extension, extension, number)
        except OriginateError as exc:
            extra = {"cause": exc.cause} if exc.cause else {}
            response = jsonify(error=exc.message, **extra)
            response.status_code = exc.status
            if exc.retry_after is not None:
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        return jsonify(status="dialling", uuid=uuid)

    return bp
