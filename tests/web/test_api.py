"""The customer-data JSON API (docs/api.md): in process on SQLite and PostgreSQL, and once over TCP on the real daemon."""
from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request

import pytest

from screenpop.daemon.auth import tokens
from screenpop.db.models import Call, Customer, Employee, Phone

from support import daemon, free_port, http_ready, wait_for, write_config

HOSTILE = "<script>alert('x')</script> \"; DROP TABLE customer; -- \u202e ünï 😀 \\ \n\t%_"


def test_customer_crud_and_search(api):
    s, c = api.req("POST", "/api/v1/customers", {"name": HOSTILE, "company": "Acme", "category": "vip", "city": "Reykjavík",
                                                 "phones": ["+354 555 1234", {"number": "8201234", "label": "mobile"}]})
    assert s == 201, c
    assert c["name"] == HOSTILE and c["category"] == "vip"
    assert [p["e164"] for p in c["phones"]] == ["+3545551234", "+3548201234"]
    assert c["phones"][1]["label"] == "mobile" and c["orders"] == [] and c["calls"] == [] and c["debt"] == "0.00"
    cid = c["id"]
    s, c2 = api.req("POST", "/api/v1/customers", {"company": "Beta ehf", "city": "Akureyri"})
    assert s == 201
    for i in range(5):
        api.req("POST", "/api/v1/customers", {"name": f"Filler {i}"})
    # Search by name, company, city, any format of part of a number.
    for q, want in (("acme", [cid]), ("akureyri", [c2["id"]]), ("555-12", [cid]), ("(820) 1234", [cid]),
                    ("00354 555 1234", [cid]), ("%_", [cid]), ("%", []), ("ab%", []), (HOSTILE[:20], [cid])):
        s, r = api.req("GET", f"/api/v1/customers?q={urllib.parse.quote(q)}")
        assert s == 200 and [x["id"] for x in r["customers"]] == want, (q, r)
    # Pagination: stable order, total.
    s, r = api.req("GET", "/api/v1/customers?limit=3&offset=0")
    s2, r2 = api.req("GET", "/api/v1/customers?limit=3&offset=3")
    ids = [x["id"] for x in r["customers"] + r2["customers"]]
    assert r["total"] == 7 and ids == sorted(ids) and len(set(ids)) == 6
    for bad in ("limit=0", "limit=501", "limit=x", "offset=-1", "limit=1e3", "offset=%C2%B2"):
        s, r = api.req("GET", f"/api/v1/customers?{bad}")
        assert s == 400 and ("limit" in r["error"] or "offset" in r["error"]), bad
    # Update: partial, validated.
    s, r = api.req("PATCH", f"/api/v1/customers/{cid}", {"note": HOSTILE * 10, "category": "problem"})
    assert s == 200 and r["note"] == HOSTILE * 10 and r["category"] == "problem" and r["company"] == "Acme"
    assert api.req("PATCH", f"/api/v1/customers/{cid}", {"name": "", "company": ""})[0] == 400
    assert api.req("GET", "/api/v1/customers/999999")[0] == 404
    # Delete: admin only.
    assert api.req("DELETE", f"/api/v1/customers/{cid}")[0] == 403
    assert api.req("DELETE", f"/api/v1/customers/{cid}", token="admin")[0] == 204
    assert api.req("GET", f"/api/v1/customers/{cid}")[0] == 404
    assert Phone.select().where(Phone.customer == cid).count() == 0


@pytest.mark.parametrize("body,field", [
    ({"name": 5}, "name"), ({"name": "x", "category": "gold"}, "category"), ({"name": "x", "colour": "red"}, "colour"),
    ({"name": "x" * 301}, "name"), ({"company": "x" * 301}, "company"), ({"name": "x", "note": "x" * 10001}, "note"),
    ({}, "name or company"), ({"name": "   "}, "name or company"), ({"name": "a\x00b"}, "name"),
    ({"name": "\ud800"}, "name"), ({"name": "x", "phones": "5551234"}, "phones"), ({"name": "x", "phones": ["12"]}, "phones[0]"),
    ({"name": "x", "phones": [{"number": "5551234", "x": 1}]}, "phones[0]"), ({"name": "x", "phones": ["1001"]}, "extension"),
    ({"name": None}, "name"),
])
def test_customer_bad_input(api, body, field):
    s, r = api.req("POST", "/api/v1/customers", body)
    assert s == 400 and field in r["error"], r
    assert Customer.select().count() == 0


def test_body_checks(api):
    assert api.req("POST", "/api/v1/customers", raw=b'{"name":"x"}', headers={"Content-Type": "text/plain"}) == (
        415, {"error": "the body must be JSON (Content-Type: application/json)"})
    s, r = api.req("POST", "/api/v1/customers", raw=b'{"name":', headers={"Content-Type": "application/json"})
    assert s == 400 and "JSON" in r["error"]
    s, r = api.req("POST", "/api/v1/customers", raw=b'["x"]', headers={"Content-Type": "application/json"})
    assert s == 400 and "object" in r["error"]
    s, r = api.req("POST", "/api/v1/customers", {"name": "x" * 70000})
    assert s == 413 and "larger" in r["error"]
    s, r = api.req("POST", "/api/v1/customers", raw=b"[" * 50000, headers={"Content-Type": "application/json"})
    assert s == 400


def test_auth(api):
    assert api.req("GET", "/api/v1/customers", token=None) == (401, {"error": "missing bearer token"})
    assert api.req("GET", "/api/v1/customers", token="sp_nope")[0] == 401
    row, clear = tokens.create("1002")
    tokens.revoke(row.id)
    assert api.req("GET", "/api/v1/customers", token=clear) == (401, {"error": "token revoked"})
    assert api.req("POST", "/api/v1/employees", {"name": "A", "extension": "1005"}) [0] == 403
    assert api.req("GET", "/api/v1/nothing-here")[0] == 404


def test_phones(api):
    a = api.req("POST", "/api/v1/customers", {"name": "A", "phones": ["5551234"]})[1]
    b = api.req("POST", "/api/v1/customers", {"name": "B"})[1]
    s, r = api.req("POST", f"/api/v1/customers/{b['id']}/phones", {"number": "+354 555-1234"})
    assert s == 409 and r["customer_id"] == a["id"] and str(a["id"]) in r["error"]
    s, r = api.req("POST", f"/api/v1/customers/{a['id']}/phones", {"number": "555 1234"})
    assert s == 409 and r["customer_id"] == a["id"]
    assert Phone.get(Phone.e164 == "+3545551234").customer_id == a["id"], "never moved"
    s, r = api.req("POST", "/api/v1/customers", {"name": "C", "phones": ["5551234"]})
    assert s == 409 and r["customer_id"] == a["id"]
    assert Customer.select().where(Customer.name == "C").count() == 0, "the whole create rolled back"
    s, p = api.req("POST", f"/api/v1/customers/{b['id']}/phones", {"number": "0035 4820 9999", "label": HOSTILE[:64]})
    assert s == 201 and p["label"] == HOSTILE[:64] and p["e164"].startswith("+354")
    for bad in ({"number": "abc"}, {"number": 5551234}, {"number": "5" * 65}, {"label": "x"}, {"number": "5559999", "label": "x" * 65}):
        assert api.req("POST", f"/api/v1/customers/{b['id']}/phones", bad)[0] == 400, bad
    assert api.req("POST", "/api/v1/customers/99999/phones", {"number": "5557777"})[0] == 404
    assert api.req("DELETE", f"/api/v1/customers/{b['id']}/phones/{p['id']}")[0] == 403
    assert api.req("DELETE", f"/api/v1/customers/{a['id']}/phones/{p['id']}", token="admin")[0] == 404
    assert api.req("DELETE", f"/api/v1/customers/{b['id']}/phones/{p['id']}", token="admin")[0] == 204
    assert api.req("GET", f"/api/v1/customers/{b['id']}")[1]["phones"] == []


def test_orders(api):
    cid = api.req("POST", "/api/v1/customers", {"name": "A"})[1]["id"]
    emp = Employee.create(name="Op", extension="1001")
    s, o = api.req("POST", f"/api/v1/customers/{cid}/orders", {"number": "O-1", "title": HOSTILE, "amount": "100.50",
                                                              "stage": "new", "responsible_id": emp.id})
    assert s == 201 and o["amount"] == "100.50" and o["paid"] == "0.00" and o["debt"] == "100.50" and o["title"] == HOSTILE
    assert api.req("POST", f"/api/v1/customers/{cid}/orders", {"number": "O-1"})[0] == 409
    for bad, field in (({"number": "O-2", "amount": 100}, "amount"), ({"number": "O-2", "amount": "-1"}, "amount"),
                       ({"number": "O-2", "amount": "1.234"}, "amount"), ({"number": "O-2", "amount": "1e5"}, "amount"),
                       ({"number": "O-2", "responsible_id": 9999}, "responsible_id"),
                       ({"number": "O-2", "responsible_id": True}, "responsible_id"), ({"amount": "1"}, "number"),
                       ({"number": "O-2", "status": "closed"}, "status")):
        s, r = api.req("POST", f"/api/v1/customers/{cid}/orders", bad)
        assert s == 400 and field in r["error"], (bad, r)
    oid = o["id"]
    s, r = api.req("PATCH", f"/api/v1/orders/{oid}", {"stage": "shipped"})
    assert s == 200 and r["stage"] == "shipped" and r["title"] == HOSTILE
    assert api.req("PATCH", f"/api/v1/orders/{oid}", {"stage": "x" * 101})[0] == 400
    assert api.req("PATCH", f"/api/v1/orders/{oid}", {"amount": "1"})[0] == 400
    s, r = api.req("POST", f"/api/v1/orders/{oid}/payments", {"amount": "60.25"})
    assert s == 200 and r["paid"] == "60.25" and r["debt"] == "40.25"
    s, r = api.req("POST", f"/api/v1/orders/{oid}/payments", {"amount": "40.26"})
    assert s == 400 and "above" in r["error"] and r["debt"] == "40.25"
    for bad in ({"amount": "0"}, {"amount": 5}, {"amount": "abc"}, {}):
        assert api.req("POST", f"/api/v1/orders/{oid}/payments", bad)[0] == 400, bad
    s, c = api.req("GET", f"/api/v1/customers/{cid}")
    assert c["debt"] == "40.25" and c["orders"][0]["status"] == "open"
    assert api.req("POST", f"/api/v1/orders/{oid}/payments", {"amount": "40.25"})[1]["debt"] == "0.00"
    s, r = api.req("POST", f"/api/v1/orders/{oid}/close")
    assert s == 200 and r["status"] == "closed"
    assert api.req("POST", f"/api/v1/orders/{oid}/payments", {"amount": "1"})[0] == 409
    assert api.req("GET", f"/api/v1/customers/{cid}")[1]["orders"][0]["status"] == "closed"
    assert api.req("GET", "/api/v1/orders/9999")[0] == 404
    # Cents add up exactly (no float on the way), to the last one.
    small = api.req("POST", f"/api/v1/customers/{cid}/orders", {"number": "O-3", "amount": "0.30"})[1]
    for part in ("0.10", "0.20"):
        s, r = api.req("POST", f"/api/v1/orders/{small['id']}/payments", {"amount": part})
        assert s == 200, r
    assert r["paid"] == "0.30" and r["debt"] == "0.00"
    assert api.req("POST", f"/api/v1/orders/{small['id']}/payments", {"amount": "0.01"})[0] == 400


def test_customers_sorted_by_name_in_the_callers_language(api):
    """?sort=name (or company, recent) pages A to Z in the caller's Accept-Language, in the database; id stays the
    default; sort with a search is refused (search results come by relevance)."""
    names = ["Örn", "Zoe", "Ari", "Þórður", "Ásta", "Ægir", "Óli", "Oddur"]
    ids = {n: api.req("POST", "/api/v1/customers", {"name": n})[1]["id"] for n in names}
    pages = []
    for offset in (0, 3, 6):
        s, r = api.req("GET", f"/api/v1/customers?sort=name&limit=3&offset={offset}", headers={"Accept-Language": "is"})
        assert s == 200 and r["total"] == 8
        pages += [c["name"] for c in r["customers"]]
    assert pages == ["Ari", "Ásta", "Oddur", "Óli", "Zoe", "Þórður", "Ægir", "Örn"]
    r = api.req("GET", "/api/v1/customers?sort=name", headers={"Accept-Language": "en"})[1]
    assert [c["name"] for c in r["customers"]] == ["Ægir", "Ari", "Ásta", "Oddur", "Óli", "Örn", "Þórður", "Zoe"]
    assert [c["id"] for c in api.req("GET", "/api/v1/customers")[1]["customers"]] == sorted(ids.values())
    for bad in ("sort=size", "sort=name&q=ari", "sort="):
        s, r = api.req("GET", f"/api/v1/customers?{bad}")
        assert s == 400 and r["error"].startswith("sort:"), bad


def test_employees(api):
    """Employee writes are admin-only and checked; each one that is saved tells the daemon (its employee snapshot
    follows at once), a refused one does not."""
    s, e = api.req("POST", "/api/v1/employees", {"name": HOSTILE, "extension": "1001"}, token="admin")
    assert s == 201 and e["name"] == HOSTILE and e["active"] is True and api.employee_changes == 1
    s, r = api.req("POST", "/api/v1/employees", {"name": "B", "extension": "1001"}, token="admin")
    assert s == 409 and r["employee_id"] == e["id"]
    for bad in ({"name": "B"}, {"name": "B", "extension": "10 01"}, {"name": "B", "extension": "1" * 33},
                {"name": "B", "extension": "1002", "active": "yes"}, {"name": "B", "extension": "1002", "role": "x"}):
        assert api.req("POST", "/api/v1/employees", bad, token="admin")[0] == 400, bad
    assert api.employee_changes == 1
    s, r = api.req("PATCH", f"/api/v1/employees/{e['id']}", {"active": False}, token="admin")
    assert s == 200 and r["active"] is False and r["extension"] == "1001" and api.employee_changes == 2
    assert api.req("PATCH", f"/api/v1/employees/{e['id']}", {"active": True})[0] == 403
    s, r = api.req("GET", "/api/v1/employees")
    assert s == 200 and r["total"] == 1 and r["employees"][0]["name"] == HOSTILE
    assert api.req("DELETE", f"/api/v1/employees/{e['id']}")[0] == 403
    assert api.req("DELETE", f"/api/v1/employees/{e['id']}", token="admin")[0] == 204
    assert api.req("DELETE", f"/api/v1/employees/{e['id']}", token="admin")[0] == 404
    assert api.employee_changes == 3


def test_calls(api):
    cid = api.req("POST", "/api/v1/customers", {"name": "A"})[1]["id"]
    t0 = dt.datetime(2026, 1, 1, 8, 0)
    for i in range(30):
        Call.create(uuid=f"u{i}", direction="INCOMING" if i % 2 else "OUTGOING", started_at=t0 + dt.timedelta(minutes=i),
                    customer=cid if i < 25 else None, missed=i % 3 == 0, extension="1001" if i % 5 == 0 else "1002",
                    from_extension="1001" if i % 5 == 0 else None, external_name=HOSTILE)
    s, r = api.req("GET", "/api/v1/calls?limit=10", token="admin")
    assert s == 200 and r["total"] == 30 and [c["uuid"] for c in r["calls"]] == [f"u{i}" for i in range(29, 19, -1)]
    assert r["calls"][0]["external_name"] == HOSTILE
    r = api.req("GET", "/api/v1/calls?limit=10&offset=25", token="admin")[1]
    assert [c["uuid"] for c in r["calls"]] == ["u4", "u3", "u2", "u1", "u0"]
    r = api.req("GET", "/api/v1/calls?since=2026-01-01T08:10:00Z&until=2026-01-01T08:20:00%2B00:00&missed=true",
                token="admin")[1]
    assert [c["uuid"] for c in r["calls"]] == ["u18", "u15", "u12"]
    r = api.req("GET", "/api/v1/calls?direction=incoming&extension=1001", token="admin")[1]
    assert [c["uuid"] for c in r["calls"]] == ["u25", "u15", "u5"]
    r = api.req("GET", f"/api/v1/calls?customer_id={cid}&limit=500", token="admin")[1]
    assert r["total"] == 25
    # an operator token sees its own extension's calls only (daemon/auth/roles.py), and may not ask for another's
    s, r = api.req("GET", "/api/v1/calls?limit=50")
    assert s == 200 and r["total"] == 6 and {c["uuid"] for c in r["calls"]} == {f"u{i}" for i in range(0, 30, 5)}
    s, r = api.req("GET", "/api/v1/calls?extension=1002")
    assert s == 403 and "own extension" in r["error"]
    for bad in ("since=yesterday", "direction=sideways", "missed=maybe", "customer_id=x", "limit=-5"):
        assert api.req("GET", f"/api/v1/calls?{bad}")[0] == 400, bad
    c = api.req("GET", f"/api/v1/customers/{cid}")[1]
    assert [x["uuid"] for x in c["calls"]] == [f"u{i}" for i in range(24, 4, -1)], "the last 20, newest first"
    api.req("DELETE", f"/api/v1/customers/{cid}", token="admin")
    assert Call.select().count() == 30 and Call.select().where(Call.customer.is_null(False)).count() == 0


def test_real_daemon_end_to_end(tmp_path, sqlite_url):
    """Over TCP on the running daemon: create a customer with a number, find it by number, read it back."""
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    db = open_database(sqlite_url)
    migrate(db)
    _, op = tokens.create("1001")
    db.close()
    port = free_port()
    config = write_config(tmp_path / "screenpop.toml", free_port(), sqlite_url, http_port=port)
    d = daemon(tmp_path, config)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ready(base) or d.popen.poll() is not None, 15, "the daemon's HTTP server")
        assert d.popen.poll() is None, d.log()

        def call(method, path, body=None, token=op):
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(base + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        s, c = call("POST", "/api/v1/customers", {"name": HOSTILE, "phones": ["+354 555 1234"]})
        assert s == 201, (c, d.log())
        s, r = call("GET", "/api/v1/customers?q=5551234")
        assert s == 200 and [x["id"] for x in r["customers"]] == [c["id"]] and r["customers"][0]["name"] == HOSTILE
        assert call("DELETE", f"/api/v1/customers/{c['id']}")[0] == 403
        assert call("GET", "/api/v1/customers", token="sp_bad")[0] == 401
        assert call("POST", "/api/v1/customers", {"name": "x" * 100_000}) == (413, {"error": "request body larger than 65536 bytes"})
        req = urllib.request.Request(base + "/api/v1/customers", data=b"name=x", method="POST",
                                     headers={"Authorization": f"Bearer {op}", "Content-Type": "application/x-www-form-urlencoded"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 415 and "JSON" in json.loads(refused.value.read())["error"]
        assert call("GET", "/api/v1/customers")[1]["total"] == 1, "nothing stored by the refused requests"
        assert d.terminate() == 0, d.log()
    finally:
        d.close()


def test_missed_follow_up(api):
    from screenpop.db.models import CallParty

    t0 = dt.datetime(2026, 1, 1, 8, 0)

    def missed(uuid: str, minutes: int, ext: str, number: str | None) -> None:
        call = Call.create(uuid=uuid, direction="INCOMING", started_at=t0 + dt.timedelta(minutes=minutes), missed=True,
                           external_number=number or "anonymous", external_e164=number, external_name=HOSTILE)
        CallParty.create(call=call, extension=ext, role="callee", outcome="missed", rang_at=call.started_at)

    missed("m1", 0, "1001", "+3545550001")
    missed("m2", 1, "1002", "+3545550002")
    missed("anon", 2, "1001", None)
    s, r = api.req("GET", "/api/v1/missed")
    assert s == 200 and (r["open"], r["anonymous"], r["total"]) == (1, 1, 1)
    assert [c["call_uuid"] for c in r["calls"]] == ["m1"] and r["calls"][0]["caller_name"] == HOSTILE
    assert r["calls"][0]["callable"] and r["calls"][0]["record_url"].startswith("/customers/new?number=%2B354")
    assert api.req("GET", "/api/v1/missed?state=anonymous")[1]["calls"][0]["callable"] is False
    s, r = api.req("GET", "/api/v1/missed?extension=1002")
    assert s == 403 and "1001" in r["error"]
    r = api.req("GET", "/api/v1/missed?extension=1002", token="admin")[1]
    assert [c["call_uuid"] for c in r["calls"]] == ["m2"]
    assert api.req("GET", "/api/v1/missed", token="admin")[1]["open"] == 2
    s, r = api.req("POST", "/api/v1/missed/m2/done")
    assert s == 403 and "1001" in r["error"]
    s, r = api.req("POST", "/api/v1/missed/m1/done")
    assert s == 200 and r["state"] == "done" and r["done"]["by"] == "1001"
    assert api.req("GET", "/api/v1/missed?state=done")[1]["calls"][0]["call_uuid"] == "m1"
    s, r = api.req("DELETE", "/api/v1/missed/m1/done")
    assert s == 200 and r["state"] == "open" and r["done"] is None
    assert api.req("DELETE", "/api/v1/missed/m1/done")[0] == 409
    for method, path, status in (("GET", "/api/v1/missed?state=forgotten", 400), ("GET", "/api/v1/missed?limit=0", 400),
                                 ("GET", "/api/v1/missed?since=soon", 400), ("POST", "/api/v1/missed/nope/done", 404),
                                 ("POST", "/api/v1/missed/" + "x" * 80 + "/done", 404),
                                 ("GET", "/api/v1/missed?extension=" + "1" * 40, 400)):
        s, r = api.req(method, path, token="admin")
        assert s == status and r["error"], (path, r)
    assert api.req("GET", "/api/v1/missed", token=None)[0] == 401
