"""Card layouts and teams through the JSON API (docs/card.md, "Layouts"), on SQLite and PostgreSQL: stored, checked
(unknown keys named in a 400), chosen per team's extension by the card builder at once after a change, and the
built-in layout for everyone else."""
from __future__ import annotations

import datetime as dt

from screenpop.daemon.record.pops import PopRow

SALES = [{"field": "customer.tier", "style": "warning"}, {"field": "total_debt", "style": "strong"},
         {"field": "order.due"}, {"field": "operator"}]


def lines(api, extension: str, customer_id: int) -> list[tuple[str, str]]:
    """The (text, style) lines of a ringing pop of the customer for extension, as the hub builds it now."""
    pop = PopRow(id=1, uuid="u1", extension=extension, event="ringing", direction="INCOMING", number="+3545551234",
                 name="", customer_id=customer_id, matches=1, at=dt.datetime(2026, 11, 26, 12, 0))
    return [(x["text"], x["style"]) for x in api.hub.worker.run(api.hub.cards.card, pop)["lines"]]


def test_a_teams_layout_is_stored_checked_and_used_for_its_extensions_only(api):
    s, r = api.req("GET", "/api/v1/layouts")
    assert s == 200 and [x["name"] for x in r["layouts"]] == ["default"] and r["layouts"][0]["built_in"] is True
    assert r["layouts"][0]["items"][0] == {"field": "note", "style": "warning"} and r["teams"] == []
    assert api.req("POST", "/api/v1/fields", {"entity": "customer", "key": "tier", "label": "Tier <b>", "type": "choice",
                                              "options": ["Gold", "Silver"]}, token="admin")[0] == 201
    assert api.req("POST", "/api/v1/fields", {"entity": "order", "key": "due", "label": "Due", "type": "date"},
                   token="admin")[0] == 201
    s, c = api.req("POST", "/api/v1/customers", {"name": "Jón", "company": "Acme", "note": "Cash only",
                                                 "fields": {"tier": "Gold"}, "phones": ["+3545551234"]})
    assert s == 201, c
    api.req("POST", f"/api/v1/customers/{c['id']}/orders", {"number": "A-1", "amount": "10.00",
                                                            "fields": {"due": "2027-03-01"}})
    before, other = lines(api, "1002", c["id"]), lines(api, "1001", c["id"])
    assert before[0] == ("Cash only", "warning") and ("Debt $10.00", "strong") in before, "the built-in layout"

    assert api.req("PUT", "/api/v1/layouts/sales", {"items": SALES})[0] == 403, "an operator cannot"
    s, r = api.req("PUT", "/api/v1/layouts/sales", {"items": SALES}, token="admin")
    assert s == 201 and r["items"][1] == {"field": "total_debt", "style": "strong"} and r["teams"] == []
    s, r = api.req("PUT", "/api/v1/teams/sales", {"layout": "sales", "extensions": ["1002", " 1003 "]}, token="admin")
    assert s == 201 and r == {"name": "sales", "layout": "sales", "extensions": ["1002", "1003"]}
    # the next card of a team's extension has the team's layout at once (this daemon read it again); warnings first
    assert lines(api, "1002", c["id"]) == [("Tier <b>: Gold", "warning"), ("Debt $10.00", "strong"),
                                           ("A-1 Due: 2027-03-01", "plain"), ("Operator 1002", "plain")]
    assert lines(api, "1001", c["id"]) == other, "an extension in no team keeps the default"
    # the default layout is the admin's too once saved; deleting it brings the built-in one back
    assert api.req("PUT", "/api/v1/layouts/default", {"items": [{"field": "place"}]}, token="admin")[0] == 201
    assert lines(api, "1001", c["id"]) == []  # the customer has no city or country
    assert api.req("DELETE", "/api/v1/layouts/default", token="admin")[0] == 204
    assert lines(api, "1001", c["id"]) == other
    s, r = api.req("GET", "/api/v1/layouts")
    assert [(x["name"], x["teams"]) for x in r["layouts"]] == [("default", []), ("sales", ["sales"])]
    assert {"customer.tier", "order.due", "note", "operator"} <= set(r["keys"])
    # a layout a team uses cannot go; the team can, and its extensions are back on the default
    s, r = api.req("DELETE", "/api/v1/layouts/sales", token="admin")
    assert s == 409 and r["teams"] == ["sales"]
    assert api.req("DELETE", "/api/v1/teams/sales", token="admin")[0] == 204
    assert lines(api, "1002", c["id"]) == before
    assert api.req("DELETE", "/api/v1/layouts/sales", token="admin")[0] == 204
    assert api.req("DELETE", "/api/v1/layouts/sales", token="admin")[0] == 404
    assert api.req("GET", "/api/v1/teams")[1] == {"teams": []}


def test_unknown_keys_and_bad_input_are_a_clear_400(api):
    s, r = api.req("PUT", "/api/v1/layouts/x", {"items": [{"field": "note"}, {"field": "customer.nosuch"},
                                                          {"field": "<script>"}, {"field": "source.erp"}]}, token="admin")
    assert s == 400 and r["error"] == "items: unknown field(s): 'customer.nosuch', '<script>', 'source.erp'", r
    assert r["unknown"] == ["customer.nosuch", "<script>", "source.erp"] and "note" in r["known"]
    for body, words in (({"items": "note"}, "must be a list"), ({"items": [{"field": "note", "style": "blink"}]}, "style"),
                        ({"items": [{"field": "note"}, {"field": "note"}]}, "listed twice: 'note'"),
                        ({"items": [{"field": "note", "colour": "red"}]}, "unknown member"),
                        ({"items": [{"style": "plain"}]}, "needs a field"), ({}, "items: required"),
                        ({"items": [{"field": f"f{i}"} for i in range(41)]}, "at most 40"),
                        ({"items": [], "name": "x"}, "name")):
        s, r = api.req("PUT", "/api/v1/layouts/x", body, token="admin")
        assert s == 400 and words in r["error"], (body, r)
    s, r = api.req("PUT", "/api/v1/layouts/bad%20name", {"items": []}, token="admin")
    assert s == 400 and r["error"].startswith("name: ")
    assert api.req("PUT", "/api/v1/layouts/x", {"items": []}, token="admin")[0] == 201
    for body, words in (({"layout": "nosuch", "extensions": []}, "no layout 'nosuch'"),
                        ({"layout": "x"}, "extensions: required"),
                        ({"layout": "x", "extensions": ["10 01"]}, "extensions: "),
                        ({"layout": "x", "extensions": "1001"}, "must be a list")):
        s, r = api.req("PUT", "/api/v1/teams/t1", body, token="admin")
        assert s == 400 and words in r["error"], (body, r)
    assert api.req("PUT", "/api/v1/teams/t1", {"layout": "x", "extensions": ["1001"]}, token="admin")[0] == 201
    s, r = api.req("PUT", "/api/v1/teams/t2", {"layout": "x", "extensions": ["1002", "1001"]}, token="admin")
    assert s == 409 and r["error"] == "extensions: 1001 is in team t1"
    assert api.req("PUT", "/api/v1/teams/t1", {"layout": "x", "extensions": ["1001", "1004"]}, token="admin")[0] == 200
    assert api.req("DELETE", "/api/v1/teams/nosuch", token="admin")[0] == 404
