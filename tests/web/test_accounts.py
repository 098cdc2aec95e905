"""Accounts and roles (issue 18, docs/accounts.md) in process on SQLite and PostgreSQL: password sign-in, the
throttle and the lock, roles refused with a page that says why, the tray's link signing in as its person, the admin's
people and sessions pages, a person's own password, the audit trail on the record, and `screenpop user`."""
from __future__ import annotations

import datetime as dt
import io
import logging
import re
from contextlib import closing

import pytest

from screenpop.daemon import cli
from screenpop.daemon.auth import people, roles, tokens
from screenpop.daemon.config import WebConfig
from screenpop.db import audit
from screenpop.db.models import AuditEntry, Customer, Person, Phone, SigninThrottle, WebSession

from support import HubApp

PASSWORD = "correct horse battery"
HOSTILE = "<script>alert(1)</script>\"'> \u202e Þórður 😀"


class Site(HubApp):
    """The daemon's app on a started hub, with an admin, a manager and an operator (extension 1001) who sign in
    with passwords, and the tray token of extension 1001."""

    def __init__(self, db, tmp_path, config: WebConfig | None = None) -> None:
        super().__init__(db, tmp_path / "photos", web_config=config or WebConfig())
        self.config = config or WebConfig()
        hashed = people.hash_password(PASSWORD)
        self.ids = {}
        for login, name, role, extension in (("boss", "Björk Admin", "admin", None), ("mgr", "Magnús Manager", "manager", None),
                                             ("anna", "Anna Jónsdóttir", "operator", "1001")):
            fields = people.person_fields({"login": login, "name": name, "role": role, "extension": extension or ""},
                                          creating=True)
            self.ids[login] = people.create(fields, hashed).id
        self.tray_row, self.tray = tokens.create("1001", name="tray 1001")

    def browser(self):
        return self.app.test_client()

    def signin(self, login: str, password: str = PASSWORD, browser=None, address: str = "10.0.0.7"):
        browser = browser or self.browser()
        return browser, self._post(browser, "/signin", {"login": login, "password": password, "next": "/customers"}, address)

    @staticmethod
    def _post(browser, path: str, data: dict, address: str = "10.0.0.7"):
        with browser.session_transaction() as session:
            csrf = session.setdefault("csrf", "test-csrf-secret")
        return browser.post(path, data={**data, "csrf": csrf}, environ_base={"REMOTE_ADDR": address})

    def signed_in(self, login: str):
        browser, r = self.signin(login)
        assert r.status_code == 303 and r.headers["Location"] == "/customers", r.get_data(as_text=True)
        return browser


@pytest.fixture
def site(db, tmp_path):
    with closing(Site(db, tmp_path, WebConfig(signin_free_failures=2, signin_address_free_failures=50,
                                              signin_lock_after=4, signin_lock_minutes=15))) as s:
        yield s


def _text(r) -> str:
    return r.get_data(as_text=True)


def _age_failures(seconds: float) -> None:
    """Make every counted failure older, as if the person waited."""
    for row in SigninThrottle.select():
        SigninThrottle.update(last_failed_at=row.last_failed_at - dt.timedelta(seconds=seconds)).where(
            SigninThrottle.key == row.key).execute()


# ---- roles -------------------------------------------------------------------------------------------


def test_role_rules_are_ranked():
    assert roles.allows("operator", "customers") and roles.allows("operator", "own_calls")
    assert not roles.allows("operator", "dashboard") and not roles.allows("operator", "team_calls")
    assert roles.allows("manager", "dashboard") and roles.allows("manager", "reports") and roles.allows("manager", "team_calls")
    assert not roles.allows("manager", "people") and not roles.allows("manager", "tokens")
    assert all(roles.allows("admin", c) for c in roles.NEEDS)
    assert not any(roles.allows(r, "customers") for r in (None, "", "root", "ADMIN"))
    assert "manager role" in roles.refusal("operator", "dashboard") and "an operator" in roles.refusal("operator", "dashboard")


def test_each_role_sees_its_pages_and_a_403_that_says_why(site):
    anna, mgr, boss = site.signed_in("anna"), site.signed_in("mgr"), site.signed_in("boss")
    for path in ("/dashboard", "/reports/employees.csv", "/people", "/sessions", "/tokens", "/employees", "/fields"):
        r = anna.get(path)
        assert r.status_code == 403, path
        need = "admin" if path in ("/people", "/sessions", "/tokens", "/employees", "/fields") else "manager"
        assert f"needs the {need} role" in _text(r) and "signed in as an operator" in _text(r), path
    assert anna.get("/customers").status_code == 200 and anna.get("/calls").status_code == 200
    nav = _text(anna.get("/customers"))
    assert 'href="/dashboard"' not in nav and 'href="/people"' not in nav and "Anna Jónsdóttir" in nav
    assert mgr.get("/dashboard").status_code == 200, "a manager has the dashboard without admin rights"
    assert mgr.get("/reports/employees.csv").status_code == 200
    for path in ("/people", "/tokens", "/fields"):
        r = mgr.get(path)
        assert r.status_code == 403 and "needs the admin role" in _text(r) and "signed in as a manager" in _text(r)
    for path in ("/dashboard", "/people", "/sessions", "/tokens", "/employees", "/fields", "/layouts"):
        assert boss.get(path).status_code == 200, path
    # a role change takes effect on the next page: the change ends the person's sessions
    post = site._post(boss, f"/people/{site.ids['mgr']}", {"name": "Magnús Manager", "role": "operator", "extension": "1009"})
    assert post.status_code == 303
    assert mgr.get("/dashboard").headers["Location"].startswith("/signin")


# ---- password sign-in --------------------------------------------------------------------------------


def test_password_signin_signout_and_logs(site, caplog):
    caplog.set_level(1)
    browser = site.signed_in("Anna")  # logins are not case-sensitive
    page = _text(browser.get("/account"))
    assert "Anna Jónsdóttir" in page and "anna" in page and "extension 1001" in page
    session = WebSession.get()
    assert session.person_id == site.ids["anna"] and session.token_id is None and session.address == "10.0.0.7"
    assert site._post(browser, "/signout", {}).status_code == 303
    assert browser.get("/customers").headers["Location"].startswith("/signin")
    _, wrong = site.signin("anna", "not the password")
    assert wrong.status_code == 403 and "Wrong login or password." in _text(wrong)
    _, nobody = site.signin("nobody", "not the password")
    assert nobody.status_code == 403 and "Wrong login or password." in _text(nobody), "unknown logins answer the same"
    hashed = Person.get(Person.login == "anna").password_hash
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    text = caplog.text
    assert PASSWORD not in text and "not the password" not in text and hashed not in text
    assert "web sign-in: anna (person" in text and "with a password" in text
    assert "web sign-in refused for login 'anna' from 10.0.0.7: wrong password (1 failed in a row)" in text
    assert "refused for login 'nobody' from 10.0.0.7: no such login" in text


@pytest.mark.parametrize("form", [{"login": "", "password": "x"}, {"login": "anna", "password": ""},
                                  {"login": "anna", "password": "x" * 5000}, {"login": HOSTILE * 30, "password": "x"},
                                  {"login": "anna\x00", "password": "x\x00y"}])
def test_bad_signin_input_is_refused_plainly(site, form):
    r = site._post(site.browser(), "/signin", form)
    assert r.status_code in (400, 403) and "<script>alert(1)" not in _text(r)


def test_failures_slow_down_then_lock_and_an_admin_unlocks(site, caplog):
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        assert site.signin("anna", "wrong password")[1].status_code == 403
    slowed = site.signin("anna")[1]  # the right password, too soon: not even looked at
    assert slowed.status_code == 429 and "wait 1 second" in _text(slowed) and slowed.headers["Retry-After"] == "1"
    _age_failures(2)
    assert "Wrong login or password." in _text(site.signin("anna", "wrong again")[1])
    _age_failures(3)
    locked = site.signin("anna", "still wrong")[1]
    assert locked.status_code == 403 and "This account is locked after 4 failed sign-ins" in _text(locked)
    _age_failures(120)
    right = site.signin("anna")[1]
    assert right.status_code == 403 and "locked" in _text(right) and "ask an admin to unlock it" in _text(right)
    assert "account is locked" in caplog.text
    boss = site.signed_in("boss")
    page = _text(boss.get("/people"))
    assert re.search(r"anna</a>.*?<strong>locked</strong> until", page, re.S)
    assert site._post(boss, f"/people/{site.ids['anna']}/unlock", {}).status_code == 303
    assert site.signin("anna")[1].status_code == 303, "unlocked by the admin"
    # the lock also ends by itself: signin_lock_minutes after the last failure
    for _ in range(4):
        _age_failures(120)
        site.signin("mgr", "wrong password")
    assert "locked" in _text(site.signin("mgr")[1])
    _age_failures(16 * 60)
    assert site.signin("mgr")[1].status_code == 303


def test_failures_from_one_address_slow_every_login_from_it(db, tmp_path):
    config = WebConfig(signin_free_failures=50, signin_address_free_failures=3, signin_lock_after=100)
    with closing(Site(db, tmp_path, config)) as site:
        for login in ("a1", "a2", "a3"):
            assert site.signin(login, "guess", address="10.9.9.9")[1].status_code == 403
        assert site.signin("anna", address="10.9.9.9")[1].status_code == 429, "the address is slowed"
        assert site.signin("anna", address="10.0.0.8")[1].status_code == 303, "another address is not"


def test_disabled_person_cannot_sign_in_and_their_sessions_end(site):
    anna, boss = site.signed_in("anna"), site.signed_in("boss")
    assert site._post(boss, f"/people/{site.ids['anna']}/disable", {}).status_code == 303
    assert anna.get("/customers").headers["Location"].startswith("/signin")
    r = site.signin("anna")[1]
    assert r.status_code == 403 and "This account is disabled" in _text(r)
    refused = site._post(boss, f"/people/{site.ids['boss']}/disable", {})
    assert refused.status_code == 409 and "your own account" in _text(refused)
    assert site._post(boss, f"/people/{site.ids['anna']}/enable", {}).status_code == 303
    assert site.signin("anna")[1].status_code == 303


# ---- the tray's link ---------------------------------------------------------------------------------


def test_tray_link_signs_in_as_the_operator_of_its_extension(site):
    minted = site.browser().post("/api/v1/signin-links", json={"next": "/account"},
                                 headers={"Authorization": f"Bearer {site.tray}"})
    browser = site.browser()
    r = browser.get(minted.get_json()["url"].split("localhost", 1)[1])
    assert r.status_code == 303 and r.headers["Location"] == "/account"
    assert "Anna Jónsdóttir" in _text(browser.get("/account"))
    session = WebSession.get()
    assert session.person_id == site.ids["anna"] and session.token_id == site.tray_row.id
    sessions = _text(site.signed_in("boss").get("/sessions"))
    assert "Anna Jónsdóttir" in sessions and f"tray link (token {site.tray_row.id})" in sessions
    tokens.revoke(site.tray_row.id)
    assert browser.get("/account").headers["Location"].startswith("/signin"), "revoking the token ends its sessions"
    # a token whose extension nobody has signs in as the token, as before
    _, other = tokens.create("1005")
    minted = site.browser().post("/api/v1/signin-links", json={}, headers={"Authorization": f"Bearer {other}"})
    browser = site.browser()
    assert browser.get(minted.get_json()["url"].split("localhost", 1)[1]).status_code == 303
    assert "signed in with API token" in _text(browser.get("/account"))


# ---- the admin's pages -------------------------------------------------------------------------------


def test_admin_adds_changes_and_resets_a_person_and_ends_sessions(site):
    boss = site.signed_in("boss")
    r = site._post(boss, "/people", {"login": "Gunnar", "name": HOSTILE, "role": "operator", "extension": "1002",
                                     "language": "is", "password": "first password"})
    assert r.status_code == 303
    gunnar = Person.get(Person.login == "gunnar")
    assert gunnar.role == "operator" and gunnar.extension == "1002" and gunnar.language == "is"
    page = _text(boss.get("/people"))
    assert "&lt;script&gt;" in page and "<script>alert" not in page
    for bad, why in (({"login": "gunnar", "name": "x", "role": "operator", "extension": "1003", "password": "longenough"}, "taken"),
                     ({"login": "x y", "name": "x", "role": "operator", "extension": "1003", "password": "longenough"}, "login:"),
                     ({"login": "z", "name": "x", "role": "root", "extension": "1003", "password": "longenough"}, "role:"),
                     ({"login": "z", "name": "x", "role": "operator", "extension": "", "password": "longenough"}, "extension"),
                     ({"login": "z", "name": "x", "role": "operator", "extension": "1001", "password": "longenough"}, "is anna"),
                     ({"login": "z", "name": "x", "role": "operator", "extension": "1003", "password": "short"}, "password:")):
        r = site._post(boss, "/people", bad)
        assert r.status_code in (400, 409) and why in _text(r), bad
    g = site.signin("gunnar", "first password")[0]
    assert g.get("/account").status_code == 200
    assert site._post(boss, f"/people/{gunnar.id}/password", {"password": "second password"}).status_code == 303
    assert g.get("/account").headers["Location"].startswith("/signin"), "a reset ends their sessions"
    assert site.signin("gunnar", "second password")[1].status_code == 303
    sessions = _text(boss.get("/sessions"))
    ended = [int(n) for n in re.findall(r'action="/sessions/(\d+)/end"', sessions)]
    mine = WebSession.select().where(WebSession.person == gunnar.id, WebSession.ended_at.is_null()).get()
    assert mine.id in ended and "password" in sessions
    assert site._post(boss, f"/sessions/{mine.id}/end", {}).status_code == 303
    assert WebSession.get_by_id(mine.id).ended_at is not None
    history = _text(boss.get(f"/people/{gunnar.id}"))
    assert "password reset by <bdi>Björk Admin</bdi>" in history and "added: <bdi>gunnar, operator</bdi> by <bdi>Björk Admin</bdi>" in history
    assert boss.get("/people/999999").status_code == 404
    demote = site._post(boss, f"/people/{site.ids['boss']}", {"name": "Björk", "role": "manager", "extension": ""})
    assert demote.status_code == 409 and Person.get_by_id(site.ids["boss"]).role == "admin"


def test_a_person_changes_their_own_password(site):
    anna = site.signed_in("anna")
    other = site.signed_in("anna")
    r = site._post(anna, "/account/password", {"current": "wrong one", "password": "new password 1", "again": "new password 1"})
    assert r.status_code == 403 and "not your current password" in _text(r)
    r = site._post(anna, "/account/password", {"current": PASSWORD, "password": "new password 1", "again": "different"})
    assert r.status_code == 400 and "differ" in _text(r)
    r = site._post(anna, "/account/password", {"current": PASSWORD, "password": "short", "again": "short"})
    assert r.status_code == 400 and "8 to 1024" in _text(r)
    r = site._post(anna, "/account/password", {"current": PASSWORD, "password": "new password 1", "again": "new password 1"})
    assert r.status_code == 303 and anna.get("/account").status_code == 200, "this browser stays signed in"
    assert other.get("/account").headers["Location"].startswith("/signin"), "other sessions end"
    assert site.signin("anna")[1].status_code == 403
    _age_failures(10)  # two failures in a row now (the wrong current password counted): the next try waits
    assert site.signin("anna", "new password 1")[1].status_code == 303
    assert site._post(anna, "/account/language", {"language": "is"}).status_code == 303
    assert Person.get_by_id(site.ids["anna"]).language == "is"
    assert site._post(anna, "/account/language", {"language": "xx"}).status_code == 400


# ---- the audit trail ---------------------------------------------------------------------------------


def test_changes_on_the_record_say_who_and_when(site):
    anna = site.signed_in("anna")
    c = Customer.create(name="Jón", company="Acme ehf")
    assert site._post(anna, f"/customers/{c.id}/phones", {"number": "+354 555 1234", "label": "office"}).status_code == 303
    assert site._post(anna, f"/customers/{c.id}/orders", {"number": "A-1", "title": "Boat", "amount": "100"}).status_code == 303
    api = site.browser()
    added = api.post(f"/api/v1/customers/{c.id}/phones", json={"number": "+3545559999", "label": "mobile"},
                     headers={"Authorization": f"Bearer {site.tray}"})
    assert added.status_code == 201
    mgr = site.signed_in("mgr")
    phone = Phone.get(Phone.e164 == "+3545551234")
    assert site._post(mgr, f"/customers/{c.id}/phones/{phone.id}/delete", {}).status_code == 303
    page = _text(anna.get(f"/customers/{c.id}"))
    clock = "\\d{1,2}:\\d\\d\u202f[AP]M"  # the reader's locale (English: 2:02 PM; Icelandic: 14:02)
    assert re.search(rf"number \+3545551234 \(office\) added by Anna Jónsdóttir, {clock}<", page), page
    assert re.search(rf"order A-1 added by Anna Jónsdóttir, {clock}", page)
    # the tray's token belongs to Anna's extension: the API change is hers too
    assert re.search(rf"added by <bdi>Anna Jónsdóttir</bdi>, {clock}", page), "each number's own line"
    assert re.search(rf"number \+3545551234 removed by Magnús Manager, {clock}", page)
    entries = list(AuditEntry.select().where(AuditEntry.entity != "person").order_by(AuditEntry.id))
    assert [(e.entity, e.action, e.person_id is not None, e.token_id is not None) for e in entries] == [
        ("phone", "added", True, False), ("order", "added", True, False), ("phone", "added", False, True),
        ("phone", "removed", True, False)]


def test_audit_names_an_api_token_without_a_person_and_the_system(site):
    _, admin = tokens.create(None, role="admin", name="crm sync")
    c = Customer.create(name="Jón")
    r = site.browser().patch(f"/api/v1/customers/{c.id}", json={"note": "called back"},
                             headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200
    from screenpop.daemon.customers import data

    data.update_customer(c.id, data.customer_fields({"city": "Reykjavík"}))
    assert [(e.actor, e.detail) for e in audit.for_customer(c.id)] == [("the system", "city"), ("crm sync", "note")]


# ---- the command line --------------------------------------------------------------------------------


def test_user_command(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    config = tmp_path / "screenpop.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    c = ["-c", str(config)]

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        try:
            code = cli.main(["user", *args, *c])
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err + (code if isinstance(code, str) else "")

    code, out, _ = run("create", "boss", "--name", "Björk", "--role", "admin", "--password-stdin", stdin="first admin pw\n")
    assert code == 0 and "boss (admin) created" in out
    code, _, err = run("create", "anna", "--name", "Anna", "--password-stdin", stdin="long enough\n")
    assert "an operator needs the extension" in err
    assert run("create", "anna", "--name", "Anna", "--extension", "1001", "--password-stdin", stdin="long enough\n")[0] == 0
    assert "password: 8 to 1024" in run("passwd", "anna", "--password-stdin", stdin="short\n")[2]
    assert "0 sessions ended" in run("passwd", "anna", "--password-stdin", stdin="another password\n")[1]
    assert run("set", "anna", "--role", "manager")[1].startswith("anna: manager, extension 1001")
    assert run("disable", "anna")[1].strip() == "anna disabled"
    code, out, _ = run("list")
    assert re.search(r"boss\s+admin\s+-\s+active\s+Björk", out) and re.search(r"anna\s+manager\s+1001\s+disabled", out)
    assert "no person with the login" in run("passwd", "nobody", "--password-stdin", stdin="whatever1\n")[2]
    from screenpop.db.database import open_database

    db = open_database(url)
    try:
        assert people.password_matches(Person.get(Person.login == "anna").password_hash, "another password")
        assert [e.actor for e in AuditEntry.select()] == ["the command line"] * 5
    finally:
        db.close()


def test_migration_19_remakes_the_old_session_table(db):
    """A database from before people: web_session had a required token and no person; migration 19 makes it again
    (its sessions end) and adds the people and throttle tables."""
    from screenpop.db.migrations import migrate
    from screenpop.db.models import SchemaVersion

    db.drop_tables([WebSession])
    db.execute_sql("CREATE TABLE web_session (id INTEGER PRIMARY KEY, sid_hash VARCHAR(128) NOT NULL, "
                   "token_id INTEGER NOT NULL, created_at TIMESTAMP NOT NULL, expires_at TIMESTAMP NOT NULL, "
                   "ended_at TIMESTAMP)")
    db.execute_sql("INSERT INTO web_session (id, sid_hash, token_id, created_at, expires_at) VALUES "
                   "(1, 'x', 1, '2026-01-01 00:00:00', '2026-01-02 00:00:00')")
    SchemaVersion.delete().where(SchemaVersion.version.in_([19, 20])).execute()
    assert migrate(db) == [19, 20]
    columns = {c.name: c for c in db.get_columns("web_session")}
    assert "person_id" in columns and columns["token_id"].null and WebSession.select().count() == 0
    assert migrate(db) == []


def test_csv_import_names_itself_in_the_audit_trail(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'import.db'}"
    config = tmp_path / "screenpop.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[numbers]\ndefault_region = "IS"\n')
    (tmp_path / "customers.csv").write_text("external_id,name,phones\nc1,Jón,+3545551234\nc2,Anna,\n", encoding="utf-8")
    (tmp_path / "orders.csv").write_text("number,customer,title,amount\nA-1,c1,Boat,100\n", encoding="utf-8")
    assert cli.main(["import", "customers", str(tmp_path / "customers.csv"), "-c", str(config)]) == 0
    (tmp_path / "customers.csv").write_text("external_id,name\nc1,Jón Jónsson\n", encoding="utf-8")
    assert cli.main(["import", "customers", str(tmp_path / "customers.csv"), "-c", str(config)]) == 0
    assert cli.main(["import", "orders", str(tmp_path / "orders.csv"), "-c", str(config)]) == 0
    capsys.readouterr()
    from screenpop.db.database import open_database

    db = open_database(url)
    try:
        c1 = Customer.get(Customer.external_id == "c1")
        assert [(e.entity, e.action, e.actor) for e in reversed(audit.for_customer(c1.id))] == [
            ("customer", "added", "CSV import of customers.csv"), ("customer", "changed", "CSV import of customers.csv"),
            ("order", "added", "CSV import of orders.csv")]
    finally:
        db.close()


def test_the_throttle_forgets_runs_that_ended(db):
    config = WebConfig(signin_lock_minutes=15)
    for address in ("10.0.0.1", "10.0.0.2"):
        people.failed("someone", address, config)
    assert SigninThrottle.select().count() == 3
    _age_failures(16 * 60)
    assert people.failed("other", "10.0.0.3", config) == 1
    assert sorted(r.key for r in SigninThrottle.select()) == ["address:10.0.0.3", "login:other"]


def test_people_are_listed_a_to_z_in_the_readers_language(site):
    """The People page lists the enabled people by name as the reader's language sorts them, then the disabled."""
    hashed = people.hash_password(PASSWORD)
    for login, name in (("orn", "Örn Arnarson"), ("zoe", "Zoe Smith"), ("thora", "Þóra Þórsdóttir"), ("asta", "Ásta")):
        people.create(people.person_fields({"login": login, "name": name, "role": "manager", "extension": ""},
                                           creating=True), hashed)
    people.set_disabled(site.ids["mgr"], True)
    boss = site.signed_in("boss")
    for lang, order in (("is", ["Anna Jónsdóttir", "Ásta", "Björk Admin", "Zoe Smith", "Þóra Þórsdóttir", "Örn Arnarson",
                                "Magnús Manager"]),
                        ("en", ["Anna Jónsdóttir", "Ásta", "Björk Admin", "Örn Arnarson", "Þóra Þórsdóttir", "Zoe Smith",
                                "Magnús Manager"])):
        html = _text(boss.get("/people", headers={"Accept-Language": lang}))
        table = html[html.index("<table"):]  # not the header's "signed in as"
        assert sorted(order, key=table.index) == order, lang
