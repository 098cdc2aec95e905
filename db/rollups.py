"""Roll-ups the analytics reports sum instead of reading every call of a period, kept exact by triggers (migration 25).

- ``call_slot``, per 15-minute UTC slot of the calls' start (``slot`` = whole seconds since 1970 // 900, as the
  reports' per-row SQL counts them): the external calls (INCOMING and OUTGOING) that started in it, how many
  inbound, outbound, answered (INCOMING with a first answerer), missed (INCOMING nobody answered), abandoned while
  ringing (missed, and some party rang) and the sum of their handle time (``talk_seconds``, 0 when unknown). The load
  and daily reports add the slots up per local hour and date.
- ``employee_day``, per extension and UTC day of the call's start (whole seconds since 1970 // 86400): the employee
  report's sums over the parties of external calls (``PARTY_SUMS``, from the facts db/callfacts.py keeps on each party).
- ``customer_calls``, per customer, over all time: its external calls, inbound, outbound and missed, and the start of
  its latest (``last``; looked up again through the index of its calls when the latest one goes or moves). The
  customers report over most of the stored calls takes these less the calls outside its period.

A report sums the units its period covers whole and reads a unit a bound cuts from the rows
(daemon/reports/analytics.py). Whether some party of a call rang is kept on the call (``call.rang``) by triggers on
``call_party``, recomputed from the call's parties rather than counted in steps, so a statement writing several
parties at once (PostgreSQL runs AFTER row triggers once every row is written) stays exact. The triggers on the
rolled-up table take a row's old share out of its unit and put its new share in whenever anything the share reads
changes: an insert, an update as the call goes on (answered, ended, its customer relinked, a CDR arriving late, a
callback making a party's call unresolved), a deletion (retention, a cascade) or a call moved in time keeps every
unit equal to the sum over its rows. Neither ``rang`` nor the tables are in the peewee models, so no ORM ``save()``
writes over them. Handle and hold times are sums of floats: taking a share out again can leave a few 1e-13 s, far
below the millisecond the reports print.
"""
from __future__ import annotations

from typing import NamedTuple

import peewee

from screenpop.db import callfacts

SLOT_SECONDS = 900  # as the reports' slots: every real zone's UTC offset and DST change falls on a quarter hour
DAY_SECONDS = 86400
_EXTERNAL = "('INCOMING', 'OUTGOING')"

# the employee report's per-party conditions (docs/analytics.md, "Per employee")
TAKEN = "p.call_direction = 'INCOMING' AND p.role = 'callee' AND p.talked"
FIRST_ANSWER = ("p.call_direction = 'INCOMING' AND p.extension = p.call_answered_by AND p.rang_at IS NOT NULL "
                "AND p.answered_at IS NOT NULL")  # time to answer: the first answerer's ring-to-answer seconds


def unit(row: str, column: str, seconds: int, sqlite: bool) -> str:
    """SQL: the UTC unit (slot, day) of row's time column (SQLite: the stored text cut to whole seconds, as strftime
    would round 23:59:59.9995 up into the next unit; PostgreSQL's FLOOR is exact)."""
    if sqlite:
        return f"(CAST(strftime('%s', substr({row}.{column}, 1, 19)) AS INTEGER) / {seconds})"
    return f"FLOOR(EXTRACT(EPOCH FROM {row}.{column}) / {seconds})::bigint"


def slot(row: str, sqlite: bool) -> str:
    """SQL: the 15-minute UTC slot of row's (a call's) start."""
    return unit(row, "started_at", SLOT_SECONDS, sqlite)


def seconds_between(a: str, b: str, sqlite: bool) -> str:
    """SQL: the seconds from a to b, as a double."""
    return f"((julianday({b}) - julianday({a})) * 86400.0)" if sqlite else f"EXTRACT(EPOCH FROM ({b} - {a}))::float8"


def _case(condition: str, then: str = "1") -> str:
    return f"CASE WHEN {condition} THEN {then} ELSE 0 END"


def call_shares(row: str) -> tuple[str, ...]:
    """SQL: what a call adds to each of call_slot's sums (CALL_SUMS)."""
    inbound = f"{row}.direction = 'INCOMING'"
    missed = f"{inbound} AND {row}.missed"
    return ("1", _case(inbound), _case(f"{row}.direction = 'OUTGOING'"),
            _case(f"{inbound} AND {row}.answered_by IS NOT NULL"), _case(missed), _case(f"{missed} AND {row}.rang"),
            f"COALESCE({row}.talk_seconds, 0)")


def party_shares(sqlite: bool) -> tuple[str, ...]:
    """SQL over a party p: what it adds to each of PARTY_SUMS (an external call's party)."""
    talked_known = "p.talked AND p.talk_seconds IS NOT NULL"
    made = "p.call_direction = 'OUTGOING' AND p.role = 'caller'"
    return ("1", _case(TAKEN), _case(made), _case(f"{made} AND p.talked"),
            _case("p.call_direction = 'INCOMING' AND p.role = 'callee' AND p.outcome = 'missed'"),
            _case(talked_known), _case("p.talked", "COALESCE(p.talk_seconds, 0)"),
            _case(talked_known, "p.hold_seconds"), _case("p.talked AND p.hold_seconds > 0"),
            _case(f"{TAKEN} AND p.call_resolved"), _case(f"{TAKEN} AND p.call_resolved IS NOT NULL"),
            _case(FIRST_ANSWER), _case(FIRST_ANSWER, seconds_between("p.rang_at", "p.answered_at", sqlite)))


CALL_SUMS = ("calls", "inbound", "outbound", "answered", "missed", "abandoned", "talk_seconds")
PARTY_SUMS = ("parties", "taken", "made", "made_answered", "missed", "talked", "handle_seconds", "hold_seconds", "held",
              "resolved", "fcr_calls", "answers", "answer_seconds")
CUSTOMER_SUMS = ("calls", "inbound", "outbound", "missed")
_REAL_SUMS = {"talk_seconds", "handle_seconds", "hold_seconds", "answer_seconds"}


class Rollup(NamedTuple):
    """A roll-up table: the table it sums, its keys (name, type, SQL over a row aliased p) and sums, and which rows
    count (SQL over p)."""

    table: str
    source: str
    keys: tuple[tuple[str, str, str], ...]
    sums: tuple[str, ...]
    shares: tuple[str, ...]
    counts: str
    reads: tuple[str, ...]  # the source's columns the keys, the condition and the shares read
    latest: str = ""  # a time column of the source whose latest value each unit keeps too (as ``last``)

    def sql(self, row: str) -> tuple[str, tuple[str, ...], str]:
        """The keys, shares and condition as SQL over row (new, old, or the table's alias)."""
        def over(text: str) -> str:
            return text.replace("p.", f"{row}.")
        return ", ".join(over(k) for _, _, k in self.keys), tuple(map(over, self.shares)), over(self.counts)


def _rollups(sqlite: bool) -> tuple[Rollup, Rollup, Rollup]:
    """The roll-up tables, their SQL in this database's dialect."""
    return (
        Rollup("call_slot", '"call"', (("slot", "BIGINT", slot("p", sqlite)),), CALL_SUMS, call_shares("p"),
               f"p.direction IN {_EXTERNAL}",
               ("direction", "started_at", "answered_by", "missed", "talk_seconds", "rang")),
        Rollup("employee_day", "call_party",
               (("extension", "VARCHAR(32)", "p.extension"),
                ("day", "BIGINT", unit("p", "call_started_at", DAY_SECONDS, sqlite))),
               PARTY_SUMS, party_shares(sqlite), f"p.call_direction IN {_EXTERNAL}",
               ("extension", "call_started_at", "call_direction", "call_answered_by", "call_resolved", "role", "talked",
                "outcome", "talk_seconds", "hold_seconds", "rang_at", "answered_at")),
        Rollup("customer_calls", '"call"', (("customer_id", "INTEGER", "p.customer_id"),), CUSTOMER_SUMS,
               ("1", _case("p.direction = 'INCOMING'"), _case("p.direction = 'OUTGOING'"), _case("p.missed")),
               f"p.customer_id IS NOT NULL AND p.direction IN {_EXTERNAL}",
               ("customer_id", "direction", "started_at", "missed"), latest="started_at"),
    )


CALL_SLOT, EMPLOYEE_DAY, CUSTOMER_CALLS = _rollups(True)  # the tables' names, keys and sums, for the reports


def _add(r: Rollup, row: str, sign: str, sqlite: bool) -> str:
    """SQL: row's share added to (sign '+') or taken from (sign '-') its unit, when the row counts."""
    keys, shares, counts = r.sql(row)
    values = ", ".join(f"-({v})" if sign == "-" else v for v in shares)
    names = ", ".join(name for name, *_ in r.keys)
    sets = ", ".join(f"{c} = {r.table}.{c} + excluded.{c}" for c in r.sums)
    # SQLite: an INSERT ... SELECT before ON CONFLICT needs a WHERE clause (the parser's ambiguity with a join's ON)
    return (f"INSERT INTO {r.table} ({names}, {', '.join(r.sums)}) SELECT {keys}, {values} WHERE {counts} "
            f"ON CONFLICT ({names}) DO UPDATE SET {sets}")


def _later(r: Rollup, row: str) -> str:
    """SQL: row's unit keeps row's time as its latest when it is later (or the unit had none)."""
    keys, _, counts = r.sql(row)
    names = ", ".join(name for name, *_ in r.keys)
    return (f"UPDATE {r.table} SET last = {row}.{r.latest} WHERE ({names}) = ({keys}) AND {counts} "
            f"AND (last IS NULL OR last < {row}.{r.latest})")


def _latest_again(r: Rollup, row: str) -> str:
    """SQL: row (gone from its unit, or changed) was its unit's latest: the latest of the unit's rows, looked up again
    (an index seek on the caller's calls)."""
    keys, _, counts = r.sql(row)
    names = ", ".join(name for name, *_ in r.keys)
    mine = " AND ".join(f"p.{name} = {row}.{name}" for name, *_ in r.keys)
    return (f"UPDATE {r.table} SET last = (SELECT MAX(p.{r.latest}) FROM {r.source} p WHERE {mine} AND "
            f"{r.counts}) WHERE ({names}) = ({keys}) AND {counts} AND last <= {row}.{r.latest}")


def _rang(call_id: str, sqlite: bool) -> str:
    """SQL: the call's ``rang`` set from its parties, written only when it changes."""
    rang = f"EXISTS (SELECT 1 FROM call_party rp WHERE rp.call_id = {call_id} AND rp.rang_at IS NOT NULL)"
    op = "IS NOT" if sqlite else "IS DISTINCT FROM"
    return f'UPDATE "call" SET rang = {rang} WHERE id = {call_id} AND rang {op} {rang}'


def _triggers(sqlite: bool) -> dict[str, tuple[str, str, str, list[str]]]:
    """Trigger name -> (timing and event, WHEN condition, declarations, statements), as db/callfacts.py creates them."""
    op = "IS NOT" if sqlite else "IS DISTINCT FROM"
    out = {}
    for r in _rollups(sqlite):
        (old_keys, old_shares, old_counts), (new_keys, new_shares, new_counts) = r.sql("old"), r.sql("new")
        latest = [f"{row}.{r.latest}" for row in ("old", "new") if r.latest]
        changed = (f"(({old_counts}) OR ({new_counts})) AND ((({old_counts}) {op} ({new_counts})) OR "
                   f"({', '.join([old_keys, *old_shares, *latest[:1]])}) {op} "
                   f"({', '.join([new_keys, *new_shares, *latest[1:]])}))")
        name = r.table
        later, again = (([_later(r, "new")], [_latest_again(r, "old")]) if r.latest else ([], []))
        out[f"{name}_ai"] = (f"AFTER INSERT ON {r.source}", new_counts, "", [_add(r, "new", "+", sqlite), *later])
        out[f"{name}_au"] = (f"AFTER UPDATE OF {', '.join(r.reads)} ON {r.source}", changed, "",
                             [_add(r, "old", "-", sqlite), _add(r, "new", "+", sqlite), *later, *again])
        out[f"{name}_ad"] = (f"AFTER DELETE ON {r.source}", old_counts, "", [_add(r, "old", "-", sqlite), *again])
    out["call_party_rang_ai"] = ("AFTER INSERT ON call_party", "new.rang_at IS NOT NULL", "",
                                 [_rang("new.call_id", sqlite)])
    out["call_party_rang_au"] = ("AFTER UPDATE OF rang_at, call_id ON call_party",
                                 f"old.rang_at {op} new.rang_at OR old.call_id {op} new.call_id", "",
                                 [_rang("old.call_id", sqlite), _rang("new.call_id", sqlite)])
    out["call_party_rang_ad"] = ("AFTER DELETE ON call_party", "old.rang_at IS NOT NULL", "",
                                 [_rang("old.call_id", sqlite)])
    return out


def install(db: peewee.Database) -> None:
    """Migration 25: ``call.rang`` filled from the parties, the roll-ups summed from every stored row, then the
    triggers that keep them."""
    sqlite = isinstance(db, peewee.SqliteDatabase)
    run = db.execute_sql
    if "rang" not in {c.name for c in db.get_columns("call")}:
        run(f'ALTER TABLE "call" ADD COLUMN rang {"INTEGER NOT NULL DEFAULT 0" if sqlite else "boolean NOT NULL DEFAULT false"}')
    run(f'UPDATE "call" SET rang = {"1" if sqlite else "true"} '
        "WHERE id IN (SELECT call_id FROM call_party WHERE rang_at IS NOT NULL)")
    real = "REAL" if sqlite else "double precision"
    for r in _rollups(sqlite):
        keys, shares, counts = r.sql("p")
        names = ", ".join(name for name, *_ in r.keys)
        last = ([f"last {'DATETIME' if sqlite else 'timestamp'}"], ["last"], [f"MAX(p.{r.latest})"]) if r.latest else ([], [], [])
        columns = ", ".join([*(f"{name} {kind} NOT NULL" for name, kind, _ in r.keys),
                             *(f"{c} {real if c in _REAL_SUMS else 'INTEGER'} NOT NULL" for c in r.sums), *last[0]])
        run(f"CREATE TABLE IF NOT EXISTS {r.table} ({columns}, PRIMARY KEY ({names}))")
        run(f"DELETE FROM {r.table}")
        run(f"INSERT INTO {r.table} ({', '.join([names, *r.sums, *last[1]])}) "
            f"SELECT {', '.join([keys, *(f'SUM({s})' for s in shares), *last[2]])} "
            f"FROM {r.source} p WHERE {counts} GROUP BY {keys}")
    callfacts.create(db, _triggers(sqlite))
