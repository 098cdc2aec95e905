"""CSV import of customers, employees and orders, and of customer photos from a folder.

Every importer returns an ImportReport. A file-level problem (not UTF-8, broken quoting, a missing required column)
is reported before anything is written; a bad row is reported with its physical line number (the header is line 1)
and the other rows still import. Rows are written in batches, one transaction per batch. Re-importing updates
rows by their key and only touches the columns the file has. Values are checked by daemon/customers/values.py's rules, as the API
and the web pages check them; an empty cell is the column's default (the default category, amount 0). The custom
fields defined for customers and orders are columns named by their keys (daemon/customers/fields.py). A cell
written by screenpop's CSV export with an apostrophe before a formula character (reports/export.py) is read back
without it, so an export imports as it was.
"""
from __future__ import annotations

import codecs
import csv
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import peewee

from screenpop.daemon.customers import data, fields as custom, photofiles
from screenpop.daemon.customers import values as checks
from screenpop.daemon.customers.images import ImageRejected
from screenpop.daemon.customers.lookup import phone_columns
from screenpop.daemon.i18n import Message, lazy_gettext
from screenpop.daemon.reports.export import unescape_cell
from screenpop.db import audit, collation, models
from screenpop.db.database import private_dir
from screenpop.db.models import Customer, Employee, Order, Phone
from screenpop.db.numbers import NumberRules

BATCH_ROWS = 1000
FIELD_LIMIT = csv.field_size_limit()
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
ORDER_STATUSES = ("open", "closed")
_PHONE_SPLIT = re.compile(r"[;|]")


@dataclass
class ImportReport:
    """What an import did: rows created, updated, unchanged, skipped (with an error each), and the errors by line."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[tuple[int, Message]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row was imported."""
        return not self.errors

    def fail(self, line: int, message: Message) -> None:
        """Record one row (or file, line 0/1) that was not imported and why."""
        self.skipped += 1
        self.errors.append((line, message))


class _FileError(Exception):
    """The whole file is unusable; nothing is imported."""

    def __init__(self, line: int, message: Message) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _RowError(Exception):
    """One row is unusable; it is skipped and reported."""


@dataclass
class _Outcome:
    """What one batch did, merged into the report only once its transaction committed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, Message]] = field(default_factory=list)


@dataclass(frozen=True)
class _Spec:
    """The columns an importer knows: the key and other required ones, then the optional ones."""

    required: tuple[str, ...]
    optional: tuple[str, ...]


# ---------------------------------------------------------------- reading CSV

_NUL = "\uffff"  # stands for NUL while csv reads; a noncharacter, refused in a row like NUL itself


def _decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines as text, strictly UTF-8 (a leading BOM is dropped), failing with the offending line.
    A NUL comes out as _NUL: Python 3.10's csv module stops the whole file at a NUL, where one row is bad."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    number = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                yield decoder.decode(raw).replace("\x00", _NUL)
            except UnicodeDecodeError as exc:
                raise _FileError(number, lazy_gettext("line %(number)s is not UTF-8 (%(reason)s); save the file as "
                                                      "UTF-8 CSV", number=number, reason=exc.reason)) from None
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _FileError(number, lazy_gettext("the file ends in the middle of a UTF-8 character")) from None


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) for every non-blank CSV record; broken quoting is a file error."""
    reader = csv.reader(_decoded_lines(path), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                message = lazy_gettext("a field starting on line %(line)s is longer than %(max)s characters (an "
                                       "unclosed quote?)", line=start, max=FIELD_LIMIT)
            elif "unexpected end of data" in str(exc):
                message = lazy_gettext("the quoted field starting on line %(line)s is never closed", line=start)
            else:
                message = lazy_gettext("line %(line)s is not valid CSV: %(reason)s", line=reader.line_num, reason=exc)
            raise _FileError(start, message) from None
        if any(f.strip() for f in fields):
            yield start, fields


def _read_header(path: Path, spec: _Spec) -> tuple[list[str | None], list[str]]:
    """Validate the whole file's structure and its header; the column names by position (None: ignored)."""
    records = _records(path)
    first = next(records, None)
    if first is None:
        raise _FileError(1, lazy_gettext("the file is empty: it needs a header row"))
    line, names = first
    names = [n.strip().lower() for n in names]
    known = set(spec.required) | set(spec.optional)
    seen: set[str] = set()
    for name in names:
        if name in known and name in seen:
            raise _FileError(line, lazy_gettext("column %(name)r appears twice in the header", name=name))
        seen.add(name)
    missing = [name for name in spec.required if name not in seen]
    if missing:
        raise _FileError(line, lazy_gettext("missing required column(s) %(missing)s; the header has: %(names)s",
                                            missing=', '.join(missing), names=', '.join(names)))
    for _ in records:
        pass
    columns = [name if name in known else None for name in names]
    ignored = [name for name in names if name not in known]
    return columns, ignored


def _rows(path: Path, columns: list[str | None]) -> Iterator[tuple[int, dict[str, str] | Message]]:
    """(line, {column: stripped value}) for each data row, or (line, error) for a row of the wrong width."""
    records = _records(path)
    next(records)
    for line, fields in records:
        if len(fields) != len(columns):
            yield line, lazy_gettext("has %(count)s fields but the header has %(columns)s", count=len(fields),
                                     columns=len(columns))
            continue
        values = {name: unescape_cell(value.strip()) for name, value in zip(columns, fields) if name is not None}
        bad = next((name for name, value in values.items() if _NUL in value), None)
        if bad:
            yield line, lazy_gettext("%(column)s contains a NUL or U+FFFF character", column=bad)
            continue
        yield line, values


def _text(values: dict[str, str], name: str, model: type[peewee.Model]) -> str:
    """A column value, checked against the longest the API and the pages take (daemon/customers/values.py)."""
    value = values[name]
    limit = checks.MAX_CHARS[model._meta.table_name].get(name)
    if limit and len(value) > limit:
        raise _RowError(lazy_gettext("%(name)s is longer than %(limit)s characters", name=name, limit=limit))
    return value


# ---------------------------------------------------------------- the batch driver


def _import_csv(
    path: str | os.PathLike[str],
    spec: _Spec,
    prepare: Callable[[int, dict[str, str]], Any],
    apply: Callable[[peewee.Database, list[Any]], _Outcome],
) -> ImportReport:
    """Check the file, turn rows into items (prepare), write them batch by batch (apply)."""
    report = ImportReport()
    path = Path(path)
    try:
        columns, report.ignored_columns = _read_header(path, spec)
    except OSError as exc:
        report.errors.append((0, lazy_gettext("cannot read %(path)s: %(reason)s", path=path, reason=exc.strerror)))
        return report
    except _FileError as exc:
        report.errors.append((exc.line, lazy_gettext("nothing imported: %(reason)s", reason=exc.message)))
        return report
    db = models.database.obj
    if db is None:
        raise RuntimeError("no database is open: call open_database() before importing")
    batch: list[Any] = []
    for line, values in _rows(path, columns):
        if not isinstance(values, dict):
            report.fail(line, values)
            continue
        try:
            batch.append(prepare(line, values))
        except _RowError as exc:
            report.fail(line, exc.args[0])
            continue
        if len(batch) >= BATCH_ROWS:
            _write(db, apply, batch, report)
            batch = []
    if batch:
        _write(db, apply, batch, report)
    report.errors.sort()
    return report


def _write(db: peewee.Database, apply: Callable[[peewee.Database, list[Any]], _Outcome], batch: list[Any], report: ImportReport) -> None:
    """Apply one batch in a transaction; if the database refuses it, redo it row by row so only the bad row is lost."""
    try:
        with db.atomic():
            _plan_per_batch(db)
            outcome = apply(db, batch)
    except peewee.DatabaseError:
        for item in batch:
            try:
                with db.atomic():
                    _plan_per_batch(db)
                    outcome = apply(db, [item])
            except peewee.DatabaseError as exc:
                report.fail(item.line, lazy_gettext("the database refused this row: %(reason)s", reason=exc))
            else:
                _merge(report, outcome)
        return
    _merge(report, outcome)


def _plan_per_batch(db: peewee.Database) -> None:
    """On PostgreSQL, plan each batch's queries afresh: a plan cached while the tables were empty (psycopg prepares
    repeated statements) would keep scanning them sequentially as they grow, making large imports quadratic."""
    if not isinstance(db, peewee.SqliteDatabase):
        db.execute_sql("SET LOCAL plan_cache_mode = force_custom_plan")


def _merge(report: ImportReport, outcome: _Outcome) -> None:
    """Add a committed batch's counts and errors to the report."""
    report.created += outcome.created
    report.updated += outcome.updated
    report.unchanged += outcome.unchanged
    for line, message in outcome.errors:
        report.fail(line, message)


def _sql(db: peewee.Database, text: str) -> str:
    """SQL written with ? placeholders, in the backend's own placeholder style."""
    return text.replace("?", db.param)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _select(db: peewee.Database, text: str, params: Sequence[Any]) -> list[tuple]:
    return list(db.execute_sql(_sql(db, text), params).fetchall())


def _execute_many(db: peewee.Database, text: str, rows: list[Sequence[Any]]) -> None:
    """executemany through the driver (pipelined on psycopg), with peewee's exception translation."""
    if rows:
        with peewee.__exception_wrapper__:
            db.cursor().executemany(_sql(db, text), rows)


# ---------------------------------------------------------------- customers

_CUSTOMER_FIELDS = ("name", "company", "category", "note", "city", "country")
_INSERTED = (*_CUSTOMER_FIELDS, "custom", "custom_text", *collation.KEY_COLUMNS)
_CUSTOMERS = _Spec(("external_id",), (*_CUSTOMER_FIELDS, "phones"))


@dataclass
class _CustomerRow:
    line: int
    external_id: str
    fields: dict[str, str]
    phones: dict[str, tuple[str, int | None, str, str]] | None  # e164 -> (rev, country_code, raw, label); None: absent
    custom: dict[str, str]  # the custom field columns the file has, checked ("" clears)


def _custom_cells(defs: list[custom.Field], values: dict[str, str]) -> dict[str, str]:
    """The custom field cells of a row, checked by daemon/customers/values.py's rules; the row's error otherwise."""
    try:
        return custom.changes(defs, {f.key: values[f.key] for f in defs if f.key in values}, creating=False)
    except ValueError as exc:
        raise _RowError(exc.args[0]) from None


def _missing_required(defs: list[custom.Field], found: dict[str, str]) -> Message | None:
    """The error of a new row without a value for a required field, else None."""
    missing = next((f for f in defs if f.required and not found.get(f.key)), None)
    return lazy_gettext("%(key)s: required (%(label)s)", key=missing.key, label=missing.label) if missing else None


def import_customers(path: str | os.PathLike[str], rules: NumberRules) -> ImportReport:
    """Import or update customers keyed by external_id; a customer's phones become exactly the file's set."""
    seen: dict[str, int] = {}
    db = models.database.obj
    defs = custom.load_fields(db, "customer") if db is not None else []
    listed = custom.load_categories(db) if db is not None else []
    names, default = [c.name for c in listed], custom.default_category(listed)

    def prepare(line: int, values: dict[str, str]) -> _CustomerRow:
        external_id = _text(values, "external_id", Customer)
        if not external_id:
            raise _RowError(lazy_gettext("external_id is empty"))
        if external_id in seen:
            raise _RowError(lazy_gettext("external_id %(external_id)r already appeared on line %(line)s",
                                         external_id=external_id, line=seen[external_id]))
        fields = {name: _text(values, name, Customer) for name in _CUSTOMER_FIELDS if name in values}
        if "category" in fields:
            try:
                fields["category"] = checks.category(fields["category"], names) if fields["category"] else default
            except ValueError as exc:
                raise _RowError(lazy_gettext("category %(reason)s", reason=exc)) from None
        phones = _parse_phones(values["phones"], rules) if "phones" in values else None
        cells = _custom_cells(defs, values)
        seen[external_id] = line
        return _CustomerRow(line, external_id, fields, phones, cells)

    spec = _Spec(_CUSTOMERS.required, (*_CUSTOMERS.optional, *(f.key for f in defs)))
    return _import_csv(path, spec, prepare, lambda db, rows: _apply_customers(db, rows, defs, default))


def _parse_phones(cell: str, rules: NumberRules) -> dict[str, tuple[str, int | None, str, str]]:
    """'mobile:+3545551234;office:5551000' -> {e164: (rev, country_code, raw, label)}; any bad number rejects the row."""
    phones: dict[str, tuple[str, int | None, str, str]] = {}
    for item in _PHONE_SPLIT.split(cell):
        item = item.strip()
        if not item:
            continue
        label, _, raw = item.rpartition(":")
        label, raw = label.strip(), raw.strip()
        if len(label) > Phone.label.max_length:
            raise _RowError(lazy_gettext("phone label %(label)r... is longer than %(max_length)s characters",
                                         label=label[:20], max_length=Phone.label.max_length))
        number = rules.classify(raw)
        if number.kind == "extension":
            raise _RowError(lazy_gettext("phone %(raw)r is an internal extension, not a customer number", raw=raw))
        if number.kind != "e164":
            raise _RowError(lazy_gettext("phone %(raw)r is not a phone number that can be made E.164", raw=raw[:40]))
        columns = phone_columns(number)
        phones.setdefault(number.e164, (columns["rev"], columns["country_code"], raw, label))
    return phones


def _apply_customers(db: peewee.Database, rows: list[_CustomerRow], defs: list[custom.Field], default: str) -> _Outcome:
    """Write one batch of customers: create, update or leave alone, refusing numbers owned by another customer."""
    outcome = _Outcome()
    columns = ("id", "external_id", *_CUSTOMER_FIELDS, "custom")
    keys = [r.external_id for r in rows]
    existing = {
        row[1]: dict(zip(columns, row))
        for row in _select(db, f"SELECT {', '.join(columns)} FROM customer WHERE external_id IN ({_marks(len(keys))})", keys)
    }
    stored_phones: dict[int, dict[str, tuple[str, int | None, str, str]]] = {c["id"]: {} for c in existing.values()}
    if stored_phones:
        ids = list(stored_phones)
        sql = f"SELECT customer_id, e164, rev, country_code, raw, label FROM phone WHERE customer_id IN ({_marks(len(ids))})"
        for customer_id, e164, rev, country_code, raw, label in _select(db, sql, ids):
            stored_phones[customer_id][e164] = (rev, country_code, raw, label)
    wanted = sorted({e164 for r in rows if r.phones for e164 in r.phones})
    owners: dict[str, set[Any]] = {}
    if wanted:
        for e164, customer_id in _select(db, f"SELECT e164, customer_id FROM phone WHERE e164 IN ({_marks(len(wanted))})", wanted):
            owners.setdefault(e164, set()).add(customer_id)

    now = models.utcnow()
    inserts, updates, phone_deletes, phone_inserts, phone_updates = [], [], [], [], []
    new_phones: list[tuple[str, str, str, int | None, str, str]] = []
    for row in rows:
        current = existing.get(row.external_id)
        found = custom.merged(custom.decode(current["custom"]) if current else {}, row.custom)
        if current is None and (missing := _missing_required(defs, found)):
            outcome.errors.append((row.line, missing))
            continue
        if row.custom or current is None:
            row.fields = {**row.fields, "custom": custom.encode(found), "custom_text": custom.search_text(defs, found)}
        if current is None or "name" in row.fields or "company" in row.fields:
            named = {**(current or {"name": "", "company": ""}), **row.fields}
            row.fields = {**row.fields, **collation.customer_keys(named["name"], named["company"])}
        owner = current["id"] if current else row.external_id
        before = stored_phones.get(owner, {}) if current else {}
        after = before if row.phones is None else row.phones
        taken = sorted(e164 for e164 in after.keys() - before.keys() if owners.get(e164, set()) - {owner})
        if taken:
            others = sorted(owners[taken[0]] - {owner}, key=str)
            outcome.errors.append(
                (row.line, lazy_gettext("phone %(raw)r already belongs to %(customer)s; not moved",
                                        raw=after[taken[0]][2], customer=_describe(db, others[0])))
            )
            continue
        for e164 in before.keys() - after.keys():
            owners.setdefault(e164, set()).discard(owner)
        for e164 in after.keys() - before.keys():
            owners.setdefault(e164, set()).add(owner)
        if current is None:
            fields = {"category": default, **row.fields}
            inserts.append((row.external_id, *(fields.get(n, "") for n in _INSERTED), now, now))
            new_phones += [(row.external_id, e164, *phone) for e164, phone in after.items()]
            outcome.created += 1
            continue
        fields_changed = any(current[name] != value for name, value in row.fields.items() if name in current)
        if not fields_changed and before == after:
            outcome.unchanged += 1
            continue
        updates.append((row.fields, now, current["id"]))
        phone_deletes += [(current["id"], e164) for e164 in before.keys() - after.keys()]
        phone_inserts += [(current["id"], e164, *after[e164]) for e164 in after.keys() - before.keys()]
        phone_updates += [
            (*after[e164][1:], current["id"], e164)
            for e164 in before.keys() & after.keys()
            if before[e164] != after[e164]
        ]
        outcome.updated += 1

    _execute_many(
        db,
        f"INSERT INTO customer (external_id, {', '.join(_INSERTED)}, created_at, updated_at) "
        f"VALUES ({_marks(len(_INSERTED) + 3)})",
        inserts,
    )
    new_ids = {}
    if inserts:
        created = [r[0] for r in inserts]
        sql = f"SELECT external_id, id FROM customer WHERE external_id IN ({_marks(len(created))})"
        new_ids = dict(_select(db, sql, created))
        phone_inserts += [(new_ids[ext], e164, *phone) for ext, e164, *phone in new_phones]
    audit.record_many([("customer", i, "added", "", i) for i in new_ids.values()]
                      + [("customer", i, "changed", "", i) for _, _, i in updates])
    _update_customers(db, updates)
    _execute_many(db, "DELETE FROM phone WHERE customer_id = ? AND e164 = ?", phone_deletes)
    _execute_many(db, "UPDATE phone SET country_code = ?, raw = ?, label = ? WHERE customer_id = ? AND e164 = ?",
                  phone_updates)
    _execute_many(db, "INSERT INTO phone (customer_id, e164, rev, country_code, raw, label) VALUES (?, ?, ?, ?, ?, ?)",
                  phone_inserts)
    return outcome


def _update_customers(db: peewee.Database, updates: list[tuple[dict[str, str], Any, int]]) -> None:
    """UPDATE the columns each row supplied, grouped so rows with the same columns share one executemany."""
    groups: dict[tuple[str, ...], list[tuple]] = {}
    for fields, now, customer_id in updates:
        groups.setdefault(tuple(fields), []).append((*fields.values(), now, customer_id))
    for names, params in groups.items():
        assignments = "".join(f"{name} = ?, " for name in names)
        _execute_many(db, f"UPDATE customer SET {assignments}updated_at = ? WHERE id = ?", params)


def _describe(db: peewee.Database, owner: Any) -> Message:
    """A customer named for an error message: by external_id when it has one."""
    if isinstance(owner, str):
        return lazy_gettext("customer %(external_id)r (earlier in this file)", external_id=owner)
    found = _select(db, "SELECT external_id FROM customer WHERE id = ?", [owner])
    external_id = found[0][0] if found else None
    if external_id:
        return lazy_gettext("customer %(external_id)r", external_id=external_id)
    return lazy_gettext("customer #%(id)s", id=owner)


# ---------------------------------------------------------------- employees

_EMPLOYEES = _Spec(("extension", "name"), ())


@dataclass
class _EmployeeRow:
    line: int
    extension: str
    name: str


def import_employees(path: str | os.PathLike[str]) -> ImportReport:
    """Import or update employees keyed by extension."""
    seen: dict[str, int] = {}

    def prepare(line: int, values: dict[str, str]) -> _EmployeeRow:
        extension = _text(values, "extension", Employee)
        name = _text(values, "name", Employee)
        try:
            checks.extension(extension)
        except ValueError as exc:
            raise _RowError(lazy_gettext("extension %(reason)s", reason=exc)) from None
        if not name:
            raise _RowError(lazy_gettext("name is empty"))
        if extension in seen:
            raise _RowError(lazy_gettext("extension %(extension)r already appeared on line %(line)s",
                                         extension=extension, line=seen[extension]))
        seen[extension] = line
        return _EmployeeRow(line, extension, name)

    return _import_csv(path, _EMPLOYEES, prepare, _apply_employees)


def _apply_employees(db: peewee.Database, rows: list[_EmployeeRow]) -> _Outcome:
    outcome = _Outcome()
    keys = [r.extension for r in rows]
    existing = dict(_select(db, f"SELECT extension, name FROM employee WHERE extension IN ({_marks(len(keys))})", keys))
    inserts, updates = [], []
    for row in rows:
        if row.extension not in existing:
            inserts.append((row.name, row.extension, True))
            outcome.created += 1
        elif existing[row.extension] != row.name:
            updates.append((row.name, row.extension))
            outcome.updated += 1
        else:
            outcome.unchanged += 1
    _execute_many(db, "INSERT INTO employee (name, extension, active) VALUES (?, ?, ?)", inserts)
    _execute_many(db, "UPDATE employee SET name = ? WHERE extension = ?", updates)
    if inserts or updates:
        ids = dict(_select(db, f"SELECT extension, id FROM employee WHERE extension IN ({_marks(len(keys))})", keys))
        audit.record_many([("employee", ids[ext], "added", data.employee_line(ext, name), None) for name, ext, _ in inserts]
                          + [("employee", ids[ext], "changed", f"{data.employee_line(ext, existing[ext])}: name {name}", None)
                             for name, ext in updates])
    return outcome


# ---------------------------------------------------------------- orders

_ORDER_FIELDS = ("title", "stage", "responsible", "amount", "paid", "status")
_ORDERS = _Spec(("number", "customer"), _ORDER_FIELDS)
_ORDER_DEFAULTS = {"title": "", "stage": "", "responsible_id": None, "amount": Decimal("0.00"), "paid": Decimal("0.00"), "status": "open"}


@dataclass
class _OrderRow:
    line: int
    number: str
    customer: str
    fields: dict[str, Any]
    custom: dict[str, str]  # the custom field columns the file has, checked ("" clears)


def import_orders(path: str | os.PathLike[str]) -> ImportReport:
    """Import or update orders keyed by number; customer is an external_id, responsible an employee's extension."""
    seen: dict[str, int] = {}
    db = models.database.obj
    defs = custom.load_fields(db, "order") if db is not None else []

    def prepare(line: int, values: dict[str, str]) -> _OrderRow:
        number = _text(values, "number", Order)
        if not number:
            raise _RowError(lazy_gettext("number is empty"))
        if not values["customer"]:
            raise _RowError(lazy_gettext("customer is empty"))
        if number in seen:
            raise _RowError(lazy_gettext("order %(number)r already appeared on line %(line)s",
                                         number=number, line=seen[number]))
        fields: dict[str, Any] = {name: _text(values, name, Order) for name in ("title", "stage") if name in values}
        if "responsible" in values:
            fields["responsible"] = values["responsible"] or None
        for name in ("amount", "paid"):
            if name in values:
                fields[name] = _money(name, values[name])
        if "status" in values:
            fields["status"] = values["status"].lower() or "open"
            if fields["status"] not in ORDER_STATUSES:
                raise _RowError(lazy_gettext("status %(status)r is not open or closed", status=values['status']))
        cells = _custom_cells(defs, values)
        seen[number] = line
        return _OrderRow(line, number, values["customer"], fields, cells)

    spec = _Spec(_ORDERS.required, (*_ORDERS.optional, *(f.key for f in defs)))
    return _import_csv(path, spec, prepare, lambda db, rows: _apply_orders(db, rows, defs))


def _money(name: str, text: str) -> Decimal:
    """An amount like 1234.50 (empty is 0); anything else is the row's error rather than a guess."""
    if not text:
        return Decimal("0.00")
    try:
        return checks.amount(text)
    except ValueError as exc:
        raise _RowError(lazy_gettext("%(name)s %(reason)s", name=name, reason=exc)) from None


def _apply_orders(db: peewee.Database, rows: list[_OrderRow], defs: list[custom.Field]) -> _Outcome:
    outcome = _Outcome()
    customers_wanted = sorted({r.customer for r in rows})
    sql = f"SELECT external_id, id FROM customer WHERE external_id IN ({_marks(len(customers_wanted))})"
    customer_ids = dict(_select(db, sql, customers_wanted))
    extensions = sorted({r.fields["responsible"] for r in rows if r.fields.get("responsible")})
    employee_ids = {}
    if extensions:
        sql = f"SELECT extension, id FROM employee WHERE extension IN ({_marks(len(extensions))})"
        employee_ids = dict(_select(db, sql, extensions))
    numbers = [r.number for r in rows]
    columns = ("number", "customer_id", "title", "stage", "responsible_id", "amount", "paid", "status", "custom")
    sql = f'SELECT {", ".join(columns)} FROM "order" WHERE number IN ({_marks(len(numbers))})'
    existing = {row[0]: dict(zip(columns, row)) for row in _select(db, sql, numbers)}

    inserts, updates = [], []
    for row in rows:
        if row.customer not in customer_ids:
            outcome.errors.append((row.line, lazy_gettext("no customer with external_id %(external_id)r",
                                                          external_id=row.customer[:100])))
            continue
        responsible = row.fields.get("responsible")
        if responsible is not None and responsible not in employee_ids:
            outcome.errors.append((row.line, lazy_gettext("no employee with extension %(extension)r",
                                                          extension=responsible[:40])))
            continue
        wanted = {"customer_id": customer_ids[row.customer]}
        wanted.update((name, value) for name, value in row.fields.items() if name != "responsible")
        if "responsible" in row.fields:
            wanted["responsible_id"] = employee_ids.get(responsible)
        current = existing.get(row.number)
        found = custom.merged(custom.decode(current["custom"]) if current else {}, row.custom)
        if current is None and (missing := _missing_required(defs, found)):
            outcome.errors.append((row.line, missing))
            continue
        if row.custom or current is None:
            wanted["custom"] = custom.encode(found)
        if current is None:
            values = {**_ORDER_DEFAULTS, **wanted}
            inserts.append((row.number, *(values[c] for c in columns[1:])))
            outcome.created += 1
        elif any(_stored(name, current[name]) != value for name, value in wanted.items()):
            updates.append((wanted, row.number))
            outcome.updated += 1
        else:
            outcome.unchanged += 1
    _execute_many(db, f'INSERT INTO "order" ({", ".join(columns)}) VALUES ({_marks(len(columns))})', inserts)
    touched = [r[0] for r in inserts] + [number for _, number in updates]
    if touched:
        sql = f'SELECT number, id, customer_id FROM "order" WHERE number IN ({_marks(len(touched))})'
        ids = {number: (order_id, customer_id) for number, order_id, customer_id in _select(db, sql, touched)}
        audit.record_many([("order", ids[number][0], "added" if i < len(inserts) else "changed", number, ids[number][1])
                           for i, number in enumerate(touched)])
    groups: dict[tuple[str, ...], list[tuple]] = {}
    for wanted, number in updates:
        groups.setdefault(tuple(wanted), []).append((*wanted.values(), number))
    for names, params in groups.items():
        assignments = ", ".join(f"{name} = ?" for name in names)
        _execute_many(db, f'UPDATE "order" SET {assignments} WHERE number = ?', params)
    return outcome


def _stored(name: str, value: Any) -> Any:
    """A stored order value in the form prepare() produces, so unchanged rows compare equal on both backends."""
    if name in ("amount", "paid"):
        return Decimal(str(value)).quantize(Decimal("0.01"))
    return value


# ---------------------------------------------------------------- photos


def import_photos(folder: str | os.PathLike[str], photo_dir: str | os.PathLike[str]) -> ImportReport:
    """Attach <external_id>.jpg/.jpeg/.png/.webp from folder to customers: verified, and kept as they are in photo_dir.

    Errors carry line 0 and name the file. Other files in the folder are ignored.
    """
    report = ImportReport()
    folder, photo_dir = Path(folder), Path(photo_dir)
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))
    except OSError as exc:
        report.errors.append((0, lazy_gettext("cannot read folder %(folder)s: %(reason)s", folder=folder,
                                              reason=exc.strerror)))
        return report
    private_dir(photo_dir)
    done: dict[str, str] = {}
    for path in files:
        external_id = path.stem
        if external_id in done:
            report.fail(0, lazy_gettext("%(name)s: another photo for %(external_id)r (%(done)s) was already imported",
                                        name=path.name, external_id=external_id, done=done[external_id]))
            continue
        customer = Customer.get_or_none(Customer.external_id == external_id)
        if customer is None:
            report.fail(0, lazy_gettext("%(name)s: no customer with external_id %(external_id)r",
                                        name=path.name, external_id=external_id))
            continue
        try:
            data, suffix = photofiles.original(path)
        except ImageRejected as exc:
            report.fail(0, lazy_gettext("%(name)s: %(reason)s", name=path.name, reason=exc))
            continue
        done[external_id] = path.name
        if photofiles.attach(customer, data, suffix, photo_dir) is None:
            report.unchanged += 1
        elif customer.photo:
            report.updated += 1
        else:
            report.created += 1
    return report
