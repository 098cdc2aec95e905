"""Other systems for the sources' tests (docs/sources.md): an "ERP" of customers and invoices in the real MariaDB
(127.0.0.1:3306, root, database test; tables of their own per run, dropped after), and a real HTTP service in a
thread of the test process with an answering, a slow, an erring, a 10 MB and a markup-answering route."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hostile import HOSTILE_NAME

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}
MARIADB_URL = "mysql://root@127.0.0.1:3306/test"
BIG = 10 << 20
HOSTILE_VALUE = HOSTILE_NAME + " =HYPERLINK(\"http://x\") <img src=x onerror=alert(1)>"


@contextmanager
def erp(numbers: dict[str, str]) -> Iterator[str]:
    """An ERP in MariaDB: erp_<hex>_customers (id, ref, name, phone as the ERP stores it) and erp_<hex>_invoices
    (customer, amount, paid); numbers: stored phone -> customer name, each with two invoices, one open. Yields the
    table prefix; the tables are dropped afterwards."""
    import pymysql

    prefix = f"erp_{uuid.uuid4().hex[:10]}"
    try:
        conn = pymysql.connect(**MARIADB, autocommit=True, connect_timeout=5)
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB is not reachable on 127.0.0.1:3306 ({exc}); start it (docs/sources.md)", pytrace=False)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {prefix}_customers (id INT PRIMARY KEY, ref VARCHAR(20), name VARCHAR(200), "
                        "phone VARCHAR(30), INDEX (phone)) CHARACTER SET utf8mb4")
            cur.execute(f"CREATE TABLE {prefix}_invoices (id INT AUTO_INCREMENT PRIMARY KEY, customer INT, "
                        "amount DECIMAL(12,2), paid BOOL)")
            for i, (phone, name) in enumerate(numbers.items(), 1):
                cur.execute(f"INSERT INTO {prefix}_customers VALUES (%s, %s, %s, %s)", (i, f"C-{i}", name, phone))
                cur.execute(f"INSERT INTO {prefix}_invoices (customer, amount, paid) VALUES (%s, 1250.50, 0), "
                            "(%s, 99.00, 1)", (i, i))
        yield prefix
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {prefix}_customers, {prefix}_invoices")
        conn.close()


def erp_query(prefix: str) -> str:
    """The [[sources]] query of the ERP: the customer by any form of the number, with the open invoices' total."""
    return (f"SELECT c.ref AS ref, c.name AS `ERP name`, (SELECT SUM(amount) FROM {prefix}_invoices i "
            f"WHERE i.customer = c.id AND NOT i.paid) AS `Open invoices` FROM {prefix}_customers c "
            "WHERE c.phone IN ({e164}, {national}, {digits}) LIMIT 1")


class _Handler(BaseHTTPRequestHandler):
    server: "Service"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(self.rfile.read(length))
        self._answer()

    def _answer(self) -> None:
        service = self.server
        route, _, rest = self.path.lstrip("/").partition("/")
        service.hits[route] += 1
        service.clients.add(self.client_address)
        service.paths.append(self.path)
        service.headers.append(dict(self.headers))
        if route == "slow":
            time.sleep(service.slow_seconds)
        if route == "error" or (route == "flaky" and service.failing):
            return self._send(500, b'{"error": "database locked"}')
        if route == "missing":
            return self._send(404, b'{"error": "no such customer"}')
        if route == "big":
            return self._send(200, b'{"name": "' + b"x" * BIG + b'"}')
        if route == "markup":
            return self._send(200, json.dumps({"customer": {"name": HOSTILE_VALUE, "id": "C-1"}}).encode())
        if route == "notjson":
            return self._send(200, b"<html>Service Unavailable</html>")
        if route == "once":
            self.close_connection = True  # closed after this answer without saying so, as an idle timeout would
        answer = {"customer": {"id": "C-1", "name": "Norðurljós ehf.", "tier": "gold"},
                  "invoices": [{"number": "F-17", "due": "2026-12-01", "amount": 1250.5}], "number": rest}
        self._send(200, json.dumps(answer).encode())

    def _send(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (a timeout, or an answer refused for its size)


class Service(ThreadingHTTPServer):
    """The CRM's HTTP API on a free loopback port: routes /ok, /slow (slow_seconds), /error (500), /flaky (500 while failing),
    /missing (404), /big (10 MB), /markup (hostile values), /notjson, /once (like /ok, then the connection is closed
    unannounced); each followed by the number. hits counts requests by route, clients the connections they came on.
    keep_alive: HTTP/1.1 with connections kept open (else HTTP/1.0, one connection a request)."""

    daemon_threads = True

    def __init__(self, slow_seconds: float = 2.0, keep_alive: bool = False) -> None:
        handler = type("_KeepAlive", (_Handler,), {"protocol_version": "HTTP/1.1"}) if keep_alive else _Handler
        super().__init__(("127.0.0.1", 0), handler)
        self.slow_seconds = slow_seconds
        self.failing = True  # /flaky answers 500 while set, like /ok after
        self.hits: Counter[str] = Counter()
        self.clients: set[tuple[str, int]] = set()
        self.paths: list[str] = []
        self.headers: list[dict] = []
        self.bodies: list[bytes] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def service() -> Iterator[Service]:
    """A running Service, closed after the test."""
    s = Service()
    yield s
    s.close()


def sources_toml(service: Service | None, prefix: str | None = None, http_routes: tuple[str, ...] = ("ok",),
                 timeout: float = 0.3) -> str:
    """[[sources]] for a daemon config: the MariaDB ERP (if prefix) and one http source per route of service."""
    parts = []
    if prefix is not None:
        parts.append(f'[[sources]]\nname = "erp"\ntype = "sql"\nurl = "{MARIADB_URL}"\nexternal_id = "ref"\n'
                     f"timeout = {timeout}\nquery = {json.dumps(erp_query(prefix))}\n")
    for route in http_routes if service is not None else ():
        fields = '{"Tier" = "customer.tier", "Name" = "customer.name", "Invoice" = "invoices.0.number"}'
        parts.append(f'[[sources]]\nname = "{route}"\ntype = "http"\nurl = "{service.url}/{route}/{{e164}}"\n'
                     f"timeout = {timeout}\nfields = {fields}\n")
    return "\n".join(parts)
