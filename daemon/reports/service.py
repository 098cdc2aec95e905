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
_TRANSFERRED = "EXISTS (SELECT 1 FROM call_party tp WHERE tp.call_id = c.id AND tp.outcome = 'transferred')"
_ANSWERED = "c.answered_by IS NOT NULL AND c.answered_at IS NOT NULL"
# SQLite, per dialled number and queue: the answered calls transferred, from the transferred parties (a few in a
# hundred calls; CROSS JOIN: read in that order) rather than a lookup for each answered call
_TRANSFERS = f"""
SELECT c.did, c.queue, COUNT(DISTINCT c.id)
FROM call_party tp CROSS JOIN "call" c ON c.id = tp.call_id
WHERE tp.outcome = 'transferred' AND tp.call_direction = 'INCOMING' AND c.direction = 'INCOMING' AND {_ANSWERED} {{where}}
GROUP BY c.did, c.queue"""
_PAIRS = """SELECT DISTINCT did, queue FROM "call" WHERE direction = 'INCOMING'"""  # skip-ahead over call_service
_INVOLVED = "EXISTS (SELECT 1 FROM call_party xp WHERE xp.call_id = c.id AND xp.extension = {param})"


def _where(period: Period, param: str) -> tuple[str, list]:
    """The period's bounds on the call's start, and the calls its extension took part in, as SQL and parameters."""
    return Scope(period.since, period.until, period.extension).where(param, by=_INVOLVED)


def _service_sql(d: dict[str, str], period: Period, where: str, group: str, grouped: bool, transferred: str) -> str:
    """The service sums of the inbound calls, per group (grouped) or over them all (one row); transferred: the SQL
    condition that an answered call was transferred ('0': counted apart)."""
    # the wait to the answer, and a missed call's length, are the stored ring time (start to the first answer, or to
    # the end; the same on both databases, and no date arithmetic per row); a call still going on has none yet
    wait = f"COALESCE(c.ring_seconds, {d['secs'].format(a='c.started_at', b='c.answered_at')})"
    length = f"COALESCE(c.ring_seconds, {d['secs'].format(a='c.started_at', b='COALESCE(c.ended_at, c.started_at)')})"
    answered = _ANSWERED
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
       SUM(CASE WHEN {long} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {long} AND {_RANG} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {long} AND {busy} AND NOT {_RANG} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {answered} AND c.talk_seconds IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN {answered} THEN c.talk_seconds END),
       SUM(CASE WHEN {answered} AND c.talk_seconds IS NOT NULL THEN c.hold_seconds END),
       SUM(CASE WHEN {answered} AND c.hold_seconds > 0 THEN 1 ELSE 0 END),
       SUM(CASE WHEN {answered} AND {transferred} THEN 1 ELSE 0 END)
FROM "call" c
WHERE c.direction = 'INCOMING' {where}
{"GROUP BY " + group if grouped else ""}"""


def _callback_sql(d: dict[str, str], where: str, group: str) -> str:
    """Each returnable missed call's group and the seconds from its end to the answer of the call that returned
    it (NULL: not returned), from the callback stored on its row (db/callfacts.py; on SQLite one range of the
    partial index of those calls)."""
    delay = d["secs"].format(a="COALESCE(c.ended_at, c.started_at)", b="c.callback_at")
    return f"""
SELECT {group}, {delay}
FROM "call" c
WHERE {callfacts.RETURNABLE_MISSED} {where}"""


def p90(values: list[float]) -> float | None:
    """The nearest-rank 90th percentile (the value at position ceil(0.9 n) in ascending order), None for none."""
    if not values:
        return None
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


# what the service figures are grouped by: report -> (the row's key, its SQL); the queue falls back to the number
GROUPS = {"service": ("number", f"'{ALL_NUMBERS}'"), "numbers": ("number", "COALESCE(c.did, '')"),
          "queues": ("queue", "COALESCE(c.queue, c.did, '')")}


def _sums_by_pair(d: dict[str, str], period: Period, where: str, params: list, most: bool) -> list[tuple]:
    """SQLite: the service sums per dialled number and queue, as (did, queue, sums...) rows.

    A GROUP BY sorts every call of the period, and reading each call's row through the start-time index costs as
    much again; so each (number, queue) the calls have is summed by a query of its own over its range of the covering
    index call_service (direction, did, queue, started_at, and every column the sums read: no row is read, nothing
    sorted). Over most of the stored calls (most) the transferred ones are counted from the transferred parties in
    one query, else by a lookup for each answered call."""
    db = database.obj
    p = db.param
    sql = _service_sql(d, period, where + f" AND c.did IS {p} AND c.queue IS {p}", "NULL", False,
                       "0" if most else _TRANSFERRED)
    out = []
    for did, queue in db.execute_sql(_PAIRS).fetchall():
        row = db.execute_sql(sql, [*params, did, queue]).fetchone()
        if row[1]:
            out.append((did, queue, *row[1:]))
    if not most:
        return out
    transfers = {(did, queue): n for did, queue, n in db.execute_sql(_TRANSFERS.format(where=where), params)}
    return [(*row[:-1], transfers.get(row[:2], 0)) for row in out]


def _group_rows(pairs: list[tuple], report: str) -> list[tuple]:
    """The per (did, queue) sums added up into the report's groups, as (group, sums...) rows."""
    groups: dict[str, list] = {}
    for did, queue, *sums in pairs:
        g = ALL_NUMBERS if report == "service" else (queue if report == "queues" and queue else did) or ""
        have = groups.get(g)
        groups[g] = list(sums) if have is None else [_add(a, b) for a, b in zip(have, sums)]
    return [(g, *sums) for g, sums in groups.items()]


def _add(a, b):
    """Two sums of SQL (None: summed over no rows) added."""
    return b if a is None else a if b is None else a + b


def _figures(period: Period, report: str) -> list[dict]:
    db = database.obj
    d = dialect(db)
    where, params = _where(period, db.param)
    key, group = GROUPS[report]
    by_number = report != "service"
    sqlite = isinstance(db, peewee.SqliteDatabase)
    # over most of the stored calls, SQLite finds the missed ones faster in the covering index of a caller's calls
    # than through the start-time index and each call's row (2.7 s against 1.7 s over a year of a million calls)
    most = sqlite and not period.extension and most_calls(db, period)
    if sqlite:
        rows = _group_rows(_sums_by_pair(d, period, where, params, most), report)
    else:
        rows = db.execute_sql(_service_sql(d, period, where, group, by_number, _TRANSFERRED), params).fetchall()
    delays: dict[str, list[float]] = defaultdict(list)
    returnable: dict[str, int] = defaultdict(int)
    for g, delay in db.execute_sql(_callback_sql(d, where, group), params).fetchall():
        returnable[g] += 1
        if delay is not None:
            delays[g].append(round(float(delay), 3))
    rows = [r for r in rows if r[1]]  # without GROUP BY, a period with no calls is one row of zeros
    if not by_number and not rows:
        rows = [(ALL_NUMBERS, 0, 0, 0, None, 0, 0, 0, 0, 0, None, None, 0, 0)]
    out = []
    for (g, inbound, answered, within, wait_total, short, abandoned, rang_out, nobody_free, handled, handle_total,
         hold_total, held, transferred) in sorted(rows, key=lambda r: (-int(r[1]), r[0])):
        inbound, answered, short = int(inbound), int(answered or 0), int(short or 0)
        abandoned, rang_out, nobody_free = int(abandoned or 0), int(rang_out or 0), int(nobody_free or 0)
        no_one_rung = abandoned - rang_out - nobody_free  # each abandoned call has one reason: the rest
        back = delays.get(g, [])
        out.append({
            key: g,
            "inbound": inbound,
            "answered": answered,
            "service_level": ratio(int(within or 0), inbound - short),
            "answer_within_s": float(period.answer_within),
            "asa_s": secs(float(wait_total) / answered) if answered else None,
            "abandoned": abandoned,
            "abandon_rate": ratio(abandoned, inbound - short),
            "short_abandons": short,
            "missed_rang_out": rang_out,
            "missed_nobody_free": nobody_free,
            "missed_no_one_rung": no_one_rung,
            "aht_s": secs(float(handle_total) / int(handled)) if int(handled or 0) else None,
            "talk_avg_s": secs((float(handle_total) - float(hold_total or 0)) / int(handled)) if int(handled or 0) else None,
            "hold_avg_s": secs(float(hold_total or 0) / int(handled)) if int(handled or 0) else None,
            "held": int(held or 0),
            "transferred": int(transferred or 0),
            "callback_rate": ratio(len(back), returnable.get(g, 0)),
            "called_back": len(back),
            "callback_avg_s": secs(sum(back) / len(back)) if back else None,
            "callback_p90_s": secs(p90(back)),
        })
    return out


def service(period: Period) -> list[dict]:
    """The service figures over every inbound call of the period, as one row."""
    return _figures(period, "service")


def numbers(period: Period) -> list[dict]:
    """The service figures per dialled number (a queue's, a ring group's or an extension's DID), busiest first."""
    return _figures(period, "numbers")


def queues(period: Period) -> list[dict]:
    """The service figures per mod_callcenter queue, and per dialled number for calls that waited in none."""
    return _figures(period, "queues")


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
SELECT {calls} FROM "call" c
WHERE c.direction IN ('INCOMING', 'OUTGOING') AND c.ended_at IS NOT NULL AND c.ended_at > c.started_at
  AND c.started_at >= {param} AND c.started_at < {param}{involved}"""


def peaks(period: Period) -> list[dict]:
    """The most external calls going on at the same time in each local hour of the period (every hour listed).

    A sweep over the calls' starts (+1) and ends (-1) in time order, an end before a start at the same millisecond:
    the running sum is how many calls are going on. numpy sorts and sums the events (a window function over them
    took seconds in SQLite); each 15-minute UTC slot keeps its highest count and the count at its end. The calls'
    starts and ends come as one text of comma-separated milliseconds that numpy parses: a Python row per call cost
    more than the rest of the report together (0.6 s of 1.5 s over a year of a million calls on SQLite)."""
    import numpy as np  # loaded with the first peaks report (the dashboard's thread), not at daemon start

    if period.since is None or period.until is None:
        raise ValueError("peak concurrent calls need a bounded period")
    db = database.obj
    d = dialect(db)
    involved = (" AND " + _INVOLVED.format(param=db.param)) if period.extension else ""
    pair = d["epoch_ms"].format(t="c.started_at") + " || ',' || " + d["epoch_ms"].format(t="c.ended_at")
    sql = _PEAK_CALLS.format(calls=d["joined"].format(x=pair), param=db.param, involved=involved)
    params = [period.since - LONGEST_CALL, period.until, *([period.extension] if period.extension else [])]
    text = db.execute_sql(sql, params).fetchone()[0] or ""
    calls = np.fromstring(text, dtype=np.int64, sep=",").reshape(-1, 2)
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
