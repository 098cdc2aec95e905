"""Benchmark sign-in against the organisation's directory (docs/accounts.md, "The directory") beside a local
password sign-in in the same run: a whole POST /signin through the daemon's Flask app on SQLite against a real
OpenLDAP (tests/ldapserver.py), right and wrong passwords; then one sign-in while slapd hangs (SIGSTOP) until
[ldap] timeout. A greenlet ticking every millisecond meanwhile shows what each costs the event loop (the directory
is asked on gevent's sockets, so a hanging one should leave no long gap). Prints p50/p95/max in ms and the load
average; never fails.

    flock /tmp/screenpop-bench.lock python bench/directory.py [--n 30]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402

from screenpop.daemon.auth import people  # noqa: E402
from screenpop.daemon.auth.directory import Directory  # noqa: E402
from screenpop.daemon.config import LdapConfig, WebConfig  # noqa: E402
from screenpop.db.database import open_database  # noqa: E402
from screenpop.db.migrations import migrate  # noqa: E402

from signin import _ms  # noqa: E402  (bench/signin.py: the same p50/p95/max line)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ldapserver import BASE, GROUPS, PASSWORD, SERVICE, LdapServer  # noqa: E402
from support import HubApp  # noqa: E402

LOCAL_PASSWORD = "correct horse battery"
TIMEOUT = 2.0  # [ldap] timeout for the hanging directory


class Ticker:
    """A greenlet that sleeps 1 ms at a time and keeps the gaps it saw between its ticks."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.running = True
        self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        last = time.perf_counter()
        while self.running:
            gevent.sleep(0.001)
            now = time.perf_counter()
            self.gaps.append(now - last)
            last = now

    def stop(self) -> list[float]:
        self.running = False
        self.greenlet.join()
        return self.gaps


def _post(site: HubApp, login: str, password: str) -> tuple[float, int]:
    client = site.app.test_client()
    with client.session_transaction() as session:
        session["csrf"] = "bench"
    t = time.perf_counter()
    r = client.post("/signin", data={"login": login, "password": password, "csrf": "bench"})
    return time.perf_counter() - t, r.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="sign-ins of each kind (default 30)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the refusals are logged, one line each: not what is measured
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    server = LdapServer()
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/bench.db")
        migrate(db)
        people.create(people.person_fields({"login": "boss", "name": "Boss", "role": "admin"}, creating=True),
                      people.hash_password(LOCAL_PASSWORD))
        ldap = LdapConfig(enabled=True, urls=[server.url], start_tls=False, timeout=TIMEOUT, bind_dn=SERVICE[0],
                          bind_password=SERVICE[1], base_dn=f"ou=people,{BASE}", group_base_dn=f"ou=groups,{BASE}",
                          groups={dn: role for role, dn in GROUPS.items()})
        site = HubApp(db, Path(tmp) / "photos", directory=Directory(ldap),
                      web_config=WebConfig(signin_free_failures=10_000, signin_address_free_failures=10_000,
                                           signin_lock_after=1000))
        try:
            for label, login, password, status in (
                    ("local, right (baseline)", "boss", LOCAL_PASSWORD, 303),
                    ("directory, right", "olga", PASSWORD, 303),
                    ("directory, wrong", "olga", "not the password", 403)):
                ticker = Ticker()
                times = []
                for _ in range(args.n):
                    seconds, got = _post(site, login, password)
                    assert got == status, (label, got)
                    times.append(seconds)
                gaps = ticker.stop()
                print(f"POST /signin {label:<24} {_ms(times)} ms;  loop gaps {_ms(gaps)} ms")
            server.pause(True)
            ticker = Ticker()
            try:
                seconds, got = _post(site, "olga", PASSWORD)
            finally:
                server.pause(False)
            gaps = ticker.stop()
            print(f"POST /signin directory hangs ({TIMEOUT:g} s timeout): {seconds * 1000:.0f} ms, status {got};  "
                  f"loop gaps {_ms(gaps)} ms over {len(gaps)} ticks")
        finally:
            site.close()
            db.close()
            server.close()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
