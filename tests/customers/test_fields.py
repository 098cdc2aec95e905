"""Custom field values and categories outside the API (docs/customfields.md): the value rules by type, CSV import and
export with custom columns (a round trip of hostile values, formula escaping undone only where it was added), and
migration 15 on a database that has customers already; on SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import peewee
import pytest

from screenpop.daemon.customers import admin, values
from screenpop.daemon.customers.exporter import export_customers, export_orders
from screenpop.daemon.customers.importer import import_customers, import_orders
from screenpop.daemon.reports.export import safe_cell, unescape_cell
from screenpop.db import migrations
from screenpop.db.database import open_database
from screenpop.db.models import Customer, Order

from test_import import RULES, write

HOSTILE = ["=cmd|' /C calc'!A0", "'=already quoted", "''=twice", "+SUM(A1)", "-2+3", "@x", "-5", "+354 555",
           "<script>alert(1)</script>", "Jón \u202e ehf, \"quoted\"", "'plain apostrophe"]


@pytest.mark.parametrize("kind,typed,stored", [
    ("text", "  Acme  ", "Acme"), ("longtext", "a\nb", "a\nb"), ("number", "007.50", "7.5"), ("number", "-3", "-3"),
    ("money", "12.5", "12.50"), ("date", "2027-01-31", "2027-01-31"), ("choice", "gold", "Gold"),
    ("yesno", "TRUE", "yes"), ("yesno", "0", "no"), ("link", "https://x.example/?a=1", "https://x.example/?a=1"),
    ("text", "   ", ""), ("date", "", ""),
])
def test_field_value_by_kind(kind, typed, stored):
    assert values.field_value(kind, typed, ("Gold", "Silver")) == stored


@pytest.mark.parametrize("kind,typed", [
    ("number", "1 000"), ("number", "0x10"), ("money", "1,50"), ("date", "2027-1-31"), ("date", "2027-01-31T08:00"),
    ("choice", "Bronze"), ("yesno", "ja"), ("link", "ftp://x.example"), ("link", "http://"), ("link", "data:text/html,x"),
])
def test_field_value_refused(kind, typed):
    with pytest.raises(ValueError):
        values.field_value(kind, typed, ("Gold", "Silver"))


@pytest.mark.parametrize("text", HOSTILE + ["=", "'", "", "12", "-12.5"])
def test_unescape_cell_undoes_safe_cell_exactly(text):
    cell = safe_cell(text)
    assert not str(cell).startswith(("=", "+", "@")) or text in ("12",)
    assert unescape_cell(str(cell)) == text


def _define(entity: str, key: str, kind: str, **more) -> None:
    admin.create_field(admin.field_input({"entity": entity, "key": key, "label": key.title(), "type": kind, **more},
                                         creating=True))


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_round_trip_with_custom_columns(db: peewee.Database, tmp_path: Path) -> None:
    _define("customer", "contract", "text")
    _define("customer", "tier", "choice", options=["Gold", "Silver"])
    _define("customer", "since", "date")
    _define("customer", "vat", "text", required=True)
    _define("order", "due", "date")
    lines = ["external_id,name,category,phones,contract,tier,since,vat"]
    for i, hostile in enumerate(HOSTILE):
        lines.append(f'C{i},"{hostile.replace(chr(34), chr(34) * 2)}",VIP,+35455512{i:02d},'
                     f'"{hostile.replace(chr(34), chr(34) * 2)}",gold,2027-01-{i + 1:02d},V{i}')
    lines += ["BAD1,x,vip,,,Platinum,,V", "BAD2,x,vip,,,,31/01/2027,V", "BAD3,x,vip,,,,,", "BAD4,x,gold,,,,,V"]
    report = import_customers(write(tmp_path, "\n".join(lines) + "\n"), RULES)
    n = len(HOSTILE)
    assert report.created == n
    errors = dict(report.errors)
    assert errors[n + 2].startswith("tier: 'Platinum' is not one of Gold, Silver")
    assert errors[n + 3].startswith("since: ") and errors[n + 4] == "vat: required (Vat)"
    assert errors[n + 5].startswith("category 'gold' is not one of regular, vip, problem")
    stored = {c.external_id: c for c in Customer.select()}
    assert stored["C0"].name == HOSTILE[0] and stored["C0"].category == "vip"
    # out: every cell formula-safe; back in: the same values, nothing changed
    out = io.StringIO()
    assert export_customers(db, out) == n
    exported = _rows(out.getvalue())
    assert list(exported[0]) == ["external_id", "name", "company", "category", "note", "city", "country", "phones",
                                 "contract", "tier", "since", "vat"]
    assert exported[0]["contract"] == "'" + HOSTILE[0] and exported[0]["tier"] == "Gold"
    for row in exported:
        assert all(not v.startswith(("=", "+", "@", "-")) or v.lstrip("+-").replace(".", "").isdigit()
                   for v in row.values()), row
    path = tmp_path / "out.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    report = import_customers(path, RULES)
    assert (report.created, report.updated, report.unchanged, report.errors) == (0, 0, n, [])
    again = {c.external_id: (c.name, c.custom) for c in Customer.select()}
    assert again == {k: (c.name, c.custom) for k, c in stored.items()}
    # an edited cell updates that customer only; an empty cell clears the value
    path.write_text(out.getvalue().replace(",Gold,2027-01-01,", ",Silver,,", 1), encoding="utf-8")
    report = import_customers(path, RULES)
    assert (report.updated, report.unchanged) == (1, n - 1)
    c0 = admin.custom.decode(Customer.get(Customer.external_id == "C0").custom)
    assert c0 == {"contract": HOSTILE[0], "tier": "Silver", "vat": "V0"}
    # orders: the same for their fields
    report = import_orders(write(tmp_path, "number,customer,amount,due\nA-1,C1,10.00,2027-03-01\nA-2,C1,,03/01\n",
                                 "orders.csv"))
    assert report.created == 1 and report.errors[0][0] == 3 and report.errors[0][1].startswith("due: ")
    out = io.StringIO()
    assert export_orders(db, out) == 1
    assert _rows(out.getvalue()) == [{"number": "A-1", "customer": "C1", "title": "", "stage": "", "responsible": "",
                                      "amount": "10.00", "paid": "0.00", "status": "open", "due": "2027-03-01"}]
    assert admin.custom.decode(Order.get(Order.number == "A-1").custom) == {"due": "2027-03-01"}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_15_keeps_every_customers_category(backend, request, monkeypatch) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    database = open_database(url)
    try:
        monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:14])
        migrations.migrate(database)
        for name, category in (("A", "vip"), ("B", "gold"), ("Sigurður", "regular")):
            database.execute_sql(f"INSERT INTO customer (name, company, category, note, city, country, created_at, "
                                 f"updated_at) VALUES ({database.param}, '', {database.param}, '', 'Reykjavík', '', "
                                 "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)", (name, category))
        monkeypatch.undo()
        assert migrations.migrate(database)[0] == 15, "15 and any later ones"
        listed = database.execute_sql("SELECT name, flag, is_default FROM category ORDER BY position").fetchall()
        assert [(n, f, bool(d)) for n, f, d in listed] == [
            ("regular", "", True), ("vip", "\u2605 VIP", False), ("problem", "\u26a0 PROBLEM", False), ("gold", "", False)]
        rows = database.execute_sql("SELECT name, category, custom, custom_text FROM customer ORDER BY id").fetchall()
        assert rows == [("A", "vip", "{}", ""), ("B", "gold", "{}", ""), ("Sigurður", "regular", "{}", "")]
        from screenpop.db.search import search_customers
        assert len(search_customers(database, "sigurdur", 10)) == 1, "the index was rebuilt with what was stored"
    finally:
        database.close()
