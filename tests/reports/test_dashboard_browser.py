"""The dashboard in Chromium: the service figures and their comparison with the previous period, chosen in the form."""
from __future__ import annotations

import json
import urllib.request

import pytest

from analytics_data import build
from support import Proc, free_port, http_ready, wait_for, write_config

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra (.ci/setup)")

CHROMIUM = "/usr/bin/chromium"


def test_dashboard_shows_the_service_figures_beside_the_previous_period(tmp_path):
    from screenpop.daemon.auth import tokens
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    url = f"sqlite:///{tmp_path / 'screenpop.db'}"
    db = open_database(url)
    migrate(db)
    with db.atomic():
        build()
    _, admin = tokens.create(None, role="admin")
    db.close()
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    config = write_config(tmp_path / "screenpop.toml", free_port(), url, http_port=http_port,
                          analytics='[analytics]\ntimezone = "Europe/Berlin"')
    proc = Proc(["-m", "screenpop.daemon.cli", "daemon", "--config", str(config)], tmp_path / "daemon.log")
    pw = playwright_api.sync_playwright().start()
    try:
        wait_for(lambda: http_ready(base) or proc.popen.poll() is not None, 30, "the daemon's HTTP server")
        req = urllib.request.Request(base + "/api/v1/signin-links",
                                     data=json.dumps({"next": "/dashboard?since=2026-11-24&until=2026-11-24"}).encode(),
                                     headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            link = json.loads(r.read())["url"]
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(link, timeout=120_000)
        page.wait_for_selector("section.service", timeout=120_000)
        tiles = " ".join(page.inner_text("section.service").split())
        assert "20.0% answered within 20.0 s" in tiles  # Tuesday: c11 (8 s), not c9 (30 s), of 5 inbound
        assert "%)" not in tiles  # no comparison asked for
        page.select_option("select[name=compare]", "previous")
        page.click("form.filters button")
        page.wait_for_url("**compare=previous**", timeout=120_000)
        page.wait_for_selector("section.service", timeout=120_000)
        tiles = " ".join(page.inner_text("section.service").split())
        assert "20.0% (100.0%) answered within 20.0 s" in tiles  # Monday: all 4 within 20 s
        assert "0 (1) transferred" in tiles  # c3, transferred, started on Monday
        assert "In brackets: the previous period." in page.content()
        assert page.input_value("select[name=compare]") == "previous"
        assert "compare=previous" in page.get_attribute("a[href^='/reports/service.csv']", "href")
        browser.close()
        assert "Traceback" not in proc.log(), proc.log()[-3000:]
    finally:
        pw.stop()
        assert proc.terminate() == 0, proc.log()[-3000:]
        proc.close()
