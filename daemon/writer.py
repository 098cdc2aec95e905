"""The one database writer: the tracker hands it calls and pops; it stores them in short batched transactions.

Event intake never waits for the database. Everything the tracker concludes is queued here and a single
greenlet writes it, so SQLite never sees two writers (its busy waits would block the gevent hub) and a
burst of events becomes one transaction. If the database fails, the batch stays queued and is retried:
nothing is lost, and a call row is never inserted twice because its id is kept once known.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.event
import peewee

from screenpop.daemon.calls import ANSWERED, DONE, IDLE, RINGING, CallState, Party
from screenpop.db.models import Call, CallEvent, CallParty, Employee

log = logging.getLogger("screenpop.writer")

EMPLOYEE_REFRESH_SECONDS = 30.0


@dataclass(slots=True)
class PendingPop:
    """A pop with the card data as it was when the pop happened."""

    call: CallState
    extension: str
    event: str
    at: dt.datetime
    peer_number: str
    peer_name: str
    direction: str
    customer_id: int | None
    matches: int


class Writer:
    """Queues tracker output and writes it from one greenlet; implements the tracker's Sink."""

    def __init__(self, db: peewee.Database, e164: Callable[[str], str | None], node: str = "", batch_max: int = 500):
        self.db = db
        self.e164 = e164
        self.node = node
        self.batch_max = batch_max
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

    # ---- Sink -----------------------------------------------------------------------------

    def save_call(self, call: CallState) -> None:
        """Queue the call's row (and its changed parties) for writing."""
        if call.direction is None:
            return
        self._queue_call(call)
        self._kick()

    def pop(self, call: CallState, extension: str, event: str, at: dt.datetime, peer_number: str, peer_name: str) -> None:
        """Queue one CallEvent row."""
        self._queue_call(call)
        self._pops.append(
            PendingPop(call, extension, event, at, peer_number, peer_name, call.direction, call.customer_id, call.matches)
        )
        self._kick()

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
                except peewee.DatabaseError as exc:
                    self.failures += 1
                    log.error("database write failed (%s); %d events queued, retrying in %.1f s", exc, len(self._pops), backoff)
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
        with self.db.atomic():
            for call, _ in calls.values():
                self._write_call(call)
            for pop in pops:
                self._write_pop(pop)
        del self._pops[: len(pops)]
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

    def _write_call(self, call: CallState) -> None:
        row = {
            Call.direction: call.direction,
            Call.external_number: call.external_number,
            Call.external_name: call.external_name,
            Call.external_e164: self.e164(call.external_number) if call.external_number else None,
            Call.did: call.did,
            Call.from_extension: call.from_extension,
            Call.customer: call.customer_id,
            Call.matches: call.matches,
            Call.extension: call.extension,
            Call.employee: self._employee(call.extension),
            Call.answered_by: call.answered_by,
            Call.external_answered: call.external_answered,
            Call.started_at: call.started_at,
            Call.answered_at: call.answered_at,
            Call.ended_at: call.ended_at,
            Call.ring_seconds: call.ring_seconds() if call.finished else None,
            Call.talk_seconds: call.talk_seconds(),
            Call.a_leg_billsec: call.a_leg_billsec,
            Call.hangup_cause: call.hangup_cause,
            Call.missed: call.missed,
            Call.node: self.node,
        }
        if call.db_id is None:
            existing = Call.select(Call.id).where(Call.uuid == call.uuid).scalar()
            if existing is None:
                call.db_id = Call.insert({Call.uuid: call.uuid, **row}).execute()
            else:
                call.db_id = existing
        if call.db_id is not None:
            Call.update(row).where(Call.id == call.db_id).execute()
        for party in call.parties.values():
            if party.dirty:
                self._write_party(call, party)

    def _write_party(self, call: CallState, party: Party) -> None:
        row = {
            CallParty.employee: self._employee(party.extension),
            CallParty.role: party.role,
            CallParty.seq: party.seq,
            CallParty.rang_at: party.rang_at,
            CallParty.answered_at: party.answered_at,
            CallParty.ended_at: party.ended_at,
            CallParty.talk_seconds: party.talk_seconds,
            CallParty.outcome: party.outcome,
            CallParty.talked: party.talked,
        }
        updated = (
            CallParty.update(row)
            .where((CallParty.call == call.db_id) & (CallParty.extension == party.extension))
            .execute()
        )
        if not updated:
            CallParty.insert({CallParty.call: call.db_id, CallParty.extension: party.extension, **row}).execute()
        party.dirty = False

    def _write_pop(self, pop: PendingPop) -> None:
        CallEvent.insert(
            {
                CallEvent.call: pop.call.db_id,
                CallEvent.uuid: pop.call.uuid,
                CallEvent.extension: pop.extension,
                CallEvent.event: pop.event,
                CallEvent.direction: pop.direction,
                CallEvent.external_number: pop.peer_number or "",
                CallEvent.external_name: pop.peer_name or "",
                CallEvent.customer: pop.customer_id,
                CallEvent.matches: pop.matches,
                CallEvent.at: pop.at,
            }
        ).execute()


def load_open_calls(db: peewee.Database) -> list[CallState]:
    """Calls the database still has open (the daemon stopped mid-call), rebuilt so no pop is given twice."""
    calls: list[CallState] = []
    for row in Call.select().where(Call.ended_at.is_null()).order_by(Call.id):
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
