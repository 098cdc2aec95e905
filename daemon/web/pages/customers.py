"""Customer pages: search, the chooser for a shared number, the full record, a new customer during a call, edit, numbers, photo, delete.

/customers/new?number=…[&call=<uuid>] is where a tray sends the operator for an unknown caller: create the
customer with the number filled in, or add the number to a customer found by search. Either way the call (and
the number's other calls without a customer) is linked to that customer, in the database and in the daemon's
tracker, so the rest of this call's pops and every later call from the number carry the full card.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Blueprint, abort, flash, redirect, request, send_file

from screenpop.daemon.analysis import store as analysis
from screenpop.daemon.i18n import Message, gettext as _, language, ngettext
from screenpop.daemon.customers import data
from screenpop.daemon.customers.data import CUSTOMER_FIELDS, DataError
from screenpop.daemon.customers.photos import image_job, photo_response
from screenpop.daemon.web.pages import forms
from screenpop.daemon.web import recordings
from screenpop.daemon.web.pages.base import (categories, current_user, database, error_page, field_defs, log,
                                             login_required, number_rules, render_page, web)
from screenpop.daemon.customers import photofiles
from screenpop.daemon.customers.images import ImageRejected
from screenpop.daemon.customers.record import customer_record
from screenpop.daemon.customers.values import caller_name
from screenpop.db import audit, collation
from screenpop.db.models import Call, Customer, Employee, Phone
from screenpop.db.numbers import WITHHELD
from screenpop.db.search import search_customers

PER_PAGE = 25
CALLS_PER_PAGE = 20
SOURCE_NUMBERS = 3  # a record's numbers the sources are asked about (the first ones added)
ALERTS_SHOWN = 20  # the newest phrase alert matches in the customer's calls
NEW_MATCHES = 20
EDIT_FIELDS = (*CUSTOMER_FIELDS, "category")

bp = Blueprint("customers", __name__)


def _with_phones(ids: list[int]) -> list[dict]:
    """Customers (as the API's brief form, plus their numbers) in the order of ids."""
    if not ids:
        return []
    rows = {c.id: c for c in Customer.select().where(Customer.id.in_(ids))}
    out = {i: {**data.customer_brief(rows[i]), "phones": []} for i in ids if i in rows}
    for p in Phone.select().where(Phone.customer.in_(ids)).order_by(Phone.id):
        out[p.customer_id]["phones"].append(data.phone_dict(p))
    return [out[i] for i in ids if i in out]


def _link(customer_id: int, e164: str | None, call: str | None) -> None:
    """After a number was given to a customer: tell the daemon's tracker, so the running call's pops have the card."""
    on_link = web().on_link
    if on_link is not None and (e164 or call):
        on_link(customer_id, e164, call)


# ---- search ------------------------------------------------------------------------------------------


@bp.get("/customers")
@login_required()
def search():
    q = request.args.get("q", "").strip()[:200].replace("\x00", "")
    sort = request.args.get("sort", "recent")
    sort = sort if sort in data.CUSTOMER_SORTS else "recent"
    page = forms.page()
    offset = (page - 1) * PER_PAGE
    db = web().hub.db

    rules, order = number_rules(), data.customer_order(sort, language())

    def work():
        if q:
            ids = search_customers(db, q, PER_PAGE + 1, offset, rules=rules)
        else:
            ids = [c for (c,) in Customer.select(Customer.id).order_by(*order)
                   .limit(PER_PAGE + 1).offset(offset).tuples()]
        return _with_phones(ids[:PER_PAGE]), len(ids) > PER_PAGE

    customers, more = database(work)
    return render_page("search.html", title=_("Customers"), q=q, sort=sort, customers=customers, page=page, more=more)


@bp.get("/customers/choose")
@login_required()
def choose():
    """The customers who share a caller's number, found by the same lookup as the card's (a tray's pop for a number
    several customers have opens this), each linking to its record."""
    number = request.args.get("number", "").strip()[:64].replace("\x00", "")
    if not number:
        return error_page(400, _("Which number? This page lists the customers who share a number (?number=…)."))
    call = forms.call_uuid(request.args.get("call"))
    cards = web().hub.cards

    order = data.customer_order("company", language())

    def work():
        found = cards.lookup().find(number)
        row = Call.get_or_none(Call.uuid == call) if call else None
        ids = [c for (c,) in Customer.select(Customer.id).where(Customer.id.in_(list(found.candidates)))
               .order_by(*order).tuples()] if found.candidates else []
        return found.matches, _with_phones(ids), row

    matches, customers, call_row = database(work)
    # the pop's call, when nobody has it yet: each customer gets a button that puts it on their record
    linkable = call_row is not None and call_row.customer_id is None
    return render_page("choose.html", title=_("Which customer?"), number=number, matches=matches, customers=customers,
                       call=call if linkable else None)


@bp.post("/customers/<int:customer_id>/calls")
@login_required()
def link_call(customer_id: int):
    """The chooser's "This is the caller": the call goes on this customer's record, and its next pops carry the card."""
    call = forms.call_uuid(request.form.get("call"))
    if call is None:
        return error_page(400, _("Which call? The form names the call by its UUID."))
    try:
        database(data.link_call, customer_id, call)
    except DataError as exc:
        if exc.status == 409:
            flash(str(exc.message))
            return redirect(f"/customers/{exc.extra['customer_id']}", 303)
        return error_page(exc.status, exc.message[0].upper() + exc.message[1:] + ".")
    _link(customer_id, None, call)
    log.info("call %s linked to customer %d on the chooser", call, customer_id)
    flash(_("This call is now on their record."))
    return redirect(f"/customers/{customer_id}", 303)


# ---- the record --------------------------------------------------------------------------------------


def record_page(customer_id: int, status: int = 200, error: str | None = None, owner: int | None = None):
    """The full record; error (with the status) when a form on it was refused, owner when a number is taken."""
    before = forms.row_id("calls_before")
    db = web().hub.db

    user, listen, lang = current_user(), web().recordings.listen, language()

    def work():
        c = customer_record(db, customer_id, CALLS_PER_PAGE, before)
        playable = recordings.playable([call["uuid"] for call in c["calls"]] if c else [], listen, user.role,
                                       user.extension)
        staff = sorted(Employee.select(), key=lambda e: (collation.sort_key(e.name, lang), e.id))
        return (c, staff, audit.for_customer(customer_id), playable,
                analysis.recent_matches(limit=ALERTS_SHOWN, customer_id=customer_id))

    c, employees, history, playable, alerts = database(work)
    if c is None:
        return error_page(404, _("There is no customer %(id)s.", id=customer_id))
    # each number's own line: who added it and when (the oldest "added" entry the trail still shows)
    phone_added = {e.entity_id: e for e in reversed(history) if e.entity == "phone" and e.action == "added"}
    sources = web().sources
    numbers = [p["e164"] for p in c["phones"][:SOURCE_NUMBERS]]
    # asked while the page is rendered, each source for at most its timeout; a source that fails says so in its row
    found = sources.answer(numbers) if sources and numbers else []
    return render_page("customer.html", status=status, title=c["company"] or c["name"], c=c, calls_before=before,
                       employees=employees, error=error, owner=owner, order_defs=field_defs("order"),
                       sources=found, history=history, phone_added=phone_added, playable=playable, alerts=alerts)


@bp.get("/customers/<int:customer_id>")
@login_required()
def record(customer_id: int):
    return record_page(customer_id)


@bp.get("/customers/<int:customer_id>/photo")
@login_required()
def photo(customer_id: int):
    out = photo_response(web().hub, web().photos, customer_id, request.args.get("size"))
    if out is None:
        abort(404)
    return out


@bp.get("/customers/<int:customer_id>/photo/original")
@login_required()
def photo_original(customer_id: int):
    """The photo file as it was uploaded or imported, typed by the format found in it (never HTML or SVG), for
    viewing only: nosniff, sandboxed, a file name to save it under."""
    info = web().hub.worker.run(web().hub.cards.customer_for_photo, customer_id)
    path = web().photos.path(info[2]) if info and info[2] else None
    if path is None:
        abort(404)
    try:
        file = path.open("rb")
    except OSError as exc:
        log.warning("customer %d: photo %s cannot be read (%s)", customer_id, path, exc.strerror)
        abort(404)
    kind = photofiles.served_format(file)
    if kind is None:
        file.close()
        log.warning("customer %d: photo %s is not a JPEG, PNG or WebP; not served", customer_id, path)
        abort(404)
    name = f"customer-{customer_id}{photofiles.SUFFIXES[kind]}"
    out = send_file(file, mimetype=photofiles.MIME_TYPES[kind], download_name=name, max_age=None)
    out.headers["Cache-Control"] = "private, max-age=300"
    out.headers["X-Content-Type-Options"] = "nosniff"
    out.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return out


# ---- a new customer, or the number added to one, during a call -------------------------------------


def new_page(status: int = 200, error: str | None = None, owner: int | None = None):
    values = request.values
    number = values.get("number", "").strip()[:64].replace("\x00", "")
    call = forms.call_uuid(values.get("call"))
    q = values.get("q", "").strip()[:200].replace("\x00", "")
    parsed = number_rules().classify(number) if number else None
    e164 = parsed.e164 if parsed is not None and parsed.kind == "e164" else None
    db = web().hub.db
    rules = number_rules()

    def work():
        holder = Phone.get_or_none(Phone.e164 == e164) if e164 else None
        row = Call.get_or_none(Call.uuid == call) if call else None
        matches = _with_phones(search_customers(db, q, NEW_MATCHES, rules=rules)) if q else []
        return (data.customer_brief(holder.customer) if holder else None), row, matches

    holder, call_row, matches = database(work)
    caller = (number or (call_row.external_number if call_row else "") or "").strip()
    withheld = caller.lower() in WITHHELD or (call_row is not None and not caller)  # nothing to store or add
    return render_page("new.html", status=status, title=_("New caller"), number="" if withheld else number, e164=e164,
                       call=call, call_row=call_row, withheld=withheld,
                       caller_name=caller_name(call_row.external_name if call_row else None), q=q, matches=matches,
                       holder=holder, error=error, owner=owner, form=request.form, categories=categories(),
                       defs=field_defs("customer"))


@bp.get("/customers/new")
@login_required()
def new():
    return new_page()


@bp.post("/customers/new")
@login_required()
def create():
    number = request.form.get("number", "").strip()
    call = forms.call_uuid(request.form.get("call"))
    try:
        fields = data.customer_fields({**forms.pick(EDIT_FIELDS), "fields": forms.custom_values()})
        data.check_name(fields)
        phones = []
        if number:
            phones.append(data.phone_input({"number": number, "label": request.form.get("label", "")}, "number",
                                           number_rules()))
        e164 = phones[0][0].e164 if phones else None

        def work():
            customer_id = data.create_customer(fields, phones)
            return customer_id, data.link_calls(customer_id, e164, call)

        customer_id, linked = database(work)
    except DataError as exc:
        return new_page(exc.status, exc.message, exc.extra.get("customer_id"))
    _link(customer_id, e164, call)
    log.info("customer %d created on the web%s", customer_id, f"; {linked} call(s) linked" if linked else "")
    flash(ngettext("Customer created. %(num)s call from this number is now on their record.",
                   "Customer created. %(num)s calls from this number are now on their record.", linked)
          if linked else _("Customer created."))
    return redirect(f"/customers/{customer_id}", 303)


# ---- edit ---------------------------------------------------------------------------------------------


@bp.get("/customers/<int:customer_id>/edit")
@login_required()
def edit(customer_id: int):
    try:
        c = database(lambda: data.customer_full(data.get_customer(customer_id)))
    except DataError as exc:
        return error_page(exc.status, exc.message)
    return render_page("edit.html", title=_("Edit customer"), c=c, categories=categories(), defs=field_defs("customer"))


@bp.post("/customers/<int:customer_id>/edit")
@login_required()
def update(customer_id: int):
    values = {**forms.pick(EDIT_FIELDS), "fields": forms.custom_values()}
    try:
        fields = data.customer_fields(values)
        database(data.update_customer, customer_id, fields)
    except DataError as exc:
        if exc.status == 404:
            return error_page(404, exc.message)
        return render_page("edit.html", status=exc.status, title=_("Edit customer"), error=exc.message,
                           c={"id": customer_id, **values}, categories=categories(), defs=field_defs("customer"))
    flash(_("Saved."))
    return redirect(f"/customers/{customer_id}", 303)


@bp.post("/customers/<int:customer_id>/delete")
@login_required("delete_customers")
def delete(customer_id: int):
    try:
        stored = database(data.delete_customer, customer_id)
    except DataError as exc:
        return error_page(exc.status, exc.message)
    if stored and "/" not in stored:
        (web().photos.folder / stored).unlink(missing_ok=True)
    log.info("customer %d deleted on the web", customer_id)
    flash(_("Customer deleted; their calls stay in the call list."))
    return redirect("/customers", 303)


# ---- numbers ------------------------------------------------------------------------------------------


@bp.post("/customers/<int:customer_id>/phones")
@login_required()
def add_phone(customer_id: int):
    call = forms.call_uuid(request.form.get("call"))
    from_call = request.form.get("from") == "new"
    try:
        number, raw, label = data.phone_input(forms.pick(("number", "label")), "number", number_rules())

        def work():
            data.add_phone(customer_id, number, raw, label)
            return data.link_calls(customer_id, number.e164, call)

        linked = database(work)
    except DataError as exc:
        if from_call and exc.status != 404:
            return new_page(exc.status, exc.message, exc.extra.get("customer_id"))
        return record_page(customer_id, exc.status, exc.message, exc.extra.get("customer_id"))
    _link(customer_id, number.e164, call)
    log.info("customer %d: number added on the web%s", customer_id, f"; {linked} call(s) linked" if linked else "")
    flash(ngettext("Number %(number)s added. %(num)s call from it is now on this record.",
                   "Number %(number)s added. %(num)s calls from it are now on this record.", linked, number=number.e164)
          if linked else _("Number %(number)s added.", number=number.e164))
    return redirect(f"/customers/{customer_id}", 303)


@bp.post("/customers/<int:customer_id>/phones/<int:phone_id>/delete")
@login_required("delete_customers")
def remove_phone(customer_id: int, phone_id: int):
    try:
        database(data.remove_phone, customer_id, phone_id)
    except DataError as exc:
        return record_page(customer_id, exc.status, exc.message)
    flash(_("Number removed."))
    return redirect(f"/customers/{customer_id}", 303)


# ---- photo --------------------------------------------------------------------------------------------


def _original(path: Path, max_bytes: int) -> tuple[bytes, str] | Message:
    """photofiles.original for the thread pool (which would print the traceback of anything raised): data or why not
    (translated when shown: the pool's threads do not speak the request's language)."""
    try:
        return photofiles.original(path, max_bytes)
    except ImageRejected as exc:
        return exc.args[0]
    except OSError as exc:
        return str(exc)


@bp.post("/customers/<int:customer_id>/photo")
@login_required()
def upload_photo(customer_id: int):
    max_bytes = web().config.photo_max_mb * 1024 * 1024
    if request.content_length is None or request.content_length > web().config.upload_max_bytes():
        return record_page(customer_id, 413, _("The photo is larger than %(mb)s MB.", mb=web().config.photo_max_mb))
    upload = request.files.get("photo")
    if upload is None or not upload.filename:
        return record_page(customer_id, 400, _("Choose a photo (JPEG, PNG or WebP) first."))
    with tempfile.NamedTemporaryFile(prefix="screenpop-upload-") as tmp:
        upload.save(tmp)
        tmp.flush()
        result = image_job(_original, Path(tmp.name), max_bytes)
    if not isinstance(result, tuple):
        log.warning("customer %d: photo upload refused: %s", customer_id, result)
        return record_page(customer_id, 400, _("That photo cannot be used: %(reason)s.", reason=result))
    photo_data, suffix = result
    folder = web().photos.folder
    try:
        database(lambda: photofiles.attach(data.get_customer(customer_id), photo_data, suffix, folder))
    except DataError as exc:
        return error_page(exc.status, exc.message)
    log.info("customer %d: photo uploaded on the web", customer_id)
    flash(_("Photo saved."))
    return redirect(f"/customers/{customer_id}", 303)
