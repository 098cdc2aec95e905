"""Every report by name (docs/analytics.md), and any of them side by side with another period: the previous
period of the same length, or the same dates a year before.

The command (`screenpop report`), the dashboard and the CSV downloads read reports only through here.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from screenpop.daemon.i18n import lazy_gettext
from screenpop.daemon.reports import analytics, conversation, service
from screenpop.daemon.reports.analytics import Period

RUNNERS: dict[str, Callable[[Period], list[dict]]] = {
    "employees": analytics.employees,
    "customers": analytics.customers,
    "categories": analytics.categories,
    "missed": analytics.missed,
    "load": analytics.load,
    "daily": analytics.daily,
    "service": service.service,
    "numbers": service.numbers,
    "queues": service.queues,
    "peaks": service.peaks,
    "unknown_callers": service.unknown_callers,
    "conversation_employees": conversation.employees,
    "conversation_customers": conversation.customers,
    "alerts": conversation.alerts,
}
REPORTS = tuple(RUNNERS)

# what a row is matched on in the other period; daily and peaks: the n-th day (hour) of each period
KEYS: dict[str, tuple[str, ...]] = {
    "employees": ("extension",),
    "customers": ("customer_id",),
    "categories": ("category",),
    "load": ("weekday", "hour"),
    "daily": (),
    "service": ("number",),
    "numbers": ("number",),
    "queues": ("queue",),
    "peaks": (),
    "unknown_callers": ("number",),
    "conversation_employees": ("extension",),
    "conversation_customers": ("customer_id",),
}
COMPARABLE = tuple(KEYS)  # the missed list and the alerts are calls, not figures: nothing to compare
COMPARE = {"previous": "previous", "year": "last_year"}  # --compare value -> the compared columns' suffix


def other_period(period: Period, mode: str) -> Period:
    """The period to compare with: 'previous' (as long, just before) or 'year' (the same local dates a year before)."""
    if period.since is None or period.until is None:
        raise ValueError(lazy_gettext("a comparison needs a period with both ends"))
    if mode == "previous":
        length = period.until - period.since
        return dataclasses.replace(period, since=period.since - length, until=period.since)
    if mode == "year":
        since, until = (analytics.to_local(b, period.zone) for b in (period.since, period.until))
        return dataclasses.replace(period, since=_year_before(since, period.zone), until=_year_before(until, period.zone))
    raise ValueError(lazy_gettext("compare: %(mode)r is not one of %(modes)s", mode=mode, modes=', '.join(COMPARE)))


def _year_before(local: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The same local wall-clock time a year before (29 February becomes the 28th), as naive UTC."""
    naive = local.replace(tzinfo=None)
    try:
        earlier = naive.replace(year=naive.year - 1)
    except ValueError:
        earlier = naive.replace(year=naive.year - 1, day=28)
    return analytics.utc_bound(earlier, zone)


def side_by_side(name: str, rows: list[dict], other: list[dict], suffix: str) -> list[dict]:
    """rows with each figure of the matching row of the other period beside it (figure_<suffix>); rows found only
    in the other period are added after, their own figures empty."""
    keys = KEYS[name]

    def key(i: int, row: dict) -> tuple:
        return tuple(row[k] for k in keys) if keys else (i,)

    figures = [k for k in (rows or other or [{}])[0] if k not in keys and _is_figure(rows + other, k)]
    theirs = {key(i, row): row for i, row in enumerate(other)}
    out = []
    for i, row in enumerate(rows):
        match = theirs.pop(key(i, row), {})
        out.append(_beside(row, match, figures, suffix))
    for row in theirs.values():
        mine = {k: (row[k] if k in keys else None) for k in row}
        out.append(_beside(mine, row, figures, suffix))
    return out


def _is_figure(rows: list[dict], column: str) -> bool:
    """A column is a figure to compare when its values are numbers (not names, dates or lists)."""
    values = [r.get(column) for r in rows if r.get(column) is not None]
    return bool(values) and all(isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) for v in values)


def _beside(row: dict, match: dict, figures: list[str], suffix: str) -> dict:
    out = {}
    for k, v in row.items():
        out[k] = v
        if k in figures:
            out[f"{k}_{suffix}"] = match.get(k)
    return out


def run(name: str, period: Period, compare: str | None = None) -> list[dict]:
    """The report's rows, with the other period's figures beside them when compare names one (COMPARE)."""
    if not compare:
        return RUNNERS[name](period)
    if name not in COMPARABLE:
        raise ValueError(lazy_gettext("the %(name)s report lists calls, not figures: it has no comparison", name=name))
    other = other_period(period, compare)
    return side_by_side(name, RUNNERS[name](period), RUNNERS[name](other), COMPARE[compare])
