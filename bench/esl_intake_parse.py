"""ESL intake benchmark: events per second received, parsed and dispatched by one client greenlet loop.

Measures, in the same run and against the same byte stream served from a separate process over
loopback TCP:
  1. plain greenswitch InboundESL with a '*' handler,
  2. GuardedInboundESL with a '*' handler (greenswitch's interface, our reader),
  3. EslSupervisor with a trivial on_event (what the daemon runs),
and prints each rate and the ratios to plain. Never fails: a client that errors is reported as such.

    python bench/esl_intake_parse.py [--capture FILE] [--events 50000] [--rounds 1]

The serving part is meant to be reused by fuller benchmarks (tracking, storage):
    load_event_frames(path)            -> the raw text/event-plain frames of a capture
    serve_frames(frames, port, repeat) -> a minimal FreeSWITCH that streams them (blocking; run it in a
                                          process of its own, e.g. with start_server_process)
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import re
import socket
import sys
import time
from pathlib import Path

DEFAULT_CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "esl-captures" / "transfer.plain.esl"
if not DEFAULT_CAPTURE.exists():
    DEFAULT_CAPTURE = Path("/work/shared/esl-captures/transfer.plain.esl")

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
DISCONNECT_NOTICE = (b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
                     b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")


def _reply(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode()


def _api_response(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body


def load_event_frames(path: str | Path) -> list[bytes]:
    """Every text/event-plain frame of a .plain.esl capture, outer headers included, byte for byte."""
    data = Path(path).read_bytes()
    frames, pos = [], 0
    while True:
        end = data.find(b"\n\n", pos)
        if end < 0:
            return frames
        head = data[pos:end]
        length = 0
        for line in head.split(b"\n"):
            if line.startswith(b"Content-Length: "):
                length = int(line[16:])
        stop = end + 2 + length
        if b"Content-Type: text/event-plain" in head:
            frames.append(data[pos:stop])
        pos = stop


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CLOCK = re.compile(rb"(%3A)([0-5][0-9])(%3A)([0-5][0-9])")  # mm and ss of Event-Date-Local / -GMT


def vary_frames(frames: list[bytes], variants: int) -> list[bytes]:
    """`variants` copies of the frames joined, each with its own UUIDs and clock times (same lengths, so
    every Content-Length still holds): repeats then look like different calls at different moments
    instead of the same bytes again, which would flatter any cache of decoded values."""
    blob = b"".join(frames)
    out = [blob]
    for n in range(1, variants):
        def uuid(match, n=n):
            digest = hashlib.blake2b(match.group() + b"%d" % n, digest_size=16).hexdigest().encode()
            return b"-".join((digest[:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32]))

        def clock(match, n=n):
            minute = (int(match.group(2)) + n // 60) % 60
            second = (int(match.group(4)) + n) % 60
            return b"%s%02d%s%02d" % (match.group(1), minute, match.group(3), second)

        out.append(_CLOCK.sub(clock, _UUID.sub(uuid, blob)))
    return out


class _Client:
    """The server's side of one connection: read commands, answer them."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def command(self) -> str | None:
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        cmd, _, self.buf = self.buf.partition(b"\n\n")
        return cmd.decode("utf-8", "replace")

    def answer(self, cmd: str, api=None) -> bool:
        """Answer one command like FreeSWITCH would; False after exit."""
        if cmd.startswith("api "):
            body = api(cmd[4:]) if api is not None else b"+OK\n"
            self.sock.sendall(_api_response(body))
        elif cmd == "exit":
            self.sock.sendall(_reply("+OK bye") + DISCONNECT_NOTICE)
            return False
        elif cmd.startswith("event "):
            self.sock.sendall(_reply("+OK event listener enabled " + cmd.split()[1]))
        else:
            self.sock.sendall(_reply("+OK"))
        return True


def serve_frames(frames: list[bytes], port: int, repeat: int, host: str = "127.0.0.1", connections: int = 1,
                 password: str | None = None, api=None, ready=None, variants: int = 1) -> None:
    """A minimal FreeSWITCH for benchmarks, blocking, with plain sockets (run it in its own process).

    For each of `connections` clients in turn: auth/request; `auth <password>` accepted (any password
    when password is None); every command answered with +OK (api: api(cmd) -> bytes, default '+OK');
    after the first `event ...` subscription, frames are sent back to back `repeat` times (cycling
    through vary_frames(frames, variants) when variants > 1); then commands are answered until the
    client leaves. port 0 picks a free port; ready(port) is called once listening (e.g. a
    multiprocessing.Queue's put).
    """
    blobs = vary_frames(frames, variants) if variants > 1 else [b"".join(frames)]
    listener = socket.create_server((host, port), backlog=8)
    if ready is not None:
        ready(listener.getsockname()[1])
    try:
        for _ in range(connections):
            sock, _addr = listener.accept()
            with sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client = _Client(sock)
                try:
                    sock.sendall(AUTH_REQUEST)
                    cmd = client.command()
                    if cmd is None:
                        continue
                    if not cmd.startswith("auth ") or (password is not None and cmd != f"auth {password}"):
                        sock.sendall(_reply("-ERR invalid") + DISCONNECT_NOTICE)
                        continue
                    sock.sendall(_reply("+OK accepted"))
                    while (cmd := client.command()) is not None:
                        if not client.answer(cmd, api):
                            break
                        if cmd.startswith("event "):
                            for n in range(repeat):
                                sock.sendall(blobs[n % len(blobs)])
                            while (cmd := client.command()) is not None and client.answer(cmd, api):
                                pass
                            break
                except OSError:
                    pass
    finally:
        listener.close()


def _serve_process(frames, repeat, connections, queue, cpu, variants):
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    serve_frames(frames, 0, repeat, connections=connections, ready=queue.put, variants=variants)


def start_server_process(frames: list[bytes], repeat: int, connections: int = 1, cpu: int | None = None,
                         variants: int = 1):
    """serve_frames in a child process on a free loopback port; returns (process, port)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_serve_process, args=(frames, repeat, connections, queue, cpu, variants),
                       daemon=True)
    proc.start()
    return proc, queue.get(timeout=60)


# -- the clients ----------------------------------------------------------------------------------------


def _measure(kind: str, port: int, total: int, timeout: float) -> dict:
    """Connect one client of `kind` and time its intake of `total` events: from the subscription (the
    server streams as soon as it gets it) to the last event dispatched. Not from the first event: plain
    greenswitch reads everything buffered before its handler greenlet runs at all."""
    import gevent
    import gevent.event

    stamps = {"n": 0, "first": 0.0, "last": 0.0}
    done = gevent.event.Event()

    def subscribing(*_args) -> None:
        stamps["first"] = time.perf_counter()

    def on_event(_event) -> None:
        n = stamps["n"] = stamps["n"] + 1
        if n == total:
            stamps["last"] = time.perf_counter()
            done.set()

    cpu0 = time.process_time()
    client = None
    try:
        if kind == "plain":
            from greenswitch.esl import InboundESL

            client = InboundESL("127.0.0.1", port, "ClueCon")
            client.register_handle("*", on_event)
            client.connect()
            subscribing()
            client.send("event plain ALL")
        elif kind == "guarded":
            from screenpop.daemon.pbx.esl import GuardedInboundESL

            client = GuardedInboundESL("127.0.0.1", port, "ClueCon")
            client.register_handle("*", on_event)
            client.connect()
            subscribing()
            client.send("event plain ALL")
        else:
            from screenpop.daemon.pbx.esl import EslSupervisor

            # on_connected runs right after the subscription's +OK, which the server sends just before streaming
            client = EslSupervisor("127.0.0.1", port, "ClueCon", ["ALL"], on_event=on_event,
                                   on_connected=subscribing).start()
        finished = done.wait(timeout)
        cpu = time.process_time() - cpu0
        n = stamps["n"]
        span = (stamps["last"] if finished else time.perf_counter()) - stamps["first"]
        rate = n / span if n and span > 0 else 0.0
        return {"events": n, "seconds": span, "rate": rate, "cpu_us_per_event": cpu / max(n, 1) * 1e6,
                "complete": finished}
    finally:
        _close(kind, client)


def _close(kind: str, client) -> None:
    import gevent

    if client is None:
        return
    try:
        if kind == "supervisor":
            client.stop(timeout=2)
        elif kind == "guarded":
            client.stop(timeout=2)
        else:  # plain greenswitch's stop() can wait forever: take it down by hand
            gevent.killall([g for g in (client._receive_events_greenlet, client._process_events_greenlet) if g],
                           timeout=2)
            client.sock.close()
    except Exception as exc:  # the benchmark never fails
        print(f"  ({kind}: closing failed: {exc!r})")


KINDS = {
    "plain": "plain greenswitch InboundESL, '*' handler",
    "guarded": "GuardedInboundESL, '*' handler",
    "supervisor": "EslSupervisor, trivial on_event",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", default=str(DEFAULT_CAPTURE), help="a <scenario>.plain.esl capture")
    parser.add_argument("--events", type=int, default=50000, help="at least this many events per client")
    parser.add_argument("--rounds", type=int, default=1, help="measure each client this many times; best counts")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on a client after this many seconds")
    parser.add_argument("--kinds", default=",".join(KINDS), help="which clients, comma-separated")
    parser.add_argument("--variants", type=int, default=64,
                        help="repeat the capture as this many variants with fresh UUIDs and clock times "
                             "(also measures identical repeats unless --variants 1)")
    args = parser.parse_args(argv)
    try:
        frames = load_event_frames(args.capture)
    except OSError as exc:
        print(f"cannot read {args.capture}: {exc}")
        return 0
    if not frames:
        print(f"no text/event-plain frames in {args.capture}")
        return 0
    repeat = max(1, -(-args.events // len(frames)))
    total = repeat * len(frames)
    kinds = [k for k in args.kinds.split(",") if k in KINDS]
    size = sum(map(len, frames)) / len(frames)
    two_cpus = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    if two_cpus:  # client on one core, server on another
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
    print(f"capture {Path(args.capture).name}: {len(frames)} events x {repeat} = {total} events, "
          f"{size:.0f} bytes per frame on average; client pinned to one core: {'yes' if two_cpus else 'no'}")
    modes = [("identical repeats", 1)] + ([(f"{args.variants} varied repeats", args.variants)]
                                          if args.variants > 1 else [])
    for label, variants in modes:
        print(f"{label}:")
        best: dict[str, float] = {}
        for round_no in range(args.rounds):
            for kind in kinds:
                proc = None
                try:
                    proc, port = start_server_process(frames, repeat, cpu=cpus[1] if two_cpus else None,
                                                      variants=variants)
                    result = _measure(kind, port, total, args.timeout)
                    note = "" if result["complete"] else f"  INCOMPLETE: {result['events']} of {total} events"
                    print(f"  round {round_no + 1} {KINDS[kind]:45s} {result['rate']:10,.0f} events/s  "
                          f"({result['cpu_us_per_event']:.1f} us CPU per event){note}")
                    if result["complete"]:
                        best[kind] = max(best.get(kind, 0.0), result["rate"])
                except Exception as exc:
                    print(f"  round {round_no + 1} {KINDS[kind]:45s} FAILED: {exc!r}")
                finally:
                    if proc is not None:
                        proc.join(5)
                        if proc.is_alive():
                            proc.kill()
        print(f"  best of {args.rounds}:")
        for kind in kinds:
            if kind in best:
                ratio = f"  x{best[kind] / best['plain']:.2f} plain" if best.get("plain") and kind != "plain" else ""
                print(f"    {KINDS[kind]:45s} {best[kind]:10,.0f} events/s{ratio}")
            else:
                print(f"    {KINDS[kind]:45s} no complete measurement")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
    except Exception as exc:  # never fails
        print(f"benchmark error: {exc!r}")
        sys.exit(0)
