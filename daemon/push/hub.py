"""Operator push: pops become cards on the Server-Sent Events streams of their extension.

The writer calls ``PushHub.push_committed`` after every commit (the pops then have their CallEvent ids). On the
database worker (db/worker.py: one greenlet with a connection of its own, which the HTTP side shares) the hub
builds the cards (card.py), reads replays (CallEvent rows after a client's Last-Event-ID), checks tokens, and
fans frames out to the subscribers of each extension. Fan-out never waits for a client: each subscriber has a bounded queue,
and one that falls too far behind is disconnected; it comes back with Last-Event-ID and catches up from
the database. Nothing is lost that way, and nobody else waits.

A stream with Last-Event-ID subscribes first (live frames are buffered), then reads the replay, sends it,
then sends the buffered live frames with a higher id than the last one sent: nothing twice, nothing lost.

With several daemons on PostgreSQL, committed pops come in through ``push_stored`` (daemon/push/fanout.py), every
daemon's in one id order, instead of ``push_committed``. While the database is out of reach the writer hands
its pops to ``push_early``: they go out at once as cards without an id (built from what is cached); once they are
stored, the streams that had them get only their id (an id-only frame moves Last-Event-ID, shows nothing).

On SQLite the writer draws each pop's id when it queues the pop and hands it to ``push_queued`` at once: the card
goes out with its id before the pop is stored (daemon/record/writer.py says why ids drawn early are never drawn
again). Its commit then sends it only to the streams that did not have it: those that opened since. A stream opened
while pops it was not sent are still unstored gets nothing early until they all are (``Subscriber.early``), so it
gets every pop, in id order, from the commits until then: the Last-Event-ID rule (nothing twice, nothing lost) holds.

With sources configured (daemon/sources/), a pop that rings goes out with what they are known to say (often
nothing yet) and asks them without waiting; when they have answered, the same card follows as an `update` frame
(no id: not a pop of its own) to the streams of its extension (docs/card.md).
"""
from __future__ import annotations

import datetime as dt
import logging
import socket
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import peewee

from screenpop.daemon import i18n
from screenpop.daemon.auth import tokens
from screenpop.daemon.customers.lookup import Lookup
from screenpop.daemon.push.card import CardBuilder
from screenpop.daemon.push.layout import CardLayout
from screenpop.daemon.push.layouts import Layouts
from screenpop.daemon.record.pops import POP_COLUMNS, PopRow
from screenpop.daemon.staff import Staff
from screenpop.db.database import DatabaseUnreachable, guarded
from screenpop.db.worker import DbWorker

if TYPE_CHECKING:
    from screenpop.daemon.sources.fetch import Answer, Sources

log = logging.getLogger("screenpop.push")

QUEUE_MAX = 1000  # frames a subscriber may have waiting before it is cut off
EARLY_MAX = 100000  # pops pushed before they were stored, remembered until they are
REPLAY_PAGE = 500
REVOCATION_POLL_SECONDS = 1.0
ALL = "*"  # admin stream of every extension
ASKING_EVENTS = ("ringing", "dialing")  # pops whose number the sources are asked about (the ones that pop)


class Subscriber:
    """One open stream: an extension (or ALL), the token it came with, the language its pops are written in, and its
    queue of (id, frame)."""

    __slots__ = ("extension", "token_id", "language", "asked", "frames", "wake", "reason", "sock", "limit", "early")

    def __init__(self, extension: str, token_id: int | None, sock: Any = None, limit: int = QUEUE_MAX,
                 early: bool = True, setting: str | None = None, asked: str | None = None) -> None:
        """setting: the person's own language; asked: the tray's (Accept-Language); neither: [i18n] default_language."""
        self.extension = extension
        self.token_id = token_id
        self.asked = asked
        self.follow(setting)
        self.frames: deque[tuple[int | None, bytes]] = deque()
        self.wake = gevent.event.Event()
        self.reason = ""
        self.sock = sock
        self.limit = limit
        self.early = early  # gets pops as they are queued (push_queued), not only once stored

    def follow(self, setting: str | None) -> None:
        """Write this stream's pops in the person's setting, else in what the tray asked for, else the organisation's."""
        self.language = i18n.best(setting, self.asked) or i18n.default()

    def push(self, pop_id: int | None, frame: bytes) -> None:
        if self.reason:
            return
        if len(self.frames) >= self.limit:
            self.close("fell too far behind", abort=True)
            return
        self.frames.append((pop_id, frame))
        self.wake.set()

    def take(self) -> list[tuple[int | None, bytes]]:
        """Everything queued, in order; clears the wake-up."""
        self.wake.clear()
        out = list(self.frames)
        self.frames.clear()
        return out

    def close(self, reason: str, abort: bool = False) -> None:
        """End the stream; abort also shuts the socket, for a client too stuck to read the end of it."""
        if self.reason:
            return
        self.reason = reason
        self.frames.clear()
        self.wake.set()
        if abort and self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class PushHub:
    """Subscribers by extension, and the worker greenlet that builds and fans out cards."""

    def __init__(self, worker: DbWorker, lookup: Callable[[], Lookup], staff: Staff, layout: CardLayout,
                 public_url: str = "", queue_max: int = QUEUE_MAX, sources: Sources | None = None,
                 layouts: Layouts | None = None) -> None:
        """staff: the employee snapshot the cards take operator names from; layout: what the pops say; sources:
        where the cards' extra fields come from (none: cards without them); layouts: the admin's layouts per team
        (none: the built-in one for every pop)."""
        self.worker = worker
        self.sources = sources
        self.db = worker.db
        self.cards = CardBuilder(self.db, lookup, staff, layout, public_url, layouts)
        self.queue_max = queue_max
        self.subscribers: dict[str, set[Subscriber]] = {}
        self._watcher: gevent.Greenlet | None = None
        p = self.db.param
        self._sql_replay = f"SELECT {POP_COLUMNS} FROM call_event WHERE extension = {p} AND id > {p} ORDER BY id LIMIT {REPLAY_PAGE}"
        self._sql_replay_all = f"SELECT {POP_COLUMNS} FROM call_event WHERE id > {p} ORDER BY id LIMIT {REPLAY_PAGE}"
        self._sql_check = tokens.check_sql(p)
        # the language setting of the person a token's extension belongs to (daemon/auth/people.py: one enabled
        # person an extension), and the same for the open streams' tokens, with whether a token is revoked
        self._sql_language = f"SELECT language FROM person WHERE extension = {p} AND disabled_at IS NULL"
        self._sql_watch = ("SELECT t.id, t.revoked_at, p.language FROM api_token t LEFT JOIN person p "
                           "ON p.extension = t.extension AND p.disabled_at IS NULL WHERE t.id IN ({})")
        self._early: OrderedDict[tuple, set[Subscriber]] = OrderedDict()
        # pops sent as queued and not stored yet, in id order: id -> (the streams that had them, with their id or not)
        self._queued: OrderedDict[int, tuple[set[Subscriber], bool]] = OrderedDict()
        self._late: set[Subscriber] = set()  # streams that get pops only once stored, until nothing is in _queued

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Watch for revoked tokens; the cards are built on the database worker, which its owner starts."""
        self._watcher = gevent.spawn(self._watch_revocations)

    def close_all(self, reason: str) -> None:
        """End every open stream (the daemon is stopping)."""
        for subs in list(self.subscribers.values()):
            for sub in list(subs):
                sub.close(reason)

    def stop(self) -> None:
        self.close_all("daemon stopping")
        if self._watcher is not None:
            self._watcher.kill(timeout=2)

    # ---- the writer's side ---------------------------------------------------------------

    def push_committed(self, pops: list) -> None:
        """The writer's pops of a commit, to their streams (single daemon); never blocks the writer."""
        if pops:
            self.worker.post(self._build_and_fan_out, [PopRow.from_pending(p) for p in pops])

    def push_stored(self, rows: list[PopRow]) -> None:
        """Pops stored by any daemon, as the fan-out listener reads them in id order, to their streams."""
        self.worker.post(self._build_and_fan_out, rows)

    def push_early(self, pops: list) -> None:
        """Pops the database has not taken yet: out now from memory, no query, id-less; remembered per stream."""
        for pop in pops:
            row = PopRow.from_pending(pop)
            receivers = list(self.subscribers.get(row.extension, ())) + list(self.subscribers.get(ALL, ()))
            if not receivers:
                continue
            wanted = _wanted(receivers)
            frames = self.cards.frames(row, set(wanted.values()), offline=True, sources=self._sources(row))
            for sub, language in wanted.items():
                sub.push(None, frames[language])
            self._early[_key(row)] = set(receivers)
            while len(self._early) > EARLY_MAX:
                self._early.popitem(last=False)

    def push_queued(self, pop, shown: bool) -> None:
        """SQLite: a pop as the writer queues it, with the id it will be stored under (shown: trays may have that id;
        otherwise it goes without one), to its streams now; never blocks the writer."""
        row = PopRow.from_pending(pop)
        self.worker.post(self._fan_out_queued, row if shown else row._replace(id=None), pop.id)

    # ---- the HTTP side -------------------------------------------------------------------

    def subscribe(self, extension: str, token_id: int | None, sock: Any = None, setting: str | None = None,
                  asked: str | None = None) -> Subscriber:
        """A new stream of extension's pops, written in setting (the person's language), else asked (the tray's),
        else the organisation's."""
        # pops sent as queued but not stored yet would reach a new stream only after later ones: early only without
        sub = Subscriber(extension, token_id, sock, self.queue_max, early=not self._queued, setting=setting,
                         asked=asked)
        if not sub.early:
            self._late.add(sub)
        self.subscribers.setdefault(extension, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._late.discard(sub)
        subs = self.subscribers.get(sub.extension)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subscribers[sub.extension]

    def check_token(self, clear: str) -> tokens.TokenCheck:
        if not clear:
            return tokens.TokenCheck(None, reason="no token")
        row = self.worker.run(lambda: self.db.execute_sql(self._sql_check, (tokens.token_hash(clear),)).fetchone())
        return tokens.interpret(row)

    def language_setting(self, extension: str | None) -> str | None:
        """The language setting of the person whose extension it is (None: none set, or nobody's)."""
        if not extension:
            return None
        row = self.worker.run(lambda: self.db.execute_sql(self._sql_language, (extension,)).fetchone())
        return row[0] if row else None

    def replay(self, extension: str, after: int, language: str) -> Iterator[tuple[int, bytes]]:
        """Every stored pop of extension with id > after, as frames in language, in id order (read page by page)."""
        while True:
            page = self.worker.run(self._replay_page, extension, after, language)
            yield from page
            if len(page) < REPLAY_PAGE:
                return
            after = page[-1][0]

    def _replay_page(self, extension: str, after: int, language: str) -> list[tuple[int, bytes]]:
        if extension == ALL:
            rows = self.db.execute_sql(self._sql_replay_all, (after,)).fetchall()
        else:
            rows = self.db.execute_sql(self._sql_replay, (extension, after)).fetchall()
        pops = [PopRow(*row) for row in rows]
        return [(pop.id, self.cards.frames(pop, (language,), sources=self._sources(pop))[language]) for pop in pops]

    # ---- the worker ----------------------------------------------------------------------

    def _build_and_fan_out(self, rows: list[PopRow]) -> None:
        """On the database worker: the cards of stored pops, to their streams; on an error, those streams end."""
        try:
            guarded(self.db, self._fan_out, rows)
        except Exception as exc:
            # The pops are stored; whoever should have had them reconnects and replays them.
            if isinstance(exc, DatabaseUnreachable):
                pass  # logged once for the whole outage (db/database.py)
            elif isinstance(exc, peewee.DatabaseError):
                log.warning("could not build cards for %d pop(s) (%s); closing the streams concerned", len(rows), exc)
                self.worker.reconnect_later()
            else:
                log.exception("could not build cards for %d pop(s); closing the streams concerned", len(rows))
            for pop in rows:
                for sub in list(self.subscribers.get(pop.extension, ())) + list(self.subscribers.get(ALL, ())):
                    sub.close("card error", abort=True)

    def _fan_out(self, rows: list[PopRow]) -> None:
        firehose = self.subscribers.get(ALL)
        for row in rows:
            had_it = self._early.pop(_key(row), ()) if self._early else ()
            queued = self._stored(row.id) if self._queued else None
            subs = self.subscribers.get(row.extension)
            if not subs and not firehose:
                continue
            fresh = []  # the streams that never had it
            for sub in list(subs or ()) + list(firehose or ()):
                if queued is not None and sub in queued[0]:
                    if not queued[1]:
                        sub.push(row.id, f"id: {row.id}\n\n".encode())  # it went without its id: now it has one
                elif sub in had_it:
                    sub.push(row.id, f"id: {row.id}\n\n".encode())
                else:
                    fresh.append(sub)
            if fresh:  # the sources were asked if its card was built when it was queued
                wanted = _wanted(fresh)
                frames = self.cards.frames(row, set(wanted.values()),
                                           sources=self._sources(row, ask=not (queued and queued[0])))
                for sub, language in wanted.items():
                    sub.push(row.id, frames[language])
        if self._late and not self._queued:  # every pop sent as queued is stored: later ones may go to all as queued
            for sub in self._late:
                sub.early = True
            self._late.clear()

    def _fan_out_queued(self, row: PopRow, pop_id: int) -> None:
        """On the database worker: a pop not stored yet, to the streams that take pops as queued. Its card reads the
        customer's data; while the database fails, it is built from what is cached."""
        receivers = [sub for sub in list(self.subscribers.get(row.extension, ())) + list(self.subscribers.get(ALL, ()))
                     if sub.early]
        self._queued[pop_id] = (set(receivers), row.id is not None)
        if not receivers:
            return
        wanted = _wanted(receivers)
        languages = set(wanted.values())
        try:
            frames = guarded(self.db, self.cards.frames, row, languages, False, self._sources(row, ask=True))
        except peewee.DatabaseError as exc:
            if not isinstance(exc, DatabaseUnreachable):
                log.warning("could not build the card of pop %s (%s); sending it from what is cached", pop_id, exc)
                self.worker.reconnect_later()
            frames = self.cards.frames(row, languages, True, self._sources(row))
        for sub, language in wanted.items():
            sub.push(row.id, frames[language])

    def _stored(self, pop_id: int) -> tuple[set[Subscriber], bool] | None:
        """A pop sent as queued is stored now: who had it; pops drawn before it and never stored (the write queue
        was full) are forgotten."""
        while self._queued:
            first = next(iter(self._queued))
            if first > pop_id:
                return None
            had = self._queued.pop(first)
            if first == pop_id:
                return had
        return None

    # ---- the sources ---------------------------------------------------------------------

    def _sources(self, row: PopRow, ask: bool = False) -> Answer | None:
        """What the sources say about a pop's number now; ask: a live pop that rings, whose update follows."""
        if not self.sources or row.direction == "INTERNAL":
            return None
        if ask and row.event in ASKING_EVENTS:
            return self.sources.ask(row.number, lambda answer: self.worker.post(self._update, row, answer))
        return self.sources.peek(row.number)

    def _update(self, row: PopRow, answer: Answer) -> None:
        """On the database worker: the card again with the sources' answer, to the streams of its extension now
        (a stream that never had the pop ignores it). Nothing when the sources add nothing."""
        receivers = list(self.subscribers.get(row.extension, ())) + list(self.subscribers.get(ALL, ()))
        if not receivers or not answer.adds:
            return
        wanted = _wanted(receivers)
        languages = set(wanted.values())
        try:
            frames = guarded(self.db, self.cards.frames, row, languages, False, answer, True)
        except peewee.DatabaseError as exc:
            if not isinstance(exc, DatabaseUnreachable):
                log.warning("could not build the update of pop %s (%s); sending it from what is cached", row.id, exc)
                self.worker.reconnect_later()
            frames = self.cards.frames(row, languages, True, answer, True)
        for sub, language in wanted.items():
            sub.push(None, frames[language])

    def _watch_revocations(self) -> None:
        """A token revoked (by `screenpop token revoke`, another process) ends its open streams within a second; a
        person's language changed on their account writes their streams' next pops in it."""
        while True:
            gevent.sleep(REVOCATION_POLL_SECONDS)
            ids = sorted({s.token_id for subs in self.subscribers.values() for s in subs if s.token_id is not None})
            if not ids:
                continue
            sql = self._sql_watch.format(", ".join([self.db.param] * len(ids)))
            try:
                found = {row[0]: row[1:] for row in self.worker.run(lambda: self.db.execute_sql(sql, ids).fetchall())}
            except DatabaseUnreachable:
                continue  # logged once for the whole outage (db/database.py)
            except Exception as exc:
                log.warning("could not check for revoked tokens: %s", exc)
                continue
            for subs in list(self.subscribers.values()):
                for sub in list(subs):
                    revoked_at, language = found.get(sub.token_id, (None, None))
                    if revoked_at is not None:
                        log.warning("token %d was revoked: ending its stream for extension %s", sub.token_id, sub.extension)
                        sub.close("token revoked")
                    else:
                        sub.follow(language)


def _wanted(subs: list[Subscriber]) -> dict[Subscriber, str]:
    """Each stream's language as a pop's frames are built (a person's new setting may arrive while they are): one
    frame per language, however many streams read it."""
    return {sub: sub.language for sub in subs}


def _key(row: PopRow) -> tuple:
    """What identifies a pop before and after it is stored (the database gives back the same time)."""
    at = row.at.isoformat(" ") if isinstance(row.at, dt.datetime) else str(row.at)
    return row.uuid, row.extension, row.event, at
