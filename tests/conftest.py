"""Shared fixtures: a migrated database on each backend, fresh database URLs, and the ESL captures folder.

PostgreSQL: SCREENPOP_TEST_PG if set, else the server on 127.0.0.1:5432 (trust auth, database test), else a
private cluster the run starts itself (tests/pgserver.py). Every test gets a throwaway schema, dropped afterwards.
If no server can be had, the postgres tests fail; they do not skip.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from xdist.scheduler import LoadFileScheduling

from support import CAPTURES, built_once

# The tiers (registered in pyproject.toml). A test is `unit` unless it needs more: `integration` for real services
# (PostgreSQL, the daemon, the simulator or the tray as processes over TCP), `desktop`, `browser`, `packaging`.
# Marked here from what the test and its fixtures do, so a new test lands in its tier without a decorator.
DESKTOP_FILES = {"test_tray_desktop.py"}
BROWSER_FILES = {"test_web_browser.py", "test_dashboard_browser.py", "test_conversation_browser.py", "test_recordings_browser.py",
                 "test_accounts_browser.py", "test_i18n_browser.py"}
# whole files of real servers over TCP whose helpers hide it from _spawns: the simulator's ESL server, the daemon
# under systemd's protocols, the HTTP server under slow and hostile clients, the analysis worker's own process
INTEGRATION_FILES = {"test_simulator.py", "test_systemd.py", "test_http_abuse.py", "test_db_outage.py",
                     "test_analysis_worker.py"}
_SPAWNS = re.compile(r"subprocess\.|Popen\(|\bProc\(|\bdaemon\(|\bsimulator\(|\breplay\(|\bfake_fs\b|\bProxy\(")


@functools.lru_cache(maxsize=None)
def _source_spawns(obj: object) -> bool | None:
    """Whether the source of a function or class of tests/ names a process or server; None if not one of ours."""
    try:
        if "/tests/" not in (inspect.getsourcefile(obj) or ""):
            return None
        return bool(_SPAWNS.search(inspect.getsource(obj)))
    except (OSError, TypeError):
        return None


def _spawns(item: pytest.Item) -> bool:
    """Whether the test, one of its fixtures, or a helper of tests/ they use (two calls deep) runs processes or
    real servers."""
    infos = getattr(item, "_fixtureinfo", None)
    todo = [(item.function, 0)] + [(d.func, 0) for defs in (infos.name2fixturedefs.values() if infos else ())
                                   for d in defs]
    seen: set[int] = set()
    while todo:
        obj, depth = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        verdict = _source_spawns(obj)
        if verdict is None:
            continue
        if verdict:
            return True
        if depth < 2:
            funcs = [obj] if inspect.isfunction(obj) else [f for f in vars(obj).values() if inspect.isfunction(f)]
            for func in funcs:
                todo += [(func.__globals__[n], depth + 1) for n in func.__code__.co_names
                         if inspect.isfunction(func.__globals__.get(n)) or inspect.isclass(func.__globals__.get(n))]
    return False


# What a test of each tier takes, roughly, in seconds on an idle machine: the weights of the order below.
TIER_SECONDS = {"browser": 10.0, "desktop": 3.0, "packaging": 60.0, "integration": 1.0, "unit": 0.05}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _mark_tiers(items)
    if hasattr(config, "workerinput"):
        _longest_files_first(items)


def _longest_files_first(items: list[pytest.Item]) -> None:
    """The files likeliest to take longest first, each file's tests in their order: a pytest-xdist worker takes one
    whole file at a time in collection order (.ci/test: --dist loadfile), so the last files handed out are short
    and the workers finish together."""
    seconds: dict[Path, float] = {}
    for item in items:
        tier = next(t for t in TIER_SECONDS if item.get_closest_marker(t))
        seconds[item.path] = seconds.get(item.path, 0.0) + TIER_SECONDS[tier]
    items.sort(key=lambda item: -seconds[item.path])


# Files whose tests pytest-xdist hands out one at a time, not the whole file to one worker: each test is minutes of
# waiting on the mirror, dpkg or QEMU, and they share their builds (support.built_once), so they run side by side.
ONE_TEST_AT_A_TIME = {"tests/packaging/test_deb.py"}


class _LoadFileScheduling(LoadFileScheduling):
    """--dist loadfile, but the tests of ONE_TEST_AT_A_TIME's files each a unit of work of its own."""

    def _split_scope(self, nodeid: str) -> str:
        scope = super()._split_scope(nodeid)
        return nodeid if scope in ONE_TEST_AT_A_TIME else scope


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadFileScheduling | None:
    """.ci/test's --dist loadfile, with ONE_TEST_AT_A_TIME."""
    return _LoadFileScheduling(config, log) if config.getoption("dist") == "loadfile" else None


def _mark_tiers(items: list[pytest.Item]) -> None:
    """Each test's tier marker, from what the test and its fixtures do (the comment above DESKTOP_FILES)."""
    for item in items:
        if any(item.get_closest_marker(t) for t in ("desktop", "browser", "packaging")):
            continue
        if item.path.name in DESKTOP_FILES:
            item.add_marker(pytest.mark.desktop)
        elif item.path.name in BROWSER_FILES:
            item.add_marker(pytest.mark.browser)
        elif item.path.name in INTEGRATION_FILES or item.get_closest_marker("postgres") or item.get_closest_marker("mariadb") or _spawns(item):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)

def _pg_admin():
    """A plain psycopg connection to the test database, for creating and dropping schemas."""
    import psycopg

    from pgserver import server_url

    try:
        return psycopg.connect(server_url(), autocommit=True, connect_timeout=5)
    except (psycopg.OperationalError, RuntimeError, OSError) as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc}); start it or set SCREENPOP_TEST_PG", pytrace=False)


@contextlib.contextmanager
def _pg_url() -> Iterator[str]:
    """A postgresql:// URL pointing at a fresh schema of its own, dropped (with everything in it) afterwards."""
    schema = f"screenpop_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    from pgserver import server_url

    yield f"{server_url()}?schema={schema}"
    with _pg_admin() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A postgresql:// URL pointing at a fresh schema of its own, dropped (with everything in it) after the test."""
    with _pg_url() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A sqlite:/// URL for a database file in the test's temporary directory (created on first open)."""
    return f"sqlite:///{tmp_path / 'screenpop.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once on SQLite and once on PostgreSQL (the daemon a test starts writes there)."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@functools.lru_cache(maxsize=None)
def pg_migration_script() -> str:
    """What migrate() changes in an empty PostgreSQL schema, as one script with its values inlined: every statement
    it ran there but the reads (its locks and checks), recorded once per run on a schema of its own (dropped after).
    A test's schema gets it in one round trip, a third of a real migration's time; tests/db/test_db.py checks that
    both build the same schema, and the migration tests still migrate for real."""
    import peewee
    import psycopg

    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    ran: list[peewee.QueryEvent] = []
    with _pg_url() as url:
        database = open_database(url)
        database.query_hooks.append(ran.append)
        migrate(database)
        inline = psycopg.ClientCursor(database.connection()).mogrify
        script = ";\n".join(inline(q.sql, q.params or ()) for q in ran if q.exception is None
                             and not q.sql.lstrip().upper().startswith(("SELECT", "CREATE SCHEMA")))
        database.close()
    return script


def _migrated(url: str) -> Iterator:
    """The database at url migrated and bound to the models for the test (PostgreSQL: pg_migration_script); closed
    afterwards."""
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    script = None if url.startswith("sqlite:") else pg_migration_script()  # first: it binds the models elsewhere
    database = open_database(url)
    if script is None:
        migrate(database)
    else:
        with database.atomic():
            database.connection().execute(script)
    yield database
    database.close()


@pytest.fixture
def db(db_url: str):
    """A migrated database bound to the models, once on SQLite and once on PostgreSQL: the test's own connection
    to db_url."""
    yield from _migrated(db_url)


@pytest.fixture
def pg_db(pg_url: str):
    """A migrated PostgreSQL database bound to the models (tests of what only PostgreSQL does)."""
    yield from _migrated(pg_url)


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel from `python -m build`, built once for every packaging test that needs them."""
    import subprocess
    import sys

    from support import ROOT

    def build(out: Path) -> dict[str, Path]:
        subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True,
                       capture_output=True)
        return {"sdist": next(out.glob("*.tar.gz")), "wheel": next(out.glob("*.whl"))}

    return built_once(tmp_path_factory, "dist", build)


@pytest.fixture
def captures_dir() -> Path:
    """The shared folder of recorded FreeSWITCH event streams, next to the repository checkout."""
    return CAPTURES
