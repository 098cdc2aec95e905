"""The Debian package end to end in a clean Debian 12 root: install, run against the simulator, upgrade with data
in place, remove, purge; the installed unit run by systemd in a booted Debian 12; and built and installed on
Ubuntu 22.04 and Debian 13 (docs/packaging.md)."""
from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from screenpop.db.migrations import MIGRATIONS
from screenpop.db.models import SchemaVersion
import debvm
from debroot import BOOKWORM_BOOT, JAMMY, TRIXIE, DebRoot, Release, ensure_tarball
from support import CAPTURES, EXPOSURE_MAX, ROOT, SLACK, built_once, free_port, simulator, wait_for, write_config

pytestmark = [
    pytest.mark.packaging,
    # debootstrap, two package builds and a QEMU boot: minutes each on a 2-core machine busy with other work
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("dpkg-deb"),
                       reason="needs root, debootstrap and dpkg-deb (.ci/setup installs them)"),
]

UNIT = "screenpop-daemon.service"
CONFIG = "/etc/screenpop/screenpop.toml"
STATE = "/var/lib/screenpop"


def build_deb(out: Path, version: str, wheel: Path, cache: Path, unit: Path, compress: str) -> Path:
    """packaging/build-deb.py as a developer runs it, from a built wheel, the Debian version bumped through the
    environment."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "packaging/build-deb.py"), "--out", str(out), "--unit", str(unit),
         "--wheel", str(wheel), "--venv-cache", str(cache), "--compress", compress],
        capture_output=True, text=True, env={**os.environ, "SCREENPOP_DEB_VERSION": version},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def debs(dists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Version A (xz, as shipped) and a newer B (zstd) from one virtualenv build, both from the session's wheel
    (build-deb.py building its own wheel is what the builds on the other releases run); built once for the run's
    workers (support.built_once)."""
    def build(tmp: Path) -> dict[str, Path]:
        unit = ROOT / "systemd" / UNIT
        return {
            "A": build_deb(tmp / "out", "0.1.0-1", dists["wheel"], tmp / "venv-cache", unit, "xz"),
            "B": build_deb(tmp / "out", "0.1.0-2", dists["wheel"], tmp / "venv-cache", unit, "zstd"),
        }

    return built_once(tmp_path_factory, "debs", build)


@pytest.fixture(scope="session")
def boot_root() -> Path:
    """The booted Debian's cached root (tests/debroot.py). Asked for before `debs`, so on a cold cache its
    debootstrap runs while another worker builds the packages."""
    return ensure_tarball(BOOKWORM_BOOT)


@pytest.fixture
def debroot(tmp_path: Path):
    root = DebRoot.unpack(tmp_path / "root")
    try:
        with root:
            yield root
    finally:
        root.remove()


def unit_service(root: DebRoot) -> dict[str, str]:
    """The [Service] keys of the installed unit (the last value of each)."""
    keys: dict[str, str] = {}
    for line in (root.path / "lib/systemd/system" / UNIT).read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            keys[key.strip()] = value.strip()
    return keys


def start_daemon(root: DebRoot, log: Path) -> subprocess.Popen:
    """The daemon as systemd would start it from the installed unit: its ExecStart exec'd as its User and Group,
    with its UMask and StateDirectory (setpriv and sh exec, so the test's signal reaches the daemon itself)."""
    unit = unit_service(root)
    user = unit["User"]
    return root.popen("setpriv", f"--reuid={user}", f"--regid={unit.get('Group', user)}", "--init-groups", "--",
                      "sh", "-c", 'umask "$0" && exec "$@"', unit.get("UMask", "0022"),
                      "env", f"STATE_DIRECTORY=/var/lib/{unit['StateDirectory']}",
                      *unit["ExecStart"].lstrip("-@+!").split(), log=log)


def stop(proc: subprocess.Popen, log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(20 * SLACK)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"daemon did not stop:\n{log.read_text()[-3000:]}") from None
    assert code == 0, log.read_text()[-3000:]


def calls(root: DebRoot) -> list[dict]:
    """`screenpop calls --json` as the admin runs it (root) inside the root."""
    out = root.run("screenpop", "calls", "--json", "--config", CONFIG).stdout
    return [json.loads(line) for line in out.splitlines()]


def record_one_call(root: DebRoot, tmp: Path, port: int, scenario: str, before: int) -> list[dict]:
    """Start the packaged daemon, replay one captured call on the host's loopback, wait until it is stored."""
    log = tmp / f"daemon-{scenario}.log"
    daemon = start_daemon(root, log)
    sim = simulator(tmp, port, "--replay", str(CAPTURES / f"{scenario}.plain.esl"), "--speed", "0", "--linger", "2",
                    name=f"sim-{scenario}")
    try:
        wait_for(lambda: len(calls(root)) > before and calls(root)[-1]["ended_at"], 60, f"the {scenario} call")
    finally:
        sim.close()
        stop(daemon, log)
    return calls(root)


def mode_owner(root: DebRoot, path: str) -> tuple[str, str, str]:
    st = (root.path / path.lstrip("/")).stat()
    names = dict(line.split(":")[:3:2] for line in (root.path / "etc/passwd").read_text().splitlines())
    groups = dict(line.split(":")[:3:2] for line in (root.path / "etc/group").read_text().splitlines())
    return oct(stat.S_IMODE(st.st_mode)), {v: k for k, v in names.items()}[str(st.st_uid)], \
        {v: k for k, v in groups.items()}[str(st.st_gid)]


def schema_version(root: DebRoot) -> int:
    with sqlite3.connect(root.path / STATE.lstrip("/") / "screenpop.db") as db:
        return db.execute(f"SELECT MAX(version) FROM {SchemaVersion._meta.table_name}").fetchone()[0]


# Runs once in the booted guest: drives the installed daemon through systemd, reports on the serial console.
PROBE = r"""#!/bin/sh
unit=screenpop-daemon.service
say() { echo "PROBE $*" > /dev/ttyS0; }
show() { systemctl show "$unit" -p "$1" --value; }
wait_until() { n=0; until eval "$2"; do n=$((n + 1)); [ $n -ge "$1" ] && return 1; sleep 1; done; }
ended() { screenpop calls --json --config /etc/screenpop/screenpop.toml | grep -c '"ended_at": "2'; }
wait_until 600 '[ "$(show ActiveState)" = active ]'
say started "$(show ActiveState)/$(show SubState)" "$(show StatusText)"
pid=$(show MainPID)
say process $(grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/$pid/status | tr -d ' \t' | tr '\n' ' ')
wait_until 300 '[ "$(ended)" -ge 1 ]'
say calls "$(ended)"
uuid=$(screenpop calls --json --config /etc/screenpop/screenpop.toml | sed -n '1s/.*"uuid": "\([^"]*\)".*/\1/p')
say journal-call-lines "$(journalctl _SYSTEMD_UNIT=$unit -o cat | grep -c "$uuid")"
say journal-priorities $(journalctl _SYSTEMD_UNIT=$unit -o export | sed -n 's/^PRIORITY=//p' | sort -u)
say journal-raw-prefixes "$(journalctl _SYSTEMD_UNIT=$unit -o cat | grep -c '^<[0-7]>')"
systemctl reload "$unit"
say reload $? "$(show ActiveState)" "$([ "$(show MainPID)" = "$pid" ] && echo same-process)"
journalctl -u "$unit" -p warning -o cat | sed 's/^/PROBE warning /' > /dev/ttyS0
say warnings "$(journalctl -u "$unit" -p warning -o cat | wc -l)"
kill -STOP "$pid"
wait_until 300 '[ "$(show NRestarts)" = 1 ] && [ "$(show ActiveState)" = active ]'
say watchdog "$(show NRestarts)" "$([ "$(show MainPID)" != "$pid" ] && echo new-process)"
journalctl -u "$unit" -o cat | grep -i 'watchdog timeout' | head -1 | sed 's/^/PROBE journal /' > /dev/ttyS0
systemctl stop "$unit"
say stopped "$(show Result)" "$(show ExecMainStatus)"
say security "$(systemd-analyze security "$unit" --no-pager | tail -1)"
systemctl start "$unit"
pid=$(show MainPID)
apt-get install -y -q --no-install-recommends /root/B.deb > /tmp/apt.log 2>&1
rc=$?
tail -3 /tmp/apt.log | sed 's/^/PROBE apt /' > /dev/ttyS0
say upgrade $rc "$(dpkg-query -W -f='${Version}' screenpop)" "$(show ActiveState)" \
    "$([ "$(show MainPID)" != "$pid" ] && echo restarted)"
say calls-after "$(ended)"
pid=$(show MainPID)
apt-get remove -y -q screenpop > /dev/null 2>&1
say removed $? "$(kill -0 "$pid" 2>/dev/null || echo daemon-gone)"
apt-get purge -y -q screenpop > /dev/null 2>&1
say purged $? "$([ -e /etc/screenpop ] || echo config-gone)" "$([ -e /var/lib/screenpop ] || echo state-gone)"
systemctl poweroff
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="boots an amd64 Debian under qemu-system-x86_64")
@pytest.mark.skipif(not shutil.which("qemu-system-x86_64") or not shutil.which("mke2fs"),
                    reason="needs qemu-system-x86 and e2fsprogs (.ci/setup installs them)")
def test_installed_unit_runs_under_systemd_in_its_sandbox(boot_root: Path, debs: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """Debian 12 booted with systemd as PID 1, the package installed: the unit starts the daemon in its sandbox
    (Type=notify, seccomp, no capabilities), it records a call (its UUID in the journal, at the priorities the
    daemon's prefixes give), reloads in place, is restarted by the watchdog when its hub stops, stops cleanly,
    and `systemd-analyze security` on the running system gives the score docs/systemd.md states. Then apt with
    systemd running: the upgrade restarts it, remove stops it, purge cleans up."""
    port = free_port()
    sim = simulator(tmp_path, port, "--replay", str(CAPTURES / "inbound-answered.plain.esl"), "--speed", "0",
                    "--linger", "600", name="sim-vm")
    root = DebRoot.unpack(tmp_path / "root", BOOKWORM_BOOT)
    try:
        with root:
            shutil.copy(debs["A"], root.path / "tmp")
            shutil.copy(debs["B"], root.path / "root/B.deb")  # the probe upgrades to it (boot empties /tmp)
            root.run("apt-get", "install", "-y", "-q", "--no-install-recommends", f"/tmp/{debs['A'].name}")
        config = root.path / CONFIG.lstrip("/")
        write_config(config, port, "", http_port=8080)
        config.write_text(config.read_text().replace("[freeswitch]\n", f'[freeswitch]\nhost = "{debvm.HOST}"\n'))
        # a short watchdog, so that its restart is seen in seconds (the shipped unit says 30 s)
        dropin = root.path / "etc/systemd/system" / f"{UNIT}.d"
        dropin.mkdir(parents=True)
        (dropin / "test.conf").write_text("[Service]\nWatchdogSec=10s\nTimeoutAbortSec=3s\n")
        probe = root.path / "usr/local/sbin/screenpop-probe"
        probe.write_text(PROBE)
        probe.chmod(0o755)
        (root.path / "etc/systemd/system/screenpop-probe.service").write_text(
            "[Unit]\nAfter=multi-user.target\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/screenpop-probe\n"
            "[Install]\nWantedBy=multi-user.target\n")
        (root.path / "etc/systemd/system/multi-user.target.wants/screenpop-probe.service").symlink_to(
            "/etc/systemd/system/screenpop-probe.service")
        # TCG takes minutes on a busy machine; the guest powers itself off when the probe is done
        console = debvm.boot(root.path, tmp_path / "disk.img", tmp_path / "console.log", timeout=1200)
    finally:
        sim.close()
        root.remove()
    said = {m.group(1): m.group(2).strip() for m in re.finditer(r"PROBE (\S+) ?(.*)", console)}
    shown = "\n".join(f"{k}: {v}" for k, v in said.items()) or console[-3000:]
    assert said.get("started", "").startswith("active/running "), shown
    assert sorted(said.get("process", "").split()) == ["CapEff:0000000000000000", "NoNewPrivs:1", "Seccomp:2"], shown
    assert said.get("calls") == "1", shown
    # journald read the daemon's <N> prefixes as priorities, and the call can be followed by its UUID
    assert int(said.get("journal-call-lines", "0")) >= 1 and said.get("journal-raw-prefixes") == "0", shown
    assert "6" in said.get("journal-priorities", "").split(), shown
    assert said.get("reload") == "0 active same-process", shown
    assert said.get("warnings") == "0", f"a clean start and reload, yet the journal warns:\n{shown}"
    assert said.get("watchdog") == "1 new-process" and "atchdog timeout" in said.get("journal", ""), shown
    assert said.get("stopped") == "success 0", shown
    exposure = re.search(r"Overall exposure level for screenpop-daemon\.service: (\d+\.\d+)", said.get("security", ""))
    assert exposure and float(exposure.group(1)) <= EXPOSURE_MAX, shown
    # what a Debian admin expects with systemd running: upgrade restarts the daemon, remove stops it
    assert said.get("upgrade") == "0 0.1.0-2 active restarted", shown
    assert said.get("calls-after") == "1", "the call stored once, through the watchdog's restart and the upgrade"
    assert said.get("removed") == "0 daemon-gone", shown
    assert said.get("purged") == "0 config-gone state-gone", shown



def test_install_run_upgrade_remove_purge(debs: dict[str, Path], debroot: DebRoot, tmp_path: Path) -> None:
    root = debroot
    latest = MIGRATIONS[-1].version
    for deb in debs.values():
        shutil.copy(deb, root.path / "tmp")

    # install: apt resolves the Depends (python3, adduser, procps) from the root's own archive
    out = root.run("apt-get", "install", "-y", "-q", "--no-install-recommends", f"/tmp/{debs['A'].name}").stdout
    assert f"schema version {latest} (applied" in out
    assert mode_owner(root, "/etc/screenpop") == ("0o750", "root", "screenpop")
    assert mode_owner(root, CONFIG) == ("0o640", "root", "screenpop")
    assert mode_owner(root, STATE) == ("0o700", "screenpop", "screenpop")  # the unit's StateDirectoryMode
    assert (root.path / "lib/systemd/system" / UNIT).read_bytes() == (ROOT / "systemd" / UNIT).read_bytes()
    assert (root.path / "usr/share/doc/screenpop/systemd.md").is_file()  # the unit's Documentation=
    # adduser made the user systemd-sysusers would: the same name, description, home and shell
    declared = shlex.split((root.path / "usr/lib/sysusers.d/screenpop.conf").read_text().splitlines()[-1])
    gecos, home, shell = root.run("getent", "passwd", "screenpop").stdout.strip().split(":")[4:]
    assert [declared[1], declared[3], declared[4], declared[5]] == ["screenpop", gecos.split(",")[0], home, shell]
    assert mode_owner(root, f"{STATE}/screenpop.db")[1:] == ("screenpop", "screenpop")
    assert (root.path / "etc/systemd/system/multi-user.target.wants" / UNIT).is_symlink()
    assert "usage: screenpop" in root.run("screenpop", "--help").stdout
    # the daemon's virtualenv carries no desktop stack
    assert root.run("/opt/screenpop/bin/python", "-c", "import gi", check=False).returncode != 0
    assert root.run("/opt/screenpop/bin/python", "-c", "import gevent, psycopg, PIL, screenpop.daemon.runtime").returncode == 0

    # the admin points it at FreeSWITCH (here the simulator on the host's loopback)
    port = free_port()
    write_config(root.path / CONFIG.lstrip("/"), port, "", http_port=free_port())
    config_text = (root.path / CONFIG.lstrip("/")).read_text()
    first = record_one_call(root, tmp_path, port, "inbound-answered", 0)
    assert len(first) == 1 and first[0]["answered_by"]

    # an older schema on disk: the upgrade's postinst must bring it up to date, keeping the data
    with sqlite3.connect(root.path / STATE.lstrip("/") / "screenpop.db") as db:
        db.execute(f"DELETE FROM {SchemaVersion._meta.table_name} WHERE version = ?", (latest,))
    out = root.run("apt-get", "install", "-y", "-q", f"/tmp/{debs['B'].name}").stdout
    assert f"schema version {latest} (applied {latest})" in out
    assert root.run("dpkg-query", "-W", "-f=${Version}", "screenpop").stdout == "0.1.0-2"
    assert schema_version(root) == latest
    assert (root.path / CONFIG.lstrip("/")).read_text() == config_text  # the admin's edit kept
    assert mode_owner(root, CONFIG) == ("0o640", "root", "screenpop")
    assert calls(root)[0]["uuid"] == first[0]["uuid"]
    second = record_one_call(root, tmp_path, port, "inbound-missed", 1)
    assert [c["uuid"] for c in second[:1]] == [first[0]["uuid"]] and len(second) == 2

    # remove: the program goes, configuration and data stay
    root.run("apt-get", "remove", "-y", "-q", "screenpop")
    assert root.run("dpkg-query", "-W", "-f=${Status}", "screenpop").stdout == "deinstall ok config-files"
    for gone in ("opt/screenpop", "usr/bin/screenpop", f"lib/systemd/system/{UNIT}"):
        assert not os.path.lexists(root.path / gone), gone
    assert (root.path / CONFIG.lstrip("/")).read_text() == config_text
    assert (root.path / STATE.lstrip("/") / "screenpop.db").is_file()

    # purge: configuration, state, unit state and overrides go; the system user stays (docs/packaging.md)
    root.run("apt-get", "purge", "-y", "-q", "screenpop")
    assert root.run("dpkg-query", "-W", "screenpop", check=False).returncode != 0
    for gone in ("etc/screenpop", STATE.lstrip("/"), f"etc/systemd/system/multi-user.target.wants/{UNIT}"):
        assert not os.path.lexists(root.path / gone), gone
    assert "screenpop" not in root.run("dpkg-statoverride", "--list", check=False).stdout
    assert root.run("getent", "passwd", "screenpop").returncode == 0



@pytest.mark.parametrize(("release", "python"), [(JAMMY, "3.10"), (TRIXIE, "3.13")], ids=["ubuntu-22.04", "debian-13"])
def test_built_on_another_release_from_the_sdist_installs_records_a_call_and_purges(release: Release, python: str,
                                                                                    dists: dict[str, Path],
                                                                                    tmp_path: Path) -> None:
    """Ubuntu 22.04 (Python 3.10) and Debian 13 (3.13): the oldest and the newest release the package is for.
    build-deb.py run there from the sdist, as docs/packaging.md tells an admin, makes a package for that
    release's interpreter, which installs, records a call and purges there."""
    sdist = dists["sdist"]
    pip_env = {key: value for key, value in os.environ.items() if key in ("PIP_INDEX_URL", "HTTPS_PROXY", "https_proxy")}
    build = DebRoot.unpack(tmp_path / "build", release)
    try:
        with build:
            build.run("apt-get", "install", "-y", "-q", "--no-install-recommends", "python3-venv")
            ca = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
            if ca.is_file():  # the certificates this machine's pip trusts (a TLS-inspecting proxy's, say)
                shutil.copy(ca, build.path / "etc/ssl/certs/host-ca.crt")
                pip_env["PIP_CERT"] = "/etc/ssl/certs/host-ca.crt"
            subprocess.run(["tar", "-xzf", str(sdist), "-C", str(build.path / "root")], check=True)
            build.run("python3", "-m", "venv", "/root/build-env")
            build.run("/root/build-env/bin/pip", "install", "-q", "build", env=pip_env)
            if release is JAMMY:  # its pip 22.0 cannot install into another interpreter: refused in words
                out = build.run("/root/build-env/bin/python", f"/root/{sdist.name[:-7]}/packaging/build-deb.py",
                                check=False)
                assert "pip 22.0.2 is too old" in out.stderr
                build.run("/root/build-env/bin/pip", "install", "-q", "--upgrade", "pip", env=pip_env)
            out = build.run("/root/build-env/bin/python", f"/root/{sdist.name[:-7]}/packaging/build-deb.py",
                            "--out", "/root", "--compress", "zstd", env=pip_env).stdout
        deb = tmp_path / Path(out.strip().splitlines()[-1]).name
        shutil.move(build.path / "root" / deb.name, deb)
    finally:
        build.remove()
    control = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True).stdout
    major, minor = python.split(".")
    assert control.startswith(f"python{python}, python3 (>= {python}), python3 (<< {major}.{int(minor) + 1})"), control

    root = DebRoot.unpack(tmp_path / "root", release)
    try:
        with root:
            shutil.copy(deb, root.path / "tmp")
            out = root.run("apt-get", "install", "-y", "-q", "--no-install-recommends", f"/tmp/{deb.name}").stdout
            assert f"schema version {MIGRATIONS[-1].version} (applied" in out
            assert root.run("/opt/screenpop/bin/python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"
                            ).stdout == f"{python}\n"
            port = free_port()
            write_config(root.path / CONFIG.lstrip("/"), port, "", http_port=free_port())
            recorded = record_one_call(root, tmp_path, port, "inbound-answered", 0)
            assert len(recorded) == 1 and recorded[0]["answered_by"]
            root.run("apt-get", "purge", "-y", "-q", "screenpop")
            for gone in ("opt/screenpop", "etc/screenpop", STATE.lstrip("/")):
                assert not os.path.lexists(root.path / gone), gone
    finally:
        root.remove()



@pytest.mark.skipif(not shutil.which("lintian"), reason="lintian not installed")
def test_lintian_clean(debs: dict[str, Path]) -> None:
    """Every lintian finding is fixed or overridden with its reason in packaging/deb/lintian-overrides."""
    result = subprocess.run(["lintian", "--fail-on", "error,warning", str(debs["A"])], capture_output=True, text=True)
    findings = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert result.returncode == 0 and not findings, result.stdout + result.stderr
