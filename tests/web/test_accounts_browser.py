"""Accounts in Debian's headless Chromium against the real daemon, on SQLite and PostgreSQL (docs/accounts.md):
password sign-in, a role's 403 page, the audit line on the record, a lock-out and the admin's unlock, the people
and sessions pages. Screenshots go to the test's tmp folder and to /tmp/screenpop-screenshots/."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from support import Proc, free_port, http_ready, patient, wait_for, write_config

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra (.ci/setup)")

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path("/tmp/screenpop-screenshots")
PASSWORD = "correct horse battery"
WAIT = 120_000  # ms: a page of a daemon on a machine at load 10


def _prepare(url: str) -> int:
    """The database: an admin, a manager, an operator on 1001 and a customer; the customer's id."""
    from screenpop.daemon.auth import people
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate
    from screenpop.db.models import Customer

    db = open_database(url)
    try:
        migrate(db)
        hashed = people.hash_password(PASSWORD)
        for login, name, role, extension in (("boss", "Björk Admin", "admin", ""), ("mgr", "Magnús Manager", "manager", ""),
                                             ("anna", "Anna Jónsdóttir", "operator", "1001")):
            people.create(people.person_fields({"login": login, "name": name, "role": role, "extension": extension},
                                               creating=True), hashed)
        return Customer.create(name="Jón Jónsson", company="Acme ehf").id
    finally:
        db.close()


def _signin(page, base: str, login: str, password: str = PASSWORD, path: str = "/customers") -> None:
    page.goto(base + path, timeout=WAIT)
    page.wait_for_url("**/signin?next=**", timeout=WAIT)
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", password)
    page.click("form:has(input[name=login]) button")
    page.wait_for_load_state("load", timeout=WAIT)


def test_people_sign_in_are_refused_locked_unlocked_and_named_on_the_record(tmp_path, db_url):
    customer_id = _prepare(db_url)
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    config = write_config(tmp_path / "screenpop.toml", free_port(), db_url, http_port=http_port,
                          web="[web]\nsignin_free_failures = 10\nsignin_lock_after = 3")
    proc = Proc(["-m", "screenpop.daemon.cli", "daemon", "--config", str(config)], tmp_path / "daemon.log")
    pw = playwright_api.sync_playwright().start()
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def shot(page, name: str) -> None:
        page.screenshot(path=str(shots / f"accounts-{name}.png"), full_page=True)

    try:
        wait_for(lambda: http_ready(base) or proc.popen.poll() is not None, 60, "the daemon's HTTP server")
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        anna, attacker, boss = (patient(chromium.new_context()).new_page() for _ in range(3))

        # an operator signs in with a password and comes back to the page she asked for
        _signin(anna, base, "anna", path=f"/customers/{customer_id}")
        assert anna.url == f"{base}/customers/{customer_id}"
        assert "Anna Jónsdóttir" in anna.inner_text("header")
        assert "Dashboard" not in anna.inner_text("header nav"), "the menu shows what her role may open"
        # the dashboard needs a manager: a 403 page that says why
        response = anna.goto(base + "/dashboard", timeout=WAIT)
        assert response.status == 403
        assert "This needs the manager role (the dashboard); you are signed in as an operator." in anna.inner_text("main")
        shot(anna, "403-operator")
        # she adds a number on the record: the record says who and when
        anna.goto(f"{base}/customers/{customer_id}", timeout=WAIT)
        anna.fill("#numbers input[name=number]", "+354 555 1234")
        anna.fill("#numbers input[name=label]", "office")
        anna.click("#numbers form button:has-text('Add number')")
        anna.wait_for_selector("#history", timeout=WAIT)
        numbers = anna.inner_text("#numbers")
        assert re.search(r"added by Anna Jónsdóttir, \d{1,2}:\d\d\s[AP]M", numbers), numbers
        assert re.search(r"number \+3545551234 \(office\) added by Anna Jónsdóttir, \d{1,2}:\d\d\s[AP]M", anna.inner_text("#history"))
        shot(anna, "record-audit")

        # three wrong passwords lock the manager's login; then even the right one is refused, saying so
        for _ in range(3):
            _signin(attacker, base, "mgr", "guess guess")
        assert "This account is locked after 3 failed sign-ins in a row" in attacker.inner_text("main")
        _signin(attacker, base, "mgr")
        text = attacker.inner_text("main")
        assert "locked" in text and "ask an admin to unlock it" in text
        shot(attacker, "locked")

        # the admin sees the lock, unlocks, adds a person, lists the sessions and ends Anna's
        _signin(boss, base, "boss", path="/people")
        assert boss.url == base + "/people"
        row = boss.inner_text("tr:has(a:text-is('mgr'))")
        assert "locked" in row, row
        boss.click("a:text-is('mgr')")
        boss.click("button:has-text('Unlock now')")
        boss.wait_for_selector("text=Unlocked: they can try again now.", timeout=WAIT)
        boss.goto(base + "/people", timeout=WAIT)
        form = "form[action='/people']"
        boss.fill(f"{form} input[name=login]", "gunnar")
        boss.fill(f"{form} input[name=name]", "Gunnar <b>Hansen</b>")
        boss.select_option(f"{form} select[name=role]", "operator")
        boss.fill(f"{form} input[name=extension]", "1002")
        boss.fill(f"{form} input[name=password]", "gunnar's first")
        boss.click(f"{form} button")
        boss.wait_for_selector("text=can now sign in as gunnar", timeout=WAIT)
        assert "Gunnar <b>Hansen</b>" in boss.inner_text("main"), "the name is text, not markup"
        shot(boss, "people")
        boss.goto(base + "/sessions", timeout=WAIT)
        anna_row = "tr:has(a:has-text('Anna Jónsdóttir'))"
        assert "password" in boss.inner_text(anna_row)
        shot(boss, "sessions")
        boss.click(f"{anna_row} button:has-text('End')")
        boss.wait_for_selector("text=that browser is signed out", timeout=WAIT)
        anna.goto(f"{base}/customers/{customer_id}", timeout=WAIT)
        anna.wait_for_url("**/signin?next=**", timeout=WAIT)

        # unlocked, the manager signs in and has the dashboard without being an admin
        _signin(attacker, base, "mgr", path="/dashboard")
        assert attacker.url.startswith(base + "/dashboard")
        assert attacker.goto(base + "/dashboard", timeout=WAIT).status == 200
        assert attacker.goto(base + "/people", timeout=WAIT).status == 403
        assert "needs the admin role" in attacker.inner_text("main")
        chromium.close()
        log = proc.log()
        assert "Traceback" not in log and PASSWORD not in log and "guess guess" not in log, log[-3000:]
        assert "web sign-in refused for login 'mgr'" in log and "web sign-in: anna (person" in log
    finally:
        pw.stop()
        assert proc.terminate() == 0, proc.log()[-3000:]
        proc.close()
        SHOTS.mkdir(exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copy(png, SHOTS / png.name)
