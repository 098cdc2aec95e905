"""Hold time and queues end to end: the simulator generates calls (a share of them put on hold by the operator's
phone, CHANNEL_HOLD / CHANNEL_UNHOLD as FreeSWITCH sends them; queue calls named by mod_callcenter's events) into
the real daemon over TCP; what it stores, and the service, queue and employee figures read from it, are what the
generator says happened (its --expect records), on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import pytest

from support import run_calls
from screenpop.daemon.reports import analytics, service
from screenpop.daemon.reports.analytics import Period
from screenpop.db.models import Call, CallParty
from screenpop.simulator.generator import QUEUE_NAME

INBOUND_ANSWERED = ("inbound_answered", "ring_group", "queue", "transfer")


@pytest.fixture
def generated(tmp_path, db_url, db) -> list[dict]:
    """150 generated calls, half of the answered ones held once, stored by the daemon; the generator's records."""
    expect = tmp_path / "expect.jsonl"
    run_calls(tmp_path, db_url, "--generate", "--calls", "150", "--rate", "40", "--speed", "20", "--seed", "9",
              "--hold", "0.5", "--expect", str(expect), "--linger", "0.5")
    return [json.loads(line) for line in expect.read_text(encoding="utf-8").splitlines()]


def test_hold_and_queue_are_stored_and_reported_as_generated(generated):
    records = {r["a_leg"]: r for r in generated}
    calls = {c.uuid: c for c in Call.select()}
    assert len(calls) == len(records) == 150
    held_calls = [r for r in generated if r["hold"]]
    assert len(held_calls) >= 20, "the generator holds in a share of the calls"
    for uuid, record in records.items():
        call = calls[uuid]
        assert call.hold_seconds == pytest.approx(sum(record["hold"].values()), abs=1e-6), record["scenario"]
        parties = {p.extension: p.hold_seconds for p in CallParty.select().where(CallParty.call == call.id)}
        for ext, seconds in parties.items():
            assert seconds == pytest.approx(record["hold"].get(ext, 0.0), abs=1e-6), record["scenario"]
        assert call.queue == (QUEUE_NAME if record["scenario"] == "queue" else None), record["scenario"]
        if record["hold"]:
            assert call.talk_seconds > call.hold_seconds  # hold is inside the talk time the call stores

    starts = [c.started_at for c in calls.values()]
    period = Period(min(starts) - dt.timedelta(hours=1), max(starts) + dt.timedelta(hours=1))
    inbound = [r for r in generated if r["call"]["direction"] == "INCOMING"]
    handled = [r for r in inbound if r["scenario"] in INBOUND_ANSWERED]
    hold_total = sum(sum(r["hold"].values()) for r in handled)
    (figures,) = service.service(period)
    assert figures["inbound"] == len(inbound)
    assert figures["held"] == sum(1 for r in handled if r["hold"])
    assert figures["hold_avg_s"] == round(hold_total / len(handled), 3)
    talk_total = sum(calls[r["a_leg"]].talk_seconds for r in handled)
    assert figures["aht_s"] == round(talk_total / len(handled), 3)  # handle time: talk + hold
    assert figures["talk_avg_s"] == round((talk_total - hold_total) / len(handled), 3)

    # per queue: the queue's calls under its name, the others under the number they dialled
    by_queue = {r["queue"]: r for r in service.queues(period)}
    expected_groups: dict[str, list[dict]] = defaultdict(list)
    for r in inbound:
        expected_groups[QUEUE_NAME if r["scenario"] == "queue" else r["call"]["did"]].append(r)
    assert {k: v["inbound"] for k, v in by_queue.items()} == {k: len(v) for k, v in expected_groups.items()}
    queue = by_queue[QUEUE_NAME]
    assert queue["held"] == sum(1 for r in expected_groups[QUEUE_NAME] if r["hold"])
    assert queue["answered"] == len(expected_groups[QUEUE_NAME])

    # per employee: the holds its own phone made, in the calls it talked in (inbound and outbound)
    held_by: dict[str, list[float]] = defaultdict(list)
    for r in generated:
        if r["call"]["direction"] != "INTERNAL":
            for ext, seconds in r["hold"].items():
                held_by[ext].append(seconds)
    employees = {e["extension"]: e for e in analytics.employees(period)}
    for ext, row in employees.items():
        assert row["held"] == len(held_by.get(ext, [])), ext
        assert row["hold_total_s"] == round(sum(held_by.get(ext, [])), 3), ext
        if row["aht_s"] is not None:
            assert row["aht_s"] == pytest.approx(row["talk_avg_s"] + row["hold_avg_s"], abs=0.002), ext
