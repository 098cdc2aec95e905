#!/usr/bin/env python3
"""Build screenpop_<version>_<arch>.deb: the daemon in a private virtualenv at /opt/screenpop (docs/packaging.md).

The virtualenv is created at its real path, /opt/screenpop, inside a private mount namespace (a tmpfs over /opt,
the staging folder bound onto /opt/screenpop), so every path pip writes (script shebangs, bytecode, RECORD) is the
installed one and nothing needs rewriting; the host's /opt is never touched. Run it with the project's .venv
python (it needs `build` and pip 22.3 or newer); the packaged interpreter is the target release's /usr/bin/python3.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (Ubuntu 22.04): the `build` package brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PREFIX = "/opt/screenpop"
UNIT = "screenpop-daemon.service"
DOCS = ("configuration.md", "systemd.md", "packaging.md")
MAINTAINER = (f"{os.environ.get('DEBFULLNAME') or 'screenpop maintainers'} "
              f"<{os.environ.get('DEBEMAIL') or 'maintainers@screenpop.invalid'}>")
DESCRIPTION = """\
screen-pop daemon for FreeSWITCH call centres
 Follows FreeSWITCH's event socket, tracks every call, looks the caller up,
 records calls in SQLite or PostgreSQL and pushes customer cards to the
 operators' tray clients over Server-Sent Events.
 .
 The daemon and its Python dependencies live in a private virtualenv in
 /opt/screenpop."""
# manylinux tags before PEP 600 named by year: the glibc each one needs
_MANYLINUX_GLIBC = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}

# In a private mount namespace: /opt becomes a tmpfs that shows the host's /opt entries again (bound back, so
# pip settings pointing there still work) except screenpop, which is the staging folder.
_NAMESPACE_SCRIPT = """set -e
hostopt=$1; stage=$2; python=$3; shift 3
mkdir "$hostopt"
mount --rbind /opt "$hostopt"
mount -t tmpfs -o mode=0755 screenpop-build /opt
for entry in "$hostopt"/* "$hostopt"/.[!.]*; do
    name=${entry##*/}
    if [ -e "$entry" ] && [ "$name" != screenpop ]; then
        if [ -d "$entry" ]; then mkdir "/opt/$name"; else touch "/opt/$name"; fi
        mount --rbind "$entry" "/opt/$name"
    fi
done
mkdir /opt/screenpop
mount --bind "$stage" /opt/screenpop
"$python" -m venv --without-pip /opt/screenpop
exec "$@"
"""


def project_version() -> str:
    """The version in pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def python_version(python: str) -> tuple[int, int]:
    """major, minor of the interpreter the package will run on."""
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


def build_wheel(out: Path) -> Path:
    """The project's wheel, built from its sdist as `python -m build` does."""
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True,
                   stdout=subprocess.DEVNULL)
    return next(out.glob("screenpop-*.whl"))


def make_venv(stage: Path, python: str, wheel: Path, cache: Path | None) -> None:
    """/opt/screenpop in the staging tree: from cache when it holds one made from the same wheel and interpreter."""
    target = stage / PREFIX.lstrip("/")
    with zipfile.ZipFile(wheel) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        key = hashlib.sha256(zf.read(record) + python.encode()).hexdigest()[:16]
    cached = cache / key if cache else None
    if cached and cached.is_dir():
        shutil.copytree(cached, target, symlinks=True)
        return
    target.mkdir(parents=True)
    unshare = ["unshare", "--mount"] + (["--map-root-user"] if os.geteuid() else [])
    # --prefer-binary: a dependency whose newest release has no wheel for this interpreter (pocketsphinx 5.1 has none
    # for Python 3.10 or 3.12) comes from its newest release that has one, never from an sdist needing a compiler
    pip = [sys.executable, "-m", "pip", "--python", f"{PREFIX}/bin/python", "install", "--quiet", "--prefer-binary",
           "--disable-pip-version-check", "--no-warn-script-location", str(wheel)]
    subprocess.run([*unshare, "sh", "-c", _NAMESPACE_SCRIPT, "sh", str(stage.parent / "host-opt"), str(target),
                    python, *pip], check=True)
    for lib in target.rglob("*.so*"):
        if lib.is_file() and not lib.is_symlink():
            lib.chmod(0o644)  # a shared library is loaded, not run
    if cached:
        shutil.rmtree(cache, ignore_errors=True)  # one entry: the last build
        shutil.copytree(target, cached, symlinks=True)


def glibc_needed(venv: Path) -> tuple[int, int]:
    """The newest glibc any installed binary wheel is tagged for (manylinux), for the libc6 dependency."""
    need = (2, 5)
    for wheel_file in venv.glob("lib/python*/site-packages/*.dist-info/WHEEL"):
        for line in wheel_file.read_text(encoding="utf-8").splitlines():
            m = re.match(r"Tag: .*-(manylinux(?:_(\d+)_(\d+)|\d+))_", line)
            if m:
                need = max(need, (int(m.group(2)), int(m.group(3))) if m.group(2) else _MANYLINUX_GLIBC[m.group(1)])
    return need


def write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """A file in the staging tree with its parents and mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def changelog(version: str) -> bytes:
    """A one-entry Debian changelog, gzipped reproducibly (lintian wants one)."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")
    text = f"screenpop ({version}) unstable; urgency=medium\n\n  * Built from the screenpop tree.\n\n -- {MAINTAINER}  {when}\n"
    return gzip.compress(text.encode(), mtime=0, compresslevel=9)


def stage_files(stage: Path, version: str, unit: Path) -> None:
    """Everything outside the virtualenv: command, unit, config, docs, maintainer scripts."""
    (stage / "usr/bin").mkdir(parents=True)
    (stage / "usr/bin/screenpop").symlink_to(f"{PREFIX}/bin/screenpop")
    write(stage / "lib/systemd/system" / UNIT, unit.read_bytes())
    # the same user postinst makes with adduser, declared for systemd-sysusers too
    write(stage / "usr/lib/sysusers.d/screenpop.conf", (ROOT / "systemd/screenpop.sysusers").read_bytes())
    write(stage / "etc/screenpop/screenpop.toml", (ROOT / "packaging/screenpop.toml").read_bytes(), 0o640)
    doc = stage / "usr/share/doc/screenpop"
    write(doc / "copyright", (HERE / "deb/copyright").read_bytes())
    write(doc / "changelog.Debian.gz", changelog(version))
    for page in DOCS:  # the unit's Documentation= names systemd.md here
        write(doc / page, (ROOT / "docs" / page).read_bytes())
    write(stage / "usr/share/lintian/overrides/screenpop", (HERE / "deb/lintian-overrides").read_bytes())
    for script in ("postinst", "prerm", "postrm"):
        write(stage / "DEBIAN" / script, (HERE / "deb" / script).read_bytes(), 0o755)
    write(stage / "DEBIAN/conffiles", "/etc/screenpop/screenpop.toml\n")
    for path in stage.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def control(stage: Path, version: str, arch: str, py: tuple[int, int]) -> None:
    """DEBIAN/control and DEBIAN/md5sums for the staged tree."""
    sums, size = [], 0
    for path in sorted(stage.rglob("*")):
        rel = path.relative_to(stage).as_posix()
        if rel.startswith(("DEBIAN", "etc/")) or path.is_dir() and not path.is_symlink():
            continue
        if path.is_symlink():
            size += 1
            continue
        data = path.read_bytes()
        size += (len(data) + 1023) // 1024
        sums.append(f"{hashlib.md5(data).hexdigest()}  {rel}\n")
    libc = glibc_needed(stage / PREFIX.lstrip("/"))
    depends = (f"python{py[0]}.{py[1]}, python3 (>= {py[0]}.{py[1]}), python3 (<< {py[0]}.{py[1] + 1}), "
               f"libc6 (>= {libc[0]}.{libc[1]}), adduser, procps")  # procps: the unit's ExecReload=/bin/kill
    write(stage / "DEBIAN/md5sums", "".join(sums))
    write(stage / "DEBIAN/control", (
        f"Package: screenpop\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\n"
        f"Installed-Size: {size}\nDepends: {depends}\nSection: comm\nPriority: optional\n"
        f"Description: {DESCRIPTION}\n"
    ))


def build(out: Path, version: str, unit: Path, python: str, wheel: Path | None, compress: str = "xz",
          venv_cache: Path | None = None) -> Path:
    """Stage the package in a temporary folder and pack it with dpkg-deb; returns the .deb's path."""
    arch = subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()
    py = python_version(python)
    python = f"/usr/bin/python{py[0]}.{py[1]}"
    with tempfile.TemporaryDirectory(prefix="screenpop-deb-") as tmp:
        stage = Path(tmp) / "root"
        make_venv(stage, python, wheel or build_wheel(Path(tmp) / "dist"), venv_cache)
        stage_files(stage, version, unit)
        control(stage, version, arch, py)
        out.mkdir(parents=True, exist_ok=True)
        deb = out / f"screenpop_{version}_{arch}.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compress}", "--build", str(stage), str(deb)], check=True,
                       stdout=subprocess.DEVNULL)
    return deb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the .deb goes (default dist/)")
    parser.add_argument("--version", default=os.environ.get("SCREENPOP_DEB_VERSION") or f"{project_version()}-1",
                        help="Debian version (default $SCREENPOP_DEB_VERSION, else <pyproject version>-1)")
    parser.add_argument("--unit", type=Path, default=ROOT / "systemd" / UNIT, help="the daemon's systemd unit")
    parser.add_argument("--python", default="/usr/bin/python3",
                        help="the target release's interpreter (default /usr/bin/python3)")
    parser.add_argument("--wheel", type=Path, help="a built screenpop wheel (default: build one now)")
    parser.add_argument("--compress", choices=["xz", "zstd", "gzip"], default="xz",
                        help="dpkg-deb compression (default xz: smallest; zstd packs in a second)")
    parser.add_argument("--venv-cache", type=Path,
                        help="keep the built virtualenv here and reuse it while the wheel and interpreter are the same")
    args = parser.parse_args(argv)
    if not args.unit.is_file():
        parser.error(f"no systemd unit at {args.unit}")
    pip_version = importlib.metadata.version("pip")
    if tuple(int(part) for part in re.findall(r"\d+", pip_version)[:2]) < (22, 3):
        parser.error(f"pip {pip_version} is too old to install into the package's interpreter (pip --python needs "
                     f"22.3): {sys.executable} -m pip install --upgrade pip")
    print(build(args.out.resolve(), args.version, args.unit.resolve(), args.python, args.wheel, args.compress,
                args.venv_cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
