"""The real tray client (`screenpop tray` as a process) on a real desktop: Xvfb, a session D-Bus, dunst as the
notification server, trayer as the tray host. What dunst received is read back with `dunstctl history`; the
tray menu is opened and used with xdotool.

The push stream comes from tests/desktop.PushServer, a small real SSE server speaking the daemon's interface
(the daemon's own HTTP server is tested against the same interface in test_push.py)."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from desktop import Desktop, PushServer, card, customer, missing_tools, wait_file_lines
from support import wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="a freedesktop desktop")
SCREENSHOT_COPY = Path("/tmp/screenpop-notification.png")


class Session:
    def __init__(self, folder: Path) -> None:
        missing = missing_tools()
        if missing:
            pytest.fail(f"desktop test tools missing: {', '.join(missing)} (run .ci/setup)", pytrace=False)
        self.folder = folder
        self.desktop = Desktop(folder).start()
        self.server = PushServer()
        self.urls = folder / "urls.txt"
        browser = folder / "browser.sh"
        browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{self.urls}"\n', encoding="utf-8")
        browser.chmod(0o755)
        self.tray = self.start_tray("tray", "secret-token", BROWSER=str(browser))
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
            d.xdotool("key", key)
            if key == "Right":  # the submenu opens after a moment
                wait_for(lambda: len(set(d.xdotool("search", "--onlyvisible", "--name", "").stdout.split()) - before) >= 2,
                         5, "the submenu")

    def window_names(self) -> list[str]:
        ids = self.desktop.xdotool("search", "--name", "^screenpop").stdout.split()
        return [self.desktop.xdotool("getwindowname", w).stdout.strip() for w in ids]

    def tray_window_name(self) -> str:
        return self.desktop.xdotool("getwindowname", self.tray_window()).stdout.strip()

    def close(self) -> None:
        if self.tray.poll() is None:
            self.tray.terminate()
        self.desktop.stop()
        self.server.close()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = Session(tmp_path_factory.mktemp("desktop"))
    yield s
    s.close()


def test_known_customer_pops_with_photo_and_screenshot(session):
    vip = customer(cid=7, category="vip", total_debt="1099.49", note="Prefers email", orders=[
        {"number": "A-1", "title": "Roof", "stage": "install", "responsible": "Anna", "amount": "1500.00",
         "paid": "500.50", "debt": "999.50"}])
    shot = session.folder / "notification.png"
    shown = session.pop(card(call_uuid="k1", customer=vip), screenshot=shot)
    assert shown["appname"] == "screenpop" and shown["summary"] == "Norðurljós ehf."
    body = shown["body"].splitlines()
    assert body[:3] == ["Jón Jónsson", "<b>★ VIP</b>  <b>DEBT 1099.49</b>", "Order A-1 Roof: install"]
    assert "Prefers email" in body and "Reykjavík, IS" in body and body[-1].startswith("INCOMING · +3545551234 · ")
    icon = Path(shown["icon_path"])
    assert icon.is_file() and icon.read_bytes() == session.server.photo, "the photo fetched with the token"
    assert any(r["path"] == "/api/v1/customers/7/photo?size=128" for r in session.server.requests)
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1024, 768) and img.getbbox() is not None
    shutil.copyfile(shot, SCREENSHOT_COPY)


def test_unknown_number_gets_a_placeholder(session):
    shown = session.pop(card(call_uuid="u1", number="+3545550042", caller_name="Gunna"))
    assert shown["summary"] == "+3545550042"
    assert shown["body"].splitlines()[:2] == ["Unknown caller", "Caller ID: Gunna"]
    assert Path(shown["icon_path"]).name.startswith("placeholder-")


def test_problem_customer_with_debt_is_flagged(session):
    c = customer(cid=8, name="Bad Payer", company="", category="problem", total_debt="250.00", note="Cash only", photo=False)
    shown = session.pop(card(call_uuid="p1", customer=c))
    assert shown["summary"] == "Bad Payer"
    assert shown["body"].splitlines()[:2] == ["<b>⚠ PROBLEM</b>  <b>DEBT 250.00</b>", "<b>Cash only</b>"]


def test_several_customers_share_the_number(session):
    twins = [{"id": 1, "name": "Twin 1", "company": "Tvíburar"}, {"id": 2, "name": "Twin 2", "company": "Tvíburar"},
             {"id": 3, "name": "Twin 3", "company": ""}]
    shown = session.pop(card(call_uuid="s1", number="+3545557777", matches=3, candidates=twins))
    assert shown["summary"] == "+3545557777"
    assert shown["body"].splitlines()[:4] == [
        "<b>3 customers share this number</b>", "• Twin 1 (Tvíburar)", "• Twin 2 (Tvíburar)", "• Twin 3"]


def test_caller_id_markup_is_escaped_not_rendered(session):
    hostile = '<b>FREE</b> <a href="http://evil">x</a> & <img src="/etc/passwd">'
    shown = session.pop(card(call_uuid="h1", number="<i>555</i>", caller_name=hostile))
    assert "<b>FREE</b>" not in shown["body"] and "<a " not in shown["body"] and "<img" not in shown["body"]
    assert ("Caller ID: &lt;b&gt;FREE&lt;/b&gt; &lt;a href=\"http://evil\"&gt;x&lt;/a&gt; &amp; "
            "&lt;img src=\"/etc/passwd\"&gt;") in shown["body"].splitlines()
    assert shown["summary"] == "&lt;i&gt;555&lt;/i&gt;", "dunst parses summary markup too"


def test_pop_closes_when_answered_elsewhere(session):
    d = session.desktop
    d.close_all()
    wait_for(lambda: d.displayed() == 0, 5, "an empty screen")
    session.server.push(card(call_uuid="e1", customer=customer()))
    wait_for(lambda: d.displayed() == 1, 10, "the pop")
    session.server.push(card(event="answered_elsewhere", call_uuid="e1", customer=customer()))
    wait_for(lambda: d.displayed() == 0, 10, "the pop closed by the tray (CloseNotification)")


def test_menu_do_not_disturb_silences_the_next_call(session):
    d = session.desktop
    # menu: caller, Recent calls, Do not disturb, Open dashboard, Reconnect, Quit
    session.menu("Down", "Down", "Down", "Return")
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
    session.menu("Down", "Down", "Down", "Return")
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
