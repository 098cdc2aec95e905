"""The unit files and the autostart entry, checked by systemd's and freedesktop's own tools (installed by .ci/setup).

systemd-analyze verify wants every Exec binary to exist: the test checks a copy whose /usr/bin/screenpop points at
this checkout's console script, nothing else changed.
"""
from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import EXPOSURE_MAX, ROOT

UNITS = ROOT / "systemd"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run .ci/setup", pytrace=False)
    return path


def _installed_copy(tmp_path: Path, name: str) -> Path:
    """The unit with ExecStart on this checkout's screenpop instead of the packaged /usr/bin/screenpop."""
    screenpop = Path(sys.executable).with_name("screenpop")
    assert screenpop.exists()
    text = (UNITS / name).read_text(encoding="utf-8")
    assert "ExecStart=/usr/bin/screenpop " in text
    copy = tmp_path / name
    copy.write_text(text.replace("/usr/bin/screenpop", str(screenpop)), encoding="utf-8")
    return copy


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)


def test_daemon_unit_verifies(tmp_path):
    result = _run(_tool("systemd-analyze"), "verify", "--man=no", str(_installed_copy(tmp_path, "screenpop-daemon.service")))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_tray_user_unit_verifies(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path)}
    unit = _installed_copy(tmp_path, "screenpop-tray.service")
    result = _run(_tool("systemd-analyze"), "verify", "--user", "--man=no", str(unit), env=env)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read(unit)
    assert parsed["Unit"]["PartOf"] == parsed["Install"]["WantedBy"] == "graphical-session.target"
    assert parsed["Service"]["Restart"] == "on-failure"


def test_daemon_unit_exposure_is_at_most_the_documented_score(tmp_path):
    result = _run(_tool("systemd-analyze"), "security", "--offline=yes", f"--threshold={round(EXPOSURE_MAX * 10)}",
                  str(_installed_copy(tmp_path, "screenpop-daemon.service")))
    score = re.search(r"Overall exposure level for screenpop-daemon\.service: (\d+\.\d+)", result.stdout)
    assert score and result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert float(score.group(1)) <= EXPOSURE_MAX
    doc = (ROOT / "docs" / "systemd.md").read_text(encoding="utf-8")
    assert f"exposure level {EXPOSURE_MAX}" in doc


def test_daemon_unit_is_notify_with_watchdog_and_reload():
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read(UNITS / "screenpop-daemon.service")
    service = parsed["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main" and service["WatchdogSec"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID" and service["Restart"] == "on-failure"
    assert service["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"


def test_daemon_unit_has_open_files_for_the_connection_cap_and_the_trays():
    from screenpop.daemon.config import HttpConfig
    from screenpop.daemon.web.server import SPARE_FILES

    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read(UNITS / "screenpop-daemon.service")
    trays = 5000  # event streams do not count against max_connections; each is an open file
    assert int(parsed["Service"].get("LimitNOFILE", "1024")) >= HttpConfig().max_connections + SPARE_FILES + trays


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", value).groups()
    return float(number) / (1000 if unit == "ms" else 1)


def test_daemon_restarts_within_a_second_and_systemd_never_gives_up_on_it():
    """After kill -9 the daemon is blind until it follows FreeSWITCH again; a daemon that cannot start yet (its
    database not up) must be retried, not left failed by the start rate limit."""
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read(UNITS / "screenpop-daemon.service")
    restart = _seconds(parsed["Service"]["RestartSec"])
    assert restart <= 1.0
    interval, burst = _seconds(parsed["Unit"]["StartLimitIntervalSec"]), int(parsed["Unit"]["StartLimitBurst"])
    assert interval / restart < burst, "failing starts, RestartSec apart, would exceed the start limit"


def test_autostart_entry_is_valid_and_leaves_systemd_sessions_to_the_user_unit():
    entry = UNITS / "screenpop-tray.desktop"
    result = _run(_tool("desktop-file-validate"), str(entry))
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str
    parsed.read(entry)
    desktop = parsed["Desktop Entry"]
    assert desktop["Exec"] == "screenpop tray" and desktop["X-GNOME-Autostart-enabled"] == "true"
    assert desktop["X-systemd-skip"] == desktop["X-GNOME-HiddenUnderSystemd"] == "true"


def test_sysusers_entry_creates_the_service_user(tmp_path):
    (tmp_path / "etc").mkdir()
    result = _run(_tool("systemd-sysusers"), "--dry-run", f"--root={tmp_path}", str(UNITS / "screenpop.sysusers"))
    assert result.returncode == 0, result.stderr
    assert "Creating user 'screenpop'" in result.stdout + result.stderr
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read(UNITS / "screenpop-daemon.service")
    assert parsed["Service"]["User"] == parsed["Service"]["Group"] == "screenpop"


def test_daemon_unit_puts_the_daemon_first_and_not_its_children():
    """The daemon above the host's ordinary work (a negative nice, not real time); its children, the analysis
    process, start back at nice 0 (reset on fork), not at the daemon's priority (docs/systemd.md, Scheduling)."""
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read(UNITS / "screenpop-daemon.service")
    service = parsed["Service"]
    assert -20 < int(service["Nice"]) < 0
    assert service["CPUSchedulingPolicy"] == "other" and service["CPUSchedulingResetOnFork"] == "yes"
    assert service["RestrictRealtime"] == "yes"
