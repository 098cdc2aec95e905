"""A clean Debian 12 root for package tests: debootstrap once, cached as a tarball outside the repository.

The cached root is minbase bookworm with its package lists fetched and the .debs the screenpop package depends on
already downloaded, so a warm run unpacks it and installs without the network while apt still resolves the
package's Depends. Commands run in it through chroot; the root shares the host's network namespace, so the
host's loopback (the simulator) is the root's loopback.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("SCREENPOP_TEST_CACHE", "/var/cache/screenpop-tests"))
SUITE = "bookworm"
# what the package pulls in from the archive; bump the tarball's name when this list changes
PRELOAD = ["python3", "adduser"]
TARBALL = CACHE / f"{SUITE}-minbase-1.tar"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}


def mirror() -> str:
    """The Debian mirror this machine's apt uses for main (deb822 or one-line sources), else deb.debian.org."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        m = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", text, re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def ensure_tarball() -> Path:
    """The cached root tarball, made now with debootstrap when missing (about half a minute with a near mirror)."""
    if TARBALL.is_file():
        return TARBALL
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="make-") as tmp:
        root = Path(tmp) / "root"
        result = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror()],
                                capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"debootstrap {SUITE} from {mirror()} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        with DebRoot(root) as deb:
            deb.run("apt-get", "clean")
            deb.run("apt-get", "update", "-q")
            deb.run("apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends", *PRELOAD)
        partial = Path(tmp) / "root.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True)
        os.replace(partial, TARBALL)
    return TARBALL


class DebRoot:
    """A root directory in use through chroot, with /proc mounted while inside the `with` block."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def unpack(cls, dest: Path) -> DebRoot:
        """A fresh copy of the cached root at dest."""
        dest.mkdir(parents=True)
        subprocess.run(["tar", "--numeric-owner", "-xpf", str(ensure_tarball()), "-C", str(dest)], check=True)
        return cls(dest)

    def __enter__(self) -> DebRoot:
        subprocess.run(["mount", "-t", "proc", "proc", str(self.path / "proc")], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "--lazy", str(self.path / "proc")], check=False)

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
        inside = str(self.path.resolve()) + "/"
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        if any(m.startswith(inside) for m in mounts):
            raise RuntimeError(f"not removing {self.path}: something is still mounted under it")
        shutil.rmtree(self.path)
