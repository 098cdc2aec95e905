"""The database worker: one greenlet with a connection of its own, running in order the short database steps of
the HTTP side (API, pages, token checks, replays, photos), the CDR intake and the push hub's card building, so
none of them holds up the call writer's connection or waits on it.

On SQLite another connection can hold the writer lock while the loop runs: the WAL checkpoint's thread
(db/checkpoint.py; the worker waits for it to finish) or another process (`screenpop import`). A transaction that
read before writing then fails at once, without SQLite's busy wait; the worker runs it again after a pause that lets
the loop go on, for up to BUSY_RETRY_SECONDS."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.queue
import peewee

from screenpop.db.database import guarded, sqlite_busy

log = logging.getLogger("screenpop.db")
BUSY_PAUSES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 1.0, 1.0)  # seconds between tries of a refused transaction
BUSY_RETRY_SECONDS = sum(BUSY_PAUSES)


class DbWorker:
    """Steps queued in order for one greenlet: `run` and `atomic` wait for their result, `post` does not."""

    def __init__(self, db: peewee.Database, quiet: gevent.event.Event | None = None) -> None:
        """quiet: set while no other connection of this process holds SQLite's writer lock (the checkpointer's)."""
        self.db = db
        self._quiet = quiet
        self._jobs: gevent.queue.Queue = gevent.queue.Queue()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._work)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(timeout=2)

    def run(self, fn: Callable, *args: Any, timeout: float = 15.0) -> Any:
        """fn(*args) on the worker greenlet (its database connection), its result returned or its error raised."""
        result = gevent.event.AsyncResult()
        self._jobs.put((fn, args, result))
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            raise peewee.OperationalError(f"the database did not answer within {timeout:g} s") from None

    def atomic(self, fn: Callable, *args: Any) -> Any:
        """fn(*args) on the worker greenlet inside one transaction (the API's and the web pages' database steps); a
        transaction SQLite refused because another connection was writing is rolled back and run again."""
        def tx():
            for pause in (*BUSY_PAUSES, None):
                try:
                    with self.db.atomic():
                        return fn(*args)
                except peewee.OperationalError as exc:
                    if pause is None or not sqlite_busy(exc):
                        raise
                log.debug("database busy; %s again in %g s", getattr(fn, "__qualname__", fn), pause)
                gevent.sleep(pause)
        return self.run(tx)

    def post(self, fn: Callable, *args: Any) -> None:
        """fn(*args) on the worker greenlet, in turn, without waiting; fn handles its own errors."""
        self._jobs.put((fn, args, None))

    def reconnect_later(self) -> None:
        """Drop the worker's connection after a database error; the next step opens a fresh one."""
        try:
            self.db.close()
        except peewee.PeeweeException:
            pass

    def _work(self) -> None:
        while True:
            fn, args, result = self._jobs.get()
            if self._quiet is not None:
                self._quiet.wait()
            if result is None:
                try:
                    fn(*args)
                except Exception:
                    log.exception("database worker step %s failed", getattr(fn, "__qualname__", fn))
                continue
            try:
                result.set(guarded(self.db, fn, *args))
            except Exception as exc:
                if isinstance(exc, peewee.DatabaseError):
                    self.reconnect_later()
                result.set_exception(exc)
