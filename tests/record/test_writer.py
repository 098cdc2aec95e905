"""The database writer on both backends: what the tracker concludes is stored once, in order, even across failures."""
from __future__ import annotations

import peewee
from pytest import approx

from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import CallState, CallTracker
from screenpop.daemon.pbx.protocol import parse_headers
from screenpop.daemon.record.writer import Writer, load_open_calls
from screenpop.daemon.reports import analytics
from screenpop.daemon.reports.callrecords import call_records
from screenpop.db.models import Call, CallEvent, CallParty
from screenpop.simulator.capture import read_events
from screenpop.simulator.events import plain_line

from support import CAPTURES, RULES, expected, staff

DIRECTION = DirectionRules(frozenset({"external"}), frozenset({"public"}), RULES.is_extension)


def feed(writer: Writer, scenario: str, flush_every: int = 1000) -> None:
    tracker = CallTracker(DIRECTION, writer)
    for i, (_, event) in enumerate(read_events(CAPTURES / f"{scenario}.plain.esl")):
        tracker.handle(event)
        if i % flush_every == 0:
            while writer.pending or writer._calls:
                writer.flush_once()
    while writer.pending or writer._calls:
        writer.flush_once()


def test_on_committed_gets_committed_pops_with_their_ids_in_order(db):
    seen = []
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164,
                    on_committed=lambda pops: seen.extend((p.id, p.extension, p.event) for p in pops))
    feed(writer, "ring-group-users", flush_every=3)
    stored = list(CallEvent.select(CallEvent.id, CallEvent.extension, CallEvent.event).order_by(CallEvent.id).tuples())
    assert seen == stored and len(stored) == 7
    (record,) = call_records()
    assert record["answered_elsewhere"] == ["1002", "1004"]
    assert Call.get().external_e164 == "+3545557000"


def test_a_failed_batch_is_retried_without_loss_or_duplicates(db, monkeypatch):
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164)
    real = writer._write_batch
    failures = {"left": 3}

    def flaky(calls, pops):
        real(calls, pops)
        if failures["left"]:
            failures["left"] -= 1
            raise peewee.OperationalError("disk I/O error (test)")

    monkeypatch.setattr(writer, "_write_batch", flaky)
    tracker = CallTracker(DIRECTION, writer)
    errors = 0
    for _, event in read_events(CAPTURES / "transfer.plain.esl"):
        tracker.handle(event)
        try:
            writer.flush_once()
        except peewee.OperationalError:
            errors += 1
    while writer.pending or writer._calls:
        writer.flush_once()
    assert errors == 3
    assert Call.select().count() == 1 and CallParty.select().count() == 2
    exp = expected("transfer")
    stored = [(e, ev) for e, ev in CallEvent.select(CallEvent.extension, CallEvent.event).order_by(CallEvent.id).tuples()]
    assert sorted(stored) == sorted((p["extension"], p["event"]) for p in exp["pops"])
    (record,) = call_records()
    assert record["talked"] == ["1001", "1002"] and record["a_leg_billsec"] == 10


def test_the_extension_that_transferred_a_call_gets_its_talk_time(db):
    """Issue 14: its party row was stored when it left, and the talk time the tracker sets at the call's end was
    never written; the employee report then counted 0 s for the transfer and still averaged it in."""
    feed(Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164), "transfer", flush_every=1)
    talk = dict(CallParty.select(CallParty.extension, CallParty.talk_seconds).tuples())
    # 1001 answers at +1.02 s and blind-transfers at +3.06 s; 1002 answers at +5.12 s, the caller leaves at +11 s
    assert talk["1001"] == approx(2.04, abs=0.05) and talk["1002"] > 5
    rows = {r["extension"]: r for r in analytics.employees(analytics.Period(None, None))}
    assert rows["1001"]["talk_total_s"] == approx(talk["1001"], abs=0.001)
    assert rows["1001"]["talk_avg_s"] == approx(talk["1001"], abs=0.001)


def test_open_calls_are_restored_with_their_parties(db):
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164, node="fs1")
    tracker = CallTracker(DIRECTION, writer)
    events = read_events(CAPTURES / "ring-group-users.plain.esl")
    answered = next(i for i, (_, e) in enumerate(events) if e.get("Event-Name") == "CHANNEL_BRIDGE")
    for _, event in events[: answered + 1]:
        tracker.handle(event)
    while writer.pending or writer._calls:
        writer.flush_once()
    assert load_open_calls(db, "fs2") == [], "another node's calls are not this daemon's to resume"
    (call,) = load_open_calls(db, "fs1")
    assert call.direction == "INCOMING" and call.answered_by == "1003"
    assert {p.extension: p.state for p in call.parties.values()} == {"1002": "done", "1003": "answered", "1004": "done"}
    assert sorted(call.rung) == ["1002", "1003", "1004"] and call.talked == ["1003"]


def test_a_call_stored_before_comes_back_as_new_and_is_not_doubled(db):
    """After a restart or a takeover a stored call can reach a writer as new: its row is found and updated (on
    PostgreSQL in the one statement that inserts the batch's new calls, here beside a really new one)."""
    first = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164, node="fs1")
    events = read_events(CAPTURES / "ring-group-users.plain.esl")
    answered = next(i for i, (_, e) in enumerate(events) if e.get("Event-Name") == "CHANNEL_BRIDGE")
    tracker = CallTracker(DIRECTION, first)
    for _, event in events[: answered + 1]:
        tracker.handle(event)
    while first.pending or first._calls:
        first.flush_once()
    (stored,) = Call.select()
    second = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164, node="fs1")
    tracker = CallTracker(DIRECTION, second)
    for _, event in events + read_events(CAPTURES / "transfer.plain.esl"):
        tracker.handle(event)
    while second.pending or second._calls:
        second.flush_once()
    assert Call.select().count() == 2
    again = Call.get(Call.uuid == stored.uuid)
    assert again.id == stored.id and again.ended_at is not None, "the stored row, updated to the call's end"
    assert {e.call_id for e in CallEvent.select().where(CallEvent.uuid == stored.uuid)} == {stored.id}
    assert CallParty.select().where(CallParty.call == stored.id).count() == 3



def test_a_call_row_is_written_only_when_it_changed(db):
    """Each UPDATE of a call fires the analytics triggers and rewrites its index entries: a writer skips a row
    that is as it last stored it (whoever changed the stored row since), and writes it once it changes."""
    feed(Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164, node="fs1"), "ring-group-users")
    row = Call.get()
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164, node="fs1")
    call = CallState(uuid=row.uuid, a_leg=None, started_at=row.started_at)
    call.db_id, call.direction, call.external_number = row.id, row.direction, row.external_number

    def save(hangup_cause: str | None = None) -> str | None:
        call.hangup_cause = hangup_cause
        writer.save_call(call)
        while writer._calls:
            writer.flush_once()
        return Call.get().hangup_cause

    Call.update(hangup_cause="SET_BY_HAND").execute()
    assert save() is None, "a row this writer never stored is written"
    Call.update(hangup_cause="SET_BY_HAND").execute()
    assert save() == "SET_BY_HAND", "a row as this writer last stored it is not written again"
    assert save("NORMAL_CLEARING") == "NORMAL_CLEARING"


def test_a_hostile_caller_name_is_stored_as_sent_and_a_nul_cannot_stop_the_writer(db):
    """Caller-ID text is anyone's: quotes, backslashes, line separators and emoji are stored exactly; a NUL
    (%00 on the wire) arrives as U+FFFD, since PostgreSQL would refuse it and the batch would be retried forever."""
    hostile = "Evil\x00Name \\ \" ' \u2028 <b>&amp; \U0001F600"
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164)
    tracker = CallTracker(DIRECTION, writer)
    for _, event in read_events(CAPTURES / "ring-group-users.plain.esl"):
        names = {k: hostile for k in event.headers if k.endswith("Caller-ID-Name")}
        event.headers = parse_headers(b"".join(plain_line(k, v) for k, v in {**event.headers, **names}.items()))
        tracker.handle(event)
    while writer.pending or writer._calls:
        writer.flush_once()
    assert Call.get().external_name == hostile.replace("\x00", "\ufffd")
    assert {e.peer_name for e in CallEvent.select()} == {hostile.replace("\x00", "\ufffd")}


def test_talk_times_stored_without_them_are_filled_in(db):
    """Migration 10: what the writer left out before its fix (a party that transferred the call) is computed."""
    from screenpop.db.migrations import MIGRATIONS

    feed(Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164), "transfer")
    CallParty.update(talk_seconds=None).where(CallParty.extension == "1001").execute()
    next(m for m in MIGRATIONS if m.version == 10).apply(db)
    assert CallParty.get(CallParty.extension == "1001").talk_seconds == approx(2.04, abs=0.05)
