"""Clean Debian and Ubuntu roots for package tests: debootstrap once per release, cached as a tarball outside the
repository.

A cached root is minbase with its package lists fetched and the .debs the screenpop package depends on (and, for
building the package there, python3-venv) already downloaded, so a warm run unpacks it and installs without the
network while apt still resolves the package's Depends. Commands run in it through chroot; the root shares the
host's network namespace, so the host's loopback (the simulator) is the root's loopback.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("SCREENPOP_TEST_CACHE", "/var/cache/screenpop-tests"))
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
# Ubuntu's archive keys, from the archive's own ubuntu-keyring package (jammy's), checked against this digest
_UBUNTU_KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb"
_UBUNTU_KEYRING_SHA256 = "0d0e7ed6b112f5d03eabf3c7eb01ebdacf9c57714b279e90495cfc58c8c4520f"


def mirror() -> str:
    """The Debian mirror this machine's apt uses for main (deb822 or one-line sources), else deb.debian.org."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        m = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", text, re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Release:
    """A release to debootstrap: its suite, archive, components and what its cached root has downloaded."""

    suite: str
    ubuntu: bool = False
    # what the package (or building it) pulls in from the archive; bump `generation` when this list changes
    preload: tuple[str, ...] = ("python3", "adduser", "procps")
    generation: int = 2
    flavour: str = "minbase"
    install: tuple[str, ...] = ()  # installed in the cached root, not only downloaded

    @property
    def mirror(self) -> str:
        if not self.ubuntu:
            return mirror()
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
        return "http://archive.ubuntu.com/ubuntu" if arch in ("amd64", "i386") else "http://ports.ubuntu.com/ubuntu-ports"

    @property
    def tarball(self) -> Path:
        return CACHE / f"{self.suite}-{self.flavour}-{self.generation}.tar"

    def debootstrap_args(self, work: Path) -> list[str]:
        """Components, and for Ubuntu the archive keyring (the host's debootstrap knows only Debian's keys)."""
        if not self.ubuntu:
            return []
        return ["--components=main,universe", f"--keyring={ubuntu_keyring(work, self.mirror)}"]


BOOKWORM = Release("bookworm")
# Ubuntu 22.04, the oldest release the package is for (Python 3.10); universe has python3-venv for building there
JAMMY = Release("jammy", ubuntu=True, preload=("python3", "adduser", "procps", "python3-venv"))
# Debian 13, the newest release (Python 3.13)
TRIXIE = Release("trixie", preload=("python3", "adduser", "procps", "python3-venv"))
# Debian 12 that boots (tests/debvm.py): a kernel, systemd as init, networkd for the virtual machine's network
BOOKWORM_BOOT = Release("bookworm", flavour="boot",
                        install=("systemd-sysv", "dbus", "udev", "linux-image-amd64", "initramfs-tools"))


def ubuntu_keyring(work: Path, mirror: str) -> Path:
    """Ubuntu's archive keyring, taken from the ubuntu-keyring package fetched from Ubuntu's archive and checked
    against the digest recorded here (the package is fetched over plain HTTP)."""
    deb = work / "ubuntu-keyring.deb"
    with urllib.request.urlopen(f"{mirror}/{_UBUNTU_KEYRING_DEB}", timeout=60) as response:
        deb.write_bytes(response.read())
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    if digest != _UBUNTU_KEYRING_SHA256:
        raise RuntimeError(f"{_UBUNTU_KEYRING_DEB} has SHA-256 {digest}, not the recorded {_UBUNTU_KEYRING_SHA256}")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "keyring")], check=True)
    return work / "keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg"


def ensure_tarball(release: Release) -> Path:
    """The release's cached root tarball, made now with debootstrap when missing (about half a minute with a near
    mirror)."""
    if release.tarball.is_file():
        return release.tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="make-") as tmp:
        root = Path(tmp) / "root"
        result = subprocess.run(["debootstrap", "--variant=minbase", *release.debootstrap_args(Path(tmp)),
                                 release.suite, str(root), release.mirror], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"debootstrap {release.suite} from {release.mirror} failed:\n"
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        with DebRoot(root) as deb:
            deb.run("apt-get", "clean")
            deb.run("apt-get", "update", "-q")
            deb.run("apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends", *release.preload)
            if release.install:
                deb.run("apt-get", "install", "-y", "-q", "--no-install-recommends", *release.install)
        partial = Path(tmp) / "root.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True)
        os.replace(partial, release.tarball)
    return release.tarball


class DebRoot:
    """A root directory in use through chroot while inside the `with` block: bound onto itself (a mount point,
    so `unshare --mount` in it can make its mounts private, as a build there needs) with /proc mounted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def unpack(cls, dest: Path, release: Release = BOOKWORM) -> DebRoot:
        """A fresh copy of the release's cached root at dest."""
        dest.mkdir(parents=True)
        subprocess.run(["tar", "--numeric-owner", "-xpf", str(ensure_tarball(release)), "-C", str(dest)], check=True)
        return cls(dest)

    def __enter__(self) -> DebRoot:
        subprocess.run(["mount", "--bind", str(self.path), str(self.path)], check=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(self.path / "proc")], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "--lazy", str(self.path / "proc")], check=False)
        subprocess.run(["umount", "--lazy", str(self.path)], check=False)

    def run(self, *cmd: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run cmd inside the root as root; output captured as text; a failure shows it."""
        result = subprocess.run(["chroot", str(self.path), *cmd], capture_output=True, text=True,
                                env={**_ENV, **(env or {})})
        if check and result.returncode:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def popen(self, *cmd: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start cmd inside the root in the background, stdout and stderr to log."""
        with open(log, "ab") as out:
            return subprocess.Popen(["chroot", str(self.path), *cmd], stdout=out, stderr=subprocess.STDOUT,
                                    env={**_ENV, **(env or {})})

    def remove(self) -> None:
        """Delete the root, but only when nothing is mounted under it any more."""
        top = str(self.path.resolve())
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        if any(m == top or m.startswith(top + "/") for m in mounts):
            raise RuntimeError(f"not removing {self.path}: something is still mounted under it")
        shutil.rmtree(self.path)
