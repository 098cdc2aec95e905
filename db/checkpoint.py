"""SQLite's WAL checkpoints off the event loop, so the daemon's one loop never stops for one.

By default SQLite checkpoints inside whichever commit takes the WAL past 1000 pages: that commit copies ~4 MB
into the database file and fsyncs it, 5–30 ms on a quiet disk and hundreds under other processes' writes, during
which the daemon's event loop does nothing else (no event read, no pop sent). The daemon turns that off on its
connections (wal_autocheckpoint 0) and the writer drives checkpoints instead (`tick` between its transactions and
when idle), on a native thread with a connection of its own, so the copying and the fsyncs run without the GIL:

1. every CHECKPOINT_SECONDS a PASSIVE checkpoint starts in the background while the writer goes on writing
   (PASSIVE takes no lock a writer needs);
2. once it is done, the writer (between two transactions) waits, without holding up the loop, for a RESTART
   checkpoint that copies only what it wrote meanwhile and then starts the WAL again from its beginning. Without
   it a writer that never pauses would grow the WAL for ever. That one waits at most RESTART_WAIT_MS for the
   loop's readers (microseconds each); a long reader (a report) makes it give up until the next interval.
   While it runs it holds SQLite's writer lock, so the database worker (db/worker.py) starts no step until it is
   done (`quiet`): a transaction that reads before it writes fails at once, without waiting, when it finds that lock
   taken.
"""
from __future__ import annotations

import logging
import sqlite3
import time

import gevent
import gevent.event
import peewee

log = logging.getLogger("screenpop.database")

CHECKPOINT_SECONDS = 1.0  # how often: at 100 calls/s the daemon writes ~15 MB of WAL frames a second
RESTART_WAIT_MS = 20  # how long the second checkpoint waits for readers to leave the WAL (the writer waits too)


class Checkpointer:
    """The WAL checkpoints of one SQLite database, run on a native thread when the writer's tick says so."""

    def __init__(self, db: peewee.SqliteDatabase, interval: float = CHECKPOINT_SECONDS) -> None:
        """db: the daemon's database; its connections opened from now on never checkpoint inside a commit."""
        self.path = db.database
        self.interval = interval
        db.pragma("wal_autocheckpoint", 0, permanent=True)
        self._conn: sqlite3.Connection | None = None
        self._pass: gevent.event.AsyncResult | None = None  # the checkpoint running on the pool, if any
        self._background = False  # that one is step 1's
        self._next = time.monotonic() + interval
        self._failing = False
        self._stopped = False
        self.quiet = gevent.event.Event()  # clear while a RESTART checkpoint holds the writer lock
        self.quiet.set()

    def tick(self) -> None:
        """From the writer, between its transactions: finish a background checkpoint that is done (waiting only
        for the pages written since it started), and start the next when due. Never raises."""
        if self._stopped:
            return
        if self._background and self._pass is not None and self._pass.ready():
            error = self._pass.get()
            if error is None:
                self.quiet.clear()
                try:
                    self._pass, self._background = self._run("RESTART"), False
                    error = self._pass.get()
                finally:
                    self.quiet.set()
            self._pass = None
            if error is not None:
                self._failed(error)
            else:
                self._worked()
        if self._pass is None and not self._stopped and time.monotonic() >= self._next:  # stop() may come meanwhile
            self._next = time.monotonic() + self.interval
            self._pass, self._background = self._run("PASSIVE"), True

    def stop(self) -> None:
        """No more checkpoints; wait for one still running, then close (the last connection to close checkpoints
        the rest, as SQLite always does)."""
        self._stopped = True
        if self._pass is not None:
            self._pass.wait(timeout=10)
            self._pass = None
        self._close()

    def _run(self, mode: str) -> gevent.event.AsyncResult:
        return gevent.get_hub().threadpool.spawn(self._checkpoint, mode)

    def _checkpoint(self, mode: str) -> sqlite3.Error | None:
        """On a pool thread: one checkpoint; its error returned, not raised (the pool would print it). A RESTART
        that readers kept from finishing is no error: the next one finishes it."""
        try:
            if self._conn is None:
                # one checkpoint at a time, not always on the same pool thread
                self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS if mode == 'RESTART' else 0}")
            self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error as exc:
            return exc
        return None

    def _failed(self, exc: sqlite3.Error) -> None:
        if not self._failing:  # once per run of failures; the writer logs the database's own trouble
            log.warning("WAL checkpoint of %s failed (%s); trying again every %g s", self.path, exc, self.interval)
        self._failing = True
        self._close()

    def _worked(self) -> None:
        if self._failing:
            log.info("WAL checkpoints of %s work again", self.path)
            self._failing = False

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
