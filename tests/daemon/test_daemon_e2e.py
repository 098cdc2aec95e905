"""The daemon as a process, fed by the simulator over TCP, checked in the database it wrote (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from screenpop.daemon.customers.lookup import add_phone
from screenpop.daemon.reports.callrecords import call_records
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import CallEvent, Customer
from screenpop.simulator.capture import read_events

from hostile import HOSTILE_NAME, FakeFreeswitch, hostile_stream
from support import CAPTURES, Proxy, RULES, SCENARIOS, comparable, daemon, expected, free_port, pops_by_extension
from support import replay, run_calls, simulator, wait_for, write_config



def stored_pops() -> dict[str, list[str]]:
    return pops_by_extension(CallEvent.select(CallEvent.extension, CallEvent.event).order_by(CallEvent.id).tuples())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_replayed_capture_is_stored_field_by_field(tmp_path, db_url, db, scenario):
    customer = Customer.create(name="Jón Jónsson", company="Norðurljós ehf.", category="vip")
    add_phone(customer, "+3545551234", "mobile", RULES)
    replay(tmp_path, db_url, scenario)
    exp = expected(scenario)
    records = call_records()
    keys = list(exp["calls"][0].keys())
    assert [comparable(r, keys) for r in records] == [comparable(c, keys) for c in exp["calls"]]
    assert stored_pops() == pops_by_extension((p["extension"], p["event"]) for p in exp["pops"])
    for record in records:
        assert record["ended_at"] is not None and record["started_at"] is not None
        assert record["talk_seconds"] is None or record["talk_seconds"] >= 0
        if record["external_number"] == "+3545551234":
            assert record["customer"] == {"id": customer.id, "name": "Jón Jónsson", "company": "Norðurljós ehf.", "category": "vip"}
            assert {e.customer_id for e in CallEvent.select()} == {customer.id}


def test_durations_match_the_recording_at_any_speed(tmp_path, sqlite_url):
    db = open_database(sqlite_url)
    migrate(db)
    replay(tmp_path, sqlite_url, "inbound-answered")
    (record,) = call_records()
    assert round(record["ring_seconds"], 2) == 2.02, "CHANNEL_CREATE of the a-leg to CHANNEL_ANSWER of 1001's leg"
    assert round(record["talk_seconds"], 2) == 5.08, "to the a-leg's CHANNEL_HANGUP"
    db.close()


def test_restamped_replay_is_timed_on_the_live_timeline(tmp_path, sqlite_url):
    """--restamp at speed 4: the call is recorded when it was replayed, a quarter as long as recorded (the channels'
    timetables, which the tracker reads first, move with the events' own dates)."""
    db = open_database(sqlite_url)
    migrate(db)
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    replay(tmp_path, sqlite_url, "inbound-answered", "--speed", "4", "--restamp")
    (record,) = call_records()
    assert before <= dt.datetime.fromisoformat(record["started_at"]).replace(tzinfo=None) <= before + dt.timedelta(seconds=30)
    assert abs(record["ring_seconds"] - 2.02 / 4) < 0.01 and abs(record["talk_seconds"] - 5.08 / 4) < 0.01
    db.close()


def _events(scenario: str) -> list:
    """The capture's events, in order."""
    return read_events(CAPTURES / f"{scenario}.plain.esl")


def _event_index(scenario: str, predicate) -> int:
    for i, (_, event) in enumerate(_events(scenario)):
        if predicate(event):
            return i
    raise AssertionError("event not found")


def _freeswitch_away(tmp_path, db_url: str, scenario: str, until: int, back_from: int, speed: str) -> None:
    """FreeSWITCH (the simulator replaying the capture) goes away before event `until`, and a new one comes back
    replaying from event `back_from` at speed; the daemon follows both, resynchronises, and is stopped once the
    second is done."""
    capture = str(CAPTURES / f"{scenario}.plain.esl")
    port = free_port()
    first = simulator(tmp_path, port, "--replay", capture, "--speed", "0", "--until-event", str(until), name="sim1")
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", port, db_url))
    try:
        first.wait(20)
        wait_for(lambda: "lost connection" in d.log(), 10, "the daemon to notice FreeSWITCH is gone")
        second = simulator(tmp_path, port, "--replay", capture, "--speed", speed, "--from-event", str(back_from),
                           "--linger", "0.5", name="sim2")
        assert second.wait(30) == 0, second.log()
        wait_for(lambda: "resynchronised" in d.log(), 10, "the resync")
        assert d.terminate() == 0, d.log()
        second.close()
    finally:
        first.close()
        d.close()


def _daemon_away(tmp_path, db_url: str, speed: str, killed_after: str, away: float) -> str:
    """While the simulator replays inbound-answered at speed, the daemon is killed once the `killed_after` pop is
    stored; `away` seconds later a new daemon starts, resumes the call from the database and is stopped once the
    simulator is done. What the new daemon printed."""
    port = free_port()
    sim = simulator(tmp_path, port, "--replay", str(CAPTURES / "inbound-answered.plain.esl"), "--speed", speed,
                    "--linger", "0.5")
    first = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", port, db_url), name="daemon1")
    try:
        wait_for(lambda: CallEvent.select().where(CallEvent.event == killed_after).exists(), 15,
                 f"the {killed_after} pop")
        first.kill()
        time.sleep(away)
        config = write_config(tmp_path / "screenpop2.toml", port, db_url)  # an HTTP port nobody took meanwhile
        second = daemon(tmp_path, config, name="daemon2")
        assert sim.wait(40) == 0, sim.log()
        assert second.terminate() == 0, second.log()
        log = second.log()
        second.close()
        return log
    finally:
        sim.close()
        first.close()


@pytest.mark.parametrize("call_survives", [True, False], ids=["call-still-up", "call-gone"])
def test_freeswitch_restart_mid_call_loses_and_duplicates_nothing(tmp_path, db_url, db, call_survives):
    """The simulator dies right after the operator answers; a new one comes back with the call up, or without it."""
    scenario = "inbound-answered"
    cut = _event_index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE") + 1
    _freeswitch_away(tmp_path, db_url, scenario, cut, cut if call_survives else len(_events(scenario)), "0")
    records = call_records()
    assert len(records) == 1, records
    (record,) = records
    assert record["ended_at"] is not None
    assert record["answered_by"] == "1001" and record["direction"] == "INCOMING"
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}
    if call_survives:
        assert record["hangup_cause"] == "NORMAL_CLEARING" and record["a_leg_billsec"] == 5
    else:
        assert record["hangup_cause"] is None, "nobody saw how it ended"


def test_a_connection_frozen_mid_call_is_noticed_and_the_call_completed(tmp_path, db_url, db):
    """The link to FreeSWITCH freezes (open, nothing flowing) while 1001's phone rings: the daemon notices within
    seconds with the default keepalive, connects again, and gets the answer from `show channels`, the end live (at
    half speed 14 s after the ringing: room for the keepalive and the reconnect on a busy machine)."""
    port = free_port()
    sim = simulator(tmp_path, port, "--replay", str(CAPTURES / "inbound-answered.plain.esl"), "--speed", "0.5",
                    "--linger", "0.5")
    proxy = Proxy(("127.0.0.1", port))
    proxy.start()
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", proxy.port, db_url))
    try:
        wait_for(lambda: CallEvent.select().where(CallEvent.event == "ringing").exists(), 15, "the ringing pop")
        proxy.freeze()
        wait_for(lambda: "no reply to 'api status'" in d.log(), 15, "the daemon to notice the frozen connection")
        assert sim.wait(30) == 0, sim.log()
        assert d.terminate() == 0, d.log()
    finally:
        proxy.close()
        sim.close()
        d.close()
    (record,) = call_records()
    assert record["answered_by"] == "1001" and record["hangup_cause"] == "NORMAL_CLEARING", record
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}


def test_calls_are_followed_before_the_web_side_is_loaded(tmp_path, db_url):
    """Start to following calls is the time a restarted daemon is blind: the HTTP side (Flask, the pages: most of
    the start's CPU) is loaded only once the first connection to FreeSWITCH is subscribed and resynchronised."""
    port = free_port()
    sim = simulator(tmp_path, port)
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", port, db_url))
    try:
        wait_for(lambda: "HTTP listening" in d.log() or d.popen.poll() is not None, 20, "HTTP to listen")
        log = d.log()
        assert log.index("resynchronised with FreeSWITCH") < log.index("HTTP listening"), log
        assert d.terminate() == 0, d.log()
    finally:
        sim.close()
        d.close()


def test_daemon_restart_mid_call_gives_no_pop_twice(tmp_path, db_url, db):
    """The daemon is killed while a call rings and answers; the new daemon resumes it from the database. At half
    speed the call talks 10 s after the answer: room for a new daemon's start on a busy machine before the hangup."""
    assert "still up after restart; resumed" in _daemon_away(tmp_path, db_url, "0.5", "answered", 0)
    (record,) = call_records()
    assert record["ended_at"] is not None and record["hangup_cause"] == "NORMAL_CLEARING"
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}


def test_queue_agent_survives_two_cuts(tmp_path, db_url, db):
    """FreeSWITCH's socket drops before mod_callcenter offers the call to agent 1001, comes back while 1001 rings
    (its leg not yet tied to the caller), drops again before any event of it, and comes back after 1001 answered:
    1001 answered the call, and got its pops."""
    scenario = "queue"
    capture = str(CAPTURES / f"{scenario}.plain.esl")
    events = _events(scenario)
    agent = _event_index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_CREATE" and bool(e.get("variable_cc_agent")))
    agent_uuid = events[agent][1].get("Unique-ID")
    ringing = _event_index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_CALLSTATE" and e.get("Unique-ID") == agent_uuid)
    answer = _event_index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_ANSWER" and e.get("Unique-ID") == agent_uuid)
    bridged = _event_index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE") + 1
    port = free_port()
    first = simulator(tmp_path, port, "--replay", capture, "--speed", "0", "--until-event", str(agent), name="sim1")
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", port, db_url))
    try:
        first.wait(20)
        wait_for(lambda: d.log().count("lost connection") == 1, 10, "the daemon to notice FreeSWITCH is gone")
        # slowed down: the events before the agent's answer take seconds, time for the daemon's resync
        second = simulator(tmp_path, port, "--replay", capture, "--speed", "0.05", "--from-event", str(ringing + 1),
                           "--until-event", str(answer), name="sim2")
        second.wait(30)
        wait_for(lambda: d.log().count("lost connection") == 2, 10, "the second cut")
        assert f"call leg {agent_uuid} adopted" in d.log(), "the ringing agent leg, on its own"
        third = simulator(tmp_path, port, "--replay", capture, "--speed", "1", "--from-event", str(bridged),
                          "--linger", "0.5", name="sim3")
        assert third.wait(30) == 0, third.log()
        assert d.terminate() == 0, d.log()
        second.close()
        third.close()
    finally:
        first.close()
        d.close()
    (record,) = call_records()
    assert record["answered_by"] == "1001" and not record["missed"] and record["talked"] == ["1001"]
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}


def test_call_answered_while_the_daemon_was_down_keeps_its_real_times(tmp_path, db_url, db):
    """The daemon is killed while 1001 rings; 1001 answers before the new daemon is up: it resumes the call from the
    database, learns the answer from `show channels`, and the legs' next events give the real answer time."""
    # at half speed 1001 answers 4 s after it starts ringing, and the call lasts 10 s more
    assert "still up after restart; resumed" in _daemon_away(tmp_path, db_url, "0.5", "ringing", 5)
    (record,) = call_records()
    assert record["answered_by"] == "1001" and record["hangup_cause"] == "NORMAL_CLEARING"
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}
    assert round(record["ring_seconds"], 2) == 2.02 and round(record["talk_seconds"], 2) == 5.08


# ---- hostile and malformed input -----------------------------------------------------------------

def test_hostile_stream_keeps_the_daemon_running_and_stores_text_faithfully(tmp_path, db_url, db):
    port = free_port()
    fake = FakeFreeswitch(port, hostile_stream())
    fake.start()
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", port, db_url))
    try:
        assert fake.sent.wait(20), d.log()
        wait_for(lambda: any(r["ended_at"] for r in call_records()), 15, "the call to be stored")
        assert d.popen.poll() is None, d.log()
        assert d.terminate() == 0, d.log()
    finally:
        d.close()
        fake.server.close()
    (record,) = call_records()
    assert record["external_name"] == HOSTILE_NAME
    assert {e.peer_name for e in CallEvent.select()} == {HOSTILE_NAME}
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}


def test_generated_interleaved_calls_are_stored_as_the_generator_expects(tmp_path, db_url, db):
    """Many calls of every scenario at once, with the demo's kinds of numbers and names: each one as expected."""
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("+3545551234\n5551234\n003545559999\nanonymous\n+442071838750\n", encoding="utf-8")
    expect = tmp_path / "expect.jsonl"
    run_calls(tmp_path, db_url, "--generate", "--calls", "150", "--rate", "40", "--speed", "20", "--seed", "5",
              "--numbers", str(numbers), "--expect", str(expect), "--linger", "0.5")
    wanted = [json.loads(line) for line in expect.read_text(encoding="utf-8").splitlines()]
    assert len(wanted) == 150
    records = {r["uuid"]: r for r in call_records()}
    assert len(records) == 150
    pops: dict[str, dict[str, list[str]]] = {}
    for uuid, ext, event in CallEvent.select(CallEvent.uuid, CallEvent.extension, CallEvent.event).order_by(CallEvent.id).tuples():
        pops.setdefault(uuid, {}).setdefault(ext, []).append(event)
    keys = list(wanted[0]["call"].keys())
    for item in wanted:
        record = records[item["a_leg"]]
        assert comparable(record, keys) == comparable(item["call"], keys), item["scenario"]
        assert pops.get(item["a_leg"], {}) == pops_by_extension((p["extension"], p["event"]) for p in item["pops"]), item["scenario"]


@pytest.mark.parametrize("speed", ["1", "0"], ids=["up-at-resync", "over-at-resync"])
def test_call_answered_while_disconnected_is_answered_at_its_real_time(tmp_path, db_url, db, speed):
    """FreeSWITCH goes away while 1001 rings and comes back after 1001 answered, the call still up when the daemon
    asks `show channels` or already over: answered (not missed) either way, and timed by the channels' own
    timetables, so ring and talk times are those of the recording."""
    scenario = "inbound-answered"
    ringing = _event_index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_PROGRESS") + 1
    bridged = _event_index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE") + 1
    _freeswitch_away(tmp_path, db_url, scenario, ringing, bridged, speed)
    (record,) = call_records()
    assert record["answered_by"] == "1001" and not record["missed"]
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}
    assert round(record["ring_seconds"], 2) == 2.02 and round(record["talk_seconds"], 2) == 5.08
