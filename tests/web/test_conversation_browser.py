"""The conversation page in Debian's headless Chromium against the real daemon: the daemon's analysis process
transcribes an espeak-ng recording (PocketSphinx), the admin opens the call's conversation, clicks a transcript
line and the player jumps to it; the transcript search finds the call (issue 19, part 3)."""
from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from contextlib import closing

import pytest

from screenpop.daemon.auth import tokens
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import Call, CallParty, Customer, Employee, Recording, RecordingAnalysis
from screenpop.simulator import speech

from support import Started, daemon, free_port, patient, serving, wait_for, write_config

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra (.ci/setup)")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
SCRIPT = (
    speech.Line("customer", 0.3, "I want to cancel my contract"),
    speech.Line("operator", 0.6, "I understand the refund is on its way"),
)


class Rig(Started):
    """A call with one recording of scripted speech, the daemon analysing it, Chromium."""

    def __init__(self, tmp) -> None:
        super().__init__()
        url = f"sqlite:///{tmp / 'screenpop.db'}"
        self.db = self.keep(open_database(url))
        migrate(self.db)
        anna = Employee.create(name="Anna", extension="1001")
        jon = Customer.create(name="Jón Jónsson")
        self.call = Call.create(uuid="conv-1", direction="INCOMING", started_at=dt.datetime.utcnow(), extension="1001",
                                employee=anna, customer=jon, external_number="+3545551234")
        CallParty.create(call=self.call, extension="1001", role="callee", talked=True)
        rec_dir = tmp / "rec"
        self.spoken = speech.write_script(rec_dir / "conv-1.wav", SCRIPT, rate=8000)
        Recording.create(call_uuid="conv-1", leg_uuid="conv-1", party="customer", extension="1001",
                         fs_path=str(rec_dir / "conv-1.wav"), path=str(rec_dir / "conv-1.wav"),
                         started_at=self.call.started_at, status="ok", seconds=self.spoken[-1].end + 0.8)
        _, self.admin = tokens.create(None, role="admin", name="admin")
        port, http_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{http_port}"
        config = write_config(tmp / "screenpop.toml", port, url, http_port=http_port,
                              recordings=f'[recordings]\nroots = ["{rec_dir}"]',
                              analysis='[analysis]\nengine = "pocketsphinx"\nscan_interval = 0.2')
        self.daemon = serving(self.keep(daemon(tmp, config)), self.base)
        self.pw = playwright_api.sync_playwright().start()
        self.profile = tempfile.mkdtemp(prefix="screenpop-chromium-")

    def page(self):
        context = patient(self.pw.chromium.launch_persistent_context(self.profile, executable_path=CHROMIUM,
                                                                     headless=True, args=CHROMIUM_ARGS,
                                                                     viewport={"width": 1200, "height": 900}))
        return context, context.pages[0] if context.pages else context.new_page()

    def mint(self, next_path: str) -> str:
        import json
        import urllib.request

        req = urllib.request.Request(self.base + "/api/v1/signin-links", data=json.dumps({"next": next_path}).encode(),
                                     headers={"Authorization": f"Bearer {self.admin}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())["url"]

    def close(self) -> None:
        self.pw.stop()
        shutil.rmtree(self.profile, ignore_errors=True)
        assert self.daemon.terminate() == 0, self.daemon.log()
        super().close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    with closing(Rig(tmp_path_factory.mktemp("conversation-browser"))) as r:
        wait_for(lambda: RecordingAnalysis.select().count() == 1, 60, "the daemon to analyse the recording")
        yield r


def test_a_click_on_a_line_plays_the_recording_from_there(rig) -> None:
    assert RecordingAnalysis.get().state == "done", RecordingAnalysis.get().error
    context, page = rig.page()
    try:
        page.goto(rig.mint(f"/calls/{rig.call.id}/conversation"))
        lines = page.locator("ol.transcript li")
        assert lines.count() == 2
        assert "cancel" in lines.nth(0).inner_text()
        audio = page.locator("audio")
        page.wait_for_function("document.querySelector('audio').readyState >= 1", timeout=30000)
        assert page.evaluate("document.querySelector('audio').duration") == pytest.approx(rig.spoken[-1].end + 0.8,
                                                                                         abs=0.05)
        start = float(lines.nth(1).locator("button").get_attribute("data-start"))
        assert start == pytest.approx(rig.spoken[1].start, abs=0.06)
        lines.nth(1).locator("button").click()
        page.wait_for_function(f"document.querySelector('audio').currentTime >= {start - 0.01}", timeout=10000)
        assert audio.evaluate("a => a.currentTime") < start + 2.0  # from that line, not the end
    finally:
        context.close()


def test_the_search_finds_what_the_customer_said(rig) -> None:
    context, page = rig.page()
    try:
        page.goto(rig.mint("/transcripts"))
        page.fill("input[name=q]", "cancel")
        page.select_option("select[name=side]", "customer")
        page.click("form.filters button")
        page.wait_for_selector("table.results")
        link = page.locator(f"table.results a[href='/calls/{rig.call.id}/conversation']")
        assert link.count() == 1
        page.select_option("select[name=side]", "operator")
        page.click("form.filters button")
        assert "No call where the operator said" in page.locator("table.results").inner_text()
    finally:
        context.close()
