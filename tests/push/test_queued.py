"""Pops out before they are stored (SQLite): the writer draws each pop's id as it queues it and the hub sends the card
at once; the commit sends nothing twice, a stream opened meanwhile still gets every pop once and in id order, and
ids a crashed daemon showed are never drawn again (daemon/record/writer.py, daemon/push/hub.py)."""
from __future__ import annotations

import json

import gevent

from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import CallTracker
from screenpop.daemon.push.hub import ALL
from screenpop.daemon.record import writer as writer_module
from screenpop.daemon.record.writer import RESERVED_KEY, Writer
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import CallEvent, Setting
from screenpop.simulator.capture import read_events

from support import CAPTURES, RULES, staff

DIRECTION = DirectionRules(frozenset({"external"}), frozenset({"public"}), RULES.is_extension)
SCENARIO = "ring-group-users"  # 7 pops; two extensions' calls answered elsewhere


def events(scenario: str = SCENARIO) -> list:
    return [event for _, event in read_events(CAPTURES / f"{scenario}.plain.esl")]


def settle(hub) -> None:
    """Until the database worker has run everything posted to it so far."""
    hub.worker.run(lambda: None)


def frames(sub) -> list[tuple[int | None, dict | None]]:
    """What a stream was handed since last asked: (id, card) per frame; an id-only frame has no card."""
    out = []
    for pop_id, frame in sub.take():
        data = [line[6:] for line in frame.decode().split("\n") if line.startswith("data: ")]
        out.append((pop_id, json.loads(data[0]) if data else None))
    return out


def feed(writer: Writer, scenario: str = SCENARIO, tracker: CallTracker | None = None) -> CallTracker:
    """A call's events through a tracker (a new one unless given) into the writer, nothing flushed; the tracker."""
    tracker = tracker or CallTracker(DIRECTION, writer)
    for event in events(scenario):
        tracker.handle(event)
    return tracker


def flush(writer: Writer) -> None:
    while writer.pending or writer._calls:
        writer.flush_once()


def test_a_pop_goes_out_with_its_id_before_it_is_stored_and_is_stored_under_it(rig):
    db, hub, writer = rig
    sub = hub.subscribe(ALL, None)
    feed(writer)
    settle(hub)
    sent = frames(sub)
    assert CallEvent.select().count() == 0, "nothing is stored yet"
    assert len(sent) == 7 and all(card is not None for _, card in sent)
    assert [i for i, _ in sent] == sorted(i for i, _ in sent)
    flush(writer)
    settle(hub)
    assert frames(sub) == [], "the commit sends nothing twice"
    stored = [i for (i,) in CallEvent.select(CallEvent.id).order_by(CallEvent.id).tuples()]
    assert stored == [i for i, _ in sent]
    # each card sent early is the card a replay builds from the stored pop (who took a call included)
    replayed = {pop_id: json.loads(frame.decode().split("data: ", 1)[1]) for pop_id, frame in hub.replay(ALL, 0, sub.language)}
    assert {i: card for i, card in sent} == replayed
    taken = [card["taken_by"]["extension"] for _, card in sent if card["event"] == "answered_elsewhere"]
    assert len(taken) == 2 and all(taken)


def test_a_stream_opened_while_pops_are_unstored_gets_each_pop_once_in_id_order(rig):
    db, hub, writer = rig
    early = hub.subscribe(ALL, None)
    tracker = CallTracker(DIRECTION, writer)
    stream = events()
    for event in stream[: len(stream) // 2]:
        tracker.handle(event)
    settle(hub)
    first = frames(early)
    assert first, "the first half of the call made pops"
    late = hub.subscribe(ALL, None)
    assert not late.early, "pops it was not sent are unstored: it must not get later ones first"
    for event in stream[len(stream) // 2:]:
        tracker.handle(event)
    settle(hub)
    assert frames(late) == []
    second = frames(early)
    flush(writer)
    settle(hub)
    caught_up = frames(late)
    assert [i for i, _ in caught_up] == [i for i, _ in first + second], "every pop, once, in id order, from the commit"
    assert all(card is not None for _, card in caught_up)
    assert frames(early) == []
    assert late.early, "once everything sent is stored, it gets pops as they are queued too"
    feed(writer, "inbound-answered", tracker)  # another call
    settle(hub)
    assert [i for i, _ in frames(late)] == [i for i, _ in frames(early)] != []


def queue_a_call(db) -> tuple[Writer, list[tuple[int, bool]]]:
    """A daemon's writer (reserve_ids at its start) that has queued the pops of one call: (it, [(id, shown)])."""
    handed: list[tuple[int, bool]] = []
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164,
                    on_queued=lambda pop, with_id: handed.append((pop.id, with_id)))
    writer.reserve_ids()
    feed(writer)
    return writer, handed


def test_ids_a_crashed_daemon_showed_are_never_drawn_again(sqlite_url, monkeypatch):
    db = open_database(sqlite_url)
    migrate(db)
    _, shown = queue_a_call(db)  # never stored: the daemon died here
    assert len(shown) == 7 and all(with_id for _, with_id in shown)
    monkeypatch.setattr(writer_module, "RESERVE_IDS", 4)
    writer, drawn = queue_a_call(db)
    assert min(i for i, _ in drawn) > max(i for i, _ in shown)
    # only reserved ids are shown before they are stored; the rest go without theirs until stored
    assert [with_id for _, with_id in drawn] == [True] * 4 + [False] * 3
    flush(writer)
    reserved = int(Setting.get_by_id(RESERVED_KEY).value)
    assert reserved >= max(i for i, _ in drawn) + 2, "the reservation moved ahead with the pops"
    stored = [i for (i,) in CallEvent.select(CallEvent.id).order_by(CallEvent.id).tuples()]
    assert stored == [i for i, _ in drawn]
    db.close()


def test_a_pop_past_the_reservation_goes_without_its_id_and_gets_it_once_stored(rig, monkeypatch):
    db, hub, writer = rig
    writer._reserved = writer._next_id - 1  # as if the database had failed for RESERVE_IDS pops
    sub = hub.subscribe(ALL, None)
    feed(writer)
    settle(hub)
    sent = frames(sub)
    assert len(sent) == 7 and all(i is None and card is not None for i, card in sent)
    flush(writer)
    settle(hub)
    stored = [i for (i,) in CallEvent.select(CallEvent.id).order_by(CallEvent.id).tuples()]
    assert frames(sub) == [(i, None) for i in stored], "an id-only frame each: Last-Event-ID moves, nothing shows twice"
    gevent.sleep(0)
