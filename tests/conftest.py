"""Shared fixtures: a migrated database on each backend, fresh database URLs, and the ESL captures folder.

PostgreSQL: SCREENPOP_TEST_PG if set, else the server on 127.0.0.1:5432 (trust auth, database test), else a
private cluster the run starts itself (tests/pgserver.py). Every test gets a throwaway schema, dropped afterwards.
If no server can be had, the postgres tests fail; they do not skip.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

def _pg_admin():
    """A plain psycopg connection to the test database, for creating and dropping schemas."""
    import psycopg

    from pgserver import server_url

    try:
        return psycopg.connect(server_url(), autocommit=True, connect_timeout=5)
    except (psycopg.OperationalError, RuntimeError, OSError) as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc}); start it or set SCREENPOP_TEST_PG", pytrace=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A postgresql:// URL pointing at a fresh schema of its own, dropped (with everything in it) after the test."""
    schema = f"screenpop_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    from pgserver import server_url

    yield f"{server_url()}?schema={schema}"
    with _pg_admin() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A sqlite:/// URL for a database file in the test's temporary directory (created on first open)."""
    return f"sqlite:///{tmp_path / 'screenpop.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest):
    """A migrated database bound to the models, once on SQLite and once on PostgreSQL; closed afterwards."""
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    database = open_database(url)
    migrate(database)
    yield database
    database.close()


@pytest.fixture
def captures_dir() -> Path:
    """The shared folder of recorded FreeSWITCH event streams, next to the repository checkout."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "esl-captures"
