"""Reading web forms and query strings into what daemon/customers/data.py checks (strings in, DataError out)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import request

from screenpop.daemon.customers.data import DataError, in_period_range
from screenpop.daemon.i18n import lazy_gettext
from screenpop.daemon.reports.analytics import utc_bound

PAGE_MAX = 100_000
_UUID = re.compile(r"[0-9A-Za-z-]{1,64}")


def pick(keys: Any) -> dict[str, str]:
    """The form's values for keys that it has."""
    return {k: request.form[k] for k in keys if k in request.form}


def custom_values() -> dict[str, str]:
    """The custom field inputs of the form (named field.<key>) as {key: value}; checked when stored."""
    return {k[6:]: v for k, v in request.form.items() if k.startswith("field.")}


def page(name: str = "page") -> int:
    """A 1-based page number from the query string; anything else is page 1."""
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and 1 <= len(raw) <= 6 and 1 <= int(raw) <= PAGE_MAX else 1


def row_id(name: str) -> int | None:
    """A row id from the query string (e.g. the call a page of calls continues after), or None."""
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and 1 <= len(raw) <= 12 else None


def day(name: str) -> dt.date | None:
    """A date (2026-01-31) from the query string, None when absent; DataError 400 for anything else, or out of range."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise DataError(400, lazy_gettext("%(name)s: a date like 2026-01-31", name=name)) from None
    in_period_range(value, name)
    return value


def days(zone: dt.tzinfo) -> tuple[dt.datetime | None, dt.datetime | None]:
    """since / until from the query string, days in zone (both included), as naive UTC bounds [since, until)."""
    since, until = day("since"), day("until")
    return (utc_bound(dt.datetime.combine(since, dt.time()), zone) if since else None,
            utc_bound(dt.datetime.combine(until + dt.timedelta(days=1), dt.time()), zone) if until else None)


def call_uuid(value: Any) -> str | None:
    """A call's a-leg UUID as a link carries it, or None when absent or not UUID-shaped."""
    return value if isinstance(value, str) and _UUID.fullmatch(value) else None


def known_call_uuid(value: Any) -> str:
    """A call's UUID from a path: 404 when it is not UUID-shaped (no call can have it)."""
    uuid = call_uuid(value)
    if uuid is None:
        raise DataError(404, lazy_gettext("there is no call with this uuid"))
    return uuid


def money(value: str) -> str:
    """An amount as typed ("1 250,50" or "1250.50") in the API's form ("1250.50"); checked later by customers/data.py."""
    value = value.strip().replace(" ", "").replace("\u00a0", "")
    return value.replace(",", ".") if "." not in value else value


def employee_id(value: str, key: str) -> int | None:
    """An employee picked in a select: "" is nobody."""
    value = value.strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise DataError(400, lazy_gettext("%(key)s: pick an employee from the list", key=key))
    return int(value)
