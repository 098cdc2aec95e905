"""The dashboard's charts: analytics rows drawn as SVG by matplotlib's SVG backend, for inlining in HTML.

No pyplot and no raster backend: each chart is a ``Figure`` printed by ``FigureCanvasSVG``. Text is written
as SVG <text> (escaped by matplotlib's XML writer), math markup is off (a ``$`` in an employee's name is just a
dollar sign), and every label from the database is cleaned of control characters and cut short here too.

Each chart speaks the language of the Formats it is given (the page's reader's: docs/i18n.md): its title, axes and
legend from the catalogue, the days of the week, dates and figures as that locale writes them. Charts are drawn on
the dashboard's analytics thread, so the language is the Formats', never the thread's.
"""
from __future__ import annotations

import io
import re

import matplotlib
from matplotlib.axis import Axis
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.dates import num2date
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from screenpop.daemon import i18n
from screenpop.daemon.i18n import Formats, gettext as _
from screenpop.daemon.reports.export import UNSAFE_TEXT

matplotlib.rcParams.update({
    "svg.fonttype": "none",  # <text> elements, not glyph paths: small and selectable
    "svg.hashsalt": "screenpop",  # stable element ids, so equal charts are equal bytes
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
})

ANSWERED, MISSED, OUTBOUND, TAKEN = "#2e7d32", "#c62828", "#1565c0", "#2e7d32"
_PROLOG = re.compile(r"^\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)
MAX_LABEL = 28


def label(text: str | None) -> str:
    """A stranger-supplied string fit for a chart label: no control or bidi characters, at most MAX_LABEL long."""
    clean = UNSAFE_TEXT.sub(" ", text or "").strip()
    return clean if len(clean) <= MAX_LABEL else clean[: MAX_LABEL - 1] + "…"


def _figures(axis: Axis, formats: Formats) -> None:
    """axis's tick figures written as the locale writes numbers ("1.234,5", "1,234.5")."""
    axis.set_major_formatter(FuncFormatter(lambda value, pos: formats.number(value)))


def _svg(fig: Figure) -> str:
    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    return _PROLOG.sub("", buf.getvalue())


def heat_map(load_rows: list[dict], formats: Formats | None = None) -> str:
    """Inbound calls per local hour (columns) and day of week (rows) from analytics.load rows, in formats' language
    (default English)."""
    formats = formats or Formats()
    grid = [[0] * 24 for _day in range(7)]
    for r in load_rows:
        grid[r["weekday"]][r["hour"]] = r["inbound"]
    with i18n.use(formats.locale.language):
        fig = Figure(figsize=(9, 2.8))
        ax = fig.add_subplot()
        image = ax.imshow(grid, aspect="auto", cmap="YlOrRd", interpolation="nearest")
        ax.set_yticks(range(7), [formats.weekday(day) for day in range(7)])
        ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
        ax.set_xlabel(_("hour of day (local time)"))
        ax.set_title(_("Inbound calls by hour and day of week"))
        bar = fig.colorbar(image, ax=ax, pad=0.01, label=_("calls"))
        _figures(bar.ax.yaxis, formats)
    return _svg(fig)


def daily_chart(daily_rows: list[dict], formats: Formats | None = None) -> str:
    """Per local date: inbound answered and missed as stacked bars, outbound as a line, in formats' language
    (default English)."""
    formats = formats or Formats()
    days = [r["date"] for r in daily_rows]
    answered = [r["answered"] for r in daily_rows]
    missed = [r["missed"] for r in daily_rows]
    with i18n.use(formats.locale.language):
        fig = Figure(figsize=(9, 3))
        ax = fig.add_subplot()
        ax.bar(days, answered, color=ANSWERED, label=_("inbound answered"))
        ax.bar(days, missed, bottom=answered, color=MISSED, label=_("inbound missed"))
        ax.plot(days, [r["outbound"] for r in daily_rows], color=OUTBOUND, marker="." if len(days) < 60 else "",
                label=_("outbound"))
        ax.set_ylabel(_("calls"))
        ax.set_title(_("Calls per day"))
        ax.legend(loc="upper left", frameon=False, ncols=3)
        if days:  # dates on the axis as the locale writes a day of a month ("7. des.", "Dec 7")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, pos: formats.day_month(num2date(value).date())))
        _figures(ax.yaxis, formats)
        fig.autofmt_xdate()
    return _svg(fig)


def employee_chart(employee_rows: list[dict], limit: int = 25, formats: Formats | None = None) -> str:
    """Calls taken and missed per employee (the busiest first), as horizontal bars labelled name (extension), in
    formats' language (default English)."""
    formats = formats or Formats()
    rows = sorted(employee_rows, key=lambda r: (-(r["taken"] + r["missed"]), r["extension"]))[:limit][::-1]
    names = [label(f"{r['name']} ({r['extension']})" if r["name"] else r["extension"]) for r in rows]
    with i18n.use(formats.locale.language):
        fig = Figure(figsize=(9, 0.8 + 0.28 * max(len(rows), 1)))
        ax = fig.add_subplot()
        ax.barh(range(len(rows)), [r["taken"] for r in rows], color=TAKEN, label=_("taken"))
        ax.barh(range(len(rows)), [r["missed"] for r in rows], left=[r["taken"] for r in rows], color=MISSED,
                label=_("missed"))
        ax.set_yticks(range(len(rows)), names)
        ax.set_xlabel(_("inbound calls"))
        ax.set_title(_("Calls taken and missed per employee"))
        ax.legend(loc="lower right", frameon=False)
        _figures(ax.xaxis, formats)
    return _svg(fig)
