"""Customer search (db/search.py) and the record page's data (daemon/customers/record.py), on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import peewee
import pytest

from screenpop.daemon.customers.importer import import_customers
from screenpop.daemon.customers.lookup import add_phone
from screenpop.daemon.customers.record import customer_record
from screenpop.db.database import open_database
from screenpop.db.migrations import MIGRATIONS, current_version, migrate
from screenpop.db.models import ALL_MODELS, Call, Customer, Employee, Order, Phone, SchemaVersion
from screenpop.db.numbers import NumberRules
from screenpop.db.search import MAX_RESULTS, search_customers

RULES = NumberRules("IS", r"^[1-9][0-9]{1,3}$", 7)


def find(db: peewee.Database, text: str, limit: int = 50, offset: int = 0, rules: NumberRules | None = RULES) -> list[int]:
    return search_customers(db, text, limit, offset, rules=rules)


@pytest.fixture
def people(db: peewee.Database) -> dict[str, int]:
    rows = {
        "jon": ("Jón Guðmundsson", "Acme ehf", "Reykjavík", ["+354 555 1234", "+354 820 7777"]),
        "ajona": ("Ajóna Sigurðardóttir", "Beta", "Akureyri", ["+354 555 9999"]),
        "thora": ("ÞÓRA Æsudóttir", "100% _Pípur_ hf.", "Ísafjörður", ["+44 20 7946 0123"]),
        "smith": ("John O'Brien-Smith", "Jónsson & Co", "Dublin", ["+1 415 555 0100"]),
        "li": ("Li Wei", "北京贸易", "Zürich", []),
    }
    ids = {}
    for key, (name, company, city, phones) in rows.items():
        c = Customer.create(name=name, company=company, city=city)
        for raw in phones:
            add_phone(c, raw, "", RULES)
        ids[key] = c.id
    return ids


def test_names_companies_cities_case_and_accents(db, people):
    p = people
    assert find(db, "jón") == [p["jon"], p["smith"], p["ajona"]]  # a whole word, a word's start, inside a word
    assert find(db, "JON")[0] == p["jon"]
    assert find(db, "gudm") == [p["jon"]]
    assert find(db, "Guðmundsson") == [p["jon"]]
    assert find(db, "acme") == [p["jon"]]
    assert find(db, "reykjavik") == find(db, "REYKJAVÍK") == [p["jon"]]
    assert find(db, "þóra") == find(db, "thora") == find(db, "Þóra") == [p["thora"]]
    assert find(db, "isafjord") == [p["thora"]]
    assert find(db, "zurich") == [p["li"]]
    assert find(db, "北京") == [p["li"]] and find(db, "贸易") == []  # two characters: the start of a word only
    assert find(db, "北京贸易") == [p["li"]]
    assert find(db, "li") == [p["li"]]
    assert find(db, "o'brien") == find(db, "brien smith") == find(db, "Smith Dublin") == [p["smith"]]
    assert find(db, "jón akureyri") == [p["ajona"]]  # every word must match, across fields
    assert find(db, "dóttir") == [p["ajona"], p["thora"]]
    assert find(db, "100%") == [p["thora"]] and find(db, "_pípur_") == [p["thora"]]


def test_numbers_in_any_format(db, people):
    p = people
    for text in ("+354 555 1234", "+3545551234", "555-1234", "555 1234", "5551234", "(555) 1234", "00354 555 1234",
                 "003545551234", "354-555-1234", "1234", "51234", "55512", "5 5 5 1 2 3 4"):
        assert find(db, text) == [p["jon"]], text
        assert find(db, text, rules=None) == [p["jon"]], text
    assert find(db, "820 7777") == [p["jon"]]
    assert find(db, "+354 555") == find(db, "00354 555", rules=None) == [p["jon"], p["ajona"]]  # typing on
    assert find(db, "020 7946 0123", rules=NumberRules("GB", r"^[1-9][0-9]{1,3}$", 7)) == [p["thora"]]
    assert find(db, "020 7946 0123") == [p["thora"]]  # the trunk 0 dropped, the rest as a suffix
    assert find(db, "+1 (415) 555-0100") == [p["smith"]]
    assert find(db, "555") == [p["jon"], p["ajona"], p["smith"]]  # exact / suffix / anywhere
    assert find(db, "9999") == [p["ajona"]]
    assert find(db, "0100") == [p["smith"]]


def test_number_ranking_exact_then_suffix_then_anywhere(db):
    anywhere = Customer.create(name="Anywhere")
    add_phone(anywhere, "+354 123 4567", "", RULES)
    suffix = Customer.create(name="Suffix")
    add_phone(suffix, "+1 415 912 3456", "", RULES)
    exact = Customer.create(name="Exact")
    add_phone(exact, "+354 812 3456", "", RULES)
    assert find(db, "812 3456") == [exact.id]
    for digits in ("123456", "3456"):  # two end so, one has them inside
        assert set(find(db, digits)[:2]) == {suffix.id, exact.id} and find(db, digits)[2] == anywhere.id


def test_no_match_and_hostile_input(db, people):
    everybody = set(people.values())
    for text in ("", "   ", "x", "zz", "qqqq", "nobody here", "999 000", "%", "_", "%%%", "___", "'", "''", '"', '""',
                 "*", "NEAR", "NEAR(jón ajóna)", "jón OR ajóna", "OR", "AND", "NOT jón", "jón NOT acme",
                 "names:jón", "{names}: x", "^jón", "-jón", "+", "++++", "()", "\\", "\x00", "jón\x00", "\ud800",
                 "' OR 1=1 --", "%' OR '%'='", "a" * 10_000, "jón " * 500, "5" * 300, "\u202e", "😀"):
        got = find(db, text)
        assert set(got) != everybody, text
        assert got == [] or "jón" in text, (text, got)
    assert find(db, "jó*") == find(db, "jó") == [people["jon"], people["smith"]]  # * is a plain character
    assert find(db, "jón", limit=0) == [] and find(db, "jón", offset=-1) == []
    assert find(db, "jón", offset=MAX_RESULTS) == []


def test_limit_and_offset_page_the_same_order(db):
    ids = [Customer.create(name=f"Page Person {i}").id for i in range(30)]
    whole = find(db, "person")
    assert sorted(whole) == ids
    assert find(db, "person", 10) + find(db, "person", 10, 10) + find(db, "person", 10, 20) == whole
    assert find(db, "person", 5, 28) == whole[28:]


def test_index_follows_updates_and_deletes(db, people):
    p = people
    Customer.update(name="Gunnar Hámundarson", city="Hlíðarendi").where(Customer.id == p["jon"]).execute()
    assert find(db, "gudm") == []
    assert find(db, "hamund") == find(db, "hlidar") == [p["jon"]]
    assert find(db, "acme") == [p["jon"]]
    Phone.delete().where(Phone.e164 == "+3545551234").execute()
    assert find(db, "5551234") == []
    assert find(db, "8207777") == [p["jon"]]
    Phone.update(customer=p["ajona"]).where(Phone.e164 == "+3548207777").execute()
    assert find(db, "8207777") == [p["ajona"]]
    Phone.update(e164="+3548207778", rev="8777028453").where(Phone.e164 == "+3548207777").execute()
    assert find(db, "8207777") == [] and find(db, "820 7778") == [p["ajona"]]
    Customer.delete().where(Customer.id == p["ajona"]).execute()
    assert find(db, "akureyri") == [] and find(db, "8207778") == []
    c = Customer.create(name="Newcomer", city="Vík")
    add_phone(c, "+354 777 0000", "", RULES)
    assert find(db, "newcomer") == find(db, "vik") == find(db, "7770000") == [c.id]


def test_csv_import_keeps_the_index_right(db, tmp_path: Path):
    path = tmp_path / "customers.csv"
    path.write_text("external_id,name,company,city,phones\nA1,Sigríður Jónsdóttir,Orka,Selfoss,+354 600 1111\n"
                    "A2,Björn Árnason,Orka,Höfn,mobile:600 2222;office:600 3333\n", encoding="utf-8")
    assert import_customers(path, RULES).ok
    a1, a2 = (Customer.get(Customer.external_id == e).id for e in ("A1", "A2"))
    assert find(db, "sigridur") == [a1] and find(db, "orka") == [a1, a2] and find(db, "6003333") == [a2]
    path.write_text("external_id,name,company,city,phones\nA2,Björn Árnason,Orka,Vík,600 4444\n", encoding="utf-8")
    assert import_customers(path, RULES).ok
    assert find(db, "hofn") == [] and find(db, "vik") == [a2]
    assert find(db, "6002222") == [] and find(db, "6004444") == [a2] and find(db, "6001111") == [a1]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def before_search(request: pytest.FixtureRequest):
    """A database with every migration but the search index's: an install from before it, where a higher
    version (landed earlier) is already applied."""
    db = open_database(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    with db.bind_ctx([*ALL_MODELS, SchemaVersion]):
        for migration in MIGRATIONS:
            if migration.version != 3:
                migration.apply(db)
                SchemaVersion.create(version=migration.version)
    yield db
    db.close()


def test_migration_fills_the_index_from_existing_data(before_search):
    db = before_search
    old = Customer.create(name="Þorsteinn Eiríksson", company="Gamla ehf", city="Egilsstaðir")
    add_phone(old, "+354 471 1000", "", RULES)
    assert current_version(db) == MIGRATIONS[-1].version
    assert migrate(db) == [3]
    assert find(db, "thorsteinn") == find(db, "gamla") == find(db, "egilsst") == find(db, "4711000") == [old.id]
    new = Customer.create(name="Þorsteinn Nýr")
    assert find(db, "þorsteinn") == [old.id, new.id]
    assert migrate(db) == []


def test_customer_record(db):
    anna = Employee.create(name="Anna", extension="1001")
    c = Customer.create(name="Jón", company="Acme", category="vip", city="Vík", note="pays late")
    add_phone(c, "+354 555 1234", "mobile", RULES)
    add_phone(c, "+354 555 1235", "office", RULES)
    Order.create(customer=c, number="A-1", title="Boiler", responsible=anna, amount=Decimal("1250.50"), paid=Decimal("1000"))
    Order.create(customer=c, number="A-2", amount=Decimal("99.99"), paid=Decimal("0"))
    Order.create(customer=c, number="A-3", amount=Decimal("500"), paid=Decimal("0"), status="closed")
    other = Customer.create(name="Other")
    start = dt.datetime(2026, 1, 1, 8, 0)
    for i in range(120):
        Call.create(uuid=f"u{i}", direction="INCOMING" if i % 2 else "OUTGOING", customer=other if i % 10 == 0 else c,
                    started_at=start + dt.timedelta(minutes=i // 2), extension="1001", employee=anna if i % 3 else None,
                    talk_seconds=float(i), missed=i % 5 == 0, external_number="+3545551234")
    record = customer_record(db, c.id)
    assert (record["name"], record["company"], record["category"], record["note"]) == ("Jón", "Acme", "vip", "pays late")
    assert isinstance(record["created_at"], dt.datetime)
    assert [(x["e164"], x["label"]) for x in record["phones"]] == [("+3545551234", "mobile"), ("+3545551235", "office")]
    assert [(o["number"], o["responsible"], o["amount"], o["paid"], o["debt"]) for o in record["orders"]] == [
        ("A-1", "Anna", Decimal("1250.50"), Decimal("1000.00"), Decimal("250.50")),
        ("A-2", None, Decimal("99.99"), Decimal("0.00"), Decimal("99.99")),
        ("A-3", None, Decimal("500.00"), Decimal("0.00"), Decimal("500.00")),
    ]
    assert record["debt"] == Decimal("350.49")
    mine = list(Call.select().where(Call.customer == c).order_by(Call.started_at.desc(), Call.id.desc()))
    assert len(record["calls"]) == 50 and [x["id"] for x in record["calls"]] == [x.id for x in mine[:50]]
    first = record["calls"][0]
    assert first["started_at"] == mine[0].started_at and first["direction"] == mine[0].direction
    assert first["operator"] == ("Anna" if mine[0].employee_id else None) and first["missed"] is mine[0].missed
    assert first["talk_seconds"] == mine[0].talk_seconds and first["extension"] == "1001"
    pages, before = [], None
    while True:
        page = customer_record(db, c.id, calls_limit=25, calls_before=before)
        pages += [x["id"] for x in page["calls"]]
        before = page["calls_before"]
        if before is None:
            break
    assert pages == [x.id for x in mine]  # equal start times are ordered by id, nothing lost or repeated
    assert customer_record(db, c.id, calls_before=mine[-1].id)["calls"] == []
    assert customer_record(db, 999_999) is None
    empty = customer_record(db, other.id)
    assert empty["phones"] == [] and empty["orders"] == [] and empty["debt"] == Decimal("0.00") and len(empty["calls"]) == 12
