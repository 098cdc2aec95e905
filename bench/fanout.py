"""Push fan-out: many SSE clients on one daemon while the simulator generates calls in real time.

Starts the real daemon (its own process, SQLite in a temporary folder, customers with open orders so cards
carry data) and the simulator generating calls at --rate calls/s for --duration s across --extensions
extensions; this process opens --clients SSE streams (spread evenly over the extensions, one operator
token per extension) with gevent before the first call. Afterwards it checks that every client received
every pop of its extension, in order, and nothing of anyone else's, and prints: pops and frames
delivered, end-to-end latency (FreeSWITCH event time to the client having the card: includes the
simulator and the database commit), and the daemon's CPU time and resident memory from /proc.

    python bench/fanout.py [--clients 200] [--extensions 20] [--rate 50] [--duration 20] [--languages en,is]

--languages: the streams ask for these languages in turn (Accept-Language), so every pop is written in each of them
(docs/i18n.md); without it no stream asks, and every pop is written once, in the daemon's default. Run it with
another checkout's python (its .venv) to compare that code's daemon in the same session.

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from screenpop.daemon.auth import tokens  # noqa: E402
from screenpop.daemon.customers.lookup import add_phone  # noqa: E402
from screenpop.db.database import open_database  # noqa: E402
from screenpop.db.migrations import migrate  # noqa: E402
from screenpop.db.models import CallEvent, Customer, Employee, Order  # noqa: E402
from screenpop.db.numbers import NumberRules  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(user+system CPU seconds, resident MB) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    with open(f"/proc/{pid}/statm") as fh:
        rss = int(fh.read().split()[1]) * PAGE / 1e6
    return cpu, rss


class Client:
    """One SSE stream read with a gevent socket; keeps (id, extension, latency) of every card."""

    def __init__(self, port: int, token: str, extension: str, language: str = "") -> None:
        self.port, self.token, self.extension = port, token, extension
        self.language = f"Accept-Language: {language}\r\n" if language else ""
        self.ids: list[int] = []
        self.foreign = 0
        self.latencies: list[float] = []
        self.error = ""
        self.ready = gevent.event.Event()

    def run(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port))
            sock.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.token}\r\n"
                         f"{self.language}\r\n".encode())
            reader = sock.makefile("rb")
            status = reader.readline()
            if b" 200 " not in status:
                self.error = status.decode().strip()
                return
            self.ready.set()
            for raw in reader:
                if raw.startswith(b"data: "):
                    now = time.time()
                    card = json.loads(raw[6:])
                    self.ids.append(card["id"])
                    if card["extension"] != self.extension:
                        self.foreign += 1
                    at = dt.datetime.fromisoformat(card["at"].replace("Z", "+00:00")).timestamp()
                    self.latencies.append(now - at)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--extensions", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of call arrivals")
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--languages", default="", help="comma-separated languages the streams ask for in turn")
    args = parser.parse_args()
    exts = [str(1001 + i) for i in range(args.extensions)]
    rules = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)
    with tempfile.TemporaryDirectory(prefix="screenpop-fanout-") as tmp:
        tmp = Path(tmp)
        url = f"sqlite:///{tmp / 'fanout.db'}"
        db = open_database(url)
        migrate(db)
        employees = [Employee.create(name=f"Operator {e}", extension=e) for e in exts]
        numbers = []
        with db.atomic():
            for i in range(args.customers):
                c = Customer.create(name=f"Customer {i}", company=f"Company {i % 37}", category=("regular", "vip", "problem")[i % 3])
                number = f"+354555{4000 + i:04d}"
                add_phone(c, number, "mobile", rules)
                numbers.append(number)
                for k in range(i % 4):
                    Order.create(customer=c, number=f"O-{i}-{k}", title="Order", stage="open", responsible=employees[k],
                                 amount=Decimal("1000.00"), paid=Decimal("250.00"))
        numbers += [f"+354556{i:04d}" for i in range(100)]  # unknown callers
        (tmp / "numbers.txt").write_text("\n".join(numbers) + "\n", encoding="utf-8")
        tokens_by_ext = {e: tokens.create(e)[1] for e in exts}
        esl_port, http_port = free_port(), free_port()
        (tmp / "c.toml").write_text(
            f'[freeswitch]\nport = {esl_port}\nreconnect_min = 0.2\nreconnect_max = 1.0\n'
            f'[database]\nurl = "{url}"\n[numbers]\ndefault_region = "IS"\n'
            f'[http]\nlisten = "127.0.0.1:{http_port}"\n[log]\nlevel = "warning"\n', encoding="utf-8")
        log = open(tmp / "daemon.log", "wb")
        daemon = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "daemon", "--config", str(tmp / "c.toml")],
                                  stdout=log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                break
            except OSError:
                gevent.sleep(0.05)
        cpu0, rss0 = proc_cpu_rss(daemon.pid)
        languages = [x for x in args.languages.split(",") if x] or [""]
        # the languages alternate within each extension: every pop is wanted in each of them
        clients = [Client(http_port, tokens_by_ext[exts[i % len(exts)]], exts[i % len(exts)],
                          languages[(i // len(exts)) % len(languages)]) for i in range(args.clients)]
        greenlets = [gevent.spawn(c.run) for c in clients]
        for c in clients:
            c.ready.wait(10)
        cpu1, rss1 = proc_cpu_rss(daemon.pid)
        errors = [c.error for c in clients if c.error]
        print(f"{args.clients} clients connected over {len(exts)} extensions, asking for {args.languages or 'no language'}"
              + (f"; {len(errors)} failed: {errors[:3]}" if errors else ""))
        print(f"daemon idle: RSS {rss0:.1f} MB; with {args.clients} streams open: RSS {rss1:.1f} MB, "
              f"{(cpu1 - cpu0) * 1000:.0f} ms CPU to accept them")
        sim_log = open(tmp / "sim.log", "wb")
        started = time.monotonic()
        sim = subprocess.Popen(
            [sys.executable, "-m", "screenpop.daemon.cli", "simulate", "--port", str(esl_port), "--generate",
             "--rate", str(args.rate), "--duration", str(args.duration), "--extensions", f"{exts[0]}-{exts[-1]}",
             "--numbers", str(tmp / "numbers.txt"), "--seed", "1", "--linger", "1"],
            stdout=sim_log, stderr=subprocess.STDOUT)
        peak_rss = rss1
        cpu_start = proc_cpu_rss(daemon.pid)[0]
        while sim.poll() is None:
            gevent.sleep(1.0)
            peak_rss = max(peak_rss, proc_cpu_rss(daemon.pid)[1])
        wall = time.monotonic() - started
        expected: dict[str, list[int]] = {}
        previous = -1
        for _ in range(100):  # until the database stops growing and every client has its last pop
            total = CallEvent.select().count()
            if total == previous:
                break
            previous = total
            gevent.sleep(0.5)
        for ident, ext in CallEvent.select(CallEvent.id, CallEvent.extension).order_by(CallEvent.id).tuples():
            expected.setdefault(ext, []).append(ident)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(c.ids[-1:] != expected.get(c.extension, [])[-1:] for c in clients):
            gevent.sleep(0.2)
        cpu_end, rss_end = proc_cpu_rss(daemon.pid)
        complete = sum(1 for c in clients if c.ids == expected.get(c.extension, []))
        foreign = sum(c.foreign for c in clients)
        frames = sum(len(c.ids) for c in clients)
        pops = sum(len(v) for v in expected.values())
        latencies = [x for c in clients for x in c.latencies]
        calls = int(args.rate * args.duration)
        print(f"simulator: ~{calls} calls at {args.rate:g}/s, ran {wall:.1f} s; {pops} pops stored, {frames} frames delivered")
        print(f"clients with exactly their extension's pops, in order: {complete}/{len(clients)}; foreign cards: {foreign}")
        for c in clients:
            if c.ids != expected.get(c.extension, []) and c is clients[0]:
                print(f"  e.g. client of {c.extension}: {len(c.ids)} of {len(expected.get(c.extension, []))}, {c.error}")
        print(f"latency event time -> card at the client: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies or [0]) * 1000:.1f} ms")
        busy = cpu_end - cpu_start
        print(f"daemon CPU during the run: {busy:.2f} s over {wall:.1f} s wall ({busy / wall * 100:.0f}% of one core); "
              f"RSS peak {peak_rss:.1f} MB, end {rss_end:.1f} MB")
        daemon.terminate()
        daemon.wait(20)
        gevent.killall(greenlets, timeout=2)
        sim_log.close()
        log.close()


if __name__ == "__main__":
    main()
