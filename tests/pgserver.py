"""A PostgreSQL for the test run: the one at SCREENPOP_TEST_PG / 127.0.0.1:5432 if it answers, else a private
cluster started from the installed PostgreSQL binaries in a temporary folder and stopped when the run ends."""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres system user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _start_private() -> str:
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        raise RuntimeError("no PostgreSQL server reachable and none installed (run .ci/setup)")
    bindir = os.path.dirname(binaries[-1])
    folder = tempfile.mkdtemp(prefix="screenpop-pg-")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = os.path.join(folder, "data")
    port = _free_port()
    subprocess.run(_as_postgres([f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-l", f"{folder}/log", "-w", "start", "-o",
                                 f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"]),
                   check=True, stdout=subprocess.DEVNULL)
    atexit.register(lambda: (subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"]),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                             shutil.rmtree(folder, ignore_errors=True)))
    deadline = time.monotonic() + 20
    while not _answers("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(_as_postgres([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "test"]),
                   check=True)
    return f"postgresql://postgres@127.0.0.1:{port}/test"


def server_url() -> str:
    """The configured server if it answers, else a private one (started once per test run)."""
    url = os.environ.get("SCREENPOP_TEST_PG")
    if url:
        return url
    if _answers("127.0.0.1", 5432):
        return DEFAULT_URL
    os.environ["SCREENPOP_TEST_PG"] = _start_private()
    return os.environ["SCREENPOP_TEST_PG"]
