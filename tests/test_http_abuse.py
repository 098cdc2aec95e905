"""The HTTP side under abuse (issue 14, item 6): out-of-range input answers 400 with a message, never a 500."""
from __future__ import annotations

import pytest

from screenpop.daemon.httpserver import create_app
from screenpop.daemon.photos import Photos
from screenpop.daemon.push import PushHub
from screenpop.db import tokens
from screenpop.db.lookup import Lookup
from screenpop.db.numbers import NumberRules

RULES = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)


class Site:
    """The daemon's Flask app on a started push hub; a browser signed in as admin, and the admin token."""

    def __init__(self, db, tmp_path) -> None:
        self.hub = PushHub(db, lambda: Lookup(db, RULES))
        self.hub.start()
        self.app = create_app(self.hub, Photos(tmp_path / "photos"), heartbeat=1.0)
        _, self.token = tokens.create(None, role="admin", name="admin")
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.browser = self.app.test_client()
        link = self.app.test_client().post("/api/v1/signin-links", json={}, headers=self.auth).get_json()["url"]
        assert self.browser.get(link.split("localhost", 1)[1]).status_code == 303


@pytest.fixture
def site(db, tmp_path):
    s = Site(db, tmp_path)
    yield s
    s.hub.stop()


@pytest.mark.parametrize("path", [
    "/calls?until=9999-12-31", "/calls?since=0001-01-01", "/calls?since=9999-12-31",
    "/dashboard?since=9999-12-25&until=9999-12-31", "/dashboard?since=0001-01-01&until=0001-01-02",
    "/missed?until=9999-12-31", "/missed?since=0001-01-01&until=0001-01-05",
    "/reports/calls.csv?until=9999-12-31", "/reports/employees.csv?since=0001-01-01&until=0001-01-01",
])
def test_dates_out_of_range_on_pages(site, path):
    r = site.browser.get(path)
    assert r.status_code == 400 and "must lie between 1970-01-01 and 9998-12-31" in r.get_data(as_text=True), path


def test_dates_in_range_still_work(site):
    for path in ("/calls?since=1970-01-01&until=9998-12-31", "/missed?since=9998-12-01&until=9998-12-31",
                 "/reports/calls.csv?since=1970-01-01&until=1970-01-31"):
        assert site.browser.get(path).status_code == 200, path


@pytest.mark.parametrize("query", ["since=0001-01-01T00:00:00%2B14:00", "until=9999-12-31T23:59:59-14:00",
                                   "since=0001-01-01", "until=9998-12-31T23:59:59-14:00&since=0001-01-01T00:00:00Z"])
def test_api_times_out_of_range(site, query):
    r = site.app.test_client().get(f"/api/v1/calls?{query}", headers=site.auth)
    assert r.status_code == 400 and "must lie between 1970-01-01 and 9998-12-31" in r.get_json()["error"], query
    r = site.app.test_client().get("/api/v1/calls?since=1970-01-01T00:00:00%2B14:00&until=9998-12-31T23:59:59-14:00",
                                   headers=site.auth)
    assert r.status_code == 200


@pytest.mark.parametrize("digits", ["99999999999999999999", "2147483648", "9" * 5000])
def test_ids_out_of_range(site, digits):
    r = site.browser.get(f"/customers/{digits}")
    assert r.status_code == 400 and "is not an id (at most 2147483647)" in r.get_data(as_text=True)
    r = site.app.test_client().get(f"/api/v1/customers/{digits}", headers=site.auth)
    assert r.status_code == 400 and r.get_json()["error"].endswith("is not an id (at most 2147483647)")
    assert site.app.test_client().get("/api/v1/customers/2147483647", headers=site.auth).status_code == 404


def test_deeply_nested_json(site):
    nested = "[" * 4000 + "]" * 4000
    r = site.app.test_client().post("/api/v1/signin-links", data=nested,
                                    headers={**site.auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON object" in r.get_json()["error"]
    r = site.app.test_client().post("/api/v1/customers", data=nested,
                                    headers={**site.auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.get_json()["error"]


@pytest.mark.parametrize("last", ["9" * 5000, "²", "1" * 19])
def test_last_event_id_out_of_range(site, last):
    r = site.app.test_client().get("/api/v1/events", headers={**site.auth, "Last-Event-ID": last})
    assert r.status_code == 400 and "Last-Event-ID must be a pop id" in r.get_json()["error"]
