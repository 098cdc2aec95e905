"""The rules for stored values, one home each: the JSON API and the web pages (daemon/customers/data.py) and the CSV
importer (daemon/customers/importer.py) check with these, so a value one of them accepts the others accept.

Each check takes the value as text and returns it as stored, or raises ValueError saying what is wrong (without
the field's name: each caller adds it in its own form, an HTTP 400 or an import row's error).

Custom fields (docs/customfields.md) follow the same pattern: ``field_value`` checks a value by its field's kind,
and the definitions themselves (key, label, kind, options) and the category list's entries (name, colour, flag)
are checked here too.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Sequence
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from screenpop.daemon.i18n import lazy_gettext
from screenpop.db.models import FIELD_KINDS, Customer, Employee, Order
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
        raise ValueError(lazy_gettext('%(text)r is not an amount such as "1250.50" (no sign, at most 2 decimals)',
                                      text=text[:30]))
    value = Decimal(text)
    if value > MAX_AMOUNT:
        raise ValueError(lazy_gettext("%(text)r is too large", text=text[:30]))
    return value.quantize(Decimal("0.01"))


def category(text: str, names: Collection[str]) -> str:
    """A customer category from the admin's list (names), in any case; stored lower case."""
    value = text.strip().lower()
    if value not in names:
        raise ValueError(lazy_gettext("%(text)r is not one of %(names)s", text=text[:30], names=', '.join(names)))
    return value


# ---- the category list's entries ----------------------------------------------------------------------

_CATEGORY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")
_COLOUR = re.compile(r"#[0-9a-f]{6}")
MAX_FLAG = 40


def category_name(text: str) -> str:
    """A category's name as customers store it: 1-16 of a-z, 0-9, _ and - (any case typed; stored lower case)."""
    value = text.strip().lower()
    if not _CATEGORY_NAME.fullmatch(value):
        raise ValueError(lazy_gettext("%(text)r is not 1-16 letters a-z, digits, _ or - (starting with a letter or "
                                      "digit)", text=text[:30]))
    return value


def colour(text: str) -> str:
    """A colour as #rrggbb (the pages' CSS and the tray use it as it is)."""
    value = text.strip().lower()
    if not _COLOUR.fullmatch(value):
        raise ValueError(lazy_gettext("%(text)r is not a colour such as #ca8a04", text=text[:30]))
    return value


def flag(text: str) -> str:
    """The flag a category puts on the pop ("★ VIP"): one line of at most MAX_FLAG characters; "" for none."""
    value = text.strip()
    if len(value) > MAX_FLAG or any(c in value for c in "\r\n\x00"):
        raise ValueError(lazy_gettext("must be one line of at most %(max)s characters", max=MAX_FLAG))
    return value


# ---- custom fields -------------------------------------------------------------------------------------

_FIELD_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_NUMBER = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,6})?")
MAX_LABEL = 100
MAX_TEXT = 300  # a text field's value, a link, a choice's option
MAX_LINK = 2000
MAX_OPTIONS = 100
YES, NO = ("yes", "true", "1", "on", "y"), ("no", "false", "0", "off", "n")


def field_key(text: str, reserved: Collection[str]) -> str:
    """A custom field's key (its CSV column and its name in the API): a-z, 0-9 and _, starting with a letter, at
    most 40, not one of the record's own columns (reserved)."""
    if not _FIELD_KEY.fullmatch(text):
        raise ValueError(lazy_gettext("%(text)r is not 1-40 of a-z, 0-9 and _ starting with a letter", text=text[:50]))
    if text in reserved:
        raise ValueError(lazy_gettext("%(text)r is a built-in column; choose another key", text=text))
    return text


def field_label(text: str) -> str:
    """What the pages and the card call a field: one line, 1-100 characters."""
    value = text.strip()
    if not value or len(value) > MAX_LABEL or any(c in value for c in "\r\n\x00"):
        raise ValueError(lazy_gettext("must be one line of 1-%(max)s characters", max=MAX_LABEL))
    return value


def field_kind(text: str) -> str:
    """One of FIELD_KINDS."""
    if text not in FIELD_KINDS:
        raise ValueError(lazy_gettext("%(text)r is not one of %(kinds)s", text=text[:30], kinds=', '.join(FIELD_KINDS)))
    return text


def choice_options(items: Sequence[str]) -> list[str]:
    """A choice field's options: 1-100 distinct lines of 1-300 characters, in the order given."""
    options = [item.strip() for item in items if item.strip()]
    if not 1 <= len(options) <= MAX_OPTIONS:
        raise ValueError(lazy_gettext("a choice needs 1-%(max)s options", max=MAX_OPTIONS))
    for option in options:
        if len(option) > MAX_TEXT or any(c in option for c in "\r\n\x00"):
            raise ValueError(lazy_gettext("option %(option)r... is longer than %(max)s characters or not one line",
                                          option=option[:30], max=MAX_TEXT))
    if len({o.lower() for o in options}) != len(options):
        raise ValueError(lazy_gettext("options must differ (case ignored)"))
    return options


def field_value(kind: str, text: str, options: Sequence[str] = ()) -> str:
    """A custom field's value as typed, as stored (text; "" is no value), checked by the field's kind."""
    value = text.strip() if kind != "longtext" else text
    if not value.strip():
        return ""
    if "\x00" in value:
        raise ValueError(lazy_gettext("must not contain NUL characters"))
    if kind == "text":
        if len(value) > MAX_TEXT or "\n" in value or "\r" in value:
            raise ValueError(lazy_gettext("must be one line of at most %(max)s characters", max=MAX_TEXT))
    elif kind == "longtext":
        if len(value) > MAX_NOTE:
            raise ValueError(lazy_gettext("at most %(max)s characters", max=MAX_NOTE))
    elif kind == "number":
        if not _NUMBER.fullmatch(value):
            raise ValueError(lazy_gettext("%(value)r is not a number such as 12 or -3.5 (a point, no thousands "
                                          "separators)", value=value[:30]))
        try:
            value = format(Decimal(value).normalize(), "f")
        except InvalidOperation:
            raise ValueError(lazy_gettext("%(value)r is not a number", value=value[:30])) from None
    elif kind == "money":
        value = str(amount(value))
    elif kind == "date":
        try:
            value = dt.date.fromisoformat(value).isoformat() if len(value) == 10 else ""
        except ValueError:
            value = ""
        if not value:
            raise ValueError(lazy_gettext("%(text)r is not a date such as 2026-01-31", text=text.strip()[:30]))
    elif kind == "choice":
        match = next((o for o in options if o.lower() == value.lower()), None)
        if match is None:
            raise ValueError(lazy_gettext("%(value)r is not one of %(options)s",
                                          value=value[:30], options=', '.join(options)))
        value = match
    elif kind == "yesno":
        if value.lower() not in YES + NO:
            raise ValueError(lazy_gettext("%(value)r is not yes or no", value=value[:30]))
        value = "yes" if value.lower() in YES else "no"
    elif kind == "link":
        parts = urlsplit(value)
        if (parts.scheme not in ("http", "https") or not parts.netloc or len(value) > MAX_LINK
                or any(c.isspace() or ord(c) < 32 for c in value)):
            raise ValueError(lazy_gettext("%(value)r is not a web address starting with http:// or https://",
                                          value=value[:40]))
    else:
        raise ValueError(lazy_gettext("unknown kind %(kind)r", kind=kind))
    return value


def extension(text: str) -> str:
    """An employee's extension: letters, digits and * # + _ . -, at most the column's length."""
    if not _EXTENSION.fullmatch(text) or len(text) > MAX_CHARS["employee"]["extension"]:
        raise ValueError(lazy_gettext("%(text)r is empty, too long or has characters other than letters, digits, * # "
                                      "+ _ . -", text=text[:40]))
    return text


def caller_name(text: str | None) -> str:
    """The caller-ID name if it can be a person's or company's name, else "": a number ("+3545550199"), a withheld
    marker ("anonymous", "unknown") or nothing is not a name, so forms never pre-fill one with it."""
    name = (text or "").strip()
    if name.lower() in WITHHELD or not any(c.isalpha() for c in name):
        return ""
    return name
