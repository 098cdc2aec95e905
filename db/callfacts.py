"""Facts of a call copied where the employee report reads them, kept exact by database triggers (migration 6).

The employee report covers every party of every call in its period; joining each party to its call and looking
up each taken call's callback costs seconds over a million calls. So the database keeps, in step with what is
stored whoever writes it (the daemon, the web pages, an import, a test):

- ``call.next_inbound_at``: for an INCOMING call, the start of the caller's next INCOMING call (the caller is the
  customer, else the E.164 number), the first-call-resolution proxy's input;
- ``call_party.call_started_at``, ``call_direction``, ``call_answered_by`` and ``call_resolved``: the party's
  call's start, direction and first answerer, and whether that caller did not call in again within
  CALLBACK_HOURS of the call's end (NULL when the call is not INCOMING or the caller is unknown).

It is also the one home of the rule that a missed call was **returned**: a later call with the same caller (the
same customer, or the same E.164 number) that was answered, either way round: an INCOMING call an operator
answered, or an OUTGOING call (a callback, click-to-call included) the far end answered; the first such call by
start (then id) returned it. Since migration 22 each missed INCOMING call keeps its callback on its row, kept by
triggers too: ``call.callback_id`` (the call that returned it, NULL while none has) and ``call.callback_at`` (when
that call was answered), so the reports read a column instead of searching a caller's calls for each of a year's
missed calls. A call with neither customer nor E.164 number (withheld, or a number that cannot be stored) can
never be returned (``unreturnable``). The analytics reports and the missed-call follow-up (daemon/reports) read
``returned`` and the columns.

A covering index over these lets the report read one index in extension order. The columns are not in the
peewee models, so no ORM ``save()`` can overwrite them with stale values. Across several daemons on one
PostgreSQL, two calls of the same caller committed within the same instant on two nodes may miss each other as
callbacks (neither transaction sees the other's call) until either call's caller, start or direction changes.
"""
from __future__ import annotations

import peewee

CALLBACK_HOURS = 24  # a caller calling in again within this long after a call means it was not resolved

_CALL_COLUMN = ("next_inbound_at", "DATETIME", "timestamp")
_PARTY_COLUMNS = (
    ("call_started_at", "DATETIME", "timestamp"),
    ("call_direction", "VARCHAR(16)", "varchar(16)"),
    ("call_answered_by", "VARCHAR(32)", "varchar(32)"),
    ("call_resolved", "INTEGER", "boolean"),
)
_PARTY_INDEX = "call_party_report"
_CALL = '"call"'  # the table, as a row name in UPDATE "call" ... WHERE
_INDEX_COLUMNS = ("extension, call_started_at, call_direction, role, talked, outcome, talk_seconds, call_resolved, "
                  "call_answered_by, rang_at, answered_at")  # as migration 6 made it: hold_seconds came later
_HOLD_INDEX_COLUMNS = _INDEX_COLUMNS + ", hold_seconds"


def _next_for(row: str, not_itself: bool = False) -> str:
    """The start of row's caller's next INCOMING call (customer first, else number); NULL if none or not inbound.

    not_itself: leave row's own stored version out (a BEFORE trigger's table still holds the old one)."""
    later = f"r.direction = 'INCOMING' AND r.started_at > {row}.started_at"
    if not_itself:
        later += f" AND r.id <> {row}.id"
    return (f"CASE WHEN {row}.direction <> 'INCOMING' THEN NULL "
            f"WHEN {row}.customer_id IS NOT NULL THEN "
            f"(SELECT MIN(r.started_at) FROM \"call\" r WHERE r.customer_id = {row}.customer_id AND {later}) "
            f"WHEN {row}.external_e164 IS NOT NULL THEN "
            f"(SELECT MIN(r.started_at) FROM \"call\" r WHERE r.external_e164 = {row}.external_e164 AND {later}) END")


def _resolved(row: str, sqlite: bool) -> str:
    """Whether row (a call) is inbound from a known caller who did not call in again within CALLBACK_HOURS."""
    end = f"COALESCE({row}.ended_at, {row}.started_at)"
    late = (f"julianday({row}.next_inbound_at) - julianday({end}) > {CALLBACK_HOURS / 24}" if sqlite
            else f"{row}.next_inbound_at > {end} + interval '{CALLBACK_HOURS} hours'")
    return (f"CASE WHEN {row}.direction = 'INCOMING' AND ({row}.customer_id IS NOT NULL OR "
            f"{row}.external_e164 IS NOT NULL) THEN ({row}.next_inbound_at IS NULL OR {late}) END")


def _own(row: str) -> str:
    """Set the call's own next inbound call (SQLite: its triggers cannot change NEW, so a second row write)."""
    return f'UPDATE "call" SET next_inbound_at = {_next_for(row)} WHERE id = {row}.id'


def _own_before() -> str:
    """PostgreSQL, before the row is written: its next inbound call, in the one row version the statement writes."""
    return f"new.next_inbound_at := {_next_for('new', not_itself=True)}"


def _priors(row: str) -> list[str]:
    """row (a new or re-keyed INCOMING call) is the next inbound call of the caller's latest earlier call(s)."""
    out = []
    for key, mine in (("customer_id", "1 = 1"), ("external_e164", "customer_id IS NULL")):
        latest = (f"(SELECT MAX(p.started_at) FROM \"call\" p WHERE p.{key} = {row}.{key} AND p.direction = 'INCOMING' "
                  f"AND p.started_at < {row}.started_at)")
        out.append(
            f'UPDATE "call" SET next_inbound_at = {row}.started_at WHERE {row}.direction = \'INCOMING\' '
            f"AND {key} = {row}.{key} AND {mine} AND direction = 'INCOMING' AND started_at = {latest} "
            f"AND (next_inbound_at IS NULL OR next_inbound_at > {row}.started_at)")
    return out


def _orphans(old: str) -> str:
    """Calls whose next inbound call was old (now moved, re-keyed or gone) look for it again."""
    return (f'UPDATE "call" SET next_inbound_at = {_next_for(_CALL)} '
            f"WHERE {old}.direction = 'INCOMING' AND direction = 'INCOMING' AND next_inbound_at = {old}.started_at "
            f"AND id <> {old}.id AND (customer_id = {old}.customer_id "
            f"OR (customer_id IS NULL AND external_e164 = {old}.external_e164))")


def _changed(columns: tuple[str, ...], sqlite: bool) -> str:
    op = "IS NOT" if sqlite else "IS DISTINCT FROM"
    return " OR ".join(f"old.{c} {op} new.{c}" for c in columns)


_KEY_COLUMNS = ("customer_id", "external_e164", "started_at", "direction")
_COPIED_COLUMNS = (*_KEY_COLUMNS, "answered_by", "ended_at", "next_inbound_at")
_COPIES = ", ".join(name for name, *_ in _PARTY_COLUMNS)


def _from_call(call_id: str, sqlite: bool) -> str:
    """The party's copies, read from the call row as it is now (PostgreSQL's NEW may predate a nested update)."""
    return (f"SELECT c.started_at, c.direction, c.answered_by, {_resolved('c', sqlite)} FROM \"call\" c "
            f"WHERE c.id = {call_id}")


def _copy_to_parties(sqlite: bool) -> tuple[str, list[str]]:
    """The call's copies onto its parties, writing only the rows whose copies differ (PL/pgSQL declarations, statements).

    On PostgreSQL the call is read again: its NEW may predate an update the other triggers made since.
    """
    if sqlite:
        values = f"(new.started_at, new.direction, new.answered_by, {_resolved('new', True)})"
        return "", [f"UPDATE call_party SET ({_COPIES}) = {values} WHERE call_id = new.id AND ({_COPIES}) IS NOT {values}"]
    values = "(f.started_at, f.direction, f.answered_by, f.resolved)"
    return "DECLARE f record; ", [
        f"SELECT c.started_at, c.direction, c.answered_by, {_resolved('c', False)} AS resolved INTO f "
        "FROM \"call\" c WHERE c.id = new.id",
        f"UPDATE call_party SET ({_COPIES}) = {values} WHERE call_id = new.id AND ({_COPIES}) IS DISTINCT FROM {values}"]


def _facts(row: str, sqlite: bool) -> str:
    """What a party copies from the call row (its copies' values, as one row value)."""
    return f"({row}.started_at, {row}.direction, {row}.answered_by, {_resolved(row, sqlite)})"


def _triggers(sqlite: bool) -> dict[str, tuple[str, str, str, list[str]]]:
    """Trigger name -> (timing and event, WHEN condition or "", PL/pgSQL declarations, statements).

    The WHEN conditions keep calls that cannot change any fact (not inbound, or no copied value changed) from
    running a trigger at all: most of a call's writes. PostgreSQL sets a call's own next inbound call in BEFORE
    triggers, so inserting or re-keying a call writes one row version and one set of index entries, not two."""
    inbound = "new.direction = 'INCOMING' AND (new.customer_id IS NOT NULL OR new.external_e164 IS NOT NULL)"
    rekeyed = f"({_changed(_KEY_COLUMNS, sqlite)}) AND (old.direction = 'INCOMING' OR new.direction = 'INCOMING')"
    copied = f"{_facts('old', sqlite)} {'IS NOT' if sqlite else 'IS DISTINCT FROM'} {_facts('new', sqlite)}"
    declare, copy = _copy_to_parties(sqlite)
    keys = ", ".join(_KEY_COLUMNS)
    triggers = {
        "call_facts_ai": ('AFTER INSERT ON "call"', inbound, "", [*([_own("new")] if sqlite else []), *_priors("new")]),
        "call_facts_au": (f'AFTER UPDATE OF {keys} ON "call"', rekeyed, "",
                          [_orphans("old"), *_priors("new"), *([_own("new")] if sqlite else [])]),
        "call_facts_ad": ('AFTER DELETE ON "call"', "", "", [_orphans("old")]),
        "call_facts_copy": (f'AFTER UPDATE OF {", ".join(_COPIED_COLUMNS)} ON "call"', copied, declare, copy),
        "call_party_facts_ai":
            ("AFTER INSERT ON call_party", "", "",
             [f"UPDATE call_party SET ({_COPIES}) = ({_from_call('call_party.call_id', True)}) WHERE id = new.id"])
            if sqlite else
            ("BEFORE INSERT ON call_party", "", "",
             [f"{_from_call('new.call_id', False)} INTO " + ", ".join(f"new.{name}" for name, *_ in _PARTY_COLUMNS)]),
    }
    if not sqlite:
        triggers["call_facts_bi"] = ('BEFORE INSERT ON "call"', inbound, "", [_own_before()])
        triggers["call_facts_bu"] = (f'BEFORE UPDATE OF {keys} ON "call"', rekeyed, "", [_own_before()])
    return triggers


RETURNING_DIRECTIONS = "('INCOMING', 'OUTGOING')"  # an answered call either way round returns a missed call
_CALLER_KEYS = ("customer_id", "external_e164")  # the same caller: the same customer, or the same E.164 number


def _later_answered(row: str, key: str) -> str:
    """FROM/WHERE of the calls with row's caller (by key) started after row and answered (each a covering index)."""
    return (f'FROM "call" r WHERE r.{key} = {row}.{key} AND r.direction IN {RETURNING_DIRECTIONS} '
            f"AND r.started_at > {row}.started_at AND r.answered_at IS NOT NULL")


def returned(row: str) -> str:
    """SQL condition: row (a missed INCOMING call) was returned by a later answered call with the same caller."""
    return f"({row}.callback_id IS NOT NULL)"


def unreturnable(row: str) -> str:
    """SQL condition: row has no caller a later call could be matched with (withheld, or an unstorable number)."""
    return f"({row}.customer_id IS NULL AND {row}.external_e164 IS NULL)"


def _callback(row: str, into: str = "", not_itself: bool = False) -> str:
    """SELECT of the call that returned row (its id and answer time), the earlier by start (then id) of the first
    found by customer and the first found by number; no row when row is not a missed INCOMING call or nobody
    returned it. into: PL/pgSQL's INTO targets; not_itself: leave row's own stored version out (a BEFORE trigger's
    table still holds the old one)."""
    firsts = ", ".join(f"(SELECT r.id {_later_answered(row, key)}{f' AND r.id <> {row}.id' if not_itself else ''} "
                       "ORDER BY r.started_at, r.id LIMIT 1)" for key in _CALLER_KEYS)
    return (f"SELECT b.id, b.answered_at {into}FROM \"call\" b WHERE {row}.direction = 'INCOMING' AND {row}.missed "
            f"AND b.id IN ({firsts}) ORDER BY b.started_at, b.id LIMIT 1")


def _set_callback(where: str) -> str:
    """UPDATE the callback of the calls matching where (SQL over "call") from what is stored now."""
    return f'UPDATE "call" SET ({_CALLBACK}) = ({_callback(_CALL)}) WHERE {where}'


def _returned_by(old: str) -> str:
    """The missed calls old (an answered call now moved, re-keyed, unanswered or gone) returned look again."""
    return _set_callback(f"{old}.direction IN {RETURNING_DIRECTIONS} AND {old}.answered_at IS NOT NULL "
                         f"AND callback_id = {old}.id")


def _returns(new: str) -> list[str]:
    """The missed calls new (an answered call, inserted or changed) may be the first to return, found again.

    Per caller key: the missed calls of that caller started before new, but not before the caller's latest
    answered call that started before new (that one, or an earlier one, returned those already)."""
    out = []
    for key in _CALLER_KEYS:
        latest = (f'(SELECT p.started_at FROM "call" p WHERE p.{key} = {new}.{key} '
                  f"AND p.direction IN {RETURNING_DIRECTIONS} AND p.answered_at IS NOT NULL "
                  f"AND p.started_at < {new}.started_at ORDER BY p.started_at DESC LIMIT 1)")
        out.append(_set_callback(
            f"{new}.direction IN {RETURNING_DIRECTIONS} AND {new}.answered_at IS NOT NULL "
            f"AND {key} = {new}.{key} AND direction = 'INCOMING' AND missed "
            f"AND started_at < {new}.started_at AND started_at >= COALESCE({latest}, started_at)"))
    return out


_CALLBACK_COLUMNS = (("callback_id", "INTEGER", "integer"), ("callback_at", "DATETIME", "timestamp"))
_CALLBACK = ", ".join(name for name, *_ in _CALLBACK_COLUMNS)
_RETURN_KEYS = (*_KEY_COLUMNS, "answered_at", "missed")  # what decides which call returned which
# the missed calls a call could return, in start order, with what the reports read of them (migration 22)
_MISSED_INDEX = ('CREATE INDEX IF NOT EXISTS call_missed_callback ON "call" (started_at, did, queue, ended_at, '
                 "callback_at) WHERE direction = 'INCOMING' AND missed AND (customer_id IS NOT NULL OR "
                 "external_e164 IS NOT NULL)")
RETURNABLE_MISSED = ("c.direction = 'INCOMING' AND c.missed AND (c.customer_id IS NOT NULL OR "
                     "c.external_e164 IS NOT NULL)")  # the index's condition: a query naming it can read it


def _callback_triggers(sqlite: bool) -> dict[str, tuple[str, str, str, list[str]]]:
    """Trigger name -> (timing and event, WHEN condition, declarations, statements) keeping each missed call's
    callback. They run only when a deciding column of a missed call or of an answered call changed."""
    own = ("new.direction = 'INCOMING' AND new.missed AND "
           "(new.customer_id IS NOT NULL OR new.external_e164 IS NOT NULL)")
    rekeyed = f"({_changed((*_KEY_COLUMNS, 'missed'), sqlite)}) AND (({own}) OR old.callback_id IS NOT NULL)"
    answered = f"new.direction IN {RETURNING_DIRECTIONS} AND new.answered_at IS NOT NULL"
    changed = (f"({_changed(_RETURN_KEYS, sqlite)}) AND (old.direction IN {RETURNING_DIRECTIONS} "
               f"OR new.direction IN {RETURNING_DIRECTIONS})")
    keys = ", ".join(_RETURN_KEYS)
    gone = ('AFTER DELETE ON "call"', f"old.direction IN {RETURNING_DIRECTIONS} AND old.answered_at IS NOT NULL",
            "", [_returned_by("old")])
    if sqlite:  # its triggers cannot change NEW: the call's own callback is a second write of its row
        return {
            "call_callback_ai": ('AFTER INSERT ON "call"', f"({own}) OR ({answered})", "",
                                 [_set_callback(f"id = new.id AND {own}"), *_returns("new")]),
            "call_callback_au": (f'AFTER UPDATE OF {keys} ON "call"', changed, "",
                                 [_set_callback(f"id = new.id AND {rekeyed}"), _returned_by("old"), *_returns("new")]),
            "call_callback_ad": gone,
        }
    mine = _callback("new", "INTO new.callback_id, new.callback_at ", not_itself=True)
    return {
        "call_callback_bi": ('BEFORE INSERT ON "call"', own, "", [mine]),
        "call_callback_bu": (f'BEFORE UPDATE OF {keys} ON "call"', rekeyed, "", [mine]),
        "call_callback_ai": ('AFTER INSERT ON "call"', answered, "", _returns("new")),
        "call_callback_au": (f'AFTER UPDATE OF {keys} ON "call"', changed, "", [_returned_by("old"), *_returns("new")]),
        "call_callback_ad": gone,
    }


def install_callbacks(db: peewee.Database) -> None:
    """Migration 22: each missed call's callback on its row (the call that returned it and when that was answered),
    filled from what is stored in one statement, then the indexes and the triggers that keep it."""
    sqlite = isinstance(db, peewee.SqliteDatabase)
    for column in _CALLBACK_COLUMNS:
        _add_column(db, "call", column, sqlite)
    db.execute_sql(_set_callback("direction = 'INCOMING' AND missed"))
    db.execute_sql('CREATE INDEX IF NOT EXISTS call_callback_id ON "call" (callback_id) WHERE callback_id IS NOT NULL')
    db.execute_sql(_MISSED_INDEX)
    create(db, _callback_triggers(sqlite))


def install(db: peewee.Database) -> None:
    """Add the columns, fill them from what is stored, then create the index and the triggers that keep them."""
    sqlite = isinstance(db, peewee.SqliteDatabase)
    run = db.execute_sql
    _add_column(db, "call", _CALL_COLUMN, sqlite)
    for column in _PARTY_COLUMNS:
        _add_column(db, "call_party", column, sqlite)
    run(f'UPDATE "call" SET next_inbound_at = {_next_for(_CALL)} WHERE direction = \'INCOMING\'')
    run(f"UPDATE call_party SET ({_COPIES}) = ({_from_call('call_party.call_id', sqlite)})")
    run(f"CREATE INDEX IF NOT EXISTS {_PARTY_INDEX} ON call_party ({_INDEX_COLUMNS})")
    create_triggers(db)


def index_hold(db: peewee.Database) -> None:
    """The covering index with each party's hold time too (migration 21), so the employee report still reads
    nothing but the index."""
    db.execute_sql(f"DROP INDEX IF EXISTS {_PARTY_INDEX}")
    db.execute_sql(f"CREATE INDEX {_PARTY_INDEX} ON call_party ({_HOLD_INDEX_COLUMNS})")


def create_triggers(db: peewee.Database) -> None:
    """Create the triggers, or replace them with this version's (migration 7 narrowed when they run)."""
    create(db, _triggers(isinstance(db, peewee.SqliteDatabase)))


def create(db: peewee.Database, triggers: dict[str, tuple[str, str, str, list[str]]]) -> None:
    """Create or replace these triggers (name -> timing and event, WHEN condition, declarations, statements)."""
    sqlite = isinstance(db, peewee.SqliteDatabase)
    for name, (event, when, declare, statements) in triggers.items():
        if sqlite:
            condition = f" WHEN {when}" if when else ""
            db.execute_sql(f"DROP TRIGGER IF EXISTS {name}")
            db.execute_sql(f"CREATE TRIGGER {name} {event} FOR EACH ROW{condition} BEGIN "
                           + "".join(f"{s}; " for s in statements) + "END")
        else:
            result = "new" if event.startswith("BEFORE") else "NULL"
            db.execute_sql(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ {declare}BEGIN "
                           + "".join(f"{s}; " for s in statements) + f"RETURN {result}; END $$")
            condition = f" WHEN ({when})" if when else ""
            db.execute_sql(f"CREATE OR REPLACE TRIGGER {name} {event} FOR EACH ROW{condition} "
                           f"EXECUTE FUNCTION {name}()")


def _add_column(db: peewee.Database, table: str, column: tuple[str, str, str], sqlite: bool) -> None:
    name, sqlite_type, pg_type = column
    if name not in {c.name for c in db.get_columns(table)}:
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN {name} {sqlite_type if sqlite else pg_type}')
