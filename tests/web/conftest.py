"""The web tests' shared fixture: the JSON API in process on each database."""
from __future__ import annotations

import pytest

from support import Api, stop_hub


@pytest.fixture
def api(db, tmp_path):
    """The daemon's HTTP app on the migrated database (SQLite, then PostgreSQL) with an operator and an admin token."""
    a = Api(db, tmp_path)
    yield a
    stop_hub(a.hub)
