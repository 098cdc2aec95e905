"""Benchmark customer lookup by number on SQLite and PostgreSQL, against the same lookup in peewee's query builder.

Fills a fresh SQLite file (temp dir) and a fresh PostgreSQL schema with N customers (one or two phones each), then
times Lookup.find for existing numbers, unknown numbers and suffix-only hits. Prints p50/p99 in µs; never fails.

    python bench/lookup.py [--customers 1000000] [--pg postgresql://postgres@127.0.0.1:5432/test]
"""
from __future__ import annotations

import argparse
import gc
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator

import peewee

from screenpop.daemon.customers.lookup import MAX_CANDIDATES, Lookup
from screenpop.db.database import guarded, open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import Phone, utcnow
from screenpop.db.numbers import Number, NumberRules, valid_country_code

RULES = NumberRules("US", r"^[1-9][0-9]{1,4}$", 8)
CHUNK = 50_000


def make_numbers(customers: int, seed: int = 7) -> list[list[str]]:
    """Unique North American E.164 numbers: every customer one, every second customer two."""
    rng = random.Random(seed)
    seen: set[str] = set()
    phones: list[list[str]] = []
    for i in range(customers):
        own = []
        for _ in range(1 if i % 2 else 2):
            while True:
                e164 = f"+1{rng.randint(2, 9)}{rng.randint(0, 99):02d}{rng.randint(2, 9)}{rng.randint(0, 999999):06d}"
                if e164 not in seen:
                    seen.add(e164)
                    own.append(e164)
                    break
        phones.append(own)
    return phones


def queries(phones: list[list[str]], seed: int = 11) -> dict[str, list[Number]]:
    """Existing numbers, unknown numbers (no suffix either) and numbers known only by their last 8 digits."""
    rng = random.Random(seed)
    stored = {e164 for own in phones for e164 in own}
    suffixes = {e164[-8:] for e164 in stored}
    existing = [RULES.classify(rng.choice(rng.choice(phones))) for _ in range(10_000)]
    unknown: list[Number] = []
    while len(unknown) < 2_000:
        e164 = f"+1{rng.randint(2, 9)}{rng.randint(0, 99):02d}{rng.randint(2, 9)}{rng.randint(0, 999999):06d}"
        if e164 not in stored and e164[-8:] not in suffixes:
            unknown.append(RULES.classify(e164))
    suffix_only: list[Number] = []
    while len(suffix_only) < 2_000:
        known = rng.choice(rng.choice(phones))
        e164 = f"+1{rng.randint(2, 9)}{rng.randint(0, 9)}{known[-8:]}"
        if e164 not in stored:
            suffix_only.append(RULES.classify(e164))
    return {"existing": existing, "unknown": unknown, "suffix-only": suffix_only}


def customer_rows(phones: list[list[str]]) -> Iterator[tuple]:
    now = utcnow()
    for i in range(len(phones)):
        yield (i + 1, f"C{i + 1}", f"Customer {i + 1}", "Company", "regular", "", "City", "Country", now, now)


def phone_rows(phones: list[list[str]]) -> Iterator[tuple]:
    for i, own in enumerate(phones):
        for e164 in own:
            yield (i + 1, e164, e164[:0:-1], valid_country_code(e164), e164, "")


CUSTOMER_COLUMNS = "id, external_id, name, company, category, note, city, country, created_at, updated_at"
PHONE_COLUMNS = "customer_id, e164, rev, country_code, raw, label"


def fill_sqlite(db: peewee.Database, phones: list[list[str]]) -> None:
    """executemany in big transactions."""
    cursor = db.cursor()
    for table, columns, rows in (("customer", CUSTOMER_COLUMNS, customer_rows(phones)), ("phone", PHONE_COLUMNS, phone_rows(phones))):
        marks = ", ".join("?" * len(columns.split(",")))
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == CHUNK:
                with db.atomic():
                    cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)
                batch = []
        if batch:
            with db.atomic():
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)


def fill_postgres(db: peewee.Database, phones: list[list[str]]) -> None:
    """COPY, the fastest bulk path psycopg offers; then ANALYZE, as autovacuum would after a real import."""
    conn = db.connection()
    with db.atomic():
        cursor = conn.cursor()
        with cursor.copy(f"COPY customer ({CUSTOMER_COLUMNS}) FROM STDIN") as copy:
            for row in customer_rows(phones):
                copy.write_row(row)
        with cursor.copy(f"COPY phone ({PHONE_COLUMNS}) FROM STDIN") as copy:
            for row in phone_rows(phones):
                copy.write_row(row)
    db.execute_sql("SELECT setval(pg_get_serial_sequence('customer', 'id'), (SELECT MAX(id) FROM customer))")
    db.execute_sql("ANALYZE customer, phone")


def builder_find(rules: NumberRules) -> Callable[[Number], tuple[int | None, int]]:
    """The baseline: the same two-step lookup written the ordinary peewee way."""

    def find(number: Number) -> tuple[int | None, int]:
        if number.kind != "e164":
            return None, 0
        query = Phone.select(Phone.customer).where(Phone.e164 == number.e164)
        ids = [cid for (cid,) in query.distinct().order_by(Phone.customer).limit(MAX_CANDIDATES + 1).tuples()]
        if not ids and len(number.rev) >= rules.suffix_digits:
            prefix = number.rev[: rules.suffix_digits]
            query = Phone.select(Phone.customer).where(Phone.rev.between(prefix, prefix + "9" * 32))
            if number.country_code is not None:
                query = query.where(Phone.country_code.is_null() | (Phone.country_code == number.country_code))
            ids = [cid for (cid,) in query.distinct().order_by(Phone.customer).limit(MAX_CANDIDATES + 1).tuples()]
        return (ids[0] if len(ids) == 1 else None), len(ids)

    return find


def timed(find: Callable[[Number], object], numbers: list[Number]) -> tuple[float, float]:
    """p50 and p99 in µs over the numbers, after a warm-up pass (psycopg prepares repeated statements)."""
    for number in numbers[:200]:
        find(number)
    gc.collect()
    samples = []
    for number in numbers:
        start = time.perf_counter_ns()
        find(number)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def run(name: str, db: peewee.Database, fill: Callable, phones: list[list[str]], sets: dict[str, list[Number]]) -> None:
    migrate(db)
    start = time.perf_counter()
    fill(db, phones)
    count = sum(len(own) for own in phones)
    print(f"\n{name}: filled {len(phones):,} customers / {count:,} phones in {time.perf_counter() - start:.1f}s")
    lookup = Lookup(db, RULES)
    baseline = builder_find(RULES)
    hits = sum(1 for n in sets["existing"][:500] if lookup.find(n).customer_id is not None)
    print(f"  sanity: {hits}/500 existing numbers found")
    print(f"  {'queries':<22}{'raw SQL p50':>12}{'p99':>9}{'builder p50':>14}{'p99':>9}   (µs)")
    for label, numbers in sets.items():
        fast = timed(lookup.find, numbers)
        slow = timed(baseline, numbers)
        print(f"  {label + f' ({len(numbers):,})':<22}{fast[0]:>12.1f}{fast[1]:>9.1f}{slow[0]:>14.1f}{slow[1]:>9.1f}")
    bare, daemon = timed(lookup.find, sets["existing"]), timed(lambda n: guarded(db, lookup.find, n), sets["existing"])
    print(f"  {'existing, as the daemon':<22}{daemon[0]:>12.1f}{daemon[1]:>9.1f}   (guarded: dead-connection check and "
          f"outage state; bare find now {bare[0]:.1f} / {bare[1]:.1f})")
    raws = [n.raw for n in sets["existing"]]
    fresh = Lookup(db, NumberRules(RULES.default_region, RULES.extension_pattern, RULES.suffix_digits))
    p50, p99 = timed(fresh.find, raws[200:] + raws[:200])
    print(f"  {'existing, raw strings':<22}{p50:>12.1f}{p99:>9.1f}   (includes classify; first sight, so uncached)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    start = time.perf_counter()
    phones = make_numbers(args.customers)
    sets = queries(phones)
    print(f"generated {args.customers:,} customers and the query sets in {time.perf_counter() - start:.1f}s")

    tmp = tempfile.mkdtemp(prefix="screenpop-bench-")
    try:
        db = open_database(f"sqlite:///{tmp}/bench.db")
        run("SQLite", db, fill_sqlite, phones, sets)
        db.close()
    except Exception:
        print("SQLite run failed:\n" + traceback.format_exc())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    schema = f"screenpop_bench_{uuid.uuid4().hex[:8]}"
    db = None
    try:
        db = open_database(f"{args.pg}?schema={schema}")
        run("PostgreSQL", db, fill_postgres, phones, sets)
    except Exception:
        print("PostgreSQL run failed or skipped:\n" + traceback.format_exc())
    finally:
        if db is not None:
            try:
                db.execute_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                db.close()
            except Exception as exc:
                print(f"could not drop schema {schema}: {exc}")
    sys.exit(0)


if __name__ == "__main__":
    main()
