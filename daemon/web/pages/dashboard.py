"""The analytics pages (docs/analytics.md): /dashboard (figures and charts), /reports/<name>.csv (each report, and the calls, as spreadsheet-safe CSV).

A manager or admin may open them (the dashboard and reports capabilities, daemon/auth/roles.py; no session
redirects to /signin, an operator gets a 403 page saying why).
They are pages like the others: the base template with the menu and sign-out, the one stylesheet, the pages'
Content-Security-Policy (no scripts; the charts are data: images), every time in the call centre's zone.

Reports can take seconds on a large database, so they never run on the event loop or the database worker:
they run, with the charts, on one native thread of their own (SQLite and psycopg release the GIL while they work)
with its own database connection, closed after each job. A dashboard is kept for CACHE_SECONDS per period and
filters, so reloading it or paging between the pages costs nothing.

matplotlib is loaded with the first dashboard, in two steps (_Worker.load_charts): its core on the analytics thread,
then its font list on the main thread. Building the font list (no cache yet: a fresh install, or a home the daemon
cannot write) runs `fc-list`, and gevent can start and wait for a child process only on the main thread's loop.
"""
from __future__ import annotations

import base64
import datetime as dt
import importlib
import io
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import gevent.lock
from flask import Blueprint, Response, request

from screenpop.daemon.i18n import Formats, gettext as _, lazy_gettext, lazy_number
from screenpop.daemon.config import AnalyticsConfig
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.reports import analytics, catalog, service
from screenpop.daemon.reports.callrecords import call_records
from screenpop.daemon.reports.export import display, write_csv
from screenpop.daemon.web.pages import error_page, formats, forms, login_required, render_page
from screenpop.db.models import database

DEFAULT_DAYS = 7
MAX_DAYS = 3 * 366
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 32
TOP_CUSTOMERS = 20
TOP_UNKNOWN = 20
TOP_ALERTS = 20
MAX_CSV_CALLS = 100_000


class _Worker:
    """One native thread for analytics jobs, with a short-lived cache of their results."""

    def __init__(self) -> None:
        self._pool = None
        self._cache: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()
        self._loading = gevent.lock.Semaphore()

    def _thread(self):
        if self._pool is None:
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(1)
        return self._pool

    def run(self, fn: Callable, *args: Any) -> Any:
        """fn(*args) on the analytics thread, inside one read transaction; its own connection is closed afterwards."""
        return self._thread().apply(_job, (fn, args))

    def load_charts(self) -> None:
        """matplotlib ready for the charts: numpy and its core imported on the analytics thread (the slow part, off
        the event loop), then its font list on the main thread, where the `fc-list` it may run can be waited for."""
        if "matplotlib.font_manager" in sys.modules:
            return
        with self._loading:  # a second first dashboard must not see a half-imported font manager
            self._thread().apply(importlib.import_module, ("matplotlib",))
            importlib.import_module("matplotlib.font_manager")

    def cached(self, key: tuple, fn: Callable, *args: Any) -> Any:
        """run(fn, *args), or its result from the last CACHE_SECONDS for the same key."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        value = self.run(fn, *args)
        self._cache[key] = (now, value)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return value


def _job(fn: Callable, args: tuple) -> Any:
    db = database.obj
    try:
        with db.atomic():
            return fn(*args)
    finally:
        db.close()


def period_from_request(zone: dt.tzinfo, rules: AnalyticsConfig) -> analytics.Period:
    """since / until (local dates, both included; default the last DEFAULT_DAYS days) and extension from the URL;
    the service figures' thresholds from the configuration."""
    today = dt.datetime.now(zone).date()
    until = forms.day("until") or today
    since = forms.day("since") or until - dt.timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise DataError(400, lazy_gettext("since: must not be after until"))
    if (until - since).days >= MAX_DAYS:
        raise DataError(400, lazy_gettext("the period may be at most %(max)s days", max=MAX_DAYS))
    extension = request.args.get("extension", "").strip()
    if len(extension) > 32 or any(not c.isalnum() for c in extension):
        raise DataError(400, lazy_gettext("extension: letters and digits, at most 32"))
    start = analytics.utc_bound(dt.datetime.combine(since, dt.time()), zone)
    end = analytics.utc_bound(dt.datetime.combine(until + dt.timedelta(days=1), dt.time()), zone)
    return analytics.Period(start, end, zone, extension or None, float(rules.service_level_seconds),
                            float(rules.short_abandon_seconds))


def compare_from_request() -> str | None:
    """The compare parameter: empty (no comparison) or one of catalog.COMPARE."""
    value = request.args.get("compare", "")
    if value and value not in catalog.COMPARE:
        raise DataError(400, lazy_gettext("compare: one of %(compare)s, or nothing",
                                          compare=', '.join(catalog.COMPARE)))
    return value or None


def _svg_image(svg: str) -> str:
    """An SVG chart as a data: URL for <img>: no script runs in an image, and the page's CSP allows data: images."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _dashboard_data(period: analytics.Period, compare: str | None, shown: Formats) -> dict:
    """The dashboard's figures, tables and charts; the charts in shown's language (the reader's)."""
    from screenpop.daemon.reports import charts  # matplotlib: loaded with the first dashboard (load_charts), not at daemon start

    employees = analytics.employees(period)
    load = analytics.load(period)
    daily = analytics.daily(period)
    missed = analytics.missed(period)
    totals = {k: sum(d[k] for d in daily) for k in ("inbound", "outbound", "answered", "missed", "abandoned")}
    totals["abandoned_rate"] = totals["abandoned"] / totals["inbound"] if totals["inbound"] else None
    totals["not_returned"] = len(missed)
    peaks = service.peaks(period)
    figures = catalog.run("service", period, compare)[0]
    figures["peak"] = max((p["peak"] for p in peaks), default=0)
    if compare:
        other = catalog.other_period(period, compare)
        figures[f"peak_{catalog.COMPARE[compare]}"] = max((p["peak"] for p in service.peaks(other)), default=0)
    return {
        "service": figures,
        "queues": catalog.run("queues", period, compare),
        "unknown_callers": service.unknown_callers(period)[:TOP_UNKNOWN],
        "suffix": catalog.COMPARE.get(compare or ""),
        "employees": employees,
        "categories": analytics.categories(period),
        "customers": analytics.customers(period, limit=TOP_CUSTOMERS),
        "conversation_employees": catalog.run("conversation_employees", period, compare),
        "conversation_customers": catalog.run("conversation_customers", period, compare)[:TOP_CUSTOMERS],
        "alerts": catalog.run("alerts", period)[:TOP_ALERTS],
        "totals": totals,
        "charts": {
            "heat_map": _svg_image(charts.heat_map(load, shown)),
            "daily": _svg_image(charts.daily_chart(daily, shown)),
            "employees": _svg_image(charts.employee_chart(employees, formats=shown)),
        },
    }


def _csv(name: str, period: analytics.Period, compare: str | None) -> str:
    out = io.StringIO()
    if name == "calls":
        if compare:
            raise DataError(400, lazy_gettext("the calls list has no comparison: leave compare out"))
        rows = call_records(period.since, period.until, period.extension, limit=MAX_CSV_CALLS + 1)
        if len(rows) > MAX_CSV_CALLS:
            raise DataError(400, lazy_gettext("more than %(max)s calls in this period: choose a shorter one",
                                              max=lazy_number(MAX_CSV_CALLS)))
        write_csv(rows, out)
    else:
        try:
            rows = catalog.run(name, period, compare)
        except ValueError as exc:
            raise DataError(400, exc.args[0]) from None
        write_csv(rows, out)
    return out.getvalue()


def _labels(period: analytics.Period) -> dict:
    """The period as the filter form shows it: local dates, until included."""
    last = analytics.to_local(period.until - dt.timedelta(microseconds=1), period.zone)
    return {"since": analytics.to_local(period.since, period.zone).date().isoformat(), "until": last.date().isoformat(),
            "extension": period.extension or "", "compare": request.args.get("compare", "")}


def blueprint(zone: dt.tzinfo, rules: AnalyticsConfig, analysis: Callable[[], dict] | None = None) -> Blueprint:
    """The pages, reporting in the call centre's time zone with the configured service thresholds, for managers and
    admins (the web pages' sessions); analysis: the recordings' analysis progress, for its line."""
    bp = Blueprint("dashboard", __name__, template_folder="../templates")
    worker = _Worker()

    @bp.app_template_filter("figure")
    def figure(value: Any, key: str = "") -> str:
        return display(key, value, formats())

    def filtered(view: Callable[[analytics.Period, str | None], Response], template: str, title: str) -> Response:
        try:
            period = period_from_request(zone, rules)
            compare = compare_from_request()
        except DataError as exc:
            return render_page(template, status=400, title=title, error=exc.message, data=None, rows=[],
                               filters=dict(request.args), reports=catalog.REPORTS, zone=str(zone))
        return view(period, compare)

    @bp.get("/dashboard")
    @login_required("dashboard")
    def dashboard():
        def show(period: analytics.Period, compare: str | None) -> Response:
            worker.load_charts()
            shown = formats()
            data = worker.cached(("dashboard", period, compare, shown.locale), _dashboard_data, period, compare, shown)
            return render_page("dashboard.html", title=_("Dashboard"), data=data, filters=_labels(period),
                               reports=catalog.REPORTS, zone=str(zone), analysis=analysis() if analysis else None)
        return filtered(show, "dashboard.html", "Dashboard")

    @bp.get("/reports/<name>.csv")
    @login_required("reports")
    def report_csv(name: str):
        if name not in catalog.REPORTS and name != "calls":
            return error_page(404, _("There is no such report."))
        try:
            period = period_from_request(zone, rules)
            compare = compare_from_request()
            body = worker.run(_csv, name, period, compare)
        except DataError as exc:
            return error_page(400, exc.message)
        labels = _labels(period)
        filename = f"screenpop-{name}-{labels['since']}-{labels['until']}.csv"
        response = Response(body, mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp
