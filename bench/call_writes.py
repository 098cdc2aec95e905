"""The writer's cost of the roll-ups (migration 25): its call writes on a year of 1,000,000 calls, with the roll-up
triggers and, as the same run's baseline, without them.

On bench/analytics.py's database (built there, brought up to date here), CALLS new calls are written the way the
writer writes each one on SQLite, with its own statements (daemon/record/writer.py): the insert when it rings and its
party's upsert (the extension ringing, or placing the call), the updates of both when it is answered (or not), and
again when it ends; a mix like the analytics bench's (customers and numbers that called before, missed calls,
callbacks, outbound and internal calls), started after the stored year. Each round runs in a transaction that is
rolled back; the baseline rounds drop migration 25's triggers inside theirs first (migration 22's stored callbacks
stay: their cost was measured against this baseline's predecessor, 90 µs of CPU per call). Rounds alternate; the
median per call of each is printed, wall and CPU.

Run: flock /tmp/screenpop-bench.lock .venv/bin/python bench/call_writes.py
"""
from __future__ import annotations

import datetime as dt
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import analytics as bench  # noqa: E402  (bench/analytics.py: its database)

from screenpop.daemon.record.writer import CALL_COLUMNS, PARTY_COLUMNS  # noqa: E402
from screenpop.db.database import open_database  # noqa: E402
from screenpop.db.migrations import migrate  # noqa: E402

CALLS = 20_000
ROUNDS = 3
MIGRATION_25 = tuple(f"{table}_{event}" for table in ("call_slot", "employee_day", "call_party_rang")
                     for event in ("ai", "au", "ad"))  # its triggers


def calls(rng: random.Random, first: dt.datetime) -> list[dict]:
    """CALLS calls after the stored year, one every 1.5 s: who, which way, and how each went."""
    out = []
    for i in range(CALLS):
        start = first + dt.timedelta(seconds=1.5 * i)
        kind = rng.choices(["answered", "missed", "out", "internal"], [60, 12, 24, 4])[0]
        cust = rng.randint(1, bench.CUSTOMERS) if rng.random() < 0.85 and kind != "internal" else None
        number = None if kind == "internal" else f"+35455{cust:05d}" if cust else f"+3546{rng.randrange(10**6):06d}"
        out.append({"uuid": f"write-{i}", "kind": kind, "customer": cust, "number": number, "start": start})
    return out


def write(db, rows: list[dict]) -> None:
    """Each call as the writer writes it: insert when it rings, update when answered (or not), update at its end;
    its party upserted at each of the three."""
    names = [name for name, _ in CALL_COLUMNS]
    insert = f'INSERT INTO "call" (uuid, {", ".join(names)}) VALUES ({", ".join("?" * (len(names) + 1))})'
    update = 'UPDATE "call" SET ' + ", ".join(f"{c} = COALESCE(?, {c})" if c == "customer_id" else f"{c} = ?"
                                               for c in names) + " WHERE id = ?"
    party_names = [name for name, _ in PARTY_COLUMNS]
    party = (f"INSERT INTO call_party ({', '.join(party_names)}) VALUES ({', '.join('?' * len(party_names))}) "
             "ON CONFLICT (call_id, extension) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in party_names[2:]))
    for r in rows:
        kind, start = r["kind"], r["start"]
        direction = {"out": "OUTGOING", "internal": "INTERNAL"}.get(kind, "INCOMING")
        answered = start + dt.timedelta(seconds=8) if kind != "missed" else None
        end = start + dt.timedelta(seconds=120 if answered else 30)
        values = dict(zip(names, [None] * len(names)), direction=direction, external_number=r["number"],
                      external_e164=r["number"], customer_id=r["customer"], matches=1 if r["customer"] else 0,
                      extension="1001", started_at=start, missed=False, node="", recovered=False, hold_seconds=0.0,
                      did=None if direction != "INCOMING" else bench.DIDS[0])
        call_id = db.execute_sql(insert, (r["uuid"], *values.values())).lastrowid
        leg = dict(zip(party_names, [None] * len(party_names)), call_id=call_id, extension="1001",
                   role="callee" if direction == "INCOMING" else "caller", seq=0, talked=False, hold_seconds=0.0,
                   rang_at=start + dt.timedelta(seconds=1) if direction == "INCOMING" else None)
        db.execute_sql(party, tuple(leg.values()))
        values.update(answered_by="1001" if answered else None, answered_at=answered)
        db.execute_sql(update, (*values.values(), call_id))
        leg.update(answered_at=answered, talked=answered is not None, outcome="answered" if answered else None)
        db.execute_sql(party, tuple(leg.values()))
        values.update(ended_at=end, ring_seconds=8.0 if answered else 30.0, missed=kind == "missed",
                      talk_seconds=112.0 if answered else None, hangup_cause="NORMAL_CLEARING")
        db.execute_sql(update, (*values.values(), call_id))
        leg.update(ended_at=end, talk_seconds=112.0 if answered else None, outcome=leg["outcome"] or (
            "missed" if kind == "missed" else None))
        db.execute_sql(party, tuple(leg.values()))


def round_(db, rows: list[dict], baseline: bool) -> tuple[float, float]:
    """One round's wall and CPU seconds per call, rolled back."""
    with db.atomic() as txn:
        if baseline:
            for name in MIGRATION_25:
                db.execute_sql(f"DROP TRIGGER IF EXISTS {name}")
        t0, c0 = time.perf_counter(), time.process_time()
        write(db, rows)
        spent = (time.perf_counter() - t0) / len(rows), (time.process_time() - c0) / len(rows)
        txn.rollback()
    return spent


def main() -> int:
    if not bench.PATH.exists():
        bench.build(bench.PATH)
    db = open_database(f"sqlite:///{bench.PATH}")
    migrate(db)
    last = db.execute_sql('SELECT MAX(started_at) FROM "call"').fetchone()[0]
    rows = calls(random.Random(22), dt.datetime.fromisoformat(last) + dt.timedelta(hours=1))
    print(f"{bench.PATH}: {CALLS:,} calls written as the writer writes them, {ROUNDS} rounds each; {bench.load()}")
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(ROUNDS):
        for baseline in (True, False):
            results[baseline].append(round_(db, rows, baseline))
    for baseline, label in ((True, "without migration 25 (baseline)"), (False, "with the roll-ups")):
        wall = statistics.median(w for w, _ in results[baseline]) * 1e6
        cpu = statistics.median(c for _, c in results[baseline]) * 1e6
        print(f"  {label:<32} {wall:7.1f} µs per call  cpu {cpu:7.1f} µs  (6 statements)")
    print(f"  {bench.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
