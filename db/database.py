"""Open the configured database from its URL and bind the models to it."""
from __future__ import annotations

import errno
import logging
import os
import re
import select
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee

from screenpop.db import models

log = logging.getLogger("screenpop.database")
T = TypeVar("T")
SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),
    ("synchronous", "normal"),
    ("foreign_keys", 1),
    ("busy_timeout", 10000),
)
PG_CONNECT_TIMEOUT = "5"
# A server gone silent (network cut, host down) fails a query within seconds instead of TCP's minutes.
PG_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2", "keepalives_count": "2",
                 "tcp_user_timeout": "5000"}
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class DatabaseUrlError(ValueError):
    """The database URL is not one screenpop can open. message is the catalogue's msgid, translated where it is shown
    (db/ knows no language), its %(name)s placeholders filled from variables; str() is the English text."""

    def __init__(self, message: str, **variables: Any) -> None:
        super().__init__(message % variables if variables else message)
        self.message = message
        self.variables = variables


class DatabaseUnreachable(peewee.OperationalError):
    """A database step failed because the connection is gone or cannot be made (logged once per outage)."""


def open_database(url: str) -> peewee.Database:
    """Open sqlite:///path or postgresql://user@host:port/db[?schema=NAME], bind the models to it and return it.

    The connection is made now, so a wrong path or unreachable server fails at start-up, not on the first call.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        db = _open_sqlite(url)
    elif scheme in ("postgresql", "postgres"):
        db = _open_postgres(url)
    else:
        raise DatabaseUrlError("unsupported database URL %(url)s: use sqlite:///absolute/path.db or "
                               "postgresql://user@host:port/dbname", url=repr(_redact(url)))
    models.database.initialize(db)
    return db


def private_dir(path: Path) -> None:
    """Create the folder path and any missing parents with mode 0700, whatever the umask: the state directory holds
    the session signing key, token hashes and customer data. A folder that exists is left as it is."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: theirs
            continue
        os.chmod(folder, 0o700)


def _private_file(path: str) -> None:
    """Create an empty database file with mode 0600 (SQLite gives its -wal and -shm files the same mode)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _open_sqlite(url: str) -> peewee.SqliteDatabase:
    """An SQLite file in WAL mode; its folder is created so a fresh install just works, both private."""
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment:
        raise DatabaseUrlError("SQLite URL must be sqlite:///absolute/path.db, got %(url)s", url=repr(url))
    path = unquote(parts.path)
    if path in ("", "/"):
        raise DatabaseUrlError("SQLite URL %(url)s names no file", url=repr(url))
    path = "/" + path.lstrip("/")
    private_dir(Path(path).parent)
    _private_file(path)
    db = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10)
    db.connect()
    return db


def _open_postgres(url: str) -> peewee.Database:
    """A PostgreSQL database through psycopg 3; ?schema=NAME sets (and creates) the search_path."""
    from playhouse.postgres_ext import Psycopg3Database  # lazy: pulls in psycopg after gevent has patched

    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise DatabaseUrlError("PostgreSQL URL %(url)s names no database (postgresql://user@host:port/dbname)",
                               url=repr(_redact(url)))
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = params.pop("schema", None)
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise DatabaseUrlError("schema %(schema)s must be a plain identifier (letters, digits, _; at most 63)",
                               schema=repr(schema))
    if parts.hostname:
        params.setdefault("host", parts.hostname)
    try:
        port = parts.port
    except ValueError as exc:
        raise DatabaseUrlError("PostgreSQL URL %(url)s: bad port", url=repr(_redact(url))) from exc
    if port:
        params.setdefault("port", str(port))
    if parts.username:
        params.setdefault("user", unquote(parts.username))
    if parts.password:
        params.setdefault("password", unquote(parts.password))
    params.setdefault("connect_timeout", PG_CONNECT_TIMEOUT)
    for key, value in PG_KEEPALIVES.items():
        params.setdefault(key, value)
    if schema:
        params["options"] = f"{params.get('options', '')} -c search_path={schema}".strip()
    db = Psycopg3Database(dbname, **params)
    db.connect()
    if schema and not db.execute_sql("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
        db.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return db


def pg_session(db: peewee.Database, **options: str):
    """A plain psycopg connection (autocommit) with db's parameters, for LISTEN and session advisory locks.

    options: server settings for this session, e.g. idle_session_timeout="3s".
    """
    import psycopg

    params = dict(db.connect_params)
    extra = " ".join(f"-c {key}={value}" for key, value in options.items())
    if extra:
        params["options"] = f"{params.get('options', '')} {extra}".strip()
    return psycopg.connect(dbname=db.database, autocommit=True, **params)


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def first_line(exc: BaseException) -> str:
    """psycopg's messages run over several lines; the first says what happened."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Outage:
    """Whether the database answers, shared by every database user of the process: one WARNING when one of them
    first finds it unreachable, one INFO when any step works again, nothing per call or per retry in between.

    The one instance, `outage`, is module state on purpose: it describes the one database the process's models are
    bound to (`models.database`, itself module state, bound by open_database), and its whole point is that every
    user of that database shares it (the writer, the database worker and through it the hub, the pages and the API,
    the fan-out listener, the runtime's lookups and employee reloads, and `guarded` under all of them). Passing it
    in would add it to `guarded` and five constructors without changing what any of them does, and a default
    instance per user would split the one line per outage into one per user.
    """

    def __init__(self) -> None:
        self.since: float | None = None  # time.monotonic() of the first failure, while the outage lasts

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("database unreachable: %s; pops go out without customer data and writes wait until it "
                        "answers", first_line(exc))

    def worked(self) -> None:
        if self.since is not None:
            log.info("database reachable again after %.1f s", time.monotonic() - self.since)
            self.since = None


outage = Outage()


def drop_dead_connection(db: peewee.Database) -> None:
    """Close this greenlet's PostgreSQL connection if the server has ended it while it sat idle (a restart sends
    its sessions a farewell and closes them): the next query then connects afresh instead of failing on it.

    peewee never notices by itself and would hand the dead connection out forever. No round trip: an idle
    connection has nothing to read unless the server has hung up.
    """
    if isinstance(db, peewee.SqliteDatabase) or db.is_closed() or db.in_transaction():
        return
    conn = db.connection()
    if conn.closed or conn.broken or select.select([conn.fileno()], [], [], 0)[0]:
        _drop(db)


def connection_lost(db: peewee.Database) -> bool:
    """After a failed step: whether it failed because there is no working connection (the server went away, or
    connecting failed); a dead one is closed, so the next step reconnects."""
    if db.is_closed():
        return True
    if isinstance(db, peewee.SqliteDatabase):
        return False
    conn = db.connection()
    if not (conn.closed or conn.broken):
        return False
    if not db.in_transaction():  # inside one, the step that opened it closes it when it fails in turn
        _drop(db)
    return True


def _drop(db: peewee.Database) -> None:
    try:
        db.close()  # forgets the connection even when closing it fails
    except peewee.PeeweeException:
        pass


def guarded(db: peewee.Database, step: Callable[..., T], *args: Any) -> T:
    """step(*args), a database step outside any transaction on a long-lived greenlet, surviving the server's restarts.

    A connection the server has closed is replaced first; a step that fails for want of a connection raises
    DatabaseUnreachable and is reported to `outage` (one log line per outage, not one per step).
    """
    drop_dead_connection(db)
    try:
        result = step(*args)
    except (peewee.DatabaseError, peewee.InterfaceError) as exc:
        if isinstance(exc, DatabaseUnreachable) or not connection_lost(db):
            raise
        outage.failed(exc)
        raise DatabaseUnreachable(first_line(exc)) from exc
    outage.worked()
    return result


def describe_error(db: peewee.Database, exc: BaseException) -> str:
    """A failed write in words: on SQLite a full disk says so and names the database file, even when SQLite's own
    rollback then failed too and left only "cannot rollback - no transaction is active" on top."""
    if isinstance(db, peewee.SqliteDatabase) and any(_disk_full(e) for e in _chain(exc)):
        path = Path(db.database)
        try:
            free = f"{shutil.disk_usage(path.parent).free // 1024} KiB free"
        except OSError:
            free = "free space unknown"
        return f"disk full: no room to write {path} ({free} in {path.parent})"
    return first_line(exc)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """exc and the exceptions it was raised from or during, innermost last."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def sqlite_busy(exc: BaseException) -> bool:
    """Whether SQLite refused a statement because another connection holds the lock it needs (SQLITE_BUSY, with any
    extended code): a transaction that read before writing gets it at once, without a busy wait."""
    return any(isinstance(e, sqlite3.Error) and (getattr(e, "sqlite_errorcode", 0) & 0xFF == 5
                                                 or str(e).startswith("database is locked"))
               for e in _chain(exc))


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    if isinstance(exc, sqlite3.Error):  # SQLITE_FULL (13); Python 3.10 has only the message
        return getattr(exc, "sqlite_errorcode", None) == 13 or "database or disk is full" in str(exc)
    return False
