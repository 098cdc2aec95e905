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


class PrivateServer:
    """A throwaway PostgreSQL cluster in a temporary folder, with database `test`; stop() and start() again at will."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            raise RuntimeError("no PostgreSQL server reachable and none installed (run .ci/setup)")
        self.bindir = os.path.dirname(binaries[-1])
        self.folder = tempfile.mkdtemp(prefix="screenpop-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = os.path.join(self.folder, "data")
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/test"
        subprocess.run(_as_postgres([f"{self.bindir}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                                     "-E", "UTF8"]), check=True, stdout=subprocess.DEVNULL)
        self.start()
        subprocess.run(_as_postgres([f"{self.bindir}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                                     "postgres", "test"]), check=True)

    def start(self) -> None:
        subprocess.run(_as_postgres([f"{self.bindir}/pg_ctl", "-D", self.data, "-l", f"{self.folder}/log", "-w",
                                     "start", "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                                     "-c fsync=off"]), check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not _answers("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        subprocess.run(_as_postgres([f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "fast", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _start_private() -> str:
    server = PrivateServer()
    atexit.register(server.remove)
    return server.url


def server_url() -> str:
    """The configured server if it answers, else a private one (started once per test run)."""
    url = os.environ.get("SCREENPOP_TEST_PG")
    if url:
        return url
    if _answers("127.0.0.1", 5432):
        return DEFAULT_URL
    os.environ["SCREENPOP_TEST_PG"] = _start_private()
    return os.environ["SCREENPOP_TEST_PG"]
