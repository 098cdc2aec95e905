"""Open the configured database from its URL and bind the models to it."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee

from screenpop.db import models

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
    """The database URL is not one screenpop can open."""


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
        raise DatabaseUrlError(
            f"unsupported database URL {_redact(url)!r}: use sqlite:///absolute/path.db or postgresql://user@host:port/dbname"
        )
    models.database.initialize(db)
    return db


def _open_sqlite(url: str) -> peewee.SqliteDatabase:
    """An SQLite file in WAL mode; the parent directory is created so a fresh install just works."""
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment:
        raise DatabaseUrlError(f"SQLite URL must be sqlite:///absolute/path.db, got {url!r}")
    path = unquote(parts.path)
    if path in ("", "/"):
        raise DatabaseUrlError(f"SQLite URL {url!r} names no file")
    path = "/" + path.lstrip("/")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10)
    db.connect()
    return db


def _open_postgres(url: str) -> peewee.Database:
    """A PostgreSQL database through psycopg 3; ?schema=NAME sets (and creates) the search_path."""
    from playhouse.postgres_ext import Psycopg3Database  # lazy: pulls in psycopg after gevent has patched

    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise DatabaseUrlError(f"PostgreSQL URL {_redact(url)!r} names no database (postgresql://user@host:port/dbname)")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = params.pop("schema", None)
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise DatabaseUrlError(f"schema {schema!r} must be a plain identifier (letters, digits, _; at most 63)")
    if parts.hostname:
        params.setdefault("host", parts.hostname)
    try:
        port = parts.port
    except ValueError as exc:
        raise DatabaseUrlError(f"PostgreSQL URL {_redact(url)!r}: bad port") from exc
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
