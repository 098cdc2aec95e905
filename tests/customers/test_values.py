"""One rule for each piece of data (daemon/customers/values.py): the JSON API, the web pages and the CSV importer accept and
refuse the same values, and store them the same way (issue 14: the importer stored an amount of -50 and a
category VIP that the API and the pages refused)."""
from __future__ import annotations

from contextlib import closing
from decimal import Decimal

import pytest


from screenpop.daemon.auth import tokens
from screenpop.daemon.customers.importer import import_customers, import_employees, import_orders
from screenpop.db.models import Customer, Employee, Order

from support import HubApp, RULES, post_form, signed_in



class Ways(HubApp):
    """The three ways a value gets in: the API, the pages (an admin's browser) and a CSV file."""

    def __init__(self, db, tmp_path) -> None:
        super().__init__(db, tmp_path / "photos")
        self.token = tokens.create(None, role="admin")[1]
        self.api = self.app.test_client()
        self.browser = signed_in(self.app, self.token)
        self.tmp = tmp_path
        self.files = 0

    def call(self, method: str, path: str, body: dict) -> int:
        return self.api.open(path, method=method, json=body, headers={"Authorization": f"Bearer {self.token}"}).status_code

    def csv(self, importer, text: str, *args) -> bool:
        """Import one file; True when its row went in."""
        self.files += 1
        path = self.tmp / f"{self.files}.csv"
        path.write_text(text, encoding="utf-8")
        return importer(path, *args).errors == []


@pytest.fixture
def ways(db, tmp_path):
    with closing(Ways(db, tmp_path)) as w:
        yield w


@pytest.mark.parametrize("value, stored", [
    ("100", Decimal("100.00")), ("1250.5", Decimal("1250.50")), ("0", Decimal("0.00")),
    ("999999999999.99", Decimal("999999999999.99")),
    ("-50", None), ("+50", None), ("1.234", None), ("1e5", None), ("1000000000000", None), ("5O", None),
])
def test_an_order_amount_is_taken_or_refused_alike(ways, value, stored):
    customer = Customer.create(name="Acme", external_id="C1")
    api = ways.call("POST", f"/api/v1/customers/{customer.id}/orders", {"number": "api", "amount": value})
    page = post_form(ways.browser, f"/customers/{customer.id}/orders", {"number": "page", "amount": value}).status_code
    csv = ways.csv(import_orders, f"number,customer,amount\ncsv,C1,{value}\n")
    assert (api, page, csv) == ((201, 303, True) if stored is not None else (400, 400, False))
    amounts = {o.number: Decimal(str(o.amount)).quantize(Decimal("0.01")) for o in Order.select()}
    assert amounts == ({"api": stored, "page": stored, "csv": stored} if stored is not None else {})


@pytest.mark.parametrize("value, stored", [
    ("vip", "vip"), ("VIP", "vip"), ("Problem", "problem"), ("regular", "regular"), ("gold", None), ("vip!", None),
])
def test_a_category_is_taken_in_any_case_and_stored_lower_case(ways, value, stored):
    customer = Customer.create(name="Acme")
    api = ways.call("PATCH", f"/api/v1/customers/{customer.id}", {"category": value})
    after_api = Customer.get_by_id(customer.id).category
    Customer.update(category="regular").execute()
    page = post_form(ways.browser, f"/customers/{customer.id}/edit", {"name": "Acme", "category": value}).status_code
    after_page = Customer.get_by_id(customer.id).category
    csv = ways.csv(import_customers, f"external_id,name,category\nC1,Csv,{value}\n", RULES)
    after_csv = Customer.get_or_none(Customer.external_id == "C1")
    if stored is None:
        assert (api, page, csv, after_api, after_page, after_csv) == (400, 400, False, "regular", "regular", None)
    else:
        assert (api, page, csv) == (200, 303, True)
        assert (after_api, after_page, after_csv.category) == (stored, stored, stored)


@pytest.mark.parametrize("length, taken", [(10_000, True), (10_001, False)])
def test_a_note_has_one_length_limit(ways, length, taken):
    customer = Customer.create(name="Acme")
    note = "n" * length
    api = ways.call("PATCH", f"/api/v1/customers/{customer.id}", {"note": note})
    page = post_form(ways.browser, f"/customers/{customer.id}/edit", {"name": "Acme", "note": note}).status_code
    csv = ways.csv(import_customers, f"external_id,name,note\nC1,Csv,{note}\n", RULES)
    assert (api, page, csv) == ((200, 303, True) if taken else (400, 400, False))


@pytest.mark.parametrize("value, taken", [("1001", True), ("*9#", True), ("10 01", False), ("1" * 33, False)])
def test_an_extension_has_one_rule(ways, value, taken):
    api = ways.call("POST", "/api/v1/employees", {"name": "Api", "extension": value})
    Employee.delete().execute()
    page = post_form(ways.browser, "/employees", {"name": "Page", "extension": value}).status_code
    Employee.delete().execute()
    csv = ways.csv(import_employees, f"extension,name\n{value},Csv\n")
    assert (api, page, csv) == ((201, 303, True) if taken else (400, 400, False))


@pytest.mark.parametrize("caller_id, prefill", [
    ("+3545550199", ""), ("5550199", ""), ("+354 555-0199", ""), ("anonymous", ""), ("Anonymous", ""),
    ("unknown", ""), ("UNKNOWN", ""), ("", ""), (None, ""), ("   ", ""),
    ("Jón Jónsson", "Jón Jónsson"), (" Acme ehf ", "Acme ehf"), ("3M Iceland", "3M Iceland"),
])
def test_caller_name_is_never_a_number_or_withheld(caller_id, prefill):
    """Issue 16: the new-caller form pre-filled Name with the caller ID, often the number itself or "anonymous"."""
    from screenpop.daemon.customers.values import caller_name

    assert caller_name(caller_id) == prefill
