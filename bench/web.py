"""Benchmark customer search and the record page's data at scale, on SQLite and PostgreSQL, against naive baselines.

Builds once (cached) a database with 1,000,000 customers, 1,500,000 phones, 5,000,000 calls and 200,000 orders:
an SQLite file (default /tmp/screenpop-bench-web.db) and, with --pg, a PostgreSQL schema (screenpop_bench_web).
The search index is built the way an upgrade builds it: the data is loaded first, then migration 3 fills it.
Then it times, as server time, p50/p99 of:
  search_customers for several kinds of query, against the LIKE query the API used before (peewee, in the run);
  customer_record (customer, phones, orders, the newest 50 calls), against the same built with peewee's builder;
  and, when the web pages exist (screenpop.daemon.web.pages), GET /customers?q= and GET /customers/<id> through the
  daemon's Flask app with a signed-in session.
Prints tables; never fails.

    flock /tmp/screenpop-bench.lock python bench/web.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--rebuild]
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import peewee
from peewee import JOIN

from screenpop.daemon.customers.record import customer_record
from screenpop.db.database import open_database
from screenpop.db.migrations import MIGRATIONS, migrate
from screenpop.db.models import ALL_MODELS, Call, Customer, Employee, Order, Phone, SchemaVersion
from screenpop.db.numbers import NumberRules
from screenpop.db.search import search_customers

RULES = NumberRules("IS", r"^[1-9][0-9]{1,3}$", 7)
SCHEMA = "screenpop_bench_web"
CHUNK = 50_000
EMPLOYEES = 50
PAGE = 21  # a page of 20 and one more to know there is a next page

MALE = ("Jón", "Sigurður", "Guðmundur", "Gunnar", "Ólafur", "Einar", "Kristján", "Magnús", "Stefán", "Jóhann", "Björn",
        "Árni", "Helgi", "Páll", "Þór", "Ragnar", "Bjarni", "Halldór", "Þorsteinn", "Hjalti", "Ari", "Egill", "Hörður")
FEMALE = ("Guðrún", "Anna", "Kristín", "Sigríður", "Margrét", "Helga", "Sigrún", "Ingibjörg", "Jóhanna", "María",
          "Katrín", "Ásta", "Þóra", "Elín", "Hildur", "Ragnheiður", "Erla", "Auður", "Björk", "Steinunn", "Una")
STEMS = ("Jóns", "Guðmunds", "Sigurðar", "Gunnars", "Ólafs", "Einars", "Kristjáns", "Magnús", "Stefáns", "Jóhanns",
         "Björns", "Árna", "Helga", "Páls", "Þórs", "Ragnars", "Bjarna", "Halldórs", "Þorsteins", "Hjalta", "Egils")
FOREIGN_FIRST = ("John", "Maria", "Peter", "Ahmed", "Wei", "Olga", "Piotr", "Agnieszka", "Juan", "Fatima", "Lukas")
FOREIGN_LAST = ("Smith", "Nowak", "Kowalski", "García", "Müller", "Schmidt", "Li", "Wang", "Novák", "Jensen",
                "Hansen", "Nielsen", "O'Brien", "Dubois", "Rossi", "Søndergaard")
SYLLABLES = ("kva", "ran", "berg", "holt", "ví", "dal", "fell", "nes", "ey", "ár", "gil", "hóll", "mýr", "sker", "tún",
             "vell", "foss", "hlíð", "staf", "brekk", "lund", "mel", "haga", "strönd", "bakk", "graf", "þing", "kot")
SUFFIXES = (" ehf", " hf", " slf", " ehf.", " & Co", " Ltd", " sf")
CITIES = (("Reykjavík", 40), ("Kópavogur", 10), ("Hafnarfjörður", 8), ("Akureyri", 6), ("Reykjanesbær", 5),
          ("Garðabær", 4), ("Mosfellsbær", 3), ("Selfoss", 3), ("Akranes", 2), ("Ísafjörður", 1), ("Egilsstaðir", 1),
          ("Vestmannaeyjar", 1), ("Húsavík", 1), ("Sauðárkrókur", 1), ("Borgarnes", 1), ("Höfn", 1), ("Vík", 1),
          ("Hveragerði", 1), ("Grindavík", 1), ("Siglufjörður", 1), ("Oslo", 1), ("London", 1), ("Warszawa", 1),
          ("Berlin", 1), ("Þórshöfn", 1), ("Stykkishólmur", 1), ("Dalvík", 1))


# ---- the data ----------------------------------------------------------------------------------------


class Data:
    """The generated population, deterministic from the seed; rows are produced lazily for the loaders."""

    def __init__(self, customers: int, calls: int, seed: int = 4) -> None:
        self.customers, self.calls = customers, calls
        self.rng = random.Random(seed)
        rng = self.rng
        # Every customer one number, every second one two: unique 7-digit Icelandic numbers from 4xx xxxx up.
        numbers = rng.sample(range(4_000_000, 9_000_000), customers + customers // 2)
        self.phones = [[f"+354{numbers[i]}"] for i in range(customers)]
        for i, n in enumerate(numbers[customers:]):
            self.phones[2 * i + 1].append(f"+354{n}")
        self.rare = ["".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize() for _ in range(20_000)]
        self.companies = ["".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize() + rng.choice(SUFFIXES)
                          for _ in range(50_000)]
        self.city_names = [c for c, weight in CITIES for _ in range(weight)]

    def name(self, rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.15:
            return f"{rng.choice(FOREIGN_FIRST)} {rng.choice(FOREIGN_LAST)}"
        if roll < 0.25:
            return f"{rng.choice(MALE + FEMALE)} {rng.choice(self.rare)}"
        if rng.random() < 0.5:
            return f"{rng.choice(MALE)} {rng.choice(STEMS)}son"
        return f"{rng.choice(FEMALE)} {rng.choice(STEMS)}dóttir"

    def customer_rows(self) -> Iterator[tuple]:
        rng = random.Random(5)
        now = dt.datetime(2026, 11, 1)
        for i in range(1, self.customers + 1):
            company = rng.choice(self.companies) if rng.random() < 0.4 else ""
            category = "vip" if rng.random() < 0.05 else "problem" if rng.random() < 0.03 else "regular"
            yield (i, f"C{i}", self.name(rng), company, category, "", rng.choice(self.city_names), "Iceland", now, now)

    def phone_rows(self) -> Iterator[tuple]:
        labels = ("mobile", "home", "office", "")
        for i, own in enumerate(self.phones, 1):
            for k, e164 in enumerate(own):
                yield (i, e164, e164[:0:-1], f"{e164[4:7]} {e164[7:]}", labels[(i + k) % 4])

    def call_caller(self, rng: random.Random) -> int:
        """A skewed choice: the lowest ids are the busiest customers (customer 1 has thousands of calls)."""
        return int(self.customers * rng.random() ** 2) + 1

    def call_rows(self) -> Iterator[tuple]:
        rng = random.Random(6)
        start = dt.datetime(2024, 11, 1)
        step = 2 * 365 * 86400 / self.calls
        for i in range(1, self.calls + 1):
            at = start + dt.timedelta(seconds=i * step)
            roll = rng.random()
            direction = "INCOMING" if roll < 0.65 else "OUTGOING" if roll < 0.95 else "INTERNAL"
            employee = rng.randint(1, EMPLOYEES)
            extension = str(1000 + employee)
            customer = number = None
            if direction != "INTERNAL" and rng.random() < 0.85:
                customer = self.call_caller(rng)
                number = self.phones[customer - 1][0]
            elif direction != "INTERNAL":
                number = f"+354{rng.randint(3_000_000, 3_999_999)}"
            missed = direction == "INCOMING" and rng.random() < 0.12
            ring = round(rng.uniform(1, 30), 1)
            talk = 0.0 if missed else round(rng.expovariate(1 / 180), 1)
            answered = None if missed else at + dt.timedelta(seconds=ring)
            ended = at + dt.timedelta(seconds=ring + talk)
            yield (i, f"bench-{i:012d}", direction, number, None, number, "4005000" if direction == "INCOMING" else None,
                   extension if direction != "INCOMING" else None, customer, 1 if customer else 0, extension,
                   None if missed else employee, None if missed else extension, at, answered, ended, ring, talk, missed,
                   "NORMAL_CLEARING", "bench")

    def order_rows(self) -> Iterator[tuple]:
        rng = random.Random(7)
        for i in range(1, self.customers // 5 + 1):
            amount = Decimal(rng.randint(1000, 500_000)) / 100
            paid = amount if rng.random() < 0.6 else (amount * Decimal(rng.random())).quantize(Decimal("0.01"))
            yield (i, self.call_caller(rng), f"O-{i:07d}", "Order", rng.choice(("new", "in progress", "delivered")),
                   rng.randint(1, EMPLOYEES), amount, paid, "closed" if paid == amount else "open")


TABLES = (
    ("customer", "id, external_id, name, company, category, note, city, country, created_at, updated_at", "customer_rows"),
    ("phone", "customer_id, e164, rev, raw, label", "phone_rows"),
    ('"order"', "id, customer_id, number, title, stage, responsible_id, amount, paid, status", "order_rows"),
    ("call", "id, uuid, direction, external_number, external_name, external_e164, did, from_extension, customer_id, "
             "matches, extension, employee_id, answered_by, started_at, answered_at, ended_at, ring_seconds, "
             "talk_seconds, missed, hangup_cause, node", "call_rows"),
)


def _without_search(db: peewee.Database) -> None:
    """Every migration but the search index's, as on an install from before it."""
    with db.bind_ctx([*ALL_MODELS, SchemaVersion]):
        for migration in MIGRATIONS:
            if migration.version != 3:
                migration.apply(db)
                SchemaVersion.create(version=migration.version)


def _employees(db: peewee.Database) -> None:
    rows = [(i, f"Operator {i}", str(1000 + i), True) for i in range(1, EMPLOYEES + 1)]
    db.cursor().executemany(f"INSERT INTO employee (id, name, extension, active) VALUES ({', '.join([db.param] * 4)})", rows)


def build_sqlite(path: Path, data: Data) -> dict[str, float]:
    """executemany in big transactions, then migration 3; returns seconds per step."""
    times = {}
    db = open_database(f"sqlite:///{path}")
    db.execute_sql("PRAGMA synchronous = off")
    db.execute_sql("PRAGMA cache_size = -400000")
    _without_search(db)
    with db.atomic():
        _employees(db)
    cursor = db.cursor()
    for table, columns, rows in TABLES:
        t0 = time.perf_counter()
        sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(columns.split(',')))})"
        batch = []
        for row in getattr(data, rows)():
            batch.append(row)
            if len(batch) == CHUNK:
                with db.atomic():
                    cursor.executemany(sql, batch)
                batch = []
        with db.atomic():
            cursor.executemany(sql, batch)
        times[f"load {table.strip(chr(34))}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert migrate(db) == [3]
    times["migration 3 (index + backfill)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    db.execute_sql("ANALYZE")
    times["ANALYZE"] = time.perf_counter() - t0
    db.close()
    return times


def build_postgres(url: str, data: Data) -> dict[str, float]:
    """COPY into a fresh schema, then migration 3 (the pg_trgm indexes) and ANALYZE; returns seconds per step."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        admin.execute(f"CREATE SCHEMA {SCHEMA}")
    times = {}
    db = open_database(f"{url}?schema={SCHEMA}")
    _without_search(db)
    with db.atomic():
        _employees(db)
    conn = db.connection()
    for table, columns, rows in TABLES:
        t0 = time.perf_counter()
        with db.atomic():
            with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in getattr(data, rows)():
                    copy.write_row(row)
        times[f"load {table.strip(chr(34))}"] = time.perf_counter() - t0
    for table in ("customer", "phone", '"order"', "call", "employee"):
        db.execute_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
    t0 = time.perf_counter()
    assert migrate(db) == [3]
    times["migration 3 (index + backfill)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    db.execute_sql("ANALYZE")
    times["ANALYZE"] = time.perf_counter() - t0
    db.close()
    return times


def sqlite_ready(path: Path, data: Data) -> bool:
    if not path.exists():
        return False
    db = open_database(f"sqlite:///{path}")
    try:
        return _complete(db, data)
    except peewee.DatabaseError:
        return False
    finally:
        db.close()


def postgres_ready(url: str, data: Data) -> bool:
    db = open_database(f"{url}?schema={SCHEMA}")
    try:
        return _complete(db, data)
    except peewee.DatabaseError:
        return False
    finally:
        db.close()


def _complete(db: peewee.Database, data: Data) -> bool:
    one = db.execute_sql
    return (one("SELECT MAX(id) FROM customer").fetchone()[0] == data.customers
            and one("SELECT MAX(id) FROM call").fetchone()[0] == data.calls
            and one("SELECT 1 FROM schema_version WHERE version = 3").fetchone() is not None)


# ---- the queries -------------------------------------------------------------------------------------


def fragment(rng: random.Random, word: str, length: int) -> str:
    start = rng.randint(0, max(0, len(word) - length))
    return word[start : start + length]


def search_queries(data: Data, per_kind: int) -> dict[str, list[str]]:
    """Queries of each kind an operator types, drawn from the generated data."""
    rng = random.Random(12)
    names = [n for n, _ in zip(data.customer_rows(), range(20_000))]
    phones = [rng.choice(own) for own in rng.sample(data.phones, per_kind * 3)]
    return {
        "name fragment (common)": [fragment(rng, rng.choice(STEMS), 4).lower() for _ in range(per_kind)],
        "rare name fragment": [fragment(rng, rng.choice(data.rare), 6) for _ in range(per_kind)],
        "full name": [rng.choice(names)[2] for _ in range(per_kind)],
        "company word": [rng.choice(data.companies).split()[0] for _ in range(per_kind)],
        "city": [rng.choice(data.city_names).upper() for _ in range(per_kind)],
        "number +354 555 1234": [f"+354 {e[4:7]} {e[7:]}" for e in phones[:per_kind]],
        "number 555-1234": [f"{e[4:7]}-{e[7:]}" for e in phones[per_kind : 2 * per_kind]],
        "number suffix (4 digits)": [e[-4:] for e in phones[2 * per_kind :]],
        "unknown text": ["".join(rng.choice("qxzjw") for _ in range(5)) for _ in range(per_kind)],
        "unknown number": [f"+354 3{rng.randint(0, 99):02d} {rng.randint(0, 9999):04d}" for _ in range(per_kind)],
    }


def naive_search(db: peewee.Database, text: str, limit: int) -> list[int]:
    """The customer search the API had before: LIKE '%q%' on the columns and on the numbers, in the query builder."""
    import re

    digits = re.sub(r"[^0-9]", "", text)
    number = RULES.classify(text)
    cond = Customer.name.contains(text) | Customer.company.contains(text) | Customer.city.contains(text)
    phone_cond = Phone.e164.contains(digits) if len(digits) >= 3 else None
    if number.kind == "e164":
        phone_cond = (Phone.e164 == number.e164) if phone_cond is None else (phone_cond | (Phone.e164 == number.e164))
    if phone_cond is not None:
        cond = cond | Customer.id.in_(Phone.select(Phone.customer).where(phone_cond))
    return [c for (c,) in Customer.select(Customer.id).where(cond).order_by(Customer.id).limit(limit).tuples()]


def builder_record(db: peewee.Database, customer_id: int) -> dict | None:
    """The record's data through peewee's query builder and models: the baseline for customer_record."""
    c = Customer.get_or_none(Customer.id == customer_id)
    if c is None:
        return None
    phones = list(Phone.select().where(Phone.customer == customer_id).order_by(Phone.id))
    orders = list(Order.select(Order, Employee).join(Employee, JOIN.LEFT_OUTER).where(Order.customer == customer_id).order_by(Order.id))
    calls = list(Call.select(Call, Employee).join(Employee, JOIN.LEFT_OUTER).where(Call.customer == customer_id)
                 .order_by(Call.started_at.desc(), Call.id.desc()).limit(50))
    return {"customer": c, "phones": phones, "orders": orders, "calls": [(x, x.employee.name if x.employee_id else None) for x in calls]}


def record_ids(data: Data, count: int) -> dict[str, list[int]]:
    rng = random.Random(13)
    return {
        "record (any customer)": [rng.randint(1, data.customers) for _ in range(count)],
        "record (busiest 1000)": [rng.randint(1, 1000) for _ in range(count)],
    }


# ---- timing ------------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def summary(samples: list[float]) -> tuple[float, float, float]:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples), p99, samples[-1]


def row(label: str, samples: list[float], base: list[float] | None = None, extra: str = "") -> None:
    p50, p99, worst = summary(samples)
    text = f"  {label:<28} {len(samples):>5} {p50:>9.2f} {p99:>9.2f} {worst:>9.2f}"
    if base:
        b50, b99, _ = summary(base)
        text += f"   | {len(base):>4} {b50:>9.2f} {b99:>9.2f}   x{b50 / p50 if p50 else 0:>6.0f} at p50"
    print(text + extra, flush=True)


def header(title: str, baseline: str) -> None:
    print(f"\n{title}: server time in ms; baseline = {baseline}")
    print(f"  {'kind':<28} {'n':>5} {'p50':>9} {'p99':>9} {'max':>9}   | {'n':>4} {'base p50':>9} {'base p99':>9}")


def bench_db(label: str, db: peewee.Database, data: Data, per_kind: int, base_per_kind: int) -> None:
    queries = search_queries(data, per_kind)
    for words in queries.values():  # warm the page cache the way a running daemon's would be
        for q in words[:5]:
            search_customers(db, q, PAGE, rules=RULES)
    header(f"{label} search_customers(q, {PAGE})", f"the old LIKE query in peewee (first {base_per_kind} of each kind)")
    for kind, words in queries.items():
        ours, hits = [], []
        for q in words:
            ids: list[int] = []
            ours.append(timed(lambda q=q: ids.extend(search_customers(db, q, PAGE, rules=RULES))))
            hits.append(len(ids))
        base = [timed(lambda q=q: naive_search(db, q, PAGE)) for q in words[:base_per_kind]]
        row(kind, ours, base, f"   ({statistics.mean(hits):.1f} hits on average)")
    header(f"{label} customer_record(id) and its second page of calls", "the same through peewee's query builder")
    for kind, ids in record_ids(data, per_kind).items():
        for i in ids:  # the same warm cache for both
            customer_record(db, i)
            builder_record(db, i)
        ours = [timed(lambda i=i: customer_record(db, i)) for i in ids]
        base = [timed(lambda i=i: builder_record(db, i)) for i in ids]
        calls = [len(customer_record(db, i)["calls"]) for i in ids[:50]]
        row(kind, ours, base, f"   ({statistics.mean(calls):.0f} calls shown on average)")
        cursors = [(i, customer_record(db, i)["calls_before"]) for i in ids]
        second = [timed(lambda i=i, c=c: customer_record(db, i, calls_before=c)) for i, c in cursors if c]
        if second:
            row(kind.replace("record", "page 2"), second)


def bench_pages(label: str, db: peewee.Database, data: Data, per_kind: int) -> None:
    """The real pages through the daemon's Flask app, signed in as an operator."""
    from screenpop.daemon.auth import tokens
    from screenpop.daemon.customers.lookup import Lookup
    from screenpop.daemon.customers.photos import Photos
    from screenpop.daemon.push.hub import PushHub
    from screenpop.daemon.push.layout import CardLayout
    from screenpop.daemon.staff import Staff
    from screenpop.daemon.web.server import create_app

    hub = PushHub(db, lambda: Lookup(db, RULES), Staff(), CardLayout())
    hub.start()
    try:
        with tempfile.TemporaryDirectory() as photos:
            app = create_app(hub, Photos(Path(photos)), heartbeat=1.0)
            with db.atomic():
                token_row, token = tokens.create("1001", name="bench")
            client = app.test_client()
            link = app.test_client().post("/api/v1/signin-links", json={"next": "/"}, headers={"Authorization": f"Bearer {token}"})
            signed = client.get(link.get_json()["url"].split("localhost", 1)[1])
            if signed.status_code != 303:
                print(f"\n{label} pages: could not sign in ({signed.status_code}); skipped")
                return
            header(f"{label} pages through the Flask app (signed in)", "none (the data functions above are the parts)")
            queries = search_queries(data, per_kind)
            for kind in ("name fragment (common)", "full name", "number 555-1234", "number suffix (4 digits)", "unknown text"):
                samples = []
                for q in queries[kind]:
                    samples.append(timed(lambda q=q: _ok(client.get("/customers", query_string={"q": q}))))
                row(f"GET /customers?q= {kind.split(' (')[0]}", samples)
            for kind, ids in record_ids(data, per_kind).items():
                row(f"GET /customers/<id> {kind.split('(')[1][:-1]}", [timed(lambda i=i: _ok(client.get(f"/customers/{i}"))) for i in ids])
            tokens.revoke(token_row.id)
    finally:
        hub.stop()


def _ok(response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"page answered {response.status_code}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--path", type=Path, default=Path("/tmp/screenpop-bench-web.db"), help="the cached SQLite file")
    ap.add_argument("--pg", default="", help="a PostgreSQL URL (a schema screenpop_bench_web is made there)")
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--calls", type=int, default=5_000_000)
    ap.add_argument("--queries", type=int, default=200, help="queries per kind")
    ap.add_argument("--baseline-queries", type=int, default=10, help="baseline queries per kind (they are slow)")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    if str(args.path.resolve()).startswith(str(Path(__file__).resolve().parents[1])):
        sys.exit("the database must not be built inside the repository")
    t0 = time.perf_counter()
    data = Data(args.customers, args.calls)
    print(f"population: {args.customers:,} customers, {args.customers * 3 // 2:,} phones, {args.calls:,} calls, "
          f"{args.customers // 5:,} orders (generated in {time.perf_counter() - t0:.1f} s)", flush=True)
    targets: list[tuple[str, str]] = []
    if args.rebuild or not sqlite_ready(args.path, data):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.path}{suffix}").unlink(missing_ok=True)
        t0 = time.perf_counter()
        steps = build_sqlite(args.path, data)
        print(f"built SQLite {args.path} in {time.perf_counter() - t0:.0f} s: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()), flush=True)
    else:
        print(f"using the cached SQLite {args.path}")
    targets.append(("SQLite", f"sqlite:///{args.path}"))
    if args.pg:
        try:
            if args.rebuild or not postgres_ready(args.pg, data):
                t0 = time.perf_counter()
                steps = build_postgres(args.pg, data)
                print(f"built PostgreSQL schema {SCHEMA} in {time.perf_counter() - t0:.0f} s: "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()), flush=True)
            else:
                print(f"using the cached PostgreSQL schema {SCHEMA}")
            targets.append(("PostgreSQL", f"{args.pg}?schema={SCHEMA}"))
        except Exception:
            traceback.print_exc()
            print("PostgreSQL skipped")
    pages = importlib.util.find_spec("screenpop.daemon.web.pages") is not None
    for label, url in targets:
        db = open_database(url)
        try:
            applied = migrate(db)  # a database cached by an older checkout: bring its schema up to date first
            if applied:
                print(f"{label}: applied migration(s) {applied} to the cached database")
            bench_db(label, db, data, args.queries, args.baseline_queries)
            if pages:
                bench_pages(label, db, data, min(args.queries, 100))
        except Exception:
            traceback.print_exc()
        finally:
            db.close()
    if not pages:
        print("\nthe web pages (screenpop.daemon.web.pages) are not in this checkout: page timings skipped")


if __name__ == "__main__":
    main()
