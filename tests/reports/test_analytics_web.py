"""The analytics charts (SVG) and pages: hostile names stay text, figures and CSV downloads match the reports."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from contextlib import closing
from zoneinfo import ZoneInfo

import pytest

from analytics_data import HOSTILE, SINCE, UNTIL, build
from screenpop.daemon.reports import charts
from screenpop.daemon.reports import analytics

from support import HubApp


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


# ---- the pages, in process on both databases ------------------------------------------------------------


class Pages(HubApp):
    """The daemon's Flask app on a started push hub, in Berlin time, with an admin and an operator token."""

    def __init__(self, db, tmp_path) -> None:
        from screenpop.daemon.auth import tokens

        super().__init__(db, tmp_path, zone=BERLIN)
        self.admin = self.signed_in(tokens.create(None, role="admin")[1])
        self.operator = self.signed_in(tokens.create("1001")[1])
        self.nobody = self.app.test_client()

    def signed_in(self, token: str):
        """A browser signed in through a one-time link minted with token."""
        client = self.app.test_client()
        minted = client.post("/api/v1/signin-links", json={"next": "/dashboard"}, headers={"Authorization": f"Bearer {token}"})
        assert minted.status_code == 201, minted.data
        assert client.get(minted.get_json()["url"].split("localhost", 1)[1]).status_code == 303
        return client

    def get(self, path: str, client=None):
        return (client or self.admin).get(path)


@pytest.fixture
def pages(db, data, tmp_path):
    with closing(Pages(db, tmp_path)) as p:
        yield p


PERIOD = "since=2026-11-23&until=2026-11-24"


def _images(html: str) -> list[str]:
    import base64
    import re

    return [base64.b64decode(m).decode("utf-8") for m in re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)]


def test_dashboard_shows_the_figures_with_names_escaped(pages):
    r = pages.get(f"/dashboard?{PERIOD}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.mimetype == "text/html"
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "data:" in csp
    assert "<script" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "75.0%" in html and "=cmd|&#39; /C calc&#39;!A0" in html
    svgs = _images(html)
    assert len(svgs) == 3
    for svg in svgs:
        _texts(svg)
    assert any("&lt;script&gt;" in svg for svg in svgs)
    assert '/reports/employees.csv?since=2026-11-23&amp;until=2026-11-24' in html
    assert pages.get(f"/dashboard?{PERIOD}").get_data(as_text=True) == html  # the figures cached


def test_dashboard_charts_speak_the_readers_language(pages):
    """The charts of an Icelandic dashboard: Icelandic titles, axes, legends, day names and figures; the English
    dashboard of the same period, asked for first, is not what the Icelandic reader gets from the cache."""
    english = [_texts(svg) for svg in _images(pages.admin.get(f"/dashboard?{PERIOD}",
                                                              headers={"Accept-Language": "en"}).get_data(as_text=True))]
    icelandic = [_texts(svg) for svg in _images(pages.admin.get(f"/dashboard?{PERIOD}",
                                                                headers={"Accept-Language": "is"}).get_data(as_text=True))]
    heat, daily, employees = icelandic
    assert "Innhringingar eftir klukkustund og vikudegi" in heat and "klukkustund (staðartími)" in heat
    assert ["mán.", "þri.", "mið.", "fim.", "fös.", "lau.", "sun."] == [t for t in heat if t.endswith(".")]
    assert "Símtöl á dag" in daily and "innhringingar svarað" in daily and "23. nóv." in daily
    assert "Svöruð og ósvöruð símtöl á hvern starfsmann" in employees and "innhringingar" in employees
    assert "Calls per day" in english[1] and "Mon" in english[0] and "Nov 23" in english[1]
    words = {t for chart in english for t in chart if t.isalpha() and len(t) > 2}
    assert not words & {t for chart in icelandic for t in chart}, "no English word on the Icelandic charts"


def test_dashboard_figures_are_written_as_the_readers_locale_writes_them(pages):
    """The figures beside the charts too: a rate of 0.75 is 75.0% to an English reader and 75,0% to an Icelandic one."""
    english = pages.admin.get(f"/dashboard?{PERIOD}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    icelandic = pages.admin.get(f"/dashboard?{PERIOD}", headers={"Accept-Language": "is"}).get_data(as_text=True)
    assert "75.0%" in english and "75,0%" in icelandic and "75.0%" not in icelandic


def test_chart_figures_are_written_as_the_locale_writes_them():
    from screenpop.daemon import i18n

    rows = [{"name": "Anna", "extension": "1001", "taken": 1500, "missed": 0}]
    icelandic = _texts(charts.employee_chart(rows, formats=i18n.Formats.for_language("is")))
    english = _texts(charts.employee_chart(rows))
    assert "1.000" in icelandic and "1,000" in english


def test_missed_page_and_filters(pages):
    html = pages.get(f"/missed?{PERIOD}").get_data(as_text=True)
    assert html.index("+3545559999") < html.index("+3545550003")  # newest first
    assert "1001, 1003" in html and "nobody rang" in html and "+3545558888" not in html  # c6 was returned by c7
    assert "2 not returned, 0 withheld" in html
    returned = pages.get(f"/missed?{PERIOD}&state=returned").get_data(as_text=True)
    assert "+3545558888" in returned and "returned by 1002 <bdi>Bjorn</bdi> at Nov 24, 2026, 1:00\u202fPM CET" in returned
    only = pages.get(f"/missed?{PERIOD}&extension=1002").get_data(as_text=True)
    assert "+3545550003" not in only and "No missed calls here" in only
    for bad in ("since=yesterday", "extension=<b>", "state=<b>"):
        r = pages.get(f"/missed?{bad}")
        assert r.status_code == 400 and "<b>" not in r.get_data(as_text=True)


def test_pages_need_a_session(pages):
    for path in ("/dashboard", "/missed", "/reports/employees.csv"):
        r = pages.get(path, pages.nobody)
        assert r.status_code == 303 and r.headers["Location"].startswith("/signin?next=")
    assert pages.get(f"/missed?{PERIOD}", pages.operator).status_code == 200


def test_csv_downloads(pages):
    import csv
    import io

    r = pages.get(f"/reports/customers.csv?{PERIOD}")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.headers["Content-Disposition"] == 'attachment; filename="screenpop-customers-2026-11-23-2026-11-24.csv"'
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [row["name"] for row in rows][:3] == ["Acme", "Vip Co", "'=cmd|' /C calc'!A0"]
    calls = list(csv.DictReader(io.StringIO(pages.get(f"/reports/calls.csv?{PERIOD}").get_data(as_text=True))))
    assert len(calls) == 12  # c13 (Sunday local) and c12 (Wednesday) are outside
    assert pages.get("/reports/nope.csv").status_code == 404


def test_service_figures_and_their_comparison_on_the_dashboard_and_as_csv(pages):
    import csv
    import io

    html = pages.get(f"/dashboard?{PERIOD}&compare=year").get_data(as_text=True)
    assert '55.6% <span class="muted">(-)</span>' in html  # 5 of 9 answered within 20 s; a year before: no calls
    assert "In brackets: the same period last year." in html and 'value="year" selected' in html
    r = pages.get(f"/reports/numbers.csv?{PERIOD}&compare=previous")
    (row,) = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert (row["number"], row["inbound"], row["inbound_previous"]) == ("", "9", "1")  # c13, Sunday before
    for bad in ("compare=<b>", "compare=previous&since=2026-11-24&until=2026-11-23"):
        r = pages.get(f"/dashboard?{bad}")
        assert r.status_code == 400 and "<b>" not in r.get_data(as_text=True)
    for path in ("/reports/missed.csv", "/reports/calls.csv"):
        r = pages.get(f"{path}?{PERIOD}&compare=previous")
        assert r.status_code == 400 and "comparison" in r.get_data(as_text=True)


def test_first_dashboard_of_a_fresh_install_has_its_charts(tmp_path):
    """A new daemon process whose matplotlib has no font cache yet (nor fontconfig): the first dashboard is whole."""
    from support import Proc, free_port, http_ready, page, wait_for, write_config

    from screenpop.daemon.auth import tokens
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    url = f"sqlite:///{tmp_path / 'screenpop.db'}"
    db = open_database(url)
    migrate(db)
    _, admin = tokens.create(None, role="admin")
    db.close()
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    config = write_config(tmp_path / "screenpop.toml", free_port(), url, http_port=http_port)
    empty = {name: tmp_path / name for name in ("mplconfig", "xdgcache")}
    for folder in empty.values():
        folder.mkdir()
    proc = Proc(["-m", "screenpop.daemon.cli", "daemon", "--config", str(config)], tmp_path / "daemon.log",
                env={"MPLCONFIGDIR": str(empty["mplconfig"]), "XDG_CACHE_HOME": str(empty["xdgcache"])})
    try:
        wait_for(lambda: http_ready(base) or proc.popen.poll() is not None, 30, "the daemon's HTTP server")
        status, html = page(base, admin, "/dashboard", timeout=120)  # the first page this process draws
        assert status == 200, proc.log()[-3000:]
        assert len(_images(html)) == 3 and "Calls per day" in html
        assert list(empty["mplconfig"].glob("fontlist-*.json")), "matplotlib built its font list in this process"
        assert "Traceback" not in proc.log(), proc.log()[-3000:]
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
        proc.close()
