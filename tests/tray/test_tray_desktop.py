"""The real tray client (`screenpop tray` as a process) on a real desktop: Xvfb, a session D-Bus, dunst as the
notification server, trayer as the tray host. What dunst received is read back with `dunstctl history`; the
tray menu is opened and used with xdotool.

Two sources of pops: the real daemon (its HTTP push stream, fed by the simulator or a scripted event socket) for
what the daemon builds, and tests/desktop.PushServer, a small real SSE server speaking the same interface, where a
test needs exact control of the cards (answered elsewhere, do-not-disturb, the menu)."""
from __future__ import annotations

import re
import shutil
import sys
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest

from screenpop.daemon.push.layout import NOTE_MAX

from desktop import Desktop, PushServer, card, customer, missed_answer, missing_tools, wait_file_lines
from support import http_ready, wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="a freedesktop desktop")
SCREENSHOT_COPY = Path("/tmp/screenpop-notification.png")


class Session:
    def __init__(self, folder: Path, dunst_defaults: bool = False, **tray_env: str) -> None:
        missing = missing_tools()
        if missing:
            pytest.fail(f"desktop test tools missing: {', '.join(missing)} (run .ci/setup)", pytrace=False)
        self.folder = folder
        self.desktop = Desktop(folder, dunst_defaults).start()
        self.server = PushServer()
        self.urls = folder / "urls.txt"
        self.browser = folder / "browser.sh"  # the browser every tray here opens pages with: it notes the URL
        self.browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{self.urls}"\n', encoding="utf-8")
        self.browser.chmod(0o755)
        self.tray = self.start_tray("tray", "secret-token", BROWSER=str(self.browser), **tray_env)
        wait_for(lambda: self.server.streams() == 1, 20, f"the tray's stream\n{self.log()}")

    def start_tray(self, name: str, token: str, **env: str):
        return self.desktop.spawn(name, [
            sys.executable, "-m", "screenpop.daemon.cli", "tray", "--config", str(self.folder / "absent.toml"),
            "--server", self.server.url, "--extension", "1001", "--token", token], env=env)

    def log(self, name: str = "tray") -> str:
        return (self.folder / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def pops_logged(self) -> int:
        return self.log().count(" INFO screenpop.tray: pop ")

    def newest(self) -> int:
        return max((n["id"] for n in self.desktop.history()), default=0)

    def pop(self, c: dict, screenshot: Path | None = None) -> dict:
        """Push a card; wait until dunst shows it; optionally photograph it; return dunst's record of it."""
        d = self.desktop
        d.close_all()
        wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
        seen = self.newest()
        self.server.push(c)
        wait_for(lambda: d.displayed() >= 1, 10, f"the notification\n{self.log()[-2000:]}")
        if screenshot is not None:
            wait_for(lambda: bool(d.xdotool("search", "--onlyvisible", "--class", "Dunst").stdout.strip()), 5, "dunst's window")
            d.screenshot(screenshot)
        d.close_all()
        wait_for(lambda: self.newest() > seen, 5, "the notification in dunst's history")
        shown = [n for n in d.history() if n["id"] > seen]
        assert len(shown) == 1, shown
        return shown[0]

    def tray_window(self) -> str:
        out = self.desktop.xdotool("search", "--name", "^screenpop").stdout.split()
        assert out, "the tray icon window"
        return out[0]

    def menu(self, *keys: str) -> None:
        """Right-click the tray icon and work its menu with the keyboard."""
        d = self.desktop
        before = set(d.xdotool("search", "--onlyvisible", "--name", "").stdout.split())
        d.xdotool("mousemove", "--window", self.tray_window(), "16", "15", "click", "3")
        wait_for(lambda: set(d.xdotool("search", "--onlyvisible", "--name", "").stdout.split()) - before, 5, "the menu")
        for key in keys:
            opened = len(set(d.xdotool("search", "--onlyvisible", "--name", "").stdout.split()) - before)
            d.xdotool("key", key)
            if key == "Right":  # the submenu opens after a moment
                wait_for(lambda: len(set(d.xdotool("search", "--onlyvisible", "--name", "").stdout.split()) - before)
                         > opened, 5, "the submenu")

    def window_names(self) -> list[str]:
        ids = self.desktop.xdotool("search", "--name", "^screenpop").stdout.split()
        return [self.desktop.xdotool("getwindowname", w).stdout.strip() for w in ids]

    def tray_window_name(self) -> str:
        """The icon window's title, or "" while there is none (the tray host may be re-creating it)."""
        ids = self.desktop.xdotool("search", "--name", "^screenpop").stdout.split()
        return self.desktop.xdotool("getwindowname", ids[0]).stdout.strip() if ids else ""

    def close(self) -> None:
        if self.tray.poll() is None:
            self.tray.terminate()
        self.desktop.stop()
        self.server.close()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with closing(Session(tmp_path_factory.mktemp("desktop"))) as s:
        yield s


def test_known_customer_pops_with_photo_and_screenshot(session):
    vip = customer(cid=7, category="vip", total_debt="999.50", note="Prefers email", orders=[
        {"number": "A-1", "title": "Roof", "stage": "install", "responsible": "Anna", "amount": "1500.00",
         "paid": "500.50", "debt": "999.50"}])
    shot = session.folder / "notification.png"
    shown = session.pop(card(call_uuid="k1", customer=vip, operator="Anna Jónsdóttir"), screenshot=shot)
    assert shown["appname"] == "screenpop" and shown["summary"] == "Norðurljós ehf.  ★ VIP"
    body = shown["body"].splitlines()
    assert body[:4] == ["<b>Prefers email</b>", "Jón Jónsson", "A-1 Roof: install · Anna · $999.50", "<b>Debt $999.50</b>"]
    assert body[4:6] == ["Reykjavík, Iceland", "555 1234"] and body[6].endswith(" · INCOMING")
    assert body[7] == "Operator 1001 Anna Jónsdóttir"
    icon = Path(shown["icon_path"])
    assert icon.is_file() and icon.read_bytes() == session.server.photo, "the photo fetched with the token"
    assert any(r["path"] == "/api/v1/customers/7/photo?size=64" for r in session.server.requests)
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1024, 768) and img.getbbox() is not None
    shutil.copyfile(shot, SCREENSHOT_COPY)


def test_an_update_from_the_sources_replaces_the_pop_in_place(session):
    """The daemon's sources answered: the same notification (one id, one entry in dunst's history) shows their
    fields, escaped."""
    d = session.desktop
    d.close_all()
    wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
    seen = session.newest()
    pop_id = session.server.push(card(call_uuid="src1", customer=customer(), caller_name=""))
    wait_for(lambda: d.displayed() == 1, 10, "the pop")
    updates = session.log().count("updated by the sources")
    answered = {"pending": False, "external_id": "C-1", "fields": [
        {"source": "erp", "name": "Open invoices", "value": "1250.50"},
        {"source": "crm", "name": "Tier", "value": "<b>gold</b> & <img src=x>"}]}
    session.server.update(pop_id, **card(call_uuid="src1", customer=customer(), caller_name="", sources=answered))
    wait_for(lambda: session.log().count("updated by the sources") > updates, 10, "the tray to take the update")
    wait_for(lambda: d.displayed() == 1, 5, "still one notification")
    d.close_all()
    wait_for(lambda: session.newest() > seen, 5, "the notification in dunst's history")
    shown = [n for n in d.history() if n["id"] > seen]
    assert len(shown) == 1, f"replaced in place, not shown twice: {shown}"
    body = shown[0]["body"].splitlines()
    assert "Open invoices: 1250.50" in body and "Tier: &lt;b&gt;gold&lt;/b&gt; &amp; &lt;img src=x&gt;" in body, body


def test_answered_elsewhere_says_who_took_it_then_closes(session):
    d = session.desktop
    d.close_all()
    wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
    seen = session.newest()
    session.server.push(card(call_uuid="e1", customer=customer()))
    wait_for(lambda: d.displayed() == 1, 10, "the pop")
    session.server.push(card(event="answered_elsewhere", call_uuid="e1", customer=customer(),
                             taken_by={"extension": "1002", "name": "Anna Jónsdóttir"}))
    wait_for(lambda: d.displayed() == 0, 15, "the pop gone a few seconds after it said who took the call")
    (shown,) = [n for n in d.history() if n["id"] > seen]
    assert shown["summary"] == "Taken by 1002 Anna Jónsdóttir", "the pop itself was replaced (same id), then closed"
    assert shown["body"].splitlines()[0] == "<b>Norðurljós ehf.</b>"


# ---- every kind of pop on dunst's default settings --------------------------------------------------


def _today(hour: int = 14) -> str:
    """A time today (UTC), so the pop shows the time alone."""
    return time.strftime(f"%Y-%m-%dT{hour:02d}:05:00.000Z", time.gmtime())


ORDERS = [{"number": f"A-{i}", "title": t, "stage": st, "responsible": r, "amount": "1500.00", "paid": "500.50",
           "debt": "999.50"} for i, (t, st, r) in enumerate(
    [("Roof", "install", "Anna Jónsdóttir"), ("Gutter", "quote", None), ("Windows", "order", "Björn"),
     ("Door", "install", "Anna"), ("Paint", "done", "Sigga")], 1)]
HUGE = "Ignore previous notes " * 600
KINDS = {
    "vip-note-orders": (dict(customer=customer(category="vip", note="Call back before noon; never on Fridays",
                                               orders=ORDERS, total_debt="4997.50"), operator="Anna Jónsdóttir",
                             caller_name="NORDURLJOS"),
                        "Norðurljós ehf.  ★ VIP",
                        ["<b>Call back before noon; never on Fridays</b>", "Jón Jónsson",
                         "A-1 Roof: install · Anna Jónsdóttir · $999.50", "A-2 Gutter: quote · $999.50",
                         "A-3 Windows: order · Björn · $999.50", "and 2 more open orders", "<b>Debt $4,997.50</b>",
                         "Reykjavík, Iceland", "Caller ID: NORDURLJOS", "555 1234"]),
    "problem-note": (dict(customer=customer(cid=8, name="Bad Payer", company="", category="problem", note="Cash only",
                                            total_debt="250.00", photo=False)),
                     "Bad Payer  ⚠ PROBLEM", ["<b>Cash only</b>", "<b>Debt $250.00</b>", "Reykjavík, Iceland", "555 1234"]),
    "regular": (dict(customer=customer(cid=9), caller_name="Jón Jónsson"),
                "Norðurljós ehf.", ["Jón Jónsson", "Reykjavík, Iceland", "555 1234"]),
    "unknown-home": (dict(number="+3545550042", caller_name="Gunna"), "555 0042", ["Unknown caller", "Caller ID: Gunna"]),
    "unknown-foreign": (dict(number="+4545551234"), "+45 45 55 12 34", ["Unknown caller", "Denmark"]),
    "several": (dict(number="+3545557777", matches=4, candidates=[
                    {"id": 1, "name": "Twin 1", "company": "Tvíburar"}, {"id": 2, "name": "Twin 2", "company": "Tvíburar"},
                    {"id": 3, "name": "Twin 3", "company": ""}, {"id": 4, "name": "Twin 4", "company": ""}]),
                "555 7777", ["<b>4 customers share this number</b>", "• Twin 1 (Tvíburar)", "• Twin 2 (Tvíburar)",
                             "• Twin 3", "and 1 more"]),
    "withheld": (dict(number="anonymous", caller_name="Anonymous"), "Withheld number", ["Unknown caller"]),
    "internal-colleague": (dict(direction="INTERNAL", number="1003", caller_name="1003", colleague="Björn Sigurðsson"),
                           "Björn Sigurðsson", ["Colleague, extension 1003"]),
    "dialing": (dict(event="dialing", direction="OUTGOING", customer=customer(cid=10, company="")),
                "Calling Jón Jónsson", ["Reykjavík, Iceland", "555 1234"]),
    "missed": (dict(event="missed", customer=customer(cid=11, category="vip", note="Prefers email")),
               "Missed: Norðurljós ehf.  ★ VIP", ["<b>Prefers email</b>", "Jón Jónsson", "Reykjavík, Iceland", "555 1234"]),
    "another-day": (dict(customer=customer(cid=12), at="2025-03-04T09:30:00Z"),
                    "Norðurljós ehf.", ["Jón Jónsson", "Reykjavík, Iceland", "555 1234", "Mar 4, 2025, 9:30\u202fAM · INCOMING"]),
    "hostile": (dict(number="<i>555</i>", caller_name='<b>FREE</b> <a href="http://evil">x</a> & \x1b[31m\u202eevil',
                     customer=customer(cid=13, name="<b>Boss</b>", company="A&B <script>", note=HUGE)),
                "A&B <script>", ["<b>" + HUGE[:NOTE_MAX - 1].rstrip() + "…</b>", "&lt;b&gt;Boss&lt;/b&gt;",
                                          "Reykjavík, Iceland",
                                          'Caller ID: &lt;b&gt;FREE&lt;/b&gt; &lt;a href="http://evil"&gt;x&lt;/a&gt; &amp; [31m evil',
                                          "&lt;i&gt;555&lt;/i&gt;"]),
}


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    s = Session(tmp_path_factory.mktemp("dunst-defaults"), dunst_defaults=True)
    yield s
    s.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_of_pop_on_dunst_defaults(defaults, kind):
    """The pop as an operator sees it with dunst as installed: what dunst received, and a screenshot of it (its path
    printed; kept with the test's output)."""
    fields, summary, first_lines = KINDS[kind]
    shot = defaults.folder / f"pop-{kind}.png"
    shown = defaults.pop(card(call_uuid=f"kind-{kind}", **{"at": _today(), **fields}), screenshot=shot)
    from PIL import Image

    with Image.open(shot) as img:  # the notification's corner, for a person to look at
        img.crop((img.width - 420, 0, img.width, 420)).save(shot)
    print(f"screenshot of the {kind} pop: {shot}")
    assert shown["summary"] == summary
    body = shown["body"].splitlines()
    assert body[:len(first_lines)] == first_lines, body
    assert "\x1b" not in shown["body"] and "\u202e" not in shown["body"]
    if kind != "another-day":
        assert any(line.endswith((" · INCOMING", " · OUTGOING", " · INTERNAL")) and ":" in line for line in body)
    assert len(body) <= 14 and all(len(line) <= 130 for line in body), "short enough for dunst's 300 px"


def test_menu_do_not_disturb_silences_the_next_call(session):
    d = session.desktop
    session.pop(card(call_uuid="q0", customer=customer()))  # a current caller: the menu's first item, as in the keys below
    # the keys pass the caller, Recent calls and Open missed calls list (the missed head is disabled) to Do not disturb
    session.menu("Down", "Down", "Down", "Down", "Return")
    wait_for(lambda: "do not disturb on" in session.log(), 5, "do not disturb on")
    wait_for(lambda: "do not disturb" in session.tray_window_name(), 5, "the icon's title")
    d.close_all()
    wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
    seen = session.newest()
    before = session.pops_logged()
    session.server.push(card(call_uuid="q1", customer=customer()))
    wait_for(lambda: session.pops_logged() > before, 10, "the pop to reach the tray")
    time.sleep(0.3)  # a notification wrongly sent would be on screen by now
    d.close_all()
    assert session.newest() == seen, "no notification while do-not-disturb"
    session.menu("Down", "Down", "Down", "Down", "Return")
    wait_for(lambda: "do not disturb off" in session.log(), 5, "do not disturb off")
    shown = session.pop(card(call_uuid="q2", customer=customer()))
    assert shown["summary"] == "Norðurljós ehf."


def test_menu_recent_call_opens_the_record_in_the_browser(session):
    session.server.push(card(event="missed", call_uuid="q2", customer=customer()))
    wait_for(lambda: "pop" in session.log() and " missed " in session.log(), 10, "the missed pop")
    session.menu("Down", "Down", "Right", "Return")  # Recent calls > the newest
    urls = wait_file_lines(session.urls, 1)
    assert urls[-1] == f"{session.server.url}/customers/7"
    session.menu("Down", "Return")  # the current caller's record
    urls = wait_file_lines(session.urls, 2)
    assert urls[-1] == f"{session.server.url}/customers/7"


def test_wrong_token_shows_in_the_tray(session):
    bad = session.start_tray("tray-bad", "revoked")
    try:
        wait_for(lambda: "state unauthorized" in session.log("tray-bad"), 15, "the refusal")
        wait_for(lambda: any("token refused" in n for n in session.window_names()), 5, "the icon title")
    finally:
        bad.terminate()
        bad.wait(10)


# ---- actions on the pop -------------------------------------------------------------------------------


def _shown(session) -> None:
    d = session.desktop
    wait_for(lambda: d.displayed() == 1, 10, f"the notification\n{session.log()[-2000:]}")
    wait_for(lambda: bool(d.xdotool("search", "--onlyvisible", "--class", "Dunst").stdout.strip()), 5, "dunst's window")


def _opened(session, before: int) -> str:
    return wait_file_lines(session.urls, before + 1)[-1]


def test_each_pop_kind_opens_its_page_from_a_click_or_a_button(session, tmp_path):
    """Known, VIP and problem customers open their record, an unknown caller the new-customer page, a shared number
    the chooser: by a left click on the pop (its default action) or by its button (dunst's context menu). A
    withheld caller's pop has no action. Screenshots of each kind are kept with the test's output."""
    d = session.desktop
    twins = [{"id": 1, "name": "Twin 1", "company": "Tvíburar"}, {"id": 2, "name": "Twin 2", "company": "Tvíburar"}]
    kinds = [
        ("known", card(call_uuid="a-known", customer=customer(cid=21, note="Prefers email")), "click", "/customers/21"),
        ("vip", card(call_uuid="a-vip", customer=customer(cid=22, category="vip", total_debt="99.00")), "open",
         "/customers/22"),
        ("problem", card(call_uuid="a-problem", customer=customer(cid=23, category="problem", note="Cash only")),
         "click", "/customers/23"),
        ("unknown", card(call_uuid="a-unknown", number="+3545550042"), "new", "/customers/new?number=3545550042"),
        ("several", card(call_uuid="a-several", number="+3545557777", matches=2, candidates=twins), "choose",
         "/customers/choose?number=%2B3545557777"),
        ("withheld", card(call_uuid="a-withheld", number="anonymous"), None, None),
    ]
    for kind, c, how, path in kinds:
        d.close_all()
        wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
        session.server.push(c)
        _shown(session)
        shot = d.screenshot(tmp_path / f"pop-{kind}.png")
        print(f"screenshot of the {kind} pop: {shot}")
        if how is None:
            continue
        before = len(session.urls.read_text().splitlines()) if session.urls.exists() else 0
        if how == "click":
            d.click_notification()
        else:
            line = d.act(how)
            assert line.startswith("#") and "[" in line, line
        assert _opened(session, before) == session.server.url + path, kind
    d.close_all()


def test_missed_pop_call_back_turns_the_pop_into_the_answer(session, tmp_path):
    d = session.desktop
    d.close_all()
    wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
    posted = len(session.server.originates())
    session.server.push(card(event="missed", call_uuid="cb-1", customer=customer(cid=31, category="vip")))
    _shown(session)
    print(f"screenshot of the missed pop: {d.screenshot(tmp_path / 'pop-missed.png')}")
    line = d.act("call")
    assert line.startswith("#Call back (Missed: ")
    nid = int(line.rsplit("[", 1)[1].split(",")[0])
    wait_for(lambda: len(session.server.originates()) > posted, 10, "the originate request")
    assert session.server.originates()[-1] == {"number": "+3545551234"}
    wait_for(lambda: "told: Call back +3545551234: Your phone answered" in session.log(), 10, "the daemon's answer")
    _shown(session)
    print(f"screenshot of the Call back's answer: {d.screenshot(tmp_path / 'pop-callback-answer.png')}")
    seen = session.newest()
    d.close_all()
    wait_for(lambda: session.newest() > seen or session.newest() == nid, 5, "the pop in dunst's history")
    shown = [n for n in d.history() if n["id"] == nid]
    assert shown and shown[0]["summary"] == "Call back +3545551234", "the missed pop itself became the answer"
    assert shown[0]["body"] == "Your phone answered: dialling +3545551234."


def test_recent_calls_call_back_tells_freeswitchs_refusal_in_words(session):
    d = session.desktop
    session.server.originate = (409, {"error": "your phone (1001) is not registered with FreeSWITCH: is it switched "
                                               "on and signed in?", "cause": "USER_NOT_REGISTERED"})
    try:
        pops = session.pops_logged()
        session.server.push(card(call_uuid="cb-2", number="+3545550099"))
        session.server.push(card(event="missed", call_uuid="cb-2", number="+3545550099"))  # the current caller now
        wait_for(lambda: session.pops_logged() >= pops + 2, 10, "the missed pop")
        _shown(session)
        d.close_all()
        posted = len(session.server.originates())
        # menu: caller, Recent calls > [the calls…, Call back > [the calls that can be called back]]
        session.menu("Down", "Down", "Right", "End", "Right", "Return")
        wait_for(lambda: len(session.server.originates()) > posted, 10, "the originate request")
        assert session.server.originates()[-1] == {"number": "+3545550099"}
        wait_for(lambda: "told: Call back +3545550099: Not called" in session.log(), 10, "the refusal")
        _shown(session)
        seen = session.newest()
        d.close_all()
        wait_for(lambda: session.newest() > seen, 5, "the answer in dunst's history")
        answer = d.history()[0]
        assert answer["summary"] == "Call back +3545550099"
        assert answer["body"] == ("Not called: your phone (1001) is not registered with FreeSWITCH: is it switched on "
                                  "and signed in?")
    finally:
        session.server.originate = (200, {"status": "dialling", "uuid": ""})


def test_left_click_on_the_tray_icon_opens_the_current_caller(session):
    """pystray's gtk backend (an XEmbed icon, as in trayer) activates the menu's default item on a left click."""
    session.server.push(card(call_uuid="lc-1", customer=customer(cid=41)))
    _shown(session)
    session.desktop.close_all()
    before = len(session.urls.read_text().splitlines()) if session.urls.exists() else 0
    session.desktop.xdotool("mousemove", "--window", session.tray_window(), "16", "15", "click", "1")
    assert _opened(session, before) == f"{session.server.url}/customers/41"


def test_a_slow_photo_does_not_delay_the_pop_and_replaces_its_icon(session):
    """The photo endpoint hangs until the test lets it answer: the pop is on screen with the placeholder meanwhile,
    then the same notification (same id) gets the photo."""
    d = session.desktop
    d.close_all()
    wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
    session.server.photo_gate.clear()
    try:
        session.server.push(card(call_uuid="ph-1", customer=customer(cid=51, name="Slow Photo", company="")))
        _shown(session)
        wait_for(lambda: any(r["path"].startswith("/api/v1/customers/51/photo") for r in session.server.requests), 5,
                 "the photo request, still waiting")
        seen = session.newest()
    finally:
        session.server.photo_gate.set()
    wait_for(lambda: f"photo for pop {len(session.server.cards)} arrived" in session.log(), 10, "the photo")
    assert d.displayed() == 1, "replaced in place, not a second pop"
    d.close_all()
    wait_for(lambda: session.newest() > seen, 5, "the pop in dunst's history")
    shown = [n for n in d.history() if n["id"] > seen]
    assert len(shown) == 1 and Path(shown[0]["icon_path"]).read_bytes() == session.server.photo


# ---- against the real daemon ------------------------------------------------------------------------


class RealDaemon:
    """The daemon with its HTTP server on a free port (SQLite), a token for 1001, and the customers of the pops."""

    def __init__(self, tmp: Path, sqlite_url: str) -> None:
        from screenpop.daemon.auth import tokens
        from screenpop.daemon.customers.lookup import add_phone
        from screenpop.db.database import open_database
        from screenpop.db.migrations import migrate
        from screenpop.db.models import Customer, Employee, Order
        from screenpop.db.numbers import NumberRules

        from support import daemon, free_port

        rules = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)
        self.db = open_database(sqlite_url)
        migrate(self.db)
        anna = Employee.create(name="Anna Jónsdóttir", extension="1001")
        self.known = Customer.create(name="Jón Jónsson", company="Norðurljós ehf.", category="vip", note="Prefers email",
                                     city="Reykjavík", country="IS")
        add_phone(self.known, "+3545551234", "mobile", rules)
        Order.create(customer=self.known, number="A-1", title="Roof", stage="install", responsible=anna,
                     amount=Decimal("1500.00"), paid=Decimal("500.50"))
        for i in (1, 2):
            add_phone(Customer.create(name=f"Twin {i}", company="Tvíburar"), "+3545557777", "office", rules)
        row, self.token = tokens.create("1001")
        self.token_id = row.id
        self.esl_port, self.http_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config = tmp / "daemon.toml"
        config.write_text(
            f'[freeswitch]\nport = {self.esl_port}\nreconnect_min = 0.2\nreconnect_max = 1.0\n\n'
            f'[database]\nurl = "{sqlite_url}"\nphoto_dir = "{tmp / "photos"}"\n\n[numbers]\ndefault_region = "IS"\n\n'
            f'[http]\nlisten = "127.0.0.1:{self.http_port}"\nheartbeat = 1.0\n\n'
            '[card]\nlocale = "is_IS"\ncurrency = "ISK"\ndecimals = 2\n', encoding="utf-8")
        self.proc = daemon(tmp, config)
        wait_for(lambda: http_ready(self.url) or self.proc.popen.poll() is not None, 20, "the daemon's HTTP server")
        assert self.proc.popen.poll() is None, self.proc.log()

    def close(self) -> None:
        self.proc.close()
        self.db.close()


@pytest.fixture
def real(tmp_path, sqlite_url, session):
    r = RealDaemon(tmp_path, sqlite_url)
    r.log_name = f"tray-{tmp_path.name}"
    tray = None
    try:
        def start():
            nonlocal tray
            tray = session.desktop.spawn(r.log_name, [
                sys.executable, "-m", "screenpop.daemon.cli", "tray", "--config", str(tmp_path / "absent.toml"),
                "--server", r.url, "--extension", "1001", "--token", r.token], env={"BROWSER": str(session.browser)})
            wait_for(lambda: "state connected" in session.log(r.log_name), 20, "the tray connected to the daemon")

        r.start_tray = start
        yield r
    finally:
        if tray is not None and tray.poll() is None:
            tray.terminate()
            tray.wait(10)
        r.close()


def _screenpop_history(session, seen: int) -> list[dict]:
    return [n for n in session.desktop.history() if n["id"] > seen and n["appname"] == "screenpop"]


def test_real_daemon_and_simulator_pop_known_several_and_unknown(session, real, tmp_path):
    from support import simulator

    session.desktop.close_all()
    seen = session.newest()
    real.start_tray()
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("+3545551234\n+3545557777\n+3545550042\n", encoding="utf-8")
    sim = simulator(tmp_path, real.esl_port, "--generate", "--calls", "9", "--rate", "20", "--seed", "3", "--speed", "4",
                    "--extensions", "1001", "--numbers", str(numbers), "--mix", "inbound_answered=1", "--linger", "0.5")
    assert sim.wait(60) == 0, sim.log()
    sim.close()
    # every pop ends (answered, then ended: the tray closes it, and dunst moves it to its history)
    wait_for(lambda: session.log(real.log_name).count(" ended ") >= 9, 20, "the tray to see 9 calls end")
    expected = {"Norðurljós ehf.  ★ VIP", "555 7777", "555 0042"}
    wait_for(lambda: {n["summary"] for n in _screenpop_history(session, seen)} >= expected or session.desktop.close_all(),
             10, "a pop for each number in dunst's history")
    by_summary = {n["summary"]: n for n in _screenpop_history(session, seen)}
    assert set(by_summary) == expected, by_summary.keys()
    known = by_summary["Norðurljós ehf.  ★ VIP"]["body"].splitlines()
    # an English reader in a centre of [card] locale is_IS: English words and formats, [card]'s currency (docs/i18n.md)
    assert known[:5] == ["<b>Prefers email</b>", "Jón Jónsson", "A-1 Roof: install · Anna Jónsdóttir · ISK999.50",
                         "<b>Debt ISK999.50</b>", "Reykjavík, Iceland"], known
    assert "555 1234" in known and known[-2].endswith(" · INCOMING"), "the number in the home region's form"
    assert known[-1] == "Operator 1001 Anna Jónsdóttir"
    assert Path(by_summary["Norðurljós ehf.  ★ VIP"]["icon_path"]).stat().st_size > 0, "the daemon's photo (or its placeholder)"
    assert by_summary["555 7777"]["body"].splitlines()[:3] == [
        "<b>2 customers share this number</b>", "• Twin 1 (Tvíburar)", "• Twin 2 (Tvíburar)"]
    assert by_summary["555 0042"]["body"].splitlines()[0] == "Unknown caller"


def test_real_daemon_hostile_caller_id_is_escaped(session, real):
    from hostile import HOSTILE_NAME, FakeFreeswitch, hostile_stream

    session.desktop.close_all()
    seen = session.newest()
    real.start_tray()
    fake = FakeFreeswitch(real.esl_port, hostile_stream())
    fake.start()
    try:
        assert fake.sent.wait(20), real.proc.log()
        wait_for(lambda: " ended " in session.log(real.log_name), 20, "the call to end")
        wait_for(lambda: bool(_screenpop_history(session, seen)) or session.desktop.close_all(), 10, "the pop in history")
    finally:
        fake.server.close()
    (shown,) = _screenpop_history(session, seen)
    assert "<b>VIP</b>" not in shown["body"]
    assert 'Caller ID: &lt;b&gt;VIP&lt;/b&gt; &amp; "Ünïcødé" ; DROP TABLE call; -- \'x\' [31m red' in shown["body"].splitlines()
    assert HOSTILE_NAME not in shown["body"], "control characters never reach the notification server"


def test_real_daemon_revoked_token_shows_in_the_tray(session, real):
    from screenpop.daemon.auth import tokens

    real.start_tray()
    assert tokens.revoke(real.token_id)
    wait_for(lambda: "state unauthorized" in session.log(real.log_name), 20, "the tray to see its token refused")
    wait_for(lambda: any("token refused" in n for n in session.window_names()), 5, "the icon's title")


def test_backend_is_appindicator_only_when_a_status_notifier_host_listens(session):
    import subprocess

    code = "from screenpop.tray.app import choose_backend; print(choose_backend())"
    run = lambda: subprocess.run([sys.executable, "-c", code], env=session.desktop.env, capture_output=True,  # noqa: E731
                                 text=True, timeout=30).stdout.strip()
    assert run() == "gtk", "trayer is an XEmbed tray: no StatusNotifierWatcher on the bus"
    holder = session.desktop.spawn("sni-name", [sys.executable, "-c", (
        "import dbus, time; b = dbus.SessionBus(); b.request_name('org.kde.StatusNotifierWatcher'); "
        "print('owned', flush=True); time.sleep(60)")])
    try:
        wait_for(lambda: "owned" in session.log("sni-name"), 10, "the name on the bus")
        assert run() == "appindicator"
    finally:
        holder.terminate()
        holder.wait(10)


def _badge_pixels(session, shot: Path) -> int:
    """How many pixels of the tray icon, as trayer shows it, are the missed calls' badge red."""
    from PIL import Image

    from screenpop.tray.app import BADGE

    geometry = dict(line.split("=", 1) for line in session.desktop.xdotool(
        "getwindowgeometry", "--shell", session.tray_window()).stdout.split())
    x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    session.desktop.screenshot(shot)
    icon = Image.open(shot).convert("RGB").crop((x, y, x + w, y + h))
    return sum(n for n, colour in icon.getcolors(w * h) if all(abs(a - b) <= 12 for a, b in zip(colour, BADGE)))


def test_missed_calls_to_return_on_the_icon_and_in_the_menu(session, tmp_path):
    """Issue 16: the operator's unreturned missed calls as a count on the icon and its tooltip, and a menu section
    listing them, each with Open and Call back (POST /api/v1/originate with the tray's token)."""
    server = session.server
    assert _badge_pixels(session, tmp_path / "no-badge.png") == 0
    server.missed = missed_answer(("m1", "Acme ehf", "+3545550001"), ("m2", "Bjarni", "+3545550002"))
    try:
        server.push(card(event="missed", call_uuid="m2", number="+3545550002"))  # a missed pop: read them again
        wait_for(lambda: any(n.endswith("connected, 2 missed calls to return") for n in session.window_names()), 10,
                 f"the count in the tooltip\n{session.log()[-2000:]}")
        wait_for(lambda: _badge_pixels(session, tmp_path / "badge.png") > 20, 10, "the badge on the icon")
        # menu: caller, Recent calls, (the count), m1 > Open / Call back, m2 > …, Open missed calls list, …
        posted = len(server.originates())  # earlier tests of this session may have called back too
        session.menu("Down", "Down", "Down", "Right", "Down", "Return")  # m1 > Call back
        wait_for(lambda: len(server.originates()) > posted, 10, "the originate")
        sent = [r for r in server.requests if r["path"] == "/api/v1/originate"][-1]
        assert sent["body"] == {"number": "+3545550001"} and sent["headers"]["Authorization"] == "Bearer secret-token"
        lines = len(session.urls.read_text().splitlines()) if session.urls.exists() else 0
        session.menu("Down", "Down", "Down", "Down", "Right", "Return")  # m2 > Open
        assert wait_file_lines(session.urls, lines + 1)[-1].startswith(f"{server.url}/customers/new?number=+3545550002")
        session.menu("Down", "Down", "Down", "Down", "Down", "Return")  # Open missed calls list (this operator's)
        assert wait_file_lines(session.urls, lines + 2)[-1] == f"{server.url}/missed?extension=1001"
    finally:
        server.missed = missed_answer()
        server.push(card(event="missed", call_uuid="m3", number="+3545550003"))  # read again: none left
        wait_for(lambda: any(n.endswith(": connected") for n in session.window_names()), 10, "no count any more")
        server.missed = None


def test_menu_call_list_missed_calls_reconnect_and_quit(session):
    # menu: caller, Recent calls, (no missed calls), Open missed calls list, Do not disturb, Open call list,
    # Reconnect, Quit
    lines = len(session.urls.read_text().splitlines()) if session.urls.exists() else 0
    session.menu("Down", "Down", "Down", "Down", "Down", "Return")
    assert wait_file_lines(session.urls, lines + 1)[-1] == f"{session.server.url}/calls"
    session.menu("Down", "Down", "Down", "Return")
    assert wait_file_lines(session.urls, lines + 2)[-1] == f"{session.server.url}/missed?extension=1001"
    requests = len(session.server.event_requests())
    session.menu("Down", "Down", "Down", "Down", "Down", "Down", "Return")
    wait_for(lambda: len(session.server.event_requests()) > requests, 10, "a new stream after Reconnect")
    last_id = str(len(session.server.cards))
    assert session.server.event_requests()[-1]["headers"]["Last-Event-ID"] == last_id
    session.menu("Up", "Return")  # Quit, the last item
    assert session.tray.wait(10) == 0
    assert "quitting" in session.log()


def test_appindicator_backend_falls_back_into_an_xembed_tray_with_its_menu(session):
    """libayatana-appindicator without a StatusNotifier host embeds a status icon in trayer; the menu works."""
    tray = session.start_tray("tray-indicator", "secret-token", PYSTRAY_BACKEND="appindicator")
    try:
        wait_for(lambda: "state connected" in session.log("tray-indicator"), 20, "the indicator tray's stream")
        assert "pystray's appindicator backend" in session.log("tray-indicator")
        wait_for(lambda: any(n.endswith(": connected") for n in session.window_names()), 10, "its icon in trayer")
        # a fresh tray: Recent calls and the missed calls' count are disabled (skipped), so the items reached are
        # Open missed calls list, then Do not disturb
        session.menu("Down", "Down", "Return")
        wait_for(lambda: "do not disturb on" in session.log("tray-indicator"), 5, "do not disturb from its menu")
    finally:
        tray.terminate()
        tray.wait(10)


def test_demo_starts_a_tray_on_a_desktop(session, tmp_path):
    """`screenpop demo` on a desktop: the demo operator's pops reach the notification server."""
    import subprocess

    seen = session.newest()
    proc = subprocess.Popen(
        [sys.executable, "-m", "screenpop.daemon.cli", "demo", "--dir", str(tmp_path / "demo"), "--calls", "12", "--rate", "6"],
        env=session.desktop.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    trays: list[list[str]] = []

    def tray_started() -> bool:  # its command line, as any local user can read it
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().decode().split("\0")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == proc.pid and "screenpop.tray.cli" in argv:  # python -m screenpop.tray.cli ...
                trays.append(argv)
        return bool(trays) or proc.poll() is not None

    wait_for(tray_started, 60, "the demo's tray")
    out, err = proc.communicate(timeout=120)
    demo = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert trays and "--token" not in trays[0] and "--token-file" in trays[0], trays
    token_file = Path(trays[0][trays[0].index("--token-file") + 1])
    assert token_file.stat().st_mode & 0o777 == 0o600 and token_file.read_text().startswith("sp_")
    assert "tray      desktop notifications for extension 1001" in demo.stdout
    assert " 1001 " in demo.stdout and "RINGING" in demo.stdout
    # a pop still on screen (an answered call's stays for its timeout) reaches dunst's history once closed
    wait_for(lambda: bool(_screenpop_history(session, seen)) or session.desktop.close_all(), 10, "the demo's pops")


def test_real_daemon_missed_pop_opens_the_record_and_calls_back_through_the_simulator(session, real, tmp_path):
    """A missed call from a known customer (simulated): a click on the missed pop opens the record through a
    one-time sign-in link; its Call back reaches the simulator as `bgapi originate`, FreeSWITCH's answer replaces the
    pop, and the call is recorded as OUTGOING from 1001 with its `dialing` pop on screen."""
    import http.client
    from urllib.parse import urlsplit

    from screenpop.db.models import Call
    from support import simulator

    d = session.desktop
    d.close_all()
    seen = session.newest()
    real.start_tray()
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("+3545551234\n", encoding="utf-8")
    sim = simulator(tmp_path, real.esl_port, "--generate", "--calls", "1", "--rate", "5", "--seed", "5", "--speed", "4",
                    "--extensions", "1001", "--numbers", str(numbers), "--mix", "inbound_missed=1", "--linger", "120",
                    "--originate-speed", "0")
    try:
        wait_for(lambda: " missed " in session.log(real.log_name), 30, "the missed pop")
        _shown(session)
        before = len(session.urls.read_text().splitlines()) if session.urls.exists() else 0
        d.act("default")
        link = urlsplit(_opened(session, before))
        assert link.path.startswith("/signin/"), "signed in by a one-time link, never the token in the URL"
        conn = http.client.HTTPConnection(link.hostname, link.port, timeout=10)
        conn.request("GET", link.path)
        assert conn.getresponse().getheader("Location") == f"/customers/{real.known.id}"
        conn.close()
        line = d.act("call")
        nid = int(line.rsplit("[", 1)[1].split(",")[0])
        wait_for(lambda: " dialing " in session.log(real.log_name), 30, f"the dialing pop\n{sim.log()[-2000:]}")
        wait_for(lambda: "told: Call back +3545551234: Your phone answered" in session.log(real.log_name), 10, "the daemon's answer")
        wait_for(lambda: Call.select().where(Call.direction == "OUTGOING").count() == 1, 20, "the call recorded")
        out = Call.get(Call.direction == "OUTGOING")
        assert (out.from_extension, out.external_number, out.customer_id) == ("1001", "+3545551234", real.known.id)

        def in_history() -> bool:
            d.close_all()
            history = _screenpop_history(session, seen)
            summaries = {n["summary"] for n in history}
            return "Call back +3545551234" in summaries and any(t.startswith("Calling Norðurljós ehf.") for t in summaries)

        wait_for(in_history, 10, "the answer and the dialing pop in dunst's history")
        answer = [n for n in _screenpop_history(session, seen) if n["id"] == nid]
        assert [(n["summary"], n["body"]) for n in answer] == [
            ("Call back +3545551234", "Your phone answered: dialling +3545551234.")], "the missed pop became the answer"
    finally:
        sim.close()


def test_real_daemon_a_layout_change_shows_on_the_next_pop_of_its_teams_extension(session, real, tmp_path):
    """docs/card.md, "Layouts": an admin's layout for a team changes the next pop of the team's extensions, at once on
    the daemon it was made on, and nobody else's."""
    import json
    import urllib.request

    from screenpop.daemon.auth import tokens

    from support import simulator

    _, admin = tokens.create(None, role="admin")

    def put(path: str, body: dict) -> None:
        req = urllib.request.Request(real.url + path, data=json.dumps(body).encode(), method="PUT", headers={
            "Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status in (200, 201)

    def pop_body(seed: int) -> list[str]:
        session.desktop.close_all()
        seen = session.newest()
        numbers = tmp_path / "numbers.txt"
        numbers.write_text("+3545551234\n", encoding="utf-8")
        sim = simulator(tmp_path, real.esl_port, "--generate", "--calls", "1", "--seed", str(seed), "--speed", "4",
                        "--extensions", "1001", "--numbers", str(numbers), "--mix", "inbound_answered=1", "--linger", "0.5",
                        name=f"sim{seed}")
        assert sim.wait(60) == 0, sim.log()
        sim.close()
        wait_for(lambda: bool(_screenpop_history(session, seen)) or session.desktop.close_all(), 20, "the pop in history")
        return _screenpop_history(session, seen)[-1]["body"].splitlines()

    real.start_tray()
    put("/api/v1/layouts/sales", {"items": [{"field": "total_debt", "style": "warning"}, {"field": "place"}]})
    put("/api/v1/teams/sales", {"layout": "sales", "extensions": ["1002"]})
    assert pop_body(5)[:2] == ["<b>Prefers email</b>", "Jón Jónsson"], "1001 is in no team: the default layout"
    put("/api/v1/teams/sales", {"layout": "sales", "extensions": ["1001", "1002"]})
    assert pop_body(6) == ["<b>Debt ISK999.50</b>", "Reykjavík, Iceland"], "the team's layout on the next pop"


# ---- in Icelandic (issue 18, docs/i18n.md) ----------------------------------------------------------------

ENGLISH = re.compile(r"\b(Calling|Missed|Transferred|Ended|INCOMING|OUTGOING|INTERNAL|Unknown|Withheld|Colleague|"
                     r"Extension|customers?|Operator|Caller|Debt|more|share|Taken|Answered|Iceland|Denmark)\b")
ICELANDIC_KINDS = {  # the card's fields; the summary dunst shows, and lines its body starts with
    "known": (dict(customer=customer(cid=40, total_debt="1099.49", orders=ORDERS[:4])),
              "Norðurljós ehf.", ["Jón Jónsson"]),
    "unknown": (dict(number="+3545550042", caller_name="Gunna"), "555 0042",
                ["Óþekktur hringjandi", "Auðkenni hringjanda: Gunna"]),
    "foreign": (dict(number="+4545551234"), "+45 45 55 12 34", ["Óþekktur hringjandi", "Danmörk"]),
    "several": (dict(number="+3545557777", matches=4, candidates=[{"id": 1, "name": "Tvíburi 1", "company": "Tvíburar"}]),
                "555 7777", ["<b>4 viðskiptavinir deila þessu númeri</b>", "• Tvíburi 1 (Tvíburar)", "og 3 til viðbótar"]),
    "withheld": (dict(number="anonymous"), "Leynt númer", ["Óþekktur hringjandi"]),
    "colleague": (dict(direction="INTERNAL", number="1003", colleague="Björn Sigurðsson"), "Björn Sigurðsson",
                  ["Samstarfsmaður, innanhússnúmer 1003"]),
    "dialing": (dict(event="dialing", direction="OUTGOING", customer=customer(cid=41, company="")),
                "Hringi í Jón Jónsson", ["Reykjavík, Ísland"]),
    "missed": (dict(event="missed", customer=customer(cid=42, category="vip")), "Ósvarað: Norðurljós ehf.  ★ VIP",
               ["Jón Jónsson"]),
}


@pytest.fixture(scope="module")
def icelandic(tmp_path_factory):
    """A desktop whose session speaks Icelandic, and a tray following it."""
    with closing(Session(tmp_path_factory.mktemp("desktop-is"), LANG="is_IS.UTF-8", LANGUAGE="is")) as s:
        yield s


@pytest.mark.parametrize("kind", list(ICELANDIC_KINDS))
def test_each_kind_of_pop_in_icelandic_on_dunst(icelandic, kind):
    """A daemon speaking Icelandic ([i18n] default_language = "is", [card] locale is_IS) pops every kind of card on an
    Icelandic desktop: dunst's summary and body hold no English word, its buttons are the tray's Icelandic."""
    from screenpop.daemon import i18n
    from screenpop.daemon.config import CardConfig
    from screenpop.daemon.push.layout import CardLayout

    fields, summary, first_lines = ICELANDIC_KINDS[kind]
    with i18n.use("is"):
        pop = card(call_uuid=f"is-{kind}", layout=CardLayout(CardConfig(locale="is_IS", currency="ISK")),
                   **{"at": _today(), **fields})
    shot = icelandic.folder / f"pop-is-{kind}.png"
    shown = icelandic.pop(pop, screenshot=shot)
    print(f"screenshot of the {kind} pop in Icelandic: {shot}")
    assert shown["summary"] == summary
    body = shown["body"].splitlines()
    assert body[:len(first_lines)] == first_lines, body
    assert not ENGLISH.search(shown["summary"] + "\n" + shown["body"]), shown
    if kind == "known":
        assert "<b>Skuld 1.099\xa0kr.</b>" in body and "og 1 opin pöntun til viðbótar" in body, body
        assert any(line.endswith(" · INNHRINGING") for line in body), body


def test_the_trays_own_words_in_icelandic(icelandic):
    """The buttons dunst offers are the tray's, in the desktop's language: Opna, Hringja til baka. The tray asks the
    daemon for its pops in that language too (Accept-Language), whatever the daemon's default is (the daemon's side:
    tests/push/test_pop_language.py)."""
    assert {r["headers"].get("Accept-Language") for r in icelandic.server.event_requests()} == {"is"}
    d = icelandic.desktop
    d.close_all()
    wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
    icelandic.server.push(card(event="missed", call_uuid="is-buttons", customer=customer(cid=43)))
    wait_for(lambda: d.displayed() >= 1, 10, f"the notification\n{icelandic.log()[-2000:]}")
    assert d.act("open").startswith("#Opna ("), "the Open button"
