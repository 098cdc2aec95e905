"""Helpers for tests that run the real daemon and the real simulator as processes over loopback TCP."""
from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from screenpop.db.numbers import NumberRules

ROOT = Path(__file__).resolve().parents[1]  # the repository
CAPTURES = ROOT.parent / "shared" / "esl-captures"
# the number rules of write_config's daemon: Icelandic numbers, extensions of 2-5 digits, matched on 8 digits
RULES = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)
# the captures that say what a correct tracker concludes from them (<scenario>.expected.json)
SCENARIOS = sorted(p.name[: -len(".expected.json")] for p in CAPTURES.glob("*.expected.json"))
# the daemon unit's systemd-analyze exposure score: docs/systemd.md states it; a change to the hardening must keep it
# or update both (tests/daemon/test_systemd_units.py, tests/packaging/test_deb.py)
EXPOSURE_MAX = 1.1
# Every wait in tests/ is sized for an idle machine and stretched by SLACK here: on CI's 2-core machine, busy with
# other work, processes start and run 3-4 times slower. A wait ends as soon as its condition holds, so the stretch
# costs nothing when things work; only a failing test waits it out.
SLACK = 4


def _ports() -> range:
    """Ports below the kernel's ephemeral range: no process's outgoing connection is ever given one as its source
    port, so a port a test frees (a daemon killed -9) and binds again cannot be taken meanwhile by a connection of
    some other test's (which happened to the daemon's HTTP port on a busy three-worker run)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(10000, max(low, 12000))


PORTS = _ports()
_pick = random.Random(os.getpid() ^ time.time_ns())  # each xdist worker its own sequence


def free_port() -> int:
    """A TCP port on loopback that nobody uses right now, outside the ephemeral range."""
    while True:
        port = _pick.choice(PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def built_once(tmp_path_factory, name: str, build: Callable[[Path], dict[str, Path]]) -> dict[str, Path]:
    """What build makes in a folder of its own, made once per run: on pytest-xdist workers (the packaging tier runs
    on several) the first to ask builds it under a lock in the run's shared temporary folder, the others wait for it
    and read the same paths. A build that fails is tried again by the next to ask."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = shared / f"{name}.json"
        if not made.is_file():
            folder = shared / name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            made.write_text(json.dumps({key: str(path) for key, path in build(folder).items()}))
        return {key: Path(path) for key, path in json.loads(made.read_text()).items()}


def patient(context):
    """A Playwright browser context whose waits (30 s by default) are stretched by SLACK, as every wait here is."""
    context.set_default_timeout(30_000 * SLACK)
    return context


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll predicate until it holds; fail the test with `what` after timeout seconds (stretched by SLACK)."""
    deadline = time.monotonic() + timeout * SLACK
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout * SLACK:g} s waiting for {what}")


def write_config(path: Path, port: int, db_url: str, http_port: int | None = None, http: str = "", database: str = "",
                 **extra: str) -> Path:
    """A daemon config for the tests: simulator port, database, Icelandic numbers, quick reconnects.

    http_port: where the daemon's HTTP server listens (default: a free port, so tests never collide on 8080);
    http: more lines of the [http] section, e.g. 'heartbeat = 0.3'; database: more lines of [database];
    extra: more sections, each a string of its own (analysis: off unless a test turns it on, so the daemons of tests
    that record calls spend no CPU on figures and transcripts they do not check).
    """
    http_port = http_port or free_port()
    extra = {"http": f'[http]\nlisten = "127.0.0.1:{http_port}"\n{http}', "analysis": '[analysis]\nenabled = false',
             **extra}
    path.write_text(
        f"""
[freeswitch]
port = {port}
reconnect_min = 0.2
reconnect_max = 1.0
command_timeout = 3.0

[database]
url = "{db_url}"
{database}

[numbers]
default_region = "IS"

[log]
level = "info"
""" + "".join(f"\n{v}\n" for v in extra.values()),
        encoding="utf-8",
    )
    return path


def accept_each(server: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Accept connections on server until it is closed, each handed to handle on a thread of its own."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


class Proc:
    """A child process whose stderr goes to a file the test can read on failure."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(
            [sys.executable, *args], stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def log(self) -> str:
        """What the process has printed so far."""
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout: float = 30.0) -> int:
        """The exit status, once the process ends within timeout seconds (stretched by SLACK)."""
        try:
            return self.popen.wait(timeout * SLACK)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process did not exit within {timeout * SLACK:g} s:\n{self.log()[-3000:]}") from None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the daemon must flush and exit 0 within a few seconds (stretched by SLACK)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def close(self) -> None:
        self.kill()
        self._log.close()


class Proxy(threading.Thread):
    """A TCP relay the test can cut (every connection closed, new ones refused) and restore, or freeze (the
    connections open now stay open but pass nothing either way, as behind a stuck firewall; new ones pass)."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = True
        self.socks: set[socket.socket] = set()
        self.frozen: list[threading.Event] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        accept_each(self.server, self._relay)

    def _relay(self, client: socket.socket) -> None:
        if not self.up:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target)
        except OSError:  # nobody listens there (any more): refused, as a direct connection would be
            client.close()
            return
        frozen = threading.Event()
        with self.lock:
            self.socks |= {client, upstream}
            self.frozen.append(frozen)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b, frozen), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, frozen: threading.Event) -> None:
        try:
            while (data := src.recv(65536)) and not frozen.is_set():
                dst.sendall(data)
        except OSError:
            pass
        if frozen.is_set():
            return  # the sockets stay open until cut() or close()
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def freeze(self) -> None:
        with self.lock:
            for frozen in self.frozen:
                frozen.set()

    def cut(self) -> None:
        self.up = False
        with self.lock:
            socks, self.socks = self.socks, set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.cut()
        self.server.close()


def simulator(tmp: Path, port: int, *args: str, name: str = "sim") -> Proc:
    """Start `screenpop simulate` on port with the given options; waits until it listens."""
    proc = Proc(["-m", "screenpop.daemon.cli", "simulate", "--port", str(port), *args], tmp / f"{name}.log")
    wait_for(lambda: _listening(port) or proc.popen.poll() is not None, 10, "the simulator to listen")
    return proc


def daemon(tmp: Path, config: Path, name: str = "daemon") -> Proc:
    """Start `screenpop daemon` with the config."""
    return Proc(["-m", "screenpop.daemon.cli", "daemon", "--config", str(config)], tmp / f"{name}.log")


def serving(proc: Proc, url: str, timeout: float = 20.0) -> Proc:
    """The daemon proc once its HTTP server at url answers its health check; fails with its log if it exits first."""
    wait_for(lambda: http_ready(url) or proc.popen.poll() is not None, timeout, "the daemon's HTTP server")
    assert proc.popen.poll() is None, proc.log()
    return proc


def run_calls(tmp: Path, db_url: str, *sim_args: str, timeout: float = 60.0, **sections: str) -> Path:
    """The simulator (with sim_args) into a fresh daemon on db_url; the daemon is stopped with SIGTERM once the
    simulator is done, and both must exit 0. sections: more of the daemon's config (see write_config); its path."""
    port = free_port()
    sim = simulator(tmp, port, *sim_args)
    config = write_config(tmp / "screenpop.toml", port, db_url, **sections)
    d = daemon(tmp, config)
    try:
        assert sim.wait(timeout) == 0, sim.log()
        assert d.terminate() == 0, d.log()
    finally:
        sim.close()
        d.close()
    return config


def replay(tmp_path: Path, db_url: str, scenario: str, *sim_args: str) -> None:
    """Replay one capture into a fresh daemon (run_calls)."""
    run_calls(tmp_path, db_url, "--replay", str(CAPTURES / f"{scenario}.plain.esl"), "--speed", "0", "--linger", "0.3",
              *sim_args, timeout=30)


def tls_daemon(tmp: Path, db_url: str, http: str = "") -> tuple[Proc, int, Callable[[], bool]]:
    """A daemon serving HTTPS with a fresh self-signed certificate (more [http] lines in http), its port, and a check
    that its health answers over TLS; the test is skipped where openssl is not installed."""
    import shutil
    import ssl
    from http.client import HTTPSConnection

    import pytest

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60 * SLACK)
    port = free_port()
    config = write_config(tmp / "c.toml", free_port(), db_url, http_port=port,
                          http=f'certfile = "{cert}"\nkeyfile = "{key}"\n{http}')
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False

    def answers() -> bool:
        try:
            conn = HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
            conn.request("GET", "/api/v1/health")
            return conn.getresponse().status == 200
        except OSError:
            return False

    return daemon(tmp, config), port, answers


class Started:
    """What a test started (processes, event streams, anything with close()), closed in reverse order by close()."""

    def __init__(self) -> None:
        self._open: list = []

    def keep(self, thing):
        """Close thing with the rest; thing itself."""
        self._open.append(thing)
        return thing

    def close(self) -> None:
        while self._open:
            self._open.pop().close()


def signed_in(app, token: str, next_path: str = "/"):
    """A Flask test browser signed in to the daemon's pages through a one-time link minted with token."""
    browser = app.test_client()
    minted = browser.post("/api/v1/signin-links", json={"next": next_path}, headers={"Authorization": f"Bearer {token}"})
    assert minted.status_code == 201, minted.data
    assert browser.get(minted.get_json()["url"].split("localhost", 1)[1]).status_code == 303
    return browser


def page(base: str, token: str, path: str, timeout: float = 60.0) -> tuple[int, str]:
    """A page of a running daemon at base, fetched over HTTP by a browser signed in with a one-time link minted with
    token (the link is followed to path): status and HTML."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(base + "/api/v1/signin-links", data=json.dumps({"next": path}).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        link = json.loads(r.read())["url"]
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    try:
        with opener.open(link, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def post_form(browser, path: str, data: dict):
    """POST a page's form with the session's CSRF value, as the browser would."""
    with browser.session_transaction() as session:
        csrf = session.setdefault("csrf", "test-csrf-secret")
    return browser.post(path, data={**data, "csrf": csrf})


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def expected(scenario: str) -> dict:
    return json.loads((CAPTURES / f"{scenario}.expected.json").read_text(encoding="utf-8"))


def comparable(call: dict, keys) -> dict:
    """The expected.json fields of a call record, with ring-group lists compared as sets."""
    out = {k: call[k] for k in keys}
    for key in ("extensions_rung", "answered_elsewhere", "missed_by"):
        if key in out:
            out[key] = sorted(out[key])
    return out


def pops_by_extension(rows) -> dict[str, list[str]]:
    """CallEvent rows (or expected pops) as extension -> events in order."""
    out: dict[str, list[str]] = {}
    for ext, event in rows:
        out.setdefault(ext, []).append(event)
    return out


def http_ready(url: str) -> bool:
    """Whether the daemon at url answers its health check."""
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/api/v1/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def staff():
    """The employee snapshot as the daemon builds it, read now (on this thread's connection)."""
    from screenpop.daemon.staff import Staff

    snapshot = Staff()
    snapshot.load()
    return snapshot


def start_hub(db, lookup, **kwargs):
    """A started push hub on a started database worker of its own, as the daemon wires them (with the employee
    snapshot read now, the default formats unless layout= is given, and the stored layouts per team); stop_hub ends
    both."""
    from screenpop.daemon.push.hub import PushHub
    from screenpop.daemon.push.layout import CardLayout
    from screenpop.daemon.push.layouts import Layouts
    from screenpop.db.worker import DbWorker

    worker = DbWorker(db)
    worker.start()
    kwargs.setdefault("layouts", Layouts())
    hub = PushHub(worker, lookup, staff(), kwargs.pop("layout", None) or CardLayout(), **kwargs)
    hub.start()
    return hub


def stop_hub(hub) -> None:
    """Stop a hub from start_hub and its database worker."""
    hub.stop()
    hub.worker.stop()


class HubApp:
    """The daemon's Flask app on a push hub of its own (start_hub) over the test's database, photos in the folder
    photos; close() stops the hub. app_args go to create_app (web_config, zone, on_link, tls); employee_changes
    counts how often the app told the daemon an employee was added, changed or deleted."""

    def __init__(self, db, photos: Path, **app_args) -> None:
        from screenpop.daemon.customers.lookup import Lookup
        from screenpop.daemon.customers.photos import Photos
        from screenpop.daemon.web.server import create_app

        self.hub = start_hub(db, lambda: Lookup(db, RULES))
        self.employee_changes = 0
        self.app = create_app(self.hub, Photos(photos), heartbeat=1.0, on_employees_changed=self._employees_changed,
                              **app_args)

    def _employees_changed(self) -> None:
        self.employee_changes += 1

    def close(self) -> None:
        stop_hub(self.hub)


class Api(HubApp):
    """The daemon's HTTP app in process on a database (a started hub of its own, start_hub) with an operator token
    (extension 1001) and an admin token; req(method, path, body, token="op"|"admin"|a token) -> (status, JSON)."""

    def __init__(self, db, tmp_path: Path) -> None:
        from screenpop.daemon.auth import tokens

        super().__init__(db, tmp_path)
        self.client = self.app.test_client()
        _, self.op = tokens.create("1001")
        _, self.admin = tokens.create(None, role="admin")

    def req(self, method: str, path: str, body=None, token: str | None = "op", raw: bytes | None = None,
            headers: dict | None = None):
        h = {} if token is None else {"Authorization": f"Bearer {getattr(self, token, token)}"}
        h.update(headers or {})
        kwargs = {}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:  # ASCII-escaped JSON, so a lone surrogate reaches the server as \\ud800
            kwargs["data"] = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        r = self.client.open(path, method=method, headers=h, **kwargs)
        return r.status_code, (r.get_json(silent=True) if r.data else None)
