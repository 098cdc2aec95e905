"""Pops across daemons through PostgreSQL: writers NOTIFY on commit, every daemon LISTENs and pushes in id order.

The writer side (Publisher) runs inside each write transaction: it takes a transaction-level advisory lock
before writing and NOTIFYs the new pops (or, if they are too many for a notification, their highest id) in
the pop insert's own statement. The lock makes CallEvent ids follow commit order across all daemons (a
lower id is committed, or rolled back, before a higher one is handed out), so "every pop with id > N" is
complete once a pop with id N has been seen, and a notification means a commit. The listening side
(Listener) keeps a watermark, the highest id it has pushed. A notification whose pops start right after it
is pushed as it is; on any other (and once a second, which also proves the connection alive) it reads every
row above the watermark in one query. Either way the push hub gets the pops in id order. A lost connection
is reopened and catches up from the watermark: nothing is skipped, nothing repeated. Every pop a tray sees,
its own daemon's included, takes this path, so each daemon's trays get pops in one order whatever node the
call is on.

PostgreSQL only: on SQLite the daemon is single-node and pushes its pops straight after commit.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable

import gevent
import peewee

from screenpop.daemon.record.pops import POP_COLUMNS, PopRow
from screenpop.db.database import first_line, outage, pg_session

log = logging.getLogger("screenpop.fanout")

PAGE = 500
MAX_PAYLOAD = 7900  # PostgreSQL refuses a notification payload of 8000 bytes or more
IDLE_CHECK_SECONDS = 1.0
RECONNECT_MIN, RECONNECT_MAX = 0.2, 5.0
# JSON writes a timestamp with its trailing zeros cut ("…:41.5"), which Python 3.10's fromisoformat refuses:
# notifications carry "at" with all six digits of microseconds
_NOTIFIED_COLUMNS = POP_COLUMNS.replace('"at"', """to_char("at", 'YYYY-MM-DD"T"HH24:MI:SS.US')""")


def advisory_key(text: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (same on every daemon and Python version)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def current_schema(db: peewee.Database) -> str:
    """The schema the tables live in: one deployment per schema, so locks and channels are named by it."""
    return db.execute_sql("SELECT current_schema()").fetchone()[0]


class Publisher:
    """The writer's part: order pops across daemons and announce them, inside the write transaction."""

    def __init__(self, schema: str) -> None:
        self.channel = channel_name(schema)
        self.order_key = advisory_key(f"screenpop/{schema}/call_event")

    def order_lock(self) -> tuple[str, tuple]:
        """The statement to run before the transaction writes anything (docs/cluster.md: before any row lock, so
        two writers cannot deadlock); held until commit, so pops of concurrent writers get ids in commit order."""
        return "SELECT pg_advisory_xact_lock(%s)", (self.order_key,)

    def announce(self, insert_sql: str) -> str:
        """insert_sql (an INSERT ... RETURNING the POP_COLUMNS) made to return the new ids and to NOTIFY, on commit,
        the new pops themselves (a JSON array of rows) or, when they would not fit a notification, the highest id."""
        rows = f"json_agg(json_build_array({_NOTIFIED_COLUMNS}) ORDER BY id)::text"
        return (f"WITH new AS ({insert_sql}), batch AS (SELECT array_agg(id ORDER BY id) AS ids, max(id) AS top, "
                f"{rows} AS rows FROM new) SELECT ids, pg_notify(%s, CASE WHEN octet_length(rows) <= "
                f"{MAX_PAYLOAD} THEN rows ELSE top::text END) FROM batch")


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
                outage.worked()
                backoff = RECONNECT_MIN
                self._follow(conn)
            except (psycopg.Error, OSError) as exc:
                if self.connected:
                    log.info("fan-out connection to PostgreSQL lost (%s); reconnecting", first_line(exc))
                outage.failed(exc)
                self.connected = False
            finally:
                if conn is not None:
                    conn.close()
            gevent.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    def _follow(self, conn) -> None:
        """Catch up, then wait for a notification (or a second) and catch up again, until the connection fails.

        A notification that carries its pops, and whose first id follows the watermark, is delivered as it is:
        ids follow commit order, so nothing lies between. Anything else (a gap left by a rolled-back batch, an
        id-only payload, a quiet second) is read from the table.
        """
        while True:
            self._catch_up(conn)
            while True:
                notes = list(conn.notifies(timeout=IDLE_CHECK_SECONDS, stop_after=1))
                if not notes:
                    break  # a quiet second: read (a dead connection fails here)
                if not all(self._take(note.payload) for note in notes):
                    break

    def _take(self, payload: str) -> bool:
        """Deliver the pops a notification carries if they follow the watermark; False if the table must be read."""
        if payload.isdigit():
            return int(payload) <= self.watermark
        try:
            rows = [PopRow(*row[:4], dt.datetime.fromisoformat(row[4]), *row[5:]) for row in json.loads(payload)]
            if not all(type(row.id) is int for row in rows):
                raise TypeError("an id that is not an integer")
        except (ValueError, TypeError, IndexError):
            log.warning("fan-out notification that is not a list of pops: ignored, reading the table instead")
            return False
        rows = [row for row in rows if row.id > self.watermark]
        if not rows:
            return True
        if rows[0].id != self.watermark + 1:
            return False
        self.watermark = rows[-1].id
        self.deliver(rows)
        return True

    def _catch_up(self, conn) -> None:
        while True:
            rows = [PopRow(*row) for row in conn.execute(self._sql_after, (self.watermark,)).fetchall()]
            if not rows:
                return
            self.watermark = rows[-1].id
            self.deliver(rows)
            if len(rows) < PAGE:
                return
