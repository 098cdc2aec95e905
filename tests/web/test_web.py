"""The web pages in process (Flask's test client) on SQLite and PostgreSQL: sign-in, sessions, CSRF, permissions,
every form with good and bad input, and hostile text through every page (docs/web.md)."""
from __future__ import annotations

import datetime as dt
import io
import re
from contextlib import closing
from html.parser import HTMLParser

import pytest
from PIL import Image

from screenpop.daemon.config import WebConfig
from screenpop.daemon.customers.data import money
from screenpop.daemon.customers.photos import Photos
from screenpop.daemon.web.server import create_app

from screenpop.daemon.auth import tokens
from screenpop.db.collation import sort_key
from screenpop.db.models import (ApiToken, AuditEntry, Call, CallParty, Customer, CustomField, Employee, Order, Phone,
                                 Setting, SigninLink, WebSession)

from support import HubApp, RULES


HOSTILE = ("<script>alert(1)</script>\"'><img src=x onerror=alert(2)> javascript:alert(3) "
           "</textarea></title><b>bold</b> \x01\x1b[31m \u202e ünï 😀 ") + "Þ" * 150


class Site(HubApp):
    """The daemon's Flask app on a started push hub, an operator token and an admin token."""

    def __init__(self, db, tmp_path, config: WebConfig | None = None, zone: dt.tzinfo = dt.timezone.utc) -> None:
        self.photos = tmp_path / "photos"
        self.linked: list[tuple] = []
        super().__init__(db, self.photos, web_config=config, on_link=lambda *args: self.linked.append(args), zone=zone)
        self.op_row, self.op = tokens.create("1001", name="op")
        self.admin_row, self.admin = tokens.create(None, role="admin", name="admin")
        self.mgr_row, self.mgr = tokens.create(None, role="manager", name="manager")

    def mint(self, token: str, next_path: str = "/") -> tuple[int, dict]:
        r = self.app.test_client().post("/api/v1/signin-links", json={"next": next_path},
                                        headers={"Authorization": f"Bearer {token}"})
        return r.status_code, r.get_json()

    def client(self, who: str | None = None):
        """A browser: signed in as "op" or "admin" through a one-time link, or not at all."""
        c = self.app.test_client()
        if who:
            status, body = self.mint(getattr(self, who))
            assert status == 201, body
            r = c.get(body["url"].split("localhost", 1)[1])
            assert r.status_code == 303, r.data
        return c

    @staticmethod
    def post(client, path: str, data: dict | None = None, csrf: bool = True, **kwargs):
        data = dict(data or {})
        if csrf:
            with client.session_transaction() as s:
                data["csrf"] = s.setdefault("csrf", "test-csrf-secret")
        return client.post(path, data=data, **kwargs)


@pytest.fixture
def site(db, tmp_path):
    with closing(Site(db, tmp_path)) as s:
        yield s


def _customer(name="Jón Jónsson", company="Acme ehf", number="+3545551234", **extra) -> Customer:
    c = Customer.create(name=name, company=company, **extra)
    if number:
        n = RULES.classify(number)
        Phone.create(customer=c, e164=n.e164, rev=n.rev, raw=number, label="office")
    return c


def _text(r) -> str:
    return r.get_data(as_text=True)


# ---- sign-in -----------------------------------------------------------------------------------------


def test_signin_link_once_only(site):
    status, body = site.mint(site.op, "/customers?q=acme")
    assert status == 201 and body["expires_in"] == 60 and "/signin/" in body["url"]
    path = body["url"].split("localhost", 1)[1]
    secret = path.rsplit("/", 1)[1]
    assert SigninLink.select().count() == 1 and secret not in SigninLink.get().secret_hash
    c = site.app.test_client()
    r = c.get(path)
    assert r.status_code == 303 and r.headers["Location"] == "/customers?q=acme"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie and "Expires=" in cookie
    assert c.get("/customers").status_code == 200
    again = site.app.test_client().get(path)
    assert again.status_code == 403 and "does not work any more" in _text(again)
    assert site.app.test_client().get("/signin/not-a-link").status_code == 403
    assert site.app.test_client().get("/signin/" + "x" * 300).status_code == 403


def test_signin_link_expired_and_revoked(site):
    path = site.mint(site.op)[1]["url"].split("localhost", 1)[1]
    SigninLink.update(expires_at=dt.datetime(2020, 1, 1)).execute()
    assert site.app.test_client().get(path).status_code == 403
    path = site.mint(site.op)[1]["url"].split("localhost", 1)[1]
    tokens.revoke(site.op_row.id)
    r = site.app.test_client().get(path)
    assert r.status_code == 403 and "screenpop_session" not in r.headers.get("Set-Cookie", "") or "tid" not in r.headers.get("Set-Cookie", "")
    assert site.mint(site.op)[0] == 401, "a revoked token mints nothing"


@pytest.mark.parametrize("bad", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)",
                                 "customers", "/x\r\nLocation: https://evil.example", "", 5, None])
def test_signin_link_refuses_other_sites(site, bad):
    status, body = site.mint(site.op, bad)
    assert status == 400 and "next" in body["error"]
    assert SigninLink.select().count() == 0


def test_signin_link_needs_a_token_and_json(site):
    c = site.app.test_client()
    assert c.post("/api/v1/signin-links", json={}).status_code == 401
    assert c.post("/api/v1/signin-links", json={}, headers={"Authorization": "Bearer sp_nope"}).status_code == 401
    auth = {"Authorization": f"Bearer {site.op}"}
    assert c.post("/api/v1/signin-links", data="next=/", headers=auth).status_code == 400
    assert c.post("/api/v1/signin-links", json={"next": "/", "role": "admin"}, headers=auth).status_code == 400
    assert c.post("/api/v1/signin-links", headers=auth, json={}).status_code == 201


def test_signin_form(site):
    c = site.app.test_client()
    r = c.get("/customers/5?calls_page=2")
    assert r.status_code == 303 and r.headers["Location"] == "/signin?next=/customers/5%3Fcalls_page%3D2"
    form = c.get("/signin?next=/calls")
    assert form.status_code == 200 and 'name="next" value="/calls"' in _text(form)
    r = site.post(c, "/signin", {"token": "sp_wrong", "next": "/calls"})
    assert r.status_code == 403 and "not valid" in _text(r)
    assert c.get("/calls").status_code == 303
    r = site.post(c, "/signin", {"token": site.admin, "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert c.get("/employees").status_code == 200
    r = site.post(c, "/signin", {"token": site.admin, "next": "/calls?missed=1"})
    assert r.headers["Location"] == "/calls?missed=1"
    assert site.post(c, "/signout").status_code == 303
    assert c.get("/calls").status_code == 303


def test_signin_form_needs_csrf(site):
    c = site.app.test_client()
    r = c.post("/signin", data={"token": site.admin})
    assert r.status_code == 403
    assert c.get("/employees").status_code == 303


def test_session_expiry_and_revocation(site):
    c = site.client("op")
    assert c.get("/customers").status_code == 200
    WebSession.update(expires_at=dt.datetime(2020, 1, 1)).execute()
    assert c.get("/customers").status_code == 303
    c = site.client("op")
    with c.session_transaction() as s:
        s["tid"] = site.admin_row.id  # a cookie edited by hand is not signed: Flask drops it
    c.set_cookie("screenpop_session", "eyJ0aWQiOjJ9.forged.sig")
    assert c.get("/customers").status_code == 303
    c = site.client("op")
    tokens.revoke(site.op_row.id)
    assert c.get("/customers").status_code == 303, "revoking the token ends its sessions"


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(site, db, tmp_path):
    """A cookie copied before signing out opens nothing afterwards, on this daemon or another on the database."""
    c = site.client("op")
    copy = site.app.test_client()
    copy.set_cookie("screenpop_session", c.get_cookie("screenpop_session").value)
    assert copy.get("/customers").status_code == 200
    assert WebSession.get().sid_hash not in c.get_cookie("screenpop_session").value
    r = site.post(c, "/signout")
    assert r.status_code == 303 and r.headers["Location"] == "/signin"
    assert WebSession.get().ended_at is not None
    other = Site(db, tmp_path)  # another daemon on the same database
    try:
        for browser in (copy, other.app.test_client()):
            browser.set_cookie("screenpop_session", copy.get_cookie("screenpop_session").value)
            r = browser.get("/customers")
            assert r.status_code == 303 and r.headers["Location"].startswith("/signin"), "signed out everywhere"
            assert site.post(browser, "/customers/new", {"company": "Copied Cookie ehf"}).status_code == 303
        assert not Customer.select().where(Customer.company == "Copied Cookie ehf").exists()
    finally:
        other.close()
    again = site.client("op")  # signing in again is a new session
    assert again.get("/customers").status_code == 200 and WebSession.select().count() == 2


def test_logs_never_carry_the_session_key(site, caplog):
    """Every log line at every level (peewee's SQL and psycopg's included) while the key is made and used."""
    import logging

    caplog.set_level(1)
    for name in ("peewee", "psycopg", "screenpop"):
        logging.getLogger(name).setLevel(1)
    try:
        c = site.client("op")
        assert site.post(c, "/signout").status_code == 303
    finally:
        for name in ("peewee", "psycopg", "screenpop"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    key = Setting.get_by_id("web_session_key").value
    assert any(r.name == "peewee" for r in caplog.records), "peewee's SQL was logged"
    assert key not in caplog.text
    assert not [r for r in caplog.records if key in repr(r.args) or key in str(r.msg)]


def test_session_key_shared_and_kept(site, db, tmp_path):
    c = site.client("admin")
    other = Site(db, tmp_path)  # another daemon (or a restart) on the same database
    try:
        browser = other.app.test_client()
        browser.set_cookie("screenpop_session", c.get_cookie("screenpop_session").value)
        assert browser.get("/employees").status_code == 200
    finally:
        other.close()


def test_secure_cookie_over_tls(db, tmp_path):
    s = Site(db, tmp_path)
    try:
        s.app = create_app(s.hub, Photos(tmp_path), heartbeat=1.0, tls=True)
        path = s.mint(s.op)[1]["url"].split("localhost", 1)[1]
        assert "Secure" in s.app.test_client().get(path).headers["Set-Cookie"]
    finally:
        s.close()


# ---- permissions and CSRF ----------------------------------------------------------------------------


def test_permission_matrix(site):
    c = _customer()
    phone = Phone.get()
    emp = Employee.create(name="Anna", extension="1001")
    gets = ["/", "/customers", f"/customers/{c.id}", "/customers/new?number=5550000", f"/customers/{c.id}/edit",
            f"/customers/{c.id}/photo", "/calls"]
    admin_gets = ["/employees", "/tokens"]
    admin_posts = [f"/customers/{c.id}/phones/{phone.id}/delete", f"/employees/{emp.id}", "/employees",
                   f"/tokens/{site.op_row.id}/revoke", f"/customers/{c.id}/delete"]
    nobody, op, admin = site.app.test_client(), site.client("op"), site.client("admin")
    for path in gets + admin_gets:
        r = nobody.get(path)
        assert r.status_code == 303 and r.headers["Location"].startswith("/signin?next="), path
    for path in gets:
        assert op.get(path).status_code in (200, 303), path
        assert admin.get(path).status_code in (200, 303), path
    for path in admin_gets:
        assert op.get(path).status_code == 403, path
        assert admin.get(path).status_code == 200, path
    for path in admin_posts:
        assert site.post(nobody, path, {"name": "x", "extension": "1009"}).status_code == 303, path
        assert site.post(op, path, {"name": "x", "extension": "1009"}).status_code == 403, path
    assert Phone.select().count() == 1 and Employee.select().count() == 1 and Customer.select().count() == 1
    assert ApiToken.get_by_id(site.op_row.id).revoked_at is None
    assert "Employees" not in _text(op.get("/customers")) and "Employees" in _text(admin.get("/customers"))
    assert site.post(admin, f"/customers/{c.id}/phones/{phone.id}/delete").status_code == 303
    assert site.post(admin, f"/customers/{c.id}/delete").status_code == 303
    assert Customer.select().count() == 0


def test_every_form_post_needs_csrf(site):
    c = _customer()
    order = Order.create(customer=c, number="O-1", amount=100)
    op = site.client("op")
    posts = {
        "/customers/new": {"name": "New", "number": "5550001"},
        f"/customers/{c.id}/edit": {"name": "Changed"},
        f"/customers/{c.id}/phones": {"number": "5550002"},
        f"/customers/{c.id}/orders": {"number": "O-2"},
        f"/orders/{order.id}/update": {"stage": "changed"},
        f"/orders/{order.id}/payments": {"amount": "10"},
        f"/orders/{order.id}/close": {},
        "/call": {"number": "5550003"},
        "/signout": {},
    }
    for path, form in posts.items():
        assert site.post(op, path, form, csrf=False).status_code == 403, path
        assert site.post(op, path, {**form, "csrf": "wrong"}, csrf=False).status_code == 403, path
    assert Customer.select().count() == 1 and Customer.get().name == "Jón Jónsson" and Phone.select().count() == 1
    assert Order.select().count() == 1 and Order.get().stage == "" and Order.get().paid == 0 and Order.get().status == "open"
    assert op.get("/customers").status_code == 200, "still signed in"


def test_call_buttons_on_every_number_and_their_answer_in_words(site):
    c = _customer()
    _call("c-1", "+3545551234", customer=c)
    _call("c-2", "+3545559999", minutes=1)
    op, mgr = site.client("op"), site.client("mgr")
    for path in (f"/customers/{c.id}", "/calls", "/customers/new?number=%2B3545559999&call=c-2"):
        page = _text((mgr if path == "/calls" else op).get(path))  # the calls of others: a manager's list
        assert 'action="/call"' in page and 'name="csrf"' in page, path
    r = site.post(op, "/call", {"number": "+3545551234", "next": f"/customers/{c.id}"})
    assert (r.status_code, r.headers["Location"]) == (303, f"/customers/{c.id}")
    assert "This daemon does not follow FreeSWITCH: the call cannot be placed here." in _text(op.get(r.headers["Location"]))
    r = site.post(op, "/call", {"number": "+3545551234", "next": "https://evil.example/"})
    assert r.headers["Location"] == "/calls"


# ---- customers ---------------------------------------------------------------------------------------


def _call(uuid: str, number: str | None, name: str = "", customer=None, minutes: int = 0, **extra) -> Call:
    e164 = RULES.classify(number).e164 if number else None
    return Call.create(uuid=uuid, direction=extra.pop("direction", "INCOMING"), external_number=number,
                       external_name=name, external_e164=e164, customer=customer,
                       started_at=dt.datetime(2026, 1, 1, 8, 0) + dt.timedelta(minutes=minutes), **extra)


def test_new_customer_from_an_unknown_call(site):
    _call("call-1", "5557777", "CALLER ID NAME")
    _call("call-0", "+354 555 7777", minutes=-60)
    other = _customer(number="+3545550000")
    _call("call-x", "5557777", customer=other, minutes=-30)  # already someone's: left alone
    op = site.client("op")
    page = op.get("/customers/new?number=5557777&call=call-1")
    html = _text(page)
    assert page.status_code == 200 and "New customer" in html and "Add this number to an existing customer" in html
    assert 'value="5557777"' in html and "CALLER ID NAME" in html
    r = site.post(op, "/customers/new", {"number": "5557777", "call": "call-1", "company": "Fresh ehf", "category": "vip"})
    assert r.status_code == 303
    c = Customer.get(Customer.company == "Fresh ehf")
    assert r.headers["Location"] == f"/customers/{c.id}" and c.category == "vip"
    assert [p.e164 for p in c.phones] == ["+3545557777"]
    assert {x.uuid for x in Call.select().where(Call.customer == c.id)} == {"call-1", "call-0"}
    assert Call.get(Call.uuid == "call-x").customer_id == other.id
    assert site.linked == [(c.id, "+3545557777", "call-1")]
    record = _text(op.get(r.headers["Location"]))
    assert "Customer created." in record and "<strong><bdi>Fresh ehf</bdi></strong>" in record and "badge-vip" in record


def test_new_caller_name_never_prefilled_with_a_number(site):
    """Issue 16: Name was pre-filled with the caller ID, so "company + Enter" saved a customer named "+3545550199"."""
    _call("num-1", "+3545550199", "+3545550199")
    _call("name-1", "+3545550198", "Gunnar Hansen")
    op = site.client("op")
    html = _text(op.get("/customers/new?number=%2B3545550199&call=num-1"))
    assert re.search(r'name="name" value=""', html), "the number is not a name"
    assert 'name="name" value="Gunnar Hansen"' in _text(op.get("/customers/new?number=%2B3545550198&call=name-1"))
    r = site.post(op, "/customers/new", {"number": "+3545550199", "call": "num-1", "company": "Fresh ehf"})
    assert r.status_code == 303 and Customer.get(Customer.company == "Fresh ehf").name == ""


@pytest.mark.parametrize("number", ["anonymous", "", "unknown"])
def test_anonymous_caller_has_no_dead_end(site, number):
    """Issue 16: for a withheld number "unknown: add" led to a page whose "Add number here" could only fail."""
    _call("anon-1", number or None, "anonymous")
    op = site.client("op")
    calls = _text(site.client("mgr").get("/calls"))
    assert "unknown" in calls and "/customers/new?" not in calls, "no add link for a number that cannot be added"
    page = op.get(f"/customers/new?number={number}&call=anon-1")
    html = _text(page)
    assert page.status_code == 200 and "withheld their number" in html
    assert "Add this number to an existing customer" not in html and "Add number here" not in html
    assert 'name="number" value=""' in html and 'name="name" value=""' in html
    r = site.post(op, "/customers/new", {"number": "", "call": "anon-1", "name": "Told Us Their Name"})
    c = Customer.get(Customer.name == "Told Us Their Name")
    assert r.status_code == 303 and Call.get(Call.uuid == "anon-1").customer_id == c.id


def test_new_customer_bad_input(site):
    _customer(number="+3545551234")
    op = site.client("op")
    for form, status, why in (({"number": "5551234", "name": "Dup"}, 409, "already a number of customer"),
                              ({"number": "5551234"}, 400, "name or company"),
                              ({"number": "not a number", "name": "X"}, 400, "not a phone number"),
                              ({"number": "1001", "name": "X"}, 400, "internal extension"),
                              ({"number": "5550009", "name": "X" * 301}, 400, "at most 300"),
                              ({"number": "5550009", "name": "X", "category": "gold"}, 400, "category"),
                              ({"number": "5550009", "name": "X\x00"}, 400, "NUL")):
        r = site.post(op, "/customers/new", {**form, "call": "c"})
        assert r.status_code == status and why in _text(r), (form, _text(r)[-600:])
    assert Customer.select().count() == 1
    r = site.post(op, "/customers/new", {"number": "5551234", "name": "Dup"})
    assert f'href="/customers/{Customer.get().id}"' in _text(r), "the number's owner is linked, not silently moved"
    r = site.post(op, "/customers/new", {"company": "No number ehf", "call": "<bad uuid>"})
    assert r.status_code == 303 and Customer.select().count() == 2


def test_add_number_to_an_existing_customer(site):
    c = _customer()
    other = _customer(name="Other", company="", number="+3545559999")
    _call("call-2", "8201234", "Mobile Caller")
    op = site.client("op")
    page = _text(op.get("/customers/new?number=8201234&call=call-2&q=acme"))
    assert f'action="/customers/{c.id}/phones"' in page and f'action="/customers/{other.id}/phones"' not in page
    by_number = _text(op.get("/customers/new?number=8201234&call=call-2&q=555-1234"))
    assert f'action="/customers/{c.id}/phones"' in by_number
    r = site.post(op, f"/customers/{c.id}/phones", {"from": "new", "number": "8201234", "call": "call-2"})
    assert r.status_code == 303 and r.headers["Location"] == f"/customers/{c.id}"
    assert sorted(p.e164 for p in c.phones) == ["+3545551234", "+3548201234"]
    assert Call.get(Call.uuid == "call-2").customer_id == c.id
    assert site.linked == [(c.id, "+3548201234", "call-2")]
    # The same number for someone else: flagged with the owner, not moved.
    r = site.post(op, f"/customers/{other.id}/phones", {"from": "new", "number": "+354 820 1234", "call": "call-2"})
    assert r.status_code == 409 and f'href="/customers/{c.id}"' in _text(r) and "New customer" in _text(r)
    assert Phone.get(Phone.e164 == "+3548201234").customer_id == c.id
    r = site.post(op, f"/customers/{other.id}/phones", {"number": "8201234"})
    assert r.status_code == 409 and "Numbers" in _text(r), "from the record page the record comes back with the error"
    assert site.post(op, "/customers/99999/phones", {"number": "5550101"}).status_code == 404
    assert site.post(op, f"/customers/{c.id}/phones", {"number": "", "label": "x"}).status_code == 400
    assert site.post(op, f"/customers/{c.id}/phones", {"number": "5550102", "label": "L" * 65}).status_code == 400


def test_record_page(site):
    c = _customer(note="Line one\nline two", city="Reykjavík", country="Iceland", category="problem")
    anna = Employee.create(name="Anna Operator", extension="1001")
    Order.create(customer=c, number="O-7", title="Boat", stage="shipped", responsible=anna, amount=1000, paid=250)
    Order.create(customer=c, number="O-8", title="Done", amount=10, paid=10, status="closed")
    for i in range(25):
        _call(f"c{i}", "5551234", customer=c, minutes=i, extension="1001", employee=anna if i % 2 else None,
              talk_seconds=65.0 if i % 2 else None, missed=not i % 2)
    op = site.client("op")
    html = _text(op.get(f"/customers/{c.id}"))
    for part in ("<strong><bdi>Acme ehf</bdi></strong>", "Jón Jónsson", "badge-problem", "Line one\nline two", "<bdi>Reykjavík</bdi>, <bdi>Iceland</bdi>",
                 "+3545551234", "office", "O-7", "Boat", "shipped", "Anna Operator", "$1,000.00", "$250.00",
                 '<span class="debt">$750.00</span>', "Jan 1, 2026, 8:24\u202fAM UTC", "1:05", "1001 · <bdi>Anna Operator</bdi>", "missed",
                 f'src="/customers/{c.id}/photo?size=160"'):
        assert part in html, part
    assert html.index("8:24\u202fAM") < html.index("8:23\u202fAM"), "newest first"
    older = re.search(r'href="(/customers/\d+\?calls_before=\d+)#calls"', html)
    assert "8:04\u202fAM" not in html and older
    page2 = _text(op.get(older.group(1)))
    assert "8:04\u202fAM" in page2 and "8:00\u202fAM" in page2 and "8:24\u202fAM" not in page2 and "calls_before=" not in page2.split("Newest")[1]
    assert op.get("/customers/424242").status_code == 404
    assert op.get(f"/customers/{c.id}?calls_before=-1").status_code == 200


def test_search_page(site):
    a = _customer()
    b = _customer(name="Guðrún", company="Hekla Tours", number="+4520304050", city="Akureyri")
    op = site.client("op")
    for q, want, not_want in (("acme", a, b), ("hekla", b, a), ("akureyri", b, a), ("555 1234", a, b),
                              ("00354 5551234", a, b), ("20 30 40", b, a)):
        html = _text(op.get("/customers", query_string={"q": q}))
        assert f'href="/customers/{want.id}"' in html and f'href="/customers/{not_want.id}"' not in html, q
    assert "No customers match" in _text(op.get("/customers?q=nobody"))
    html = _text(op.get("/customers"))
    assert f'href="/customers/{a.id}"' in html and f'href="/customers/{b.id}"' in html
    assert op.get("/customers?q=" + "x" * 5000).status_code == 200


SORTED_NAMES = ["Ari", "Ásta", "Bjarni", "Davíð", "Ðóra", "Einar", "Þórður", "Ægir", "Örn", "Zóphónías", "Oddur", "Óli",
                "Anna María", "Annabella", "Ólafur", "Olga", "Ívar", "Ingi", "Ýr", "Yngvi", "Úlfar", "Ulla", "Thomas",
                "Tómas", "Charlie", "charles", "Zoe", "Adam", "Smith", "Walter"]


def _listed(client, sort: str, lang: str) -> list[int]:
    """The customer ids the customer list shows in that sort, page after page, read as a reader of lang."""
    ids, page = [], 1
    while True:
        html = _text(client.get("/customers", query_string={"sort": sort, "page": page},
                                headers={"Accept-Language": lang}))
        ids += [int(i) for i in re.findall(r'href="/customers/(\d+)"', html)]
        if "page=%d" % (page + 1) not in html:
            return ids
        page += 1


@pytest.mark.parametrize("lang", ["is", "en"])
def test_customer_list_sorts_by_name_and_company_in_the_readers_language(site, lang):
    """Name and Company sort A to Z as the reader's language has it (Þ, Æ, Ö after Z in Icelandic), in the database,
    so the pages follow each other without gaps or repeats; customers without that field come last."""
    people = [_customer(name=n, company="", number=None) for n in SORTED_NAMES]  # 30: two pages
    firms = [_customer(name="", company=n, number=None) for n in ("Örninn ehf", "Álfur hf", "Zeta ltd")]
    op = site.client("op")
    by_name = sorted(people, key=lambda c: sort_key(c.name, lang)) + sorted(firms, key=lambda c: sort_key(c.company, lang))
    assert _listed(op, "name", lang) == [c.id for c in by_name]
    by_company = sorted(firms, key=lambda c: sort_key(c.company, lang)) + sorted(people, key=lambda c: sort_key(c.name, lang))
    assert _listed(op, "company", lang) == [c.id for c in by_company]
    if lang == "is":
        names = [c.name for c in by_name[:30]]
        assert names.index("Zoe") < names.index("Þórður") < names.index("Ægir") < names.index("Örn")
        assert names.index("Ari") < names.index("Ásta") < names.index("Bjarni")
    recent = _listed(op, "nonsense", lang)  # anything else: the latest changed first, as before
    assert recent == sorted(recent, reverse=True) and len(recent) == 33


def test_chooser_lists_the_customers_a_to_z(site):
    """The customers sharing a number are listed by company, then name, in the reader's language."""
    sharing = [_customer(name=n, company="", number="+3545557777") for n in ("Örn", "Ari", "Þór", "Ásta")]
    html = _text(site.client("op").get("/customers/choose?number=5557777", headers={"Accept-Language": "is"}))
    shown = [int(i) for i in re.findall(r'href="/customers/(\d+)"', html)]
    assert shown == [sharing[i].id for i in (1, 3, 2, 0)]  # Ari, Ásta, Þór, Örn


def test_chooser_lists_exactly_the_customers_sharing_a_number(site):
    """The pop of a number several customers have opens /customers/choose: the card's lookup, not the search (which
    also finds longer numbers and text), so it lists the customers the card counted, each linking to its record."""
    twins = [_customer(name=f"Twin {i}", company=HOSTILE, number=n)
             for i, n in ((1, "+3545557777"), (2, "+354 555 7777"), (3, "+15545557777"))]  # 3: its last 8 digits
    other = _customer(name="Not this one", number="+3545557778")
    op = site.client("op")
    r = op.get("/customers/choose", query_string={"number": "5557777"})
    html = _text(r)
    assert r.status_code == 200 and "2 customers share" in html and "Call</button>" in html
    assert [f'href="/customers/{t.id}"' in html for t in twins] == [True, True, False]
    assert f'href="/customers/{other.id}"' not in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "No customer has" in _text(op.get("/customers/choose?number=%2B3545550001"))
    assert "No customer has" in _text(op.get("/customers/choose?number=anonymous"))
    assert op.get("/customers/choose").status_code == 400
    assert op.get("/customers/choose", query_string={"number": HOSTILE}).status_code == 200
    assert site.client().get("/customers/choose?number=5557777").status_code in (302, 303)


def test_chooser_puts_the_pops_call_on_the_chosen_customers_record(site):
    """The pop's chooser carries its call: "This is the caller" links that one call (not the number's other calls:
    the number stays shared), once; a second choice does not move it."""
    first, second = (_customer(name=f"Twin {i}", company=HOSTILE, number="+3545557777") for i in (1, 2))
    ringing, earlier = "0b3e1f0e-4a7b-4c55-9d2e-6f1f8a2b9c01", "0b3e1f0e-4a7b-4c55-9d2e-6f1f8a2b9c02"
    _call(ringing, "+3545557777", HOSTILE, matches=2)
    _call(earlier, "+3545557777", minutes=-60, matches=2)
    op = site.client("op")
    html = _text(op.get("/customers/choose", query_string={"number": "+3545557777", "call": ringing}))
    assert html.count("This is the caller</button>") == 2 and f'value="{ringing}"' in html
    assert "This is the caller" not in _text(op.get("/customers/choose?number=%2B3545557777"))  # no call: no buttons
    assert "This is the caller" not in _text(op.get(f"/customers/choose?number=%2B3545557777&call={HOSTILE}"))

    r = site.post(op, f"/customers/{second.id}/calls", {"call": ringing})
    assert (r.status_code, r.headers["Location"]) == (303, f"/customers/{second.id}")
    assert "This call is now on their record." in _text(op.get(r.headers["Location"]))
    stored = {c.uuid: (c.customer_id, c.matches) for c in Call.select()}
    assert stored == {ringing: (second.id, 1), earlier: (None, 2)}
    html = _text(op.get("/customers/choose", query_string={"number": "+3545557777", "call": ringing}))
    assert "This is the caller" not in html, "a linked call offers no more choices"

    r = site.post(op, f"/customers/{first.id}/calls", {"call": ringing})  # a second choice, from a stale page
    assert (r.status_code, r.headers["Location"]) == (303, f"/customers/{second.id}")
    assert "on another customer&#39;s record already" in _text(op.get(r.headers["Location"]))
    assert Call.get(Call.uuid == ringing).customer_id == second.id
    assert site.post(op, f"/customers/{second.id}/calls", {"call": ringing}).status_code == 303  # the same: no-op
    assert site.post(op, f"/customers/{first.id}/calls", {"call": HOSTILE}).status_code == 400
    assert site.post(op, f"/customers/{first.id}/calls", {}).status_code == 400
    r = site.post(op, f"/customers/{first.id}/calls", {"call": "0b3e1f0e-4a7b-4c55-9d2e-6f1f8a2b9c99"})
    assert r.status_code == 404 and "No call" in _text(r)
    assert site.post(op, "/customers/999999/calls", {"call": earlier}).status_code == 404
    assert Call.get(Call.uuid == earlier).customer_id is None


def test_edit_customer(site):
    c = _customer()
    op = site.client("op")
    assert 'value="Acme ehf"' in _text(op.get(f"/customers/{c.id}/edit"))
    r = site.post(op, f"/customers/{c.id}/edit", {"name": "New Name", "company": "", "category": "vip", "note": "n",
                                                  "city": "X", "country": "Y", "external_id": "ext-1"})
    assert r.status_code == 303
    c = Customer.get_by_id(c.id)
    assert (c.name, c.company, c.category, c.note, c.external_id) == ("New Name", "", "vip", "n", "ext-1")
    for form, why in (({"name": "", "company": ""}, "name or company"), ({"category": "x"}, "category"),
                      ({"note": "n" * 10_001}, "at most 10000")):
        r = site.post(op, f"/customers/{c.id}/edit", form)
        assert r.status_code == 400 and why in _text(r), form
    other = _customer(name="Other", number=None, external_id="ext-2")
    r = site.post(op, f"/customers/{other.id}/edit", {"external_id": "ext-1"})
    assert r.status_code == 409
    assert Customer.get_by_id(c.id).name == "New Name"
    assert site.post(op, "/customers/9999/edit", {"name": "x"}).status_code == 404


# ---- orders ------------------------------------------------------------------------------------------


def test_orders_and_payments(site):
    c = _customer()
    anna = Employee.create(name="Anna", extension="1001")
    op = site.client("op")
    r = site.post(op, f"/customers/{c.id}/orders", {"number": "O-1", "title": "Boat", "stage": "quote",
                                                    "amount": "1 250,50", "responsible_id": str(anna.id)})
    assert r.status_code == 303 and r.headers["Location"] == f"/customers/{c.id}#orders"
    o = Order.get()
    assert (o.title, o.stage, money(o.amount), o.responsible_id) == ("Boat", "quote", "1250.50", anna.id)
    assert '<span class="debt">$1,250.50</span>' in _text(op.get(f"/customers/{c.id}"))
    assert site.post(op, f"/orders/{o.id}/payments", {"amount": "250.50"}).status_code == 303
    html = _text(op.get(f"/customers/{c.id}"))
    assert "Payment of $250.50 recorded" in html and '<span class="debt">$1,000.00</span>' in html
    for amount, status in (("2000", 400), ("-5", 400), ("0", 400), ("abc", 400), ("1.234", 400), ("", 400)):
        r = site.post(op, f"/orders/{o.id}/payments", {"amount": amount})
        assert r.status_code == status, amount
    assert "above the order amount" in _text(site.post(op, f"/orders/{o.id}/payments", {"amount": "2000"}))
    assert site.post(op, f"/orders/{o.id}/update", {"stage": "shipped", "responsible_id": ""}).status_code == 303
    o = Order.get()
    assert o.stage == "shipped" and o.responsible_id is None and money(o.paid) == "250.50"
    assert site.post(op, f"/orders/{o.id}/update", {"responsible_id": "77"}).status_code == 400
    assert site.post(op, f"/orders/{o.id}/update", {"responsible_id": "x"}).status_code == 400
    assert site.post(op, f"/customers/{c.id}/orders", {"number": "O-1"}).status_code == 409
    assert site.post(op, f"/customers/{c.id}/orders", {"number": ""}).status_code == 400
    assert site.post(op, f"/customers/{c.id}/orders", {"number": "O-3", "amount": "1e5"}).status_code == 400
    assert site.post(op, "/customers/999/orders", {"number": "O-4"}).status_code == 404
    assert site.post(op, f"/orders/{o.id}/close").status_code == 303
    assert site.post(op, f"/orders/{o.id}/payments", {"amount": "1"}).status_code == 409
    assert site.post(op, "/orders/999/payments", {"amount": "1"}).status_code == 404
    assert Order.select().count() == 1 and money(Order.get().paid) == "250.50"


# ---- photos ------------------------------------------------------------------------------------------


def _image(fmt: str, size=(300, 200), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30) if mode == "RGB" else 0).save(out, fmt)
    return out.getvalue()


def test_photo_upload(site, db, tmp_path):
    c = _customer()
    op = site.client("op")

    def upload(data: bytes, name="p.png", client=op):
        return site.post(client, f"/customers/{c.id}/photo", {"photo": (io.BytesIO(data), name)},
                         content_type="multipart/form-data")

    assert op.get(f"/customers/{c.id}/photo").headers["X-Screenpop-Photo"] == "placeholder"
    sent = _image("PNG", (2000, 1000))
    r = upload(sent, "holiday.jpg")  # the name's suffix is the sender's claim; the file is a PNG
    assert r.status_code == 303, _text(r)
    stored = Customer.get_by_id(c.id).photo
    assert stored.endswith(".png") and (site.photos / stored).read_bytes() == sent, "kept as uploaded"
    shown = op.get(f"/customers/{c.id}/photo?size=64")
    assert shown.status_code == 200 and shown.headers["X-Screenpop-Photo"] == "photo"
    with Image.open(io.BytesIO(shown.data)) as im:
        assert im.size == (64, 64), "pops and lists get a resized copy"
    assert upload(_image("WEBP"), "p.webp").status_code == 303 and Customer.get_by_id(c.id).photo != stored
    assert not (site.photos / stored).exists(), "the old file is removed"
    kept = Customer.get_by_id(c.id).photo
    for data, name in ((_image("GIF"), "p.gif"), (b"<svg onload=alert(1)>", "p.svg"), (b"\x89PNG\r\n\x1a\nbroken", "p.png"),
                       (_image("PNG", (9000, 9000), "1"), "bomb.png")):
        r = upload(data, name)
        assert r.status_code == 400 and "cannot be used" in _text(r), name
    assert upload(b"", "").status_code == 400
    assert Customer.get_by_id(c.id).photo == kept
    small = Site(db, tmp_path, WebConfig(photo_max_mb=1))
    try:
        c2 = small.client("op")
        r = small.post(c2, f"/customers/{c.id}/photo", {"photo": (io.BytesIO(b"\xff" * (2 * 1024 * 1024)), "big.jpg")},
                       content_type="multipart/form-data")
        assert r.status_code == 413 and Customer.get_by_id(c.id).photo == kept
    finally:
        small.close()


def test_photo_kept_and_served_in_upload_quality(site, db):
    """Issue 16: an uploaded 1600 x 1200 photo was stored at 512 x 384, re-encoded, and shown as a 128 px square."""
    c, other = _customer(), _customer(number="+3545550000", company="Other ehf")
    op = site.client("op")
    jpeg = io.BytesIO()
    Image.new("RGB", (1600, 1200), (30, 120, 200)).save(jpeg, "JPEG", quality=95)
    r = site.post(op, f"/customers/{c.id}/photo", {"photo": (io.BytesIO(jpeg.getvalue()), "face.png")},
                  content_type="multipart/form-data")
    assert r.status_code == 303, _text(r)
    stored = Customer.get_by_id(c.id).photo
    assert stored.endswith(".jpg") and (site.photos / stored).read_bytes() == jpeg.getvalue()
    page = _text(op.get(f"/customers/{c.id}"))
    url = f"/customers/{c.id}/photo/original?v={stored}"
    assert f'<img class="photo-large" src="{url}"' in page and f'<a href="{url}">Open the original</a>' in page
    r = op.get(url)
    assert r.status_code == 200 and r.data == jpeg.getvalue() and r.mimetype == "image/jpeg"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in r.headers["Content-Security-Policy"]
    assert r.headers["Content-Disposition"] == f"inline; filename=customer-{c.id}.jpg"
    assert "private" in r.headers["Cache-Control"]
    assert site.client().get(url).status_code == 303, "a session is needed"
    assert op.get(f"/customers/{other.id}/photo/original").status_code == 404, "no photo"
    assert op.get("/customers/999/photo/original").status_code == 404

    # a file put in the folder by hand is served only as the image format found in it, never as HTML or SVG
    for body in (b"<html><script>alert(1)</script></html>", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'):
        (site.photos / "hand.png").write_bytes(body)
        Customer.update(photo="hand.png").where(Customer.id == other.id).execute()
        assert op.get(f"/customers/{other.id}/photo/original").status_code == 404
    for bad in ("../secret.jpg", ".hidden.jpg"):
        Customer.update(photo=bad).where(Customer.id == other.id).execute()
        assert op.get(f"/customers/{other.id}/photo/original").status_code == 404

    # a photo stored before originals were kept (512 px, re-encoded) is shown as the best there is
    legacy = site.photos / f"{other.id}-0123456789abcdef.jpg"
    Image.new("RGB", (512, 384), (1, 2, 3)).save(legacy, "JPEG")
    Customer.update(photo=legacy.name).where(Customer.id == other.id).execute()
    r = op.get(f"/customers/{other.id}/photo/original")
    assert r.status_code == 200 and r.data == legacy.read_bytes()
    (site.photos / "by-hand.png").write_bytes(legacy.read_bytes())  # a JPEG named .png: served as what it is
    Customer.update(photo="by-hand.png").where(Customer.id == other.id).execute()
    r = op.get(f"/customers/{other.id}/photo/original")
    assert r.mimetype == "image/jpeg" and r.headers["Content-Disposition"].endswith(f"customer-{other.id}.jpg")

    # replaced or deleted: no file left behind
    png = _image("PNG", (800, 600))
    site.post(op, f"/customers/{c.id}/photo", {"photo": (io.BytesIO(png), "p.png")}, content_type="multipart/form-data")
    replaced = Customer.get_by_id(c.id).photo
    assert replaced != stored and not (site.photos / stored).exists() and (site.photos / replaced).read_bytes() == png
    admin = site.client("admin")
    assert site.post(admin, f"/customers/{c.id}/delete").status_code == 303
    assert not (site.photos / replaced).exists()


def _flat_png(edge: int) -> bytes:
    """A square RGBA PNG of one colour: many pixels in few bytes (6300 x 6300 is ~150 KB, 159 MB decoded)."""
    out = io.BytesIO()
    Image.new("RGBA", (edge, edge), (30, 90, 160, 255)).save(out, "PNG")
    return out.getvalue()


def test_photo_upload_bounds_the_pixels_decoded(site):
    """A small file of many pixels is refused before it is decoded; a JPEG is decoded at a reduced scale."""
    c = _customer()
    op = site.client("op")
    r = site.post(op, f"/customers/{c.id}/photo", {"photo": (io.BytesIO(_flat_png(6300)), "big.png")},
                  content_type="multipart/form-data")
    assert r.status_code == 400 and "more than 16,000,000 pixels to decode" in _text(r)
    assert Customer.get_by_id(c.id).photo is None
    jpeg = io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 30, 30)).save(jpeg, "JPEG")  # 24 Mpixel, decoded at 1/4: 1.5 Mpixel
    r = site.post(op, f"/customers/{c.id}/photo", {"photo": (io.BytesIO(jpeg.getvalue()), "camera.jpg")},
                  content_type="multipart/form-data")
    assert r.status_code == 303 and Customer.get_by_id(c.id).photo


def test_photo_uploads_at_once_decode_a_few_at_a_time(site, monkeypatch):
    """Six uploads at once (one signed-in operator): at most IMAGE_JOBS images are being decoded together."""
    import time

    import gevent

    from screenpop.daemon.customers import photofiles
    from screenpop.daemon.customers.photos import IMAGE_JOBS

    c = _customer()
    spans: list[tuple[float, float]] = []
    real = photofiles.original

    def original(path, max_bytes):
        start = time.monotonic()
        try:
            return real(path, max_bytes)
        finally:
            time.sleep(0.3)  # long enough for all six to be waiting, on a busy machine too
            spans.append((start, time.monotonic()))

    monkeypatch.setattr(photofiles, "original", original)
    body = _image("PNG", (1200, 800))  # small: the sleep above makes the six overlap (bench/images.py: the memory)
    clients = [site.client("op") for _ in range(6)]
    jobs = [gevent.spawn(site.post, client, f"/customers/{c.id}/photo", {"photo": (io.BytesIO(body), "p.png")},
                         content_type="multipart/form-data") for client in clients]
    gevent.joinall(jobs, raise_error=True)
    assert [job.value.status_code for job in jobs] == [303] * 6
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert len(spans) == 6 and most <= IMAGE_JOBS == 2, spans


# ---- calls -------------------------------------------------------------------------------------------


def test_calls_page_filters(site):
    c = _customer()
    Employee.create(name="Anna", extension="1001")
    for i in range(60):
        call = _call(f"u{i}", f"55500{i:02d}", minutes=i * 60, customer=c if i < 10 else None,
                     direction="INCOMING" if i % 2 else "OUTGOING", missed=i % 3 == 0,
                     extension="1001" if i % 5 == 0 else "1002")
        CallParty.create(call=call, extension=call.extension, role="callee")
    own = _text(site.client("op").get("/calls"))
    assert own.count("<tr") == 13, "an operator's list: the 12 calls of extension 1001"
    assert site.client("op").get("/calls?extension=1002").status_code == 403
    op = site.client("mgr")
    html = _text(op.get("/calls"))
    assert html.count("<tr") == 51 and "page=2" in html and "Jan 3, 2026, 11:00\u202fAM" in html  # the newest (u59) first
    assert "Jan 1, 2026, 9:00\u202fAM" in _text(op.get("/calls?page=2"))
    html = _text(op.get("/calls?since=2026-01-01&until=2026-01-01&direction=incoming&missed=1&extension=1001"))
    rows = re.findall(r">([A-Z][a-z]{2} \d+, 2026[^<]+)</td>", html)
    assert rows == ["Jan 1, 2026, 11:00\u202fPM UTC"], rows  # u15: incoming, missed, extension 1001, on 1 January
    html = _text(op.get(f"/calls?customer={c.id}"))
    assert len(re.findall(r">[A-Z][a-z]{2} \d+, 2026[^<]+</td>", html)) == 10 and "<strong><bdi>Acme ehf</bdi></strong>" in html
    unknown = _text(op.get("/calls?since=2026-01-03"))
    assert "/customers/new?number=" in unknown and "call=u59" in unknown
    for bad in ("since=yesterday", "until=2026-13-01", "direction=sideways", "customer=x", "extension=" + "1" * 40):
        r = op.get(f"/calls?{bad}")
        assert r.status_code == 400, bad


def test_every_page_shows_times_in_the_call_centres_zone(db, tmp_path):
    """Issue 16: pages mixed UTC and local times; every time is now in [analytics] timezone, the zone named."""
    from zoneinfo import ZoneInfo

    site = Site(db, tmp_path, zone=ZoneInfo("America/New_York"))
    try:
        c = _customer()
        call = _call("z-1", "+3545551234", customer=c, missed=True, extension="1001")  # 2026-01-01 08:00 UTC
        CallParty.create(call=call, extension="1001", role="callee", outcome="missed")
        _call("z-late", "5557777", minutes=-6 * 60)  # 02:00 UTC: 31 December in New York
        ApiToken.update(created_at=dt.datetime(2026, 1, 1, 8, 0)).where(ApiToken.id == site.op_row.id).execute()
        op, admin = site.client("op"), site.client("admin")
        local = "Jan 1, 2026, 3:00\u202fAM EST"
        for client, path in ((op, "/calls"), (op, f"/customers/{c.id}"), (op, "/customers/new?number=5557777&call=z-1"),
                             (admin, "/tokens"), (op, "/missed?since=2026-01-01&until=2026-01-01"),
                             (admin, "/dashboard?since=2026-01-01&until=2026-01-01")):
            html = _text(client.get(path))
            assert local in html and "8:00\u202fAM" not in html and "(UTC)" not in html, path
        days = _text(op.get("/calls?since=2026-01-01&until=2026-01-01"))
        assert local in days and "5557777" not in days, "the filter's days are the call centre's days"
    finally:
        site.close()


def test_missed_list_mark_done_and_undo(site):
    """Issue 16: the missed list's rows: the record link, Call back (never for withheld), Mark done / Undo for the
    operator the call rang (not for a colleague's), and who did it when."""
    Employee.create(name="Anna Operator", extension="1001")
    c = _customer()
    for uuid, number, ext, customer in (("m-known", "+3545551234", "1001", c), ("m-theirs", "5557777", "1002", None),
                                        ("m-anon", None, "1001", None)):
        call = _call(uuid, number, "<b>caller</b>", customer=customer, missed=True, minutes=len(uuid))
        CallParty.create(call=call, extension=ext, role="callee", outcome="missed")
    team = _text(site.client("mgr").get("/missed"))
    assert "2 not returned, 1 withheld" in team and "&lt;b&gt;caller&lt;/b&gt;" in team
    assert f'href="/customers/{c.id}"' in team and "/customers/new?number=5557777&amp;call=m-theirs" in team
    assert team.count('action="/call"') == 2
    op = site.client("op")
    html = _text(op.get("/missed"))
    assert "1 not returned, 1 withheld" in html and "m-theirs" not in html, "an operator's own missed calls"
    assert html.count('action="/call"') == 1 and html.count("Mark done") == 1
    r = site.post(op, "/missed/m-known/done", {"next": "/missed?state=done"})
    assert r.status_code == 303 and r.headers["Location"] == "/missed?state=done"
    done = _text(op.get("/missed?state=done"))
    assert "done by 1001 <bdi>Anna Operator</bdi> at " in done and "Undo" in done
    assert "Not changed: this missed call did not ring extension 1001" in _text(
        op.get(site.post(op, "/missed/m-theirs/done").headers["Location"]))
    assert site.post(op, "/missed/m-known/undo").status_code == 303
    assert "1 not returned" in _text(op.get("/missed"))
    assert site.post(op, "/missed/m-known/done", csrf=False).status_code == 403
    assert "Not changed: there is no call with this uuid" in _text(op.get(site.post(op, "/missed/x%3Cy/done").headers["Location"]))
    admin = site.client("admin")
    assert _text(admin.get("/missed?extension=1002")).count("Mark done") == 1
    assert site.post(admin, "/missed/m-theirs/done").status_code == 303
    assert "done by admin at" in _text(admin.get("/missed?state=done"))


# ---- employees and tokens ----------------------------------------------------------------------------


def test_employees_page(site):
    """Adding, changing and deleting employees; each saved change tells the daemon (its employee snapshot follows
    at once), a refused one does not."""
    admin = site.client("admin")
    assert site.post(admin, "/employees", {"name": "Anna", "extension": "1001"}).status_code == 303
    e = Employee.get()
    assert e.active and "Anna" in _text(admin.get("/employees"))
    assert site.employee_changes == 1
    assert site.post(admin, "/employees", {"name": "Dup", "extension": "1001"}).status_code == 409
    assert site.post(admin, "/employees", {"name": "", "extension": "1002"}).status_code == 400
    assert site.post(admin, "/employees", {"name": "Bad", "extension": "10 02"}).status_code == 400
    assert site.employee_changes == 1
    assert site.post(admin, f"/employees/{e.id}", {"name": "Anna B", "extension": "1005"}).status_code == 303
    e = Employee.get()
    assert (e.name, e.extension, e.active) == ("Anna B", "1005", False)
    assert site.post(admin, f"/employees/{e.id}", {"name": "Anna B", "extension": "1005", "active": "on"}).status_code == 303
    assert Employee.get().active
    assert site.post(admin, f"/employees/{e.id}/delete").status_code == 303 and Employee.select().count() == 0
    assert site.post(admin, f"/employees/{e.id}/delete").status_code == 404
    assert site.employee_changes == 4


def test_employee_changes_are_on_the_audit_trail_and_the_employees_page(site):
    """Each employee added, changed or deleted (the page, the API) is one audit line naming who did it and when, shown
    under Changes on the employees page; the list is A to Z in the reader's language."""
    admin = site.client("admin")
    for name, ext in (("Örn", "1001"), ("Anna", "1002"), ("Þóra", "1003")):
        assert site.post(admin, "/employees", {"name": name, "extension": ext}).status_code == 303
    orn = Employee.get(Employee.extension == "1001")
    assert site.post(admin, f"/employees/{orn.id}", {"name": "Örn B", "extension": "1001", "active": "on"}).status_code == 303
    assert site.post(admin, f"/employees/{orn.id}", {"name": "Örn B", "extension": "1001", "active": "on"}).status_code == 303
    anna = Employee.get(Employee.extension == "1002")
    assert site.post(admin, f"/employees/{anna.id}/delete").status_code == 303
    lines = [(e.entity, e.entity_id, e.action, e.detail, e.actor, e.token_id)
             for e in AuditEntry.select().where(AuditEntry.entity == "employee").order_by(AuditEntry.id)]
    assert [line[2:4] for line in lines] == [("added", "1001 Örn"), ("added", "1002 Anna"), ("added", "1003 Þóra"),
                                              ("changed", "1001 Örn: name Örn B"), ("deleted", "1002 Anna")]
    assert {line[4] for line in lines} == {"admin"} and {line[5] for line in lines} == {site.admin_row.id}
    html = _text(admin.get("/employees", headers={"Accept-Language": "is"}))
    assert html.index('value="Þóra"') < html.index('value="Örn B"')  # Þ before Ö in Icelandic
    assert re.search(r"starfsmaður 1003 Þóra: bætt við af admin, \d\d:\d\d", html), "the Changes section"
    html = _text(admin.get("/employees", headers={"Accept-Language": "en"}))
    assert html.index('value="Örn B"') < html.index('value="Þóra"')  # Ö as O, Þ as th
    assert "employee 1002 Anna deleted by admin" in html
    r = site.app.test_client().post("/api/v1/employees", json={"name": "Api", "extension": "1009"},
                                    headers={"Authorization": f"Bearer {site.admin}"})
    assert r.status_code == 201
    assert AuditEntry.get(AuditEntry.entity_id == r.get_json()["id"], AuditEntry.entity == "employee").action == "added"


def test_tokens_page_revokes(site):
    admin, op = site.client("admin"), site.client("op")
    html = _text(admin.get("/tokens"))
    assert "op" in html and "admin" in html and site.op not in html and site.op_row.token_hash not in html
    assert site.post(admin, f"/tokens/{site.op_row.id}/revoke").status_code == 303
    assert ApiToken.get_by_id(site.op_row.id).revoked_at is not None
    assert op.get("/customers").status_code == 303
    assert site.post(admin, "/tokens/999/revoke").status_code == 404


# ---- hostile text ------------------------------------------------------------------------------------


class _Markup(HTMLParser):
    """Every tag and attribute the page really has."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.bad: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name.startswith("on") or (name in ("href", "src", "action") and value and
                                         not value.startswith(("/", "?", "#", "data:"))):
                self.bad.append(f"{tag} {name}={value!r}")


def test_hostile_text_is_never_markup(site):
    site.op_row.name = HOSTILE[:100]  # a token's name shows on the tokens page
    site.op_row.save()
    anna = Employee.create(name=HOSTILE[:200], extension="1001")
    c = Customer.create(name=HOSTILE, company=HOSTILE, note=HOSTILE, city=HOSTILE[:200], country=HOSTILE[:200],
                        external_id=HOSTILE[:100])
    n = RULES.classify("5551234")
    Phone.create(customer=c, e164=n.e164, rev=n.rev, raw=HOSTILE[:64], label=HOSTILE[:64])
    o = Order.create(customer=c, number=HOSTILE[:64], title=HOSTILE[:300], stage=HOSTILE[:100], responsible=anna, amount=5)
    _call("hostile-1", "5551234", HOSTILE, customer=c, answered_by="1001", extension="1001")
    _call("hostile-2", HOSTILE[:128], HOSTILE, extension="1001")
    admin = site.client("admin")
    pages = ["/customers", "/customers?q=" + HOSTILE[:150], f"/customers/{c.id}", f"/customers/{c.id}/edit",
             "/customers/new?call=hostile-2&number=" + HOSTILE[:64], "/customers/new?q=Þ&number=5559876",
             f"/calls?customer={c.id}", "/calls", "/employees", "/tokens", "/signin?next=" + HOSTILE[:60],
             "/customers/new?number=%22%3E%3Cscript%3E", "/calls?extension=" + HOSTILE[:30]]
    responses = [(p, admin.get(p)) for p in pages]
    responses.append(("bad edit", site.post(admin, f"/customers/{c.id}/edit", {"name": HOSTILE, "company": HOSTILE,
                                                                               "note": "x" * 10_001})))
    responses.append(("bad phone", site.post(admin, f"/customers/{c.id}/phones", {"number": HOSTILE[:64]})))
    responses.append(("bad pay", site.post(admin, f"/orders/{o.id}/payments", {"amount": HOSTILE[:20]})))
    responses.append(("signin", site.post(site.app.test_client(), "/signin", {"token": HOSTILE, "next": HOSTILE})))
    for path, r in responses:
        assert r.status_code in (200, 400, 403), (path, r.status_code)
        html = _text(r)
        parsed = _Markup()
        parsed.feed(html)
        assert "script" not in parsed.tags and "b" not in parsed.tags, path
        assert not parsed.bad, (path, parsed.bad)
        assert "<script>" not in html and "<b>bold</b>" not in html and "<img src=x" not in html, path
    record = _text(responses[2][1])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&gt;&lt;img src=x onerror=alert(2)&gt;" in record
    assert record.count("<img") == 1, "only the customer's photo"


class _Isolation(HTMLParser):
    """Each piece of text or form value holding U+202E, and whether an element around it isolates it (bdi, dir=auto)."""

    VOID = {"input", "img", "br", "meta", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.found: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        isolates = tag == "bdi" or attrs.get("dir") == "auto"
        if tag == "input" and "\u202e" in (attrs.get("value") or "") and attrs.get("type") != "hidden":
            self.found.append((f"input {attrs.get('name')}", isolates))
        if tag not in self.VOID:
            self.stack.append((tag, isolates))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if "\u202e" in data:
            where = "/".join(t for t, _ in self.stack)
            if self.stack and self.stack[-1][0] == "title":
                self.found.append((where, data.startswith("\u2068") and "\u2069" in data))
            else:
                self.found.append((where, any(i for _, i in self.stack)))


def test_stranger_text_cannot_reverse_the_page_around_it(site):
    """U+202E (right-to-left override) in customer fields and caller names stays inside its own element."""
    rlo = "Evil\u202e ehf"
    anna = Employee.create(name="Anna\u202e", extension="1001")
    c = Customer.create(name=rlo, company=rlo, note=rlo, city=rlo, country=rlo, external_id=rlo)
    n = RULES.classify("5551234")
    Phone.create(customer=c, e164=n.e164, rev=n.rev, raw="555\u202e1234", label=rlo)
    Order.create(customer=c, number="A\u202e1", title=rlo, stage=rlo, responsible=anna, amount=5)
    _call("rlo-1", "5551234", rlo, customer=c, answered_by="1001", extension="1001")
    _call("rlo-2", "5559876", "Caller\u202e Name", extension="1001")
    admin = site.client("admin")
    pages = [f"/customers/{c.id}", "/customers/new?call=rlo-2&number=5559876", "/customers/new?q=Evil&number=5559876",
             "/customers?q=Evil", f"/customers/{c.id}/edit", "/calls", "/employees"]
    for path in pages:
        parsed = _Isolation()
        parsed.feed(_text(admin.get(path)))
        assert parsed.found, path
        assert all(ok for _, ok in parsed.found), (path, [where for where, ok in parsed.found if not ok])


def test_signin_tables_reach_a_database_migrated_past_them(sqlite_url):
    """Migration 2 landed after 4 had run somewhere: it still runs there (versions are checked one by one)."""
    from screenpop.db.database import open_database
    from screenpop.db.migrations import MIGRATIONS, migrate
    from screenpop.db.models import ALL_MODELS, SchemaVersion, Setting

    db = open_database(sqlite_url)
    try:
        db.create_tables([m for m in ALL_MODELS if m not in (Setting, SigninLink)] + [SchemaVersion])
        SchemaVersion.insert_many([{"version": m.version} for m in MIGRATIONS if m.version != 2]).execute()
        assert migrate(db) == [2] and db.table_exists("signin_link") and db.table_exists("setting")
        assert migrate(db) == []
    finally:
        db.close()


def test_database_down_is_a_503_page(tmp_path, sqlite_url, monkeypatch):
    """Pages meet a database error, before and after the session key was read: a 503 page, then it recovers."""
    import peewee

    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    db = open_database(sqlite_url)
    migrate(db)
    site = Site(db, tmp_path)
    real = db.execute_sql

    def down(*args, **kwargs):
        raise peewee.OperationalError("unable to open database file")

    try:
        monkeypatch.setattr(db, "execute_sql", down)
        for path in ("/customers", "/signin"):
            r = site.app.test_client().get(path)
            assert r.status_code == 503 and "database does not answer" in _text(r), path
        monkeypatch.setattr(db, "execute_sql", real)
        op = site.client("op")
        monkeypatch.setattr(db, "execute_sql", down)
        assert op.get("/customers").status_code == 503
        monkeypatch.setattr(db, "execute_sql", real)
        assert op.get("/customers").status_code == 200
    finally:
        site.close()
        db.close()


def test_logs_never_carry_a_link_secret(site, caplog):
    import logging

    from screenpop.daemon.web.server import _AccessLog

    caplog.set_level(logging.DEBUG)
    _AccessLog().write('127.0.0.1 - - [x] "GET /signin/s3cr3t-Secret_x HTTP/1.1" 303 0 0.01\n')
    path = site.mint(site.op)[1]["url"].split("localhost", 1)[1]
    site.app.test_client().get(path)
    site.app.test_client().get(path)
    secret = path.rsplit("/", 1)[1]
    text = caplog.text
    assert "/signin/…" in text and "s3cr3t" not in text and secret not in text and site.op not in text
    assert "web sign-in: token" in text and "was already used" in text


def test_admin_pages_for_fields_and_categories(site):
    """The Fields and Categories pages: admin only, refusals as a 4xx page saying why, removal after typing the key,
    a category in use deleted only by moving its customers; the record shows the values escaped."""
    c = _customer(category="vip")
    op, admin = site.client("op"), site.client("admin")
    for path in ("/fields", "/categories"):
        assert op.get(path).status_code == 403
        assert admin.get(path).status_code == 200
    assert site.post(op, "/fields", {"entity": "customer", "key": "x", "label": "X", "type": "text"}).status_code == 403
    r = site.post(admin, "/fields", {"entity": "customer", "key": "contract", "label": "Contract", "type": "text"})
    assert r.status_code == 303
    r = site.post(admin, "/fields", {"entity": "order", "key": "tier", "label": "Tier", "type": "choice", "options": ""})
    assert r.status_code == 400 and "options: a choice needs" in _text(r)
    r = site.post(admin, "/fields", {"entity": "customer", "key": "Bad Key", "label": "X", "type": "text"})
    assert r.status_code == 400 and "key: " in _text(r)
    hostile = "<script>alert(1)</script>\u202e"
    r = site.post(op, f"/customers/{c.id}/edit", {"name": c.name, "company": c.company, "category": "VIP",
                                                  "field.contract": hostile})
    assert r.status_code == 303
    page = _text(op.get(f"/customers/{c.id}"))
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<span class="badge badge-vip">\u2605 VIP</span>' in page
    r = site.post(op, f"/customers/{c.id}/edit", {"name": c.name, "category": "gold"})
    assert r.status_code == 400 and "category: " in _text(r)
    field_id = site.hub.worker.run(lambda: CustomField.get().id)
    r = site.post(admin, f"/fields/{field_id}/delete", {"confirm": "wrong"})
    assert r.status_code == 409 and "removes its values from 1 customer(s)" in _text(r)
    r = site.post(admin, f"/fields/{field_id}/delete", {"confirm": "contract"})
    assert r.status_code == 303
    assert hostile not in site.hub.worker.run(lambda: Customer.get_by_id(c.id).custom)
    r = site.post(admin, "/categories/vip/delete", {})
    assert r.status_code == 409 and "choose a category" in _text(r)
    assert site.post(admin, "/categories/vip/delete", {"move_to": "problem"}).status_code == 303
    assert site.hub.worker.run(lambda: Customer.get_by_id(c.id).category) == "problem"
    assert site.post(admin, "/categories", {"name": "partner", "colour": "#0d9488", "flag": "\u25c6 P"}).status_code == 303
    css = _text(admin.get("/categories.css"))
    assert ".badge-partner { background: #0d9488; }" in css and ".badge-vip" not in css


# ---- card layouts (docs/web.md, "Card layouts") --------------------------------------------------------


def test_layout_pages_preview_save_refuse_and_give_to_a_team(site):
    c = _customer(note="<script>alert(1)</script>")
    admin = site.client("admin")
    assert site.client("op").get("/layouts").status_code == 403
    page = admin.get("/layouts/sales")
    html = _text(page)
    assert page.status_code == 200 and "(new)" in html and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<strong class="summary">Norðurljós ehf.  ★ VIP</strong>' in html, "the sample customer's preview"
    assert '<div class="line warning"><b>Prefers email</b></div>' in html
    r = admin.get(f"/layouts/preview?items=note+warning%0Aname%0Anosuch&customer={c.id}")
    assert r.status_code == 400 and r.get_json() == {"error": "items: unknown field(s): 'nosuch'"}
    r = admin.get(f"/layouts/preview?items=name%0Anote+warning&customer={c.id}&extension=1001")
    assert r.status_code == 200 and [(x["text"], x["style"]) for x in r.get_json()["lines"]] == [
        ("<script>alert(1)</script>", "warning"), ("Jón Jónsson", "plain")], "left for the page to show as text"
    html = _text(admin.get(f"/layouts/sales?customer={c.id}"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert admin.get("/layouts/preview?items=note&customer=999999").status_code == 404
    assert admin.get("/layouts/preview?items=note&customer=x1").status_code == 400
    r = site.post(admin, "/layouts/sales", {"items": "name\n<b>x</b> strong"})
    assert r.status_code == 400 and "unknown field(s): &#39;&lt;b&gt;x&lt;/b&gt;&#39;" in _text(r)
    assert "name\n&lt;b&gt;x&lt;/b&gt; strong</textarea>" in _text(r), "the admin's text kept"
    r = site.post(admin, "/layouts/sales", {"items": "name\nnote warning"})
    assert r.status_code == 303 and r.headers["Location"] == "/layouts/sales"
    r = site.post(admin, "/teams", {"name": "sales", "layout": "sales", "extensions": "1002, 1003"})
    assert r.status_code == 303
    html = _text(admin.get("/layouts"))
    assert "Team sales added" in html and 'value="1002 1003"' in html
    r = site.post(admin, "/teams", {"name": "support", "layout": "sales", "extensions": "1003"})
    assert r.status_code == 409 and "1003 is in team sales" in _text(r)
    assert site.post(admin, "/layouts/sales/delete").status_code == 409, "a team uses it"
    assert site.post(admin, "/teams/sales/delete").status_code == 303
    assert site.post(admin, "/layouts/sales/delete").status_code == 303
    assert admin.get("/layouts/new?name=bad%20name").status_code == 400
    assert admin.get("/layouts/new?name=ok").headers["Location"] == "/layouts/ok"
