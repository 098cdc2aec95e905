"""The rules for stored values, one home each: the JSON API and the web pages (daemon/customers/data.py) and the CSV
importer (daemon/customers/importer.py) check with these, so a value one of them accepts the others accept.

Each check takes the value as text and returns it as stored, or raises ValueError saying what is wrong (without
the field's name: each caller adds it in its own form, an HTTP 400 or an import row's error).
"""
from __future__ import annotations

import re
from decimal import Decimal

from screenpop.db.models import CATEGORIES, Customer, Employee, Order
from screenpop.db.numbers import WITHHELD

MAX_NOTE = 10_000
MAX_AMOUNT = Decimal("999999999999.99")
_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
_EXTENSION = re.compile(r"[0-9A-Za-z*#+_.-]+")

# The longest text each free-text column takes: the column's own size, and a note's
MAX_CHARS = {
    "customer": {"external_id": Customer.external_id.max_length, "name": Customer.name.max_length,
                 "company": Customer.company.max_length, "city": Customer.city.max_length,
                 "country": Customer.country.max_length, "note": MAX_NOTE},
    "order": {"number": Order.number.max_length, "title": Order.title.max_length, "stage": Order.stage.max_length},
    "employee": {"name": Employee.name.max_length, "extension": Employee.extension.max_length},
}


def amount(text: str) -> Decimal:
    """A money amount such as "1250.50": never negative, at most 2 decimals and 12 digits before the point."""
    if not _AMOUNT.fullmatch(text):
        raise ValueError(f'{text[:30]!r} is not an amount such as "1250.50" (no sign, at most 2 decimals)')
    value = Decimal(text)
    if value > MAX_AMOUNT:
        raise ValueError(f"{text[:30]!r} is too large")
    return value.quantize(Decimal("0.01"))


def category(text: str) -> str:
    """A customer category, in any case; stored lower case."""
    value = text.strip().lower()
    if value not in CATEGORIES:
        raise ValueError(f"{text[:30]!r} is not one of {', '.join(CATEGORIES)}")
    return value


def extension(text: str) -> str:
    """An employee's extension: letters, digits and * # + _ . -, at most the column's length."""
    if not _EXTENSION.fullmatch(text) or len(text) > MAX_CHARS["employee"]["extension"]:
        raise ValueError(f"{text[:40]!r} is empty, too long or has characters other than letters, digits, * # + _ . -")
    return text


def caller_name(text: str | None) -> str:
    """The caller-ID name if it can be a person's or company's name, else "": a number ("+3545550199"), a withheld
    marker ("anonymous", "unknown") or nothing is not a name, so forms never pre-fill one with it."""
    name = (text or "").strip()
    if name.lower() in WITHHELD or not any(c.isalpha() for c in name):
        return ""
    return name
