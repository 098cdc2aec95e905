"""The one database writer: the tracker hands it calls and pops; it stores them in short batched transactions.

Event intake never waits for the database. Everything the tracker concludes is queued here and a single
greenlet writes it, so SQLite never sees two writers (its busy waits would block the gevent hub) and a
burst of events becomes one transaction. If the database fails, the batch stays queued and is retried:
nothing is lost, and a call row is never inserted twice because its id is kept once known. While it
fails, pops are handed to ``on_stalled`` (the push hub sends them from memory) as well as kept; the queue
holds at most ``queue_max`` pops, and pops beyond that are pushed but not stored (one ERROR line says so).

On PostgreSQL a batch costs two round trips whatever its size, in psycopg's pipeline mode: BEGIN, the fence
and the new calls' rows; then the updates, the parties, the pop order lock, the pops (and their NOTIFY) and
COMMIT. The order lock is thus held only while the server runs the last statements, never across a round trip.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gevent
import gevent.event
import peewee

from screenpop.daemon.calls import ANSWERED, DONE, IDLE, RINGING, CallState, Party
from screenpop.db.models import Call, CallParty, Employee

log = logging.getLogger("screenpop.writer")

EMPLOYEE_REFRESH_SECONDS = 30.0


@dataclass(slots=True)
class PendingPop:
    """A pop with the card data as it was when the pop happened; id is its CallEvent id once committed."""

    call: CallState
    extension: str
    event: str
    at: dt.datetime
    peer_number: str
    peer_name: str
    direction: str
    customer_id: int | None
    matches: int
    id: int | None = None
    early: bool = False  # pushed from memory before it was stored


class Writer:
    """Queues tracker output and writes it from one greenlet; implements the tracker's Sink."""

    def __init__(self, db: peewee.Database, e164: Callable[[str], str | None], node: str = "", batch_max: int = 500,
                 queue_max: int = 100000):
        self.db = db
        self.e164 = e164
        self.node = node
        self.batch_max = batch_max
        self.queue_max = queue_max
        self.stalled = False  # the last write failed: pops go out from memory until one succeeds
        self.on_stalled: Callable[[list[PendingPop]], None] | None = None
        self.fence = None  # daemon/cluster.py Election: its fence statements come first in every transaction
        self.publisher = None  # daemon/fanout.py Publisher on PostgreSQL
        self.dropped = 0
        self._calls: dict[int, tuple[CallState, int]] = {}
        self._version = 0
        self._pops: list[PendingPop] = []
        self._wake = gevent.event.Event()
        self._idle = gevent.event.Event()
        self._idle.set()
        self._employees: dict[str, int] = {}
        self._employees_at = 0.0
        self._running = False
        self.committed_events = 0
        self.failures = 0
        self.listeners: list[Callable[[list[PendingPop]], None]] = []
        self._adapt = _sqlite_value if isinstance(db, peewee.SqliteDatabase) else (lambda value: value)
        self._pops_cursor = None  # PostgreSQL: the pop insert's cursor, read after commit for the new ids
        self._prepare_sql()

    # ---- Sink -----------------------------------------------------------------------------

    def save_call(self, call: CallState) -> None:
        """Queue the call's row (and its changed parties) for writing."""
        if call.direction is None:
            return
        self._queue_call(call)
        self._kick()

    def pop(self, call: CallState, extension: str, event: str, at: dt.datetime, peer_number: str, peer_name: str) -> None:
        """Queue one CallEvent row (pushed at once from memory while the database fails)."""
        self._queue_call(call)
        pending = PendingPop(call, extension, event, at, peer_number, peer_name, call.direction, call.customer_id,
                             call.matches)
        if len(self._pops) >= self.queue_max:
            if not self.dropped:
                log.error("write queue full (%d pops): further pops are pushed to trays but NOT stored until the "
                          "database takes writes again", self.queue_max)
            self.dropped += 1
            self._push_early([pending])
            return
        self._pops.append(pending)
        if self.stalled:
            self._push_early([pending])
        self._kick()

    def _push_early(self, pops: list[PendingPop]) -> None:
        fresh = [p for p in pops if not p.early]
        for p in fresh:
            p.early = True
        if fresh and self.on_stalled is not None:
            self.on_stalled(fresh)

    def discard(self) -> None:
        """Forget everything queued: another daemon has taken this node over and records it now."""
        if self._pops or self._calls:
            log.warning("dropping %d queued pop(s) and %d call update(s): another daemon records this node now",
                        len(self._pops), len(self._calls))
        self._pops.clear()
        self._calls.clear()

    def _queue_call(self, call: CallState) -> None:
        self._version += 1
        self._calls[id(call)] = (call, self._version)

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    # ---- the writer greenlet --------------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many pops are waiting to be written."""
        return len(self._pops)

    def run(self) -> None:
        """Write whatever is queued, forever; on a database error wait and try the same batch again."""
        self._running = True
        backoff = 0.2
        while self._running or self._calls or self._pops:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while self._calls or self._pops:
                try:
                    self.flush_once()
                    backoff = 0.2
                    if self.stalled and not self._pops:
                        self.stalled = False
                        log.warning("database writes work again; everything queued is stored%s",
                                    f" but {self.dropped} pop(s) over the queue limit" if self.dropped else "")
                        self.dropped = 0
                except peewee.DatabaseError as exc:
                    self.failures += 1
                    log.error("database write failed (%s); %d events queued, retrying in %.1f s", exc, len(self._pops), backoff)
                    self.stalled = True
                    self._push_early(self._pops)
                    self._close_quietly()
                    gevent.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    if not self._running:
                        return
            self._idle.set()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after writing what is queued; False if that did not finish within timeout."""
        self._running = False
        self._wake.set()
        return self._idle.wait(timeout=timeout) and not (self._calls or self._pops)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is written (tests and shutdown)."""
        return self._idle.wait(timeout=timeout)

    def flush_once(self) -> None:
        """Write one batch in one transaction: call rows first (pops need their ids), then parties, then pops."""
        pops = self._pops[: self.batch_max]
        calls = dict(self._calls)
        batch = [call for call, _ in calls.values()]
        unsaved = [call for call in batch if call.db_id is None]
        dirty = [party for call in batch for party in call.parties.values() if party.dirty]
        try:
            with self._transaction():
                self._write_batch(batch, pops)
            self._take_pop_ids(pops)
        except peewee.DatabaseError:
            for pop in pops:
                pop.id = None
            for call in unsaved:
                call.db_id = None  # the insert was rolled back with the rest
            for party in dirty:
                party.dirty = True
            raise
        del self._pops[: len(pops)]
        for listener in self.listeners:
            try:
                listener(pops)
            except Exception:
                log.exception("a listener for committed call events failed")
        waiting = {id(p.call) for p in self._pops}
        for key, queued in calls.items():
            if self._calls.get(key) == queued and key not in waiting:
                del self._calls[key]
        self.committed_events += len(pops)

    def _close_quietly(self) -> None:
        try:
            self.db.close()
        except peewee.PeeweeException:
            pass

    # ---- rows -----------------------------------------------------------------------------

    def _employee(self, extension: str | None) -> int | None:
        if not extension:
            return None
        now = time.monotonic()
        if now - self._employees_at > EMPLOYEE_REFRESH_SECONDS:
            self._employees = dict(Employee.select(Employee.extension, Employee.id).tuples())
            self._employees_at = now
        return self._employees.get(extension)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """SQLite: peewee's. PostgreSQL: BEGIN ... COMMIT in one pipeline, so COMMIT goes with the last statements."""
        if not self._returning:
            with self.db.atomic():
                yield
            return
        self._pops_cursor = None
        conn = self.db.connection()
        with _db_errors():
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    yield
                    conn.execute("COMMIT")
            except BaseException:
                if not conn.closed:
                    conn.rollback()  # the pipeline ran what was queued, inside the transaction: undo it
                raise

    def _write_batch(self, calls: list[CallState], pops: list[PendingPop]) -> None:
        """Precompiled SQL and executemany: the query builder would cost more than the event intake itself."""
        adapt = self._adapt
        if self._returning:
            self._fence_and_new_calls(calls)
        else:
            for call in calls:
                if call.db_id is None:
                    call.db_id = self._insert_call(call)
        party_rows = []
        for call in calls:
            for party in call.parties.values():
                if party.dirty:
                    party.dirty = False  # before any query: a change while PostgreSQL answers marks it again
                    party_rows.append(tuple(map(adapt, self._party_values(call, party))))
        pop_rows = [
            tuple(map(adapt, (p.call.db_id, p.call.uuid, p.extension, p.event, p.direction, p.peer_number or "",
                              p.peer_name or "", p.customer_id, p.matches, p.at)))
            for p in pops
        ]
        call_rows = [(*map(adapt, self._call_values(call)), call.db_id) for call in calls]
        self._execute_many(self._sql_update_call, call_rows)
        self._execute_many(self._sql_upsert_party, party_rows)
        if not pops:
            return
        if not self._returning:
            for pop, row in zip(pops, pop_rows):
                pop.id = self.db.execute_sql(self._sql_insert_pop, row).lastrowid
            return
        conn = self.db.connection()
        if self.publisher is not None:
            conn.execute(*self.publisher.order_lock())
        columns = [list(column) for column in zip(*pop_rows)]
        if self.publisher is not None:
            self._pops_cursor = conn.execute(self.publisher.announce(self._sql_insert_pops),
                                             (*columns, self.publisher.channel))
        else:
            self._pops_cursor = conn.execute(f"WITH new AS ({self._sql_insert_pops}) SELECT array_agg(id ORDER BY id) "
                                             "FROM new", columns)

    def _fence_and_new_calls(self, calls: list[CallState]) -> None:
        """PostgreSQL's first round trip: the fence, then the new calls inserted (or found: a call stored before a
        restart or a takeover keeps its row) and their ids read back."""
        conn = self.db.connection()
        fence = self.fence.fence_statements() if self.fence is not None else []
        cursors = [conn.execute(sql, params) for sql, params in fence]
        new: dict[str, list[CallState]] = {}
        for call in calls:
            if call.db_id is None:
                new.setdefault(call.uuid, []).append(call)
        found = None
        if new:
            rows = [(same[0].uuid, same[0].direction, same[0].started_at) for same in new.values()]
            conn.execute(self._sql_insert_calls, (self.node, *map(list, zip(*rows))))
            found = conn.execute(self._sql_find_calls, (list(new),))
        if not cursors and found is None:
            return
        if cursors:
            self.fence.check_fence(cursors[-1].fetchone())
        if found is not None:
            for db_id, uuid in found.fetchall():
                for call in new[uuid]:
                    call.db_id = db_id

    def _insert_call(self, call: CallState) -> int:
        """SQLite: the call's row id, inserting the row unless the call is stored already."""
        existing = self.db.execute_sql(self._sql_find_call, (call.uuid,)).fetchone()
        if existing:
            return existing[0]
        return self.db.execute_sql(self._sql_insert_call, (call.uuid, call.direction, self._adapt(call.started_at),
                                                          self.node)).lastrowid

    def _take_pop_ids(self, pops: list[PendingPop]) -> None:
        """PostgreSQL, after commit: the pops' ids, drawn in their order (INSERT ... SELECT ... ORDER BY)."""
        cursor, self._pops_cursor = self._pops_cursor, None
        if cursor is None:
            return
        with _db_errors():
            ids = cursor.fetchone()[0]
        for pop, i in zip(pops, ids):
            pop.id = i

    def _execute_many(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self.db.cursor().executemany(sql, rows)

    def _call_values(self, call: CallState) -> tuple:
        ext = call.extension
        return (
            call.direction, call.external_number, call.external_name,
            self.e164(call.external_number) if call.external_number else None,
            call.did, call.from_extension, call.customer_id, call.matches, ext, self._employee(ext),
            call.answered_by, call.external_answered, call.started_at, call.answered_at, call.ended_at,
            call.ring_seconds() if call.finished else None, call.talk_seconds(), call.a_leg_billsec,
            call.hangup_cause, call.missed, self.node,
        )

    def _party_values(self, call: CallState, party: Party) -> tuple:
        return (
            call.db_id, party.extension, self._employee(party.extension), party.role, party.seq, party.rang_at,
            party.answered_at, party.ended_at, party.talk_seconds, party.outcome, party.talked,
        )

    def _prepare_sql(self) -> None:
        p = self.db.param
        self._returning = not isinstance(self.db, peewee.SqliteDatabase)
        call_columns = [
            "direction", "external_number", "external_name", "external_e164", "did", "from_extension", "customer_id",
            "matches", "extension", "employee_id", "answered_by", "external_answered", "started_at", "answered_at",
            "ended_at", "ring_seconds", "talk_seconds", "a_leg_billsec", "hangup_cause", "missed", "node",
        ]
        self._sql_find_call = f'SELECT id FROM "call" WHERE uuid = {p}'
        self._sql_insert_call = (
            f'INSERT INTO "call" (uuid, direction, started_at, node, matches, missed) VALUES ({p}, {p}, {p}, {p}, 0, FALSE)'
        )
        self._sql_insert_calls = (
            'INSERT INTO "call" (uuid, direction, started_at, node, matches, missed) '
            "SELECT u, d, s, %s, 0, FALSE FROM unnest(%s::text[], %s::text[], %s::timestamp[]) AS v(u, d, s) "
            "ON CONFLICT (uuid) DO NOTHING"
        )
        self._sql_find_calls = 'SELECT id, uuid FROM "call" WHERE uuid = ANY(%s)'
        # customer_id: a customer linked to the call from the web page while it runs is never overwritten by NULL
        assignments = ", ".join(f"{c} = COALESCE({p}, {c})" if c == "customer_id" else f"{c} = {p}" for c in call_columns)
        self._sql_update_call = f'UPDATE "call" SET {assignments} WHERE id = {p}'
        party_columns = [
            "call_id", "extension", "employee_id", "role", "seq", "rang_at", "answered_at", "ended_at", "talk_seconds",
            "outcome", "talked",
        ]
        self._sql_upsert_party = (
            f"INSERT INTO call_party ({', '.join(party_columns)}) VALUES ({', '.join([p] * len(party_columns))}) "
            f"ON CONFLICT (call_id, extension) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in party_columns[2:])
        )
        pop_columns = ["call_id", "uuid", "extension", "event", "direction", "external_number", "external_name",
                       "customer_id", "matches", '"at"']
        self._sql_insert_pop = (
            f"INSERT INTO call_event ({', '.join(pop_columns)}) VALUES ({', '.join([p] * len(pop_columns))})"
        )
        # ORDER BY n: PostgreSQL draws the serial ids in that order, so the sorted ids are the pops' in batch order
        self._sql_insert_pops = (
            f"INSERT INTO call_event ({', '.join(pop_columns)}) SELECT {', '.join(pop_columns)} FROM unnest("
            "%s::int[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::int[], "
            f"%s::timestamp[]) WITH ORDINALITY AS v({', '.join(pop_columns)}, n) ORDER BY n RETURNING id"
        )


@contextlib.contextmanager
def _db_errors() -> Iterator[None]:
    """psycopg's errors as peewee's, as for queries run through peewee (the retry loop catches those)."""
    with peewee.__exception_wrapper__:
        yield


def _sqlite_value(value):
    """SQLite stores times as peewee reads them back: ISO text with a space."""
    return value.isoformat(" ") if isinstance(value, dt.datetime) else value


def load_open_calls(db: peewee.Database, node: str) -> list[CallState]:
    """Calls of this node the database still has open (the daemon stopped mid-call), rebuilt so no pop is given twice.

    Only this node's: the other FreeSWITCH nodes' calls are theirs to follow (one database, several daemons).
    """
    calls: list[CallState] = []
    for row in Call.select().where(Call.ended_at.is_null() & (Call.node == node)).order_by(Call.id):
        call = CallState(uuid=row.uuid, a_leg=None, started_at=row.started_at)
        call.db_id = row.id
        call.direction = row.direction
        call.external_number = row.external_number or None
        call.external_name = row.external_name or None
        call.did = row.did
        call.from_extension = row.from_extension
        call.customer_id = row.customer_id
        call.matches = row.matches
        call.answered_by = row.answered_by
        call.external_answered = row.external_answered
        call.answered_at = row.answered_at
        for p in CallParty.select().where(CallParty.call == row.id).order_by(CallParty.seq):
            party = Party(extension=p.extension, role=p.role, seq=p.seq, dirty=False)
            party.rang_at, party.answered_at, party.ended_at = p.rang_at, p.answered_at, p.ended_at
            party.outcome, party.talked = p.outcome, p.talked
            ringing = p.rang_at and p.role == "callee"
            party.state = DONE if p.ended_at else ANSWERED if p.answered_at else RINGING if ringing else IDLE
            call.parties[p.extension] = party
        call.rung = [p.extension for p in sorted(call.parties.values(), key=lambda p: p.rang_at or row.started_at) if p.rang_at]
        call.talked = [p.extension for p in call.parties.values() if p.talked]
        calls.append(call)
    return calls
