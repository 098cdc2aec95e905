"""The call facts the triggers keep (db/callfacts.py) always equal a from-scratch computation, on both databases.

A seeded random history of inserts, re-links, number changes, answers, misses, ends and deletes, in any time
order, checked after every step against a plain Python reading of the rules (each missed call's stored callback
too); and migrations 6 and 22 over calls stored before them.
"""
from __future__ import annotations

import datetime as dt
import random

import pytest

from screenpop.db import migrations
from screenpop.db.callfacts import CALLBACK_HOURS
from screenpop.db.database import open_database
from screenpop.db.models import Call, CallParty, Customer

T0 = dt.datetime(2026, 11, 20, 8, 0)
NUMBERS = ["+3545550001", "+3545550002", "+3545550003", None]
DIRECTIONS = ["INCOMING", "INCOMING", "INCOMING", "OUTGOING", "INTERNAL"]


def _time(value) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)


def expected(calls: list[dict]) -> dict[int, tuple]:
    """Call id -> (next inbound start, resolved), by the rules in docs/analytics.md."""
    out = {}
    for c in calls:
        nxt = None
        if c["direction"] == "INCOMING" and (c["customer_id"] or c["external_e164"]):
            same = ((lambda r: r["customer_id"] == c["customer_id"]) if c["customer_id"]
                    else (lambda r: r["external_e164"] == c["external_e164"]))
            later = [r["started_at"] for r in calls
                     if r["direction"] == "INCOMING" and r["started_at"] > c["started_at"] and same(r)]
            nxt = min(later, default=None)
            end = c["ended_at"] or c["started_at"]
            resolved = nxt is None or (nxt - end) > dt.timedelta(hours=CALLBACK_HOURS)
        else:
            resolved = None
        out[c["id"]] = (nxt, resolved)
    return out


def callbacks(calls: list[dict]) -> dict[int, tuple]:
    """Call id -> (id, answer time) of the call that returned it: for a missed INCOMING call, the first by start
    (then id) of the later answered INCOMING or OUTGOING calls with its customer or its E.164 number."""
    out = {}
    for c in calls:
        back = None
        if c["direction"] == "INCOMING" and c["missed"]:
            same = [r for r in calls if r["direction"] in ("INCOMING", "OUTGOING") and r["answered_at"] is not None
                    and r["started_at"] > c["started_at"]
                    and ((c["customer_id"] and r["customer_id"] == c["customer_id"])
                         or (c["external_e164"] and r["external_e164"] == c["external_e164"]))]
            first = min(same, key=lambda r: (r["started_at"], r["id"]), default=None)
            back = first and (first["id"], first["answered_at"])
        out[c["id"]] = back or (None, None)
    return out


def check(db) -> None:
    """Every call's next_inbound_at and callback, and every party's copies, agree with expected() and callbacks()."""
    columns = ("id", "direction", "customer_id", "external_e164", "started_at", "ended_at", "answered_by",
               "next_inbound_at", "answered_at", "missed", "callback_id", "callback_at")
    calls = [dict(zip(columns, row)) for row in db.execute_sql(f'SELECT {", ".join(columns)} FROM "call"').fetchall()]
    for c in calls:
        for key in ("started_at", "ended_at", "next_inbound_at", "answered_at", "callback_at"):
            c[key] = _time(c[key])
    want = expected(calls)
    back = callbacks(calls)
    by_id = {c["id"]: c for c in calls}
    for c in calls:
        assert c["next_inbound_at"] == want[c["id"]][0], c
        assert (c["callback_id"], c["callback_at"]) == back[c["id"]], c
    parties = db.execute_sql("SELECT call_id, extension, call_started_at, call_direction, call_answered_by, "
                             "call_resolved FROM call_party").fetchall()
    for call_id, ext, started, direction, answered_by, resolved in parties:
        c = by_id[call_id]
        got = (_time(started), direction, answered_by, None if resolved is None else bool(resolved))
        assert got == (c["started_at"], c["direction"], c["answered_by"], want[call_id][1]), (ext, c)


def test_random_history_keeps_facts_exact(db):
    rng = random.Random(6)
    customers = [Customer.create(name=f"C{i}").id for i in range(3)] + [None]
    ids: list[int] = []
    for step in range(240):
        op = rng.choice(["insert"] * 4 + ["link", "link_number", "number", "answer", "answer_at", "miss", "end", "move",
                                          "delete", "party"])
        if op == "insert" or not ids:
            start = T0 + dt.timedelta(hours=rng.randrange(0, 96), minutes=rng.choice([0, 0, 30]))
            answered = rng.choice([None, start + dt.timedelta(seconds=rng.choice([5, 5, 7]))])
            call = Call.create(uuid=f"u{step}", direction=rng.choice(DIRECTIONS), started_at=start,
                               customer=rng.choice(customers), external_e164=rng.choice(NUMBERS),
                               answered_at=answered, missed=answered is None and rng.random() < 0.6)
            ids.append(call.id)
            for ext in rng.sample(["1001", "1002", "1003"], rng.randrange(0, 3)):
                CallParty.create(call=call.id, extension=ext, role="callee")
            continue
        target = rng.choice(ids)
        if op == "link":
            Call.update(customer=rng.choice(customers)).where(Call.id == target).execute()
        elif op == "link_number":  # the web page's "add this number to a customer": every such call in one UPDATE
            number = rng.choice(NUMBERS[:-1])
            Call.update(customer=rng.choice(customers[:-1])).where(
                Call.customer.is_null() & (Call.external_e164 == number)).execute()
        elif op == "number":
            Call.update(external_e164=rng.choice(NUMBERS)).where(Call.id == target).execute()
        elif op == "answer":
            Call.update(answered_by=rng.choice(["1001", "1002", None])).where(Call.id == target).execute()
        elif op == "answer_at":
            Call.update(answered_at=rng.choice([None, T0 + dt.timedelta(hours=rng.randrange(0, 96))])).where(
                Call.id == target).execute()
        elif op == "miss":
            Call.update(missed=rng.random() < 0.5).where(Call.id == target).execute()
        elif op == "end":
            Call.update(ended_at=T0 + dt.timedelta(hours=rng.randrange(0, 130))).where(Call.id == target).execute()
        elif op == "move":
            Call.update(started_at=T0 + dt.timedelta(hours=rng.randrange(0, 96)),
                        direction=rng.choice(DIRECTIONS)).where(Call.id == target).execute()
        elif op == "delete":
            Call.delete().where(Call.id == target).execute()
            ids.remove(target)
        elif op == "party":
            CallParty.insert(call=target, extension=f"2{step:03d}", role="caller").execute()
        check(db)
    returned = db.execute_sql('SELECT COUNT(*) FROM "call" WHERE callback_id IS NOT NULL').fetchone()[0]
    assert returned >= 3, "the history returns some missed calls"


def _callback_of(db, uuid: str) -> tuple:
    back, at = db.execute_sql('SELECT b.uuid, c.callback_at FROM "call" c LEFT JOIN "call" b ON b.id = c.callback_id '
                              f"WHERE c.uuid = {db.param}", [uuid]).fetchone()
    return back, _time(at)


def test_stored_callback_follows_later_and_earlier_calls(db):
    """A missed call's callback: set when a later answered call comes, moved to an earlier one stored after the
    fact (a CDR), back when that goes, and gone or changed when calls are reassigned to another number or customer."""
    acme = Customer.create(name="Acme")
    other = Customer.create(name="Other")
    at = lambda h: T0 + dt.timedelta(hours=h)
    Call.create(uuid="missed", direction="INCOMING", started_at=at(0), ended_at=at(0.01), customer=acme,
                external_e164="+3545550001", missed=True)
    assert _callback_of(db, "missed") == (None, None)
    later = Call.create(uuid="later", direction="OUTGOING", started_at=at(5), customer=acme, external_e164="+3545550009")
    assert _callback_of(db, "missed") == (None, None), "not answered yet"
    Call.update(answered_at=at(5.01)).where(Call.id == later.id).execute()
    assert _callback_of(db, "missed") == ("later", at(5.01))
    cdr = Call.create(uuid="cdr", direction="INCOMING", started_at=at(2), answered_at=at(2.01),
                      external_e164="+3545550001", recovered=True)  # the same number, stored after the fact
    assert _callback_of(db, "missed") == ("cdr", at(2.01))
    check(db)
    Call.update(external_e164="+3545550002").where(Call.id == cdr.id).execute()  # reassigned to another number
    assert _callback_of(db, "missed") == ("later", at(5.01))
    Call.update(customer=other).where(Call.id == later.id).execute()  # and to another customer
    assert _callback_of(db, "missed") == (None, None)
    Call.update(customer=acme).where(Call.id == later.id).execute()
    Call.delete().where(Call.id == later.id).execute()
    assert _callback_of(db, "missed") == (None, None)
    Call.update(customer=acme).where(Call.id == cdr.id).execute()  # the CDR's call linked to the customer
    assert _callback_of(db, "missed") == ("cdr", at(2.01))
    Call.update(missed=False, answered_at=at(0.005)).where(Call.uuid == "missed").execute()  # answered after all
    assert _callback_of(db, "missed") == (None, None)
    check(db)


def test_deleting_a_customer_hands_its_calls_to_their_numbers(db):
    acme = Customer.create(name="Acme")
    first = Call.create(uuid="a", direction="INCOMING", started_at=T0, customer=acme, external_e164="+3545550001",
                        ended_at=T0 + dt.timedelta(minutes=5))
    Call.create(uuid="b", direction="INCOMING", started_at=T0 + dt.timedelta(hours=2), customer=acme,
                external_e164="+3545550002")
    Call.create(uuid="c", direction="INCOMING", started_at=T0 + dt.timedelta(hours=30), external_e164="+3545550001")
    CallParty.create(call=first, extension="1001", role="callee", talked=True)
    check(db)
    assert db.execute_sql("SELECT call_resolved FROM call_party").fetchone()[0] in (0, False)  # Acme again in 2 h
    Customer.delete().where(Customer.id == acme.id).execute()  # calls keep their numbers (ON DELETE SET NULL)
    check(db)
    assert db.execute_sql("SELECT call_resolved FROM call_party").fetchone()[0] in (1, True)  # its number: 30 h later
    assert _time(db.execute_sql('SELECT next_inbound_at FROM "call" WHERE uuid = \'a\'').fetchone()[0]) == \
        T0 + dt.timedelta(hours=30)


def test_migration_fills_facts_for_calls_stored_before_it(migrated_before):
    db = migrated_before(6)
    assert "next_inbound_at" not in {c.name for c in db.get_columns("call")}
    acme = Customer.create(name="Acme")
    for i, hours in enumerate([0, 3, 40, 41]):
        call = Call.create(uuid=f"m{i}", direction="INCOMING", started_at=T0 + dt.timedelta(hours=hours),
                           customer=acme if i != 2 else None, external_e164="+3545550001", answered_by="1001",
                           answered_at=T0 + dt.timedelta(hours=hours, seconds=9),
                           ended_at=T0 + dt.timedelta(hours=hours, minutes=10))
        CallParty.create(call=call, extension="1001", role="callee", talked=True)
    Call.create(uuid="missed", direction="INCOMING", started_at=T0 + dt.timedelta(hours=2), missed=True,
                external_e164="+3545550001")
    assert migrations.migrate(db) == [m.version for m in migrations.MIGRATIONS if m.version >= 6]
    check(db)
    assert _callback_of(db, "missed") == ("m1", T0 + dt.timedelta(hours=3, seconds=9))  # migration 22 filled it
    resolved = [r for r, in db.execute_sql("SELECT call_resolved FROM call_party ORDER BY call_id").fetchall()]
    # m0: Acme again 3 h later; m1: Acme next at 41 h; m2 (no customer): its number at 41 h; m3: nothing after
    assert [None if r is None else bool(r) for r in resolved] == [False, True, False, True]
    Call.create(uuid="later", direction="INCOMING", started_at=T0 + dt.timedelta(hours=42), customer=acme)
    check(db)  # the triggers run from now on


@pytest.mark.postgres
def test_postgres_writes_a_new_or_rekeyed_call_once(pg_url):
    """PostgreSQL sets a call's own callback before the row is written: one row version per statement, so one
    set of index entries (an AFTER trigger's own UPDATE used to write every call twice)."""
    db = open_database(pg_url)
    migrations.migrate(db)
    acme = Customer.create(name="Acme")
    Call.create(uuid="later", direction="INCOMING", started_at=T0 + dt.timedelta(hours=5), customer=acme)
    call = Call.create(uuid="first", direction="INCOMING", started_at=T0, external_e164="+3545550001")
    versions = lambda: db.execute_sql("SELECT ctid FROM \"call\" WHERE id = %s", (call.id,)).fetchone()[0]
    assert versions() == "(0,2)", "the second row of an empty table, written once"
    Call.update(customer=acme).where(Call.id == call.id).execute()
    assert versions() == "(0,3)"
    check(db)
    assert db.execute_sql("SELECT next_inbound_at FROM \"call\" WHERE id = %s", (call.id,)).fetchone()[0] == \
        T0 + dt.timedelta(hours=5)
    db.close()
