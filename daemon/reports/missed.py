"""Missed calls followed up (docs/analytics.md, "Missed calls followed up"): each missed call's state, the list
and counts per state, marking one done and undoing it.

A missed call is an INCOMING call nobody answered. Its state, first that applies:

- ``returned``: a later answered call with the same caller returned it (the rule lives in db/callfacts.py);
- ``done``: someone marked it done (db.models.MissedDone: who, when);
- ``anonymous``: no customer and no E.164 number (withheld, or a number that cannot be stored): it can never
  be returned, so it is counted apart instead of staying "not returned" forever;
- ``open``: none of these: still to be returned.

An extension's missed calls are those that rang it and that nobody answered (its party's outcome ``missed``);
without an extension, every missed call (also those that ended in a queue before any phone rang). Every query runs
on the caller's connection and transaction (the web side's database worker), on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import quote

from peewee import SQL

from screenpop.daemon.i18n import lazy_gettext
from screenpop.db import callfacts
from screenpop.db.models import Call, CallParty, Employee, MissedDone, database, utcnow

STATES = ("open", "returned", "done", "anonymous")

# the missed calls that rang an extension and that nobody answered (its party's outcome)
MISSED_BY = ("EXISTS (SELECT 1 FROM call_party xp WHERE xp.call_id = c.id AND xp.extension = {param} "
             "AND xp.outcome = 'missed')")
_RETURNED = callfacts.returned("c")
_UNRETURNABLE = callfacts.unreturnable("c")
_CONDITIONS = {
    "returned": _RETURNED,
    "done": f"d.call_id IS NOT NULL AND NOT {_RETURNED}",
    "anonymous": f"d.call_id IS NULL AND {_UNRETURNABLE}",
    "open": f"d.call_id IS NULL AND NOT {_UNRETURNABLE} AND NOT {_RETURNED}",
}
JOIN_DONE = "LEFT JOIN missed_done d ON d.call_id = c.id"  # what the conditions read as d
OPEN = _CONDITIONS["open"]  # still to be returned (the analytics report "missed" lists these)
_STATE = ("CASE " + " ".join(f"WHEN {_CONDITIONS[s]} THEN '{s}'" for s in ("returned", "done", "anonymous"))
          + " ELSE 'open' END")
_FROM = f'FROM "call" c {JOIN_DONE} WHERE c.direction = \'INCOMING\' AND c.missed'


class FollowUpError(Exception):
    """A refused request, with the HTTP status that says why (404 no such call, 403 not yours, 409 wrong state)."""

    def __init__(self, status: int, message: Message) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Scope:
    """Which missed calls: started in [since, until) (naive UTC; None unbounded), that rang extension (None: all)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    extension: str | None = None

    def where(self, param: str, by: str = MISSED_BY) -> tuple[str, list]:
        """The scope as SQL conditions (each starting with AND) and their parameters; by: how a call (c) is the
        extension's (default: it rang the extension and nobody answered)."""
        sql, params = "", []
        if self.since is not None:
            sql, params = sql + f" AND c.started_at >= {param}", [*params, self.since]
        if self.until is not None:
            sql, params = sql + f" AND c.started_at < {param}", [*params, self.until]
        if self.extension:
            sql, params = sql + " AND " + by.format(param=param), [*params, self.extension]
        return sql, params


def counts(scope: Scope) -> dict[str, int]:
    """How many missed calls of the scope are in each state."""
    db = database.obj
    where, params = scope.where(db.param)
    found = dict(db.execute_sql(f"SELECT s, COUNT(*) FROM (SELECT {_STATE} AS s {_FROM}{where}) x GROUP BY s",
                                params).fetchall())
    return {state: int(found.get(state, 0)) for state in STATES}


def listing(state: str, scope: Scope, limit: int, offset: int = 0) -> list[dict]:
    """The scope's missed calls in one state, newest first, as rows (_row)."""
    if state not in STATES:
        raise FollowUpError(400, lazy_gettext("state: one of %(states)s", states=', '.join(STATES)))
    db = database.obj
    where, params = scope.where(db.param)
    sql = (f"SELECT c.id {_FROM}{where} AND {_CONDITIONS[state]} "
           f"ORDER BY c.started_at DESC, c.id DESC LIMIT {int(limit)} OFFSET {int(offset)}")
    return _rows([cid for cid, in db.execute_sql(sql, params).fetchall()], state)


def follow_up(state: str, scope: Scope, limit: int, offset: int = 0) -> dict:
    """What GET /api/v1/missed answers: every state's count, how many calls the state has, and that page of them."""
    per_state = counts(scope)
    return {"state": state, "open": per_state["open"], "anonymous": per_state["anonymous"], "counts": per_state,
            "total": per_state.get(state, 0), "limit": limit, "offset": offset,
            "calls": listing(state, scope, limit, offset)}


def _state(call_id: int) -> str:
    db = database.obj
    return db.execute_sql(f"SELECT {_STATE} {_FROM} AND c.id = {db.param}", [call_id]).fetchone()[0]


def _mine(call: Call, extension: str | None) -> None:
    """Operators act on the missed calls that rang their own extension only."""
    if extension is None:
        return
    rang = CallParty.select().where((CallParty.call == call.id) & (CallParty.extension == extension)
                                    & (CallParty.outcome == "missed")).exists()
    if not rang:
        raise FollowUpError(403, lazy_gettext("this missed call did not ring extension %(extension)s",
                                              extension=extension))


def _missed_call(call_uuid: str) -> Call:
    call = Call.get_or_none(Call.uuid == call_uuid)
    if call is None:
        raise FollowUpError(404, lazy_gettext("there is no call with this uuid"))
    if call.direction != "INCOMING" or not call.missed:
        raise FollowUpError(409, lazy_gettext("this call was not missed: only missed incoming calls are followed up"))
    return call


def mark_done(call_uuid: str, own_extension: str | None, by_extension: str | None, token_id: int | None) -> dict:
    """Mark a missed call done (kept: the first who and when); own_extension: an operator's, limiting them to
    their own missed calls (None: anyone's). A returned call needs no marking: 409."""
    call = _missed_call(call_uuid)
    _mine(call, own_extension)
    if _state(call.id) == "returned":
        raise FollowUpError(409, lazy_gettext("this missed call was returned already"))
    MissedDone.insert(call=call.id, done_at=utcnow(), extension=by_extension, token=token_id).on_conflict_ignore().execute()
    return _rows([call.id], _state(call.id))[0]


def undo(call_uuid: str, own_extension: str | None) -> dict:
    """Take a missed call's done mark away; 409 when it has none."""
    call = _missed_call(call_uuid)
    _mine(call, own_extension)
    if not MissedDone.delete().where(MissedDone.call == call.id).execute():
        raise FollowUpError(409, lazy_gettext("this missed call is not marked done"))
    return _rows([call.id], _state(call.id))[0]


def _iso(value: dt.datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite gives text back from raw SQL
        value = dt.datetime.fromisoformat(value)
    return value.isoformat(timespec="seconds") + "Z"


def _first_returns(ids: list[int]) -> dict[int, Call]:
    """For each of these returned missed calls, the call that returned it first (stored on its row: db/callfacts.py)."""
    back = dict(Call.select(Call.id, SQL("callback_id")).where(Call.id.in_(ids)).tuples())
    by_id = {r.id: r for r in Call.select().where(Call.id.in_([i for i in back.values() if i is not None]))}
    return {cid: by_id[rid] for cid, rid in back.items() if rid is not None}


def _rows(ids: list[int], state: str) -> list[dict]:
    """The calls (all in state) as follow-up rows, in ids' order: the caller, links, who missed it, and how it was
    followed up."""
    if not ids:
        return []
    calls = {c.id: c for c in Call.select().where(Call.id.in_(ids))}
    done = {d.call_id: d for d in MissedDone.select().where(MissedDone.call.in_(ids))}
    missed_by: dict[int, list[str]] = {}
    for p in (CallParty.select(CallParty.call, CallParty.extension)
              .where(CallParty.call.in_(ids) & (CallParty.outcome == "missed")).order_by(CallParty.seq)):
        missed_by.setdefault(p.call_id, []).append(p.extension)
    first = _first_returns(ids) if state == "returned" else {}
    names = _names({*(d.extension for d in done.values()), *(_returner(r) for r in first.values())})
    return [_row(calls[cid], state, missed_by.get(cid, []), first.get(cid), done.get(cid), names) for cid in ids]


def _returner(call: Call) -> str | None:
    """Who returned a missed call with this call: its first answerer (INCOMING) or its caller (OUTGOING)."""
    return call.answered_by if call.direction == "INCOMING" else call.from_extension


def _names(extensions: set[str | None]) -> dict[str, str]:
    wanted = [e for e in extensions if e]
    if not wanted:
        return {}
    return dict(Employee.select(Employee.extension, Employee.name).where(Employee.extension.in_(wanted)).tuples())


def _row(call: Call, state: str, missed_by: list[str], back: Call | None, done: MissedDone | None,
         names: dict[str, str]) -> dict:
    customer = call.customer if call.customer_id else None
    if customer is not None:
        record, label = f"/customers/{customer.id}", customer.company or customer.name or call.external_number or ""
    else:
        label = call.external_number or ""
        record = (f"/customers/new?number={quote(call.external_number or call.external_e164, safe='')}"
                  f"&call={quote(call.uuid, safe='')}" if call.external_e164 and call.matches <= 1 else None)
    who = _returner(back) if back is not None else None
    return {
        "call_uuid": call.uuid,
        "started_at": _iso(call.started_at),
        "state": state,
        "number": call.external_number or "",
        "e164": call.external_e164,
        "caller_name": call.external_name or "",
        "label": label or "withheld number",
        "customer": None if customer is None else {"id": customer.id, "name": customer.name,
                                                   "company": customer.company, "category": customer.category},
        "matches": call.matches,
        "record_url": record,
        "callable": bool(call.external_e164),
        "missed_by": missed_by,
        "returned": None if back is None else {"call_uuid": back.uuid, "direction": back.direction, "by": who,
                                               "name": names.get(who or "", ""), "at": _iso(back.answered_at)},
        "done": None if done is None else {"by": done.extension, "name": names.get(done.extension or "", ""),
                                           "at": _iso(done.done_at)},
    }

