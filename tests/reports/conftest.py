"""Fixtures of the report tests."""
from __future__ import annotations

from collections.abc import Callable

import peewee
import pytest

from screenpop.db import migrations
from screenpop.db.database import open_database


@pytest.fixture
def migrated_before(db_url: str) -> Callable[[int], peewee.Database]:
    """A function giving db_url's database (SQLite, then PostgreSQL) migrated up to a version, not including it, so a
    test can store rows the way they were and then run the rest (migrate()) over them."""
    opened = []

    def make(version: int) -> peewee.Database:
        db = open_database(db_url)
        opened.append(db)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(migrations, "MIGRATIONS", [x for x in migrations.MIGRATIONS if x.version < version])
            migrations.migrate(db)
        return db

    yield make
    for db in opened:
        db.close()
