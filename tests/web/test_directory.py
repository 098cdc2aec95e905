"""Signing in against the organisation's directory (issue 18, docs/accounts.md "The directory") with a real OpenLDAP
(tests/ldapserver.py): each role through the sign-in page, wrong passwords and unknown logins, a person in no group,
hostile logins, a directory that is down or hangs while the local admin still signs in, group changes at the next
sign-in, and the password pages of directory people. On SQLite; the roles once more on PostgreSQL."""
from __future__ import annotations

import http.cookiejar
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing

import pytest

from screenpop.daemon.auth import people
from screenpop.daemon.auth.directory import Directory, DirectoryDown
from screenpop.daemon.config import ConfigError, LdapConfig, WebConfig, parse
from screenpop.db.models import AuditEntry, Person, SigninThrottle, WebSession

from ldapserver import BASE, GROUPS, PASSWORD, SERVICE, LdapServer
from support import SLACK, HubApp, daemon, free_port, http_ready, wait_for, write_config

LOCAL_PASSWORD = "local admin password"
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def ldap_config(url: str, **options) -> LdapConfig:
    """[ldap] for the test directory: groups by a member search, plain ldap:// on loopback."""
    settings = {"enabled": True, "urls": [url], "start_tls": False, "timeout": 5.0 * SLACK, "bind_dn": SERVICE[0],
                "bind_password": SERVICE[1], "base_dn": f"ou=people,{BASE}", "group_base_dn": f"ou=groups,{BASE}",
                "groups": {dn: role for role, dn in GROUPS.items()}}
    return LdapConfig(**{**settings, **options})


@pytest.fixture
def directory():
    server = LdapServer()
    yield server
    server.close()


class Site(HubApp):
    """The daemon's app with the directory on, and a local admin, boss, made on the command line."""

    def __init__(self, db, tmp_path, ldap: LdapConfig) -> None:
        self.config = WebConfig(signin_free_failures=5, signin_address_free_failures=50, signin_lock_after=3)
        super().__init__(db, tmp_path / "photos", web_config=self.config, directory=Directory(ldap))
        fields = people.person_fields({"login": "boss", "name": "Björk Admin", "role": "admin"}, creating=True)
        people.create(fields, people.hash_password(LOCAL_PASSWORD))

    def signin(self, login: str, password: str = PASSWORD, browser=None):
        browser = browser or self.app.test_client()
        return browser, self.post(browser, "/signin", {"login": login, "password": password, "next": "/customers"})

    @staticmethod
    def post(browser, path: str, data: dict):
        with browser.session_transaction() as session:
            csrf = session.setdefault("csrf", "test-csrf-secret")
        return browser.post(path, data={**data, "csrf": csrf}, environ_base={"REMOTE_ADDR": "10.0.0.7"})

    def signed_in(self, login: str, password: str = PASSWORD):
        browser, r = self.signin(login, password)
        assert r.status_code == 303 and r.headers["Location"] == "/customers", r.get_data(as_text=True)
        return browser


@pytest.fixture
def site(db, tmp_path, directory):
    with closing(Site(db, tmp_path, ldap_config(directory.url))) as s:
        yield s


def _text(r) -> str:
    return r.get_data(as_text=True)


def _each_role_signs_in(site) -> None:
    olga, maria, adam = site.signed_in("olga"), site.signed_in("maria"), site.signed_in("adam")
    assert olga.get("/customers").status_code == 200 and olga.get("/dashboard").status_code == 403
    assert maria.get("/dashboard").status_code == 200, "in the managers' and the operators' groups: the higher role"
    assert maria.get("/people").status_code == 403
    assert adam.get("/people").status_code == 200
    rows = {p.login: p for p in Person.select()}
    assert (rows["olga"].role, rows["olga"].extension, rows["olga"].name) == ("operator", "2001", "Olga Operator")
    assert (rows["maria"].role, rows["maria"].extension) == ("manager", None) and rows["adam"].role == "admin"
    assert all(rows[p].source == people.DIRECTORY and rows[p].password_hash == "" for p in ("olga", "maria", "adam"))
    assert rows["boss"].source == "local"
    added = AuditEntry.get((AuditEntry.entity == "person") & (AuditEntry.entity_id == rows["olga"].id))
    assert added.action == "added" and added.actor == "the directory (LDAP)"
    assert "Olga Operator" in _text(olga.get("/account"))


@SQLITE
def test_each_role_signs_in_with_the_directory_password(site, caplog):
    caplog.set_level(logging.DEBUG)
    _each_role_signs_in(site)
    assert PASSWORD not in caplog.text
    assert "web sign-in: olga (person" in caplog.text and "with a password" in caplog.text


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_each_role_signs_in_with_the_directory_password_on_postgresql(site):
    _each_role_signs_in(site)


@SQLITE
def test_icelandic_name_and_language_come_from_the_directory(site):
    browser = site.signed_in("thordur")
    person = Person.get(Person.login == "thordur")
    assert (person.name, person.language, person.extension) == ("Þórður Ævarsson Öxndal", "is", "2003")
    assert "Þórður Ævarsson Öxndal" in _text(browser.get("/account"))
    # a language the person chose here is theirs: the directory's is only the first one
    people.update(person.id, {"language": "en"})
    site.signed_in("thordur")
    assert Person.get(Person.login == "thordur").language == "en"


@SQLITE
def test_wrong_password_and_unknown_login_get_the_same_answer_and_are_counted(site, caplog):
    caplog.set_level(logging.INFO)
    for login, password in (("olga", "not her password"), ("ghost", PASSWORD)):
        _, r = site.signin(login, password)
        assert r.status_code == 403 and "Wrong login or password." in _text(r), login
    assert {r.key for r in SigninThrottle.select()} == {"login:olga", "login:ghost", "address:10.0.0.7"}
    assert not Person.select().where(Person.login.in_(["olga", "ghost"])).exists()
    assert "refused for login 'olga' from 10.0.0.7: not in the directory or wrong password (1 failed" in caplog.text
    assert "not her password" not in caplog.text


@SQLITE
def test_the_lock_applies_to_directory_people_too(site):
    for _ in range(3):
        site.signin("olga", "not her password")
    _, r = site.signin("olga")
    assert r.status_code == 403 and "locked after 3 failed sign-ins" in _text(r), "even the right password, once locked"


@SQLITE
def test_a_person_in_no_group_is_refused_with_a_clear_message(site, caplog):
    _, r = site.signin("nobody")
    assert r.status_code == 403 and "in none of screenpop&#39;s groups" in _text(r)
    assert not Person.select().where(Person.login == "nobody").exists()
    assert "uid=nobody,ou=people,dc=example,dc=org is in none of the [ldap] groups" in caplog.text


@SQLITE
def test_hostile_logins_never_widen_the_search(site, directory):
    for hostile in ("*)(uid=*", "*", "olga)(|(uid=*"):
        _, r = site.signin(hostile)
        assert r.status_code == 400 and "Logins are letters" in _text(r), hostile
    check = Directory(ldap_config(directory.url))
    for hostile in ("*", "*)(uid=*", "o*", "olga)(uid=*", "\\2a", "olga\x00"):
        assert check.check(hostile, PASSWORD) is None, hostile
    assert check.check("olga", PASSWORD).role == "operator"
    assert check.check("olga", "") is None, "an empty password is an anonymous bind, never a sign-in"
    assert not Person.select().where(Person.source == people.DIRECTORY).exists()


@SQLITE
def test_a_directory_that_is_down_says_so_and_the_local_admin_still_signs_in(site, directory, caplog):
    directory.stop()
    _, r = site.signin("olga")
    assert r.status_code == 503 and "does not answer" in _text(r) and "local accounts still can" in _text(r)
    assert any(rec.levelno == logging.WARNING and "the directory does not answer" in rec.getMessage()
               for rec in caplog.records)
    assert not SigninThrottle.select().where(SigninThrottle.key == "login:olga").exists(), "not the person's fault"
    site.signed_in("boss", LOCAL_PASSWORD)
    directory.start()
    site.signed_in("olga")


@SQLITE
def test_a_directory_that_hangs_is_given_up_after_the_timeout(db, tmp_path, directory):
    with closing(Site(db, tmp_path, ldap_config(directory.url, timeout=0.5 * SLACK))) as site:
        directory.pause(True)
        try:
            _, r = site.signin("olga")
        finally:
            directory.pause(False)
        assert r.status_code == 503 and "does not answer" in _text(r)
        site.signed_in("olga")


@SQLITE
def test_group_changes_apply_at_the_next_sign_in(site, directory):
    olga = site.signed_in("olga")
    assert olga.get("/people").status_code == 403
    directory.ldif("ldapmodify", f"dn: {GROUPS['admin']}\nchangetype: modify\nadd: member\n"
                                 f"member: uid=olga,ou=people,{BASE}\n")
    assert olga.get("/people").status_code == 403, "the session goes by what the directory said at sign-in"
    olga = site.signed_in("olga")
    assert olga.get("/people").status_code == 200 and Person.get(Person.login == "olga").role == "admin"
    directory.ldif("ldapmodify", "".join(f"dn: {GROUPS[g]}\nchangetype: modify\ndelete: member\n"
                                         f"member: uid=olga,ou=people,{BASE}\n\n" for g in ("admin", "operator")))
    _, r = site.signin("olga")
    assert r.status_code == 403 and "in none of screenpop&#39;s groups" in _text(r)
    assert olga.get("/people").headers["Location"].startswith("/signin"), "her sessions ended with her groups"


@SQLITE
def test_an_operator_the_directory_gives_no_extension_is_told_why(site, directory):
    directory.ldif("ldapmodify", f"dn: uid=olga,ou=people,{BASE}\nchangetype: modify\ndelete: telephoneNumber\n")
    _, r = site.signin("olga")
    assert r.status_code == 400 and "Your directory account cannot be used here" in _text(r)
    assert "an operator needs the extension" in _text(r)
    assert not Person.select().where(Person.login == "olga").exists()


@SQLITE
def test_memberof_finds_the_groups_as_active_directory_gives_them(db, tmp_path, directory):
    ldap = ldap_config(directory.url, membership="memberOf", group_base_dn="")
    with closing(Site(db, tmp_path, ldap)) as site:
        assert site.signed_in("maria").get("/dashboard").status_code == 200
        _, r = site.signin("nobody")
        assert r.status_code == 403 and "in none of screenpop&#39;s groups" in _text(r)


@SQLITE
def test_a_local_account_signs_in_locally_and_a_disabled_directory_person_stays_out(site):
    # a local olga: the directory's password is not hers here, the local one is
    fields = people.person_fields({"login": "olga", "name": "Local Olga", "role": "operator", "extension": "3001"},
                                  creating=True)
    people.create(fields, people.hash_password(LOCAL_PASSWORD))
    _, r = site.signin("olga")
    assert r.status_code == 403 and "Wrong login or password." in _text(r)
    site.signed_in("olga", LOCAL_PASSWORD)
    assert Person.get(Person.login == "olga").source == "local"
    site.signed_in("oskar")
    people.set_disabled(Person.get(Person.login == "oskar").id, True)
    _, r = site.signin("oskar")
    assert r.status_code == 403 and "disabled" in _text(r)


@SQLITE
def test_password_pages_say_the_directory_manages_it(site):
    olga = site.signed_in("olga")
    page = _text(olga.get("/account"))
    assert "managed by the organisation" in page and 'name="current"' not in page
    r = site.post(olga, "/account/password", {"current": PASSWORD, "password": "a new password", "again": "a new password"})
    assert r.status_code == 409 and "managed by the organisation" in _text(r)
    boss = site.signed_in("boss", LOCAL_PASSWORD)
    olga_id = Person.get(Person.login == "olga").id
    page = _text(boss.get(f"/people/{olga_id}"))
    assert "Signs in with the organisation" in page and f'/people/{olga_id}/password"' not in page
    r = site.post(boss, f"/people/{olga_id}/password", {"password": "a new password"})
    assert r.status_code == 409 and "managed by the organisation" in _text(r)
    assert Person.get(Person.id == olga_id).password_hash == ""
    assert WebSession.select().where(WebSession.person == olga_id, WebSession.ended_at.is_null()).exists()
    _, r = site.signin("olga", "")
    assert r.status_code == 400
    assert people.password_matches("", "no such person; this hash only spends the time a real check would") is False


def test_the_real_daemon_signs_in_from_the_directory_and_keeps_serving_while_it_hangs(tmp_path, sqlite_url, directory):
    """The daemon's own wiring ([ldap] in its config): a directory sign-in, then a hanging directory that keeps one
    sign-in waiting up to the timeout while the same daemon goes on answering others."""
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    db = open_database(sqlite_url)
    migrate(db)
    people.create(people.person_fields({"login": "boss", "name": "Boss", "role": "admin"}, creating=True),
                  people.hash_password(LOCAL_PASSWORD))
    db.close()
    port = free_port()
    groups = "\n".join(f'"{dn}" = "{role}"' for role, dn in GROUPS.items())
    ldap = (f'[ldap]\nenabled = true\nurls = ["{directory.url}"]\nstart_tls = false\ntimeout = {2.0 * SLACK}\n'
            f'bind_dn = "{SERVICE[0]}"\nbind_password = "{SERVICE[1]}"\nbase_dn = "ou=people,{BASE}"\n'
            f'group_base_dn = "ou=groups,{BASE}"\n'
            f'[ldap.groups]\n{groups}\n')
    d = daemon(tmp_path, write_config(tmp_path / "screenpop.toml", free_port(), sqlite_url, http_port=port, ldap=ldap))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ready(base) or d.popen.poll() is not None, 15, "the daemon's HTTP server")
        assert d.popen.poll() is None, d.log()
        assert _signin(base, "maria", PASSWORD) == 303, d.log()
        directory.pause(True)
        waiting: dict[str, float] = {}

        def hanging() -> None:
            start = time.monotonic()
            waiting["status"] = _signin(base, "olga", PASSWORD)
            waiting["seconds"] = time.monotonic() - start

        thread = threading.Thread(target=hanging)
        thread.start()
        try:
            time.sleep(0.5)  # its request on its way to the daemon, which waits for the directory
            assert _signin(base, "boss", LOCAL_PASSWORD) == 303, "the local admin signs in meanwhile"
            overlapped = thread.is_alive()
            thread.join(10 * SLACK)
        finally:
            directory.pause(False)
        assert waiting["status"] == 503 and overlapped, d.log()
        assert "the directory does not answer" in d.log()
    finally:
        d.close()


def _signin(base: str, login: str, password: str) -> int:
    """Sign in on /signin as a browser does (the form's CSRF field, the session cookie); the status, not followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base}/signin", timeout=30 * SLACK) as r:
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())[1]
    body = urllib.parse.urlencode({"login": login, "password": password, "next": "/customers", "csrf": csrf}).encode()
    try:
        with opener.open(f"{base}/signin", body, timeout=30 * SLACK) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_ldap_configuration_is_checked():
    groups = {GROUPS["admin"]: "admin"}
    good = {"enabled": True, "urls": ["ldaps://dc1.example.org"], "base_dn": BASE, "groups": groups}
    assert parse({"ldap": good}).ldap.urls == ["ldaps://dc1.example.org"]
    assert parse({}).ldap.enabled is False
    for bad, says in (({"urls": []}, "at least one server"), ({"urls": ["http://dc1"]}, "ldap://host"),
                      ({"urls": ["ldap://dc1.example.org"], "start_tls": False}, "in clear"),
                      ({"base_dn": ""}, "base_dn"), ({"user_filter": "(uid=anna)"}, "{login}"),
                      ({"membership": "groups"}, "memberOf or member"), ({"groups": {}}, "at least one group"),
                      ({"groups": {GROUPS["admin"]: "root"}}, "operator, manager or admin"),
                      ({"timeout": 0.0}, "timeout"), ({"ca_file": "/nonexistent.pem"}, "ca_file")):
        with pytest.raises(ConfigError, match=says.replace("{", "\\{")):
            parse({"ldap": {**good, **bad}})
    assert json.dumps(parse({"ldap": {**good, "urls": ["ldap://127.0.0.1:3890"], "start_tls": False}}).ldap.urls)


def test_a_directory_nobody_listens_on_is_down_at_once():
    check = Directory(ldap_config(f"ldap://127.0.0.1:{free_port()}"))
    with pytest.raises(DirectoryDown):
        check.check("olga", PASSWORD)


def test_group_dns_compare_without_case_or_blanks():
    from screenpop.daemon.auth.directory import _dn_key

    assert _dn_key("CN=Screenpop Admins, OU=Groups,DC=example, DC=org") == _dn_key("cn=screenpop admins,ou=groups,dc=example,dc=org")
    assert _dn_key("cn=Smith\\, John,ou=x") != _dn_key("cn=Smith,John,ou=x"), "an escaped comma stays in its component"
