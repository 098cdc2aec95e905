"""The call rules beyond the recorded samples: scripted FreeSWITCH event sequences with the headers that matter.

Each test writes a call the way FreeSWITCH 1.10 reports it (legs, originators, bridge ids, hangup causes,
dispositions) and checks the business call and the pops, in the vocabulary of the captures' expected.json.
"""
from __future__ import annotations

import itertools

from screenpop.daemon.calls.tracker import CallTracker
from screenpop.daemon.pbx.protocol import Event

from test_calls import RULES, ListSink, per_extension

_ids = itertools.count(1)


def uid() -> str:
    return f"00000000-0000-4000-8000-{next(_ids):012d}"


def trunk_in(number: str, name: str, did: str) -> dict:
    """A caller from the phone network, entering the public context on the trunk profile."""
    return {
        "Unique-ID": uid(), "Channel-Name": f"sofia/external/{number}@198.51.100.7", "Call-Direction": "inbound",
        "variable_sofia_profile_name": "external", "Caller-Caller-ID-Number": number, "Caller-Caller-ID-Name": name,
        "Caller-Orig-Caller-ID-Name": name, "Caller-Destination-Number": did, "variable_sip_req_user": did,
        "Caller-Context": "public",
    }


def to_phone(ext: str, parent: dict | None = None, group_call: bool = False, queue_member: dict | None = None) -> dict:
    """A leg FreeSWITCH opens towards a desk phone: bridge b-leg, group_call b-leg, or queue agent leg."""
    h = {
        "Unique-ID": uid(), "Call-Direction": "outbound", "variable_sofia_profile_name": "internal",
        "Channel-Name": f"sofia/internal/sip:{ext}@10.0.0.{ext[-2:]}:5060" if group_call else f"sofia/internal/{ext}@10.0.0.9:5060",
        "variable_presence_id": f"{ext}@pbx.example", "Caller-Context": "default",
    }
    if not group_call:
        h["variable_dialed_user"] = ext
        h["Caller-Callee-ID-Number"] = ext
    if parent is not None:
        h["variable_originator"] = parent["Unique-ID"]
    if queue_member is not None:
        h["variable_cc_member_session_uuid"] = queue_member["Unique-ID"]
        h["variable_cc_side"] = "agent"
    return h


def from_phone(ext: str, dest: str) -> dict:
    """A desk phone placing a call (authenticated user on the internal profile)."""
    return {
        "Unique-ID": uid(), "Channel-Name": f"sofia/internal/{ext}@10.0.0.9", "Call-Direction": "inbound",
        "variable_sofia_profile_name": "internal", "variable_user_name": ext, "Caller-Caller-ID-Number": ext,
        "Caller-Caller-ID-Name": f"Operator {ext}", "Caller-Destination-Number": dest, "Caller-Context": "default",
        "variable_presence_id": f"{ext}@pbx.example",
    }


def to_gateway(number: str, parent: dict) -> dict:
    return {
        "Unique-ID": uid(), "Channel-Name": f"sofia/gateway/pstn/{number}", "Call-Direction": "outbound",
        "variable_sofia_profile_name": "external", "variable_sip_gateway_name": "pstn",
        "Caller-Destination-Number": number, "variable_originator": parent["Unique-ID"],
    }


class Switch:
    """Feeds events to a tracker with advancing Event-Date-Timestamps."""

    def __init__(self) -> None:
        self.sink = ListSink()
        self.tracker = CallTracker(RULES, self.sink)
        self.now = 1_795_714_456_000_000

    def __call__(self, name: str, leg: dict, seconds: float = 0.01, **extra: str) -> None:
        self.now += int(seconds * 1_000_000)
        headers = {**leg, "Event-Name": name, "Event-Date-Timestamp": str(self.now), **extra}
        if name.startswith("sofia::"):
            headers.update({"Event-Name": "CUSTOM", "Event-Subclass": name})
        self.tracker.handle(Event(headers))

    def ring(self, leg: dict) -> None:
        """The leg is created and its phone rings (CHANNEL_CREATE, then CHANNEL_PROGRESS)."""
        self("CHANNEL_CREATE", leg)
        self("CHANNEL_PROGRESS", leg)

    def answer(self, caller: dict, ext: str, seconds: float) -> dict:
        """A leg to ext's phone rings, is answered seconds later and bridged to the caller; the leg."""
        leg = to_phone(ext, parent=caller)
        self.ring(leg)
        self("CHANNEL_ANSWER", leg, seconds)
        self.bridge(caller, leg)
        return leg

    def hangup(self, leg: dict, cause: str = "NORMAL_CLEARING", seconds: float = 0.01, **extra: str) -> None:
        for name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"):
            self(name, leg, seconds if name == "CHANNEL_HANGUP" else 0.001, **{"Hangup-Cause": cause, **extra})

    def bridge(self, a: dict, b: dict, seconds: float = 0.01) -> None:
        self("CHANNEL_BRIDGE", a, seconds, **{"Bridge-A-Unique-ID": a["Unique-ID"], "Bridge-B-Unique-ID": b["Unique-ID"]})

    def call(self, leg: dict):
        return self.sink.calls[leg["Unique-ID"]]

    def pops(self) -> dict[str, list[str]]:
        return per_extension(self.sink.pops)

    def idle(self) -> bool:
        return not self.tracker.legs and not self.tracker.calls


def ring_group(sw: Switch, a: dict, exts: list[str], group_call: bool) -> list[dict]:
    legs = [to_phone(e, parent=a, group_call=group_call) for e in exts]
    for leg in legs:
        sw("CHANNEL_CREATE", leg)
    for leg in legs:
        sw("CHANNEL_PROGRESS", leg)
    return legs


def queued_caller(sw: Switch) -> dict:
    """A caller whose leg the queue answers at once (music on hold) before any agent rings."""
    a = trunk_in("+3545558000", "Anna", "+3545553000")
    sw("CHANNEL_CREATE", a)
    sw("CHANNEL_ANSWER", a)
    return a


def test_group_call_ring_group_without_dialed_user():
    sw = Switch()
    a = trunk_in("+3545557000", "Guðrún Helgadóttir", "+3545552001")
    sw("CHANNEL_CREATE", a)
    b2, b3, b4 = ring_group(sw, a, ["1002", "1003", "1004"], group_call=True)
    sw("CHANNEL_ANSWER", b3, 2)
    sw.hangup(b2, "LOSE_RACE")
    sw.hangup(b4, "LOSE_RACE")
    sw("CHANNEL_ANSWER", a)
    sw.bridge(a, b3)
    sw.hangup(a, seconds=5)
    sw.hangup(b3)
    call = sw.call(a).summary()
    assert call["extensions_rung"] == ["1002", "1003", "1004"]
    assert (call["answered_by"], call["answered_elsewhere"], call["talked"]) == ("1003", ["1002", "1004"], ["1003"])
    assert sw.pops() == {"1002": ["ringing", "answered_elsewhere"], "1003": ["ringing", "answered", "ended"],
                         "1004": ["ringing", "answered_elsewhere"]}
    assert sw.idle()


def test_ring_group_nobody_answers_then_voicemail():
    sw = Switch()
    a = trunk_in("+3545557000", "Guðrún", "+3545552001")
    sw("CHANNEL_CREATE", a)
    legs = ring_group(sw, a, ["1002", "1003"], group_call=False)
    for leg in legs:
        sw.hangup(leg, "NO_ANSWER", seconds=20)
    sw("CHANNEL_ANSWER", a, 0.5)  # voicemail picks up: FreeSWITCH itself, not an operator
    sw.hangup(a, seconds=30)
    call = sw.call(a)
    assert call.summary()["missed_by"] == ["1002", "1003"] and call.answered_by is None and call.missed
    assert sw.pops() == {"1002": ["ringing", "missed"], "1003": ["ringing", "missed"]}
    assert sw.idle()


def test_queue_abandoned_while_agents_ring():
    sw = Switch()
    a = queued_caller(sw)
    agents = [to_phone(e, queue_member=a) for e in ("1001", "1002")]
    for leg in agents:
        sw.ring(leg)
    sw.hangup(a, "NORMAL_CLEARING", seconds=12)
    for leg in agents:
        sw.hangup(leg, "ORIGINATOR_CANCEL")
    call = sw.call(a)
    assert call.direction == "INCOMING" and call.answered_by is None and call.missed
    assert call.summary()["missed_by"] == ["1001", "1002"] and call.talked == []
    assert sw.pops() == {"1001": ["ringing", "missed"], "1002": ["ringing", "missed"]}
    assert sw.idle()


def test_queue_with_no_agent_free_is_a_missed_call_without_pops():
    sw = Switch()
    a = queued_caller(sw)
    sw.hangup(a, seconds=40)
    call = sw.call(a)
    assert call.missed and call.rung == [] and sw.sink.pops == []


def test_queue_rings_agents_in_turn_until_one_answers():
    sw = Switch()
    a = queued_caller(sw)
    first = to_phone("1001", queue_member=a)
    sw.ring(first)
    sw.hangup(first, "NO_ANSWER", seconds=15)
    second = to_phone("1002", queue_member=a)
    sw.ring(second)
    sw("CHANNEL_ANSWER", second, 3)
    sw.bridge(a, second)
    sw.hangup(a, seconds=60)
    sw.hangup(second)
    summary = sw.call(a).summary()
    assert (summary["answered_by"], summary["answered_elsewhere"], summary["talked"]) == ("1002", ["1001"], ["1002"])
    assert sw.pops() == {"1001": ["ringing", "answered_elsewhere"], "1002": ["ringing", "answered", "ended"]}


def test_attended_transfer_moves_the_caller_and_the_consultation_is_its_own_internal_call():
    sw = Switch()
    x = trunk_in("+3545551234", "Jón Jónsson", "+3545551001")
    sw("CHANNEL_CREATE", x)
    l2 = sw.answer(x, "1001", 2)
    l3 = from_phone("1001", "1002")  # 1001 puts the caller on hold and calls 1002
    sw("CHANNEL_CREATE", l3, 10)
    l4 = to_phone("1002", parent=l3)
    sw.ring(l4)
    sw("CHANNEL_ANSWER", l4, 3)
    sw("CHANNEL_ANSWER", l3)
    sw.bridge(l3, l4)
    sw("sofia::transferor", l2, 5)  # REFER with Replaces
    sw.hangup(l3, "ATTENDED_TRANSFER", **{"variable_endpoint_disposition": "ATTENDED_TRANSFER"})
    sw.bridge(l4, x)  # FreeSWITCH's uuid_bridge of the consulted leg and the caller
    sw.hangup(l2, "ATTENDED_TRANSFER", **{"variable_endpoint_disposition": "ATTENDED_TRANSFER"})
    sw.hangup(x, seconds=30)
    sw.hangup(l4)
    customer_call, consultation = sw.call(x).summary(), sw.call(l3).summary()
    assert customer_call["direction"] == "INCOMING"
    assert customer_call["answered_by"] == "1001" and customer_call["talked"] == ["1001", "1002"]
    assert consultation["direction"] == "INTERNAL" and consultation["from_extension"] == "1001"
    assert consultation["answered_by"] == "1002" and consultation["talked"] == ["1001", "1002"]
    assert sw.pops() == {
        "1001": ["ringing", "answered", "dialing", "transferred", "ended"],  # transferred (customer call), then the consultation ends
        "1002": ["ringing", "answered", "ended", "ringing", "answered", "ended"],
    }
    assert sw.idle()


def test_blind_transfer_to_an_extension_that_does_not_answer():
    sw = Switch()
    a = trunk_in("+3545551234", "Jón", "+3545551001")
    sw("CHANNEL_CREATE", a)
    b1 = sw.answer(a, "1001", 2)
    sw("sofia::transferor", b1, 3)
    sw.hangup(b1, **{"variable_endpoint_disposition": "BLIND_TRANSFER"})
    b2 = to_phone("1002", parent=a)
    sw.ring(b2)
    sw.hangup(a, "NORMAL_CLEARING", seconds=20)
    sw.hangup(b2, "ORIGINATOR_CANCEL")
    summary = sw.call(a).summary()
    assert summary["missed_by"] == ["1002"] and summary["talked"] == ["1001"] and summary["answered_by"] == "1001"
    assert sw.pops() == {"1001": ["ringing", "answered", "transferred"], "1002": ["ringing", "missed"]}


def test_internal_call_missed():
    sw = Switch()
    a = from_phone("1001", "1002")
    sw("CHANNEL_CREATE", a)
    b = to_phone("1002", parent=a)
    sw.ring(b)
    sw.hangup(a, "NORMAL_CLEARING", seconds=8)
    sw.hangup(b, "ORIGINATOR_CANCEL")
    summary = sw.call(a).summary()
    assert summary["direction"] == "INTERNAL" and summary["missed_by"] == ["1002"] and summary["talked"] == []
    assert sw.pops() == {"1001": ["dialing", "ended"], "1002": ["ringing", "missed"]}, "the caller's dialing is over"
    assert sw.call(a).missed
    caller = sw.call(a).parties["1001"]
    assert caller.ended_at == sw.call(a).ended_at and caller.outcome is None and not caller.talked, "its row is closed"
    assert sw.idle()


def test_outbound_busy():
    sw = Switch()
    a = from_phone("1001", "+3545559876")
    sw("CHANNEL_CREATE", a)
    b = to_gateway("+3545559876", a)
    sw.ring(b)
    sw.hangup(b, "USER_BUSY", seconds=1)
    sw.hangup(a, "USER_BUSY", **{"variable_billsec": "0"})
    summary = sw.call(a).summary()
    assert summary["direction"] == "OUTGOING" and summary["external_number"] == "+3545559876"
    assert summary["external_answered"] is False and summary["hangup_cause"] == "USER_BUSY"
    assert summary["a_leg_billsec"] == 0 and summary["talked"] == [] and summary["extensions_rung"] == []
    assert sw.pops() == {"1001": ["dialing", "ended"]}


def test_outbound_failure_reported_before_the_b_leg_exists():
    """A failed b-leg can send CHANNEL_HANGUP before CHANNEL_CREATE."""
    sw = Switch()
    a = from_phone("1001", "0044207183875")
    sw("CHANNEL_CREATE", a)
    b = to_gateway("+44207183875", a)
    sw("CHANNEL_HANGUP", b, 0.2, **{"Hangup-Cause": "NO_ROUTE_DESTINATION"})
    sw("CHANNEL_CREATE", b)
    sw("CHANNEL_HANGUP_COMPLETE", b, **{"Hangup-Cause": "NO_ROUTE_DESTINATION"})
    sw("CHANNEL_DESTROY", b)
    sw.hangup(a, "NO_ROUTE_DESTINATION")
    summary = sw.call(a).summary()
    assert summary["direction"] == "OUTGOING" and summary["external_answered"] is False
    assert summary["hangup_cause"] == "NO_ROUTE_DESTINATION"
    assert sw.pops() == {"1001": ["dialing", "ended"]}
    assert sw.idle()


def test_presented_numbers_are_kept_verbatim_and_only_real_numbers_are_looked_up():
    asked = []
    sink = ListSink()
    tracker = CallTracker(RULES, sink, lookup=lambda n: (asked.append(n), (None, 0))[1])
    sw = Switch()
    sw.sink, sw.tracker = sink, tracker
    long_name = ("Þórunn Ýr Ægisdóttir-Guðmundsdóttir " * 4)[:120]
    for number, name in [("5551234", "National"), ("003545551234", "IDD"), ("anonymous", ""), ("+3545550666", long_name)]:
        a = trunk_in(number, name, "+3545551001")
        sw("CHANNEL_CREATE", a)
        b = to_phone("1001", parent=a)
        sw.ring(b)
        sw.hangup(a, "ORIGINATOR_CANCEL")
        sw.hangup(b, "ORIGINATOR_CANCEL")
        assert sw.call(a).external_number == number and sw.call(a).external_name == name
    assert asked == ["5551234", "003545551234", "anonymous", "+3545550666"]
    assert len(long_name) == 120


def test_interleaved_calls_do_not_mix():
    sw = Switch()
    a1, a2 = trunk_in("+3545551111", "One", "+3545551001"), trunk_in("+3545552222", "Two", "+3545551002")
    b1, b2 = to_phone("1001", parent=a1), to_phone("1002", parent=a2)
    for name, leg in [("CHANNEL_CREATE", a1), ("CHANNEL_CREATE", a2), ("CHANNEL_CREATE", b2), ("CHANNEL_CREATE", b1),
                      ("CHANNEL_PROGRESS", b1), ("CHANNEL_PROGRESS", b2), ("CHANNEL_ANSWER", b2)]:
        sw(name, leg)
    sw.bridge(a2, b2)
    sw.hangup(a1, "ORIGINATOR_CANCEL")
    sw.hangup(b1, "ORIGINATOR_CANCEL")
    sw.hangup(b2)
    sw.hangup(a2)
    assert sw.call(a1).summary()["missed_by"] == ["1001"] and sw.call(a2).answered_by == "1002"
    assert sw.pops() == {"1001": ["ringing", "missed"], "1002": ["ringing", "answered", "ended"]}
    assert sw.idle()


def test_events_of_unknown_and_finished_legs_are_ignored():
    sw = Switch()
    stray = to_phone("1003", parent={"Unique-ID": "no-such-call"})
    sw("CHANNEL_PROGRESS", stray)
    sw("CHANNEL_HANGUP_COMPLETE", {"Unique-ID": "never-seen", "Call-Direction": "inbound"})
    sw("HEARTBEAT", {})
    assert sw.sink.calls == {} and sw.sink.pops == [] and sw.idle()


def test_an_internal_call_nobody_answered_closes_the_callers_row(db):
    """The caller of an unanswered INTERNAL call: its 'dialing' is followed by 'ended', and its party row is closed."""
    from screenpop.daemon.record.writer import Writer
    from screenpop.db.models import Call, CallEvent, CallParty
    from screenpop.db.numbers import NumberRules

    from support import staff

    numbers = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)

    writer = Writer(db, staff=staff(), e164=lambda raw: numbers.classify(raw).e164)
    sw = Switch()
    sw.tracker = CallTracker(RULES, writer)
    a = from_phone("1001", "1002")
    b = to_phone("1002", parent=a)
    sw("CHANNEL_CREATE", a)
    sw.ring(b)
    sw.hangup(a, seconds=8)
    sw.hangup(b, "ORIGINATOR_CANCEL")
    while writer.pending or writer._calls:
        writer.flush_once()
    (call,) = Call.select()
    assert call.missed and call.ended_at is not None
    assert {p.extension: p.ended_at for p in CallParty.select()} == {"1001": call.ended_at, "1002": call.ended_at}
    stored = CallEvent.select(CallEvent.extension, CallEvent.event).order_by(CallEvent.id).tuples()
    assert [e for e in stored if e[0] == "1001"] == [("1001", "dialing"), ("1001", "ended")]
