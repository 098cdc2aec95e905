"""Every page in headless Chromium in English and in Icelandic (issue 18): no English message left in the Icelandic
page, and no element the Icelandic words push wider than its box where the English fit (scrollWidth past
clientWidth). Chromium asks in the language of its locale (Accept-Language); the pages are served in process by the
daemon's Flask app through Playwright's request routing, so no daemon process is needed. Screenshots of each page in
both languages go to the test's tmp folder and to /tmp/screenpop-screenshots/."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import closing
from pathlib import Path

import pytest

from screenpop.daemon.auth import tokens
from screenpop.db.models import Customer, Employee, Order, Phone

from support import RULES, HubApp

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra (.ci/setup)")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SHOTS = Path("/tmp/screenpop-screenshots")
SITE = "http://screenpop.test"
WIDTH = 1280  # an operator's screen beside nothing else
# the boxes whose text a translation lengthens: navigation, buttons, labels, table heads, tiles, headings
BOXES = "header.nav a, header.nav button, button, .button, label, th, .tiles div, h1, h2, summary, .tabs a, .flash"
OVERFLOWS = """(selector) => Array.from(document.querySelectorAll(selector))
  .filter(el => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
  .map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ': ' + el.innerText.trim().slice(0, 60))"""
CLIPPED = """(selector) => Array.from(document.querySelectorAll(selector))
  .filter(el => el.offsetParent !== null && el.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .map(el => el.tagName.toLowerCase() + ': ' + el.innerText.trim().slice(0, 60))"""


def _pages(customer_id: int) -> list[str]:
    return ["/customers", "/customers?q=thordur", f"/customers/{customer_id}", f"/customers/{customer_id}/edit",
            "/customers/new?number=5559999", "/customers/choose?number=5551234", "/calls", "/missed", "/dashboard",
            "/employees", "/tokens", "/fields", "/categories", "/layouts", "/layouts/default", "/people", "/sessions",
            "/account", "/admin/listens", "/transcripts", "/transcripts?q=endurgreidsla", "/alerts", "/signin"]


@pytest.fixture
def site(db, tmp_path):
    with closing(HubApp(db, tmp_path / "photos")) as hub_app:
        anna = Employee.create(name="Anna Jónsdóttir", extension="1001")
        customer = Customer.create(name="Þórður Ólafsson", company="Ölgerðin Egill Skallagrímsson", city="Reykjavík",
                                   country="IS", note="Vill símtöl fyrir hádegi.")
        number = RULES.classify("+3545551234")
        Phone.create(customer=customer, e164=number.e164, rev=number.rev, raw="555 1234", label="vinna")
        Order.create(customer=customer, number="P-100", title="Bátsvél", stage="reikningur sendur", amount=123456,
                     paid=2000, responsible=anna)
        _, admin = tokens.create(None, role="admin", name="stjórn")
        yield hub_app.app, admin, customer.id


def _browse(app, admin: str, language: str, paths: list[str], shots: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each page in a Chromium of this locale, signed in as the admin through a one-time link; per page what
    overflows its box and what reaches past the window."""
    client = app.test_client()  # keeps the session cookie; the browser's own cookies are not needed

    def serve(route, request):
        try:
            answer(route, request)
        except Exception as exc:  # Playwright would swallow it and go to the network: fail loudly instead
            errors.append(f"{request.url}: {exc!r}")
            route.abort()

    errors: list[str] = []

    def answer(route, request):
        path = request.url[len(SITE):] or "/"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("cookie", "host")}
        reply = client.open(path, method=request.method, headers=headers, data=request.post_data_buffer)
        route.fulfill(status=reply.status_code, headers={k: v for k, v in reply.headers.items()
                                                          if k.lower() not in ("content-length", "set-cookie")},
                      body=reply.get_data())

    minted = client.post("/api/v1/signin-links", json={"next": "/customers"}, headers={"Authorization": f"Bearer {admin}"})
    assert client.get(minted.get_json()["url"].split("localhost", 1)[1]).status_code == 303  # the client is signed in
    found: dict[str, tuple[list[str], list[str]]] = {}
    profile = tempfile.mkdtemp(prefix="screenpop-chromium-")
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                        locale="is-IS" if language == "is" else "en-US",
                                                        viewport={"width": WIDTH, "height": 900})
        try:
            context.route(f"{SITE}/**", serve)
            page = context.pages[0] if context.pages else context.new_page()
            for path in paths:
                page.goto(SITE + path)
                assert not errors, errors
                assert page.evaluate("document.documentElement.lang") == language, path
                found[path] = (page.evaluate(OVERFLOWS, BOXES), page.evaluate(CLIPPED, BOXES))
                name = f"i18n-{language}-{path.strip('/').replace('/', '-').replace('?', '-') or 'home'}.png"
                page.screenshot(path=str(shots / name), full_page=True)
                SHOTS.mkdir(exist_ok=True)
                shutil.copy(shots / name, SHOTS / name)
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
    return found


def test_every_page_in_both_languages_fits(site, tmp_path):
    """The Icelandic pages push nothing out of its box or past the window where the English pages fit."""
    app, admin, customer_id = site
    paths = _pages(customer_id)
    english = _browse(app, admin, "en", paths, tmp_path)
    icelandic = _browse(app, admin, "is", paths, tmp_path)
    for path in paths:
        over_en, clipped_en = english[path]
        over_is, clipped_is = icelandic[path]
        assert len(over_is) <= len(over_en), (path, "overflow in Icelandic", over_is, "in English", over_en)
        assert len(clipped_is) <= len(clipped_en), (path, "past the window in Icelandic", clipped_is, "in English", clipped_en)
