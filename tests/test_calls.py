"""The call tracker against the real FreeSWITCH captures, event by event, without sockets or a database."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from screenpop.daemon.calls import CallTracker, parse_channels
from screenpop.daemon.capture import read_events
from screenpop.daemon.direction import DirectionRules

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "esl-captures"
SCENARIOS = sorted(p.name[: -len(".expected.json")] for p in CAPTURES.glob("*.expected.json"))
RULES = DirectionRules(
    trunk_profiles=frozenset({"external"}),
    trunk_contexts=frozenset({"public"}),
    is_extension=lambda s: re.fullmatch(r"[1-9][0-9]{1,4}", s) is not None,
)


class ListSink:
    """Keeps what the tracker concludes, in order."""

    def __init__(self) -> None:
        self.calls: dict[str, object] = {}
        self.pops: list[tuple[str, str, str, str]] = []

    def save_call(self, call) -> None:
        self.calls[call.uuid] = call

    def pop(self, call, extension, event, at, peer_number, peer_name) -> None:
        self.pops.append((extension, event, peer_number, peer_name))


def comparable(call: dict) -> dict:
    """Ring-group legs start within milliseconds in varying order: compare those lists as sets."""
    out = dict(call)
    for key in ("extensions_rung", "answered_elsewhere", "missed_by"):
        out[key] = sorted(out[key])
    return out


def per_extension(pops) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ext, event, *_ in pops:
        out.setdefault(ext, []).append(event)
    return out


def expected(scenario: str) -> dict:
    return json.loads((CAPTURES / f"{scenario}.expected.json").read_text(encoding="utf-8"))


def run(scenario: str, tracker: CallTracker | None = None, sink: ListSink | None = None):
    sink = sink or ListSink()
    tracker = tracker or CallTracker(RULES, sink)
    for _, event in read_events(CAPTURES / f"{scenario}.plain.esl"):
        tracker.handle(event)
    return tracker, sink


def test_captures_present():
    assert len(SCENARIOS) >= 9, f"captures missing under {CAPTURES}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_capture_yields_expected_calls_and_pops(scenario):
    tracker, sink = run(scenario)
    exp = expected(scenario)
    got = [c.summary() for c in sink.calls.values()]
    assert [comparable(c) for c in got] == [comparable(c) for c in exp["calls"]]
    assert per_extension(sink.pops) == per_extension((p["extension"], p["event"]) for p in exp["pops"])
    assert all(c.finished for c in sink.calls.values())
    assert tracker.legs == {} and tracker.calls == {}, "every leg and call is released once over"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_json_capture_tracks_the_same(scenario):
    sink = ListSink()
    tracker = CallTracker(RULES, sink)
    for _, event in read_events(CAPTURES / f"{scenario}.json.esl"):
        tracker.handle(event)
    assert [c.summary() for c in sink.calls.values()] == [c.summary() for c in run(scenario)[1].calls.values()]


def test_internal_pops_show_the_other_extension():
    _, sink = run("internal")
    assert ("1002", "ringing", "1001", "Operator 1001") in sink.pops
    assert ("1001", "dialing", "1002", "") in sink.pops


def test_incoming_pops_carry_caller_id_verbatim():
    _, sink = run("inbound-answered")
    assert sink.pops[0] == ("1001", "ringing", "+3545551234", "Jón Jónsson")


def test_durations_come_from_event_timestamps():
    _, sink = run("inbound-answered")
    call = next(iter(sink.calls.values()))
    assert round(call.ring_seconds(), 1) == 2.0
    assert round(call.talk_seconds(), 1) == 5.1


def test_customer_lookup_is_asked_with_the_presented_number():
    asked = []
    sink = ListSink()
    tracker = CallTracker(RULES, sink, lookup=lambda n: (asked.append(n), (42, 1))[1])
    run("inbound-answered", tracker, sink)
    assert asked == ["+3545551234"]
    assert next(iter(sink.calls.values())).customer_id == 42


def test_internal_calls_are_not_looked_up():
    asked = []
    sink = ListSink()
    run("internal", CallTracker(RULES, sink, lookup=lambda n: (asked.append(n), (None, 0))[1]), sink)
    assert asked == []


def _api_index(scenario: str) -> int:
    """Where in the stream the recording ran `show channels as json` (the API event marks it)."""
    events = read_events(CAPTURES / f"{scenario}.plain.esl")
    for i, (_, event) in enumerate(events):
        if event.get("Event-Name") == "API" and event.get("API-Command-Argument") == "channels as json":
            return i
    raise AssertionError("no show channels API event")


def _until_show_channels(scenario: str):
    """A tracker fed the capture up to where `show channels` was taken; returns it, its sink and the rest."""
    events = read_events(CAPTURES / f"{scenario}.plain.esl")
    cut = _api_index(scenario)
    sink = ListSink()
    tracker = CallTracker(RULES, sink)
    for _, event in events[:cut]:
        tracker.handle(event)
    return tracker, sink, events[cut:]


def _channels(scenario: str) -> list[dict]:
    raw = (CAPTURES / f"{scenario}.show_channels.raw").read_bytes()
    return parse_channels(raw.split(b"\n\n", 1)[1].decode("utf-8"))


@pytest.mark.parametrize("scenario", ["inbound-answered", "inbound-missed", "ring-group-users", "queue", "transfer"])
def test_reconnect_with_call_still_up_loses_and_duplicates_nothing(scenario):
    tracker, sink, rest = _until_show_channels(scenario)
    tracker.resync(_channels(scenario), dt.datetime(2026, 11, 26))
    for _, event in rest:
        tracker.handle(event)
    tracker.settle(dt.datetime(2026, 11, 26, 23))
    _, reference = run(scenario)
    assert [c.summary() for c in sink.calls.values()] == [c.summary() for c in reference.calls.values()]
    assert per_extension(sink.pops) == per_extension(reference.pops)


@pytest.mark.parametrize("scenario", ["inbound-answered", "ring-group-users", "outbound", "internal"])
def test_connecting_mid_call_adopts_it(scenario):
    """A daemon that starts while a call is up learns it from show channels and follows it to the end."""
    events = read_events(CAPTURES / f"{scenario}.plain.esl")
    cut = _api_index(scenario)
    sink = ListSink()
    tracker = CallTracker(RULES, sink)
    tracker.resync(_channels(scenario), dt.datetime(2026, 11, 26))
    for _, event in events[cut:]:
        tracker.handle(event)
    (call,) = sink.calls.values()
    exp = expected(scenario)["calls"][0]
    assert call.finished
    for key in ("direction", "external_number", "from_extension", "answered_by", "hangup_cause", "a_leg_billsec"):
        assert call.summary()[key] == exp[key], key
    assert tracker.legs == {}


def test_call_that_ended_while_disconnected_is_closed():
    tracker, sink, rest = _until_show_channels("inbound-answered")
    tracker.resync([], dt.datetime(2026, 11, 26, 18))
    tracker.settle(dt.datetime(2026, 11, 26, 18))
    (call,) = sink.calls.values()
    assert call.finished and call.ended_at == dt.datetime(2026, 11, 26, 18)
    assert per_extension(sink.pops) == {"1001": ["ringing", "answered", "ended"]}
    for _, event in rest:
        tracker.handle(event)
    assert len(sink.calls) == 1 and per_extension(sink.pops) == {"1001": ["ringing", "answered", "ended"]}
    assert tracker.legs == {}


def test_missed_call_that_ended_while_disconnected_is_missed():
    tracker, sink, rest = _until_show_channels("inbound-missed")
    tracker.resync([], dt.datetime(2026, 11, 26, 18))
    tracker.settle(dt.datetime(2026, 11, 26, 18))
    assert per_extension(sink.pops) == {"1001": ["ringing", "missed"]}
    assert next(iter(sink.calls.values())).missed


def test_events_queued_before_the_resync_reply_still_count():
    """The channel list says the call is gone, but the events received meanwhile say how it ended: they win."""
    tracker, sink, rest = _until_show_channels("inbound-answered")
    tracker.resync([], dt.datetime(2026, 11, 26, 18))
    for _, event in rest:
        tracker.handle(event)
    tracker.settle(dt.datetime(2026, 11, 26, 18))
    (call,) = sink.calls.values()
    assert call.summary() == expected("inbound-answered")["calls"][0]
