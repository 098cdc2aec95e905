"""CSV export of customers and orders with their custom fields (`screenpop export`), in the columns the importer
reads, so a file exported, edited in a spreadsheet and imported again changes only what was edited. Every cell goes
through daemon/reports/export.py's formula-safe writer."""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import IO

import peewee

from screenpop.daemon.customers import fields as custom
from screenpop.daemon.reports.export import write_csv

_CUSTOMER_COLUMNS = ["external_id", "name", "company", "category", "note", "city", "country", "phones"]
_ORDER_COLUMNS = ["number", "customer", "title", "stage", "responsible", "amount", "paid", "status"]
_CHUNK = 5000  # rows read per query: a million customers never sit in memory at once


def _money(value: object) -> str:
    return str(Decimal(str(value or 0)).quantize(Decimal("0.01")))


def export_customers(db: peewee.Database, out: IO[str]) -> int:
    """Every customer with an external_id (the importer's key) as CSV, custom fields as columns; how many."""
    defs = custom.load_fields(db, "customer")
    p = db.param

    def rows() -> Iterator[dict]:
        sql = ("SELECT id, external_id, name, company, category, note, city, country, custom FROM customer "
               f"WHERE id > {p} AND external_id IS NOT NULL ORDER BY id LIMIT {_CHUNK}")
        for chunk in _chunks(db, sql):
            ids = [r[0] for r in chunk]
            phones: dict[int, list[str]] = {}
            for cid, raw, label in db.execute_sql(
                    f"SELECT customer_id, raw, label FROM phone WHERE customer_id IN ({', '.join([p] * len(ids))}) "
                    "ORDER BY id", ids):
                phones.setdefault(cid, []).append(f"{label}:{raw}" if label else raw)
            for cid, *columns, stored in chunk:
                found = custom.decode(stored)
                yield {**dict(zip(_CUSTOMER_COLUMNS, columns)), "phones": ";".join(phones.get(cid, [])),
                       **{f.key: found.get(f.key, "") for f in defs}}

    return _write(rows(), out, _CUSTOMER_COLUMNS + [f.key for f in defs])


def export_orders(db: peewee.Database, out: IO[str]) -> int:
    """Every order of a customer with an external_id as CSV, custom fields as columns; how many."""
    defs = custom.load_fields(db, "order")
    p = db.param

    def rows() -> Iterator[dict]:
        sql = ("SELECT o.id, o.number, c.external_id, o.title, o.stage, e.extension, o.amount, o.paid, o.status, "
               'o.custom FROM "order" o JOIN customer c ON c.id = o.customer_id '
               "LEFT JOIN employee e ON e.id = o.responsible_id "
               f"WHERE o.id > {p} AND c.external_id IS NOT NULL ORDER BY o.id LIMIT {_CHUNK}")
        for chunk in _chunks(db, sql):
            for _, number, customer, title, stage, responsible, amount, paid, status, stored in chunk:
                found = custom.decode(stored)
                yield {"number": number, "customer": customer, "title": title, "stage": stage,
                       "responsible": responsible or "", "amount": _money(amount), "paid": _money(paid),
                       "status": status, **{f.key: found.get(f.key, "") for f in defs}}

    return _write(rows(), out, _ORDER_COLUMNS + [f.key for f in defs])


def _chunks(db: peewee.Database, sql: str) -> Iterator[list[tuple]]:
    """The rows of sql (ids above a parameter, in id order, a chunk at most) chunk by chunk, keyset-paged by id."""
    last = 0
    while chunk := db.execute_sql(sql, (last,)).fetchall():
        yield chunk
        last = chunk[-1][0]


def _write(rows: Iterator[dict], out: IO[str], columns: list[str]) -> int:
    count = 0

    def counted() -> Iterator[dict]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    write_csv(counted(), out, columns)
    return count
