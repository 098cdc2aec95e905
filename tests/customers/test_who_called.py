"""Who called, on every view: the card, the record page, the calls list, the missed list and the reports give the
one answer daemon/customers/lookup.py found when the call came in (issue 14), after a real call through the daemon over TCP."""
from __future__ import annotations


from screenpop.daemon.customers.photos import Photos
from screenpop.daemon.push.card import CardBuilder
from screenpop.daemon.push.layout import CardLayout
from screenpop.daemon.record.pops import POP_COLUMNS, PopRow
from screenpop.daemon.web.server import create_app

from screenpop.daemon.auth import tokens
from screenpop.daemon.customers.lookup import Lookup, add_phone
from screenpop.daemon.customers.record import customer_record
from screenpop.daemon.reports import analytics
from screenpop.db.models import Call, Customer

from support import RULES, replay, signed_in, staff, start_hub, stop_hub



def test_every_view_names_the_same_customers(tmp_path, db_url, db):
    """555 1234 (IS) is the number of two customers; two others abroad share its last digits and are never named.
    The card said "2 customers share this number" while the calls list said "unknown: add" and the missed list
    "unknown"; now each view reads what the call stored."""
    twins = [Customer.create(name=f"Twin {i}", company="Tvíburar") for i in (1, 2)]
    for twin in twins:
        add_phone(twin, "+3545551234", "mobile", RULES)
    for code in ("45", "47"):
        add_phone(Customer.create(name=f"Lookalike +{code}"), f"+{code} 4555 1234", "", RULES)
    replay(tmp_path, db_url, "inbound-missed")

    call = Call.get()
    assert (call.customer_id, call.matches) == (None, 2)
    pop = PopRow(*db.execute_sql(f"SELECT {POP_COLUMNS} FROM call_event WHERE event = 'missed'").fetchone())
    card = CardBuilder(db, lambda: Lookup(db, RULES), staff(), CardLayout()).card(pop)
    assert (card["matches"], card["customer"]) == (2, None)
    assert [c["id"] for c in card["candidates"]] == [twin.id for twin in twins]

    hub = start_hub(db, lambda: Lookup(db, RULES))
    try:
        browser = signed_in(create_app(hub, Photos(tmp_path / "photos"), heartbeat=1.0), tokens.create(None, role="admin")[1])
        day = call.started_at.date().isoformat()
        calls = browser.get("/calls").get_data(as_text=True)
        missed = browser.get(f"/missed?since={day}&until={day}").get_data(as_text=True)
    finally:
        stop_hub(hub)
    for page in (calls, missed):
        assert "2 customers share this number" in page and "Lookalike" not in page
    assert "unknown: add" not in calls and ">unknown<" not in missed
    assert all(customer_record(db, twin.id)["calls"] == [] for twin in twins), "no one twin's call"

    period = analytics.Period(None, None)
    (row,) = analytics.missed(period)
    assert (row["customer_id"], row["matches"]) == (None, 2)
    assert analytics.customers(period) == []
    assert {r["category"]: r["calls"] for r in analytics.categories(period)}["none"] == 1
