"""Versioned forward migrations, each applied once inside its own transaction and recorded in SchemaVersion.

Version 1 builds the tables from the models as they are. A later model change therefore needs a new migration
that tolerates a fresh database where version 1 already created the change.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import peewee

from screenpop.db import callfacts, collation, rollups, search
from screenpop.db.models import (ALL_MODELS, ANALYSIS_MODELS, AuditEntry, Call, CardLayoutRow, Category, CdrLeg,
                                 CustomField, MissedDone, Person, Recording, RecordingListen, SchemaVersion, Setting,
                                 SigninLink, SigninThrottle, Team, TeamMember, WebSession)
from screenpop.db.numbers import valid_country_code

_LOCK_KEY = 0x5C2EE9  # pg advisory lock id, with the schema's hash: one migrating process at a time per schema


class Migration(NamedTuple):
    """One schema step: its version number, what it does, and the function doing it."""

    version: int
    description: str
    apply: Callable[[peewee.Database], None]


def _create_tables(db: peewee.Database) -> None:
    db.create_tables([*ALL_MODELS, SchemaVersion])


def _analytics_indexes(db: peewee.Database) -> None:
    Call._schema.create_indexes(safe=True)


def _web_signin(db: peewee.Database) -> None:
    db.create_tables([Setting, SigninLink], safe=True)


def _web_sessions(db: peewee.Database) -> None:
    db.create_tables([WebSession], safe=True)


def _search(db: peewee.Database) -> None:
    """The customer search index, filled from what is stored (a customer's calls use migration 4's index); it
    reads the custom field text, so that column comes first on a database made before migration 15."""
    _custom_columns(db)
    search.install(db)


def _cheaper_call_writes(db: peewee.Database) -> None:
    """Every call insert and update maintains each index of the call table: drop the two that a composite index
    already serves (its leading column); the call facts' triggers run only when a fact can change, and on
    PostgreSQL a call's own callback is set before the row is written."""
    for index in ("call_external_e164", "call_customer_id"):
        db.execute_sql(f"DROP INDEX IF EXISTS {index}")
    callfacts.create_triggers(db)


def _node_fence(db: peewee.Database) -> None:
    """PostgreSQL: the check a daemon's write transaction runs first (daemon/cluster.py): its lock session still
    holds the node, or the transaction fails. An error, not a row to read, so a batch needs one round trip."""
    if isinstance(db, peewee.SqliteDatabase):
        return
    db.execute_sql(
        "CREATE OR REPLACE FUNCTION screenpop_hold_node(holder integer, lock_classid bigint, lock_objid bigint) "
        "RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = holder "
        "AND classid::bigint = lock_classid AND objid::bigint = lock_objid AND objsubid = 1) THEN "
        "RAISE EXCEPTION 'this daemon no longer holds its node (lock session %% is gone): nothing written', holder "
        "USING ERRCODE = 'object_not_in_prerequisite_state'; END IF; END $$")


def _phone_country_codes(db: peewee.Database) -> None:
    """Each stored number's country code when it is a valid number, so a lookup's last-digits match stays within
    the caller's country (daemon/customers/lookup.py); numbers outside any plan keep NULL and still match by their last digits."""
    if "country_code" not in {c.name for c in db.get_columns("phone")}:
        db.execute_sql("ALTER TABLE phone ADD COLUMN country_code INTEGER")
    p = db.param
    rows = db.execute_sql("SELECT id, e164 FROM phone WHERE country_code IS NULL").fetchall()
    codes = [(code, phone_id) for phone_id, e164 in rows if (code := valid_country_code(e164)) is not None]
    if codes:
        db.cursor().executemany(f"UPDATE phone SET country_code = {p} WHERE id = {p}", codes)


def _transferor_talk_time(db: peewee.Database) -> None:
    """Parties that left by a transfer before their call ended were stored without their talk time (the writer
    skipped them at the call's end): give every answered party of an ended call its time from answer to leaving."""
    sqlite = isinstance(db, peewee.SqliteDatabase)
    seconds = ("MAX((julianday(ended_at) - julianday(answered_at)) * 86400.0, 0)" if sqlite
               else "GREATEST(EXTRACT(EPOCH FROM (ended_at - answered_at))::float8, 0)")
    db.execute_sql(f"UPDATE call_party SET talk_seconds = {seconds} WHERE talk_seconds IS NULL "
                   "AND answered_at IS NOT NULL AND ended_at IS NOT NULL "
                   'AND call_id IN (SELECT id FROM "call" WHERE ended_at IS NOT NULL)')


def _cdr_legs(db: peewee.Database) -> None:
    """FreeSWITCH's CDRs: a table of the legs received, and the calls built from them alone marked recovered."""
    db.create_tables([CdrLeg], safe=True)
    if not isinstance(db, peewee.SqliteDatabase):
        db.execute_sql('ALTER TABLE "call" ADD COLUMN IF NOT EXISTS recovered boolean NOT NULL DEFAULT false')
    elif "recovered" not in {c.name for c in db.get_columns("call")}:
        db.execute_sql('ALTER TABLE "call" ADD COLUMN recovered INTEGER NOT NULL DEFAULT FALSE')


def _pop_peer_columns(db: peewee.Database) -> None:
    """call_event's external_number/external_name hold the pop's other party (the other extension on internal
    calls): name them peer_number/peer_name. A fresh database has them already (version 1 built the model)."""
    columns = {c.name for c in db.get_columns("call_event")}
    for old, new in (("external_number", "peer_number"), ("external_name", "peer_name")):
        if old in columns:
            db.execute_sql(f"ALTER TABLE call_event RENAME COLUMN {old} TO {new}")


def _missed_done(db: peewee.Database) -> None:
    """Missed calls marked done (who, when): a table of its own; a fresh database has it from version 1."""
    db.create_tables([MissedDone], safe=True)


# the categories a database starts with: (name, colour, flag); regular is the default
DEFAULT_CATEGORIES = (("regular", "#2563eb", ""), ("vip", "#ca8a04", "\u2605 VIP"), ("problem", "#dc2626", "\u26a0 PROBLEM"))
OTHER_COLOUR = "#64748b"  # a category found on customers but not in the defaults


def _custom_columns(db: peewee.Database) -> None:
    """The JSON column of custom field values on customer and order, and the customer's searchable custom text."""
    wanted = {"customer": ("custom", "custom_text"), "order": ("custom",)}
    for table, columns in wanted.items():
        have = {c.name for c in db.get_columns(table)}
        for column in columns:
            if column not in have:
                default = "'{}'" if column == "custom" else "''"
                db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN {column} TEXT NOT NULL DEFAULT {default}')


def _custom_fields(db: peewee.Database) -> None:
    """Custom fields (definitions, values on customers and orders, their text in the search index) and the
    category list, seeded with regular / VIP / problem and any other category customers already have."""
    _custom_columns(db)
    db.create_tables([CustomField, Category], safe=True)
    if not Category.select().exists():
        for position, (name, colour, flag) in enumerate(DEFAULT_CATEGORIES):
            Category.create(name=name, colour=colour, flag=flag, position=position, is_default=name == "regular")
        used = [row[0] for row in db.execute_sql("SELECT DISTINCT category FROM customer ORDER BY category")]
        for position, name in enumerate((n for n in used if n not in {c[0] for c in DEFAULT_CATEGORIES}), 10):
            Category.create(name=name, colour=OTHER_COLOUR, flag="", position=position)
    search.reinstall(db)


def _card_layouts(db: peewee.Database) -> None:
    """The admin's card layouts and the teams that use them; none stored means the built-in layout for everyone."""
    db.create_tables([CardLayoutRow, Team, TeamMember], safe=True)


def _recordings(db: peewee.Database) -> None:
    """Call recordings (RECORD_START / RECORD_STOP) and who listened to them; a fresh database has them already."""
    db.create_tables([Recording, RecordingListen], safe=True)


def _people(db: peewee.Database) -> None:
    """People who sign in with a password, the sign-in throttle, and sessions that belong to a person or a token.
    A web_session table from before (token required, no person) is made again: its sessions end, so everyone
    signs in once more after the upgrade (SQLite cannot relax a NOT NULL column in place)."""
    db.create_tables([Person, SigninThrottle], safe=True)
    if "person_id" not in {c.name for c in db.get_columns("web_session")}:
        db.drop_tables([WebSession])
        db.create_tables([WebSession])


def _audit(db: peewee.Database) -> None:
    """The audit trail: who changed which customer, number, order or person, and when."""
    db.create_tables([AuditEntry], safe=True)


# the service figures' covering index: each dialled number's and queue's inbound calls in start order, with every
# column the figures read (daemon/reports/service.py reads a range of it per number and queue on SQLite)
SERVICE_INDEX_COLUMNS = ("direction, did, queue, started_at, answered_by, answered_at, ring_seconds, missed, talk_seconds, "
                         "hold_seconds, hangup_cause, ended_at")


def _hold_and_queue(db: peewee.Database) -> None:
    """Seconds on hold on each call and party, and the queue a call waited in; a fresh database has them from
    version 1. Defaults in the database, so a daemon of the version before still inserts calls. The reports'
    covering indexes read them too."""
    sqlite = isinstance(db, peewee.SqliteDatabase)
    wanted = {"call": (("hold_seconds", "REAL NOT NULL DEFAULT 0" if sqlite else "double precision NOT NULL DEFAULT 0"),
                       ("queue", "VARCHAR(200)")),
              "call_party": (("hold_seconds", "REAL NOT NULL DEFAULT 0" if sqlite else "double precision NOT NULL DEFAULT 0"),)}
    for table, columns in wanted.items():
        have = {c.name for c in db.get_columns(table)}
        for column, kind in columns:
            if column not in have:
                db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN {column} {kind}')
    callfacts.index_hold(db)
    # a caller's calls in start order now cover what finds the call that returned a missed one: they replace these
    for index in ("call_customer_id_started_at", "call_external_e164_started_at"):
        db.execute_sql(f"DROP INDEX IF EXISTS {index}")
    Call._schema.create_indexes(safe=True)
    db.execute_sql(f'CREATE INDEX IF NOT EXISTS call_service ON "call" ({SERVICE_INDEX_COLUMNS})')


def _analysis(db: peewee.Database) -> None:
    """Conversation analysis: each recording's state, figures per side, transcript lines, phrase alerts and their
    matches; a fresh database has them from version 1."""
    db.create_tables(ANALYSIS_MODELS, safe=True)


def _customer_sort_keys(db: peewee.Database) -> None:
    """Each customer's name and company as each language sorts them, and an index per list order (by name, then
    company; by company, then name); a fresh database has the columns from version 1, empty. Every customer's keys
    are made here (100,000 customers: 6 s on a busy 2-core machine, bench/collation.py)."""
    have = {c.name for c in db.get_columns("customer")}
    for column in collation.KEY_COLUMNS:
        if column not in have:
            db.execute_sql(f"ALTER TABLE customer ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        if not isinstance(db, peewee.SqliteDatabase):  # SQLite's default compares characters; PostgreSQL's, letters
            db.execute_sql(f'ALTER TABLE customer ALTER COLUMN {column} TYPE text COLLATE "C"')
    mark = "?" if isinstance(db, peewee.SqliteDatabase) else "%s"
    sets = ", ".join(f"{column} = {mark}" for column in collation.KEY_COLUMNS)
    keyed = [(*collation.customer_keys(name, company).values(), cid)
             for cid, name, company in db.execute_sql("SELECT id, name, company FROM customer").fetchall()]
    if keyed:
        db.cursor().executemany(f"UPDATE customer SET {sets} WHERE id = {mark}", keyed)
    for lang in collation.LANGUAGES:
        db.execute_sql(f"CREATE INDEX IF NOT EXISTS customer_by_name_{lang} "
                       f"ON customer (name_key_{lang}, company_key_{lang}, id)")
        db.execute_sql(f"CREATE INDEX IF NOT EXISTS customer_by_company_{lang} "
                       f"ON customer (company_key_{lang}, name_key_{lang}, id)")


def _person_source(db: peewee.Database) -> None:
    """Where a person's password is checked: "local" (their hash here) or "ldap" (the directory); everyone before
    is local. A fresh database has the column from version 1."""
    if "source" not in {c.name for c in db.get_columns("person")}:
        db.execute_sql("ALTER TABLE person ADD COLUMN source VARCHAR(16) NOT NULL DEFAULT 'local'")


MIGRATIONS: list[Migration] = [
    Migration(1, "create all tables", _create_tables),
    Migration(2, "web sign-in: shared settings and one-time sign-in links", _web_signin),
    Migration(3, "customer search index", _search),
    Migration(4, "indexes for call analytics: a caller's later calls", _analytics_indexes),
    Migration(5, "covering indexes for call analytics", _analytics_indexes),
    Migration(6, "call facts on each party and each inbound call's callback, kept by triggers", callfacts.install),
    Migration(7, "cheaper call writes: two redundant call indexes dropped, call facts' triggers narrowed",
              _cheaper_call_writes),
    Migration(8, "the node fence as a database check, so a write batch is one round trip", _node_fence),
    Migration(9, "phone numbers' country codes: no last-digits match across countries", _phone_country_codes),
    Migration(10, "talk time of parties that transferred a call away", _transferor_talk_time),
    Migration(11, "web sessions kept in the database, so signing out ends them on every daemon", _web_sessions),
    Migration(12, "FreeSWITCH's CDRs: received legs, recovered calls", _cdr_legs),
    Migration(13, "call_event's number and name columns named for what they hold: the pop's peer", _pop_peer_columns),
    Migration(14, "missed calls marked done: who and when, undone by deleting the row", _missed_done),
    Migration(15, "custom fields on customers and orders, searched; the category list", _custom_fields),
    Migration(16, "card layouts chosen by an admin, per team of extensions", _card_layouts),
    Migration(17, "call recordings linked to calls, and the log of who listened", _recordings),
    Migration(18, "conversation analysis: figures per recording and side, transcripts, phrase alerts", _analysis),
    Migration(19, "people with passwords and roles, sign-in throttling, sessions tied to people", _people),
    Migration(20, "audit trail of changes to customers, numbers, orders and people", _audit),
    Migration(21, "hold time on calls and parties, and the queue a call waited in", _hold_and_queue),
    Migration(22, "each missed call's callback (the call that returned it, when it was answered) kept on its row",
              callfacts.install_callbacks),
    Migration(23, "customers' names and companies as each language sorts them, indexed for the A-to-Z lists",
              _customer_sort_keys),
    Migration(24, "people signed in by the organisation's directory (LDAP), marked as such", _person_source),
    Migration(25, "roll-ups the reports sum: calls per 15-minute slot, employee sums per extension and day, calls "
                  "per customer; kept by triggers", rollups.install),
]


def current_version(db: peewee.Database) -> int:
    """The highest applied migration version; 0 for an empty database."""
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    with db.bind_ctx([SchemaVersion]):
        return SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar() or 0


def _is_applied(db: peewee.Database, version: int) -> bool:
    """Whether this version is recorded; by version, not by the highest, since versions may land out of order."""
    if not db.table_exists(SchemaVersion._meta.table_name):
        return False
    return SchemaVersion.select().where(SchemaVersion.version == version).exists()


def migrate(db: peewee.Database) -> list[int]:
    """Apply every pending migration in order and return the versions applied (none when already current)."""
    applied = []
    with db.bind_ctx([*ALL_MODELS, SchemaVersion]):
        for migration in MIGRATIONS:
            with _exclusive(db):
                if _is_applied(db, migration.version):
                    continue
                migration.apply(db)
                SchemaVersion.create(version=migration.version)
            applied.append(migration.version)
    return applied


@contextmanager
def _exclusive(db: peewee.Database) -> Iterator[None]:
    """A transaction that holds off other processes migrating the same schema, so two daemons starting together
    cannot race; daemons on other schemas of the server (other sites, each test's own) migrate meanwhile."""
    if isinstance(db, peewee.SqliteDatabase):
        with db.atomic("IMMEDIATE"):
            yield
        return
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_LOCK_KEY,))
        yield
