"""The web pages in Debian's headless Chromium (Playwright) against the real daemon fed by the simulator.

An unknown caller rings; while the call runs, the operator opens the tray's link, creates the customer (or adds
the number to an existing one); the rest of the call's pops and the next call from the number carry the full
card (read from /api/v1/events). Photos, payments and permissions are driven through the pages too. Screenshots
of the main pages go to the test's tmp folder and to /tmp/screenpop-screenshots/.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import webbrowser
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from screenpop.daemon.auth import tokens
from screenpop.daemon.customers.lookup import add_phone
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import Call, Customer, Employee, Order

from sse import Stream
from support import RULES, SLACK, Started, daemon, free_port, patient, serving, simulator, wait_for, write_config

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra (.ci/setup)")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path("/tmp/screenpop-screenshots")
SLOW = "0.6"  # the generated call rings and talks for several real seconds: time to use the pages meanwhile
FAST = "4"  # a call that only has to pop


class Rig(Started):
    """A database with operators and a customer, the daemon on it, the op's push stream, and Chromium."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.tmp = tmp
        self.shots = tmp / "screenshots"
        self.shots.mkdir()
        url = f"sqlite:///{tmp / 'screenpop.db'}"
        self.db = self.keep(open_database(url))
        migrate(self.db)
        Employee.create(name="Anna Jónsdóttir", extension="1001")
        Employee.create(name="Bjarni Ólafsson", extension="1002")
        self.acme = Customer.create(name="Jón Jónsson", company="Acme ehf", category="vip", city="Reykjavík",
                                    country="Iceland", note="Key account; prefers mornings.")
        add_phone(self.acme, "+354 555 1234", "office", RULES)
        Order.create(customer=self.acme, number="A-100", title="Boat engine", stage="invoiced", amount=1000, paid=200,
                     responsible=Employee.get(Employee.extension == "1001"))
        _, self.op = tokens.create("1001", name="tray 1001")
        _, self.admin = tokens.create(None, role="admin", name="admin")
        self.esl_port, self.http_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        config = write_config(tmp / "screenpop.toml", self.esl_port, url, http_port=self.http_port,
                              http="heartbeat = 0.5", database=f'photo_dir = "{tmp / "photos"}"')
        self.daemon = serving(self.keep(daemon(tmp, config)), self.base)
        self.stream = Stream(self.http_port, self.op)
        self.sims = 0
        self.sim = None
        self.pw = playwright_api.sync_playwright().start()
        self.profiles: list[str] = []

    def browser(self):
        """A new Chromium with an empty profile (a workstation of its own)."""
        profile = tempfile.mkdtemp(prefix="screenpop-chromium-")
        self.profiles.append(profile)
        context = patient(self.pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                                     args=CHROMIUM_ARGS,
                                                                     viewport={"width": 1200, "height": 900}))
        return context, context.pages[0] if context.pages else context.new_page()

    def mint(self, token: str, next_path: str) -> str:
        """What the tray does before opening a page: a one-time sign-in link."""
        req = urllib.request.Request(self.base + "/api/v1/signin-links", data=json.dumps({"next": next_path}).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())["url"]

    def call(self, number: str, seed: int, speed: str = SLOW):
        """The simulator plays one answered call from number to extension 1001 (after the previous one is over)."""
        if self.sim is not None:
            assert self.sim.wait(60) == 0, self.sim.log()
        numbers = self.tmp / f"numbers-{seed}.txt"
        numbers.write_text(number + "\n")
        self.sims += 1
        self.sim = simulator(self.tmp, self.esl_port, "--generate", "--calls", "1", "--mix", "inbound_answered=1",
                             "--numbers", str(numbers), "--extensions", "1001", "--seed", str(seed), "--speed", speed,
                             "--linger", "0.3", name=f"sim{self.sims}")
        return self.sim

    def pops(self, number: str) -> list[dict]:
        return [c for c in self.stream.cards if c["number"] == number]

    def wait_pop(self, number: str, event: str, timeout: float = 60) -> dict:
        def found():
            return any(c["event"] == event for c in self.pops(number))
        wait_for(found, timeout, f"a {event} pop for {number}")
        return [c for c in self.pops(number) if c["event"] == event][-1]

    def shot(self, page, name: str) -> None:
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(path, SHOTS / path.name)

    def close(self) -> None:
        """Chromium and the stream closed first; the daemon must then stop cleanly."""
        self.stream.close()
        self.pw.stop()
        for profile in self.profiles:
            shutil.rmtree(profile, ignore_errors=True)
        assert self.daemon.terminate() == 0, self.daemon.log()
        super().close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    with closing(Rig(tmp_path_factory.mktemp("web-browser"))) as r:
        yield r


def test_new_customer_during_an_unknown_call(rig):
    number = "+3545557777"
    rig.call(number, seed=11)
    ringing = rig.wait_pop(number, "ringing")
    assert ringing["customer"] is None
    assert ringing["record_url"] == f"/customers/new?number=%2B3545557777&call={ringing['call_uuid']}"
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.op, ringing["record_url"]))
        assert "/customers/new" in page.url and page.locator("h1").inner_text().startswith("Caller")
        assert page.input_value("form[action='/customers/new'] input[name=number]") == number
        rig.shot(page, "new-caller")
        page.fill("input[name=company]", "Fjord Fishing ehf")
        page.fill("form[action='/customers/new'] input[name=name]", "Sigríður Þórsdóttir")
        page.select_option("select[name=category]", "problem")
        page.click("text=Create customer")
        page.wait_for_url("**/customers/*")
        assert not any(c["event"] == "ended" for c in rig.pops(number)), "the call was still going on"
        assert "Fjord Fishing ehf" in page.locator("h1 strong").inner_text()
        assert page.locator(".badge-problem").count() == 1 and "+3545557777" in page.content()
        rig.shot(page, "customer-created")
    finally:
        context.close()
    customer = Customer.get(Customer.company == "Fjord Fishing ehf")
    ended = rig.wait_pop(number, "ended")
    assert ended["customer"] and ended["customer"]["id"] == customer.id, "the rest of the call carries the card"
    wait_for(lambda: Call.get(Call.uuid == ringing["call_uuid"]).ended_at is not None, 10, "the call stored as ended")
    assert Call.get(Call.uuid == ringing["call_uuid"]).customer_id == customer.id, "the writer kept the link"
    # The same caller again: the pop is the full card at once.
    rig.call(number, seed=12, speed=FAST)
    wait_for(lambda: len([c for c in rig.pops(number) if c["event"] == "ringing"]) == 2, 30, "the second call's pop")
    again = [c for c in rig.pops(number) if c["event"] == "ringing"][-1]
    assert again["call_uuid"] != ringing["call_uuid"]
    assert again["customer"]["company"] == "Fjord Fishing ehf" and again["customer"]["category"] == "problem"
    assert again["record_url"] == f"/customers/{customer.id}"
    rig.wait_pop(number, "ended")


def test_add_the_number_to_an_existing_customer(rig):
    number = "+3548201234"
    rig.call(number, seed=21)
    ringing = rig.wait_pop(number, "ringing")
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.op, ringing["record_url"]))
        page.fill("input[name=q]", "555 12")
        page.click("text=Find")
        assert page.locator("ul.picks li").count() == 1 and "Acme ehf" in page.locator("ul.picks").inner_text()
        rig.shot(page, "add-number-search")
        page.click("text=Add number here")
        page.wait_for_url(f"**/customers/{rig.acme.id}")
        assert "+3548201234" in page.locator("#numbers").inner_text()
    finally:
        context.close()
    ended = rig.wait_pop(number, "ended")
    assert ended["customer"]["id"] == rig.acme.id
    wait_for(lambda: Call.get(Call.uuid == ringing["call_uuid"]).customer_id == rig.acme.id, 10, "the call linked")
    rig.call(number, seed=22, speed=FAST)
    wait_for(lambda: len([c for c in rig.pops(number) if c["event"] == "ringing"]) == 2, 30, "the second call's pop")
    again = [c for c in rig.pops(number) if c["event"] == "ringing"][-1]
    assert again["customer"]["company"] == "Acme ehf" and again["customer"]["total_debt"] == "800.00"
    assert [o["number"] for o in again["customer"]["orders"]] == ["A-100"]
    rig.wait_pop(number, "ended")


def test_choose_which_customer_sharing_the_number_is_calling(rig):
    """A number two customers share pops the chooser; "This is the caller" puts the call on the chosen record, and
    the rest of the call carries that customer's card."""
    number = "+3548207777"
    twins = [Customer.create(name=name, company="Tvíburar ehf") for name in ("Ása Tvíburi", "Bára Tvíburi")]
    for twin in twins:
        add_phone(twin, number, "home", RULES)
    rig.call(number, seed=31)
    ringing = rig.wait_pop(number, "ringing")
    assert ringing["matches"] == 2 and ringing["customer"] is None
    assert ringing["record_url"] == f"/customers/choose?number=%2B3548207777&call={ringing['call_uuid']}"
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.op, ringing["record_url"]))
        assert page.locator("h1").inner_text() == "Which customer?"
        assert page.locator("button", has_text="This is the caller").count() == 2
        rig.shot(page, "chooser")
        page.locator("tr", has_text="Bára Tvíburi").locator("button", has_text="This is the caller").click()
        page.wait_for_url(f"**/customers/{twins[1].id}")
        assert "This call is now on their record." in page.content()
    finally:
        context.close()
    ended = rig.wait_pop(number, "ended")
    assert ended["customer"]["id"] == twins[1].id, "the rest of the call carries the chosen card"
    wait_for(lambda: Call.get(Call.uuid == ringing["call_uuid"]).customer_id == twins[1].id, 10, "the call linked")


def _wait_true(page, expression: str, timeout: float = 60.0) -> None:
    """Poll expression until true. page.wait_for_function polls through eval, which the pages' CSP refuses when the
    first look is false (an image still loading on a busy machine); page.evaluate is not subject to the CSP."""
    deadline = time.monotonic() + timeout * SLACK
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout * SLACK:.0f} s: {expression}"
        time.sleep(0.05)


def test_photo_payment_and_the_main_pages(rig):
    photo = rig.tmp / "face.jpg"
    Image.new("RGB", (1600, 1200), (30, 120, 200)).save(photo, quality=92)
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.op, f"/customers/{rig.acme.id}"))
        assert "Acme ehf" in page.locator("h1").inner_text()
        assert page.locator("tr.open .debt").inner_text() == "$800.00"
        page.set_input_files("input[name=photo]", str(photo))
        with page.expect_response(lambda r: "/photo?size=160" in r.url) as shown:
            page.click("text=Upload photo")
        assert shown.value.headers["x-screenpop-photo"] == "photo"
        assert page.locator(".flash").inner_text() == "Photo saved."
        _wait_true(page, "document.querySelector('img.photo').complete")
        assert page.evaluate("document.querySelector('img.photo').naturalWidth") == 160
        # issue 16: the photo in the quality it was uploaded in, large and not cropped, the original one click away
        _wait_true(page, "document.querySelector('img.photo-large').complete")
        natural = page.evaluate("[document.querySelector('img.photo-large').naturalWidth, "
                                "document.querySelector('img.photo-large').naturalHeight]")
        assert natural == [1600, 1200]
        box = page.locator("img.photo-large").bounding_box()
        assert box["width"] > 600 and abs(box["width"] / box["height"] - 4 / 3) < 0.01, box  # large, whole
        rig.shot(page, "customer-photo")
        with page.expect_navigation():
            page.click("text=Open the original")
        assert page.evaluate("[document.images[0].naturalWidth, document.images[0].naturalHeight]") == [1600, 1200]
        assert page.evaluate("document.contentType") == "image/jpeg"
        page.go_back()
        page.fill("tr.open input[name=amount]", "300")
        page.click("text=Record payment")
        page.wait_for_url("**#orders")
        assert "debt now $500.00" in page.locator(".flash").inner_text()
        assert page.locator("tr.open .debt").inner_text() == "$500.00"
        rig.shot(page, "customer-record")
        page.fill("tr.open input[name=amount]", "999")
        page.click("text=Record payment")
        assert "above the order amount" in page.locator(".error").inner_text()
        page.goto(f"{rig.base}/customers?q=acme")
        rig.shot(page, "search")
        page.goto(f"{rig.base}/calls")
        assert page.locator("h1").inner_text() == "Calls"
        rig.shot(page, "calls")
        page.goto(f"{rig.base}/employees")
        assert page.locator("h1").inner_text() == "Not allowed", "an operator cannot reach the employees page"
        assert page.locator("nav a", has_text="Employees").count() == 0
        page.click("text=Sign out")
        page.goto(f"{rig.base}/customers")
        assert "/signin?next=" in page.url
        rig.shot(page, "signin")
    finally:
        context.close()
    context, page = rig.browser()
    try:
        page.goto(f"{rig.base}/employees")
        page.click("summary:has-text('Sign in with an API token')")  # the password form comes first (docs/accounts.md)
        page.fill("input[name=token]", rig.admin)
        page.click("button:has-text('Sign in with the token')")
        page.wait_for_url("**/employees")
        assert "Anna Jónsdóttir" in page.content()
        page.fill("form[action='/employees'] input[name=extension]", "1003")
        page.fill("form[action='/employees'] input[name=name]", "Elín Magnúsdóttir")
        page.click("button:has-text('Add')")
        assert Employee.get_or_none(Employee.extension == "1003") is not None
        rig.shot(page, "employees")
    finally:
        context.close()


def test_every_page_has_the_one_layout(rig):
    """Issue 16: the dashboard and missed pages had another, unstyled layout without the menu or sign-out."""
    pages = ["/customers", f"/customers/{rig.acme.id}", f"/customers/{rig.acme.id}/edit", "/customers/new?number=5550123",
             "/calls", "/dashboard", "/missed", "/employees", "/tokens", "/fields", "/categories", "/layouts", "/layouts/default",
             "/reports/nothing.csv"]
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.admin, "/customers"))
        for path in pages:
            page.goto(rig.base + path)
            menu = [a.strip() for a in page.locator("header.nav nav a").all_inner_texts()]
            assert menu == ["Customers", "Calls", "Dashboard", "Missed", "Transcripts", "People", "Employees", "Tokens",
                            "Fields", "Categories", "Layouts", "Alerts", "Listens"], (path, menu)
            assert page.locator("header.nav button", has_text="Sign out").is_visible(), path
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(246, 247, 249)", (path, background)  # the one stylesheet
        rig.shot(page, "not-found")
        page.goto(rig.base + "/dashboard")
        rig.shot(page, "dashboard")
        page.goto(rig.base + "/missed")
        rig.shot(page, "missed")
        page.click("text=Sign out")
        page.goto(rig.base + "/dashboard")
        assert "/signin?next=" in page.url
    finally:
        context.close()


def test_a_right_to_left_override_in_a_name_stays_inside_it(rig):
    """Chromium lays out a company name holding U+202E: the rest of the heading (the category badge) stays after it."""
    evil = Customer.create(name="Jón\u202e Jónsson", company="Evil\u202e ehf", category="vip")
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.op, f"/customers/{evil.id}"))
        name, badge = page.locator("h1 strong").bounding_box(), page.locator("h1 .badge").bounding_box()
        rig.shot(page, "bidi-override")
        assert badge["x"] >= name["x"] + name["width"], (name, badge)
        assert page.locator("h1 .badge").inner_text() == "\u2605 VIP"  # the category's flag
    finally:
        context.close()


def test_tray_opens_pages_through_a_one_time_link(rig, monkeypatch):
    """The tray's menu entries mint a link with its token; without a working token it opens the plain page."""
    from screenpop.tray.app import TrayApp
    from screenpop.tray.config import TrayConfig

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    app = TrayApp(TrayConfig(server=rig.base, extension="1001", token=rig.op), show_icon=False)
    app.open_page(f"/customers/{rig.acme.id}")
    wait_for(lambda: opened, 10, "the browser to be opened")
    assert opened[0].startswith(f"{rig.base}/signin/")
    context, page = rig.browser()
    try:
        page.goto(opened[0])
        assert page.url == f"{rig.base}/customers/{rig.acme.id}" and "Acme ehf" in page.locator("h1").inner_text()
        page.goto(opened[0])
        assert "does not work any more" in page.content(), "the link works once"
        log = rig.daemon.log()
        assert opened[0].rsplit("/", 1)[1] not in log and rig.op not in log
        assert "web sign-in: token" in log and "by one-time link" in log and "was already used" in log
    finally:
        context.close()
    for config in (TrayConfig(server=rig.base, extension="1001", token="sp_revoked_or_wrong"),
                   TrayConfig(server=f"http://127.0.0.1:{free_port()}", extension="1001", token=rig.op)):
        opened.clear()
        TrayApp(config, show_icon=False).open_page("/dashboard")
        wait_for(lambda: opened, 10, "the fallback")
        assert opened == [config.url("/dashboard")]


def test_demo_prints_the_pages_and_an_admin_link(rig, tmp_path):
    """`screenpop demo` names the pages and prints a one-time admin link that signs the browser in."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    demo = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "demo", "--dir", str(tmp_path / "demo"),
                             "--calls", "40", "--rate", "4"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**env, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        while not any(line.startswith("  sign in") for line in lines):
            line = demo.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert any(line.startswith("  pages     http://127.0.0.1:") for line in lines), lines
        link = lines[-1].split()[2]
        context, page = rig.browser()
        try:
            page.goto(link)
            assert page.url.endswith("/customers") and page.locator("tbody tr").count() >= 20
            assert page.locator("nav a", has_text="Employees").count() == 1, "signed in as admin"
            rig.shot(page, "demo-customers")
            page.locator("tbody tr a").first.click()
            page.wait_for_url("**/customers/*")
            rig.shot(page, "demo-record")
            time.sleep(3)  # a few of the demo's calls are recorded by now
            page.goto(link.split("/signin/")[0] + "/calls")
            rig.shot(page, "demo-calls")
            page.goto(link)
            assert "does not work any more" in page.content()
        finally:
            context.close()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=30)


def test_call_button_rings_the_operators_phone_then_dials_the_number(rig):
    if rig.sim is not None:
        assert rig.sim.wait(60) == 0, rig.sim.log()
    connected = rig.daemon.log().count("connected to FreeSWITCH")
    rig.sims += 1
    idle = simulator(rig.tmp, rig.esl_port, "--originate-speed", "4", name=f"sim{rig.sims}")
    context, page = rig.browser()
    try:
        wait_for(lambda: rig.daemon.log().count("connected to FreeSWITCH") > connected, 20, "the daemon to follow it")
        page.goto(rig.mint(rig.op, f"/customers/{rig.acme.id}"))
        page.click("#numbers form.call button")
        page.wait_for_url(f"**/customers/{rig.acme.id}")
        assert page.locator(".flash").inner_text() == "Your phone answered: dialling +3545551234."
        rig.shot(page, "call-button")
        dialing = rig.wait_pop("+3545551234", "dialing")
        assert dialing["direction"] == "OUTGOING" and dialing["customer"]["company"] == "Acme ehf"
        rig.wait_pop("+3545551234", "ended")
        page.goto(rig.base + "/calls")
        assert page.locator("form.call").count() >= 1
    finally:
        context.close()
        idle.close()


def test_missed_list_record_link_call_button_mark_done_and_undo(rig):
    """Issue 16: the missed list's rows: the record link (or the new-customer link), Call back but never for a withheld
    number, Mark done and Undo with who and when."""
    import datetime as dt

    from screenpop.db.models import CallParty, utcnow

    known = Customer.create(name="Gunna", company="Missed ehf")
    add_phone(known, "+354 555 0771", "office", RULES)
    for uuid, number, customer in (("bm-known", "+3545550771", known), ("bm-stranger", "+3545550772", None),
                                   ("bm-withheld", None, None)):
        call = Call.create(uuid=uuid, direction="INCOMING", external_number=number or "anonymous", external_e164=number,
                           customer=customer, matches=1 if customer else 0, missed=True,
                           started_at=utcnow() - dt.timedelta(days=3, minutes=len(uuid)))
        CallParty.create(call=call, extension="1001", role="callee", outcome="missed", rang_at=call.started_at)
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.op, "/missed?extension=1001"))
        row = page.locator('tr[data-call="bm-known"]')
        assert row.locator("form.call button").count() == 1
        assert page.locator('tr[data-call="bm-stranger"] form.call button').count() == 1
        assert "2 not returned, 1 withheld" in page.locator("p.counts").inner_text()
        assert page.locator('tr[data-call="bm-stranger"] a', has_text="unknown: add").get_attribute("href") == \
            "/customers/new?number=%2B3545550772&call=bm-stranger"
        rig.shot(page, "missed-list")
        page.click("nav.tabs a:has-text('Withheld')")  # counted apart, never "not returned"
        withheld = page.locator('tr[data-call="bm-withheld"]')
        assert withheld.locator("form.call").count() == 0 and "withheld" in withheld.inner_text()
        page.goto(rig.base + "/missed?extension=1001")
        row.locator("button", has_text="Mark done").click()
        page.wait_for_url("**/missed?extension=1001")
        assert page.locator(".flash").inner_text() == "Marked done."
        assert page.locator('tr[data-call="bm-known"]').count() == 0
        page.goto(rig.base + "/missed?extension=1001&state=done")
        row = page.locator('tr[data-call="bm-known"]')
        assert "done by 1001 Anna Jónsdóttir at" in row.inner_text()
        row.locator("button", has_text="Undo").click()
        page.wait_for_url("**/missed?extension=1001&state=done")
        page.goto(rig.base + "/missed?extension=1001")
        page.locator('tr[data-call="bm-known"] a', has_text="Missed ehf").click()
        page.wait_for_url(f"**/customers/{known.id}")
        assert "Missed ehf" in page.locator("h1").inner_text()
    finally:
        context.close()


def test_custom_field_defined_edited_and_shown(rig):
    """An admin defines fields on the Fields page; an operator fills them in on the record's edit page; the record
    shows them (escaped, a link as a link), the search finds the text, and the category's colour comes from the list."""
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.admin, "/fields"))
        for key, label, kind, options in (("contract", "Contract", "text", ""), ("level", "Service level", "choice",
                                                                                 "Gold\nSilver"),
                                          ("crm", "CRM record", "link", "")):
            page.fill("#new-field input[name=key]", key)
            page.fill("#new-field input[name=label]", label)
            page.select_option("#new-field select[name=type]", kind)
            page.fill("#new-field textarea[name=options]", options)
            page.click("text=Add field")
            page.wait_for_url("**/fields")
            assert f"Field {label}" in page.locator(".flash").inner_text()
        page.fill("#new-field input[name=key]", "name")
        page.fill("#new-field input[name=label]", "Name again")
        page.click("text=Add field")
        assert "built-in column" in page.locator(".error").inner_text(), "refused, saying why"
        rig.shot(page, "fields")
        page.goto(rig.base + "/categories")
        vip = page.evaluate("getComputedStyle(document.querySelector('.badge-vip')).backgroundColor")
        assert vip == "rgb(202, 138, 4)", vip
        rig.shot(page, "categories")
    finally:
        context.close()
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.op, f"/customers/{rig.acme.id}/edit"))
        page.fill("input[name='field.contract']", "<b>K-2027</b> Þjónusta")
        page.select_option("select[name='field.level']", "Silver")
        page.fill("input[name='field.crm']", "javascript:alert(1)")
        page.click("text=Save")
        assert "fields.crm: " in page.locator(".error").inner_text() and "web address" in page.locator(".error").inner_text()
        page.fill("input[name='field.crm']", "https://crm.example/c/100")
        page.click("text=Save")
        page.wait_for_url(f"**/customers/{rig.acme.id}")
        details = page.locator("#fields")
        assert details.locator("dd[data-key=contract]").inner_text() == "<b>K-2027</b> Þjónusta"
        assert details.locator("dd[data-key=contract] b").count() == 0, "shown as text, not markup"
        assert details.locator("dd[data-key=level]").inner_text() == "Silver"
        assert details.locator("dd[data-key=crm] a").get_attribute("href") == "https://crm.example/c/100"
        rig.shot(page, "customer-fields")
        page.goto(f"{rig.base}/customers?q=thjonusta")
        assert "Acme ehf" in page.locator("tbody").inner_text(), "the search finds the text field"
    finally:
        context.close()


def test_layout_edited_with_its_live_preview_and_given_to_a_team(rig):
    """An admin makes a layout for a team: the preview (drawn by the pops' layout code, as the tray shows it) follows
    each edit, names an unknown key, shows a chosen customer; saved, the team's extensions get it (docs/web.md)."""
    context, page = rig.browser()
    try:
        page.goto(rig.mint(rig.admin, "/layouts"))
        page.fill("input[name=name][aria-label=\"New layout's name\"]", "sales")
        page.click("text=New layout")
        page.wait_for_url("**/layouts/sales")
        preview = page.locator("#preview")
        assert preview.locator(".summary").inner_text() == "Norðurljós ehf.  ★ VIP", "the sample customer"
        assert preview.locator(".line").first.inner_text() == "Prefers email", "the default layout to start from"
        page.fill("#items", "place\ntotal_debt warning\n<b>oops</b>")
        wait_for(lambda: "unknown field(s): '<b>oops</b>'" in page.locator("#preview-error").inner_text(), 20,
                 "the preview to name the unknown key")
        page.fill("#items", "place\ntotal_debt warning\noperator")
        wait_for(lambda: page.locator("#preview .line").count() == 3 and
                 page.locator("#preview-error").inner_text() == "", 20, "the preview to follow the edit")
        assert page.locator("#preview .line").all_inner_texts()[:2] == ["Debt $1,099.49", "Reykjavík, Iceland"]
        assert page.locator("#preview .line.warning b").inner_text() == "Debt $1,099.49", "a warning: first, bold"
        assert page.locator("#preview .line.plain b").count() == 0
        page.fill("#preview-customer", str(rig.acme.id))
        wait_for(lambda: page.locator("#preview .summary").inner_text() == "Acme ehf  ★ VIP", 20, "the chosen customer")
        rig.shot(page, "layout-editor")
        page.click("text=Save layout")
        page.wait_for_url("**/layouts/sales")
        assert "Layout sales added" in page.locator(".flash").inner_text()
        page.goto(rig.base + "/layouts")
        page.fill("#new-team input[name=name]", "sales")
        page.select_option("#new-team select[name=layout]", "sales")
        page.fill("#new-team input[name=extensions]", "1002, 1003")
        page.click("text=Add team")
        page.wait_for_url("**/layouts")
        assert "Team sales added" in page.locator(".flash").inner_text()
        rig.shot(page, "layouts")
    finally:
        context.close()
    req = urllib.request.Request(rig.base + "/api/v1/layouts", headers={"Authorization": f"Bearer {rig.admin}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        stored = json.loads(r.read())
    assert stored["teams"] == [{"name": "sales", "layout": "sales", "extensions": ["1002", "1003"]}]
    assert [x["items"] for x in stored["layouts"] if x["name"] == "sales"] == [
        [{"field": "place", "style": "plain"}, {"field": "total_debt", "style": "warning"},
         {"field": "operator", "style": "plain"}]]
