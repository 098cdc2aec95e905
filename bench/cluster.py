"""Two FreeSWITCH nodes, one PostgreSQL: pop latency across daemons against the same-node baseline, and writes.

Real parts: two `screenpop simulate` (nodes fs1 and fs2, --rate calls/s each), two `screenpop daemon` (one per
node) on one PostgreSQL schema of their own (the server the tests use), and --clients SSE streams read with
gevent, half on each daemon, spread over --extensions extensions. In production FreeSWITCH has machines of its
own, so its stand-ins here should cost as little CPU as they can: each node's calls are generated once, before
the clock starts, recorded as the daemon's subscription receives them, and served by `simulate --replay
--restamp` on a live timeline (each event stamped with the moment it is due; `--stand-in generate` runs the
generator live instead, as this bench used to). Latency is the event time the simulator stamped (the card's
`at`) to the card at the client; a pop is "same node" when the client's daemon
records the call, "other node" when it came through the database (LISTEN/NOTIFY) from the other daemon:
the first is the baseline of the second in the same run. Write throughput: calls and pops stored per second
by both daemons together. CPU: each daemon's and simulator's, PostgreSQL's and this client's, and how busy
the whole machine was while calls arrived: every part runs on this one machine, so near 100% the latencies
are mostly the wait for a core. Then the takeover: a standby for fs1 is started, the fs1 daemon killed with
SIGKILL, and the time until the standby holds the node is printed.

    flock /tmp/screenpop-bench.lock .venv/bin/python bench/cluster.py [--rate 100] [--duration 20] [--clients 100]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from peewee import fn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fanout import Client, free_port, percentile, proc_cpu_rss  # noqa: E402
from intake import record  # noqa: E402
from pgserver import server_url  # noqa: E402

from screenpop.daemon.auth import tokens  # noqa: E402
from screenpop.daemon.customers.lookup import add_phone  # noqa: E402
from screenpop.db.database import open_database  # noqa: E402
from screenpop.db.migrations import migrate  # noqa: E402
from screenpop.db.models import Call, CallEvent, Customer, Employee  # noqa: E402
from screenpop.db.numbers import NumberRules  # noqa: E402


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far, from /proc/stat (idle and iowait are not busy)."""
    with open("/proc/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process by pid (the server's, whoever is connected)."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() == "postgres":
                    out[int(pid)] = proc_cpu_rss(int(pid))[0]
        except OSError:
            pass
    return out


class Node:
    """A simulator port and the daemon process recording it."""

    def __init__(self, tmp: Path, name: str, url: str, esl_port: int) -> None:
        self.name, self.esl_port, self.http_port = name, esl_port, free_port()
        self.log_path = tmp / f"daemon-{name}-{self.http_port}.log"
        config = tmp / f"{name}-{self.http_port}.toml"
        config.write_text(
            f'node = "{name}"\n[freeswitch]\nport = {esl_port}\nreconnect_min = 0.2\nreconnect_max = 1.0\n'
            f'[database]\nurl = "{url}"\n[numbers]\ndefault_region = "IS"\n'
            f'[http]\nlisten = "127.0.0.1:{self.http_port}"\n[log]\nlevel = "info"\n', encoding="utf-8")
        self.proc = subprocess.Popen([sys.executable, "-m", "screenpop.daemon.cli", "daemon", "--config", str(config)],
                                     stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float = 20.0) -> float:
        """Seconds until the daemon's log contains text (nan on timeout)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if text in self.log():
                return time.monotonic() - start
            gevent.sleep(0.02)
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def seed(db, exts: list[str], tmp: Path) -> Path:
    """Operators, and customers for half the callers (cards with data); the numbers file for the simulators."""
    rules = NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)
    numbers = []
    with db.atomic():
        for ext in exts:
            Employee.create(name=f"Operator {ext}", extension=ext)
        for i in range(200):
            number = f"+354555{4000 + i:04d}"
            add_phone(Customer.create(name=f"Customer {i}", company=f"Company {i % 37}"), number, "mobile", rules)
            numbers += [number, f"+354556{i:04d}"]
    path = tmp / "numbers.txt"
    path.write_text("\n".join(numbers) + "\n", encoding="utf-8")
    return path


def history(db, calls: int) -> float:
    """Calls, parties and pops from before the run, then ANALYZE: a production database has history and
    statistics. A fresh schema growing at 200 calls/s has neither, and its first cached query plans scan tables
    that autovacuum has not yet analysed. The analytics triggers run on these rows as on any. Returns seconds."""
    start = time.monotonic()
    db.execute_sql(
        'INSERT INTO "call" (uuid, direction, external_number, external_e164, customer_id, extension, answered_by, '
        "started_at, answered_at, ended_at, matches, missed, node) "
        "SELECT 'history-' || i, CASE WHEN i %% 4 = 0 THEN 'OUTGOING' ELSE 'INCOMING' END, '555' || (4000 + i %% 400), "
        "'+354555' || (4000 + i %% 400), CASE WHEN i %% 400 < 200 THEN (SELECT min(id) FROM customer) + i %% 400 END, "
        "(1001 + i %% 20)::text, CASE WHEN i %% 5 <> 0 THEN (1001 + i %% 20)::text END, "
        "now()::timestamp - interval '1 day' + i * interval '1 second', "
        "CASE WHEN i %% 5 <> 0 THEN now()::timestamp - interval '1 day' + i * interval '1 second' + interval '5 s' END, "
        "now()::timestamp - interval '1 day' + i * interval '1 second' + interval '60 s', "
        "CASE WHEN i %% 400 < 200 THEN 1 ELSE 0 END, i %% 5 = 0, 'history' FROM generate_series(1, %s) AS i", (calls,))
    db.execute_sql(
        "INSERT INTO call_party (call_id, extension, role, seq, rang_at, answered_at, ended_at, outcome, talked) "
        "SELECT id, extension, 'callee', 0, started_at, answered_at, ended_at, "
        "CASE WHEN answered_by IS NULL THEN 'missed' END, answered_by IS NOT NULL FROM \"call\" WHERE node = 'history'")
    db.execute_sql(
        'INSERT INTO call_event (call_id, uuid, extension, event, direction, peer_number, peer_name, '
        'customer_id, matches, "at") SELECT id, uuid, extension, e, direction, external_number, \'\', customer_id, '
        "matches, started_at FROM \"call\", unnest(ARRAY['ringing', 'answered', 'ended']) AS e "
        "WHERE node = 'history' ORDER BY id")
    db.execute_sql("ANALYZE")
    return time.monotonic() - start


def stand_in_args(stand_in: str, rate: float, duration: float, exts: list[str], numbers: Path,
                  tmp: Path) -> list[list[str]]:
    """The `simulate` arguments of each node: its own calls (seed 1, 2), generated live or recorded first."""
    generate = [["--rate", str(rate), "--duration", str(duration), "--extensions", f"{exts[0]}-{exts[-1]}",
                 "--numbers", str(numbers), "--seed", str(seed_no)] for seed_no in (1, 2)]
    if stand_in == "generate":
        return [["--generate", *g] for g in generate]
    paths = [tmp / f"fs{seed_no}.plain.esl" for seed_no in (1, 2)]
    start = time.monotonic()
    jobs = [gevent.spawn(record, path, *g) for path, g in zip(paths, generate)]
    gevent.joinall(jobs, raise_error=True)
    size = sum(path.stat().st_size for path in paths) / 2
    print(f"each node's stream recorded once before the clock: {sum(j.value for j in jobs) / 2:.0f} events, "
          f"{size / 1e6:.0f} MB ({time.monotonic() - start:.0f} s); served by simulate --replay --restamp")
    return [["--replay", str(path), "--restamp"] for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="new calls per second on each node")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of call arrivals")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--extensions", type=int, default=20)
    parser.add_argument("--history", type=int, default=50000, help="calls stored before the run")
    parser.add_argument("--stand-in", choices=("replay", "generate"), default="replay",
                        help="FreeSWITCH stand-ins: a recorded stream replayed on a live timeline (cheap), or the "
                             "call generator running live")
    args = parser.parse_args()
    exts = [str(1001 + i) for i in range(args.extensions)]
    schema = f"screenpop_bench_{uuid.uuid4().hex[:8]}"
    base = server_url()
    admin = open_database(base)
    admin.execute_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{base}?schema={schema}"
    db = open_database(url)
    migrate(db)
    nodes: list[Node] = []
    sims: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory(prefix="screenpop-cluster-bench-") as tmp:
            tmp = Path(tmp)
            numbers = seed(db, exts, tmp)
            took = history(db, args.history)
            new_calls = Call.select().where(Call.id > (Call.select(fn.MAX(Call.id)).scalar() or 0))
            new_pops = CallEvent.select().where(CallEvent.id > (CallEvent.select(fn.MAX(CallEvent.id)).scalar() or 0))
            print(f"history before the run: {args.history} calls with their parties and pops, analysed ({took:.0f} s)")
            sim_args = stand_in_args(args.stand_in, args.rate, args.duration, exts, numbers, tmp)
            tokens_by_ext = {e: tokens.create(e)[1] for e in exts}
            nodes = [Node(tmp, name, url, free_port()) for name in ("fs1", "fs2")]
            for node in nodes:
                node.wait_for("records node")
            clients = []
            for i in range(args.clients):
                node, ext = nodes[i % 2], exts[(i // 2) % len(exts)]
                client = Client(node.http_port, tokens_by_ext[ext], ext)
                client.node = node.name
                clients.append(client)
            greenlets = [gevent.spawn(c.run) for c in clients]
            for c in clients:
                c.ready.wait(10)
            errors = [c.error for c in clients if c.error]
            print(f"{args.clients} clients over {len(exts)} extensions, half on each daemon"
                  + (f"; {len(errors)} failed: {errors[:3]}" if errors else ""))
            for node, extra in zip(nodes, sim_args):
                sims.append(subprocess.Popen(
                    [sys.executable, "-m", "screenpop.daemon.cli", "simulate", "--port", str(node.esl_port),
                     *extra, "--linger", "1"], stdout=open(tmp / f"sim-{node.name}.log", "wb"), stderr=subprocess.STDOUT))
            sim_logs = [tmp / f"sim-{node.name}.log" for node in nodes]
            while not all("timeline started" in path.read_text(errors="replace") for path in sim_logs):
                if any(sim.poll() is not None for sim in sims):
                    raise SystemExit("a simulator exited before its timeline started: " + ", ".join(map(str, sim_logs)))
                gevent.sleep(0.01)      # a replay loads its stream first: the clock starts with both timelines
            sim_cpu0 = [proc_cpu_rss(sim.pid)[0] for sim in sims]
            cpu0 = [proc_cpu_rss(n.proc.pid)[0] for n in nodes]
            pg0, own0, busy0 = postgres_cpu(), proc_cpu_rss(os.getpid())[0], machine_busy()
            pg_seen, busy1 = dict(pg0), busy0
            started = time.monotonic()
            samples = [(0.0, 0, 0)]  # (seconds since start, pops stored, calls stored), once a second
            sim_cpu = list(sim_cpu0)
            while any(s.poll() is None for s in sims):
                gevent.sleep(1.0)
                for i, sim in enumerate(sims):
                    if sim.poll() is None:
                        sim_cpu[i] = proc_cpu_rss(sim.pid)[0]
                samples.append((time.monotonic() - started, new_pops.count(), new_calls.count()))
                pg_seen.update(postgres_cpu())
                if time.monotonic() - started <= args.duration:
                    busy1 = machine_busy()
            wall = time.monotonic() - started
            own1 = proc_cpu_rss(os.getpid())[0]
            pg = sum(c - pg0.get(pid, 0.0) for pid, c in pg_seen.items())
            previous = -1
            while (total := new_pops.count()) != previous:
                previous = total
                gevent.sleep(1.0)
            stored_at = time.monotonic()
            cpu = [proc_cpu_rss(n.proc.pid)[0] - c0 for n, c0 in zip(nodes, cpu0)]
            node_of = dict(new_calls.select(Call.uuid, Call.node).tuples())
            event_call = dict(new_pops.select(CallEvent.id, CallEvent.uuid).tuples())
            expected: dict[str, list[int]] = {}
            for ident, ext in new_pops.select(CallEvent.id, CallEvent.extension).order_by(CallEvent.id).tuples():
                expected.setdefault(ext, []).append(ident)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(c.ids != expected.get(c.extension, []) for c in clients):
                gevent.sleep(0.2)
            same, other = [], []
            for c in clients:
                for ident, latency in zip(c.ids, c.latencies):
                    (same if node_of.get(event_call.get(ident)) == c.node else other).append(latency)
            complete = sum(1 for c in clients if c.ids == expected.get(c.extension, []))
            calls, pops = len(node_of), sum(len(v) for v in expected.values())
            print(f"2 nodes x {args.rate:g} calls/s for {args.duration:g} s ({args.stand_in}): {calls} calls, {pops} pops stored; "
                  f"simulators ran {wall:.1f} s, all stored {stored_at - started:.1f} s after the start")
            print(f"clients with exactly their extension's pops of both nodes, in id order: {complete}/{len(clients)}")
            for label, values in (("same node (baseline)", same), ("other node (via PostgreSQL)", other)):
                print(f"pop latency, {label}: n={len(values)} p50 {percentile(values, 0.5) * 1000:.1f} ms, "
                      f"p99 {percentile(values, 0.99) * 1000:.1f} ms, max {max(values or [0]) * 1000:.1f} ms")
            arrivals = [s for s in samples if s[0] <= args.duration] or samples
            t, p, c = arrivals[-1]
            peak = max((b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:]))
            print(f"writes while calls arrive: {c / t:.0f} calls/s and {p / t:.0f} pops/s stored by both daemons "
                  f"together (offered {2 * args.rate:g} calls/s); peak second {peak:.0f} pops/s")
            print("CPU during the run: " + ", ".join(
                f"daemon {n.name} {c:.1f} s ({c / wall * 100:.0f}% of a core)" for n, c in zip(nodes, cpu)) + ", " +
                ", ".join(f"simulator {n.name} {c - c0:.1f} s ({(c - c0) / wall * 100:.0f}%; {c0:.1f} s before the "
                          "clock)" for n, c, c0 in zip(nodes, sim_cpu, sim_cpu0)) +
                f", PostgreSQL {pg:.1f} s ({pg / wall * 100:.0f}%), this client {own1 - own0:.1f} s "
                f"({(own1 - own0) / wall * 100:.0f}%)")
            for node, path in zip(nodes, sim_logs):
                lines = [line for line in path.read_text(errors="replace").splitlines() if "timeline:" in line]
                print(f"simulator {node.name}, how late it handed events to the daemon: " + (lines[-1].split("timeline: ")[-1] if lines else "?"))
            cores = os.cpu_count() or 1
            share = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
            print(f"the machine's {cores} cores were {share * 100:.0f}% busy while calls arrived (every process; "
                  "near 100% the latencies measure the queue for a core, not screenpop's path)")
            gevent.killall(greenlets, timeout=2)
            standby = Node(tmp, "fs1", url, nodes[0].esl_port)
            nodes.append(standby)
            standby.wait_for("standby for node")
            nodes[0].proc.kill()
            print(f"takeover: the fs1 standby held the node {standby.wait_for('records node'):.2f} s after kill -9 "
                  f"of the fs1 daemon")
    finally:
        for s in sims:
            if s.poll() is None:
                s.kill()
        for node in nodes:
            node.stop()
        db.close()
        admin.execute_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


if __name__ == "__main__":
    main()
