"""SQL sources: a query run with the caller's number bound as parameters ({e164}, {national}, {digits}); its first
row's columns are the card's fields, by name.

PostgreSQL through psycopg 3 and MariaDB/MySQL through PyMySQL, each on a few pooled read-only connections: both
wait on sockets, which gevent's monkey-patching makes cooperative (PyMySQL is pure Python; psycopg notices the
patching and waits through it), so a slow database holds up only its own lookup. Their socket and server-side
timeouts bound a lookup too where nothing is patched. SQLite's sqlite3 blocks the thread it runs in, so its queries
run in a small thread pool of their own, on a read-only connection made for each, interrupted at the timeout.
"""
from __future__ import annotations

import abc
import math
import sqlite3
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import gevent.lock
import gevent.threadpool

from screenpop.daemon.config import ConfigError, SourceConfig
from screenpop.daemon.sources.source import PLACEHOLDER, Source
from screenpop.db.numbers import NumberForms

POOL = 4  # connections (SQLite: threads) one source uses at most at once

Row = tuple[list[str], tuple | None]


class SqlSource(Source):
    """A [[sources]] entry of type sql."""

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        if not PLACEHOLDER.search(config.query):
            raise ConfigError("[[sources]] %(name)s: the query must use the number: {e164}, {national} or {digits}",
                              name=config.name)
        url = config.url.replace("{secret}", quote(config.secret(), safe=""))
        scheme = urlsplit(url).scheme.lower()
        if scheme == "sqlite":
            self.driver: _Sqlite | _Pooled = _Sqlite(url, config)
            self.sql = PLACEHOLDER.sub(r":\1", config.query)
        else:
            self.driver = (_Postgres if scheme.startswith("postgres") else _MySql)(url, config)
            self.sql = PLACEHOLDER.sub(r"%(\1)s", config.query.replace("%", "%%"))

    def lookup(self, forms: NumberForms) -> dict[str, Any] | None:
        names, row = self.driver.first_row(self.sql, {"e164": forms.e164, "national": forms.national,
                                                      "digits": forms.digits})
        if row is None:
            return None
        self.check_size(sum(len(v) if isinstance(v, (str, bytes)) else 16 for v in row))
        return dict(zip(names, row))


class _Pooled(abc.ABC):
    """A few open connections, one lookup on each at a time; a connection an error or the timeout cut short is
    closed (its state is unknown), the others are kept."""

    def __init__(self, url: str, config: SourceConfig) -> None:
        self.url = url
        self.timeout = config.timeout
        self._idle: list[Any] = []
        self._slots = gevent.lock.BoundedSemaphore(POOL)

    @abc.abstractmethod
    def connect(self) -> Any:
        """A new connection to the source's database."""

    @abc.abstractmethod
    def run(self, conn: Any, sql: str, params: dict[str, str]) -> Row:
        """The query's column names and first row (None: no row) on conn."""

    def first_row(self, sql: str, params: dict[str, str]) -> Row:
        with self._slots:
            conn = self._idle.pop() if self._idle else self.connect()
            try:
                out = self.run(conn, sql, params)
            except BaseException:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - it is being dropped
                    pass
                raise
            self._idle.append(conn)
            return out


class _Postgres(_Pooled):
    """psycopg 3 (imported here, after the daemon's monkey-patching): read-only, the server ends a query at the
    timeout too."""

    def connect(self) -> Any:
        import psycopg

        ms = max(1, int(self.timeout * 1000))
        return psycopg.connect(self.url, autocommit=True, connect_timeout=max(2, math.ceil(self.timeout)),
                               options=f"-c statement_timeout={ms} -c default_transaction_read_only=on")

    def run(self, conn: Any, sql: str, params: dict[str, str]) -> Row:
        cur = conn.execute(sql, params)
        names = [d.name for d in cur.description or ()]
        return names, cur.fetchone() if cur.description else None


class _MySql(_Pooled):
    """PyMySQL: read-only sessions, socket timeouts of the source's timeout."""

    def connect(self) -> Any:
        import pymysql

        u = urlsplit(self.url)
        return pymysql.connect(host=u.hostname or "localhost", port=u.port or 3306, user=unquote(u.username or ""),
                               password=unquote(u.password or ""), database=unquote(u.path.lstrip("/")) or None,
                               connect_timeout=self.timeout, read_timeout=self.timeout, write_timeout=self.timeout,
                               charset="utf8mb4", autocommit=True, init_command="SET SESSION TRANSACTION READ ONLY")

    def run(self, conn: Any, sql: str, params: dict[str, str]) -> Row:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            names = [d[0] for d in cur.description or ()]
            return names, cur.fetchone() if cur.description else None


class _Sqlite:
    """sqlite3 in threads of the source's own pool: a read-only connection per query, made, used and closed in
    that thread; at the timeout the waiting greenlet interrupts the query (sqlite3 allows that from any thread)."""

    def __init__(self, url: str, config: SourceConfig) -> None:
        path = unquote(urlsplit(url).path)
        if path in ("", "/"):
            raise ConfigError("[[sources]] %(name)s: the sqlite url names no file (sqlite:///absolute/path.db)",
                              name=config.name)
        self.uri = f"file:{quote('/' + path.lstrip('/'))}?mode=ro"
        self.timeout = config.timeout
        self._pool = gevent.threadpool.ThreadPool(POOL)

    def first_row(self, sql: str, params: dict[str, str]) -> Row:
        opened: list[sqlite3.Connection] = []
        result = self._pool.spawn(self._query, opened, sql, params)
        try:
            out = result.get()
        except BaseException:  # the timeout (or the daemon stopping): the thread's query is cut short
            if opened:
                try:
                    opened[0].interrupt()
                except sqlite3.Error:
                    pass  # it ended meanwhile
            raise
        if isinstance(out, Exception):
            raise out
        return out

    def _query(self, opened: list[sqlite3.Connection], sql: str, params: dict[str, str]) -> Row | Exception:
        """In a pool thread; its error is given back, not raised (gevent's pool would print it)."""
        try:
            conn = sqlite3.connect(self.uri, uri=True, timeout=self.timeout, check_same_thread=False)
        except sqlite3.Error as exc:
            return exc
        opened.append(conn)
        try:
            cur = conn.execute(sql, params)
            return [d[0] for d in cur.description or ()], cur.fetchone() if cur.description else None
        except sqlite3.Error as exc:
            return exc
        finally:
            conn.close()
