"""The dashboard's charts: analytics rows drawn as SVG by matplotlib's SVG backend, for inlining in HTML.

No pyplot and no raster backend: each chart is a ``Figure`` printed by ``FigureCanvasSVG``. Text is written
as SVG <text> (escaped by matplotlib's XML writer), math markup is off (a ``$`` in an employee's name is just a
dollar sign), and every label from the database is cleaned of control characters and cut short here too.
"""
from __future__ import annotations

import io
import re

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

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


def _svg(fig: Figure) -> str:
    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    return _PROLOG.sub("", buf.getvalue())


def heat_map(load_rows: list[dict]) -> str:
    """Inbound calls per local hour (columns) and day of week (rows) from analytics.load rows."""
    grid = [[0] * 24 for _ in range(7)]
    for r in load_rows:
        grid[r["weekday"]][r["hour"]] = r["inbound"]
    fig = Figure(figsize=(9, 2.8))
    ax = fig.add_subplot()
    image = ax.imshow(grid, aspect="auto", cmap="YlOrRd", interpolation="nearest")
    ax.set_yticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    ax.set_xlabel("hour of day (local time)")
    ax.set_title("Inbound calls by hour and day of week")
    fig.colorbar(image, ax=ax, pad=0.01, label="calls")
    return _svg(fig)


def daily_chart(daily_rows: list[dict]) -> str:
    """Per local date: inbound answered and missed as stacked bars, outbound as a line."""
    fig = Figure(figsize=(9, 3))
    ax = fig.add_subplot()
    days = [r["date"] for r in daily_rows]
    answered = [r["answered"] for r in daily_rows]
    missed = [r["missed"] for r in daily_rows]
    ax.bar(days, answered, color=ANSWERED, label="inbound answered")
    ax.bar(days, missed, bottom=answered, color=MISSED, label="inbound missed")
    ax.plot(days, [r["outbound"] for r in daily_rows], color=OUTBOUND, marker="." if len(days) < 60 else "",
            label="outbound")
    ax.set_ylabel("calls")
    ax.set_title("Calls per day")
    ax.legend(loc="upper left", frameon=False, ncols=3)
    fig.autofmt_xdate()
    return _svg(fig)


def employee_chart(employee_rows: list[dict], limit: int = 25) -> str:
    """Calls taken and missed per employee (the busiest first), as horizontal bars labelled name (extension)."""
    rows = sorted(employee_rows, key=lambda r: (-(r["taken"] + r["missed"]), r["extension"]))[:limit][::-1]
    fig = Figure(figsize=(9, 0.8 + 0.28 * max(len(rows), 1)))
    ax = fig.add_subplot()
    names = [label(f"{r['name']} ({r['extension']})" if r["name"] else r["extension"]) for r in rows]
    ax.barh(range(len(rows)), [r["taken"] for r in rows], color=TAKEN, label="taken")
    ax.barh(range(len(rows)), [r["missed"] for r in rows], left=[r["taken"] for r in rows], color=MISSED,
            label="missed")
    ax.set_yticks(range(len(rows)), names)
    ax.set_xlabel("inbound calls")
    ax.set_title("Calls taken and missed per employee")
    ax.legend(loc="lower right", frameon=False)
    return _svg(fig)
