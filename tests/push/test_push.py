"""Operator push end to end: the real daemon fed by the real simulator, SSE clients over TCP (docs/card.md)."""
from __future__ import annotations

import io
import datetime as dt
import json
import subprocess
import sys
import time
from contextlib import closing
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from screenpop.daemon.auth import tokens
from screenpop.daemon.customers.lookup import Lookup, add_phone
from screenpop.daemon.push.card import MAX_ORDERS, CardBuilder
from screenpop.daemon.push.layout import CardLayout
from screenpop.daemon.record.pops import PopRow
from screenpop.daemon.push.hub import Subscriber
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import Call, CallEvent, Customer, Employee, Order

from sse import Stream, get
from support import CAPTURES, RULES, Started, daemon, free_port, serving, simulator, staff, start_hub, stop_hub
from support import tls_daemon, wait_for, write_config

HEARTBEAT = 0.3


class Env(Started):
    """A migrated database the test fills, and a daemon with HTTP on a free port, started on demand."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        super().__init__()
        self.tmp = tmp
        self.db_url = db_url
        self.db = self.keep(open_database(db_url))
        migrate(self.db)
        self.esl_port = free_port()
        self.http_port = free_port()
        self.photo_dir = tmp / "photos"
        self.photo_dir.mkdir()
        self.config = write_config(tmp / "screenpop.toml", self.esl_port, db_url, http_port=self.http_port,
                                   http=f"heartbeat = {HEARTBEAT}", database=f'photo_dir = "{self.photo_dir}"')

    def token(self, extension: str | None, role: str = "operator") -> tuple[int, str]:
        row, clear = tokens.create(extension, role=role)
        return row.id, clear

    def start_daemon(self):
        self.daemon = serving(self.keep(daemon(self.tmp, self.config)), f"http://127.0.0.1:{self.http_port}")
        return self.daemon

    def simulate(self, *args: str, name: str = "sim"):
        return self.keep(simulator(self.tmp, self.esl_port, *args, name=name))

    def stream(self, token: str | None, **kwargs) -> Stream:
        return self.keep(Stream(self.http_port, token, **kwargs))


@pytest.fixture
def env(tmp_path, sqlite_url):
    with closing(Env(tmp_path, sqlite_url)) as e:
        yield e


@pytest.fixture
def env_any(tmp_path, db_url):
    with closing(Env(tmp_path, db_url)) as e:
        yield e


def stored_ids(extension: str) -> list[int]:
    return [i for (i,) in CallEvent.select(CallEvent.id).where(CallEvent.extension == extension).order_by(CallEvent.id).tuples()]


# ---- the stream contract --------------------------------------------------------------------------


def test_order_replay_and_heartbeat(env):
    """Live, reconnect-with-Last-Event-ID and replay-from-0 clients all end with exactly the stored pops, in order."""
    _, op = env.token("1001")
    _, admin = env.token(None, role="admin")
    d = env.start_daemon()
    live = env.stream(op)
    other = env.stream(admin, query="extension=1002")
    everything = env.stream(admin)
    sim = env.simulate("--generate", "--calls", "60", "--rate", "10", "--speed", "4", "--seed", "11", "--extensions", "1001-1002",
                       "--mix", "inbound_answered=3,ring_group=1,internal=1,outbound=1", "--linger", "0.5")
    # A client that drops out after a few pops and comes back with the last id it saw.
    first = env.stream(op)
    first.wait_count(3, 20)
    first.close()
    seen = first.ids
    assert len(seen) == len(set(seen)) and seen == sorted(seen)
    wait_for(lambda: len([i for i in stored_ids("1001") if i > seen[-1]]) >= 2, 10, "pops while it is away")
    again = env.stream(op, last_event_id=seen[-1])
    # A client that replays everything while new pops keep coming: the replay/live seam.
    again.wait_count(2, 20)
    stored_before = len(stored_ids("1001"))
    from_zero = env.stream(op, last_event_id=0)
    assert sim.wait(60) == 0, sim.log()
    caught_up = lambda: len(stored_ids("1001")) > 0 and all(
        s.ids[-1:] == stored_ids("1001")[-1:] for s in (live, again, from_zero)
    )
    wait_for(caught_up, 15, "every client to have the last pop of 1001")
    want = stored_ids("1001")
    assert len(want) > stored_before + 5, "the replay-from-0 client also had live pops after its replay"
    assert live.ids == want, "the live client, connected before the first call"
    assert seen + again.ids == [i for i in want if i >= seen[0]], "reconnect: nothing twice, nothing lost"
    assert from_zero.ids == want, "replay from 0 then live, across the seam"
    assert all(c["extension"] == "1001" for s in (live, again, from_zero) for c in s.cards)
    assert other.ids == stored_ids("1002") and all(c["extension"] == "1002" for c in other.cards)
    all_ids = [i for (i,) in CallEvent.select(CallEvent.id).order_by(CallEvent.id).tuples()]
    wait_for(lambda: everything.ids == all_ids, 5, "the admin stream without ?extension to have every pop")
    late = env.stream(admin, last_event_id=all_ids[len(all_ids) // 2])
    late.wait_count(len(all_ids) - len(all_ids) // 2 - 1)
    assert late.ids == all_ids[len(all_ids) // 2 + 1:], "admin replay of every extension"
    for s in (live, from_zero):
        assert s.retry == 2000 and s.raw_lines[0] == "retry: 2000"
        assert all(m.event == "pop" for m in s.messages)
    # Idle: keepalive comments at the configured heartbeat.
    before = len(live.comments)
    time.sleep(HEARTBEAT * 4)
    assert len(live.comments) - before >= 2 and set(live.comments) == {"keepalive"}
    assert d.terminate() == 0, d.log()
    assert live.ended.wait(5), "SIGTERM ends the streams"


def test_slow_subscriber_is_cut_off_not_waited_for():
    sub = Subscriber("1001", 1, limit=3)
    for i in range(3):
        sub.push(i + 1, b"x")
    assert not sub.reason
    sub.push(4, b"x")
    assert sub.reason == "fell too far behind" and not sub.frames
    sub.push(5, b"x")
    assert not sub.frames


# ---- authentication ---------------------------------------------------------------------------------


def test_auth_matrix(env):
    token_id, op1001 = env.token("1001")
    _, op1002 = env.token("1002")
    d = env.start_daemon()
    for token, reason in ((None, "no Authorization header"), ("sp_wrong", "unknown token")):
        s = env.stream(token)
        assert s.status == 401 and "error" in json.loads(s.body), s.body
        wait_for(lambda: reason in d.log(), 5, f"the log line for {reason}")
    assert "sp_wrong" not in d.log()
    assert "401 for GET /api/v1/events from 127.0.0.1: unknown token" in d.log()
    assert env.stream(op1001, query="extension=1002").status == 403
    assert get(env.http_port, "/api/v1/events", token="x")[0] == 401
    s1001, s1002 = env.stream(op1001), env.stream(op1002)
    sim = env.simulate("--replay", str(CAPTURES / "inbound-answered.plain.esl"), "--speed", "0", "--linger", "0.3")
    assert sim.wait(30) == 0
    s1001.wait_count(3)
    assert [c["event"] for c in s1001.cards] == ["ringing", "answered", "ended"]
    time.sleep(0.3)
    assert s1002.messages == [], "1002 sees nothing of 1001's call"
    # Revoked by the CLI, in another process: the open stream ends, the next request is refused.
    out = subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", "token", "revoke", str(token_id), "--config", str(env.config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert s1001.ended.wait(5), "a revoked token's stream ends within seconds"
    assert not s1002.ended.is_set()
    again = env.stream(op1001)
    assert again.status == 401 and json.loads(again.body) == {"error": "token revoked"}
    wait_for(lambda: f"token {token_id} is revoked" in d.log(), 5, "the revoked log line")
    assert op1001 not in d.log() and op1002 not in d.log()


def test_token_cli_prints_the_token_once_and_stores_its_hash(env):
    out = subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", "token", "create", "--extension", "1003", "--name", "desk 3",
                          "--config", str(env.config)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    clear = out.stdout.strip()
    assert clear.startswith("sp_") and len(clear) > 30
    check = tokens.verify(clear)
    assert check.ok and check.extension == "1003" and check.role == "operator"
    listing = subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", "token", "list", "--config", str(env.config)],
                             capture_output=True, text=True, timeout=30).stdout
    assert "1003" in listing and "desk 3" in listing and clear not in listing
    assert tokens.revoke(check.token_id) and not tokens.verify(clear).ok


# ---- the card ---------------------------------------------------------------------------------------


def test_cards_known_unknown_several_and_internal(env_any):
    env = env_any
    anna = Employee.create(name="Anna Jónsdóttir", extension="1001")
    Employee.create(name="Bjarni Ben", extension="1002")
    known = Customer.create(name="Jón Jónsson", company="Norðurljós ehf.", category="vip", note="Prefers email",
                            city="Reykjavík", country="IS")
    add_phone(known, "+3545551234", "mobile", RULES)
    Order.create(customer=known, number="A-1", title="Roof", stage="install", responsible=anna, amount=Decimal("1500.00"),
                 paid=Decimal("500.50"))
    Order.create(customer=known, number="A-2", title="Gutter", stage="quote", amount=Decimal("99.99"), paid=Decimal("0"))
    Order.create(customer=known, number="A-0", title="Old", stage="done", amount=Decimal("10"), paid=Decimal("0"), status="closed")
    twins = [Customer.create(name=f"Twin {i}", company="Tvíburar") for i in (1, 2)]
    for twin in twins:
        add_phone(twin, "+3545557777", "office", RULES)
    numbers = env.tmp / "numbers.txt"
    numbers.write_text("+3545551234\n+3545557777\n+3545550042\n", encoding="utf-8")
    _, op = env.token("1001")
    env.start_daemon()
    s = env.stream(op)
    sim = env.simulate("--generate", "--calls", "24", "--rate", "40", "--speed", "20", "--seed", "3", "--extensions", "1001-1002",
                       "--numbers", str(numbers), "--mix", "inbound_answered=3,internal=1,ring_group=1", "--linger", "0.3")
    assert sim.wait(60) == 0, sim.log()
    wait_for(lambda: len(s.ids) == len(stored_ids("1001")) > 0, 15, "all pops of 1001")
    cards = s.cards
    stored = {e.id: e for e in CallEvent.select().where(CallEvent.extension == "1001")}
    by_number: dict[str, list[dict]] = {}
    for card in cards:
        row = stored[card["id"]]
        assert card["event"] == row.event and card["call_uuid"] == row.uuid and card["direction"] == row.direction
        assert card["caller_name"] == row.peer_name and card["number"] == row.peer_number
        assert card["at"].endswith("Z") and card["at"][:19] == row.at.isoformat()[:19]
        assert card["operator"] == "Anna Jónsdóttir" and card["extension"] == "1001"
        by_number.setdefault(card["number"] if card["direction"] != "INTERNAL" else "internal", []).append(card)
    assert set(by_number) == {"+3545551234", "+3545557777", "+3545550042", "internal"}, set(by_number)
    card = by_number["+3545551234"][0]
    assert card["matches"] == 1 and card["candidates"] == []
    assert card["record_url"] == f"/customers/{known.id}"
    assert card["customer"] == {
        "id": known.id, "name": "Jón Jónsson", "company": "Norðurljós ehf.", "category": "vip", "note": "Prefers email",
        "category_flag": "\u2605 VIP", "category_colour": "#ca8a04",
        "city": "Reykjavík", "country": "IS", "photo_url": f"/api/v1/customers/{known.id}/photo",
        "orders": [
            {"number": "A-1", "title": "Roof", "stage": "install", "responsible": "Anna Jónsdóttir", "amount": "1500.00",
             "paid": "500.50", "debt": "999.50", "fields": []},
            {"number": "A-2", "title": "Gutter", "stage": "quote", "responsible": None, "amount": "99.99", "paid": "0.00",
             "debt": "99.99", "fields": []},
        ],
        "total_debt": "1099.49", "fields": [],
    }
    assert card["can_call"] is True
    card = by_number["+3545557777"][0]
    assert card["matches"] == 2 and card["customer"] is None and card["can_call"] is True
    assert card["record_url"] == f"/customers/choose?number=%2B3545557777&call={card['call_uuid']}"
    assert card["candidates"] == [{"id": t.id, "name": t.name, "company": "Tvíburar"} for t in twins]
    card = by_number["+3545550042"][0]
    assert card["matches"] == 0 and card["customer"] is None and card["candidates"] == []
    assert card["record_url"] == f"/customers/new?number=%2B3545550042&call={card['call_uuid']}" and card["can_call"]
    for card in by_number["internal"]:
        assert card["record_url"] is None and card["customer"] is None and card["number"] in ("1002",), card
        assert card["can_call"] is True, "a colleague's extension can be called back"
        assert card["colleague"] == "Bjarni Ben" and card["title"].endswith("Bjarni Ben"), card
    # what the pop says, built by the daemon (docs/card.md; every kind in tests/push/test_layout.py)
    card = next(c for c in by_number["+3545551234"] if c["event"] == "ringing")
    assert card["title"] == "Norðurljós ehf.  ★ VIP"
    assert [(line["field"], line["text"], line["style"]) for line in card["lines"][:6]] == [
        ("note", "Prefers email", "warning"), ("name", "Jón Jónsson", "plain"),
        ("order", "A-1 Roof: install · Anna Jónsdóttir · $999.50", "plain"),
        ("order", "A-2 Gutter: quote · $99.99", "plain"), ("total_debt", "Debt $1,099.49", "strong"),
        ("place", "Reykjavík, Iceland", "plain")]
    assert {"number": "555 1234"}.items() <= {line["field"]: line["text"] for line in card["lines"]}.items()
    taken = [c for c in cards if c["event"] == "answered_elsewhere"]
    assert taken, "a ring group call 1002 answered"
    for card in taken:
        assert card["taken_by"] == {"extension": "1002", "name": "Bjarni Ben"}
        assert card["title"] == "Taken by 1002 Bjarni Ben"
    assert all(c["taken_by"] is None for c in cards if c["event"] != "answered_elsewhere")


def test_an_employee_added_while_running_names_cards_and_calls_after_one_reload(env):
    """The card's operator and the call's employee come from the one employee snapshot, refreshed every
    employee_reload: an employee added while the daemon runs counts from the next reload (the card and the writer
    once kept maps of their own, refreshed every 30 s from their first use)."""
    text = env.config.read_text(encoding="utf-8").replace("[database]\n", "[database]\nemployee_reload = 0.5\n")
    env.config.write_text(text, encoding="utf-8")
    _, op = env.token("1001")
    d = env.start_daemon()
    s = env.stream(op)
    args = ("--generate", "--calls", "1", "--rate", "40", "--speed", "20", "--extensions", "1001",
            "--mix", "inbound_answered=1", "--linger", "0.3")
    sim = env.simulate(*args, "--seed", "1", name="before")
    assert sim.wait(60) == 0, sim.log()
    wait_for(lambda: len(s.ids) == len(stored_ids("1001")) > 0, 30, "the pops of the first call")
    assert {card["operator"] for card in s.cards} == {None}
    seen = len(s.cards)
    anna = Employee.create(name="Anna Jónsdóttir", extension="1001")
    wait_for(lambda: "employee extensions changed" in d.log(), 30, "the reload to pick the new employee up")
    sim = env.simulate(*args, "--seed", "2", name="after")
    assert sim.wait(60) == 0, sim.log()
    wait_for(lambda: len(s.ids) == len(stored_ids("1001")) > seen, 30, "the pops of the second call")
    assert {card["operator"] for card in s.cards[seen:]} == {"Anna Jónsdóttir"}
    (after,) = Call.select().where(Call.uuid == s.cards[-1]["call_uuid"])
    assert after.employee_id == anna.id


def test_an_employee_renamed_through_the_api_names_the_next_pop_without_waiting_for_the_reload(env):
    """A change made through this daemon's API refreshes its employee snapshot before the API answers: the next pop
    names the operator as renamed, and a new employee's extension counts at once, long before employee_reload."""
    text = env.config.read_text(encoding="utf-8").replace("[database]\n", "[database]\nemployee_reload = 3600\n")
    env.config.write_text(text, encoding="utf-8")
    anna = Employee.create(name="Anna", extension="1001")
    _, op = env.token("1001")
    _, admin = env.token(None, role="admin")
    env.start_daemon()
    s = env.stream(op)

    def api(method: str, path: str, body: dict) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{env.http_port}{path}", json.dumps(body).encode(),
                                         {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
                                         method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    assert api("PATCH", f"/api/v1/employees/{anna.id}", {"name": "Anna Jónsdóttir"})["name"] == "Anna Jónsdóttir"
    sim = env.simulate("--generate", "--calls", "1", "--rate", "40", "--speed", "20", "--extensions", "1001",
                       "--mix", "inbound_answered=1", "--linger", "0.3", "--seed", "1")
    assert sim.wait(60) == 0, sim.log()
    wait_for(lambda: len(s.ids) == len(stored_ids("1001")) > 0, 30, "the pops of the call")
    assert {card["operator"] for card in s.cards} == {"Anna Jónsdóttir"}
    assert "employee extensions changed" not in env.daemon.log(), "a rename leaves the number rules as they were"
    api("POST", "/api/v1/employees", {"name": "Jón", "extension": "0777"})  # outside the pattern: internal only as staff
    assert "employee extensions changed: 2 known" in env.daemon.log(), "the new extension counted before the answer"


def test_card_customer_part_with_no_open_order_many_orders_and_a_deleted_customer(db):
    """The customer and its open orders come from one query: none open, more than MAX_ORDERS open, and a customer
    deleted since the pop, on both databases."""
    lookup = Lookup(db, RULES)
    cards = CardBuilder(db, lambda: lookup, staff(), CardLayout())
    quiet = Customer.create(name="Quiet", company="Q ehf.")
    Order.create(customer=quiet, number="Q-1", title="Done", stage="done", amount=Decimal("5"), paid=Decimal("0"),
                 status="closed")
    busy = Customer.create(name="Busy")
    for i in range(MAX_ORDERS + 5):
        Order.create(customer=busy, number=f"B-{i}", title="t", stage="s", amount=Decimal("1.10"), paid=Decimal("0.10"))
    gone = Customer.create(name="Gone")

    def card(customer_id: int) -> dict:
        pop = PopRow(1, "ringing", f"call-{customer_id}", "INCOMING", dt.datetime(2026, 11, 27, 8), "1001",
                     "+3545551234", "", customer_id, 1)
        return cards.card(pop)["customer"]

    assert card(quiet.id)["orders"] == [] and card(quiet.id)["total_debt"] == "0.00"
    orders = card(busy.id)["orders"]
    assert [o["number"] for o in orders] == [f"B-{i}" for i in range(MAX_ORDERS)]
    assert card(busy.id)["total_debt"] == f"{MAX_ORDERS}.00"
    gone.delete_instance()
    assert card(gone.id) is None


@pytest.mark.parametrize("number", ["anonymous", "Restricted", "", "<b>555</b>", "+354 555 1234'; DROP", "1001"])
def test_card_offers_no_call_back_or_page_a_number_cannot_reach(db, number):
    """A withheld or hostile number gets no record_url and can_call false (the tray then offers no Call back and no
    New customer); an extension can be called back but has no customer page."""
    cards = CardBuilder(db, lambda: Lookup(db, RULES), staff(), CardLayout())
    direction = "INTERNAL" if number == "1001" else "INCOMING"
    card = cards.card(PopRow(1, "missed", "call-w", direction, dt.datetime(2026, 11, 27, 8), "1002", number, "", None, 0))
    assert card["record_url"] is None
    assert card["can_call"] is (number == "1001")


def test_markup_caller_name_is_sent_verbatim_as_valid_json(env):
    from hostile import HOSTILE_NAME, FakeFreeswitch, hostile_stream

    _, op = env.token("1001")
    fake = FakeFreeswitch(env.esl_port, hostile_stream())
    fake.start()
    try:
        env.start_daemon()
        s = env.stream(op, last_event_id=0)  # the fake may have sent it all already: replay
        assert fake.sent.wait(20)
        s.wait_count(3, 15)
    finally:
        fake.server.close()
    for line in s.raw_lines:
        if line.startswith("data: "):
            assert json.loads(line[6:])["caller_name"] == HOSTILE_NAME
    assert [c["caller_name"] for c in s.cards] == [HOSTILE_NAME] * 3


# ---- photos -----------------------------------------------------------------------------------------


def _jpeg(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    assert image.format == "JPEG"
    return image.convert("RGB")


def test_photo_endpoint(env):
    photo = Customer.create(name="Rauð Mynd", category="regular", photo="1-red.jpg")
    Image.new("RGB", (600, 400), (200, 20, 20)).save(env.photo_dir / "1-red.jpg", "JPEG")
    vip = Customer.create(name="Vala Ísdal", category="vip")
    problem = Customer.create(company="Vandi hf.", category="problem")
    broken = Customer.create(name="Brotin Mynd", category="regular", photo="broken.jpg")
    (env.photo_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    bomb = Customer.create(name="Sprengja", category="regular", photo="bomb.png")
    Image.new("1", (12000, 12000)).save(env.photo_dir / "bomb.png", "PNG")
    missing = Customer.create(name="Engin Skrá", category="regular", photo="gone.jpg")
    _, op = env.token("1001")
    d = env.start_daemon()
    url = lambda c, q="": f"/api/v1/customers/{c.id}/photo{q}"

    assert get(env.http_port, url(photo))[0] == 401
    status, headers, body = get(env.http_port, url(photo, "?size=64"), op)
    assert status == 200 and headers["content-type"] == "image/jpeg" and headers["x-screenpop-photo"] == "photo"
    image = _jpeg(body)
    assert image.size == (64, 64)
    r, g, b = image.getpixel((32, 32))
    assert r > 150 and g < 80 and b < 80, "the photo, cropped square"
    for query, edge in (("", 128), ("?size=1", 32), ("?size=99999", 512), ("?size=abc", 128)):
        status, _, body = get(env.http_port, url(photo, query), op)
        assert status == 200 and _jpeg(body).size == (edge, edge), query
    colours = {}
    for customer in (vip, problem):
        status, headers, body = get(env.http_port, url(customer, "?size=48"), op)
        assert status == 200 and headers["x-screenpop-photo"] == "placeholder"
        colours[customer.category] = _jpeg(body).getpixel((2, 2))
    r, g, b = colours["vip"]
    assert r > 150 and g > 100 and b < 60, f"gold for VIP: {colours['vip']}"
    r, g, b = colours["problem"]
    assert r > 180 and g < 80 and b < 80, f"red for problem: {colours['problem']}"
    for customer, words in ((broken, "not a readable image"), (bomb, "pixels"), (missing, "cannot be read")):
        status, headers, body = get(env.http_port, url(customer), op)
        assert status == 200 and headers["x-screenpop-photo"] == "placeholder" and _jpeg(body).size == (128, 128)
        r, g, b = _jpeg(body).getpixel((2, 2))
        assert b > 150 and r < 100, "blue for regular"
        wait_for(lambda: f"customer {customer.id}: photo" in d.log() and words in d.log(), 5, f"the log line for {words}")
    get(env.http_port, url(broken), op)
    assert d.log().count(f"customer {broken.id}: photo") == 1, "a broken file is logged once, then cached"
    assert get(env.http_port, "/api/v1/customers/999999/photo", op)[0] == 404
    assert d.popen.poll() is None
    assert "Traceback" not in d.log()


def test_tls_when_certfile_and_keyfile_are_set(tmp_path, sqlite_url):
    d, _, answers = tls_daemon(tmp_path, sqlite_url)
    try:
        wait_for(lambda: answers() or d.popen.poll() is not None, 15, "HTTPS")
        assert answers(), d.log()
        assert "HTTP listening on https://" in d.log()
        assert d.terminate() == 0
    finally:
        d.close()


def failed_start(tmp_path: Path, config: Path) -> str:
    """Start the daemon with config, which must end the start with an error status; what the daemon printed."""
    d = daemon(tmp_path, config)
    try:
        assert d.wait(20) != 0, d.log()
        return d.log()
    finally:
        d.close()


def test_an_unusable_certificate_stops_the_start_with_a_clear_message(tmp_path, sqlite_url):
    (tmp_path / "cert.pem").write_text("not a certificate\n", encoding="utf-8")
    config = write_config(tmp_path / "c.toml", free_port(), sqlite_url,
                          http=f'certfile = "{tmp_path / "cert.pem"}"\nkeyfile = "{tmp_path / "cert.pem"}"')
    log = failed_start(tmp_path, config)
    assert "screenpop: [http] certfile/keyfile cannot be used" in log and "Traceback" not in log, log


def test_a_port_in_use_stops_the_start_with_a_clear_message(tmp_path, sqlite_url):
    """The HTTP side starts after the first FreeSWITCH attempt: a port already taken then ends the start in one line."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        log = failed_start(tmp_path, write_config(tmp_path / "c.toml", free_port(), sqlite_url, http_port=port))
    assert f"screenpop: [http] listen 127.0.0.1:{port}: Address already in use" in log and "Traceback" not in log, log


def test_database_down_is_503_not_a_crash(tmp_path, sqlite_url, monkeypatch):
    """In process: the hub's worker meets a database error; requests get 503 JSON, and it recovers after."""
    import peewee

    from screenpop.daemon.customers.photos import Photos
    from screenpop.daemon.web.server import create_app

    from screenpop.daemon.customers.lookup import Lookup

    db = open_database(sqlite_url)
    migrate(db)
    _, clear = tokens.create("1001")
    customer = Customer.create(name="Jón")
    hub = start_hub(db, lambda: Lookup(db, RULES))
    app = create_app(hub, Photos(tmp_path), heartbeat=1.0)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {clear}"}
    real = db.execute_sql

    def down(*args, **kwargs):
        raise peewee.OperationalError("unable to open database file")

    try:
        monkeypatch.setattr(db, "execute_sql", down)
        response = client.get(f"/api/v1/customers/{customer.id}/photo", headers=auth)
        assert response.status_code == 503 and response.get_json() == {"error": "database unavailable, retry shortly"}
        assert client.get("/api/v1/events", headers=auth).status_code == 503
        monkeypatch.setattr(db, "execute_sql", real)
        response = client.get(f"/api/v1/customers/{customer.id}/photo", headers=auth)
        assert response.status_code == 200 and response.headers["X-Screenpop-Photo"] == "placeholder"
    finally:
        stop_hub(hub)
        db.close()


def test_a_stuck_client_is_cut_off_while_the_others_get_everything(sqlite_url):
    """In process: the hub fans 300 pops out without waiting; a subscriber nobody reads is closed and its socket shut."""
    import datetime as dt

    import gevent

    from screenpop.daemon.calls.tracker import CallState

    from screenpop.daemon.customers.lookup import Lookup
    from screenpop.daemon.record.writer import PendingPop

    class Sock:
        shut = False

        def shutdown(self, how):
            self.shut = True

    db = open_database(sqlite_url)
    migrate(db)
    hub = start_hub(db, lambda: Lookup(db, RULES), queue_max=100)
    try:
        stuck_sock = Sock()
        stuck = hub.subscribe("1001", 1, stuck_sock)
        reader = hub.subscribe("1001", 2)
        got: list[int] = []

        def read() -> None:
            while not reader.reason:
                got.extend(pop_id for pop_id, _ in reader.take())
                reader.wake.wait(1)

        consumer = gevent.spawn(read)
        call = CallState(uuid="u1", a_leg=None, started_at=dt.datetime(2026, 1, 1))
        call.direction = "INCOMING"
        for i in range(1, 301):
            hub.push_committed([PendingPop(call, "1001", "ringing", dt.datetime(2026, 1, 1), "+3545551234", "x", "INCOMING",
                                      None, 0, id=i)])
            if i % 50 == 0:
                gevent.sleep(0.01)
        gevent.sleep(0.2)
        assert got == list(range(1, 301)), "the reading client has every pop in order"
        assert stuck.reason == "fell too far behind" and stuck_sock.shut and not stuck.frames
        consumer.kill()
    finally:
        stop_hub(hub)
        db.close()


def test_an_event_stream_sends_each_frame_at_once(tmp_path, sqlite_url):
    """In process: a stream's socket has Nagle off, so a pop never waits for the client's ACK of the one before."""
    import socket

    import gevent.socket

    from screenpop.daemon.config import HttpConfig
    from screenpop.daemon.customers.lookup import Lookup
    from screenpop.daemon.customers.photos import Photos
    from screenpop.daemon.web.server import HttpServer

    db = open_database(sqlite_url)
    migrate(db)
    _, token = tokens.create("1001")
    hub = start_hub(db, lambda: Lookup(db, RULES))
    server = HttpServer(HttpConfig(listen="127.0.0.1:0"), hub, Photos(tmp_path / "photos"))
    server.start()
    client = gevent.socket.create_connection(server.server.address[:2], timeout=30)
    try:
        client.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        head = b""
        while b"retry: 2000" not in head:  # the headers and the first frame may come in separate segments
            chunk = client.recv(65536)
            assert chunk, head
            head += chunk
        (stream,) = hub.subscribers["1001"]
        assert stream.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client.close()
        server.stop()
        stop_hub(hub)
        db.close()
