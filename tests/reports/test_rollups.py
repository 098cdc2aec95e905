"""The roll-ups the triggers keep (db/rollups.py) always equal a sum over the rows, on both databases.

A seeded random history of calls as the writer writes them (inserted ringing, parties ringing one by one or several
in one statement, answered, ended, customers linked and relinked, CDRs arriving for earlier times, calls moved,
deleted, customers deleted), checked after every step against a plain Python reading of the rows; the load, daily
and employee reports from the roll-ups against the same reports read from the rows, over periods whose bounds cut
slots and days; and migration 25 over calls stored before it.
"""
from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest

from screenpop.daemon.reports import analytics
from screenpop.db import migrations, rollups
from screenpop.db.models import Call, CallParty, Customer

T0 = dt.datetime(2026, 10, 23, 21, 50)  # the history spans the night summer time ends in Europe (25 October)
ZONE = ZoneInfo("Europe/Berlin")
EXTENSIONS = ["1001", "1002", "1003"]
NUMBERS = ["+3545550001", "+3545550002", None]


def _time(value) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _unit(t: dt.datetime, seconds: int) -> int:
    return int((t.replace(microsecond=0) - dt.datetime(1970, 1, 1)).total_seconds()) // seconds


def expected(db) -> tuple[dict, dict, dict]:
    """call_slot, employee_day and customer_calls as plain Python computes them from the calls and parties
    (docs/analytics.md)."""
    calls = {row[0]: row for row in db.execute_sql(
        'SELECT id, direction, started_at, answered_by, missed, talk_seconds, customer_id FROM "call"').fetchall()}
    parties = db.execute_sql("SELECT call_id, extension, role, talked, outcome, talk_seconds, hold_seconds, rang_at, "
                             "answered_at, call_resolved FROM call_party").fetchall()
    rang = {p[0] for p in parties if p[7] is not None}
    slots: dict[int, list] = defaultdict(lambda: [0] * 6 + [0.0])
    customers: dict[int, list] = {}
    for cid, direction, started, answered_by, missed, talk, customer in calls.values():
        if direction not in ("INCOMING", "OUTGOING"):
            continue
        if customer is not None:
            c = customers.setdefault(customer, [0, 0, 0, 0, None])
            for i, add in enumerate((1, direction == "INCOMING", direction == "OUTGOING", bool(missed))):
                c[i] += add
            c[4] = max(c[4] or _time(started), _time(started))
        inbound = direction == "INCOMING"
        s = slots[_unit(_time(started), rollups.SLOT_SECONDS)]
        for i, add in enumerate((1, inbound, not inbound, inbound and answered_by is not None, inbound and bool(missed),
                                 inbound and bool(missed) and cid in rang, talk or 0.0)):
            s[i] += add
    days: dict[tuple, list] = defaultdict(lambda: [0] * 13)
    for cid, ext, role, talked, outcome, talk, hold, rang_at, answered_at, resolved in parties:
        _, direction, started, answered_by, *_ = calls[cid]
        if direction not in ("INCOMING", "OUTGOING"):
            continue
        inbound, made = direction == "INCOMING", direction == "OUTGOING" and role == "caller"
        taken = inbound and role == "callee" and bool(talked)
        first = inbound and ext == answered_by and rang_at is not None and answered_at is not None
        wait = (_time(answered_at) - _time(rang_at)).total_seconds() if first else 0.0
        shares = (1, taken, made, made and bool(talked), inbound and role == "callee" and outcome == "missed",
                  bool(talked) and talk is not None, (talk or 0.0) if talked else 0.0,
                  hold if talked and talk is not None else 0.0, bool(talked) and hold > 0, taken and bool(resolved),
                  taken and resolved is not None, first, wait)
        d = days[(ext, _unit(_time(started), rollups.DAY_SECONDS))]
        for i, add in enumerate(shares):
            d[i] += add
    return dict(slots), dict(days), customers


def _stored(db, rollup: rollups.Rollup, keys: int) -> dict:
    rows = db.execute_sql(f"SELECT * FROM {rollup.table}").fetchall()
    return {(row[0] if keys == 1 else tuple(row[:keys])): list(row[keys:]) for row in rows if row[keys]}


def _same(got: dict, want: dict) -> None:
    assert set(got) == {k for k, v in want.items() if v[0]}
    for key, sums in got.items():
        assert sums == [pytest.approx(v, abs=1e-3) for v in want[key]], key


def check(db) -> None:
    """The roll-up tables equal expected() (their units with no rows left may stay, all zero)."""
    slots, days, customers = expected(db)
    _same(_stored(db, rollups.CALL_SLOT, 1), slots)
    _same(_stored(db, rollups.EMPLOYEE_DAY, 2), days)
    stored = {cid: [*v[:-1], _time(v[-1])] for cid, v in _stored(db, rollups.CUSTOMER_CALLS, 1).items()}
    assert stored == {k: v for k, v in customers.items() if v[0]}


def _rows_only(monkeypatch, fn, period):
    """The report as read from the rows alone: no unit counts as whole, no customer's calls are rolled up."""
    with monkeypatch.context() as m:
        m.setattr(analytics, "_whole", lambda period, seconds: None)
        m.setattr(analytics, "_rolled_up", lambda period: False)
        return fn(period)


def _customers_rolled_up(period):
    """The customers report from the roll-up less the calls outside the period, whatever the period's length."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(analytics, "_rolled_up", lambda period: not period.extension)
        return analytics.customers(period)


def same_reports(db, monkeypatch, rng: random.Random) -> None:
    """load, daily, employees and customers from the roll-ups equal the same reports read from the rows, over
    periods whose bounds cut a slot and a day, fall on a slot's edge, or are open."""
    for _ in range(3):
        since = T0 + dt.timedelta(minutes=rng.randrange(-60, 60 * 60), seconds=rng.choice([0, 0, 17.5]))
        until = since + dt.timedelta(minutes=rng.randrange(1, 60 * 80))
        for period in (analytics.Period(since, until, ZONE), analytics.Period(None, until, ZONE),
                       analytics.Period(since, None, ZONE), analytics.Period(None, None, ZONE),
                       analytics.Period(since, until, ZONE, "1002"),
                       analytics.Period(since, since + dt.timedelta(minutes=rng.randrange(1, 90)), ZONE)):
            for fn, report in ((analytics.load, analytics.load), (analytics.daily, analytics.daily),
                               (analytics.employees, analytics.employees), (_customers_rolled_up, analytics.customers)):
                if fn is analytics.daily and (period.since is None or period.until is None):
                    continue  # open: from the first to the last call's date, both read the same
                assert fn(period) == _rows_only(monkeypatch, report, period), (report.__name__, period)


def test_random_history_keeps_rollups_exact(db, monkeypatch):
    rng = random.Random(25)
    customers = [Customer.create(name=f"C{i}").id for i in range(3)] + [None]
    at = lambda: T0 + dt.timedelta(minutes=rng.randrange(0, 60 * 72), seconds=rng.choice([0, 0.25, 59.9995]))
    ids: list[int] = []
    for step in range(260):
        op = rng.choice(["ring"] * 4 + ["parties", "answer", "end", "link", "relink", "cdr", "move", "party_gone",
                                        "delete", "customer_gone"])
        if op == "ring" or not ids:  # the writer: the call when it rings, then its first party
            start = at()
            call = Call.create(uuid=f"u{step}", direction=rng.choice(["INCOMING"] * 3 + ["OUTGOING", "INTERNAL"]),
                               started_at=start, customer=rng.choice(customers), external_e164=rng.choice(NUMBERS))
            ids.append(call.id)
            CallParty.create(call=call.id, extension=rng.choice(EXTENSIONS), role=rng.choice(["callee", "caller"]),
                             rang_at=rng.choice([None, start + dt.timedelta(seconds=2)]))
            continue
        target = rng.choice(ids)
        call = Call.get_by_id(target)
        if op == "parties":  # a ring group: several parties in one statement (PostgreSQL: its triggers after all)
            have = {p.extension for p in CallParty.select().where(CallParty.call == target)}
            new = [e for e in EXTENSIONS if e not in have]
            CallParty.insert_many([{"call": target, "extension": e, "role": "callee", "seq": i,
                                    "rang_at": call.started_at + dt.timedelta(seconds=3)} for i, e in enumerate(new)]
                                  ).execute()
        elif op == "answer" and CallParty.select().where(CallParty.call == target).exists():
            party = CallParty.select().where(CallParty.call == target).order_by(CallParty.id).first()
            answered = call.started_at + dt.timedelta(seconds=rng.choice([4, 9.5]))
            Call.update(answered_by=party.extension, answered_at=answered, ring_seconds=4).where(Call.id == target).execute()
            CallParty.update(answered_at=answered, talked=True, outcome="answered").where(CallParty.id == party.id).execute()
        elif op == "end":
            answered = call.answered_at is not None
            talk = rng.choice([60.5, 300.0, 0.001]) if answered else None
            Call.update(ended_at=call.started_at + dt.timedelta(seconds=400), talk_seconds=talk,
                        missed=not answered and call.direction == "INCOMING",
                        hold_seconds=rng.choice([0.0, 12.5])).where(Call.id == target).execute()
            CallParty.update(talk_seconds=talk, hold_seconds=rng.choice([0.0, 7.25]),
                             outcome=None if answered else "missed").where(
                (CallParty.call == target) & CallParty.talked).execute()
            CallParty.update(outcome="missed").where((CallParty.call == target) & ~CallParty.talked).execute()
        elif op == "link":
            Call.update(customer=rng.choice(customers)).where(Call.id == target).execute()
        elif op == "relink":  # the web page links a number to a customer: every such call in one UPDATE
            Call.update(customer=rng.choice(customers[:-1])).where(
                Call.customer.is_null() & (Call.external_e164 == rng.choice(NUMBERS[:-1]))).execute()
        elif op == "cdr":  # a call rebuilt from FreeSWITCH's CDRs, earlier than what is stored, answered and ended
            start = T0 + dt.timedelta(minutes=rng.randrange(0, 60 * 24))
            cdr = Call.create(uuid=f"cdr{step}", direction="INCOMING", started_at=start, customer=rng.choice(customers),
                              external_e164=rng.choice(NUMBERS), answered_by="1003", answered_at=start + dt.timedelta(seconds=6),
                              ended_at=start + dt.timedelta(minutes=3), talk_seconds=174.0, recovered=True)
            ids.append(cdr.id)
            CallParty.create(call=cdr.id, extension="1003", role="callee", rang_at=start + dt.timedelta(seconds=1),
                             answered_at=start + dt.timedelta(seconds=6), talked=True, talk_seconds=174.0,
                             outcome="answered")
        elif op == "move":
            Call.update(started_at=at(), direction=rng.choice(["INCOMING", "OUTGOING", "INTERNAL"])).where(
                Call.id == target).execute()
        elif op == "party_gone":
            party = CallParty.select().where(CallParty.call == target).first()
            if party is not None:
                CallParty.delete().where(CallParty.id == party.id).execute()
        elif op == "delete":  # retention: the call and, by the cascade, its parties
            Call.delete().where(Call.id == target).execute()
            ids.remove(target)
        elif op == "customer_gone" and len(customers) > 2:  # its calls fall back to their numbers
            gone = rng.choice(customers[:-1])
            Customer.delete().where(Customer.id == gone).execute()
            customers.remove(gone)
        check(db)
        if step % 40 == 39:
            same_reports(db, monkeypatch, rng)
    assert db.execute_sql("SELECT COUNT(*) FROM call_slot WHERE abandoned > 0").fetchone()[0], "some calls abandoned"
    same_reports(db, monkeypatch, rng)


def test_migration_rolls_up_calls_stored_before_it(migrated_before, monkeypatch):
    db = migrated_before(25)
    assert not db.table_exists("call_slot")
    rng = random.Random(7)
    for i in range(60):
        start = T0 + dt.timedelta(minutes=rng.randrange(0, 60 * 48), seconds=0.5)
        inbound = rng.random() < 0.7
        answered = rng.random() < 0.6
        call = Call.create(uuid=f"m{i}", direction="INCOMING" if inbound else "OUTGOING", started_at=start,
                           external_e164=rng.choice(NUMBERS), answered_by="1001" if answered and inbound else None,
                           answered_at=start + dt.timedelta(seconds=8) if answered else None,
                           ended_at=start + dt.timedelta(minutes=2), missed=inbound and not answered,
                           talk_seconds=112.0 if answered else None)
        CallParty.create(call=call, extension=rng.choice(EXTENSIONS), role="callee" if inbound else "caller",
                         rang_at=start + dt.timedelta(seconds=1) if inbound and rng.random() < 0.8 else None,
                         answered_at=call.answered_at, talked=answered, talk_seconds=call.talk_seconds,
                         outcome=("answered" if answered else "missed") if inbound else None)
    assert migrations.migrate(db) == [m.version for m in migrations.MIGRATIONS if m.version >= 25]
    check(db)
    assert db.execute_sql("SELECT SUM(calls), SUM(abandoned) FROM call_slot").fetchone()[0] == 60
    with monkeypatch.context() as m:
        same_reports(db, m, rng)
    Call.delete().where(Call.uuid == "m0").execute()  # the triggers run from now on
    check(db)


def test_whole_units_of_a_period():
    day = rollups.DAY_SECONDS
    period = analytics.Period(dt.datetime(2026, 11, 2, 13, 0), dt.datetime(2026, 11, 5), ZONE)
    first, end, edges = analytics._whole(period, day)
    days = lambda d: (d - dt.date(1970, 1, 1)).days
    assert (first, end) == (days(dt.date(2026, 11, 3)), days(dt.date(2026, 11, 5)))
    assert [(e.since, e.until) for e in edges] == [(period.since, dt.datetime(2026, 11, 3))]
    assert analytics._whole(analytics.Period(dt.datetime(2026, 11, 2, 13, 0), dt.datetime(2026, 11, 2, 23), ZONE),
                            day) is None
