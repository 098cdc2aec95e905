"""Call analytics (docs/analytics.md): every report as plain rows, computed by SQL aggregates on SQLite and PostgreSQL.

Reports: ``employees``, ``customers``, ``categories``, ``missed`` (missed calls not returned), ``load`` (hour of
day x day of week) and ``daily``. Each takes a ``Period``: UTC bounds on the call's start, the call centre's time
zone and an optional extension. Local-time buckets are built from calls counted per 15-minute UTC slot in SQL
and summed per local hour or date in Python, which is exact across DST changes for every real zone (all UTC
offsets are whole quarter hours). The SQL text is built once per database kind and report, then reused.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import operator
import os
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import peewee

from screenpop.daemon.reports import missed as missed_calls
from screenpop.db import rollups
from screenpop.db.models import database

SLOT_SECONDS = rollups.SLOT_SECONDS  # the UTC slot calls are counted in before they are put into local hours and dates
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NO_CATEGORY = "none"


def local_zone(name: str = "") -> dt.tzinfo:
    """The named IANA zone, or the system's: $TZ, else /etc/localtime, else UTC. Raises ValueError for an unknown name."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from exc
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return dt.timezone.utc


@dataclass(frozen=True)
class Period:
    """Calls started in [since, until) (naive UTC; None: unbounded), reported in zone, optionally one extension's."""

    since: dt.datetime | None
    until: dt.datetime | None
    zone: dt.tzinfo = dt.timezone.utc
    extension: str | None = None
    answer_within: float = 20.0  # the service level's N: answered within this many seconds of the caller's start
    short_abandon: float = 5.0  # an unanswered caller who hung up within this many seconds is a short abandon


def to_local(value: dt.datetime | None, zone: dt.tzinfo) -> dt.datetime | None:
    """A naive UTC time from the database as an aware time in zone."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands back aggregates of text columns as text
        return dt.datetime.fromisoformat(value + "+00:00").astimezone(zone)
    return value.replace(tzinfo=dt.timezone.utc).astimezone(zone)


def utc_bound(local: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """A local wall-clock time (naive, read in zone; or aware) as naive UTC, for a period bound."""
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone)
    return local.astimezone(dt.timezone.utc).replace(tzinfo=None)


# ---- SQL, per database kind ------------------------------------------------------------------------------

_SQLITE = {
    "secs": rollups.seconds_between("{a}", "{b}", sqlite=True),
    # the stored text cut to whole seconds: strftime('%s') rounds to the nearest second, so 23:59:59.9995 went
    # into the next quarter hour (and day); PostgreSQL's FLOOR is exact
    "slot": rollups.slot("c", sqlite=True),
    "positive": "MAX({x}, 0)",
    # a time as whole milliseconds since 1970 (julianday is exact to the millisecond; rounding undoes its binary
    # fraction), the same integers as PostgreSQL's
    "epoch_ms": "CAST(ROUND((julianday({t}) - 2440587.5) * 86400000.0) AS INTEGER)",
    "joined": "group_concat({x}, ',')",  # text values joined with commas (NULL: none)
    "missed_by": "(SELECT group_concat(mp.extension, ',') FROM call_party mp "
    "WHERE mp.call_id = c.id AND mp.outcome = 'missed')",
}
_POSTGRES = {
    "secs": rollups.seconds_between("{a}", "{b}", sqlite=False),
    "slot": rollups.slot("c", sqlite=False),
    "positive": "GREATEST({x}, 0)",
    "epoch_ms": "ROUND(EXTRACT(EPOCH FROM {t}) * 1000)::bigint",
    "joined": "string_agg({x}, ',')",
    "missed_by": "(SELECT string_agg(mp.extension, ',' ORDER BY mp.extension) FROM call_party mp "
    "WHERE mp.call_id = c.id AND mp.outcome = 'missed')",
}

# Per extension, from the facts db/callfacts.py keeps on each party: a range of a covering index, no join; the sums
# are db/rollups.py's (the roll-up employee_day keeps them per whole day). call_resolved is NULL unless the call is
# INCOMING from a known caller. SQLite sorts every row for a GROUP BY it cannot read in index order, so there the
# extensions are listed first (a seek each) and each is summed by a query of its own over just its stretch of the
# index; PostgreSQL groups them all in one query.
_FIRST_ANSWER = rollups.FIRST_ANSWER
_EXTENSIONS = """WITH RECURSIVE e(x) AS (SELECT MIN(extension) FROM call_party UNION ALL
  SELECT (SELECT MIN(q.extension) FROM call_party q WHERE q.extension > e.x) FROM e WHERE e.x IS NOT NULL)
SELECT x FROM e WHERE x IS NOT NULL"""
_EMPLOYEES = """
SELECT p.extension, {sums}
FROM call_party p
WHERE p.call_direction IN ('INCOMING', 'OUTGOING') {where}
GROUP BY p.extension"""
_EMPLOYEE_DAYS = (f"SELECT extension, {', '.join(f'SUM({c})' for c in rollups.EMPLOYEE_DAY.sums)} "
                  f"FROM {rollups.EMPLOYEE_DAY.table} WHERE day >= {{p}} AND day < {{p}}{{extension}} GROUP BY extension")

# The 90th percentile of time to answer, nearest rank: PostgreSQL's percentile_disc for every extension at once;
# SQLite: one extension's value at rank ceil(0.9 * n), read from the top so the sort keeps only a tenth of the rows.
_P90_POSTGRES = f"""
SELECT p.extension, percentile_disc(0.9) WITHIN GROUP (ORDER BY {{tta}})
FROM call_party p WHERE {_FIRST_ANSWER} {{where}} GROUP BY p.extension"""
_P90_SQLITE = f"""
SELECT {{tta}} FROM call_party p WHERE {_FIRST_ANSWER} {{where}} ORDER BY 1 DESC LIMIT 1 OFFSET {{param}}"""

# Open debt: a lookup per customer, or (for most of the customers: over a long period) one pass over the open
# orders joined, where the lookups would cost a third of the report.
_DEBT_LOOKUP = """(SELECT SUM({unpaid}) FROM "order" o WHERE o.customer_id = cu.id AND o.status = 'open')"""
_DEBT_JOIN = """
LEFT JOIN (SELECT o.customer_id, SUM({unpaid}) AS debt FROM "order" o WHERE o.status = 'open' GROUP BY o.customer_id) d
  ON d.customer_id = a.customer_id"""
_CUSTOMERS = """
SELECT cu.id, cu.name, cu.company, cu.category, a.calls, a.inbound, a.outbound, a.missed, a.last, {debt}
FROM (
  SELECT c.customer_id, COUNT(*) AS calls, SUM(CASE WHEN c.direction = 'INCOMING' THEN 1 ELSE 0 END) AS inbound,
         SUM(CASE WHEN c.direction = 'OUTGOING' THEN 1 ELSE 0 END) AS outbound,
         SUM(CASE WHEN c.missed THEN 1 ELSE 0 END) AS missed, MAX(c.started_at) AS last
  FROM "call" c
  WHERE c.customer_id IS NOT NULL AND c.direction IN ('INCOMING', 'OUTGOING') {where}
  GROUP BY c.customer_id
) a JOIN customer cu ON cu.id = a.customer_id{debt_join}"""

# Over most of the stored calls: every customer's calls from the roll-up customer_calls (db/rollups.py), less those
# outside the period read from the rows; a customer with calls after the period has its last one in it looked up.
_CUSTOMER_TOTALS = """
SELECT cu.id, cu.name, cu.company, cu.category, a.calls, a.inbound, a.outbound, a.missed, a.last, d.debt
FROM customer_calls a JOIN customer cu ON cu.id = a.customer_id{debt_join}
WHERE a.calls > 0"""
_OUTSIDE = """
SELECT c.customer_id, COUNT(*), SUM(CASE WHEN c.direction = 'INCOMING' THEN 1 ELSE 0 END),
       SUM(CASE WHEN c.direction = 'OUTGOING' THEN 1 ELSE 0 END), SUM(CASE WHEN c.missed THEN 1 ELSE 0 END),
       SUM(CASE WHEN {after} THEN 1 ELSE 0 END)
FROM "call" c
WHERE c.customer_id IS NOT NULL AND c.direction IN ('INCOMING', 'OUTGOING') AND ({outside})
GROUP BY c.customer_id"""
_LAST_IN = """
SELECT MAX(c.started_at) FROM "call" c
WHERE c.customer_id = {p} AND c.direction IN ('INCOMING', 'OUTGOING') AND c.started_at < {p}{since}"""

_CATEGORY_CALLS = """
SELECT cu.category, COUNT(per.customer_id), SUM(per.calls), SUM(per.inbound), SUM(per.outbound), SUM(per.missed),
       MAX(per.last), SUM(CASE WHEN per.inbound >= 2 AND per.customer_id IS NOT NULL THEN 1 ELSE 0 END)
FROM (
  SELECT c.customer_id, COUNT(*) AS calls, SUM(CASE WHEN c.direction = 'INCOMING' THEN 1 ELSE 0 END) AS inbound,
         SUM(CASE WHEN c.direction = 'OUTGOING' THEN 1 ELSE 0 END) AS outbound,
         SUM(CASE WHEN c.missed THEN 1 ELSE 0 END) AS missed, MAX(c.started_at) AS last
  FROM "call" c
  WHERE c.direction IN ('INCOMING', 'OUTGOING') {where}
  GROUP BY c.customer_id
) per LEFT JOIN customer cu ON cu.id = per.customer_id
GROUP BY cu.category"""

_CATEGORY_DEBT = """
SELECT cu.category, SUM({unpaid}) FROM "order" o JOIN customer cu ON cu.id = o.customer_id
WHERE o.status = 'open' GROUP BY cu.category"""

# Missed calls still to be returned: not returned by a later answered call with the same caller (db/callfacts.py), not
# marked done, and with a caller a call could return (daemon/reports/missed.py: the states of a missed call).
_MISSED = f"""
SELECT c.id, c.started_at, c.external_number, c.external_e164, c.ring_seconds, c.customer_id, c.matches,
       cu.name, cu.company, cu.category, {{missed_by}}
FROM "call" c LEFT JOIN customer cu ON cu.id = c.customer_id {missed_calls.JOIN_DONE}
WHERE c.direction = 'INCOMING' AND c.missed {{where}}
  AND {missed_calls.OPEN}
ORDER BY c.started_at, c.id"""

_SLOTS = """
SELECT {slot} AS slot,
       SUM(CASE WHEN c.direction = 'INCOMING' THEN 1 ELSE 0 END),
       SUM(CASE WHEN c.direction = 'OUTGOING' THEN 1 ELSE 0 END),
       SUM(CASE WHEN c.direction = 'INCOMING' AND c.answered_by IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN c.direction = 'INCOMING' AND c.missed THEN 1 ELSE 0 END),
       SUM(CASE WHEN c.direction = 'INCOMING' AND c.missed
                 AND EXISTS (SELECT 1 FROM call_party rp WHERE rp.call_id = c.id AND rp.rang_at IS NOT NULL)
                THEN 1 ELSE 0 END),
       SUM(COALESCE(c.talk_seconds, 0))
FROM "call" c
WHERE c.direction IN ('INCOMING', 'OUTGOING') {where}
GROUP BY {slot}"""

_INVOLVED = "AND EXISTS (SELECT 1 FROM call_party xp WHERE xp.call_id = c.id AND xp.extension = {param})"
_MISSED_BY = "AND " + missed_calls.MISSED_BY

_compiled: dict[tuple, str] = {}


def dialect(db: peewee.Database) -> dict[str, str]:
    """The SQL fragments that differ between SQLite and PostgreSQL, for this database."""
    return _SQLITE if _is_sqlite(db) else _POSTGRES


def _is_sqlite(db: peewee.Database) -> bool:
    return isinstance(db, peewee.SqliteDatabase)


def _sql(name: str, db: peewee.Database, period: Period) -> tuple[str, list]:
    """The report's SQL for this database kind and filters (built once, then cached), and its parameters."""
    sqlite = _is_sqlite(db)
    has = (period.since is not None, period.until is not None, bool(period.extension),
           # one extension's calls are found through its parties, whatever the period
           sqlite and name in _BY_CUSTOMER and not period.extension and most_calls(db, period))
    key = (name, sqlite, has)
    sql = _compiled.get(key)
    if sql is None:
        sql = _build(name, sqlite, db.param, has)
        _compiled[key] = sql
    params: list = [v for v in (period.since, period.until) if v is not None]
    if period.extension:
        params.append(period.extension)
    if name == "category_debt":
        params = []  # open debt is what is owed now, whatever the period
    return sql, params


_BY_CUSTOMER = ("customers", "category_calls")  # reports that group calls by customer
_MOST = 0.25
_ROLLED = 0.75  # the customers report reads the roll-up less the calls outside the period from this share of them


def most_calls(db: peewee.Database, period: Period, share: float = _MOST) -> bool:
    """Whether the period spans at least this share (a quarter) of the time the stored calls span.

    Then reading every call in customer order from the covering index, with no sort, beats reading the period's
    calls by start time and sorting them by customer (0.6-0.9 s against 1.2-1.4 s over a year of a million calls);
    SQLite has no statistics to tell the two apart, so the query hides the start-time index from it (``+``).
    """
    first, last = db.execute_sql(  # apart, each is one index seek; together they would read every row
        'SELECT (SELECT MIN(started_at) FROM "call"), (SELECT MAX(started_at) FROM "call")').fetchone()
    if first is None:
        return False
    first, last = (dt.datetime.fromisoformat(v) if isinstance(v, str) else v for v in (first, last))
    since, until = max(period.since or first, first), min(period.until or last, last)
    span = (last - first).total_seconds()
    return span <= 0 or (until - since).total_seconds() >= share * span


def _build(name: str, sqlite: bool, param: str, has: tuple[bool, bool, bool, bool]) -> str:
    d = _SQLITE if sqlite else _POSTGRES
    bounds = ""
    start = "+c.started_at" if has[3] else "c.started_at"
    if has[0]:
        bounds += f" AND {start} >= {param}"
    if has[1]:
        bounds += f" AND {start} < {param}"
    if name in ("employees", "p90"):
        on_party = bounds.replace("c.started_at", "p.call_started_at") + (f" AND p.extension = {param}" if has[2] else "")
        tta = d["secs"].format(a="p.rang_at", b="p.answered_at")
        if name == "employees":
            return _EMPLOYEES.format(sums=", ".join(f"SUM({x})" for x in rollups.party_shares(sqlite)), where=on_party)
        return (_P90_SQLITE if sqlite else _P90_POSTGRES).format(tta=tta, where=on_party, param=param)
    involved = (_MISSED_BY if name == "missed" else _INVOLVED).format(param=param) if has[2] else ""
    where = bounds + " " + involved
    unpaid = d["positive"].format(x="o.amount - o.paid")
    if name == "customers":
        if has[3]:
            return _CUSTOMERS.format(where=where, debt="d.debt", debt_join=_DEBT_JOIN.format(unpaid=unpaid))
        return _CUSTOMERS.format(where=where, debt=_DEBT_LOOKUP.format(unpaid=unpaid), debt_join="")
    if name == "category_calls":
        return _CATEGORY_CALLS.format(where=where)
    if name == "category_debt":
        return _CATEGORY_DEBT.format(unpaid=unpaid)
    if name == "missed":
        return _MISSED.format(where=where, missed_by=d["missed_by"])
    if name == "slots":
        return _SLOTS.format(where=where, slot=d["slot"])
    raise KeyError(name)


def _rows(name: str, period: Period, *extra) -> list[tuple]:
    db = database.obj
    sql, params = _sql(name, db, period)
    return list(db.execute_sql(sql, [*params, *extra]).fetchall())


_EPOCH = dt.datetime(1970, 1, 1)


def _whole(period: Period, seconds: int) -> tuple[int, int, list[Period]] | None:
    """The UTC units of this many seconds (slots, days) the period covers whole, as [first, end) of their numbers
    since 1970, and the periods of the cut units at its bounds; None when it covers none whole."""
    unit = dt.timedelta(seconds=seconds)
    first = -(-(period.since - _EPOCH) // unit) if period.since is not None else -2**62
    end = (period.until - _EPOCH) // unit if period.until is not None else 2**62
    if first >= end:
        return None
    edges = []
    if period.since is not None and period.since < _EPOCH + first * unit:
        edges.append(dataclasses.replace(period, until=_EPOCH + first * unit))
    if period.until is not None and period.until > _EPOCH + end * unit:
        edges.append(dataclasses.replace(period, since=_EPOCH + end * unit))
    return first, end, edges


def _per_extension(period: Period) -> list[tuple]:
    """The employee sums, a row per extension in extension order: the whole days of the period from the roll-up
    employee_day (db/rollups.py), the days its bounds cut from the parties."""
    whole = _whole(period, rollups.DAY_SECONDS)
    if whole is None:
        return _party_sums(period)
    first, end, edges = whole
    db = database.obj
    sql = _EMPLOYEE_DAYS.format(p=db.param, extension=f" AND extension = {db.param}" if period.extension else "")
    sums = {ext: list(row) for ext, *row in db.execute_sql(sql, [first, end, *filter(None, [period.extension])])}
    for edge in edges:
        for ext, *row in _party_sums(edge):
            have = sums.get(ext)
            sums[ext] = row if have is None else [a + b for a, b in zip(have, row)]
    return [(ext, *row) for ext, row in sorted(sums.items()) if row[0]]


def _party_sums(period: Period) -> list[tuple]:
    """The employee sums read from the parties, a row per extension in extension order."""
    if not _is_sqlite(database.obj):
        return sorted(_rows("employees", period))
    extensions = [period.extension] if period.extension else [x for x, in database.obj.execute_sql(_EXTENSIONS)]
    return [row for ext in extensions for row in _rows("employees", dataclasses.replace(period, extension=ext))]


def _p90(period: Period, counts: dict[str, int]) -> dict[str, float]:
    """Each extension's 90th-percentile time to answer (nearest rank), given how many answers each has."""
    if not _is_sqlite(database.obj):
        return dict(_rows("p90", period))
    return {
        ext: _rows("p90", dataclasses.replace(period, extension=ext), n - math.ceil(0.9 * n))[0][0]
        for ext, n in counts.items() if n
    }


def secs(value: float | None) -> float | None:
    """Seconds as the reports print them: to the millisecond (SQLite's and PostgreSQL's arithmetic agree there)."""
    return None if value is None else round(float(value), 3)


_CENT = Decimal("0.01")
_NONE = Decimal(0).quantize(_CENT)  # what most customers owe: one shared value (Decimals never change)


def _money(value) -> Decimal:
    return _NONE if value is None else Decimal(str(value)).quantize(_CENT)


def ratio(part: int, whole: int) -> float | None:
    """part / whole, or None when whole is 0 (no calls: no rate)."""
    return part / whole if whole else None


# ---- reports ---------------------------------------------------------------------------------------------


def employees(period: Period) -> list[dict]:
    """Per extension: calls taken, made, missed, answer rate, time to answer (mean, p90), talk, hold and handle
    time, FCR proxy."""
    names = dict(database.obj.execute_sql("SELECT extension, name FROM employee").fetchall())
    rows = _per_extension(period)
    p90 = _p90(period, {row[0]: int(row[12]) for row in rows})
    out = []
    for (ext, _parties, taken, made, made_answered, missed, talked, handle_total, hold_total, held, resolved, fcr_calls,
         answers, answer_total) in rows:
        taken, missed, talked, resolved, fcr_calls = int(taken), int(missed), int(talked), int(resolved or 0), int(fcr_calls)
        handle_total, hold_total = float(handle_total or 0.0), float(hold_total or 0.0)
        out.append({
            "extension": ext,
            "name": names.get(ext, ""),
            "taken": taken,
            "made": int(made),
            "made_answered": int(made_answered),
            "missed": missed,
            "answer_rate": ratio(taken, taken + missed),
            "answer_avg_s": secs(float(answer_total) / int(answers)) if int(answers) else None,
            "answer_p90_s": secs(p90.get(ext)),
            "talk_avg_s": secs((handle_total - hold_total) / talked) if talked else None,
            "talk_total_s": secs(handle_total - hold_total),
            "held": int(held or 0),
            "hold_avg_s": secs(hold_total / talked) if talked else None,
            "hold_total_s": secs(hold_total),
            "aht_s": secs(handle_total / talked) if talked else None,
            "fcr_rate": ratio(resolved, fcr_calls),
            "fcr_calls": fcr_calls,
        })
    return out


def _rolled_up(period: Period) -> bool:
    """Whether the customers report reads the roll-up: every customer's calls, less the few outside the period."""
    return not period.extension and most_calls(database.obj, period, _ROLLED)


def _customer_rows(period: Period) -> list[tuple]:
    """The customers report's rows: (id, name, company, category, calls, inbound, outbound, missed, last, debt)."""
    if not _rolled_up(period):
        return _rows("customers", period)
    db = database.obj
    p = db.param
    unpaid = dialect(db)["positive"].format(x="o.amount - o.paid")
    rows = db.execute_sql(_CUSTOMER_TOTALS.format(debt_join=_DEBT_JOIN.format(unpaid=unpaid))).fetchall()
    bounds = [(f"c.started_at < {p}", period.since), (f"c.started_at >= {p}", period.until)]
    outside = [(sql, value) for sql, value in bounds if value is not None]
    if not outside:
        return rows
    sql = _OUTSIDE.format(after=f"c.started_at >= {p}" if period.until is not None else "1 = 0",
                          outside=" OR ".join(sql for sql, _ in outside))
    params = [v for v in (period.until, *(value for _, value in outside)) if v is not None]
    less = {cid: sums for cid, *sums in db.execute_sql(sql, params)}
    last_in = _LAST_IN.format(p=p, since=f" AND c.started_at >= {p}" if period.since is not None else "")
    out = []
    for row in rows:
        o = less.get(row[0])
        if o is None:
            out.append(row)
        elif row[4] - o[0]:
            last = row[8]
            if o[4]:  # it called after the period too: its last call in it
                last = db.execute_sql(last_in, [row[0], period.until, *filter(None, [period.since])]).fetchone()[0]
            out.append((*row[:4], *(a - b for a, b in zip(row[4:8], o)), last, row[9]))
    return out


def customers(period: Period, limit: int | None = None) -> list[dict]:
    """Per customer with calls in the period, most calls first: counts, last contact, open debt, repeat caller."""
    rows = _customer_rows(period)
    # most calls, then latest contact, then id: stable sorts, least significant key first (a third of SQL's sort of
    # the wide rows, and of one Python sort on a tuple key)
    rows.sort(key=operator.itemgetter(0))
    rows.sort(key=operator.itemgetter(8), reverse=True)
    rows.sort(key=operator.itemgetter(4), reverse=True)
    if limit is not None:
        rows = rows[:limit]
    return [
        {
            "customer_id": cid,
            "name": name,
            "company": company,
            "category": category,
            "calls": int(calls),
            "inbound": int(inbound),
            "outbound": int(outbound),
            "missed": int(missed),
            "last_contact": to_local(last, period.zone),
            "open_debt": _money(debt),
            "repeat_caller": int(inbound) >= 2,
        }
        for cid, name, company, category, calls, inbound, outbound, missed, last, debt in rows
    ]


def categories(period: Period) -> list[dict]:
    """Per customer category (and the calls with no customer): customers, calls, last contact, open debt, repeats."""
    debt = {cat: _money(total) for cat, total in _rows("category_debt", period)}
    calls = {cat: row for cat, *row in _rows("category_calls", period)}
    listed = [name for (name,) in database.obj.execute_sql("SELECT name FROM category ORDER BY position, name")]
    out = []
    for cat in (*listed, *sorted(c for c in calls if c is not None and c not in listed), None):
        n_customers, n_calls, inbound, outbound, missed, last, repeats = calls.get(cat, (0, 0, 0, 0, 0, None, 0))
        out.append({
            "category": cat or NO_CATEGORY,
            "customers": int(n_customers),
            "calls": int(n_calls or 0),
            "inbound": int(inbound or 0),
            "outbound": int(outbound or 0),
            "missed": int(missed or 0),
            "last_contact": to_local(last, period.zone),
            "open_debt": debt.get(cat, _money(None)) if cat is not None else None,
            "repeat_callers": int(repeats or 0),
        })
    return out


def missed(period: Period, limit: int | None = None) -> list[dict]:
    """Missed inbound calls nobody has returned yet, oldest first, with the extensions that rang and missed them;
    customer_id and matches are the caller as the call stored it (several matches: no one customer)."""
    rows = _rows("missed", period)
    if limit is not None:
        rows = rows[:limit]
    return [
        {
            "call_id": cid,
            "started_at": to_local(started, period.zone),
            "number": number or e164 or "",
            "waited_s": secs(waited),
            "customer_id": customer_id,
            "matches": matches,
            "name": name or "",
            "company": company or "",
            "category": category or "",
            "missed_by": sorted((missed_by or "").split(",")) if missed_by else [],
        }
        for cid, started, number, e164, waited, customer_id, matches, name, company, category, missed_by in rows
    ]


_CALL_SLOTS = (f"SELECT slot, {', '.join(rollups.CALL_SLOT.sums[1:])} FROM {rollups.CALL_SLOT.table} "
               "WHERE calls > 0 AND slot >= {p} AND slot < {p}")


def _slot_rows(period: Period) -> list[tuple]:
    """(slot, inbound, outbound, answered, missed, abandoned, talk) per 15-minute UTC slot with calls in the period.

    The slots the period covers whole are read from the roll-up call_slot (db/rollups.py; a row each, where the rows
    would be every call of the period); a slot a bound cuts, and one extension's calls, are counted from the rows."""
    whole = None if period.extension else _whole(period, SLOT_SECONDS)
    if whole is None:
        return _rows("slots", period)
    first, end, edges = whole
    db = database.obj
    return [row for edge in edges for row in _rows("slots", edge)] + db.execute_sql(
        _CALL_SLOTS.format(p=db.param), [first, end]).fetchall()


def _local_slots(period: Period) -> list[tuple[dt.datetime, tuple]]:
    """The call counts per 15-minute UTC slot, each with its local start time."""
    out = []
    for slot, *counts in _slot_rows(period):
        start = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=int(slot) * SLOT_SECONDS)
        out.append((start.astimezone(period.zone), tuple(counts)))
    return out


_LOAD_KEYS = ("inbound", "outbound", "answered", "missed", "abandoned")


def load(period: Period) -> list[dict]:
    """Calls per local day of week x hour of day (Monday 0), all 168 cells."""
    cells = {(d, h): [0] * len(_LOAD_KEYS) for d in range(7) for h in range(24)}
    for local, counts in _local_slots(period):
        cell = cells[(local.weekday(), local.hour)]
        for i in range(len(_LOAD_KEYS)):
            cell[i] += int(counts[i])
    return [
        {"weekday": d, "day": DAY_NAMES[d], "hour": h, **dict(zip(_LOAD_KEYS, cells[(d, h)]))}
        for d in range(7) for h in range(24)
    ]


def daily(period: Period) -> list[dict]:
    """Calls per local date over the period (every date, zero days included), with the abandoned-while-ringing rate."""
    days: dict[dt.date, list] = {}
    for local, counts in _local_slots(period):
        day = days.setdefault(local.date(), [0] * len(_LOAD_KEYS) + [0.0])
        for i in range(len(_LOAD_KEYS)):
            day[i] += int(counts[i])
        day[-1] += float(counts[-1] or 0)
    first = to_local(period.since, period.zone).date() if period.since else min(days, default=None)
    last = to_local(period.until - dt.timedelta(microseconds=1), period.zone).date() if period.until else max(days, default=None)
    out = []
    day = first
    while day is not None and last is not None and day <= last:
        counts = days.get(day, [0] * len(_LOAD_KEYS) + [0.0])
        row = {"date": day, **dict(zip(_LOAD_KEYS, counts[:-1]))}
        row["abandoned_rate"] = ratio(row["abandoned"], row["inbound"])
        row["talk_total_s"] = secs(max(counts[-1], 0.0))  # a roll-up's sum of calls all gone may be a hair below 0
        out.append(row)
        day += dt.timedelta(days=1)
    return out

