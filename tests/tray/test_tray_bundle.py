"""packaging/tray.spec builds with PyInstaller (here for Linux, so the spec is kept working for the Windows and
macOS builds) and the frozen tray starts, writes its config, and pops a notification on a real desktop."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop import Desktop, PushServer, card, customer, missing_tools
from support import ROOT, wait_for

pytestmark = [pytest.mark.packaging, pytest.mark.skipif(sys.platform != "linux", reason="built and run on Linux"),
              pytest.mark.timeout(900)]  # a PyInstaller analysis takes minutes on a busy 2-core machine



@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-folder build's executable."""
    tmp = tmp_path_factory.mktemp("pyinstaller")
    result = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(tmp / "dist"),
         "--workpath", str(tmp / "build"), str(ROOT / "packaging/tray.spec")],
        capture_output=True, text=True, cwd=tmp,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return tmp / "dist/screenpop-tray/screenpop-tray"


def test_bundle_carries_no_daemon_stack(bundle: Path) -> None:
    """The tray's bundle leaves out what only the daemon uses (matplotlib alone is some 30 MB)."""
    carried = {p.name.split(".")[0].split("-")[0].lower() for p in bundle.parent.rglob("*")}
    assert not carried & {"matplotlib", "gevent", "flask", "peewee", "psycopg", "greenswitch"}


def test_frozen_tray_help_and_setup(bundle: Path, tmp_path: Path) -> None:
    out = subprocess.run([str(bundle), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: screenpop tray" in out.stdout
    config = tmp_path / "tray.toml"
    out = subprocess.run([str(bundle), "--setup", "--config", str(config), "--server", "http://127.0.0.1:8080",
                          "--extension", "1001", "--token", "tok-1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'extension = "1001"' in config.read_text() and oct(config.stat().st_mode & 0o777) == "0o600"


def test_frozen_tray_pops_on_a_desktop(bundle: Path, tmp_path: Path) -> None:
    """The bundled backends work: pystray's icon on the X tray, plyer's D-Bus notification shown by dunst."""
    missing = missing_tools()
    if missing:
        pytest.fail(f"desktop test tools missing: {', '.join(missing)} (run .ci/setup)", pytrace=False)
    desktop = Desktop(tmp_path / "desktop").start()
    server = PushServer()
    tray = desktop.spawn("tray", [str(bundle), "--config", str(tmp_path / "absent.toml"), "--server", server.url,
                                  "--extension", "1001", "--token", server.token])
    log = tmp_path / "desktop/tray.log"
    try:
        wait_for(lambda: server.streams() == 1, 30, "the frozen tray's stream")
        wait_for(lambda: bool(desktop.xdotool("search", "--name", "^screenpop").stdout.strip()), 10, "its tray icon")
        server.push(card(call_uuid="frozen-1", customer=customer(company="Frosti ehf.")))
        wait_for(lambda: desktop.displayed() >= 1, 10, f"the notification\n{log.read_text()[-2000:]}")
        desktop.close_all()  # dunst's history holds the closed ones
        wait_for(lambda: bool(desktop.history()), 5, "the notification in dunst's history")
        assert desktop.history()[0]["summary"] == "Frosti ehf."
    finally:
        tray.terminate()
        tray.wait(10)
        desktop.stop()
        server.close()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert os.path.getsize(log) > 0
