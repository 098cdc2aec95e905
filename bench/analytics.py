"""Benchmark: every analytics report over 1,000,000 calls on SQLite (goal: under 2 s each).

Builds, once, a database under /tmp (never in the repository; reused while BENCH_VERSION is unchanged): 100
extensions, 200,000 customers, 1,000,000 calls over a year with a realistic mix (direct and ring-group answers,
transfers, misses, queue abandons, outbound, internal), about 1.4 million call parties and 100,000 orders.
Then times each report (the service figures, per dialled number, peaks and unknown callers included) over the whole
year, the last 30 and the last 7 days, and some beside the previous period (p50 of RUNS), the dashboard's charts, and
as a baseline in the same run the employee counts and the daily counts computed in Python over fetched rows.

Each time is the wall clock and, beside it, the CPU time the report took (the process's, which is the report's:
SQLite runs in it). On the shared development machine (2 cores, other sessions' tests at a load of 10-15) a report
waits for a core most of its wall time; its CPU time is close to its wall time on a quiet machine.

A database built by an earlier version is brought up to date first, and the new migrations' time is printed.

Run: flock /tmp/screenpop-bench.lock .venv/bin/python bench/analytics.py [REPORT ...]
(naming reports times just those, and the daily report as the same run's baseline)
"""
from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

from screenpop.daemon.reports import analytics, catalog
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate

BENCH_VERSION = 4
CALLS = 1_000_000
CUSTOMERS = 200_000
EXTENSIONS = [str(1001 + i) for i in range(100)]
START = dt.datetime(2025, 11, 27)
DAYS = 365
RUNS = 3
PATH = Path(f"/tmp/screenpop-bench-analytics-v{BENCH_VERSION}-{CALLS}.db")
ZONE = ZoneInfo("Europe/Berlin")
DIDS = ["+3545551001", "+3545552001", "+3545553000", "+3545554000"]  # dialled numbers: direct, ring group, queues
CAUSES = ["ORIGINATOR_CANCEL", "NO_ANSWER", "USER_BUSY", "NORMAL_CLEARING"]  # unanswered calls' hang-up causes


def _stamp(t: dt.datetime) -> str:
    return t.isoformat(" ")


def build(path: Path) -> None:
    """The database, by executemany in a few big transactions."""
    rng = random.Random(5)
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    db = open_database(f"sqlite:///{tmp}")
    migrate(db)
    db.execute_sql("PRAGMA synchronous = OFF")
    t0 = time.perf_counter()
    with db.atomic():
        db.cursor().executemany("INSERT INTO employee (name, extension, active) VALUES (?, ?, 1)",
                                [(f"Operator {e}", e) for e in EXTENSIONS])
        categories = rng.choices(["regular", "vip", "problem"], [80, 10, 10], k=CUSTOMERS)
        now = _stamp(dt.datetime(2026, 11, 26))
        db.cursor().executemany(
            "INSERT INTO customer (external_id, name, company, category, note, city, country, created_at, updated_at) "
            "VALUES (?, ?, '', ?, '', '', '', ?, ?)",
            [(f"C{i}", f"Customer {i}", categories[i - 1], now, now) for i in range(1, CUSTOMERS + 1)])
        db.cursor().executemany(
            'INSERT INTO "order" (customer_id, number, title, stage, amount, paid, status) VALUES (?, ?, \'\', \'\', ?, ?, ?)',
            [(rng.randint(1, CUSTOMERS), f"O{i}", rng.randint(10, 5000), rng.randint(0, 3000),
              "open" if rng.random() < 0.4 else "closed") for i in range(100_000)])
    hour_weights = [1, 1, 1, 1, 1, 2, 4, 20, 60, 80, 80, 70, 50, 70, 80, 70, 50, 25, 10, 5, 3, 2, 1, 1]
    calls, parties = [], []
    hours = rng.choices(range(24), hour_weights, k=CALLS)
    starts = sorted(START + dt.timedelta(days=rng.randrange(DAYS), hours=h, seconds=rng.randrange(3600)) for h in hours)
    for cid, start in enumerate(starts, 1):  # ids in time order, as the daemon writes them
        kind = rng.choices(["direct", "group", "missed", "group_missed", "abandon", "transfer", "out", "out_none",
                            "internal"], [40, 14, 5, 4, 3, 6, 19, 5, 4])[0]
        cust = rng.randint(1, CUSTOMERS) if rng.random() < 0.85 else None
        number = f"+35455{cust:05d}" if cust else f"+3546{rng.randrange(10**6):06d}"
        exts = rng.sample(EXTENSIONS, 4)
        did = rng.choice(DIDS) if kind not in ("out", "out_none", "internal") else None
        cause = rng.choice(CAUSES) if kind in ("missed", "group_missed", "abandon") else "NORMAL_CLEARING"
        ring = rng.uniform(2, 40)
        talk = rng.expovariate(1 / 180)
        rang = start + dt.timedelta(seconds=rng.uniform(0, 5))
        answered = rang + dt.timedelta(seconds=ring)
        end = answered + dt.timedelta(seconds=talk)
        direction, answered_by, answered_at, ext, from_ext, ext_ans = "INCOMING", None, None, None, None, None
        if kind in ("direct", "group", "transfer"):
            answered_by, answered_at = exts[0], answered
            group = exts[: 3 if kind == "group" else 1]
            for seq, e in enumerate(group):
                if e == answered_by:
                    parties.append((cid, e, "callee", seq, rang, answered, end if kind != "transfer" else
                                    answered + dt.timedelta(seconds=talk / 2), "transferred" if kind == "transfer" else
                                    "answered", 1))
                else:
                    parties.append((cid, e, "callee", seq, rang, None, answered, "answered_elsewhere", 0))
            if kind == "transfer":
                moved = answered + dt.timedelta(seconds=talk / 2)
                parties.append((cid, exts[3], "callee", 3, moved, moved + dt.timedelta(seconds=3), end, "answered", 1))
        elif kind in ("missed", "group_missed"):
            end = answered
            for seq, e in enumerate(exts[: 1 if kind == "missed" else 3]):
                parties.append((cid, e, "callee", seq, rang, None, end, "missed", 0))
        elif kind == "abandon":
            end = rang
        elif kind in ("out", "out_none"):
            direction, from_ext = "OUTGOING", exts[0]
            if kind == "out":
                answered_at, ext_ans = answered, 1
                parties.append((cid, from_ext, "caller", 0, None, answered, end, None, 1))
            else:
                end, ext_ans = answered, 0
                parties.append((cid, from_ext, "caller", 0, None, None, end, None, 0))
        else:
            direction, from_ext, answered_by, answered_at, cust, number = "INTERNAL", exts[0], exts[1], answered, None, None
            parties.append((cid, exts[0], "caller", 0, None, answered, end, None, 1))
            parties.append((cid, exts[1], "callee", 1, rang, answered, end, "answered", 1))
        ext = answered_by or from_ext or (exts[0] if kind in ("missed", "group_missed") else None)
        calls.append((cid, f"bench-{cid}", direction, number, number, cust, ext, answered_by, from_ext, ext_ans,
                      _stamp(start), answered_at and _stamp(answered_at), _stamp(end),
                      ((answered_at or end) - start).total_seconds(),
                      (end - answered_at).total_seconds() if answered_at else None,
                      1 if direction != "OUTGOING" and answered_by is None else 0, did, cause))
        if len(calls) >= 100_000:
            _flush(db, calls, parties)
    _flush(db, calls, parties)
    db.execute_sql("ANALYZE")
    db.close()
    tmp.rename(path)
    print(f"built {path} in {time.perf_counter() - t0:.1f} s")


def _flush(db, calls: list, parties: list) -> None:
    with db.atomic():
        db.cursor().executemany(
            'INSERT INTO "call" (id, uuid, direction, external_number, external_e164, customer_id, extension, '
            "answered_by, from_extension, external_answered, started_at, answered_at, ended_at, ring_seconds, "
            "talk_seconds, missed, did, hangup_cause, matches, node) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, '')", calls)
        db.cursor().executemany(
            "INSERT INTO call_party (call_id, extension, role, seq, rang_at, answered_at, ended_at, outcome, talked, "
            "talk_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(c, e, r, s, ra and _stamp(ra), an and _stamp(an), _stamp(en), o, t,
              (en - an).total_seconds() if an else None) for c, e, r, s, ra, an, en, o, t in parties])
    calls.clear()
    parties.clear()


CPU: list[float] = []  # the CPU seconds of the last p50's runs' median


def p50(fn) -> tuple[float, object]:
    """The median wall seconds of RUNS runs of fn, and its result; the median CPU seconds go to CPU."""
    times, cpu, result = [], [], None
    for _ in range(RUNS):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU[:] = [statistics.median(cpu)]
    return statistics.median(times), result


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def baseline_employees(db, period: analytics.Period) -> dict:
    """Taken, made, missed and talk time per extension, counted in Python over every party row of the period."""
    out: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0.0])
    rows = db.execute_sql(
        'SELECT p.extension, p.role, p.talked, p.outcome, p.talk_seconds, c.direction FROM call_party p '
        'JOIN "call" c ON c.id = p.call_id WHERE c.started_at >= ? AND c.started_at < ?', (period.since, period.until))
    for ext, role, talked, outcome, talk, direction in rows:
        o = out[ext]
        if direction == "INCOMING" and role == "callee":
            o[0] += bool(talked)
            o[2] += outcome == "missed"
        elif direction == "OUTGOING" and role == "caller":
            o[1] += 1
        if talked and direction != "INTERNAL":
            o[3] += talk or 0.0
    return out


def baseline_daily(db, period: analytics.Period) -> dict:
    """Inbound, outbound and missed per local date, counted in Python over every call row of the period."""
    out: dict[dt.date, list] = defaultdict(lambda: [0, 0, 0])
    rows = db.execute_sql('SELECT started_at, direction, missed FROM "call" WHERE started_at >= ? AND started_at < ?',
                          (period.since, period.until))
    for started, direction, missed in rows:
        day = dt.datetime.fromisoformat(started).replace(tzinfo=dt.timezone.utc).astimezone(period.zone).date()
        o = out[day]
        o[0] += direction == "INCOMING"
        o[1] += direction == "OUTGOING"
        o[2] += bool(missed)
    return out


def main() -> int:
    if not PATH.exists():
        build(PATH)
    db = open_database(f"sqlite:///{PATH}")
    t0, c0 = time.perf_counter(), time.process_time()
    applied = migrate(db)  # a database built by an earlier version: its new migrations, timed over a million calls
    if applied:
        print(f"migrations {applied}: {time.perf_counter() - t0:.1f} s, cpu {time.process_time() - c0:.1f} s")
    n_calls = db.execute_sql('SELECT COUNT(*) FROM "call"').fetchone()[0]
    n_parties = db.execute_sql("SELECT COUNT(*) FROM call_party").fetchone()[0]
    print(f"database {PATH}: {n_calls:,} calls, {n_parties:,} parties; SQLite; p50 of {RUNS} runs; cpu {os.cpu_count()}; "
          f"{load()}")
    year = analytics.Period(START, START + dt.timedelta(days=DAYS), ZONE)
    month = analytics.Period(START + dt.timedelta(days=DAYS - 30), START + dt.timedelta(days=DAYS), ZONE)
    week = analytics.Period(START + dt.timedelta(days=DAYS - 7), START + dt.timedelta(days=DAYS), ZONE)
    results = {}
    only = [name for name in sys.argv[1:] if name in catalog.REPORTS]
    for label, period in (("365 days", year), ("30 days", month), ("7 days", week)):
        for name in (["daily", *only] if only else catalog.REPORTS):
            secs, rows = p50(lambda: catalog.RUNNERS[name](period))
            results[(label, name)] = rows
            flag = "" if CPU[0] < 2 else "  OVER 2 s of CPU"
            print(f"  {label:>8}  {name:<15} {secs * 1000:8.0f} ms  cpu {CPU[0] * 1000:6.0f} ms  {len(rows):>7} rows"
                  f"  {load()}{flag}")
    if only:
        return 0
    ext_period = analytics.Period(year.since, year.until, ZONE, EXTENSIONS[0])
    for name in catalog.REPORTS:
        secs, rows = p50(lambda: catalog.RUNNERS[name](ext_period))
        print(f"  365 days  {name:<15} {secs * 1000:8.0f} ms  {len(rows):>7} rows  (one extension)")
    half = analytics.Period(START + dt.timedelta(days=DAYS // 2), year.until, ZONE)
    for name in ("service", "numbers", "peaks", "employees"):
        secs, rows = p50(lambda: catalog.run(name, half, "previous"))
        flag = "" if secs < 2 else "  OVER 2 s"
        print(f"  182 days  {name:<15} {secs * 1000:8.0f} ms  {len(rows):>7} rows  (beside the previous 182 days: "
              f"both periods){flag}")
    from screenpop.daemon.reports import charts

    def dashboard() -> None:
        charts.heat_map(analytics.load(year))
        charts.daily_chart(analytics.daily(year))
        charts.employee_chart(analytics.employees(year))

    secs, _ = p50(dashboard)
    print(f"  dashboard data + 3 SVG charts, 365 days: {secs * 1000:.0f} ms")
    secs, _ = p50(lambda: (charts.heat_map(results[("365 days", "load")]), charts.daily_chart(results[("365 days", "daily")]),
                           charts.employee_chart(results[("365 days", "employees")])))
    print(f"  the 3 SVG charts alone: {secs * 1000:.0f} ms")
    print("baseline (same run): the same counts in Python over fetched rows")
    secs, base = p50(lambda: baseline_employees(db, year))
    sql = {r["extension"]: r for r in results[("365 days", "employees")]}
    same = all(sql[e]["taken"] == v[0] and sql[e]["made"] == v[1] and sql[e]["missed"] == v[2] for e, v in base.items())
    print(f"  365 days  employees counts {secs * 1000:8.0f} ms  (agrees with SQL: {same})")
    secs, base = p50(lambda: baseline_daily(db, year))
    sql = {r["date"]: r for r in results[("365 days", "daily")]}
    same = all(sql[d]["inbound"] == v[0] and sql[d]["outbound"] == v[1] for d, v in base.items())
    print(f"  365 days  daily counts     {secs * 1000:8.0f} ms  (agrees with SQL: {same})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
