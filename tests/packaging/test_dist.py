"""The wheel and sdist from `python -m build`: complete, without junk, and the wheel installs and runs alone."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from support import ROOT

pytestmark = pytest.mark.packaging

PACKAGES = {"daemon": "screenpop/daemon", "db": "screenpop/db", "simulator": "screenpop/simulator", "tray": "screenpop/tray"}
JUNK = (".venv/", "__pycache__/", ".pyc", ".db", ".sqlite3", ".deb", ".pytest_cache/", "dist/", "test-output/")


def tracked() -> list[str]:
    """The files git tracks in this tree."""
    return subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()


def test_sdist_has_what_a_rebuild_needs_and_no_junk(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = [f for f in tracked() if f.split("/")[0] in
              ("daemon", "db", "simulator", "tray", "tests", "docs", "bench", "systemd", "packaging", ".ci")]
    assert wanted and not [f for f in wanted if f not in names]
    assert {"pyproject.toml", "README.md", "MANIFEST.in", "packaging/build-deb.py", "packaging/tray.spec"} <= names
    assert not [n for n in names if any(j in f"/{n}" for j in JUNK)]


def test_wheel_carries_every_module_and_data_file(dists: dict[str, Path]) -> None:
    """Every tracked file of the four packages (modules, templates, static files) is in the wheel."""
    with zipfile.ZipFile(dists["wheel"]) as zf:
        names = set(zf.namelist())
    wanted = [PACKAGES[f.split("/")[0]] + "/" + f.split("/", 1)[1] for f in tracked() if f.split("/")[0] in PACKAGES]
    assert wanted and not [f for f in wanted if f not in names]
    assert not [n for n in names if any(j in f"/{n}" for j in JUNK)]


def test_wheel_installs_and_runs_in_a_fresh_venv(dists: dict[str, Path], tmp_path: Path) -> None:
    """The daemon's dependencies only (no tray extra): the command and the daemon's modules import."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "--quiet",
                    "--disable-pip-version-check", str(dists["wheel"])], check=True)
    out = subprocess.run([str(venv / "bin/screenpop"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "usage: screenpop" in out.stdout
    check = ("import screenpop.daemon.runtime, screenpop.simulator.server, screenpop.db.migrations, screenpop.tray.config;"
             "import importlib.util as u; print(u.find_spec('gi'), u.find_spec('pystray'))")
    out = subprocess.run([str(venv / "bin/python"), "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None"]  # the daemon install pulls in no desktop stack
    tray = subprocess.run([str(venv / "bin/screenpop"), "tray", "--token", "x", "--config", str(tmp_path / "t.toml")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert tray.returncode == 1 and "pip install 'screenpop[tray]'" in tray.stderr
