"""The call tracker against the real FreeSWITCH captures (and generated calls, through cuts), event by event,
without sockets or a database."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import CallTracker, event_time, parse_channels
from screenpop.daemon.pbx.protocol import parse_event_body
from screenpop.simulator.capture import read_events
from screenpop.simulator.events import SimEvent
from screenpop.simulator.generator import CallGenerator
from screenpop.simulator.channels import CHANNEL_COLUMNS, ChannelTable, render_rows
from screenpop.simulator.replay import load_capture_events

from support import CAPTURES, SCENARIOS

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

    def queue_pop(self, call, extension, event, at, peer_number, peer_name) -> None:
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


def test_the_end_log_line_says_what_happened(caplog):
    """A sysadmin reading the journal: outgoing calls answered by the far end, ends that were not seen."""
    caplog.set_level("INFO", logger="screenpop.calls")
    run("outbound")
    run("inbound-answered")
    tracker, _, _ = _until_show_channels("inbound-missed")
    tracker.resync([], dt.datetime(2026, 11, 26, 18))
    tracker.settle(dt.datetime(2026, 11, 26, 18))
    ended = [r.getMessage() for r in caplog.records if " ended: " in r.getMessage()]
    assert ended[0].endswith(" OUTGOING ended: NORMAL_CLEARING, dialled by 1001, answered by the far end"), ended
    assert ended[1].endswith(" INCOMING ended: NORMAL_CLEARING, answered by 1001"), ended
    assert ended[2].endswith(" INCOMING ended: hangup not seen (it ended while FreeSWITCH was out of reach), "
                             "answered by nobody"), ended
    assert not [m for m in ended if "?" in m]


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


# ---- outages: events FreeSWITCH sent while the daemon was away are lost ------------------------------------

def _index(events, predicate, after: int = 0) -> int:
    return next(i for i, (_, e) in enumerate(events) if i >= after and predicate(e))


def _rows_at(scenario: str, stop: int) -> list[dict]:
    """What `show channels as json` answers after the capture's first `stop` events: the simulator's copy of
    FreeSWITCH's channels table, built from the same events (its rows equal the recorded replies)."""
    table = ChannelTable()
    for ev in load_capture_events(CAPTURES / f"{scenario}.plain.esl")[:stop]:
        table.apply(ev)
    return parse_channels(render_rows(table.channel_rows(), CHANNEL_COLUMNS, "json"))


def _outages(scenario: str, cuts: list[tuple[int, int]], backlog: bool = False):
    """The capture through a tracker that misses events[cut:back] for each (cut, back), settling at each cut and
    resyncing at each back half a second after the last event it missed, as the daemon does on reconnect. With
    `backlog`, the events after the last outage arrive before the `show channels` reply (taken after them all)."""
    events = read_events(CAPTURES / f"{scenario}.plain.esl")
    sink = ListSink()
    tracker = CallTracker(RULES, sink)
    pos = 0
    for n, (cut, back) in enumerate(cuts):
        for _, event in events[pos:cut]:
            tracker.handle(event)
        tracker.settle(event_time(events[cut][1].headers))
        rest = events[back:] if backlog and n == len(cuts) - 1 else []
        for _, event in rest:
            tracker.handle(event)
        stop = len(events) if rest else back
        tracker.resync(_rows_at(scenario, stop), event_time(events[stop - 1][1].headers) + dt.timedelta(seconds=0.5))
        pos = stop
    for _, event in events[pos:]:
        tracker.handle(event)
    tracker.settle(event_time(events[-1][1].headers) + dt.timedelta(seconds=1))
    return tracker, sink


def _times(call) -> tuple:
    parties = {p.extension: (p.rang_at, p.answered_at, p.ended_at, p.outcome) for p in call.parties.values()}
    return call.started_at, call.answered_at, call.ended_at, parties


ANSWERED_SCENARIOS = ["inbound-answered", "ring-group-users", "queue", "internal", "outbound"]


def _ringing_and_bridged(scenario: str) -> tuple[int, int]:
    """Where the operator's (or far end's) leg starts ringing, and just after the a-leg is bridged to the answerer."""
    events = read_events(CAPTURES / f"{scenario}.plain.esl")
    a_leg = events[_index(events, lambda e: e.get("Event-Name") == "CHANNEL_CREATE")][1].get("Unique-ID")
    ringing = _index(events, lambda e: e.get("Event-Name") == "CHANNEL_PROGRESS" and e.get("Unique-ID") != a_leg)
    bridged = _index(events, lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE")
    return ringing + 1, bridged + 1


@pytest.mark.parametrize("scenario", ANSWERED_SCENARIOS)
def test_answered_while_away_is_answered_at_its_real_time(scenario):
    """The answer happened while the daemon was away; at the resync `show channels` says the legs are up, and their
    next events carry their timetables: the call ends as if nothing had been missed, times included."""
    _, sink = _outages(scenario, [_ringing_and_bridged(scenario)])
    _, reference = run(scenario)
    assert [comparable(c.summary()) for c in sink.calls.values()] == [comparable(c.summary()) for c in reference.calls.values()]
    assert per_extension(sink.pops) == per_extension(reference.pops)
    assert [_times(c) for c in sink.calls.values()] == [_times(c) for c in reference.calls.values()]


@pytest.mark.parametrize("scenario", ANSWERED_SCENARIOS)
def test_answered_while_away_and_over_before_the_resync_is_not_missed(scenario):
    """Back after the call ended: the answer is known only from the legs' timetables in their last events (the
    a-leg's hangup, naming its bridged leg, can come first); the call is answered, nobody gets `missed`."""
    _, sink = _outages(scenario, [_ringing_and_bridged(scenario)], backlog=True)
    _, reference = run(scenario)
    assert [comparable(c.summary()) for c in sink.calls.values()] == [comparable(c.summary()) for c in reference.calls.values()]
    assert per_extension(sink.pops) == per_extension(reference.pops)
    assert [_times(c) for c in sink.calls.values()] == [_times(c) for c in reference.calls.values()]


def test_queue_agent_keeps_its_call_across_two_cuts():
    """The agent's leg is first seen ringing at a resync, before mod_callcenter ties it to the caller (a call of its
    own, nothing known about it); the connection drops again before any event of it, and at the next resync the
    row names the caller's leg: the agent joins the caller's call, which it answered."""
    events = read_events(CAPTURES / "queue.plain.esl")
    agent = _index(events, lambda e: e.get("Event-Name") == "CHANNEL_CREATE" and e.get("variable_cc_agent"))
    agent_uuid = events[agent][1].get("Unique-ID")
    ringing = _index(events, lambda e: e.get("Event-Name") == "CHANNEL_CALLSTATE" and e.get("Unique-ID") == agent_uuid)
    answer = _index(events, lambda e: e.get("Event-Name") == "CHANNEL_ANSWER" and e.get("Unique-ID") == agent_uuid)
    bridged = _index(events, lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE") + 1
    assert _rows_at("queue", ringing + 1)[-1]["call_uuid"] == agent_uuid, "the ringing agent leg names no caller yet"
    tracker, sink = _outages("queue", [(agent, ringing + 1), (answer, bridged)])
    _, reference = run("queue")
    assert [comparable(c.summary()) for c in sink.calls.values()] == [comparable(c.summary()) for c in reference.calls.values()]
    assert per_extension(sink.pops) == per_extension(reference.pops) == {"1001": ["ringing", "answered", "ended"]}
    assert tracker.legs == {} and tracker.calls == {}


# ---- outages under load: generated calls with known outcomes, compared call by call ---------------------------

GENERATED_T0 = 1_800_000_000_000_000


@pytest.fixture(scope="module")
def generated():
    """200 interleaved calls of every scenario (30 s of virtual time): the events, the same as the simulator's
    SimEvents (for its channels table), and what the generator says each call is."""
    gen = CallGenerator(rate=10, calls=200, seed=11, start_us=GENERATED_T0)
    frames = [ev.plain() for ev in gen.events()]
    bodies = [frame.split(b"\n\n", 1)[1] for frame in frames]
    return [parse_event_body(b) for b in bodies], [SimEvent.from_plain_frame(f, b) for f, b in zip(frames, bodies)], gen.records


def _through_outages(generated, windows: list[tuple[float, float]], reply_after: float) -> tuple[ListSink, set[int]]:
    """The generated stream through a tracker that misses every event inside each window (virtual seconds from the
    start), as the daemon does: settle at the cut; on reconnect the events of the first `reply_after` seconds are
    applied before the `show channels` reply, which is taken after them; settle again a second later.
    Returns the sink (pops as (call, extension, event)) and the indexes of the events missed."""
    events, sims, _ = generated

    class Sink(ListSink):
        def queue_pop(self, call, extension, event, at, peer_number, peer_name) -> None:
            self.pops.append((call.uuid, extension, event))

    sink = Sink()
    tracker = CallTracker(RULES, sink)
    table = ChannelTable()
    missed: set[int] = set()
    state, window, settle_at = "up", 0, None
    for i, (event, sim) in enumerate(zip(events, sims)):
        t = (int(event.headers["Event-Date-Timestamp"]) - GENERATED_T0) / 1e6
        at = event_time(event.headers)
        if settle_at is not None and t >= settle_at:
            tracker.settle(at)
            settle_at = None
        if state == "up" and window < len(windows) and t >= windows[window][0]:
            tracker.settle(at)
            state = "down"
        if state == "down" and t >= windows[window][1]:
            state = "reconnected"
        if state == "reconnected" and t >= windows[window][1] + reply_after:
            tracker.resync(parse_channels(render_rows(table.channel_rows(), CHANNEL_COLUMNS, "json")), at)
            state, window, settle_at = "up", window + 1, t + 1.0
        table.apply(sim)
        if state == "down":
            missed.add(i)
        else:
            tracker.handle(event)
    tracker.settle(event_time(events[-1].headers) + dt.timedelta(seconds=5))
    return sink, missed


@pytest.mark.parametrize("windows", [
    [(5.0, 6.0)],
    [(5.0, 6.5), (9.0, 10.5)],
    [(4.0, 4.3), (6.8, 7.1)],
    [(2.0, 3.0), (5.5, 6.5), (9.0, 10.0), (12.5, 13.5)],
    [(3.0, 7.0)],
], ids=["one-cut", "two-cuts-2.5s-apart", "short-cuts", "four-cuts", "4s-away"])
@pytest.mark.parametrize("reply_after", [0.0, 2.0], ids=["reply-at-once", "reply-after-2s-of-events"])
def test_generated_calls_through_outages_are_exact_where_the_stream_tells(generated, windows, reply_after):
    """Event-socket cuts under load. A call none of whose events was missed is exactly as the generator says. A call
    that began before a cut and whose caller hung up in view (no leg both answered and gone unseen) has the right
    answerer, talkers and answer time, and its answerer never gets `missed`. Any other call is at least never
    given to an extension that did not talk in it."""
    events, _, records = generated
    sink, missed = _through_outages(generated, windows, reply_after)
    reference, _ = _through_outages(generated, [], 0.0)
    missed_by_leg: dict[str, set[str]] = {}
    for i in missed:
        missed_by_leg.setdefault(events[i].get("Unique-ID"), set()).add(events[i].get("Event-Name"))
    exact = partial = 0
    for record in records:
        legs, wanted = record["legs"], record["call"]
        call = sink.calls.get(record["a_leg"])
        pops = per_extension((ext, event) for uuid, ext, event in sink.pops if uuid == record["a_leg"])
        if not any(leg in missed_by_leg for leg in legs):
            exact += 1
            assert comparable(call.summary()) == comparable(wanted), record["scenario"]
            assert pops == per_extension((p["extension"], p["event"]) for p in record["pops"]), record["scenario"]
        elif (
            not {"CHANNEL_CREATE", "CHANNEL_HANGUP"} & missed_by_leg.get(record["a_leg"], set())
            and not any({"CHANNEL_ANSWER", "CHANNEL_HANGUP"} <= missed_by_leg.get(leg, set()) for leg in legs)
        ):
            partial += 1
            got = call.summary()
            assert (got["direction"], got["answered_by"], got["talked"]) == (
                wanted["direction"], wanted["answered_by"], wanted["talked"]), record["scenario"]
            assert "missed" not in pops.get(wanted["answered_by"], []), record["scenario"]
            assert call.answered_at == reference.calls[record["a_leg"]].answered_at, record["scenario"]
        elif call is not None:
            assert call.answered_by in (None, *wanted["talked"]), record["scenario"]
    assert exact and partial, "the cuts leave calls untouched and calls to catch up"
