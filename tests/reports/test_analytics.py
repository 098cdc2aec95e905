"""Analytics figures against hand-computed values on a fixed data set (tests/analytics_data.py), on both databases."""
from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pytest import approx

from analytics_data import SINCE, UNTIL, add_call, build
from screenpop.daemon.reports import analytics
from screenpop.daemon.reports.analytics import Period
from screenpop.db.models import Call, CallParty

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def data(db):
    with db.atomic():
        return build()


def period(**kw) -> Period:
    return Period(**{"since": SINCE, "until": UNTIL, "zone": BERLIN, **kw})


def by(rows, key):
    return {r[key]: r for r in rows}


def test_period_bounds_are_local_midnights():
    assert analytics.utc_bound(dt.datetime(2026, 11, 23), BERLIN) == SINCE
    assert analytics.utc_bound(dt.datetime(2026, 7, 1), BERLIN) == dt.datetime(2026, 6, 30, 22, 0)


def test_employees(data):
    rows = by(analytics.employees(period()), "extension")
    assert set(rows) == {"1001", "1002", "1003"}
    a, b, c = rows["1001"], rows["1002"], rows["1003"]
    # 1001: took c1, c3 (transferred in), c9; made c8 (unanswered); missed c4 (ring group nobody answered);
    # answered_elsewhere on c2 is no miss; c13 is before the period, c12 after it, c10 internal
    assert (a["name"], a["taken"], a["made"], a["made_answered"], a["missed"]) == ("Anna", 3, 1, 0, 1)
    assert a["answer_rate"] == approx(0.75)
    assert a["answer_avg_s"] == approx(17.5) and a["answer_p90_s"] == approx(30)  # c1 5 s, c9 30 s; c3 was a transfer
    assert a["talk_total_s"] == approx(660) and a["talk_avg_s"] == approx(220)  # 300 + 300 + 60
    assert a["fcr_calls"] == 3 and a["fcr_rate"] == approx(1 / 3)  # c1 called back (c2), c9 called back (c12)
    # 1002: took c2 and c3 (counted once though it transferred c3 away), made c7 (answered), missed c6
    assert (b["taken"], b["made"], b["made_answered"], b["missed"]) == (2, 1, 1, 1)
    assert b["answer_rate"] == approx(2 / 3)
    assert b["answer_avg_s"] == approx(15) and b["answer_p90_s"] == approx(20)
    assert b["talk_total_s"] == approx(720) and b["talk_avg_s"] == approx(240)  # 120 + 420 + 180
    assert b["fcr_calls"] == 2 and b["fcr_rate"] == approx(0.5)  # c2 called back (c9), c3 not
    # 1003 (hostile name): took c11 and c14 (Monday 00:30 local, Sunday in UTC), missed c4
    assert c["name"].startswith("<script>")
    assert (c["taken"], c["made"], c["missed"]) == (2, 0, 1)
    assert c["answer_avg_s"] == approx(6) and c["answer_p90_s"] == approx(8)
    assert c["talk_total_s"] == approx(180) and c["talk_avg_s"] == approx(90)
    assert c["fcr_rate"] == approx(0.5)  # c11 called back (c4, even though missed), c14 not


def test_calls_are_counted_on_the_local_day_they_start(data):
    tuesday = period(since=dt.datetime(2026, 11, 23, 23, 0))
    rows = by(analytics.employees(tuesday), "extension")
    # c3 started Monday 23:58 local: none of it counts on Tuesday, although 1001's part ran after midnight
    assert (rows["1001"]["taken"], rows["1001"]["talk_total_s"]) == (1, approx(60))
    assert rows["1002"]["taken"] == 0 and rows["1002"]["answer_rate"] == 0.0
    in_utc = by(analytics.employees(Period(dt.datetime(2026, 11, 23), dt.datetime(2026, 11, 25))), "extension")
    assert in_utc["1003"]["taken"] == 1  # c14 is on Sunday in UTC


def test_extension_filter(data):
    assert [r["extension"] for r in analytics.employees(period(extension="1002"))] == ["1002"]
    assert [r["call_id"] for r in analytics.missed(period(extension="1001"))] == [data_call("c4")]
    assert analytics.missed(period(extension="1002")) == []  # c6 was returned
    daily = analytics.daily(period(extension="1002"))
    assert [(d["inbound"], d["outbound"]) for d in daily] == [(2, 0), (1, 1)]  # c2, c3 | c6, c7


def data_call(uuid: str) -> int:
    from screenpop.db.models import Call

    return Call.get(Call.uuid == uuid).id


def test_customers(data):
    rows = analytics.customers(period())
    assert [r["name"] for r in rows] == ["Acme", "Vip Co", "=cmd|' /C calc'!A0", "Four"]
    acme, vip, problem, four = rows
    assert (acme["calls"], acme["inbound"], acme["outbound"], acme["missed"]) == (3, 3, 0, 0)
    assert acme["last_contact"] == dt.datetime(2026, 11, 24, 15, 0, tzinfo=BERLIN)
    assert acme["open_debt"] == Decimal("60.00") and acme["repeat_caller"] is True  # the closed order is paid up
    assert (vip["calls"], vip["inbound"], vip["outbound"]) == (2, 1, 1)
    assert vip["open_debt"] == Decimal("0.00") and vip["repeat_caller"] is False  # overpaid does not go negative
    assert (problem["calls"], problem["missed"], problem["open_debt"], problem["repeat_caller"]) == (2, 1, Decimal("80.50"), True)
    assert four["last_contact"] == dt.datetime(2026, 11, 23, 0, 30, tzinfo=BERLIN)
    assert analytics.customers(period(), limit=1)[0]["name"] == "Acme"


def test_categories(data):
    rows = by(analytics.categories(period()), "category")
    assert list(rows) == ["regular", "vip", "problem", "none"]
    reg, vip, prob, none = rows["regular"], rows["vip"], rows["problem"], rows["none"]
    assert (reg["customers"], reg["calls"], reg["inbound"], reg["repeat_callers"]) == (2, 4, 4, 1)
    assert reg["open_debt"] == Decimal("70.00") and reg["last_contact"] == dt.datetime(2026, 11, 24, 15, tzinfo=BERLIN)
    assert (vip["customers"], vip["calls"], vip["outbound"], vip["open_debt"]) == (1, 2, 1, Decimal("5.00"))
    assert (prob["calls"], prob["missed"], prob["open_debt"], prob["repeat_callers"]) == (2, 1, Decimal("80.50"), 1)
    # calls with no customer: c5, c6 (missed) and c7
    assert (none["customers"], none["calls"], none["inbound"], none["outbound"], none["missed"]) == (0, 3, 2, 1, 2)
    assert none["open_debt"] is None and none["repeat_callers"] == 0


def test_missed_not_returned(data):
    rows = analytics.missed(period())
    # c4 (ring group, both missed; the earlier answered c11 does not return it), c5 (nobody rang);
    # c6 was returned by c7 (an answered outbound call to the number); c13 is before the period
    assert [r["call_id"] for r in rows] == [data_call("c4"), data_call("c5")]
    c4, c5 = rows
    assert c4["missed_by"] == ["1001", "1003"] and c4["category"] == "problem" and c4["waited_s"] == approx(31)
    assert c4["started_at"] == dt.datetime(2026, 11, 24, 10, 0, tzinfo=BERLIN)
    assert c5["missed_by"] == [] and c5["customer_id"] is None and c5["number"] == "+3545559999"


def test_missed_is_returned_by_a_later_answered_call_only(db, data):
    add_call("later-missed", "INCOMING", dt.datetime(2026, 11, 24, 20), dt.datetime(2026, 11, 24, 20, 0, 9),
             customer=data["c3"], number="+3545550003")
    assert len(analytics.missed(period())) == 3  # an unanswered later call returns nothing
    add_call("answered", "INCOMING", dt.datetime(2026, 11, 26, 9), dt.datetime(2026, 11, 26, 9, 1),
             customer=data["c3"], number="+3545550003", answered_by="1001", answered_at=dt.datetime(2026, 11, 26, 9, 0, 5))
    assert [r["number"] for r in analytics.missed(period())] == ["+3545559999"]  # returned after the period counts


def test_load_heat_map(data):
    rows = analytics.load(period())
    assert len(rows) == 168
    cells = {(r["day"], r["hour"]): r for r in rows if r["inbound"] or r["outbound"]}
    assert sorted(cells) == sorted([("Mon", 0), ("Mon", 9), ("Mon", 21), ("Mon", 23), ("Tue", 9), ("Tue", 10),
                                    ("Tue", 11), ("Tue", 12), ("Tue", 13), ("Tue", 14), ("Tue", 15)])
    assert cells[("Mon", 23)]["answered"] == 1  # c3, across midnight, on the hour it started
    assert (cells[("Tue", 10)]["missed"], cells[("Tue", 10)]["abandoned"]) == (1, 1)  # c4 rang and nobody answered
    assert (cells[("Tue", 11)]["missed"], cells[("Tue", 11)]["abandoned"]) == (1, 0)  # c5 never rang a phone
    assert sum(r["inbound"] for r in rows) == 9 and sum(r["outbound"] for r in rows) == 2


def test_daily(data):
    rows = analytics.daily(period())
    assert [r["date"] for r in rows] == [dt.date(2026, 11, 23), dt.date(2026, 11, 24)]
    mon, tue = rows
    assert (mon["inbound"], mon["outbound"], mon["answered"], mon["missed"], mon["abandoned"]) == (4, 0, 4, 0, 0)
    assert mon["talk_total_s"] == approx(1200) and mon["abandoned_rate"] == 0.0  # 60 + 300 + 120 + 720
    assert (tue["inbound"], tue["outbound"], tue["answered"], tue["missed"], tue["abandoned"]) == (5, 2, 2, 3, 2)
    assert tue["abandoned_rate"] == approx(0.4) and tue["talk_total_s"] == approx(360)


def test_daily_fills_quiet_days(db):
    rows = analytics.daily(Period(dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 4), dt.timezone.utc))
    assert [(r["date"].day, r["inbound"], r["abandoned_rate"]) for r in rows] == [(1, 0, None), (2, 0, None), (3, 0, None)]


def test_dst_change_and_half_hour_zone(db):
    # Berlin leaves summer time at 01:00 UTC on 2026-10-25: 00:30 and 01:30 UTC are both 02:30 local
    for i, start in enumerate([dt.datetime(2026, 10, 24, 22, 30), dt.datetime(2026, 10, 25, 0, 30),
                               dt.datetime(2026, 10, 25, 1, 30), dt.datetime(2026, 10, 25, 22, 59)]):
        add_call(f"dst{i}", "INCOMING", start, start + dt.timedelta(seconds=30))
    sunday = Period(analytics.utc_bound(dt.datetime(2026, 10, 25), BERLIN),
                    analytics.utc_bound(dt.datetime(2026, 10, 26), BERLIN), BERLIN)
    assert sunday.until - sunday.since == dt.timedelta(hours=25)
    assert [(r["date"], r["inbound"]) for r in analytics.daily(sunday)] == [(dt.date(2026, 10, 25), 4)]
    hours = {r["hour"]: r["inbound"] for r in analytics.load(sunday) if r["day"] == "Sun" and r["inbound"]}
    assert hours == {0: 1, 2: 2, 23: 1}
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30: 18:20 UTC is 23:50, 18:40 UTC is 00:10 the next day
    for i, start in enumerate([dt.datetime(2026, 11, 24, 18, 20), dt.datetime(2026, 11, 24, 18, 40)]):
        add_call(f"ist{i}", "INCOMING", start, start + dt.timedelta(seconds=30))
    days = analytics.daily(Period(dt.datetime(2026, 11, 23, 18, 30), dt.datetime(2026, 11, 25, 18, 30), kolkata))
    assert [(r["date"].day, r["inbound"]) for r in days] == [(24, 1), (25, 1)]


def test_a_call_in_the_last_instant_of_a_quarter_hour_stays_in_it(db):
    """Issue 14: SQLite's strftime('%s') rounds to the second, so 23:59:59.9995 local fell on the next day and hour."""
    start = dt.datetime(2026, 11, 23, 22, 59, 59, 999500)  # 23:59:59.9995 in Berlin
    add_call("last", "INCOMING", start, start + dt.timedelta(seconds=30))
    monday = Period(SINCE, SINCE + dt.timedelta(days=2), BERLIN)
    assert [(r["date"], r["inbound"]) for r in analytics.daily(monday)] == [(dt.date(2026, 11, 23), 1),
                                                                           (dt.date(2026, 11, 24), 0)]
    assert [(r["day"], r["hour"]) for r in analytics.load(monday) if r["inbound"]] == [("Mon", 23)]


def test_talk_average_leaves_out_calls_still_in_progress(data):
    """A party still talking has no talk time yet: it must not count as 0 s in the average."""
    start = dt.datetime(2026, 11, 24, 16)
    Call.create(uuid="live", direction="INCOMING", started_at=start, answered_at=start, answered_by="1001")
    CallParty.create(call=Call.get(Call.uuid == "live"), extension="1001", role="callee", rang_at=start,
                     answered_at=start, outcome="answered", talked=True)
    a = by(analytics.employees(period()), "extension")["1001"]
    assert a["taken"] == 4 and a["talk_total_s"] == approx(660) and a["talk_avg_s"] == approx(220)


@pytest.mark.parametrize("n", [1, 2, 10, 11, 110])
def test_p90_is_the_same_nearest_rank_on_both_databases(db, n):
    start = dt.datetime(2026, 11, 24, 8)
    for i in range(n):
        at = start + dt.timedelta(minutes=i)
        add_call(f"p{i}", "INCOMING", at, at + dt.timedelta(seconds=200), answered_by="1001",
                 answered_at=at + dt.timedelta(seconds=i + 1),
                 parties=[("1001", "callee", at, at + dt.timedelta(seconds=i + 1), at + dt.timedelta(seconds=200),
                           "answered", True)])
    row = analytics.employees(Period(start, start + dt.timedelta(days=1)))[0]
    # percentile_disc(0.9): the value at rank ceil(0.9 n) in double precision (0.9 * 110 is a little above 99)
    assert row["answer_p90_s"] == approx(math.ceil(0.9 * n))
    assert row["answer_avg_s"] == approx((n + 1) / 2)


@pytest.mark.parametrize("most", [0.0, 2.0])  # every period counts as long / none does
def test_customer_reports_agree_whichever_way_sqlite_reads_the_calls(data, monkeypatch, most):
    expected = (analytics.customers(period()), analytics.categories(period()))
    monkeypatch.setattr(analytics, "_MOST", most)
    assert (analytics.customers(period()), analytics.categories(period())) == expected
