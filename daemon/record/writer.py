"""The one database writer: the tracker hands it calls and pops; it stores them in short batched transactions.

Event intake never waits for the database. Everything the tracker concludes is queued here and a single
greenlet writes it, so SQLite never sees two writers (its busy waits would block the gevent hub) and a
burst of events becomes one transaction. If the database fails, the batch stays queued and is retried:
nothing is lost, and a call row is never inserted twice because its id is kept once known. While it
fails, pops are handed to ``on_stalled`` (the push hub sends them from memory) as well as kept; the queue
holds at most ``queue_max`` pops, and pops beyond that are pushed but not stored (one ERROR line says so).

On SQLite (one daemon, one writer) the writer draws each pop's CallEvent id itself when the pop is queued and
hands the pop to ``on_queued`` at once: the push hub sends it with that id before it is stored, so the pop's way
to the tray never waits for a transaction. Ids are drawn only below a reservation kept in the database (the
``setting`` row ``pop_ids_reserved``, moved RESERVE_IDS ahead whenever half is used, in the same transaction as
the pops): after a crash the next daemon draws above every id a tray may have been shown, so a tray's
Last-Event-ID never skips a pop stored later. A pop drawn past the reservation (the database has been failing
for thousands of pops) goes out without its id, as pops do from ``on_stalled``.

On PostgreSQL a batch is one round trip whatever its size, in psycopg's pipeline mode: BEGIN, the fence, the
order lock, the new calls (inserted whole, or updated where a restart or takeover stored them already), the
changed calls, the parties, the pops (and their NOTIFY) and COMMIT. Rows refer to their call by its uuid, so no
statement waits for another's ids. The order lock is taken before any row is written: two daemons' writers
then never hold row locks the other wants (the analytics triggers update a caller's earlier calls, which may
be the other node's), and it is held only while the server runs the batch, never across a round trip.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import peewee

from screenpop.daemon.calls.tracker import ANSWERED, DONE, IDLE, RINGING, CallState, Party, RecordingState
from screenpop.daemon.record.pops import POP_COLUMNS
from screenpop.daemon.staff import Staff
from screenpop.db.checkpoint import Checkpointer
from screenpop.db.database import connection_lost, describe_error, drop_dead_connection, outage
from screenpop.db.models import Call, CallParty

log = logging.getLogger("screenpop.writer")
RESERVE_IDS = 10000  # SQLite: pop ids reserved ahead of the ones drawn (see the module's docstring)
RESERVED_KEY = "pop_ids_reserved"



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
    taken_by: str | None = None  # answered_elsewhere: the extension that took the call (CallState.taken_by)


class Writer:
    """Queues tracker output and writes it from one greenlet; implements the tracker's Sink."""

    def __init__(self, db: peewee.Database, e164: Callable[[str], str | None], node: str = "", batch_max: int = 500,
                 queue_max: int = 100000, *, on_committed: Callable[[list[PendingPop]], None] | None = None,
                 on_stalled: Callable[[list[PendingPop]], None] | None = None, fence: Any = None,
                 publisher: Any = None, staff: Staff, map_path: Callable[[str], str] = lambda path: path,
                 checkpointer: Checkpointer | None = None,
                 on_queued: Callable[[PendingPop, bool], None] | None = None):
        """on_committed gets each transaction's pops with their ids (the push hub on a single daemon); on_stalled gets
        the pops a failing database has not taken (sent from memory meanwhile); fence: daemon/cluster.py's Election,
        its fence statements first in every transaction; publisher: daemon/push/fanout.py's Publisher on PostgreSQL;
        staff: the employee snapshot the rows take their employee ids from; map_path: where the daemon finds a file
        FreeSWITCH recorded (daemon/record/recordings.py's PathMap.local); checkpointer: SQLite's WAL checkpoints,
        ticked between transactions and when idle (db/checkpoint.py); on_queued: SQLite, once reserve_ids() has run,
        gets each pop as it is queued with the id it will be stored under, and whether trays may be shown that id."""
        self.db = db
        self.e164 = e164
        self.node = node
        self.batch_max = batch_max
        self.queue_max = queue_max
        self.stalled = False  # the last write failed: pops go out from memory until one succeeds
        self.on_committed = on_committed
        self.on_stalled = on_stalled
        self.fence = fence
        self.publisher = publisher
        self.staff = staff
        self.map_path = map_path
        self.checkpointer = checkpointer
        self.on_queued = on_queued
        self._next_id: int | None = None  # the next pop id to draw, once reserve_ids() has run
        self._reserved = 0  # ids up to this one are reserved in the database: they may be shown before stored
        self._reserving = 0  # the reservation the transaction being written moves it to
        self.dropped = 0
        self._recordings: list[RecordingState] = []
        self._calls: dict[int, tuple[CallState, int]] = {}
        self._version = 0
        self._pops: list[PendingPop] = []
        self._wake = gevent.event.Event()
        self._idle = gevent.event.Event()
        self._idle.set()
        self._running = False
        self._give_up_at = 0.0  # once stopping: when a failing write is given up (its events are lost)
        self._adapt = _sqlite_value if isinstance(db, peewee.SqliteDatabase) else (lambda value: value)
        self._pops_cursor = None  # PostgreSQL: the pop insert's cursor, read after commit for the new ids
        self._calls_cursor = None  # ... and the new calls' (id, uuid)
        self._new_calls: list[tuple[CallState, tuple]] = []  # the calls that cursor's rows are, with their rows
        self._prepare_sql()
        if self._returning:
            self.on_queued = None  # PostgreSQL gives the ids, in commit order across daemons (daemon/push/fanout.py)

    # ---- Sink -----------------------------------------------------------------------------

    def save_call(self, call: CallState) -> None:
        """Queue the call's row (and its changed parties) for writing."""
        if call.direction is None:
            return
        if call.finished and (call.stored is None or call.stored[_ENDED_AT] is None):
            # the tracker sets talk times when the call ends, also of parties stored earlier (one that transferred)
            for party in call.parties.values():
                if party.talk_seconds is not None:
                    party.dirty = True
        self._queue_call(call)
        self._kick()

    def queue_pop(self, call: CallState, extension: str, event: str, at: dt.datetime, peer_number: str, peer_name: str) -> None:
        """Queue one CallEvent row (pushed at once from memory while the database fails)."""
        self._queue_call(call)
        pending = PendingPop(call, extension, event, at, peer_number, peer_name, call.direction, call.customer_id,
                             call.matches, taken_by=call.taken_by(extension, at) if event == "answered_elsewhere" else None)
        full = len(self._pops) >= self.queue_max
        if full:
            if not self.dropped:
                log.error("write queue full (%d pops): further pops are pushed to trays but NOT stored until the "
                          "database takes writes again", self.queue_max)
            self.dropped += 1
        else:
            self._pops.append(pending)
        if self._next_id is not None and self.on_queued is not None:
            pending.id, pending.early = self._next_id, True
            self._next_id += 1
            self.on_queued(pending, not full and pending.id <= self._reserved)
        elif full or self.stalled:
            self._push_early([pending])
        if not full:
            self._kick()  # after on_queued: the push hub's turn comes before the writer's

    def reserve_ids(self) -> None:
        """SQLite with on_queued: draw pop ids from now on, above every id stored or reserved before (a daemon that
        crashed may have shown trays ids it never stored), and reserve the next RESERVE_IDS. Once, before any pop."""
        p = self.db.param
        with self.db.atomic():
            stored = self.db.execute_sql("SELECT max(id) FROM call_event").fetchone()[0] or 0
            row = self.db.execute_sql(f"SELECT value FROM setting WHERE key = {p}", (RESERVED_KEY,)).fetchone()
            top = max(stored, int(row[0]) if row else 0)
            self._write_reservation(top + RESERVE_IDS)
        self._next_id, self._reserved = top + 1, top + RESERVE_IDS

    def _write_reservation(self, up_to: int) -> None:
        p = self.db.param
        self.db.execute_sql(f"INSERT INTO setting (key, value) VALUES ({p}, {p}) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (RESERVED_KEY, str(up_to)))

    def save_recording(self, recording: RecordingState) -> None:
        """Queue a recording's start or stop: its row is inserted, or completed, by (call, path)."""
        self._recordings.append(recording)
        self._kick()

    def _push_early(self, pops: list[PendingPop]) -> None:
        fresh = [p for p in pops if not p.early]
        for p in fresh:
            p.early = True
        if fresh and self.on_stalled is not None:
            self.on_stalled(fresh)

    def discard(self) -> None:
        """Forget everything queued: another daemon has taken this node over and records it now."""
        if self._pops or self._calls or self._recordings:
            log.warning("dropping %d queued pop(s), %d call update(s) and %d recording(s): another daemon records this "
                        "node now", len(self._pops), len(self._calls), len(self._recordings))
        self._pops.clear()
        self._calls.clear()
        self._recordings.clear()

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
        failed_with = ""  # the last failure's description: a retry failing the same way is logged at DEBUG only
        while self._running or self._calls or self._pops or self._recordings:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            gevent.sleep(0)  # the streams woken with this wake-up send first: the pops they carry wait for no commit
            self._tick()
            while self._calls or self._pops or self._recordings:
                try:
                    self.flush_once()
                    self._tick()
                    backoff = 0.2
                    failed_with = ""
                    outage.worked()
                    if self.stalled and not self._pops:
                        self.stalled = False
                        log.warning("database writes work again; everything queued is stored%s",
                                    f" but {self.dropped} pop(s) over the queue limit" if self.dropped else "")
                        self.dropped = 0
                except peewee.DatabaseError as exc:
                    if connection_lost(self.db):
                        outage.failed(exc)
                    what = describe_error(self.db, exc)
                    log.log(logging.DEBUG if what == failed_with else logging.ERROR,
                            "database write failed (%s); %d events queued, retrying in %.1f s", what, len(self._pops),
                            backoff)
                    failed_with = what
                    self.stalled = True
                    self._push_early(self._pops)
                    self._close_quietly()
                    if self._pause(backoff):
                        backoff = 0.2  # the fence was lost and is ours again: the database itself is fine
                    else:
                        backoff = min(backoff * 2, 5.0)
                    if not self._running and time.monotonic() >= self._give_up_at:
                        return
            self._idle.set()

    def _pause(self, seconds: float) -> bool:
        """Wait before retrying a failed batch (once stopping, no later than stop's timeout); True if the wait ended
        because the fence (the node's lock) is held again after a loss: the queued writes go out at once then."""
        if not self._running:
            seconds = min(seconds, max(0.0, self._give_up_at - time.monotonic()))
        if self.fence is not None and not self.fence.held.is_set():
            return self.fence.held.wait(seconds)
        gevent.sleep(seconds)
        return False

    def _tick(self) -> None:
        if self.checkpointer is not None and self._running and not self.stalled:
            self.checkpointer.tick()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after writing what is queued; False if that did not finish within timeout."""
        self._running = False
        self._give_up_at = time.monotonic() + timeout  # failed writes are retried until then (the lock may come back)
        self._wake.set()
        return self._idle.wait(timeout=timeout) and not (self._calls or self._pops or self._recordings)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is written (tests and shutdown)."""
        return self._idle.wait(timeout=timeout)

    def flush_once(self) -> None:
        """Write one batch in one transaction: calls, then parties, then pops (which name their call)."""
        drop_dead_connection(self.db)
        pops = self._pops[: self.batch_max]
        recordings = self._recordings[: self.batch_max]
        calls = dict(self._calls)
        batch = [call for call, _ in calls.values()]
        before = [(call, call.db_id, call.stored) for call in batch]
        dirty = [(party, party.stored) for call in batch for party in call.parties.values() if party.dirty]
        try:
            with self._transaction():
                self._write_batch(batch, pops)
                self._write_recordings(recordings)
            self._take_ids(pops)
        except peewee.DatabaseError:
            for pop in pops:
                if self._next_id is None:  # the database gave it; drawn ids stay the pops' own
                    pop.id = None
            for call, db_id, stored in before:
                call.db_id, call.stored = db_id, stored  # rolled back with the rest
            for party, stored in dirty:
                party.dirty, party.stored = True, stored
            raise
        del self._pops[: len(pops)]
        del self._recordings[: len(recordings)]
        self._reserved = max(self._reserved, self._reserving)
        if self.on_committed is not None:
            try:
                self.on_committed(pops)
            except Exception:
                log.exception("the receiver of committed call events failed")
        waiting = {id(p.call) for p in self._pops}
        for key, queued in calls.items():
            if self._calls.get(key) == queued and key not in waiting:
                del self._calls[key]

    def _close_quietly(self) -> None:
        try:
            self.db.close()
        except peewee.PeeweeException:
            pass

    # ---- rows -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """SQLite: peewee's. PostgreSQL: BEGIN ... COMMIT in one pipeline, so COMMIT goes with the last statements."""
        if not self._returning:
            with self.db.atomic():
                yield
            return
        self._pops_cursor = self._calls_cursor = None
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
        """Precompiled SQL: the query builder would cost more than the event intake itself. A call row is written
        only when it differs from what this writer last stored."""
        adapt = self._adapt
        rows = {id(call): tuple(map(adapt, self._call_values(call))) for call in calls}
        if self._returning:
            self._queue_batch(calls, pops, rows)
            return
        for call in calls:
            if call.db_id is None:
                self._insert_call(call, rows[id(call)])
        changed, party_rows = {}, {}
        for call in calls:
            if rows[id(call)] != call.stored:
                call.stored = rows[id(call)]
                changed[call.db_id] = (*call.stored, call.db_id)
            for party in call.parties.values():
                if party.dirty:
                    party.dirty, party.stored = False, True
                    party_rows[call.db_id, party.extension] = tuple(map(adapt, self._party_values(call.db_id, party)))
        self._execute_many(self._sql_update_call, list(changed.values()))
        self._execute_many(self._sql_upsert_party, list(party_rows.values()))
        for pop in pops:
            row = tuple(map(adapt, (pop.call.db_id, *_pop_values(pop))))
            if self._next_id is None:
                pop.id = self.db.execute_sql(self._sql_insert_pop, row).lastrowid
            else:
                self.db.execute_sql(self._sql_insert_drawn_pop, (pop.id, *row))
        if self._next_id is not None and self._next_id + RESERVE_IDS // 2 > self._reserved:
            self._reserving = self._next_id + RESERVE_IDS  # stored with these pops; in force once committed
            self._write_reservation(self._reserving)

    def _queue_batch(self, calls: list[CallState], pops: list[PendingPop], rows: dict[int, tuple]) -> None:
        """PostgreSQL: the batch's statements, one a table with one JSON parameter (psycopg's array dumpers cost
        more than all the rest); their results are read after COMMIT (_take_ids)."""
        conn = self.db.connection()
        for sql, params in self.fence.fence_statements() if self.fence is not None else []:
            conn.execute(sql, params)
        if self.publisher is not None:
            conn.execute(*self.publisher.order_lock())
        new, changed, fresh, stored = {}, {}, {}, {}
        for call in calls:
            row = rows[id(call)]
            if call.db_id is None:
                new[call.uuid] = (call, row)
            elif row != call.stored:
                call.stored = row
                changed[call.uuid] = (*row, call.uuid)
            for party in call.parties.values():
                if party.dirty:
                    party.dirty = False  # before any query: a change while PostgreSQL answers marks it again
                    if party.stored and call.db_id is not None:
                        stored[call.db_id, party.extension] = self._party_values(call.db_id, party)
                    else:
                        fresh[call.uuid, party.extension] = self._party_values(call.uuid, party)
                    party.stored = True
        self._new_calls = list(new.values())
        if new:
            new_rows = _json((call.uuid, *row) for call, row in new.values())
            self._calls_cursor = conn.execute(self._sql_upsert_calls, (new_rows,))
        if changed:
            conn.execute(self._sql_update_calls, (_json(changed.values()),))
        if fresh:
            conn.execute(self._sql_upsert_parties, (_json(fresh.values()),))
        if stored:
            conn.execute(self._sql_update_parties, (_json(stored.values()),))
        if not pops:
            return
        pop_rows = _json(_pop_values(pop) for pop in pops)
        if self.publisher is not None:
            self._pops_cursor = conn.execute(self.publisher.announce(self._sql_insert_pops),
                                             (pop_rows, self.publisher.channel))
        else:
            self._pops_cursor = conn.execute(f"WITH new AS ({self._sql_insert_pops}) SELECT array_agg(id ORDER BY id) "
                                             "FROM new", (pop_rows,))

    def _write_recordings(self, recordings: list[RecordingState]) -> None:
        """Each start inserts its row (held from deletion if its call already is), each stop completes it; in
        order, on both databases (a call has a recording or two: no batching worth its code)."""
        if not recordings:
            return
        execute = self.db.connection().execute if self._returning else self.db.execute_sql
        for rec in recordings:
            status = "recording" if rec.stopped_at is None else "discarded" if rec.discarded else "stopped"
            row = (rec.call_uuid, rec.leg_uuid, rec.party, rec.extension, rec.path, self.map_path(rec.path),
                   rec.started_at, rec.stopped_at, rec.seconds, rec.completion_cause, status, rec.call_uuid)
            with _db_errors():
                execute(self._sql_upsert_recording, tuple(map(self._adapt, row)))

    def _insert_call(self, call: CallState, row: tuple) -> None:
        """SQLite: give the call its row id, inserting the whole row unless the call is stored already."""
        existing = self.db.execute_sql(self._sql_find_call, (call.uuid,)).fetchone()
        if existing:
            call.db_id = existing[0]
            return
        call.db_id = self.db.execute_sql(self._sql_insert_call, (call.uuid, *row)).lastrowid
        call.stored = row

    def _take_ids(self, pops: list[PendingPop]) -> None:
        """PostgreSQL, after commit: the new calls' ids, and the pops', drawn in their order (INSERT ... ORDER BY)."""
        calls_cursor, self._calls_cursor = self._calls_cursor, None
        pops_cursor, self._pops_cursor = self._pops_cursor, None
        with _db_errors():
            ids = dict((uuid, db_id) for db_id, uuid in calls_cursor.fetchall()) if calls_cursor is not None else {}
            pop_ids = pops_cursor.fetchone()[0] if pops_cursor is not None else []
        for call, row in self._new_calls if calls_cursor is not None else []:
            call.db_id, call.stored = ids[call.uuid], row
        for pop in pops:
            if pop.call.db_id is None:
                pop.call.db_id = ids.get(pop.call.uuid)  # another state of the same call (a restart's)
        for pop, i in zip(pops, pop_ids):
            pop.id = i

    def _execute_many(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self.db.cursor().executemany(sql, rows)

    def _call_values(self, call: CallState) -> tuple:
        ext = call.extension
        return (
            call.direction, call.external_number, call.external_name,
            self.e164(call.external_number) if call.external_number else None,
            call.did, call.from_extension, call.customer_id, call.matches, ext, self.staff.employee_id(ext),
            call.answered_by, call.external_answered, call.started_at, call.answered_at, call.ended_at,
            call.ring_seconds() if call.finished else None, call.talk_seconds(), call.a_leg_billsec,
            call.hangup_cause, call.missed, self.node, call.recovered, round(call.hold_seconds, 6), call.queue,
        )

    def _party_values(self, call_key: int | str, party: Party) -> tuple:
        """The party's row; call_key is its call's id, or on PostgreSQL its uuid while the id is not known."""
        return (
            call_key, party.extension, self.staff.employee_id(party.extension), party.role, party.seq, party.rang_at,
            party.answered_at, party.ended_at, party.talk_seconds, party.outcome, party.talked,
            round(party.hold_seconds, 6),
        )

    def _prepare_sql(self) -> None:
        p = self.db.param
        self._returning = not isinstance(self.db, peewee.SqliteDatabase)
        names = [name for name, _ in CALL_COLUMNS]
        self._sql_find_call = f'SELECT id FROM "call" WHERE uuid = {p}'
        self._sql_insert_call = (
            f'INSERT INTO "call" (uuid, {", ".join(names)}) VALUES ({", ".join([p] * (len(names) + 1))})'
        )
        # A call already stored (a restart, a takeover) is updated; customer_id as in the update below
        self._sql_upsert_calls = (
            f'INSERT INTO "call" (uuid, {", ".join(names)}) '
            f'SELECT * FROM {_json_rows([("uuid", "text"), *CALL_COLUMNS])} ON CONFLICT (uuid) DO UPDATE SET '
            + ", ".join(f'{c} = COALESCE(excluded.{c}, "call".{c})' if c == "customer_id" else f"{c} = excluded.{c}"
                        for c in names)
            + " RETURNING id, uuid"
        )
        # customer_id: a customer linked to the call from the web page while it runs is never overwritten by NULL
        assignments = ", ".join(f"{c} = COALESCE({p}, {c})" if c == "customer_id" else f"{c} = {p}" for c in names)
        self._sql_update_call = f'UPDATE "call" SET {assignments} WHERE id = {p}'
        self._sql_update_calls = (
            'UPDATE "call" c SET '
            + ", ".join(f"{c} = COALESCE(v.{c}, c.{c})" if c == "customer_id" else f"{c} = v.{c}" for c in names)
            + f" FROM {_json_rows([*CALL_COLUMNS, ('uuid', 'text')])} WHERE c.uuid = v.uuid"
        )
        party_names = [name for name, _ in PARTY_COLUMNS]
        upsert = (f" ON CONFLICT (call_id, extension) DO UPDATE SET "
                  + ", ".join(f"{c} = excluded.{c}" for c in party_names[2:]))
        self._sql_upsert_party = (
            f"INSERT INTO call_party ({', '.join(party_names)}) VALUES ({', '.join([p] * len(party_names))})" + upsert
        )
        self._sql_upsert_parties = (
            f"INSERT INTO call_party ({', '.join(party_names)}) "
            f"SELECT {_call_id('call_uuid')}, {', '.join(party_names[1:])} "
            f"FROM {_json_rows([('call_uuid', 'text'), *PARTY_COLUMNS[1:]])}" + upsert
        )
        self._sql_update_parties = (
            "UPDATE call_party p SET " + ", ".join(f"{c} = v.{c}" for c in party_names[2:])
            + f" FROM {_json_rows(PARTY_COLUMNS)} WHERE p.call_id = v.call_id AND p.extension = v.extension"
        )
        # a stop completes its start's row (its start time stays); a start seen again changes nothing it knew
        self._sql_upsert_recording = (
            "INSERT INTO recording (call_uuid, leg_uuid, party, extension, fs_path, path, started_at, stopped_at, "
            f"seconds, completion_cause, status, keep) VALUES ({', '.join([p] * 11)}, "
            f"EXISTS (SELECT 1 FROM recording h WHERE h.call_uuid = {p} AND h.keep)) "
            "ON CONFLICT (call_uuid, fs_path) DO UPDATE SET extension = COALESCE(excluded.extension, recording.extension), "
            "stopped_at = COALESCE(excluded.stopped_at, recording.stopped_at), "
            "seconds = COALESCE(excluded.seconds, recording.seconds), "
            "completion_cause = COALESCE(excluded.completion_cause, recording.completion_cause), "
            "status = CASE WHEN excluded.stopped_at IS NULL THEN recording.status ELSE excluded.status END"
        )
        pop_names = [name for name, _ in POP_ROW_COLUMNS]
        self._sql_insert_pop = (
            f"INSERT INTO call_event ({', '.join(pop_names)}) VALUES ({', '.join([p] * len(pop_names))})"
        )
        self._sql_insert_drawn_pop = (
            f"INSERT INTO call_event (id, {', '.join(pop_names)}) VALUES ({', '.join([p] * (len(pop_names) + 1))})"
        )
        # ORDER BY n: PostgreSQL draws the serial ids in that order, so the sorted ids are the pops' in batch order
        self._sql_insert_pops = (
            f"INSERT INTO call_event ({', '.join(pop_names)}) SELECT {_call_id('uuid')}, "
            f"{', '.join(pop_names[1:])} FROM {_json_rows(POP_ROW_COLUMNS[1:], ordinality=True)} "
            f"ORDER BY n RETURNING {POP_COLUMNS}"
        )


# (column, PostgreSQL type) in the order of Writer._call_values, _party_values and the pop rows
CALL_COLUMNS = [
    ("direction", "text"), ("external_number", "text"), ("external_name", "text"), ("external_e164", "text"),
    ("did", "text"), ("from_extension", "text"), ("customer_id", "int"), ("matches", "int"), ("extension", "text"),
    ("employee_id", "int"), ("answered_by", "text"), ("external_answered", "boolean"), ("started_at", "timestamp"),
    ("answered_at", "timestamp"), ("ended_at", "timestamp"), ("ring_seconds", "float8"), ("talk_seconds", "float8"),
    ("a_leg_billsec", "int"), ("hangup_cause", "text"), ("missed", "boolean"), ("node", "text"),
    ("recovered", "boolean"), ("hold_seconds", "float8"), ("queue", "text"),
]
_ENDED_AT = [name for name, _ in CALL_COLUMNS].index("ended_at")
PARTY_COLUMNS = [
    ("call_id", "int"), ("extension", "text"), ("employee_id", "int"), ("role", "text"), ("seq", "int"),
    ("rang_at", "timestamp"), ("answered_at", "timestamp"), ("ended_at", "timestamp"), ("talk_seconds", "float8"),
    ("outcome", "text"), ("talked", "boolean"), ("hold_seconds", "float8"),
]
POP_ROW_COLUMNS = [
    ("call_id", "int"), ("uuid", "text"), ("extension", "text"), ("event", "text"), ("direction", "text"),
    ("peer_number", "text"), ("peer_name", "text"), ("customer_id", "int"), ("matches", "int"),
    ('"at"', "timestamp"),
]


def _call_id(uuid_column: str) -> str:
    """A row's call id by the uuid it carries (the id may not be known yet); NULL if missing, and NOT NULL then
    fails the batch rather than storing a row of no call."""
    return f'(SELECT c.id FROM "call" c WHERE c.uuid = v.{uuid_column})'


def _pop_values(pop: PendingPop) -> tuple:
    """A pop's row after its call_id (POP_ROW_COLUMNS[1:]): what the card will show, as it was when it popped."""
    return (pop.call.uuid, pop.extension, pop.event, pop.direction, pop.peer_number or "", pop.peer_name or "",
            pop.customer_id, pop.matches, pop.at)


def _json_rows(columns: list[tuple[str, str]], ordinality: bool = False) -> str:
    """PostgreSQL: the rows of one JSON parameter (an array of arrays), typed and named v(columns) (and n, their
    order, if asked). One text parameter: psycopg's array dumpers cost more than the rest of a batch's statements."""
    fields = ", ".join(f"(r->>{i})::{kind} AS {name}" for i, (name, kind) in enumerate(columns))
    return (f"(SELECT {fields}{', n' if ordinality else ''} FROM json_array_elements(%s::json) "
            "WITH ORDINALITY AS e(r, n)) AS v")


def _json(rows) -> str:
    """Rows as the parameter of a _json_rows() statement."""
    return json.dumps(list(rows), default=_json_time, separators=(",", ":"))


def _json_time(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in a row for the database")


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
    query = Call.select().where(Call.ended_at.is_null() & (Call.node == node)).order_by(Call.id)
    return [call_from_row(row) for row in query]


def load_call(uuid: str) -> CallState | None:
    """The stored call of this a-leg UUID as the tracker would hold it (the CDRs complete it), or None."""
    row = Call.get_or_none(Call.uuid == uuid)
    return None if row is None else call_from_row(row)


def call_from_row(row: Call) -> CallState:
    """A stored call and its parties as tracker state: an open one resumes, an ended one is finished."""
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
    call.ended_at = row.ended_at
    call.finished = row.ended_at is not None
    call.hangup_cause = row.hangup_cause
    call.a_leg_billsec = row.a_leg_billsec
    call.recovered = row.recovered
    call.hold_seconds = call.hold_untimed = row.hold_seconds or 0.0  # a restored call's holds have no times
    call.queue = row.queue
    for p in CallParty.select().where(CallParty.call == row.id).order_by(CallParty.seq):
        party = Party(extension=p.extension, role=p.role, seq=p.seq, dirty=False, stored=True)
        party.rang_at, party.answered_at, party.ended_at = p.rang_at, p.answered_at, p.ended_at
        party.outcome, party.talked, party.talk_seconds = p.outcome, p.talked, p.talk_seconds
        party.hold_seconds = p.hold_seconds or 0.0
        ringing = p.rang_at and p.role == "callee"
        party.state = DONE if p.ended_at else ANSWERED if p.answered_at else RINGING if ringing else IDLE
        call.parties[p.extension] = party
    call.rung = [p.extension for p in sorted(call.parties.values(), key=lambda p: p.rang_at or row.started_at) if p.rang_at]
    call.talked = [p.extension for p in call.parties.values() if p.talked]
    return call
