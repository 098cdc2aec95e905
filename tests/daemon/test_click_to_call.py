"""Click-to-call end to end: POST /api/v1/originate -> the daemon -> `bgapi originate` to the simulator over TCP -> the
call's events -> the call recorded OUTGOING from the operator's extension, its pops in order (SQLite and PostgreSQL);
FreeSWITCH's refusals in words, the rate limit, the checks on who may call and what may be dialled."""
from __future__ import annotations

import http.client
import json
from contextlib import closing

import pytest

from screenpop.daemon.auth import tokens
from screenpop.daemon.reports.callrecords import call_records
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import CallEvent

from sse import Stream
from support import CAPTURES, Started, daemon, free_port, pops_by_extension, serving, simulator, wait_for, write_config


class Site(Started):
    """The simulator (idle: protocol only, 1001-1010 registered, 1003 never answers) and a daemon following it."""

    def __init__(self, tmp_path, db_url: str, originate: str = "ring_timeout = 20\n", speed: str = "20",
                 mode: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.db = self.keep(open_database(db_url))
        migrate(self.db)
        _, self.operator = tokens.create("1001")
        _, self.other = tokens.create("1003")
        _, self.admin = tokens.create(None, role="admin")
        self.esl_port, self.http_port = free_port(), free_port()
        self.sim = self.keep(simulator(tmp_path, self.esl_port, "--no-answer", "1003", "--originate-speed", speed,
                                       *mode))
        config = write_config(tmp_path / "screenpop.toml", self.esl_port, db_url, self.http_port,
                              originate="[originate]\n" + originate)
        self.daemon = serving(self.keep(daemon(tmp_path, config)), self.url)
        wait_for(lambda: "connected to FreeSWITCH" in self.daemon.log(), 20, "the daemon to follow the simulator")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def originate(self, token: str, body: object, raw: bytes | None = None) -> tuple[int, dict, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)
        conn.request("POST", "/api/v1/originate", body=raw if raw is not None else json.dumps(body).encode(),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read() or b"{}")
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def get(self, token: str, path: str) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        data = json.loads(response.read() or b"{}")
        conn.close()
        return response.status, data


@pytest.fixture
def site(tmp_path, db_url):
    with closing(Site(tmp_path, db_url)) as s:
        yield s


def test_click_to_call_is_recorded_as_the_operators_outgoing_call_with_its_pops_in_order(site):
    stream = Stream(site.http_port, site.operator)
    try:
        status, _, body = site.originate(site.operator, {"number": "555 9876"})
        assert status == 200, body
        assert body["status"] == "dialling" and len(body["uuid"]) == 36
        cards = [m.card for m in stream.wait_count(3, timeout=60)]
    finally:
        stream.close()
    assert [c["event"] for c in cards][:3] == ["dialing", "answered", "ended"]
    wait_for(lambda: any(r["ended_at"] for r in call_records()), 30, "the call to be stored as ended")
    [record] = call_records()
    assert record["direction"] == "OUTGOING"
    assert record["from_extension"] == "1001"
    assert record["external_number"] == "+3545559876"
    assert record["external_answered"] is True
    pops = pops_by_extension(CallEvent.select(CallEvent.extension, CallEvent.event).order_by(CallEvent.id).tuples())
    assert pops == {"1001": ["dialing", "answered", "ended"]}
    assert site.daemon.terminate() == 0, site.daemon.log()


def test_a_click_to_call_callback_returns_the_missed_call(tmp_path, db_url):
    """Issue 16: the simulator replays a missed call to 1001; 1001 calls the number back (POST /api/v1/originate), the
    far end answers, and the missed call is returned by 1001: no longer open, in GET /api/v1/missed?state=returned."""
    from screenpop.db.models import Call

    site = Site(tmp_path, db_url, mode=("--replay", str(CAPTURES / "inbound-missed.plain.esl"), "--speed", "0",
                                        "--linger", "120"))
    try:
        wait_for(lambda: Call.select().where(Call.missed, Call.ended_at.is_null(False)).exists(), 30, "the missed call")
        missed_uuid = Call.get(Call.missed).uuid
        status, body = site.get(site.operator, "/api/v1/missed")
        assert status == 200 and (body["open"], [c["call_uuid"] for c in body["calls"]]) == (1, [missed_uuid]), body
        assert body["calls"][0]["e164"] == "+3545551234" and body["calls"][0]["callable"] is True
        status, _, answer = site.originate(site.operator, {"number": body["calls"][0]["e164"]})
        assert status == 200, answer
        wait_for(lambda: Call.select().where(Call.direction == "OUTGOING", Call.ended_at.is_null(False)).exists(), 60,
                 "the callback to be stored as ended")
        status, body = site.get(site.operator, "/api/v1/missed?state=returned")
        assert status == 200 and body["open"] == 0 and body["counts"]["returned"] == 1, body
        [row] = body["calls"]
        assert row["call_uuid"] == missed_uuid and row["returned"]["by"] == "1001"
        assert row["returned"]["call_uuid"] == answer["uuid"] and row["returned"]["direction"] == "OUTGOING"
    finally:
        site.close()


def test_freeswitchs_refusals_come_back_in_words(site):
    status, _, body = site.originate(site.admin, {"number": "+3545559876", "extension": "1009"})
    assert status == 200, body
    status, _, body = site.originate(site.admin, {"number": "+3545559876", "extension": "1077"})
    assert (status, body["cause"]) == (409, "USER_NOT_REGISTERED")
    assert body["error"] == "your phone (1077) is not registered with FreeSWITCH: is it switched on and signed in?"
    status, _, body = site.originate(site.other, {"number": "+3545559876"})
    assert (status, body["cause"]) == (409, "NO_ANSWER")
    assert body["error"] == "your phone (1003) rang but was not answered, so the number was not dialled"


def test_operators_call_only_from_their_own_extension_and_only_numbers_are_dialled(site):
    status, _, body = site.originate(site.operator, {"number": "+3545559876", "extension": "1002"})
    assert (status, body["error"]) == (403, "an operator token calls only from its own extension")
    for hostile in ("+3545559876 XML default &bridge(user/1002)", "1234}user/1002", "anonymous", "ab\ncd",
                    "5559876'}sofia/gateway/pstn/+19005550000", "", "%2B354"):
        status, _, body = site.originate(site.operator, {"number": hostile})
        assert status == 400, (hostile, body)
    status, _, body = site.originate(site.admin, {"number": "5559876", "extension": "1001 XML evil"})
    assert status == 400, body
    assert site.originate(site.operator, {"number": 5559876})[0] == 400
    assert site.originate(site.operator, None, raw=b"{not json")[0] == 400
    assert site.originate(site.operator, {"number": "5559876", "also": 1})[0] == 400


def test_each_token_starts_at_most_rate_limit_calls_per_window(tmp_path, sqlite_url):
    site = Site(tmp_path, sqlite_url, originate="rate_limit = 2\nrate_window = 600\n", speed="0")
    try:
        assert site.originate(site.operator, {"number": "+3545559876"})[0] == 200
        assert site.originate(site.operator, {"number": "+3545559877"})[0] == 200
        status, headers, body = site.originate(site.operator, {"number": "+3545559878"})
        assert status == 429, body
        wait = int(headers["retry-after"])
        assert 590 <= wait <= 600 and body["error"] == f"too many calls started: try again in {wait} s"
        assert site.originate(site.admin, {"number": "+3545559878", "extension": "1002"})[0] == 200  # its own count
    finally:
        site.close()


def test_freeswitch_gone_is_503_in_words(tmp_path, sqlite_url):
    site = Site(tmp_path, sqlite_url)
    try:
        site.sim.kill()
        wait_for(lambda: "lost connection to FreeSWITCH" in site.daemon.log(), 20, "the daemon to notice")
        status, _, body = site.originate(site.operator, {"number": "+3545559876"})
        assert (status, body["error"]) == (503, "not connected to FreeSWITCH: the call cannot be placed now")
    finally:
        site.close()


def test_no_answer_from_freeswitch_in_time_is_504_in_words(tmp_path, sqlite_url):
    # no originate_timeout in this dial string: FreeSWITCH's default, 60 s, is longer than the daemon waits (5 + 5 s)
    site = Site(tmp_path, sqlite_url, speed="1", originate='ring_timeout = 5\n'
                'dial_string = "user/{extension} {number} XML default"\n')
    try:
        status, _, body = site.originate(site.other, {"number": "+3545559876"})
        assert (status, body["error"]) == (504, "FreeSWITCH did not answer the call request within 10 s")
        assert site.originate(site.operator, {"number": "+3545559876"})[0] == 200  # the connection was kept
    finally:
        site.close()
