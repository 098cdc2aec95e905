"""Benchmark the card build with 20 custom fields on 1,000,000 customers on SQLite (docs/customfields.md).

Fills a fresh SQLite file (temp dir) in bulk SQL (one recursive INSERT; the search index's triggers are dropped
first, as the card does not read it): every odd customer holds a value of each of 20 fields of every type, every
even one none. Then times CardBuilder.card for a ringing pop of a random customer (its cache missed every time, so
each build reads the customer), in the same run: odd customers (20 values) in the built-in layout and in a team's
stored layout that shows all 20 fields as lines (docs/card.md, "Layouts": the layouts read from the database, the
20 lines drawn), even ones (no values, 20 fields defined), and even ones after the definitions are deleted (no
custom fields at all: the baseline). Prints p50/p99 in µs; never fails.

    python bench/custom_fields.py [--customers 1000000] [--samples 20000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from screenpop.daemon.customers.lookup import Lookup
from screenpop.daemon.push.card import CardBuilder
from screenpop.daemon.push.layout import DEFAULT_ITEMS, CardLayout
from screenpop.daemon.push.layouts import Layouts
from screenpop.daemon.record.pops import PopRow
from screenpop.daemon.staff import Staff
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.numbers import NumberRules

RULES = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)
KINDS = ["text", "text", "text", "text", "longtext", "number", "number", "money", "money", "date", "date", "choice",
         "choice", "choice", "yesno", "yesno", "link", "link", "text", "text"]
SAMPLE_VALUE = {"text": "Contract K-{i}", "longtext": "Line one of {i}\nline two", "number": "{i}", "money": "{i}.50",
                "date": "2027-01-31", "choice": "Gold", "yesno": "yes", "link": "https://crm.example/c/{i}"}


def fill(db, customers: int) -> None:
    """20 field definitions and the customers, in bulk SQL."""
    p = db.param
    for n, kind in enumerate(KINDS):
        options = json.dumps(["Gold", "Silver", "Bronze"]) if kind == "choice" else "[]"
        db.execute_sql(f"INSERT INTO custom_field (entity, key, label, kind, required, options, position) "
                       f"VALUES ('customer', {p}, {p}, {p}, 0, {p}, {p})", (f"f{n:02d}", f"Field {n}", kind, options, n))
    # the JSON text of the 20 values as an SQL expression, the row number spliced in where a value carries it
    template = json.dumps({f"f{n:02d}": SAMPLE_VALUE[kind] for n, kind in enumerate(KINDS)}, ensure_ascii=False)
    custom_sql = "'" + "' || i || '".join(template.replace("'", "''").split("{i}")) + "'"
    for trigger in ("customer_search_ai", "customer_search_au", "customer_search_ad"):
        db.execute_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    now = dt.datetime(2026, 11, 26).isoformat(sep=" ")
    with db.atomic():
        db.execute_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO customer (id, name, company, category, note, city, country, created_at, updated_at, custom, "
            "custom_text) SELECT i, 'Name ' || i, 'Company ' || i, CASE i % 7 WHEN 0 THEN 'vip' ELSE 'regular' END, "
            f"'', 'Reykjavík', 'IS', '{now}', '{now}', CASE i % 2 WHEN 1 THEN {custom_sql} ELSE '{{}}' END, '' FROM n",
            (customers,))


def timed(cards: CardBuilder, ids: list[int], run: str) -> list[float]:
    """µs per card build, one per id; each pop a new call (run: unique per call of this), so the customer part is
    read every time."""
    out = []
    at = dt.datetime(2026, 11, 26, 12, 0)
    gc.disable()
    try:
        for n, cid in enumerate(ids):
            pop = PopRow(n, "ringing", f"{run}-{n}", "INCOMING", at, "1001", "+3545551234", "", cid, 1)
            start = time.perf_counter_ns()
            cards.card(pop)
            out.append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    return out


def report(label: str, samples: list[float]) -> None:
    q = statistics.quantiles(samples, n=100)
    print(f"  {label:<44} p50 {q[49]:7.1f} µs   p99 {q[98]:7.1f} µs   ({len(samples)} cards)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="screenpop-bench-fields-"))
    try:
        db = open_database(f"sqlite:///{folder / 'bench.db'}")
        migrate(db)
        start = time.monotonic()
        fill(db, args.customers)
        print(f"SQLite, {args.customers:,} customers (half with 20 custom field values) made in "
              f"{time.monotonic() - start:.1f} s")
        staff = Staff()
        staff.load()
        cards = CardBuilder(db, lambda: Lookup(db, RULES), staff, CardLayout())
        rng = random.Random(5)
        odd = [rng.randrange(1, args.customers + 1, 2) for _ in range(args.samples)]
        even = [rng.randrange(2, args.customers + 1, 2) for _ in range(args.samples)]
        timed(cards, odd[:2000], "warm")  # warm the page cache and the statements
        with_values = timed(cards, odd, "values")
        card = cards.card(PopRow(0, "ringing", "x", "INCOMING", dt.datetime(2026, 11, 26), "1001", "", "", odd[0], 1))
        assert len(card["customer"]["fields"]) == 20, card
        # the pops of 1001 in a team whose layout shows the 20 fields after the built-in pieces
        items = [{"field": f"customer.f{n:02d}", "style": "plain"} for n in range(len(KINDS))]
        items += [{"field": i.field, "style": i.style} for i in DEFAULT_ITEMS]
        db.execute_sql(f"INSERT INTO card_layout (name, items) VALUES ('fields', {db.param})", (json.dumps(items),))
        db.execute_sql("INSERT INTO team (name, layout) VALUES ('sales', 'fields')")
        db.execute_sql("INSERT INTO team_member (extension, team) VALUES ('1001', 'sales')")
        team = CardBuilder(db, lambda: Lookup(db, RULES), staff, CardLayout(), layouts=Layouts())
        timed(team, odd[:2000], "warm-team")
        in_team_layout = timed(team, odd, "team")
        card = team.card(PopRow(0, "ringing", "y", "INCOMING", dt.datetime(2026, 11, 26), "1001", "", "", odd[0], 1))
        assert sum(line["field"].startswith("customer.") for line in card["lines"]) == 20, card["lines"]
        without_values = timed(cards, even, "none")
        db.execute_sql("DELETE FROM custom_field")
        cards = CardBuilder(db, lambda: Lookup(db, RULES), staff, CardLayout())  # reads the (now no) definitions afresh
        baseline = timed(cards, even, "baseline")
        report("20 custom fields, 20 values", with_values)
        report("20 values, a team's layout showing all 20", in_team_layout)
        report("20 custom fields, no values", without_values)
        report("no custom fields (baseline)", baseline)
        db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
