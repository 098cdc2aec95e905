"""A call's recording played and sought in Debian's headless Chromium: the simulator records an answered call, the
daemon links it (its path mapped) and checks the file, the calls list's player loads it, and a seek is served as a
byte range (206) from the daemon, with the listen logged once (docs/recordings.md)."""
from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest

from screenpop.daemon.auth import tokens
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import Recording, RecordingListen

from support import daemon, free_port, patient, serving, simulator, wait_for, write_config

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra (.ci/setup)")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
FS_DIR = "/var/lib/freeswitch/recordings"


def test_recording_plays_and_seeks_in_chromium(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'screenpop.db'}"
    db = open_database(url)
    migrate(db)
    _, admin = tokens.create(None, role="admin", name="admin")
    rec_dir = tmp_path / "rec"
    esl, http = free_port(), free_port()
    base = f"http://127.0.0.1:{http}"
    config = write_config(tmp_path / "screenpop.toml", esl, url, http_port=http,
                          recordings=f'[recordings]\nroots = []\ncheck_interval = 0.2\n[recordings.paths]\n"{FS_DIR}" = "{rec_dir}"\n')
    sim = simulator(tmp_path, esl, "--generate", "--calls", "1", "--mix", "inbound_answered=1", "--seed", "4",
                    "--speed", "8", "--linger", "0.3", "--record-dir", str(rec_dir), "--record-fs-dir", FS_DIR)
    d = serving(daemon(tmp_path, config), base)
    profile = tempfile.mkdtemp(prefix="screenpop-chromium-")
    pw = playwright_api.sync_playwright().start()
    try:
        assert sim.wait(60) == 0, sim.log()
        wait_for(lambda: Recording.select().where(Recording.status == "ok").exists(), 30, "the recording checked ok")
        rec = Recording.get()
        assert Path(rec.path).parent.parent.parent.parent == rec_dir and rec.fs_path.startswith(FS_DIR)
        req = urllib.request.Request(base + "/api/v1/signin-links", data=json.dumps({"next": "/calls"}).encode(),
                                     headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            link = json.loads(r.read())["url"]
        context = patient(pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS))
        page = context.pages[0] if context.pages else context.new_page()
        served: list[tuple[int, str]] = []
        page.on("response", lambda r: served.append((r.status, r.request.headers.get("range", "")))
                if "/recordings/" in r.url else None)
        page.goto(link)
        assert page.url.endswith("/calls")
        player = page.locator("audio.recording")
        assert player.count() == 1
        assert player.get_attribute("src") == f"/calls/{rec.call_uuid}/recordings/{rec.id}"
        state = page.evaluate("""async () => {
            const a = document.querySelector('audio.recording');
            a.preload = 'auto';
            await new Promise((ok, fail) => { a.onloadedmetadata = ok; a.onerror = () => fail(a.error); a.load(); });
            const seekable = a.seekable.length ? a.seekable.end(0) : 0;
            await new Promise(ok => { a.onseeked = ok; a.currentTime = a.duration - 1.0; });
            try { await a.play(); await new Promise(ok => setTimeout(ok, 300)); a.pause(); } catch (e) {}
            return {duration: a.duration, seekable, time: a.currentTime, error: a.error && a.error.code};
        }""")
        assert state["error"] is None
        assert abs(state["duration"] - rec.seconds) < 0.05, state
        assert abs(state["seekable"] - state["duration"]) < 0.05, state  # seekable: the server answers ranges
        assert state["time"] >= rec.seconds - 1.05, state
        assert served and all(status in (200, 206) for status, _ in served), served
        assert any(status == 206 for status, _ in served), served  # Chromium asks byte ranges; the daemon gives them
        context.close()
        assert RecordingListen.select().count() == 1, served  # one listen, however many range requests
    finally:
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)
        sim.close()
        assert d.terminate() == 0, d.log()
        d.close()
        db.close()
