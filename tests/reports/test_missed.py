"""Missed calls followed up (daemon/reports/missed.py): returned by a callback or a later answered call, marked done and
undone, withheld ones counted apart, an operator's own only; on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest

from analytics_data import add_call
from screenpop.daemon.reports import analytics
from screenpop.daemon.reports import missed
from screenpop.daemon.reports.missed import FollowUpError, Scope
from screenpop.db.models import Customer, Employee, MissedDone

N1, N2 = "+3545550101", "+3545550102"
T0 = dt.datetime(2026, 11, 23, 9, 0)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def rang(ext: str, minutes: float, outcome: str = "missed") -> tuple:
    return (ext, "callee", at(minutes), None, at(minutes + 0.5), outcome, False)


def missed_call(uuid: str, minutes: float, *exts: str, number: str | None = N1, customer=None):
    """An INCOMING call that rang exts and nobody answered."""
    return add_call(uuid, "INCOMING", at(minutes), at(minutes + 0.5), number=number, customer=customer,
                    parties=[rang(e, minutes) for e in exts])


def answered_in(uuid: str, minutes: float, ext: str, number: str | None = N1, customer=None):
    return add_call(uuid, "INCOMING", at(minutes), at(minutes + 3), number=number, customer=customer, answered_by=ext,
                    answered_at=at(minutes + 0.2),
                    parties=[(ext, "callee", at(minutes), at(minutes + 0.2), at(minutes + 3), "answered", True)])


def callback(uuid: str, minutes: float, ext: str, number: str = N1, answered: bool = True):
    """An OUTGOING call from ext to number; the far end answers (or not)."""
    return add_call(uuid, "OUTGOING", at(minutes), at(minutes + 2), number=number, from_ext=ext,
                    answered_at=at(minutes + 0.3) if answered else None,
                    parties=[(ext, "caller", at(minutes), at(minutes + 0.3) if answered else None, at(minutes + 2),
                              "answered" if answered else "ended", answered)])


def states(scope: Scope = Scope()) -> dict[str, list[str]]:
    return {s: [r["call_uuid"] for r in missed.listing(s, scope, 100)] for s in missed.STATES}


@pytest.fixture
def staff(db):
    with db.atomic():
        Employee.create(name="Anna", extension="1001")
        Employee.create(name="Bjorn", extension="1002")


def test_a_missed_call_is_open_until_an_answered_callback_returns_it(db, staff):
    missed_call("m1", 0, "1001")
    callback("cb-unanswered", 5, "1002", answered=False)  # the far end did not pick up: nothing returned
    assert states()["open"] == ["m1"]
    callback("cb", 10, "1002")
    assert states() == {"open": [], "returned": ["m1"], "done": [], "anonymous": []}
    row = missed.listing("returned", Scope(), 10)[0]
    assert row["returned"] == {"call_uuid": "cb", "direction": "OUTGOING", "by": "1002", "name": "Bjorn",
                               "at": "2026-11-23T09:10:18Z"}
    assert row["missed_by"] == ["1001"] and row["callable"] and row["e164"] == N1


def test_a_later_answered_inbound_call_returns_it_an_earlier_or_unanswered_one_does_not(db, staff):
    answered_in("before", 0, "1002")
    missed_call("m1", 5, "1001")
    missed_call("again", 8, "1001")  # the caller tried again, nobody answered
    assert states()["open"] == ["again", "m1"]
    answered_in("later", 20, "1002")
    got = missed.listing("returned", Scope(), 10)
    assert [r["call_uuid"] for r in got] == ["again", "m1"]
    assert {r["returned"]["call_uuid"] for r in got} == {"later"} and got[0]["returned"]["by"] == "1002"


def test_the_customer_or_the_number_is_the_same_caller(db, staff):
    acme = Customer.create(name="Acme")
    missed_call("by-customer", 0, "1001", number=N1, customer=acme)
    missed_call("by-number", 1, "1001", number=N2)
    callback("other-number-same-customer", 5, "1001", number=N2)  # N2 carries no customer: returns by-number
    answered_in("same-customer", 10, "1002", number="+3545550199", customer=acme)
    assert states()["returned"] == ["by-number", "by-customer"]
    first = {r["call_uuid"]: r["returned"]["call_uuid"] for r in missed.listing("returned", Scope(), 10)}
    assert first == {"by-number": "other-number-same-customer", "by-customer": "same-customer"}


def test_mark_done_and_undo(db, staff):
    missed_call("m1", 0, "1001")
    row = missed.mark_done("m1", "1001", "1001", None)
    assert row["state"] == "done" and row["done"]["by"] == "1001" and row["done"]["name"] == "Anna"
    again = missed.mark_done("m1", None, "1002", None)  # twice: the first who and when stay
    assert again["done"] == row["done"]
    assert missed.counts(Scope()) == {"open": 0, "returned": 0, "done": 1, "anonymous": 0}
    assert analytics.missed(analytics.Period(None, None)) == []  # the report lists open ones only
    assert missed.undo("m1", "1001")["state"] == "open"
    assert MissedDone.select().count() == 0 and states()["open"] == ["m1"]
    with pytest.raises(FollowUpError) as exc:
        missed.undo("m1", None)
    assert exc.value.status == 409
    callback("cb", 5, "1001")
    with pytest.raises(FollowUpError) as exc:
        missed.mark_done("m1", None, None, None)
    assert exc.value.status == 409 and "returned" in exc.value.message


def test_a_returned_call_stays_returned_whatever_its_mark(db, staff):
    missed_call("m1", 0, "1001")
    missed.mark_done("m1", None, "1002", None)
    callback("cb", 5, "1001")
    row = missed.listing("returned", Scope(), 10)[0]
    assert row["done"]["by"] == "1002" and row["returned"]["call_uuid"] == "cb"
    assert missed.counts(Scope())["done"] == 0


def test_withheld_calls_are_counted_apart_and_can_be_marked_done(db, staff):
    missed_call("m1", 0, "1001")
    for i in range(3):
        missed_call(f"anon{i}", 1 + i, "1001", number=None)
    counts = missed.counts(Scope())
    assert (counts["open"], counts["anonymous"]) == (1, 3)
    anon = missed.listing("anonymous", Scope(), 10)[0]
    assert anon["callable"] is False and anon["record_url"] is None and anon["label"] == "withheld number"
    assert [r["number"] for r in analytics.missed(analytics.Period(None, None))] == [N1]  # the report: m1 only
    missed.mark_done("anon0", None, None, None)
    assert missed.counts(Scope())["anonymous"] == 2


def test_an_operator_sees_and_marks_only_the_calls_that_rang_them(db, staff):
    missed_call("mine", 0, "1001", "1002")
    missed_call("theirs", 1, "1002", number=N2)
    missed_call("queue", 2, number="+3545550103")  # hung up before any phone rang: the team's only
    answered_in("elsewhere", 3, "1002", number="+3545550104")  # answered: no missed call
    assert states(Scope(extension="1001"))["open"] == ["mine"]
    assert states(Scope(extension="1002"))["open"] == ["theirs", "mine"]
    assert states()["open"] == ["queue", "theirs", "mine"]
    with pytest.raises(FollowUpError) as exc:
        missed.mark_done("theirs", "1001", "1001", None)
    assert exc.value.status == 403
    for bad, status in (("nope", 404), ("elsewhere", 409)):
        with pytest.raises(FollowUpError) as exc:
            missed.mark_done(bad, None, None, None)
        assert exc.value.status == status


def test_scope_by_period(db, staff):
    missed_call("early", 0, "1001")
    missed_call("late", 60, "1001", number=N2)
    assert states(Scope(since=at(30)))["open"] == ["late"]
    assert states(Scope(until=at(30)))["open"] == ["early"]


def test_record_links(db, staff):
    acme = Customer.create(name="Acme", company="Acme ehf")
    missed_call("known", 0, "1001", customer=acme)
    missed_call("stranger", 1, "1001", number=N2)
    rows = {r["call_uuid"]: r for r in missed.listing("open", Scope(), 10)}
    assert rows["known"]["record_url"] == f"/customers/{acme.id}" and rows["known"]["label"] == "Acme ehf"
    assert rows["stranger"]["record_url"] == "/customers/new?number=%2B3545550102&call=stranger"
