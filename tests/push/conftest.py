"""The push tests' rig: a hub and a writer wired as the daemon wires them on SQLite."""
from __future__ import annotations

import pytest

from screenpop.daemon.customers.lookup import Lookup
from screenpop.daemon.record.writer import Writer
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate

from support import RULES, staff, start_hub, stop_hub


@pytest.fixture
def rig(sqlite_url):
    """A migrated SQLite database, a started hub and a writer wired as the daemon wires them on SQLite."""
    db = open_database(sqlite_url)
    migrate(db)
    hub = start_hub(db, lambda: Lookup(db, RULES))
    writer = Writer(db, staff=staff(), e164=lambda raw: RULES.classify(raw).e164, on_committed=hub.push_committed,
                    on_queued=hub.push_queued)
    writer.reserve_ids()
    yield db, hub, writer
    stop_hub(hub)
    db.close()
