"""Redundant daemons on one FreeSWITCH node: exactly one records it, the holder of a PostgreSQL advisory lock.

Every daemon on PostgreSQL competes for the session-level lock named by its schema and node (``node`` in the
config) on a connection of its own. The holder connects to FreeSWITCH and records; the others keep serving
their trays (daemon/push/fanout.py) and try again every ``poll_interval``. A holder that dies ends its session and
frees the lock at once; one that hangs stops answering, and ``idle_session_timeout`` (``hang_timeout``) ends
its session on the server. The next holder waits on a fence lock for the write transactions a previous holder
started before it lost the lock, then loads the node's open calls and resyncs from FreeSWITCH.

The fence: every write transaction first takes the fence lock shared and checks that this daemon's lock
session still holds the node; otherwise it fails and nothing is written. So a holder that lost the node (a
hang, a network cut) can never write after the next holder has read the calls it resumes from.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.event
import peewee

from screenpop.daemon.push.fanout import advisory_key
from screenpop.db.database import first_line, pg_session

log = logging.getLogger("screenpop.cluster")


class NotHolder(peewee.OperationalError):
    """This daemon does not (or no longer provably) hold its node: a write now could double another's."""


class Election:
    """The lock connection's greenlet: acquire, keep (ping), notice a loss, and tell the daemon."""

    def __init__(self, db: peewee.Database, schema: str, node: str, poll_interval: float, hang_timeout: float,
                 on_acquired: Callable[[], None], on_lost: Callable[[], None],
                 on_standby: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.node = node
        self.key = advisory_key(f"screenpop/{schema}/node/{node}")
        self.fence_key = advisory_key(f"screenpop/{schema}/node/{node}/fence")
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        self._lock_ids = (unsigned >> 32, unsigned & 0xFFFFFFFF)  # how pg_locks shows a bigint advisory key
        self.poll_interval = poll_interval
        self.hang_timeout = hang_timeout
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.on_standby = on_standby
        self.holding = False  # recording this node (kept through a lost lock connection until it is proven lost)
        self.pid: int | None = None  # backend pid of the lock session while it holds the lock
        self._last_pid: int | None = None  # ... and of the last one that did (its session may outlive our side)
        self.held = gevent.event.Event()  # set while pid is: the writer waits on it to retry as soon as the lock is back
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(timeout=2)

    def fence_statements(self) -> list[tuple[str, tuple]]:
        """First in every write transaction, in this order: hold off a taker-over (lock), prove the node is ours.

        The proof fails the statement, and with it the transaction, when this daemon's lock session no longer
        holds the node (db/migrations.py, migration 8): the writer sends its whole batch in one round trip.
        """
        pid = self.pid
        if pid is None:
            raise NotHolder(f"not holding node {self.node!r} right now")
        timeout_ms = str(int(self.hang_timeout * 1000))
        return [("SELECT set_config('idle_in_transaction_session_timeout', %s, true), "
                 "pg_advisory_xact_lock_shared(%s)", (timeout_ms, self.fence_key)),
                ("SELECT screenpop_hold_node(%s, %s, %s)", (pid, *self._lock_ids))]

    def _run(self) -> None:
        import psycopg

        waiting_logged = False
        while True:
            conn = None
            try:
                conn = pg_session(self.db, idle_session_timeout=f"{int(self.hang_timeout * 1000)}ms")
                while not conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]:
                    if self.holding and self._holder(conn) not in (None, self._last_pid):
                        log.error("another daemon took node %r over while this one was cut off; stopping recording",
                                  self.node)
                        self.holding = False
                        self.on_lost()
                        return
                    if not waiting_logged and not self.holding:
                        log.info("standby for node %r: another daemon records it; taking over when it stops", self.node)
                        waiting_logged = True
                        self.on_standby()
                    gevent.sleep(self.poll_interval)
                conn.execute("SELECT pg_advisory_lock(%s)", (self.fence_key,))  # a previous holder's writes end
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.fence_key,))
                self.pid = self._last_pid = conn.info.backend_pid
                self.held.set()
                if self.holding:
                    log.warning("node %r is still ours after the lock connection came back", self.node)
                else:
                    self.holding = True
                    log.info("this daemon records node %r now (PostgreSQL lock held)", self.node)
                    gevent.spawn(self.on_acquired)  # the lock session must keep pinging meanwhile
                self._keep(conn)
            except (psycopg.Error, OSError) as exc:
                if self.holding and self.pid is not None:
                    log.error("lost the lock connection for node %r (%s); still recording, writes wait until the "
                              "lock is ours again", self.node, first_line(exc))
                self.pid = None
                self.held.clear()
            finally:
                if conn is not None:
                    conn.close()
            gevent.sleep(self.poll_interval)

    def _holder(self, conn) -> int | None:
        """The backend pid holding the node's lock, if any."""
        row = conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid::bigint = %s "
                           "AND objid::bigint = %s AND objsubid = 1", self._lock_ids).fetchone()
        return row[0] if row else None

    def _keep(self, conn) -> None:
        """Ping the lock session well within hang_timeout; a ping that hangs counts as a lost connection."""
        while True:
            gevent.sleep(self.hang_timeout / 3)
            with gevent.Timeout(self.hang_timeout, TimeoutError("the lock connection did not answer")):
                conn.execute("SELECT 1")
