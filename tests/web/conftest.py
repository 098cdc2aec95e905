"""The web tests' shared fixture: the JSON API in process on each database."""
from __future__ import annotations

from contextlib import closing

import pytest

from support import Api


@pytest.fixture
def api(db, tmp_path):
    """The daemon's HTTP app on the migrated database (SQLite, then PostgreSQL) with an operator and an admin token."""
    with closing(Api(db, tmp_path)) as a:
        yield a
