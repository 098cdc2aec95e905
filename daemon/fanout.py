"""Pops across daemons through PostgreSQL: writers NOTIFY on commit, every daemon LISTENs and pushes in id order.

The writer side (Publisher) runs inside each write transaction: it takes a transaction-level advisory lock
just before inserting the pops and NOTIFYs the highest new CallEvent id in the insert's own statement. The
lock makes CallEvent ids follow commit order across all daemons (a lower id is committed, or rolled back,
before a higher one is handed out), so "every pop with id > N" is complete once a pop with id N has been
seen, and a notification means a commit. The listening side (Listener) keeps a watermark, the highest id it has pushed, and on each
notification (and once a second, which also proves the connection alive) reads every row above it in one
query and hands them to the push hub in id order. A lost connection is reopened and catches up from the
watermark: nothing is skipped, nothing repeated. Every pop a tray sees, its own daemon's included, takes
this path, so each daemon's trays get pops in one order whatever node the call is on.

PostgreSQL only: on SQLite the daemon is single-node and pushes its pops straight after commit.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import gevent
import peewee

from screenpop.daemon.card import POP_COLUMNS, PopRow
from screenpop.db.database import pg_session

log = logging.getLogger("screenpop.fanout")

PAGE = 500
IDLE_CHECK_SECONDS = 1.0
RECONNECT_MIN, RECONNECT_MAX = 0.2, 5.0


def advisory_key(text: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (same on every daemon and Python version)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def first_line(exc: BaseException) -> str:
    """psycopg's messages run over several lines; the first says what happened."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def current_schema(db: peewee.Database) -> str:
    """The schema the tables live in: one deployment per schema, so locks and channels are named by it."""
    return db.execute_sql("SELECT current_schema()").fetchone()[0]


class Publisher:
    """The writer's part: order pops across daemons and announce them, inside the write transaction."""

    def __init__(self, schema: str) -> None:
        self.channel = channel_name(schema)
        self.order_key = advisory_key(f"screenpop/{schema}/call_event")

    def order_lock(self) -> tuple[str, tuple]:
        """The statement to run just before the pops' ids are drawn; held until commit, so pops of concurrent
        writers get ids in the order they commit."""
        return "SELECT pg_advisory_xact_lock(%s)", (self.order_key,)

    def announce(self, insert_sql: str) -> str:
        """insert_sql (an INSERT ... RETURNING id) made to also NOTIFY its highest id, delivered only on commit."""
        return f"WITH new AS ({insert_sql}) SELECT array_agg(id ORDER BY id), pg_notify(%s, max(id)::text) FROM new"


def channel_name(schema: str) -> str:
    """The NOTIFY channel of a deployment (identifiers stop at 63 bytes)."""
    return f"screenpop.{schema}"[:63]


class Listener:
    """One greenlet on a connection of its own: LISTEN, read new pops above the watermark, deliver them in order."""

    def __init__(self, db: peewee.Database, schema: str, deliver: Callable[[list[PopRow]], None]) -> None:
        self.db = db
        self.channel = channel_name(schema)
        self.deliver = deliver
        self.watermark: int | None = None
        self.connected = False
        self._greenlet: gevent.Greenlet | None = None
        # The upper bound makes it a range on the primary key, which PostgreSQL reads by index even before the
        # table has statistics (a new deployment's first minute: "id > N" alone was a sequential scan and a sort).
        self._sql_after = (f"SELECT {POP_COLUMNS} FROM call_event WHERE id > %s "
                           f"AND id <= (SELECT max(id) FROM call_event) ORDER BY id LIMIT {PAGE}")

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(timeout=2)

    def _run(self) -> None:
        import psycopg

        backoff = RECONNECT_MIN
        while True:
            conn = None
            try:
                conn = pg_session(self.db)
                conn.execute(f'LISTEN "{self.channel}"')
                if self.watermark is None:
                    self.watermark = conn.execute("SELECT coalesce(max(id), 0) FROM call_event").fetchone()[0]
                    log.info("listening for pops of every daemon on this database (from id %d)", self.watermark)
                else:
                    log.info("fan-out connection back; catching up after pop %d", self.watermark)
                self.connected = True
                backoff = RECONNECT_MIN
                self._follow(conn)
            except (psycopg.Error, OSError) as exc:
                if self.connected:
                    log.warning("fan-out connection to PostgreSQL lost (%s); reconnecting", first_line(exc))
                self.connected = False
            finally:
                if conn is not None:
                    conn.close()
            gevent.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    def _follow(self, conn) -> None:
        """Catch up, then wait for a notification (or a second) and catch up again, until the connection fails."""
        while True:
            self._catch_up(conn)
            while True:
                notes = list(conn.notifies(timeout=IDLE_CHECK_SECONDS, stop_after=1))
                if not notes or any(not n.payload.isdigit() or int(n.payload) > self.watermark for n in notes):
                    break  # new pops, or a quiet second: read (a dead connection fails here)

    def _catch_up(self, conn) -> None:
        while True:
            rows = [PopRow(*row) for row in conn.execute(self._sql_after, (self.watermark,)).fetchall()]
            if not rows:
                return
            self.watermark = rows[-1].id
            self.deliver(rows)
            if len(rows) < PAGE:
                return
