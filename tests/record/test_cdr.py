"""FreeSWITCH's JSON CDRs: parsing every encoding mod_json_cdr uses, calls rebuilt from them with the tracker's own
rules, and end to end (simulator posting CDRs + daemon over TCP and HTTP) completing or recovering calls the
daemon saw only in part, or not at all."""
from __future__ import annotations

import base64
import datetime as dt
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import gevent
import gevent.event
import pytest

from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import CallTracker
from screenpop.daemon.config import CdrConfig
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.pbx.protocol import encode_value
from screenpop.daemon.record import cdr
from screenpop.daemon.record.cdr import BASE64_TYPE, FORM_TYPE, JSON_TYPE, CdrIntake, decode_body, parse_cdr, rebuild
from screenpop.simulator.capture import read_events
from screenpop.simulator.cdr import CdrBuilder
from screenpop.simulator.generator import CallGenerator

from screenpop.daemon.customers.lookup import Lookup
from screenpop.daemon.record.cdrlegs import prune_legs, store_leg
from screenpop.daemon.record.writer import Writer, load_open_calls
from screenpop.daemon.reports import analytics
from screenpop.daemon.reports.analytics import Period
from screenpop.daemon.reports.callrecords import call_records
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import Call, CallEvent, CdrLeg, SchemaVersion
from screenpop.simulator.replay import load_capture_events

from support import CAPTURES, RULES, SCENARIOS, comparable, daemon, expected, free_port, http_ready, pops_by_extension
from support import SLACK, simulator, staff, start_hub, stop_hub, wait_for, write_config

DIRECTION = DirectionRules(frozenset({"external"}), frozenset({"public"}), RULES.is_extension)
CRED = "freeswitch:s3cr:et"
CDR_CONFIG = '[cdr]\npassword = "s3cr:et"'


def cdrs_of(events) -> dict[str, str]:
    """Each leg's CDR as the simulator posts it, by leg uuid."""
    builder = CdrBuilder()
    return dict(filter(None, map(builder.observe, events)))


def rebuilt_calls(bodies) -> list[dict]:
    legs = [parse_cdr(body) for body in bodies]
    tracker = CallTracker(DIRECTION, None)
    calls = (rebuild(legs, leg.uuid, tracker) for leg in legs if leg.parent is None)
    return [call.summary() for call in calls if call is not None]


# ---- the CDR itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_capture_rebuilt_from_its_legs_cdrs_is_the_expected_call(scenario):
    calls = rebuilt_calls(cdrs_of(load_capture_events(CAPTURES / f"{scenario}.plain.esl")).values())
    want = expected(scenario)["calls"]
    keys = list(want[0].keys())
    assert [comparable(c, keys) for c in calls] == [comparable(c, keys) for c in want]


def test_generated_calls_rebuilt_from_their_cdrs_are_as_the_generator_expects():
    gen = CallGenerator(rate=50, calls=120, seed=11, start_us=1_800_000_000_000_000)
    cdrs = cdrs_of(gen.events())
    by_call: dict[str, list[str]] = {}
    legs = {uuid: parse_cdr(body) for uuid, body in cdrs.items()}

    def root(uuid: str) -> str:
        parent = legs[uuid].parent
        return uuid if parent is None or parent not in legs else root(parent)

    for uuid, body in cdrs.items():
        by_call.setdefault(root(uuid), []).append(body)
    keys = list(gen.records[0]["call"].keys())
    for record in gen.records:
        (call,) = rebuilt_calls(by_call[record["a_leg"]])
        assert comparable(call, keys) == comparable(record["call"], keys), record["scenario"]
    # the legs' hold totals (hold_accum_usec) give a recovered call its hold time, per extension that held
    tracker = CallTracker(DIRECTION, None)
    held = [r for r in gen.records if r["hold"]]
    assert held
    for record in held:
        call = rebuild([parse_cdr(body) for body in by_call[record["a_leg"]]], record["a_leg"], tracker)
        assert call.hold_seconds == pytest.approx(sum(record["hold"].values())), record["scenario"]
        assert {e: p.hold_seconds for e, p in call.parties.items() if p.hold_seconds} == pytest.approx(record["hold"])


def test_a_cdr_reads_the_same_in_each_of_mod_json_cdrs_encodings():
    body = next(iter(cdrs_of(load_capture_events(CAPTURES / "awkward-fs.plain.esl")).values()))
    form = b"cdr=" + encode_value(body).encode()
    b64 = b"cdr=" + base64.b64encode(body.encode())
    texts = {decode_body(body.encode(), JSON_TYPE), decode_body(form, FORM_TYPE), decode_body(b64, BASE64_TYPE)}
    assert texts == {body}
    leg = parse_cdr(body)
    assert leg.headers["Caller-Caller-ID-Name"] == json.loads(body)["callflow"][-1]["caller_profile"]["caller_id_name"]
    variables = json.loads(body)["variables"]
    assert "%" in variables["sip_from_display"], "values are URL-encoded, as encode-values leaves them"
    assert leg.headers["variable_sip_from_display"] != variables["sip_from_display"], "and decoded on intake"


@pytest.mark.parametrize("body, kind, status", [
    (b"{not json", JSON_TYPE, 400),
    (b"[1, 2]", JSON_TYPE, 400),
    (b'{"variables": {}, "channel_data": {}, "callflow": []}', JSON_TYPE, 400),
    (b'{"variables": {"uuid": "x y"}, "channel_data": {}, "callflow": [{"caller_profile": {}}]}', JSON_TYPE, 400),
    (b'{"variables": {"uuid": "a1"}, "channel_data": {}, "callflow": [{"caller_profile": {}, "times": {}}]}',
     JSON_TYPE, 400),
    (b'{"variables": {"uuid": "a1", "start_uepoch": "-5", "end_uepoch": "9"}, "channel_data": {}, '
     b'"callflow": [{"caller_profile": {}}]}', JSON_TYPE, 400),
    (b'{"variables": {"uuid": "a1", "start_uepoch": "1", "end_uepoch": "9999999999999999999"}, "channel_data": {}, '
     b'"callflow": [{"caller_profile": {}}]}', JSON_TYPE, 400),
    (b"{}", "text/plain", 415),
    (b"json={}", FORM_TYPE, 400),
    (b"cdr=%%%not base64", BASE64_TYPE, 400),
    (b"cdr=" + b"[" * 100_000, FORM_TYPE, 400),
])
def test_anything_but_a_cdr_is_refused_with_a_clear_4xx(body, kind, status):
    with pytest.raises(DataError) as refused:
        parse_cdr(decode_body(body, kind))
    assert refused.value.status == status and refused.value.message


# ---- end to end: simulator + daemon over TCP, CDRs over HTTP -----------------------------------------

def _cdr_args(http_port: int, *more: str) -> list[str]:
    return ["--cdr-url", f"http://127.0.0.1:{http_port}/api/v1/cdr", "--cdr-cred", CRED, "--cdr-retries", "60",
            "--cdr-delay", "0.5", *more]


def _events(scenario: str) -> int:
    return len(load_capture_events(CAPTURES / f"{scenario}.plain.esl"))


def _index(scenario: str, predicate) -> int:
    for i, (_, event) in enumerate(read_events(CAPTURES / f"{scenario}.plain.esl")):
        if predicate(event):
            return i
    raise AssertionError("event not found")


def _run(tmp_path: Path, db_url: str, scenario: str, *sim_args: str, http_port: int) -> str:
    """One simulator replaying the capture with the given options into one daemon; both end cleanly.
    Returns the daemon's log."""
    port = free_port()
    sim = simulator(tmp_path, port, "--replay", str(CAPTURES / f"{scenario}.plain.esl"), "--speed", "0",
                    "--linger", "0.3", *sim_args)
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", port, db_url, http_port=http_port, cdr=CDR_CONFIG))
    try:
        assert sim.wait(60) == 0, sim.log()
        assert "unable to post" not in sim.log(), sim.log()
        assert d.terminate() == 0, d.log()
        return d.log()
    finally:
        sim.close()
        d.close()


def _expected_calls(scenario: str) -> tuple[list[dict], list[str]]:
    want = expected(scenario)["calls"]
    keys = list(want[0].keys())
    return [comparable(c, keys) for c in want], keys


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_call_the_daemon_never_saw_is_recovered_from_its_cdrs_and_pops_nobody(tmp_path, sqlite_url, scenario):
    """FreeSWITCH had the whole call while the daemon was away: it only gets the CDRs, and stores the call."""
    db = open_database(sqlite_url)
    migrate(db)
    http_port = free_port()
    _run(tmp_path, sqlite_url, scenario, "--from-event", str(_events(scenario)), *_cdr_args(http_port),
         http_port=http_port)
    want, keys = _expected_calls(scenario)
    records = call_records()
    assert [comparable(r, keys) for r in records] == want
    assert all(r["recovered"] and r["ended_at"] and r["started_at"] for r in records)
    assert not CallEvent.select().exists(), "a recovered call pops nobody"
    db.close()


@pytest.mark.postgres
@pytest.mark.parametrize("encode", ["true", "base64"])
def test_recovery_on_postgresql_with_encoded_bodies(tmp_path, pg_url, encode):
    scenario = "ring-group-users"
    db = open_database(pg_url)
    migrate(db)
    http_port = free_port()
    _run(tmp_path, pg_url, scenario, "--from-event", str(_events(scenario)),
         *_cdr_args(http_port, "--cdr-encode", encode), http_port=http_port)
    want, keys = _expected_calls(scenario)
    records = call_records()
    assert [comparable(r, keys) for r in records] == want and records[0]["recovered"]
    assert CdrLeg.select().count() == 4
    (day,) = analytics.daily(Period(None, None))
    assert (day["inbound"], day["answered"], day["missed"]) == (1, 1, 0), "reports count recovered calls"
    db.close()


def _outage(tmp_path: Path, db_url: str, scenario: str, cut: int) -> str:
    """The daemon follows the call up to event `cut`, loses FreeSWITCH, and reconnects after the call has ended;
    the CDRs come as FreeSWITCH posts them (before or after the reconnect). Returns the daemon's log."""
    port, http_port = free_port(), free_port()
    capture = str(CAPTURES / f"{scenario}.plain.esl")
    first = simulator(tmp_path, port, "--replay", capture, "--speed", "0", "--until-event", str(cut), name="sim1")
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", port, db_url, http_port=http_port, cdr=CDR_CONFIG))
    try:
        first.wait(20)
        wait_for(lambda: "lost connection" in d.log(), 20, "the daemon to notice FreeSWITCH is gone")
        second = simulator(tmp_path, port, "--replay", capture, "--speed", "0", "--from-event", str(_events(scenario)),
                           "--linger", "0.5", *_cdr_args(http_port), name="sim2")
        assert second.wait(60) == 0, second.log()
        wait_for(lambda: "resynchronised" in d.log(), 20, "the resync")
        # completed, whichever came first: the CDRs (the call ends as they say) or the reconnect (then they complete it)
        wait_for(lambda: any(r["hangup_cause"] for r in call_records()), 20, "the CDRs to complete the call")
        assert d.terminate() == 0, d.log()
        second.close()
        return d.log()
    finally:
        first.close()
        d.close()


def test_a_call_that_ended_during_an_outage_gets_freeswitchs_hangup_billsec_and_times(tmp_path, db_url, db):
    """Issue 14: such a call was stored with hangup_cause and a_leg_billsec null and ended_at = the reconnect time."""
    scenario = "inbound-answered"
    _outage(tmp_path, db_url, scenario, _index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE") + 1)
    want, keys = _expected_calls(scenario)
    (record,) = call_records()
    assert [comparable(record, keys)] == want
    assert record["ended_at"].startswith("2026-11-26T17:34:23.88"), "the a-leg's hangup_time, not the reconnect time"
    assert round(record["talk_seconds"], 2) == 5.08 and not record["missed"] and not record["recovered"]
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}


def test_a_call_answered_while_the_daemon_was_away_is_not_stored_as_missed(tmp_path, db_url, db):
    """Issue 14 (3b): the daemon saw 1001's phone ring, then nothing; the CDRs show 1001 answered."""
    scenario = "inbound-answered"
    ringing = _index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_PROGRESS" and e.get("variable_originator"))
    _outage(tmp_path, db_url, scenario, ringing + 1)
    want, keys = _expected_calls(scenario)
    (record,) = call_records()
    assert [comparable(record, keys)] == want
    assert record["answered_by"] == "1001" and not record["missed"] and record["answered_at"] is not None


def stored_pops() -> dict[str, list[str]]:
    return pops_by_extension(CallEvent.select(CallEvent.extension, CallEvent.event).order_by(CallEvent.id).tuples())


@pytest.mark.parametrize("scenario", ["transfer", "queue"])
def test_cdrs_of_calls_the_daemon_saw_whole_change_nothing(tmp_path, db_url, db, scenario):
    http_port = free_port()
    log = _run(tmp_path, db_url, scenario, *_cdr_args(http_port), http_port=http_port)
    assert "from FreeSWITCH's CDRs" not in log, "the daemon's own record agrees with FreeSWITCH's"
    want, keys = _expected_calls(scenario)
    records = call_records()
    assert [comparable(r, keys) for r in records] == want and not any(r["recovered"] for r in records)
    assert stored_pops() == pops_by_extension((p["extension"], p["event"]) for p in expected(scenario)["pops"])
    assert CdrLeg.select().count() == len(cdrs_of(load_capture_events(CAPTURES / f"{scenario}.plain.esl")))


def _post(url: str, body: bytes, kind: str = JSON_TYPE, cred: str | None = CRED) -> tuple[int, dict]:
    headers = {"Content-Type": kind}
    if cred is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers, method="POST"), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_endpoint_authenticates_limits_refuses_garbage_and_keeps_a_leg_once(tmp_path, sqlite_url):
    db = open_database(sqlite_url)
    migrate(db)
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    config = write_config(tmp_path / "screenpop.toml", free_port(), sqlite_url, http_port=http_port,
                          cdr=CDR_CONFIG + "\nmax_body_kb = 128")
    d = daemon(tmp_path, config)
    legs = cdrs_of(load_capture_events(CAPTURES / "inbound-missed.plain.esl"))
    a_leg, body = next((u, b) for u, b in legs.items() if parse_cdr(b).parent is None)
    url = f"{base}/api/v1/cdr"
    try:
        wait_for(lambda: http_ready(base), 20, "the daemon's HTTP server")
        assert _post(url, body.encode(), cred=None)[0] == 401
        assert _post(url, body.encode(), cred="freeswitch:wrong")[0] == 401
        assert _post(url, body.encode(), cred="admin:s3cr:et")[0] == 401
        assert _post(url, b"{oops", cred=CRED) == (400, {"error": "the CDR is not valid JSON"})
        assert _post(url, body.encode(), "text/xml")[0] == 415
        assert _post(url, b"{" + b" " * 140_000 + b"}")[0] == 413
        assert _post(f"{url}?uuid=someone-else", body.encode())[0] == 400
        apps = [{"app_name": "log", "app_data": "x" * 1000, "app_stamp": "1795714456784590"}] * 100
        long_log = json.dumps({**json.loads(body), "app_log": {"applications": apps}}).encode()
        assert 100_000 < len(long_log) < 128 * 1024, "above the API's 64 KiB, under [cdr] max_body_kb"
        assert _post(f"{url}?uuid={a_leg}", long_log) == (200, {"status": "stored", "uuid": a_leg})
        assert _post(f"{url}?uuid={a_leg}", body.encode()) == (200, {"status": "duplicate", "uuid": a_leg})
        for uuid, leg in legs.items():
            if uuid != a_leg:
                assert _post(url, leg.encode())[0] == 200
        assert d.terminate() == 0, d.log()
        assert "s3cr" not in d.log()
    finally:
        d.close()
    assert CdrLeg.select().count() == 2
    (record,) = call_records()
    assert record["recovered"] and record["missed_by"] == ["1001"] and record["missed"]
    db.close()


def test_without_a_password_the_endpoint_takes_nothing(tmp_path, sqlite_url):
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", free_port(), sqlite_url, http_port=http_port))
    try:
        wait_for(lambda: http_ready(base), 20, "the daemon's HTTP server")
        status, answer = _post(f"{base}/api/v1/cdr", b"{}", cred="freeswitch:")
        assert status == 403 and "[cdr] password" in answer["error"]
    finally:
        d.close()


def test_a_stored_call_the_tracker_no_longer_holds_is_completed_from_the_database(db):
    """After a daemon restart the call is only in the database, closed at a reconnect with nobody answering:
    the CDRs load it, correct it, and the writer stores the correction (SQLite and PostgreSQL)."""
    scenario = "inbound-answered"
    events = [event for _, event in read_events(CAPTURES / f"{scenario}.plain.esl")]
    ringing = _index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_PROGRESS" and e.get("variable_originator"))
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164)
    tracker = CallTracker(DIRECTION, writer)
    for event in events[: ringing + 1]:
        tracker.handle(event)
    reconnect = dt.datetime(2026, 11, 26, 17, 40)
    tracker.resync([], reconnect)
    tracker.settle(reconnect)
    _flush(writer)
    (before,) = call_records()
    assert before["missed"] and before["hangup_cause"] is None and before["ended_at"].startswith("2026-11-26T17:40")
    (operator,) = analytics.employees(Period(None, None))
    assert (operator["extension"], operator["taken"], operator["missed"]) == ("1001", 0, 1)

    hub = start_hub(db, lambda: Lookup(db, RULES))
    try:
        writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164)
        intake = CdrIntake(CdrConfig(password="x"), writer, hub.worker, make_tracker=lambda sink: CallTracker(DIRECTION, sink))
        for body in cdrs_of(load_capture_events(CAPTURES / f"{scenario}.plain.esl")).values():
            intake.take(body.encode(), JSON_TYPE, None)
        _flush(writer)
    finally:
        stop_hub(hub)
    want, keys = _expected_calls(scenario)
    (record,) = call_records()
    assert [comparable(record, keys)] == want
    assert not record["missed"] and not record["recovered"] and record["id"] == before["id"]
    assert record["ended_at"].startswith("2026-11-26T17:34:23.88") and round(record["talk_seconds"], 2) == 5.08
    (operator,) = analytics.employees(Period(None, None))
    assert (operator["extension"], operator["taken"], operator["missed"]) == ("1001", 1, 0), "reports follow"


def _flush(writer: Writer) -> None:
    while writer.pending or writer._calls:
        writer.flush_once()


def test_calls_of_a_kill_9_gap_are_completed_or_recovered(tmp_path, db_url, db):
    """Issue 14 (3b): the daemon is killed (-9) amid generated calls and comes back seconds later. Calls that
    began and ended in the gap are recovered from their CDRs; none is lost, none lacks its hangup cause, and
    none that an operator answered is stored as missed."""
    expect = tmp_path / "expect.jsonl"
    port, http_port = free_port(), free_port()
    sim = simulator(tmp_path, port, "--generate", "--calls", "80", "--rate", "4", "--speed", "4", "--seed", "14",
                    "--expect", str(expect), "--linger", "1", *_cdr_args(http_port))
    config = write_config(tmp_path / "screenpop.toml", port, db_url, http_port=http_port, cdr=CDR_CONFIG)
    first = daemon(tmp_path, config, name="daemon1")
    try:
        wait_for(lambda: Call.select().count() >= 5, 30, "the first calls")
        first.kill()
        time.sleep(3.0)
        second = daemon(tmp_path, config, name="daemon2")
        assert sim.wait(120) == 0, sim.log()
        assert "unable to post" not in sim.log(), sim.log()
        assert second.terminate() == 0, second.log()
        second.close()
    finally:
        sim.close()
        first.close()
    wanted = {item["a_leg"]: item for item in map(json.loads, expect.read_text(encoding="utf-8").splitlines())}
    records = {r["uuid"]: r for r in call_records()}
    assert set(records) == set(wanted), "every call stored, once"
    popped = {uuid for (uuid,) in CallEvent.select(CallEvent.uuid).distinct().tuples()}
    assert any(r["recovered"] for r in records.values()), "calls in the gap"
    keys = list(next(iter(wanted.values()))["call"].keys())
    for uuid, record in records.items():
        assert record["hangup_cause"] and record["a_leg_billsec"] is not None and record["ended_at"], record
        assert comparable(record, keys) == comparable(wanted[uuid]["call"], keys), wanted[uuid]["scenario"]
        assert not (record["recovered"] and uuid in popped), "a recovered call popped nobody"


def test_a_daemon_back_while_freeswitch_is_away_completes_its_resumed_call_from_the_cdrs(tmp_path, db_url, db):
    """The kill -9 race end to end: daemon1 stops mid-call and FreeSWITCH is out of reach when daemon2 resumes the call.
    The CDRs end and complete it then, not at a reconnect that may never come before daemon2 stops; when FreeSWITCH
    comes back, its resync changes nothing."""
    scenario = "inbound-answered"
    cut = _index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE") + 1
    port, http_port = free_port(), free_port()
    capture = str(CAPTURES / f"{scenario}.plain.esl")
    config = write_config(tmp_path / "screenpop.toml", port, db_url, http_port=http_port, cdr=CDR_CONFIG)
    first_sim = simulator(tmp_path, port, "--replay", capture, "--speed", "0", "--until-event", str(cut), name="sim1")
    first = daemon(tmp_path, config, name="daemon1")
    second = second_sim = None
    try:
        first_sim.wait(20)
        wait_for(lambda: "lost connection" in first.log(), 20, "the daemon to notice FreeSWITCH is gone")
        assert first.terminate() == 0, first.log()
        (open_call,) = call_records()
        assert open_call["ended_at"] is None
        second = daemon(tmp_path, config, name="daemon2")
        wait_for(lambda: http_ready(f"http://127.0.0.1:{http_port}"), 20, "the daemon's HTTP server")
        for body in cdrs_of(load_capture_events(CAPTURES / f"{scenario}.plain.esl")).values():
            # posted again after a 503 (SQLite busy for a moment), as mod_json_cdr retries
            wait_for(lambda: _post(f"http://127.0.0.1:{http_port}/api/v1/cdr", body.encode())[0] == 200, 10,
                     "the CDR taken")
        wait_for(lambda: call_records()[0]["hangup_cause"], 20, "the CDRs to end the call without FreeSWITCH")
        assert "no event from FreeSWITCH can end it now" in second.log()
        second_sim = simulator(tmp_path, port, "--replay", capture, "--speed", "0", "--from-event",
                               str(_events(scenario)), "--linger", "0.5", name="sim2")
        assert second_sim.wait(60) == 0, second_sim.log()
        wait_for(lambda: "resynchronised" in second.log(), 20, "the resync")
        assert second.terminate() == 0, second.log()
    finally:
        for proc in (first_sim, first, second_sim, second):
            if proc is not None:
                proc.close()
    want, keys = _expected_calls(scenario)
    (record,) = call_records()
    assert [comparable(record, keys)] == want and record["ended_at"].startswith("2026-11-26T17:34:23.88")
    assert stored_pops() == {"1001": ["ringing", "answered", "ended"]}


def _left_open_mid_call(db, scenario: str) -> dict[str, str]:
    """The run before followed the call up to its bridge and was killed: the call is open in the database.
    Returns the call's CDRs by leg, as FreeSWITCH posts them once it is over."""
    events = [event for _, event in read_events(CAPTURES / f"{scenario}.plain.esl")]
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164)
    before = CallTracker(DIRECTION, writer)
    for event in events[: _index(scenario, lambda e: e.get("Event-Name") == "CHANNEL_BRIDGE") + 1]:
        before.handle(event)
    _flush(writer)
    return cdrs_of(load_capture_events(CAPTURES / f"{scenario}.plain.esl"))


def _next_run(db, hub, hearing: bool) -> tuple[CdrIntake, Writer]:
    """A daemon's CDR intake and writer on hub's database worker; hearing: whether FreeSWITCH's events reach it."""
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164)
    intake = CdrIntake(CdrConfig(password="x"), writer, hub.worker, make_tracker=lambda sink: CallTracker(DIRECTION, sink),
                       hearing=lambda: hearing)
    return intake, writer


def _resumed_mid_call(db, hub, scenario: str, hearing: bool) -> tuple[CdrIntake, Writer, dict[str, str]]:
    """The next run resumes the call left open, with no event socket connection yet, and takes the call's CDRs.
    Returns its intake and writer, and the CDRs by leg."""
    legs = _left_open_mid_call(db, scenario)
    intake, writer = _next_run(db, hub, hearing)
    intake.resume(load_open_calls(db, ""))
    for body in legs.values():
        assert intake.take(body.encode(), JSON_TYPE, None)[1]
    _flush(writer)
    return intake, writer, legs


def _until_ended(writer: Writer) -> None:
    """Write what the intake's completions queue, until the call has its hangup cause (they run in greenlets)."""
    with gevent.Timeout(20 * SLACK):
        while not (_flush(writer) or call_records()[0]["hangup_cause"]):
            gevent.sleep(0.02)


def _a_leg_end(legs: dict[str, str]) -> dt.datetime:
    (a_leg,) = [leg for leg in map(parse_cdr, legs.values()) if leg.parent is None]
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=a_leg.ended)


def _completed(scenario: str, legs: dict[str, str]) -> bool:
    """The one stored call is as expected, ended at its a-leg's hangup_time, with the expected pops."""
    want, keys = _expected_calls(scenario)
    (record,) = call_records()
    assert not record["recovered"]
    if record["ended_at"] is None:
        return False
    assert [comparable(record, keys)] == want
    assert record["ended_at"].startswith(_a_leg_end(legs).isoformat(timespec="milliseconds")), "the a-leg's hangup"
    assert stored_pops() == pops_by_extension((p["extension"], p["event"]) for p in expected(scenario)["pops"])
    return True


def test_the_a_leg_cdr_ends_a_resumed_call_that_no_event_can_end(db):
    """The kill -9 race: the daemon came back while FreeSWITCH was out of reach (and stopped before it reconnected).
    The a-leg's CDR is the only word of the hangup: it ends the call at once, with FreeSWITCH's cause, billsec and
    times, and a reconnect later changes nothing. (The call used to wait for a resync that never came, and stayed
    stored without its end, hangup cause and billsec.)"""
    scenario = "internal"
    hub = start_hub(db, lambda: Lookup(db, RULES))
    try:
        intake, writer, legs = _resumed_mid_call(db, hub, scenario, hearing=False)
        assert _completed(scenario, legs) and not intake.tracker.calls
        intake.tracker.resync([], dt.datetime(2026, 12, 1))
        intake.tracker.settle(dt.datetime(2026, 12, 1))
        _flush(writer)
        assert _completed(scenario, legs)
    finally:
        stop_hub(hub)


def test_while_events_can_still_end_a_call_its_cdrs_wait_for_the_trackers_end(db):
    """Connected to FreeSWITCH, the a-leg's hangup event is on its way (or a resync will find the call gone): the
    tracker's own end wins, then the stored CDRs complete the call (as at the next run's reconnect)."""
    scenario = "internal"
    hub = start_hub(db, lambda: Lookup(db, RULES))
    try:
        intake, writer, legs = _resumed_mid_call(db, hub, scenario, hearing=True)
        assert not _completed(scenario, legs) and intake.tracker.calls
        reconnect = dt.datetime(2026, 12, 1)
        intake.tracker.resync([], reconnect)
        intake.tracker.settle(reconnect)
        _until_ended(writer)
        assert _completed(scenario, legs)
    finally:
        stop_hub(hub)


def test_a_resumed_call_whose_a_leg_cdr_the_run_before_took_is_ended_from_it(db):
    """The run before took the CDRs while it still followed the call (its hangup event not yet tracked), then was
    killed: FreeSWITCH posts nothing again. The next run finds the stored CDRs as it resumes the call, and ends it
    from them even if FreeSWITCH stays out of reach."""
    scenario = "internal"
    hub = start_hub(db, lambda: Lookup(db, RULES))
    try:
        legs = _left_open_mid_call(db, scenario)
        before, writer = _next_run(db, hub, hearing=True)
        before.resume(load_open_calls(db, ""))
        for body in legs.values():
            before.take(body.encode(), JSON_TYPE, None)
        _flush(writer)
        assert call_records()[0]["ended_at"] is None, "waiting for the hangup event"
        intake, writer = _next_run(db, hub, hearing=False)
        intake.resume(load_open_calls(db, ""))
        _until_ended(writer)
        assert _completed(scenario, legs) and not intake.tracker.calls
    finally:
        stop_hub(hub)


def _insert_as_the_version_before(db, uuid: str) -> None:
    """A call row as a daemon of the version before writes it (a rolling upgrade on one PostgreSQL)."""
    db.execute_sql(f'INSERT INTO "call" (uuid, direction, started_at, node, matches, missed) '
                   f"VALUES ({db.param}, 'INCOMING', {db.param}, 'fs1', 0, {db.param})",
                   (uuid, dt.datetime(2026, 11, 1), False))


def test_migration_12_adds_the_cdr_table_and_recovered_to_a_database_made_before_it(db):
    _insert_as_the_version_before(db, "fresh")
    Call.create(uuid="stored-before", direction="INCOMING", started_at=dt.datetime(2026, 11, 1))
    db.execute_sql("DROP TABLE cdr_leg")
    db.execute_sql('ALTER TABLE "call" DROP COLUMN recovered')
    SchemaVersion.delete().where(SchemaVersion.version == 12).execute()
    assert migrate(db) == [12] and migrate(db) == []
    _insert_as_the_version_before(db, "upgraded")
    assert {c.uuid: c.recovered for c in Call.select()} == {"fresh": False, "stored-before": False, "upgraded": False}
    assert store_leg("leg-1", None, "{}") and not store_leg("leg-1", None, "{}")


def test_cdrs_older_than_keep_days_are_pruned(db, monkeypatch):
    store_leg("old-leg", None, "{}")
    store_leg("new-leg", "old-leg", "{}")
    CdrLeg.update(received_at=dt.datetime(2020, 1, 1)).where(CdrLeg.uuid == "old-leg").execute()
    assert prune_legs(30) == 1 and prune_legs(30) == 0
    assert [leg.uuid for leg in CdrLeg.select()] == ["new-leg"]

    CdrLeg.update(received_at=dt.datetime(2020, 1, 1)).execute()
    monkeypatch.setattr(cdr, "PRUNE_SECONDS", 0.05)
    hub = start_hub(db, lambda: Lookup(db, RULES))
    stopped = gevent.event.Event()
    pruner = gevent.spawn(CdrIntake(CdrConfig(keep_days=7), Writer(db, staff=staff(), e164=str), hub.worker,
                                   make_tracker=lambda sink: CallTracker(DIRECTION, sink)).prune_forever, stopped)
    try:
        with gevent.Timeout(30):
            while CdrLeg.select().exists():
                gevent.sleep(0.05)
    finally:
        stopped.set()
        pruner.join(5)
        stop_hub(hub)
