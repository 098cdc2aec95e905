"""The figures a call-centre manager runs the centre by (docs/analytics.md, "Service"): service level, speed of
answer, abandonment, why calls were missed, handle time, transfers, callbacks, per dialled number; peak
concurrent calls; repeat callers with unknown numbers.

Each is one SQL aggregate over the period's calls (a callback's time is found through the rule of db/callfacts.py,
the one home of "returned"), the same on SQLite and PostgreSQL; Python only finishes rates, averages, the 90th
percentile and the local hours.
"""
from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

import peewee

from screenpop.daemon.reports.analytics import SLOT_SECONDS, Period, dialect, most_calls, ratio, secs, to_local
from screenpop.daemon.reports.missed import Scope
from screenpop.db import callfacts
from screenpop.db.models import database

# FreeSWITCH's hang-up causes that say no phone could be rung because every target was busy or away
BUSY_CAUSES = ("USER_BUSY", "CALL_REJECTED", "NORMAL_CIRCUIT_CONGESTION", "SWITCH_CONGESTION",
               "USER_NOT_REGISTERED", "SUBSCRIBER_ABSENT")
ALL_NUMBERS = "all"  # the service report's one row: every dialled number together
LONGEST_CALL = dt.timedelta(days=1)  # calls started this long before a period are looked at for its concurrency

_RANG = "EXISTS (SELECT 1 FROM call_party rp WHERE rp.call_id = c.id AND rp.rang_at IS NOT NULL)"
# whether an answered call was transferred: a lookup of its parties, or (over most of the stored calls, on SQLite)
# one pass over every party and a probe per call, where the lookups cost a third of the report
_TRANSFERRED = "EXISTS (SELECT 1 FROM call_party tp WHERE tp.call_id = c.id AND tp.outcome = 'transferred')"
_TRANSFERRED_SCAN = ("c.id IN (SELECT tp.call_id FROM call_party tp WHERE tp.outcome = 'transferred' "
                     "AND tp.call_direction = 'INCOMING')")
_INVOLVED = "EXISTS (SELECT 1 FROM call_party xp WHERE xp.call_id = c.id AND xp.extension = {param})"


def _where(period: Period, param: str) -> tuple[str, list]:
    """The period's bounds on the call's start, and the calls its extension took part in, as SQL and parameters."""
    return Scope(period.since, period.until, period.extension).where(param, by=_INVOLVED)


def _service_sql(d: dict[str, str], period: Period, where: str, group: str, grouped: bool, most: bool) -> str:
    """The service sums of the inbound calls, per group (grouped) or over them all (one row); most: the period
    covers most of the stored calls (SQLite)."""
    transferred = _TRANSFERRED_SCAN if most else _TRANSFERRED
    wait = d["secs"].format(a="c.started_at", b="c.answered_at")
    length = d["secs"].format(a="c.started_at", b="COALESCE(c.ended_at, c.started_at)")
    answered = "c.answered_by IS NOT NULL AND c.answered_at IS NOT NULL"
    # thresholds compare whole milliseconds: SQLite's julianday arithmetic is a few microseconds off PostgreSQL's
    short = f"c.missed AND ROUND({length} * 1000) <= {round(period.short_abandon * 1000)}"
    long = f"c.missed AND ROUND({length} * 1000) > {round(period.short_abandon * 1000)}"
    busy = "COALESCE(c.hangup_cause, '') IN (" + ", ".join(f"'{cause}'" for cause in BUSY_CAUSES) + ")"
    return f"""
SELECT {group},
       COUNT(*),
       SUM(CASE WHEN {answered} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {answered} AND ROUND({wait} * 1000) <= {round(period.answer_within * 1000)} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {answered} THEN {wait} END),
       SUM(CASE WHEN {short} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {long} AND {_RANG} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {long} AND NOT {_RANG} AND {busy} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {long} AND NOT {_RANG} AND NOT {busy} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {answered} AND c.talk_seconds IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN {answered} THEN c.talk_seconds END),
       SUM(CASE WHEN {answered} AND {transferred} THEN 1 ELSE 0 END)
FROM "call" c
WHERE c.direction = 'INCOMING' {where}
{"GROUP BY " + group if grouped else ""}"""


def _callback_sql(d: dict[str, str], where: str, group: str) -> str:
    """Each returnable missed call's group and the seconds from its end to the answer of the call that returned
    it (NULL: not returned), the earlier by start of the first returning call found by customer and by number."""
    by_customer, by_number = callfacts.returning_call("c")
    end = "COALESCE(x.ended_at, x.started_at)"
    delay1, delay2 = (d["secs"].format(a=end, b=f"{r}.answered_at") for r in ("r1", "r2"))
    return f"""
SELECT x.g, CASE WHEN r1.id IS NULL THEN {delay2} WHEN r2.id IS NULL THEN {delay1}
                 WHEN r2.started_at < r1.started_at OR (r2.started_at = r1.started_at AND r2.id < r1.id) THEN {delay2}
                 ELSE {delay1} END
FROM (SELECT {group} AS g, c.started_at, c.ended_at, {by_customer} AS id1, {by_number} AS id2
      FROM "call" c
      WHERE c.direction = 'INCOMING' AND c.missed AND NOT {callfacts.unreturnable("c")} {where}) x
LEFT JOIN "call" r1 ON r1.id = x.id1 LEFT JOIN "call" r2 ON r2.id = x.id2"""


def p90(values: list[float]) -> float | None:
    """The nearest-rank 90th percentile (the value at position ceil(0.9 n) in ascending order), None for none."""
    if not values:
        return None
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


def _figures(period: Period, by_number: bool) -> list[dict]:
    db = database.obj
    d = dialect(db)
    where, params = _where(period, db.param)
    group = "COALESCE(c.did, '')" if by_number else f"'{ALL_NUMBERS}'"
    # over most of the stored calls, SQLite finds the missed ones faster in the covering index of a caller's calls
    # than through the start-time index and each call's row (2.7 s against 1.7 s over a year of a million calls)
    most = isinstance(db, peewee.SqliteDatabase) and not period.extension and most_calls(db, period)
    rows = db.execute_sql(_service_sql(d, period, where, group, by_number, most), params).fetchall()
    delays: dict[str, list[float]] = defaultdict(list)
    returnable: dict[str, int] = defaultdict(int)
    missed_where = where.replace("c.started_at", "+c.started_at") if most else where
    for g, delay in db.execute_sql(_callback_sql(d, missed_where, group), params).fetchall():
        returnable[g] += 1
        if delay is not None:
            delays[g].append(round(float(delay), 3))
    rows = [r for r in rows if r[1]]  # without GROUP BY, a period with no calls is one row of zeros
    if not by_number and not rows:
        rows = [(ALL_NUMBERS, 0, 0, 0, None, 0, 0, 0, 0, 0, None, 0)]
    out = []
    for (g, inbound, answered, within, wait_total, short, rang_out, nobody_free, no_one_rung, handled, handle_total,
         transferred) in sorted(rows, key=lambda r: (-int(r[1]), r[0])):
        inbound, answered, short = int(inbound), int(answered or 0), int(short or 0)
        abandoned = int(rang_out or 0) + int(nobody_free or 0) + int(no_one_rung or 0)
        back = delays.get(g, [])
        out.append({
            "number": g,
            "inbound": inbound,
            "answered": answered,
            "service_level": ratio(int(within or 0), inbound - short),
            "answer_within_s": float(period.answer_within),
            "asa_s": secs(float(wait_total) / answered) if answered else None,
            "abandoned": abandoned,
            "abandon_rate": ratio(abandoned, inbound - short),
            "short_abandons": short,
            "missed_rang_out": int(rang_out or 0),
            "missed_nobody_free": int(nobody_free or 0),
            "missed_no_one_rung": int(no_one_rung or 0),
            "aht_s": secs(float(handle_total) / int(handled)) if int(handled or 0) else None,
            "transferred": int(transferred or 0),
            "callback_rate": ratio(len(back), returnable.get(g, 0)),
            "called_back": len(back),
            "callback_avg_s": secs(sum(back) / len(back)) if back else None,
            "callback_p90_s": secs(p90(back)),
        })
    return out


def service(period: Period) -> list[dict]:
    """The service figures over every inbound call of the period, as one row."""
    return _figures(period, by_number=False)


def numbers(period: Period) -> list[dict]:
    """The service figures per dialled number (a queue's, a ring group's or an extension's DID), busiest first."""
    return _figures(period, by_number=True)


_UNKNOWN = """
SELECT c.external_e164, COUNT(*), SUM(CASE WHEN c.answered_by IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN c.missed THEN 1 ELSE 0 END), MIN(c.started_at), MAX(c.started_at)
FROM "call" c
WHERE c.direction = 'INCOMING' AND c.customer_id IS NULL AND c.external_e164 IS NOT NULL {where}
GROUP BY c.external_e164 HAVING COUNT(*) >= 2"""


def unknown_callers(period: Period) -> list[dict]:
    """Numbers no customer has that called in at least twice in the period, most calls first."""
    db = database.obj
    where, params = _where(period, db.param)
    rows = db.execute_sql(_UNKNOWN.format(where=where), params).fetchall()
    out = [{"number": number, "calls": int(calls), "answered": int(answered), "missed": int(missed),
            "first_call": to_local(first, period.zone), "last_call": to_local(last, period.zone)}
           for number, calls, answered, missed, first, last in rows]
    out.sort(key=lambda r: r["number"])
    out.sort(key=lambda r: (r["calls"], r["last_call"]), reverse=True)
    return out


_PEAK_CALLS = """
SELECT {start}, {end} FROM "call" c
WHERE c.direction IN ('INCOMING', 'OUTGOING') AND c.ended_at IS NOT NULL AND c.ended_at > c.started_at
  AND c.started_at >= {param} AND c.started_at < {param}{involved}"""


def peaks(period: Period) -> list[dict]:
    """The most external calls going on at the same time in each local hour of the period (every hour listed).

    A sweep over the calls' starts (+1) and ends (-1) in time order, an end before a start at the same millisecond:
    the running sum is how many calls are going on. numpy sorts and sums the events (a window function over them
    took seconds in SQLite); each 15-minute UTC slot keeps its highest count and the count at its end."""
    import numpy as np  # loaded with the first peaks report (the dashboard's thread), not at daemon start

    if period.since is None or period.until is None:
        raise ValueError("peak concurrent calls need a bounded period")
    db = database.obj
    d = dialect(db)
    involved = (" AND " + _INVOLVED.format(param=db.param)) if period.extension else ""
    sql = _PEAK_CALLS.format(start=d["epoch_ms"].format(t="c.started_at"), end=d["epoch_ms"].format(t="c.ended_at"),
                             param=db.param, involved=involved)
    params = [period.since - LONGEST_CALL, period.until, *([period.extension] if period.extension else [])]
    calls = np.array(db.execute_sql(sql, params).fetchall(), dtype=np.int64).reshape(-1, 2)
    times = np.concatenate((calls[:, 0], calls[:, 1]))
    steps = np.concatenate((np.ones(len(calls), np.int64), -np.ones(len(calls), np.int64)))
    order = np.lexsort((steps, times))
    times, going = times[order], np.cumsum(steps[order])
    epoch = dt.datetime(1970, 1, 1)
    since_ms = round((period.since - epoch).total_seconds() * 1000)
    until_ms = round((period.until - epoch).total_seconds() * 1000)
    before = np.searchsorted(times, since_ms, side="left")
    after = np.searchsorted(times, until_ms, side="left")
    carry = int(going[before - 1]) if before else 0  # calls that started before the period and still go on
    slots = times[before:after] // (SLOT_SECONDS * 1000)
    found: dict[int, tuple[int, int]] = {}
    if len(slots):
        firsts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
        tops = np.maximum.reduceat(going[before:after], firsts)
        lasts = np.r_[firsts[1:], len(slots)] - 1
        found = {int(s): (int(top), int(end)) for s, top, end in zip(slots[firsts], tops, going[before:after][lasts])}
    hours: dict[tuple[dt.date, int], int] = {}
    for s in range(since_ms // (SLOT_SECONDS * 1000), (until_ms - 1) // (SLOT_SECONDS * 1000) + 1):
        top, end = found.get(s, (carry, carry))
        local = to_local(epoch + dt.timedelta(seconds=s * SLOT_SECONDS), period.zone)
        key = (local.date(), local.hour)
        hours[key] = max(hours.get(key, 0), carry, top)
        carry = end
    return [{"date": day, "hour": hour, "peak": peak} for (day, hour), peak in sorted(hours.items())]
