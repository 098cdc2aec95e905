"""Hold time and the caller's queue, as FreeSWITCH 1.10 reports them: scripted event sequences for the tracker.

A phone putting the call on hold (a re-INVITE with sendonly) makes switch_core_media.c mark its own leg holding:
CHANNEL_HOLD on that leg (its timetable's Channel-Last-Hold set), CHANNEL_UNHOLD when it resumes (Channel-Hold-Accum,
the leg's total, grown by the hold); a leg still holding as it hangs up is unheld first. uuid_hold fires the same
two events on the leg it names without timing them (Hold-Accum stays 0). mod_callcenter's callcenter::info events
name the queue (CC-Queue).
"""
from __future__ import annotations

import datetime as dt

import pytest

from screenpop.daemon.calls.tracker import CallTracker, hold_union
from test_call_rules import Switch, from_phone, queued_caller, to_gateway, to_phone, trunk_in
from test_calls import CAPTURES, RULES, ListSink, _api_index, _channels, expected, read_events


def answered_call(sw: Switch, ext: str = "1001") -> tuple[dict, dict]:
    """A customer calls ext's number; ext answers after 2 s; the caller's and the phone's legs."""
    a = trunk_in("+3545557000", "Guðrún", "+3545551001")
    sw("CHANNEL_CREATE", a)
    b = sw.answer(a, ext, 2)
    sw("CHANNEL_ANSWER", a)
    return a, b


def hold(sw: Switch, leg: dict, after: float, lasting: float, accum_before: float = 0.0, timed: bool = True) -> None:
    """`leg` holds `after` seconds from now for `lasting` seconds: CHANNEL_HOLD, then CHANNEL_UNHOLD, with the leg's
    timetable as switch_channel.c keeps it (timed: a phone's hold; not timed: uuid_hold's)."""
    sw.now += int(after * 1_000_000)
    sw("CHANNEL_HOLD", leg, 0, **{"Channel-Call-State": "HELD", "Caller-Channel-Last-Hold": str(sw.now if timed else 0),
                                  "Caller-Channel-Hold-Accum": str(int(accum_before * 1_000_000) if timed else 0)})
    accum = int((accum_before + lasting) * 1_000_000) if timed else 0
    sw("CHANNEL_UNHOLD", leg, lasting, **{"Channel-Call-State": "UNHELD", "Caller-Channel-Hold-Accum": str(accum)})


def test_the_operator_holding_counts_for_the_call_and_the_operator_inside_the_talk_time():
    sw = Switch()
    a, b = answered_call(sw)
    hold(sw, b, after=20, lasting=30)
    hold(sw, b, after=10, lasting=12.5, accum_before=30)
    sw.hangup(a, seconds=40)
    sw.hangup(b)
    call = sw.call(a)
    assert call.hold_seconds == pytest.approx(42.5)
    assert call.parties["1001"].hold_seconds == pytest.approx(42.5)
    assert call.talk_seconds() == pytest.approx(20 + 30 + 10 + 12.5 + 40 + 0.01, abs=0.1)  # hold is inside it
    assert sw.pops()["1001"] == ["ringing", "answered", "ended"]  # holding tells nobody anything
    assert sw.idle()


def test_the_caller_held_by_uuid_hold_is_the_hold_of_whoever_talks_then():
    sw = Switch()
    a, b = answered_call(sw, "1002")
    hold(sw, a, after=5, lasting=8, timed=False)
    sw.hangup(a, seconds=3)
    sw.hangup(b)
    call = sw.call(a)
    assert call.hold_seconds == pytest.approx(8)
    assert call.parties["1002"].hold_seconds == pytest.approx(8)


def test_the_caller_hanging_up_on_hold_ends_the_hold_with_the_phones_leg():
    """The customer gives up on hold: FreeSWITCH unholds the operator's leg as it hangs up, after the call's end."""
    sw = Switch()
    a, b = answered_call(sw)
    sw("CHANNEL_HOLD", b, 10, **{"Caller-Channel-Last-Hold": str(sw.now + 10_000_000)})
    sw.hangup(a, seconds=25)
    sw("CHANNEL_UNHOLD", b, 0.02, **{"Caller-Channel-Hold-Accum": str(25_020_000)})
    sw.hangup(b)
    call = sw.call(a)
    assert call.hold_seconds == pytest.approx(25.02)
    assert call.parties["1001"].hold_seconds == pytest.approx(25.02)


def test_a_hold_whose_events_were_missed_is_counted_from_the_legs_final_total():
    """Events lost while the daemon was away: the hang-up's Hold-Accum still says how long the leg held."""
    sw = Switch()
    a, b = answered_call(sw)
    sw.hangup(b, seconds=60, **{"Caller-Channel-Hold-Accum": str(15_000_000)})
    sw.hangup(a)
    call = sw.call(a)
    assert call.hold_seconds == pytest.approx(15)
    assert call.parties["1001"].hold_seconds == pytest.approx(15)


def test_a_missed_unhold_ends_the_hold_at_the_legs_hangup():
    sw = Switch()
    a, b = answered_call(sw)
    sw("CHANNEL_HOLD", b, 10)
    sw.hangup(b, seconds=7)
    sw.hangup(a)
    assert sw.call(a).hold_seconds == pytest.approx(7)


def _held(sw: Switch, leg: dict, after: float, event: str, accum: float | None = None) -> None:
    """One hold event on leg `after` seconds on; a phone's UNHOLD carries its leg's total (accum)."""
    extra = {} if accum is None else {"Caller-Channel-Hold-Accum": str(int(accum * 1_000_000))}
    sw(event, leg, after, **extra)


@pytest.mark.parametrize("steps, call_hold, party_hold", [
    # the operator's phone holds 0-10 s, the caller's leg (uuid_hold) 5-20 s: held by anyone 0-20 s
    ([("b", 0, "CHANNEL_HOLD", None), ("a", 5, "CHANNEL_HOLD", None), ("b", 5, "CHANNEL_UNHOLD", 10),
      ("a", 10, "CHANNEL_UNHOLD", None)], 20, 10 + 15),
    # nested: the caller's leg held 0-20 s, the phone 5-8 s inside it
    ([("a", 0, "CHANNEL_HOLD", None), ("b", 5, "CHANNEL_HOLD", None), ("b", 3, "CHANNEL_UNHOLD", 3),
      ("a", 12, "CHANNEL_UNHOLD", None)], 20, 20 + 3),
    # one after the other: the phone 0-4 s, the caller's leg 6-9 s
    ([("b", 0, "CHANNEL_HOLD", None), ("b", 4, "CHANNEL_UNHOLD", 4), ("a", 2, "CHANNEL_HOLD", None),
      ("a", 3, "CHANNEL_UNHOLD", None)], 7, 7),
])
def test_both_sides_holding_at_once_count_once_for_the_call(steps, call_hold, party_hold):
    """The call's hold is the time anyone held it (the union of its legs' holds); the operator's own hold stays
    as documented: its phone's holds plus the caller's leg held while it talked, each counted."""
    sw = Switch()
    a, b = answered_call(sw)
    legs = {"a": a, "b": b}
    for leg, after, event, accum in steps:
        _held(sw, legs[leg], after, event, accum)
    sw.hangup(a, seconds=30)
    sw.hangup(b)
    call = sw.call(a)
    assert call.hold_seconds == pytest.approx(call_hold, abs=0.01)
    assert call.parties["1001"].hold_seconds == pytest.approx(party_hold, abs=0.01)
    assert call.hold_seconds <= call.talk_seconds()


def test_hold_union_counts_each_moment_once():
    t = lambda s: dt.datetime(2026, 12, 7, 10, 0) + dt.timedelta(seconds=s)
    assert hold_union([]) == 0
    assert hold_union([(t(5), t(20)), (t(0), t(10))]) == 20  # overlapping, in any order
    assert hold_union([(t(0), t(20)), (t(5), t(8)), (t(8), t(9))]) == 20  # nested
    assert hold_union([(t(0), t(4)), (t(6), t(9)), (t(4), t(5))]) == 8  # touching and apart
    assert hold_union([(t(0), t(3)), (t(0), t(3))]) == 3  # the same hold twice


def test_a_hold_before_a_transfer_is_the_transferors_not_the_takers():
    """1001 holds the caller, then blind-transfers to 1002, who holds once too."""
    sw = Switch()
    a, b1 = answered_call(sw)
    hold(sw, b1, after=5, lasting=10)
    sw("sofia::transferor", b1, 1)
    sw.hangup(b1, "NORMAL_CLEARING", **{"variable_endpoint_disposition": "BLIND_TRANSFER",
                                        "Caller-Channel-Hold-Accum": str(10_000_000)})
    b2 = to_phone("1002", parent=a)
    sw.ring(b2)
    sw("CHANNEL_ANSWER", b2, 3)
    sw.bridge(a, b2)
    hold(sw, b2, after=4, lasting=6)
    sw.hangup(a, seconds=5)
    sw.hangup(b2)
    call = sw.call(a)
    assert call.parties["1001"].outcome == "transferred"
    assert call.parties["1001"].hold_seconds == pytest.approx(10)
    assert call.parties["1002"].hold_seconds == pytest.approx(6)
    assert call.hold_seconds == pytest.approx(16)


def test_an_outgoing_call_held_by_the_caller():
    sw = Switch()
    a = from_phone("1003", "+3545559999")
    sw("CHANNEL_CREATE", a)
    g = to_gateway("+3545559999", a)
    sw("CHANNEL_CREATE", g)
    sw("CHANNEL_PROGRESS", g)
    sw("CHANNEL_ANSWER", g, 4)
    sw.bridge(a, g)
    hold(sw, a, after=3, lasting=9)
    sw.hangup(a, seconds=2)
    sw.hangup(g)
    call = sw.call(a)
    assert call.hold_seconds == pytest.approx(9)
    assert call.parties["1003"].hold_seconds == pytest.approx(9)


def test_no_hold_is_no_hold_time_and_a_late_hold_event_changes_nothing():
    sw = Switch()
    a, b = answered_call(sw)
    sw.hangup(a, seconds=30)
    sw.hangup(b)
    call = sw.call(a)
    assert call.hold_seconds == 0 and call.parties["1001"].hold_seconds == 0
    sw("CHANNEL_HOLD", b, 1)  # after its destroy: forgotten
    assert call.hold_seconds == 0 and sw.idle()


def cc_info(sw: Switch, leg: dict, action: str, queue: str) -> None:
    """mod_callcenter's CUSTOM callcenter::info event about the leg (the caller's, or an agent's)."""
    sw("CUSTOM", leg, 0.01, **{"Event-Subclass": "callcenter::info", "CC-Queue": queue, "CC-Action": action,
                               "variable_cc_queue": queue})


def test_the_queue_is_named_by_mod_callcenter():
    sw = Switch()
    a = queued_caller(sw)
    cc_info(sw, a, "member-queue-start", "support@pbx.example")
    agent = to_phone("1004", queue_member=a)
    sw.ring(agent)
    sw("CHANNEL_ANSWER", agent, 3)
    sw.bridge(a, agent)
    sw.hangup(a, seconds=20)
    sw.hangup(agent)
    call = sw.call(a)
    assert call.queue == "support@pbx.example" and call.answered_by == "1004"


def test_a_caller_who_gives_up_in_the_queue_keeps_its_queue():
    sw = Switch()
    a = queued_caller(sw)
    cc_info(sw, a, "member-queue-start", "sales@pbx.example")
    sw.hangup(a, "NORMAL_CLEARING", seconds=40)
    call = sw.call(a)
    assert call.queue == "sales@pbx.example" and call.missed and call.parties == {}


def test_a_call_that_never_queued_has_no_queue():
    sw = Switch()
    a, b = answered_call(sw)
    sw.hangup(a, seconds=3)
    sw.hangup(b)
    assert sw.call(a).queue is None


def test_a_call_held_and_resumed_before_a_reconnect_is_adopted_as_answered():
    """show channels lists a leg that held and resumed as UNHELD (switch_channel.c leaves it there): still answered."""
    scenario = "inbound-answered"
    rows = [{**row, "callstate": "UNHELD"} for row in _channels(scenario)]
    sink = ListSink()
    tracker = CallTracker(RULES, sink)
    tracker.resync(rows, dt.datetime(2026, 11, 26))
    (adopted,) = tracker.calls.values()
    assert adopted.answered_by == expected(scenario)["calls"][0]["answered_by"]  # at the resync, not only later
    for _, event in read_events(CAPTURES / f"{scenario}.plain.esl")[_api_index(scenario):]:
        tracker.handle(event)
    (call,) = sink.calls.values()
    assert call.finished and call.answered_by == expected(scenario)["calls"][0]["answered_by"]
    assert not call.missed
