"""Benchmark the customer list sorted by name in the reader's language on SQLite (the customers' stored sort keys,
db/collation.py, read through their indexes) against the same list sorted by SQLite's own byte order and by recency,
in the same run; and migration 23's filling of the keys of customers stored before it.

Builds once (cached) an SQLite database of 100,000 customers with bench/web.py's names (Icelandic and foreign names,
40% with a company), then times the customer page's query (a page of 25 and one more) at the first, the middle and
the last page, as p50 over the repeats and the first run, for each order. Prints a table; never fails.

    flock /tmp/screenpop-bench.lock python bench/collation.py [--customers 100000] [--repeats 5] [--rebuild]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import peewee

sys.path.insert(0, str(Path(__file__).parent))
from web import Data  # noqa: E402  (bench/web.py: the same generated population)

from screenpop.daemon.customers.data import customer_order  # noqa: E402
from screenpop.db import collation  # noqa: E402
from screenpop.db.database import open_database  # noqa: E402
from screenpop.db import migrations  # noqa: E402
from screenpop.db.models import Customer  # noqa: E402

PAGE = 26  # the customer page's 25 and one more to know there is a next page
CHUNK = 10_000


def build(path: Path, customers: int, rebuild: bool) -> peewee.Database:
    """The database at path with customers customers, built unless it is there already."""
    if rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = open_database(f"sqlite:///{path}")
    migrations.migrate(db)
    if Customer.select().count() != customers:
        Customer.delete().execute()
        rows = ((*row, *collation.customer_keys(row[2], row[3]).values()) for row in Data(customers, 0).customer_rows())
        columns = [Customer.id, Customer.external_id, Customer.name, Customer.company, Customer.category,
                   Customer.note, Customer.city, Customer.country, Customer.created_at, Customer.updated_at,
                   *(getattr(Customer, column) for column in collation.KEY_COLUMNS)]
        with db.atomic():
            while chunk := list(itertools.islice(rows, CHUNK)):
                Customer.insert_many(chunk, fields=columns).execute()
    return db


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--path", type=Path, default=Path("/tmp/screenpop-bench-sortkeys.db"))
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    db = build(args.path, args.customers, args.rebuild)
    print(f"{args.customers:,} customers in {args.path} ({time.perf_counter() - t0:.1f} s to open or build)")
    orders = {
        "recent (baseline)": customer_order("recent", "is"),
        "name, SQLite bytes (baseline)": [Customer.name == "", Customer.name, Customer.company, Customer.id],
        "name, Icelandic keys": customer_order("name", "is"),
        "name, English keys": customer_order("name", "en"),
        "company, Icelandic keys": customer_order("company", "is"),
    }
    pages = {"first": 0, "middle": args.customers // 2, "last": max(0, args.customers - PAGE + 1)}
    print(f"\nGET /customers?sort=…'s query, ms: p50 of {args.repeats} warm runs, the cold first run")
    print(f"  {'order':<32}" + "".join(f" {page + ' p50':>12} {'cold':>8}" for page in pages))
    for label, order in orders.items():
        cells = []
        for offset in pages.values():
            def page() -> list:
                return list(Customer.select(Customer.id).order_by(*order).limit(PAGE).offset(offset).tuples())
            cold = timed(page)
            warm = [timed(page) for _ in range(args.repeats)]
            cells.append(f" {statistics.median(warm):>12.1f} {cold:>8.1f}")
        print(f"  {label:<32}" + "".join(cells), flush=True)
    with db.atomic() as transaction:  # an upgrade: every customer's keys made and written, then undone
        db.execute_sql("UPDATE customer SET " + ", ".join(f"{column} = ''" for column in collation.KEY_COLUMNS))
        spent = timed(lambda: migrations._customer_sort_keys(db))
        transaction.rollback()
    print(f"\nmigration 23 on {args.customers:,} customers stored before it: {spent / 1000:.1f} s")


if __name__ == "__main__":
    main()
