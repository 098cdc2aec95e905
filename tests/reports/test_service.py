"""The service figures, per dialled number, peaks, unknown repeat callers and comparisons (docs/analytics.md,
"Service") against hand-computed values, on both databases."""
from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pytest import approx

from analytics_data import SINCE, UNTIL, add_call, build, t
from screenpop.daemon.reports import catalog, service
from screenpop.daemon.reports.analytics import Period, utc_bound

BERLIN = ZoneInfo("Europe/Berlin")
QUEUE, GROUP = "+3545553000", "+3545552001"
REPEAT = "+3545557777"
# Monday 30 November, local
DAY = Period(utc_bound(dt.datetime(2026, 11, 30), BERLIN), utc_bound(dt.datetime(2026, 12, 1), BERLIN), BERLIN)


@pytest.fixture
def data(db):
    with db.atomic():
        return build()


@pytest.fixture
def day(db):
    """Monday 30 November (UTC+1): a queue's and a ring group's calls, each line a case."""
    with db.atomic():
        # s1: queue, 1001 answers 25 s after the caller started (rang at +20 s), talks 300 s
        add_call("s1", "INCOMING", t(30, 9), t(30, 9, 5, 25), number="+3545551111", did=QUEUE, answered_by="1001",
                 answered_at=t(30, 9, 0, 25), cause="NORMAL_CLEARING",
                 parties=[("1001", "callee", t(30, 9, 0, 20), t(30, 9, 0, 25), t(30, 9, 5, 25), "answered", True)])
        # s2: queue, 1002 answers after 5 s, talks 120 s
        add_call("s2", "INCOMING", t(30, 9, 1), t(30, 9, 3, 5), number="+3545552222", did=QUEUE, answered_by="1002",
                 answered_at=t(30, 9, 1, 5), cause="NORMAL_CLEARING",
                 parties=[("1002", "callee", t(30, 9, 1, 1), t(30, 9, 1, 5), t(30, 9, 3, 5), "answered", True)])
        # s3: queue, an unknown caller hangs up after 3 s: a short abandon (three calls at once at 9:02)
        add_call("s3", "INCOMING", t(30, 9, 2), t(30, 9, 2, 3), number=REPEAT, did=QUEUE, cause="ORIGINATOR_CANCEL")
        # s4: queue, the same caller waits 50 s and hangs up before any phone rang
        add_call("s4", "INCOMING", t(30, 9, 4), t(30, 9, 4, 50), number=REPEAT, did=QUEUE, cause="NORMAL_CLEARING")
        # s5: ring group, every phone busy: nobody free
        add_call("s5", "INCOMING", t(30, 9, 10), t(30, 9, 10, 30), number=REPEAT, did=GROUP, cause="USER_BUSY")
        # s6: ring group, 1002 rings 40 s, nobody answers ...
        add_call("s6", "INCOMING", t(30, 9, 20), t(30, 9, 20, 41), number="+3545556666", did=GROUP, cause="NO_ANSWER",
                 parties=[("1002", "callee", t(30, 9, 20, 1), None, t(30, 9, 20, 41), "missed", False)])
        # s7: ... and 1002 calls back, answered at 9:30:10: 569 s after s6 ended
        add_call("s7", "OUTGOING", t(30, 9, 30), t(30, 9, 31, 10), number="+3545556666", from_ext="1002",
                 answered_at=t(30, 9, 30, 10),
                 parties=[("1002", "caller", None, t(30, 9, 30, 10), t(30, 9, 31, 10), None, True)])


def test_service_figures(data):
    (row,) = service.service(Period(SINCE, UNTIL, BERLIN))
    assert row["number"] == "all"
    assert (row["inbound"], row["answered"]) == (9, 6)
    assert row["service_level"] == approx(5 / 9)  # answered within 20 s: 4, 10, 12, 20 (c3, on the bound) and 8 s
    assert row["asa_s"] == approx(84 / 6)  # from the caller's start: 4 + 10 + 12 + 20 + 8 + 30
    assert (row["abandoned"], row["short_abandons"]) == (3, 0)
    assert (row["missed_rang_out"], row["missed_nobody_free"], row["missed_no_one_rung"]) == (2, 0, 1)
    assert row["abandon_rate"] == approx(3 / 9)
    assert row["aht_s"] == approx(1380 / 6)  # 60 + 300 + 120 + 720 + 120 + 60
    assert row["transferred"] == 1  # c3
    # c4 and c5 never returned; c6 returned by c7's answer 3595 s after c6 ended
    assert (row["called_back"], row["callback_rate"]) == (1, approx(1 / 3))
    assert row["callback_avg_s"] == row["callback_p90_s"] == approx(3595)


def test_one_extensions_calls(data):
    (row,) = service.service(Period(SINCE, UNTIL, BERLIN, "1002"))
    assert (row["inbound"], row["answered"], row["transferred"], row["called_back"]) == (3, 2, 1, 1)  # c2, c3, c6


def test_figures_per_dialled_number(day):
    queue, group = service.numbers(DAY)
    assert (queue["number"], group["number"]) == (QUEUE, GROUP)
    assert (queue["inbound"], queue["answered"], queue["short_abandons"], queue["abandoned"]) == (4, 2, 1, 1)
    assert queue["service_level"] == approx(1 / 3)  # s2 of the 3 that were not short abandons
    assert queue["asa_s"] == approx(15)
    assert queue["missed_no_one_rung"] == 1
    assert queue["aht_s"] == approx(210)
    assert (queue["called_back"], queue["callback_rate"]) == (0, 0.0)
    assert (group["inbound"], group["answered"], group["service_level"], group["asa_s"]) == (2, 0, 0.0, None)
    assert (group["missed_nobody_free"], group["missed_rang_out"], group["abandon_rate"]) == (1, 1, 1.0)
    assert (group["called_back"], group["callback_rate"], group["callback_avg_s"]) == (1, 0.5, approx(569))
    (total,) = service.service(DAY)
    assert (total["inbound"], total["abandoned"], total["service_level"]) == (6, 3, approx(1 / 5))


def test_thresholds_are_the_periods(day):
    (row,) = service.service(dataclasses.replace(DAY, answer_within=25, short_abandon=2))
    assert row["short_abandons"] == 0 and row["missed_no_one_rung"] == 2  # s3 (3 s) is no short abandon now
    assert row["service_level"] == approx(2 / 6)  # s1 at 25 s counts


def test_unknown_repeat_callers(day):
    (row,) = service.unknown_callers(DAY)
    assert (row["number"], row["calls"], row["answered"], row["missed"]) == (REPEAT, 3, 0, 3)
    assert row["first_call"] == dt.datetime(2026, 11, 30, 10, 2, tzinfo=BERLIN)
    assert row["last_call"] == dt.datetime(2026, 11, 30, 10, 10, tzinfo=BERLIN)


def test_peak_concurrent_calls_per_local_hour(day):
    rows = service.peaks(DAY)
    assert len(rows) == 24 and rows[0]["hour"] == 0
    assert {r["hour"]: r["peak"] for r in rows if r["peak"]} == {10: 3}  # s1, s2, s3 at 9:02 UTC


def test_a_call_going_on_across_an_hour_counts_in_it(data):
    # c3 runs from Monday 23:58 to Tuesday 00:10 local, the only call then
    rows = {(r["date"].day, r["hour"]): r["peak"] for r in service.peaks(Period(SINCE, UNTIL, BERLIN))}
    assert rows[(23, 23)] == 1 and rows[(24, 0)] == 1 and rows[(24, 1)] == 0


def test_side_by_side_with_the_previous_period_and_last_year(data):
    tuesday = Period(utc_bound(dt.datetime(2026, 11, 24), BERLIN), UNTIL, BERLIN)
    (row,) = catalog.run("service", tuesday, "previous")
    assert (row["inbound"], row["inbound_previous"], row["answered"], row["answered_previous"]) == (5, 4, 2, 4)
    (row,) = catalog.run("service", tuesday, "year")
    assert (row["inbound"], row["inbound_last_year"]) == (5, 0)
    employees = {r["extension"]: r for r in catalog.run("employees", tuesday, "previous")}
    assert (employees["1002"]["taken"], employees["1002"]["taken_previous"]) == (0, 2)  # c2, c3 on Monday
    daily = catalog.run("daily", tuesday, "previous")
    assert (daily[0]["inbound"], daily[0]["inbound_previous"]) == (5, 4)


def test_the_other_periods():
    tuesday = Period(utc_bound(dt.datetime(2026, 11, 24), BERLIN), UNTIL, BERLIN)
    assert catalog.other_period(tuesday, "previous") == dataclasses.replace(tuesday, since=SINCE, until=tuesday.since)
    leap = Period(utc_bound(dt.datetime(2024, 2, 29), BERLIN), utc_bound(dt.datetime(2024, 3, 1), BERLIN), BERLIN)
    assert catalog.other_period(leap, "year").since == utc_bound(dt.datetime(2023, 2, 28), BERLIN)
    with pytest.raises(ValueError, match="lists calls"):
        catalog.run("missed", tuesday, "previous")
