"""The analytics charts (SVG) and pages: hostile names stay text, figures and CSV downloads match the reports."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from zoneinfo import ZoneInfo

import pytest

from analytics_data import HOSTILE, SINCE, UNTIL, build
from screenpop.daemon import charts
from screenpop.db import analytics

BERLIN = ZoneInfo("Europe/Berlin")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def data(db):
    with db.atomic():
        return build()


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert not [e for e in root.iter() if e.tag in (f"{SVG}script", f"{SVG}foreignObject")]
    assert not [k for e in root.iter() for k in e.attrib if k.lower().startswith("on")]
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]


def test_charts_are_well_formed_svg_with_names_as_plain_text(data):
    period = analytics.Period(SINCE, UNTIL, BERLIN)
    rows = analytics.employees(period)
    rows.append({**rows[0], "extension": "9", "name": "a\x1b[31m\u202eb $\\frac{1}{2}$ \u2028c"})
    svg = charts.employee_chart(rows)
    texts = _texts(svg)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert charts.label(f"{HOSTILE} (1003)") in texts  # cut to MAX_LABEL, shown literally
    shown = next(t for t in texts if t.startswith("a"))  # control and bidi characters gone; no math typesetting
    assert "$\\frac{1}{2}$" in shown and "\x1b" not in shown and "\u202e" not in shown
    assert "Mon" in _texts(charts.heat_map(analytics.load(period)))
    assert "Calls per day" in _texts(charts.daily_chart(analytics.daily(period)))
    assert charts.employee_chart([]).startswith("<svg")


def test_label_is_short_and_clean():
    assert charts.label(None) == ""
    assert charts.label("x" * 100) == "x" * 27 + "…"
    assert charts.label("\u202eevil\x00") == "evil"
