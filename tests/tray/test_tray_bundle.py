"""packaging/tray.spec builds with PyInstaller (here for Linux, so the spec is kept working for the Windows and
macOS builds) from screenpop installed as a package, and the frozen tray starts, writes its config, and pops a
notification on a real desktop."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from desktop import Desktop, PushServer, card, customer, missing_tools
from support import ROOT, wait_for

pytestmark = [pytest.mark.packaging, pytest.mark.skipif(sys.platform != "linux", reason="built and run on Linux"),
              pytest.mark.timeout(900)]  # a PyInstaller analysis takes minutes on a busy 2-core machine

DAEMON_STACK = {"matplotlib", "numpy", "gevent", "greenlet", "flask", "werkzeug", "jinja2", "peewee", "psycopg",
                "greenswitch", "phonenumbers", "tkinter"}


def pyinstaller(python: Path, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "PyInstaller", "--noconfirm", "--distpath", str(tmp / "dist"),
                           "--workpath", str(tmp / "build"), str(ROOT / "packaging/tray.spec")],
                          capture_output=True, text=True, cwd=tmp)


@pytest.fixture(scope="module")
def build(dists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spec built as docs/packaging.md says, in a build virtualenv with screenpop installed from its wheel (the
    session's `dists`, not editable). The tray's libraries and PyInstaller come from this test virtualenv through a
    .pth line (a path line: the editable install's own .pth there is not run), so the build needs no network."""
    tmp = tmp_path_factory.mktemp("pyinstaller")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin/python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True,
                          capture_output=True, text=True).stdout.strip()
    Path(site, "screenpop-test-libraries.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", str(dists["wheel"])], check=True)
    result = pyinstaller(python, tmp)
    assert result.returncode == 0, result.stderr[-4000:]
    return tmp


@pytest.fixture(scope="module")
def bundle(build: Path) -> Path:
    """The one-folder build's executable."""
    return build / "dist/screenpop-tray/screenpop-tray"


def test_bundle_carries_no_daemon_code_or_stack(build: Path, bundle: Path) -> None:
    """The analysis starts from the tray's own command line, so it never sees the daemon's modules nor what only they
    use (matplotlib alone is some 30 MB, numpy as much); the built folder has none of them either."""
    analysed = set(re.findall(r'<a name="([\w.]+)"', (build / "build/tray/xref-tray.html").read_text()))
    ours = {name for name in analysed if name.startswith("screenpop.")}
    assert ours and all(name.startswith("screenpop.tray.") or name == "screenpop.tray" for name in ours), sorted(ours)
    assert not {name.split(".")[0] for name in analysed} & DAEMON_STACK
    carried = {p.name.split(".")[0].split("-")[0].lower() for p in bundle.parent.rglob("*")}
    assert not carried & DAEMON_STACK


def test_the_spec_refuses_an_editable_install_in_words(tmp_path: Path) -> None:
    """This test virtualenv has screenpop editable, which PyInstaller cannot follow: the spec says what to do."""
    result = pyinstaller(Path(sys.executable), tmp_path)
    assert result.returncode != 0 and "installed editable" in result.stderr, result.stderr[-2000:]
    assert "pip install '.[tray]' pyinstaller" in result.stderr


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
