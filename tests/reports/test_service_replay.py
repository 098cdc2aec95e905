"""The service figures end to end: the real daemon follows the simulator replaying FreeSWITCH captures of a queue,
a ring group, a blind transfer and calls to an extension (answered, and missed), over TCP; the figures read from
what it stored match what happened in the captures (their expected.json), on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

from support import expected, replay
from screenpop.daemon.reports import missed, service
from screenpop.daemon.reports.analytics import Period
from screenpop.db.models import Call

QUEUE, GROUP, DIRECT = "+3545553000", "+3545552001", "+3545551001"
SCENARIOS = ("queue", "ring-group-users", "transfer", "inbound-answered", "inbound-missed")


def test_replayed_queue_ring_group_and_direct_calls_give_their_figures(tmp_path, db, db_url):
    for scenario in SCENARIOS:
        (tmp_path / scenario).mkdir()
        replay(tmp_path / scenario, db_url, scenario)
        assert expected(scenario)["calls"][0]["did"] in (QUEUE, GROUP, DIRECT)
    calls = list(Call.select().order_by(Call.started_at))
    assert len(calls) == len(SCENARIOS)
    period = Period(calls[0].started_at - dt.timedelta(hours=1), calls[-1].started_at + dt.timedelta(hours=1))
    rows = {r["number"]: r for r in service.numbers(period)}
    assert set(rows) == {QUEUE, GROUP, DIRECT}
    queue, group, direct = rows[QUEUE], rows[GROUP], rows[DIRECT]
    assert (queue["inbound"], queue["answered"], queue["abandoned"], queue["transferred"]) == (1, 1, 0, 0)
    assert (group["inbound"], group["answered"], group["abandoned"], group["transferred"]) == (1, 1, 0, 0)
    # transfer (1001 answers, hands over to 1002), inbound-answered, inbound-missed (1001 rang 6 s, the caller gave up)
    assert (direct["inbound"], direct["answered"], direct["transferred"]) == (3, 2, 1)
    assert (direct["abandoned"], direct["missed_rang_out"], direct["short_abandons"]) == (1, 1, 0)
    # speed of answer from the caller's start: in the queue, the wait before the agent's phone rang is in it
    queued = Call.get(Call.did == QUEUE)
    agent = queued.parties.get()
    assert queue["asa_s"] == round((queued.answered_at - queued.started_at).total_seconds(), 3)
    assert queue["asa_s"] > (agent.answered_at - agent.rang_at).total_seconds()
    # handle time is the stored talk time; a call back is what the missed-call follow-up calls returned
    assert direct["aht_s"] is not None and direct["aht_s"] > 0
    (total,) = service.service(period)
    assert total["inbound"] == 5 and total["called_back"] == missed.counts(missed.Scope(period.since, period.until))["returned"]
    assert max(p["peak"] for p in service.peaks(period)) >= 1
