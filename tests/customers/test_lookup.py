"""Customer lookup by number: exact E.164, then the last N digits; extensions and raw text never match."""
from __future__ import annotations

import peewee
import pytest

from screenpop.daemon.customers.lookup import MAX_CANDIDATES, Lookup, Match, add_phone
from screenpop.db.models import Customer, Phone
from screenpop.db.numbers import NumberRules

from support import RULES



def customer(external_id: str, *numbers: str) -> Customer:
    c = Customer.create(external_id=external_id, name=external_id)
    for raw in numbers:
        add_phone(c, raw, "", RULES)
    return c


def test_exact_match_in_any_written_form(db: peewee.Database) -> None:
    jon = customer("jon", "+3545551234")
    other = customer("other", "+3545559999")
    lookup = Lookup(db, RULES)
    for raw in ("+3545551234", "5551234", "555 1234", "003545551234", RULES.classify("5551234")):
        assert lookup.find(raw) == Match(jon.id, 1, (jon.id,), "e164")
    assert lookup.find("5559999").customer_id == other.id


def test_suffix_match_on_last_digits(db: peewee.Database) -> None:
    jon = customer("jon", "+12045551234")
    lookup = Lookup(db, RULES)
    # same last 8 digits (45551234), another valid number of the same country
    assert lookup.find("+12145551234") == Match(jon.id, 1, (jon.id,), "suffix")
    # a caller valid in no plan (+1 554 is no area code) may be anyone's: it matches across countries
    assert lookup.find("+15545551234") == Match(jon.id, 1, (jon.id,), "suffix")
    # only 7 digits in common
    assert lookup.find("+12075551234").matches == 0


def test_last_digits_never_match_a_valid_number_of_another_country(db: peewee.Database) -> None:
    """Issue 14: local 555 1234 (IS) named the owners of +45 4555 1234 and +47 4555 1234 as sharing the number."""
    customer("dk", "+45 4555 1234")
    customer("no", "+47 4555 1234")
    lookup = Lookup(db, RULES)
    for raw in ("555 1234", "+3545551234", "+49 30 45551234"):
        assert lookup.find(raw) == Match(None, 0, ()), raw
    # a stored number valid in no plan (kept as dialled, +1 554 ...) still matches any caller by its last digits
    lab = customer("lab", "+1 554 555 1234")
    assert lookup.find("555 1234") == Match(lab.id, 1, (lab.id,), "suffix")
    # and a caller valid in no plan matches them all
    match = lookup.find("+19945551234")
    assert (match.matches, match.matched_by) == (3, "suffix")


def test_suffix_length_is_configurable_without_restoring(db: peewee.Database) -> None:
    jon = customer("jon", "+12045551234")
    assert Lookup(db, RULES).find("+12035551234").matches == 0
    seven = NumberRules("IS", RULES.extension_pattern, 7)
    assert Lookup(db, seven).find("+12035551234") == Match(jon.id, 1, (jon.id,), "suffix")


def test_exact_match_wins_over_suffix_matches(db: peewee.Database) -> None:
    jon = customer("jon", "+3545551234")
    customer("lookalike", "+15545551234")
    assert Lookup(db, RULES).find("+3545551234") == Match(jon.id, 1, (jon.id,), "e164")


def test_suffix_needs_enough_digits(db: peewee.Database) -> None:
    customer("jon", "+15545551234")
    long_suffix = NumberRules("IS", RULES.extension_pattern, 15)
    assert Lookup(db, long_suffix).find("+12045551234").matches == 0


def test_several_customers_share_a_number(db: peewee.Database) -> None:
    a = customer("a", "+3545551234")
    b = customer("b", "+3545551234", "+3545550000")
    match = Lookup(db, RULES).find("5551234")
    assert match == Match(None, 2, (a.id, b.id), "e164")


def test_one_customer_with_two_numbers_sharing_a_suffix_counts_once(db: peewee.Database) -> None:
    a = customer("a", "+3545551234", "+12045551234")
    assert Lookup(db, RULES).find("+12145551234") == Match(a.id, 1, (a.id,), "suffix")


def test_many_matches_are_counted_but_candidates_capped(db: peewee.Database) -> None:
    ids = [customer(f"c{i}", f"+1{i + 20}45551234").id for i in range(MAX_CANDIDATES + 5)]
    match = Lookup(db, RULES).find("+12545551234")
    assert match.customer_id == ids[5]
    match = Lookup(db, RULES).find("+19545551234")
    assert match.customer_id is None
    assert match.matches == MAX_CANDIDATES + 5
    assert match.candidates == tuple(sorted(ids)[:MAX_CANDIDATES])
    assert match.matched_by == "suffix"
    shared = [customer(f"s{i}", "+3545550001").id for i in range(MAX_CANDIDATES + 2)]
    match = Lookup(db, RULES).find("5550001")
    assert match == Match(None, MAX_CANDIDATES + 2, tuple(sorted(shared)[:MAX_CANDIDATES]), "e164")


def test_extension_is_never_looked_up(db: peewee.Database) -> None:
    Customer.create(external_id="x")
    # even if a phone row somehow held the extension's digits, an extension is not looked up
    Phone.create(customer=Customer.get(), e164="1001", rev="1001", raw="1001")
    lookup = Lookup(db, RULES)
    assert lookup.find("1001") == Match(None, 0, ())
    assert lookup.find(RULES.classify("1001")).matches == 0


@pytest.mark.parametrize("raw", ["", "anonymous", "0000000000", "<b>5551234</b>", "5551234' OR '1'='1", "x" * 200, "+"])
def test_raw_numbers_never_match(db: peewee.Database, raw: str) -> None:
    customer("jon", "+3545551234")
    assert Lookup(db, RULES).find(raw) == Match(None, 0, ())


def test_unknown_number(db: peewee.Database) -> None:
    customer("jon", "+3545551234")
    assert Lookup(db, RULES).find("+3545559876") == Match(None, 0, ())


def test_add_phone_normalises_and_refuses_non_numbers(db: peewee.Database) -> None:
    jon = Customer.create(external_id="jon")
    phone = add_phone(jon, " 555-1234 ", "mobile", RULES)
    assert (phone.e164, phone.rev, phone.raw, phone.label) == ("+3545551234", "4321555453", "555-1234", "mobile")
    assert phone.country_code == 354 and add_phone(jon, "+1 554 555 1234", "", RULES).country_code is None
    with pytest.raises(ValueError, match="extension"):
        add_phone(jon, "1001", "", RULES)
    with pytest.raises(ValueError, match="E.164"):
        add_phone(jon, "anonymous", "", RULES)
    assert Phone.select().count() == 2


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_numbers_stored_before_country_codes_get_theirs(request: pytest.FixtureRequest, backend: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 9 adds the column to a database made before it and gives stored valid numbers their code."""
    from screenpop.db import migrations
    from screenpop.db.database import open_database

    db = open_database(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url"))
    monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in migrations.MIGRATIONS if m.version < 9])
    migrations.migrate(db)
    db.execute_sql("ALTER TABLE phone DROP COLUMN country_code")  # as version 1 made it before the column
    dk, lab = Customer.create(external_id="dk"), Customer.create(external_id="lab")
    p = db.param
    for customer_id, e164 in ((dk.id, "+4545551234"), (lab.id, "+15545551234")):
        db.execute_sql(f"INSERT INTO phone (customer_id, e164, rev, raw, label) VALUES ({p}, {p}, {p}, {p}, '')",
                       (customer_id, e164, e164[:0:-1], e164))
    monkeypatch.undo()
    assert 9 in migrations.migrate(db)
    assert dict(Phone.select(Phone.e164, Phone.country_code).tuples()) == {"+4545551234": 45, "+15545551234": None}
    assert Lookup(db, RULES).find("5551234") == Match(lab.id, 1, (lab.id,), "suffix")
    db.close()


def test_every_way_in_stores_the_country_code(db: peewee.Database, tmp_path) -> None:
    """The pages and the API (customers/data.py), the importer and add_phone store what the rule reads."""
    from screenpop.daemon.customers import data as customerdata
    from screenpop.daemon.customers.importer import import_customers

    number, raw, label = customerdata.phone_input("+45 4555 1234", "phones[0]", RULES)
    customerdata.create_customer({"name": "dk"}, [(number, raw, label)])
    csv = tmp_path / "customers.csv"
    csv.write_text("external_id,name,phones\nno,Norway,+47 4555 1234\n", encoding="utf-8")
    assert import_customers(csv, RULES).errors == []
    customer("lab", "+1 554 555 1234")
    assert dict(Phone.select(Phone.e164, Phone.country_code).tuples()) == {
        "+4545551234": 45, "+4745551234": 47, "+15545551234": None}
    assert import_customers(csv, RULES).unchanged == 1
    assert Lookup(db, RULES).find("555 1234").matches == 1
