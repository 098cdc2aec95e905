"""Opening databases, migrations, and faithful storage of every model on SQLite and PostgreSQL."""
from __future__ import annotations

import ast
import contextlib
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import peewee
import pytest

from screenpop.db import models
from screenpop.db.database import DatabaseUrlError, open_database
from screenpop.daemon.record.pops import POP_COLUMNS, PopRow
from screenpop.db.migrations import MIGRATIONS, _exclusive, current_version, migrate
from screenpop.db.models import (
    ALL_MODELS,
    ApiToken,
    Call,
    CallEvent,
    CallParty,
    Customer,
    Employee,
    Order,
    Phone,
    SchemaVersion,
)

from support import SLACK

HOSTILE = [
    "<script>alert('x')</script>",
    "'; DROP TABLE customer; --",
    'Robert"); DROP TABLE phone;--',
    "%s %(name)s ? :name $1 {0}",
    "Þórður Ægisson – Ísafjörður",
    "日本語テキスト 😀🎉 ﷽",
    "\u202eevil\u202c \u200b zero width",
    "tab\tnewline\nreturn\r bell\x07 esc\x1b[31m",
    "back\\slash and 'quotes' and \"doubles\"",
    "x" * 300,
]


def test_migrate_is_idempotent(db: peewee.Database) -> None:
    assert current_version(db) == MIGRATIONS[-1].version
    assert migrate(db) == []
    assert [v.version for v in SchemaVersion.select()] == [m.version for m in MIGRATIONS]
    tables = set(db.get_tables())
    assert {m._meta.table_name for m in [*ALL_MODELS, SchemaVersion]} <= tables


def test_fresh_database_applies_every_version(sqlite_url: str) -> None:
    db = open_database(sqlite_url)
    assert current_version(db) == 0
    assert migrate(db) == [m.version for m in MIGRATIONS]
    assert migrate(db) == []
    db.close()


def test_reopening_keeps_data_and_version(sqlite_url: str) -> None:
    db = open_database(sqlite_url)
    migrate(db)
    Employee.create(name="Anna", extension="1001")
    db.close()
    db = open_database(sqlite_url)
    assert migrate(db) == []
    assert Employee.get(Employee.extension == "1001").name == "Anna"
    db.close()


def test_sqlite_settings(sqlite_url: str, tmp_path) -> None:
    nested = f"sqlite:///{tmp_path}/a/b/c.db"
    db = open_database(nested)
    assert (tmp_path / "a" / "b" / "c.db").exists()
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA synchronous").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 1000
    db.close()


def test_four_slash_sqlite_url_is_absolute(tmp_path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/four.db".replace("sqlite:///", "sqlite:////"))
    assert db.database == f"{tmp_path}/four.db"
    db.close()


@pytest.mark.postgres
def test_postgres_schema_parameter_sets_search_path(pg_url: str) -> None:
    db = open_database(pg_url.replace("postgresql://", "postgres://"))
    schema = pg_url.rsplit("schema=", 1)[1]
    assert db.execute_sql("SELECT current_schema()").fetchone()[0] == schema
    migrate(db)
    assert "customer" in db.get_tables()
    db.close()


@pytest.mark.postgres
def test_postgres_schema_is_created_when_missing(pg_url: str) -> None:
    missing = pg_url.rsplit("schema=", 1)[1] + "_new"
    db = open_database(pg_url.rsplit("schema=", 1)[0] + f"schema={missing}")
    try:
        assert migrate(db) == [m.version for m in MIGRATIONS]
        assert db.execute_sql("SELECT current_schema()").fetchone()[0] == missing
    finally:
        db.execute_sql(f'DROP SCHEMA "{missing}" CASCADE')
        db.close()


@contextlib.contextmanager
def _schema_beside(pg_url: str) -> Iterator[peewee.Database]:
    """A second schema on the server of pg_url, opened (not migrated), dropped with everything in it afterwards."""
    other = open_database(pg_url + "_beside")
    try:
        yield other
    finally:
        other.execute_sql(f'DROP SCHEMA "{pg_url.rsplit("schema=", 1)[1]}_beside" CASCADE')
        other.close()


@pytest.mark.postgres
def test_postgres_migrations_lock_their_own_schema_only(pg_url: str) -> None:
    """Two processes migrating one schema together apply each version once, and neither waits for a migration of
    another schema that holds its lock meanwhile (other sites on the server, each test's own schema)."""
    run = "import sys; from screenpop.db.database import open_database as o; from screenpop.db.migrations import " \
          "migrate; print(migrate(o(sys.argv[1])))"
    with _schema_beside(pg_url) as other, _exclusive(other):
        procs = [subprocess.Popen([sys.executable, "-c", run, pg_url], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        try:
            applied = [ast.literal_eval(p.communicate(timeout=60 * SLACK)[0]) for p in procs]
        finally:
            for p in procs:
                p.kill()
                p.wait()
    assert sorted(applied[0] + applied[1]) == [m.version for m in MIGRATIONS]


def _catalog(db: peewee.Database) -> dict[str, list]:
    """What the PostgreSQL schema db is on holds: columns, indexes, constraints, triggers, functions, rows."""
    ns, here = "current_schema()::regnamespace", "current_schema() || '.'"
    queries = {
        "columns": "SELECT table_name, column_name, data_type, column_default, is_nullable, generation_expression "
                   "FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2",
        "indexes": f"SELECT tablename, indexname, replace(indexdef, {here}, '') FROM pg_indexes "
                   "WHERE schemaname = current_schema() ORDER BY 2",
        "constraints": f"SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       f"WHERE connamespace = {ns} ORDER BY 2",
        "triggers": f"SELECT tgname, replace(pg_get_triggerdef(t.oid), {here}, '') FROM pg_trigger t "
                    f"JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = {ns} AND NOT tgisinternal ORDER BY 1",
        "functions": f"SELECT proname, replace(pg_get_functiondef(oid), {here}, '') FROM pg_proc "
                     f"WHERE pronamespace = {ns} ORDER BY 1",
        "versions": "SELECT version FROM schema_version ORDER BY 1",
    }
    out = {name: db.execute_sql(sql).fetchall() for name, sql in queries.items()}
    for table in sorted(set(db.get_tables()) - {"schema_version"}):
        out[table] = sorted(map(repr, db.execute_sql(f'SELECT * FROM "{table}"').fetchall()))
    return out


@pytest.mark.postgres
def test_the_fixtures_replayed_migration_builds_what_migrate_builds(pg_db: peewee.Database, pg_url: str) -> None:
    """pg_db's schema comes from the statements a migration ran, replayed (tests/conftest.py): the same schema, the
    same rows, as migrate() makes."""
    replayed = _catalog(pg_db)
    with _schema_beside(pg_url) as migrated:
        migrate(migrated)
        assert _catalog(migrated) == replayed
    assert len(replayed["columns"]) > 100 and replayed["triggers"] and replayed["versions"]


@pytest.mark.parametrize(
    "url",
    [
        "",
        "mysql://root@localhost/db",
        "sqlite://relative/path.db",
        "sqlite:///",
        "sqlite:///tmp/x.db?mode=ro",
        "postgresql://localhost",
        "postgresql://localhost/db?schema=bad;name",
        "postgresql://localhost/db?schema=",
        "postgresql://localhost:notaport/db",
        "/var/lib/screenpop.db",
    ],
)
def test_unsupported_urls_are_clear_errors(url: str) -> None:
    with pytest.raises(DatabaseUrlError) as info:
        open_database(url)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_password_is_not_echoed_in_errors() -> None:
    with pytest.raises(DatabaseUrlError) as info:
        open_database("postgresql://user:hunter2@localhost/")
    assert "hunter2" not in str(info.value)


def test_open_database_binds_the_models(db: peewee.Database) -> None:
    assert models.database.obj is db
    assert Customer._meta.database.obj is db


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_round_trips(db: peewee.Database, text: str) -> None:
    customer = Customer.create(external_id=text[:100], name=text, company=text, note=text * 10, city=text[:200])
    again = Customer.get_by_id(customer.id)
    assert (again.external_id, again.name, again.company, again.note, again.city) == (
        text[:100], text, text, text * 10, text[:200]
    )
    assert Customer.get(Customer.name == text).id == customer.id


def test_all_models_round_trip(db: peewee.Database) -> None:
    at = dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
    anna = Employee.create(name="Anna Jónsdóttir", extension="1001")
    acme = Customer.create(external_id="C-1", name="Jón", company="Acme ehf.", category="vip", photo="1-ab.jpg")
    Phone.create(customer=acme, e164="+3545551234", rev="4321555453", raw="555 1234", label="mobile")
    order = Order.create(customer=acme, number="SO-1", title="Boat", responsible=anna, amount=Decimal("1234567890.12"), paid=Decimal("0.5"))
    call = Call.create(uuid="u-1", direction="INCOMING", external_number="5551234", external_e164="+3545551234",
                       customer=acme, matches=1, extension="1001", employee=anna, started_at=at, ring_seconds=2.5,
                       external_answered=None, missed=False)
    CallParty.create(call=call, extension="1001", employee=anna, role="callee", rang_at=at, talked=True)
    event = CallEvent.create(call=call, uuid="u-1", extension="1001", event="ringing", direction="INCOMING", at=at)
    ApiToken.create(name="tray", token_hash="h" * 64, extension="1001")

    assert Order.get_by_id(order.id).amount == Decimal("1234567890.12")
    assert Order.get_by_id(order.id).paid == Decimal("0.50")
    stored = Call.get(Call.uuid == "u-1")
    assert stored.started_at == at
    assert stored.external_answered is None
    assert stored.customer.external_id == "C-1"
    assert [p.extension for p in stored.parties] == ["1001"]
    assert CallEvent.get_by_id(event.id).at == at
    assert [p.e164 for p in acme.phones] == ["+3545551234"]
    assert Customer.get_by_id(acme.id).created_at <= models.utcnow()


def test_migration_13_renames_the_pops_peer_columns_and_keeps_the_pops(db: peewee.Database) -> None:
    """A database at version 12 (call_event's peer columns still named external_*) with pops in it: migrated, its
    pops keep their numbers and names under peer_number/peer_name, and pops are written and replayed as before."""
    at = dt.datetime(2026, 11, 1, 9, 30)
    call = Call.create(uuid="u-1", direction="INTERNAL", extension="1001", started_at=at)
    for new, old in (("peer_number", "external_number"), ("peer_name", "external_name")):
        db.execute_sql(f"ALTER TABLE call_event RENAME COLUMN {new} TO {old}")  # as version 12 left it
    SchemaVersion.delete().where(SchemaVersion.version == 13).execute()
    p = db.param
    for ext, peer, name in (("1001", "1002", "Björn"), ("1002", "1001", HOSTILE[0])):
        db.execute_sql("INSERT INTO call_event (call_id, uuid, extension, event, direction, external_number, "
                       f'external_name, matches, "at") VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})',
                       (call.id, "u-1", ext, "ringing", "INTERNAL", peer, name, 0, at))
    assert migrate(db) == [13] and migrate(db) == []
    columns = {c.name for c in db.get_columns("call_event")}
    assert {"peer_number", "peer_name"} <= columns and not columns & {"external_number", "external_name"}
    rows = db.execute_sql(f"SELECT {POP_COLUMNS} FROM call_event ORDER BY id").fetchall()
    assert [PopRow(*row)[5:8] for row in rows] == [("1001", "1002", "Björn"), ("1002", "1001", HOSTILE[0])]
    CallEvent.create(call=call, uuid="u-1", extension="1001", event="answered", direction="INTERNAL", at=at,
                     peer_number="1002", peer_name="Björn")
    assert [(e.peer_number, e.peer_name) for e in CallEvent.select().order_by(CallEvent.id)][-1] == ("1002", "Björn")


def test_deleting_a_customer_cascades_phones_and_orders(db: peewee.Database) -> None:
    acme = Customer.create(external_id="C-1")
    Phone.create(customer=acme, e164="+3545551234", rev="4321555453", raw="5551234")
    Order.create(customer=acme, number="SO-1")
    call = Call.create(uuid="u-1", direction="INCOMING", customer=acme, started_at=models.utcnow())
    acme.delete_instance()
    assert Phone.select().count() == 0
    assert Order.select().count() == 0
    assert Call.get_by_id(call.id).customer_id is None


def test_unique_keys_hold(db: peewee.Database) -> None:
    Employee.create(name="A", extension="1001")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        Employee.create(name="B", extension="1001")
    acme = Customer.create(external_id="C-1")
    Phone.create(customer=acme, e164="+3545551234", rev="4321555453", raw="5551234")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        Phone.create(customer=acme, e164="+3545551234", rev="4321555453", raw="555 1234")


def test_state_directory_and_database_are_private_whatever_the_umask(tmp_path) -> None:
    """They hold the session signing key, token hashes and customer data: 0700 and 0600 even under umask 000."""
    import os
    import stat

    from screenpop.db.database import private_dir

    state = tmp_path / "home" / "state" / "screenpop"
    old = os.umask(0)
    try:
        db = open_database(f"sqlite:///{state / 'screenpop.db'}")
        migrate(db)
        private_dir(state / "photos")
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir() if p.is_file()}
        db.close()
    finally:
        os.umask(old)
    for folder in (tmp_path / "home", tmp_path / "home" / "state", state, state / "photos"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert files == {"screenpop.db": 0o600, "screenpop.db-wal": 0o600, "screenpop.db-shm": 0o600}
    os.chmod(tmp_path / "home", 0o755)  # a folder that exists is the administrator's: left as it is
    private_dir(tmp_path / "home" / "other")
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o755
