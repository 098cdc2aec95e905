"""Custom fields and categories through the JSON API (docs/customfields.md), on SQLite and PostgreSQL: definitions of
every type, values checked by type with errors naming the field, search, removal with the values, the card's
part, and the category list (edit, use, delete or move)."""
from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest

from screenpop.daemon.record.pops import PopRow
from screenpop.db.models import Customer, CustomField

HOSTILE = "<b>x</b> \"'; DROP TABLE customer; -- \u202e 😀 =cmd|' /C calc'!A0"

EVERY_KIND = [
    ("contract", "text", {}), ("history", "longtext", {}), ("seats", "number", {}), ("limit", "money", {}),
    ("renewal", "date", {}), ("tier", "choice", {"options": ["Gold", "Silver", "Bronze"]}),
    ("newsletter", "yesno", {}), ("crm", "link", {}),
]


def define(api, entity: str, key: str, kind: str, token: str = "admin", **more):
    return api.req("POST", "/api/v1/fields", {"entity": entity, "key": key, "label": key.title(), "type": kind, **more},
                   token=token)


@pytest.fixture
def every_kind(api):
    for key, kind, more in EVERY_KIND:
        s, r = define(api, "customer", key, kind, **more)
        assert s == 201 and r["type"] == kind, r
    return api


def test_define_and_set_every_kind(every_kind):
    api = every_kind
    s, r = api.req("GET", "/api/v1/fields?entity=customer")
    assert s == 200 and [f["key"] for f in r["fields"]] == [k for k, _, _ in EVERY_KIND]
    given = {"contract": HOSTILE, "history": "line 1\nline 2", "seats": "12.50", "limit": "1250.5",
             "renewal": "2027-01-31", "tier": "gold", "newsletter": True, "crm": "https://crm.example/c?id=1&x=<y>"}
    s, c = api.req("POST", "/api/v1/customers", {"name": "Acme", "fields": given})
    assert s == 201, c
    assert c["fields"] == {"contract": HOSTILE, "history": "line 1\nline 2", "seats": "12.5", "limit": "1250.50",
                           "renewal": "2027-01-31", "tier": "Gold", "newsletter": "yes",
                           "crm": "https://crm.example/c?id=1&x=<y>"}
    # a PATCH changes the values named, null or "" clears one, the others stay
    s, c = api.req("PATCH", f"/api/v1/customers/{c['id']}", {"fields": {"seats": None, "newsletter": "no", "tier": ""}})
    assert s == 200 and "seats" not in c["fields"] and "tier" not in c["fields"] and c["fields"]["newsletter"] == "no"
    assert c["fields"]["contract"] == HOSTILE


@pytest.mark.parametrize("key,value,words", [
    ("seats", "1,5", "not a number"), ("seats", "1e5", "not a number"), ("limit", "-3", "not an amount"),
    ("limit", "1.005", "not an amount"), ("renewal", "31.01.2027", "not a date"), ("renewal", "2027-02-30", "not a date"),
    ("tier", "Platinum", "not one of Gold, Silver, Bronze"), ("newsletter", "maybe", "not yes or no"),
    ("crm", "javascript:alert(1)", "not a web address"), ("crm", "https://x.example/a b", "not a web address"),
    ("contract", "two\nlines", "one line"), ("contract", "x" * 301, "at most 300"), ("history", "x" * 10001, "at most"),
    ("contract", 5, "must be text"), ("nosuch", "x", "no such field"), ("contract", "a\x00b", "NUL"),
])
def test_a_bad_value_is_refused_naming_the_field(every_kind, key, value, words):
    api = every_kind
    s, r = api.req("POST", "/api/v1/customers", {"name": "Acme", "fields": {key: value}})
    assert s == 400 and r["error"].startswith(f"fields.{key}: ") and words in r["error"], r
    assert Customer.select().count() == 0
    s, c = api.req("POST", "/api/v1/customers", {"name": "Acme"})
    s, r = api.req("PATCH", f"/api/v1/customers/{c['id']}", {"fields": {key: value}})
    assert s == 400 and r["error"].startswith(f"fields.{key}: "), r
    assert api.req("POST", "/api/v1/customers", {"name": "x", "fields": ["contract"]})[0] == 400


def test_required_fields_and_order_fields(api):
    assert define(api, "customer", "vat", "text", required=True)[0] == 201
    assert define(api, "order", "due", "date", required=True)[0] == 201
    assert define(api, "order", "priority", "choice", options=["high", "low"])[0] == 201
    s, r = api.req("POST", "/api/v1/customers", {"name": "Acme"})
    assert s == 400 and r["error"] == "fields.vat: required (Vat)"
    s, c = api.req("POST", "/api/v1/customers", {"name": "Acme", "fields": {"vat": "IS123"}})
    assert s == 201
    s, r = api.req("PATCH", f"/api/v1/customers/{c['id']}", {"fields": {"vat": ""}})
    assert s == 400 and "required" in r["error"]
    s, r = api.req("POST", f"/api/v1/customers/{c['id']}/orders", {"number": "A-1"})
    assert s == 400 and r["error"] == "fields.due: required (Due)"
    s, o = api.req("POST", f"/api/v1/customers/{c['id']}/orders", {"number": "A-1", "fields": {"due": "2027-03-01"}})
    assert s == 201 and o["fields"] == {"due": "2027-03-01"}
    s, o = api.req("PATCH", f"/api/v1/orders/{o['id']}", {"fields": {"priority": "HIGH"}})
    assert s == 200 and o["fields"] == {"due": "2027-03-01", "priority": "high"}
    s, r = api.req("PATCH", f"/api/v1/orders/{o['id']}", {"fields": {"vat": "x"}})
    assert s == 400 and "fields.vat: no such field" in r["error"], "a customer's field is not an order's"


@pytest.mark.parametrize("body,words", [
    ({"entity": "invoice", "key": "a", "label": "A", "type": "text"}, "entity"),
    ({"entity": "customer", "key": "Bad Key", "label": "A", "type": "text"}, "key"),
    ({"entity": "customer", "key": "name", "label": "A", "type": "text"}, "built-in"),
    ({"entity": "order", "key": "amount", "label": "A", "type": "text"}, "built-in"),
    ({"entity": "customer", "key": "a", "label": "", "type": "text"}, "label"),
    ({"entity": "customer", "key": "a", "label": "A", "type": "colour"}, "type"),
    ({"entity": "customer", "key": "a", "label": "A", "type": "choice"}, "options"),
    ({"entity": "customer", "key": "a", "label": "A", "type": "choice", "options": ["x", "X"]}, "options"),
    ({"entity": "customer", "key": "a", "label": "A", "type": "text", "options": ["x"]}, "options"),
    ({"entity": "customer", "key": "a", "label": "A", "type": "text", "required": "yes"}, "required"),
    ({"entity": "customer", "key": "a", "label": "A"}, "type: required"),
])
def test_bad_definitions(api, body, words):
    s, r = api.req("POST", "/api/v1/fields", body, token="admin")
    assert s == 400 and words in r["error"], r
    assert CustomField.select().count() == 0


def test_only_an_admin_defines_and_removes(api):
    assert define(api, "customer", "contract", "text", token="op")[0] == 403
    s, f = define(api, "customer", "contract", "text")
    assert define(api, "customer", "contract", "number")[0] == 409
    assert api.req("PATCH", f"/api/v1/fields/{f['id']}", {"label": "Contract no."})[0] == 403
    s, f2 = api.req("PATCH", f"/api/v1/fields/{f['id']}", {"label": "Contract no.", "position": 5}, token="admin")
    assert s == 200 and f2["label"] == "Contract no." and f2["type"] == "text" and f2["position"] == 5
    assert api.req("PATCH", f"/api/v1/fields/{f['id']}", {"type": "number"}, token="admin")[0] == 400
    assert api.req("DELETE", f"/api/v1/fields/{f['id']}?confirm=contract")[0] == 403
    assert api.req("PATCH", "/api/v1/fields/999", {"label": "x"}, token="admin")[0] == 404


def test_search_finds_text_and_choice_values(every_kind):
    api = every_kind
    api.req("POST", "/api/v1/customers", {"name": "Zeta", "fields": {"contract": "Þjónustusamningur K-77",
                                                                    "tier": "Silver", "history": "haystack"}})
    api.req("POST", "/api/v1/customers", {"name": "Other", "fields": {"tier": "Bronze"}})

    def found(q: str) -> list[str]:
        s, r = api.req("GET", f"/api/v1/customers?q={urllib.parse.quote(q)}")
        assert s == 200
        return [c["name"] for c in r["customers"]]

    assert found("thjonustu") == ["Zeta"], "text fields, folded like the names"
    assert found("silver") == ["Zeta"] and found("bronze") == ["Other"], "choice fields"
    assert found("haystack") == [], "long text is not searched (as the note is not)"
    zeta = Customer.get(Customer.name == "Zeta")
    api.req("PATCH", f"/api/v1/customers/{zeta.id}", {"fields": {"tier": "Gold"}})
    assert found("silver") == [] and found("gold") == ["Zeta"], "the index follows an edit"


def test_removing_a_field_takes_its_values_after_a_confirmation(every_kind):
    api = every_kind
    ids = [api.req("POST", "/api/v1/customers", {"name": f"C{i}", "fields": {"tier": "Gold", "contract": f"K{i}"}})[1]["id"]
           for i in range(3)]
    tier = next(f for f in api.req("GET", "/api/v1/fields")[1]["fields"] if f["key"] == "tier")
    s, r = api.req("DELETE", f"/api/v1/fields/{tier['id']}", token="admin")
    assert s == 409 and r["values"] == 3 and "confirm" in r["error"]
    assert api.req("DELETE", f"/api/v1/fields/{tier['id']}?confirm=contract", token="admin")[0] == 409
    assert api.req("GET", f"/api/v1/customers/{ids[0]}")[1]["fields"]["tier"] == "Gold", "nothing removed yet"
    s, r = api.req("DELETE", f"/api/v1/fields/{tier['id']}?confirm=tier", token="admin")
    assert s == 200 and r == {"removed_values": 3}
    for cid in ids:
        assert api.req("GET", f"/api/v1/customers/{cid}")[1]["fields"].keys() == {"contract"}
    s, r = api.req("GET", "/api/v1/customers?q=gold")
    assert r["customers"] == [], "the search no longer finds the removed values"
    assert define(api, "customer", "tier", "text")[0] == 201, "the key is free again, with no old values"
    assert "tier" not in api.req("GET", f"/api/v1/customers/{ids[0]}")[1]["fields"]


def test_the_card_carries_the_values_and_the_categorys_flag(every_kind):
    api = every_kind
    assert define(api, "order", "due", "date")[0] == 201
    s, c = api.req("POST", "/api/v1/customers", {"name": "Acme", "category": "vip",
                                                 "fields": {"contract": HOSTILE, "newsletter": "yes", "tier": "Gold"}})
    api.req("POST", f"/api/v1/customers/{c['id']}/orders", {"number": "A-1", "amount": "10.00",
                                                            "fields": {"due": "2027-03-01"}})
    pop = PopRow(id=1, uuid="u1", extension="1001", event="ringing", direction="INCOMING", number="+3545551234",
                 name="", customer_id=c["id"], matches=1, at=dt.datetime(2026, 11, 26, 12, 0))
    card = api.hub.worker.run(api.hub.cards.card, pop)["customer"]
    assert card["category_flag"] == "\u2605 VIP" and card["category_colour"] == "#ca8a04"
    assert card["fields"] == [
        {"key": "contract", "label": "Contract", "type": "text", "value": HOSTILE, "text": HOSTILE},
        {"key": "tier", "label": "Tier", "type": "choice", "value": "Gold", "text": "Gold"},
        {"key": "newsletter", "label": "Newsletter", "type": "yesno", "value": "yes", "text": "Yes"},
    ]
    assert card["orders"][0]["fields"] == [{"key": "due", "label": "Due", "type": "date", "value": "2027-03-01",
                                            "text": "2027-03-01"}]


def test_categories_edit_use_and_delete(api):
    s, r = api.req("GET", "/api/v1/categories")
    assert [(c["name"], c["flag"], c["default"]) for c in r["categories"]] == [
        ("regular", "", True), ("vip", "\u2605 VIP", False), ("problem", "\u26a0 PROBLEM", False)]
    assert api.req("POST", "/api/v1/categories", {"name": "partner", "colour": "#0d9488"})[0] == 403
    for bad, words in (({"name": "Par tner", "colour": "#0d9488"}, "name"), ({"name": "partner", "colour": "red"}, "colour"),
                       ({"name": "partner"}, "colour"), ({"name": "partner", "colour": "#0d9488", "flag": "x\ny"}, "flag"),
                       ({"name": "vip", "colour": "#0d9488"}, "exists")):
        s, r = api.req("POST", "/api/v1/categories", bad, token="admin")
        assert s in (400, 409) and words in r["error"], (bad, r)
    s, r = api.req("POST", "/api/v1/categories", {"name": "Partner", "colour": "#0D9488", "flag": "\u25c6 Partner"},
                   token="admin")
    assert s == 201 and r == {"name": "partner", "colour": "#0d9488", "flag": "\u25c6 Partner", "position": 3,
                              "default": False}
    # the list is what a customer's category is checked against, in the API (and the pages and CSV: the same rule)
    s, c = api.req("POST", "/api/v1/customers", {"name": "A", "category": "PARTNER"})
    assert s == 201 and c["category"] == "partner"
    s, r = api.req("POST", "/api/v1/customers", {"name": "B", "category": "gold"})
    assert s == 400 and r["error"].startswith("category: ") and "partner" in r["error"]
    s, d = api.req("POST", "/api/v1/customers", {"name": "D"})
    assert d["category"] == "regular", "the default"
    # rename: the customers move with it; a new default
    s, r = api.req("PATCH", "/api/v1/categories/partner", {"name": "reseller", "default": True}, token="admin")
    assert s == 200 and r["name"] == "reseller" and r["default"] is True
    assert api.req("GET", f"/api/v1/customers/{c['id']}")[1]["category"] == "reseller"
    assert api.req("POST", "/api/v1/customers", {"name": "E"})[1]["category"] == "reseller"
    # delete: the default cannot go; one in use is refused unless its customers move to another chosen one
    s, r = api.req("DELETE", "/api/v1/categories/reseller", token="admin")
    assert s == 409 and "default" in r["error"]
    api.req("PATCH", "/api/v1/categories/regular", {"default": True}, token="admin")
    s, r = api.req("DELETE", "/api/v1/categories/reseller", token="admin")
    assert s == 409 and r["customers"] == 2 and "move" in r["error"]
    for target in ("reseller", "nosuch"):
        assert api.req("DELETE", f"/api/v1/categories/reseller?move_to={target}", token="admin")[0] == 400
    s, r = api.req("DELETE", "/api/v1/categories/reseller?move_to=vip", token="admin")
    assert s == 200 and r == {"moved_customers": 2}
    assert api.req("GET", f"/api/v1/customers/{c['id']}")[1]["category"] == "vip"
    s, r = api.req("DELETE", "/api/v1/categories/problem", token="admin")
    assert s == 200 and r == {"moved_customers": 0}
    assert [c["name"] for c in api.req("GET", "/api/v1/categories")[1]["categories"]] == ["regular", "vip"]
    assert api.req("DELETE", "/api/v1/categories/nosuch", token="admin")[0] == 404
