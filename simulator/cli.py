"""`screenpop simulate`: the simulator's command line (modes, options, signals, exit codes).

Run it as its own process: `python -m screenpop.simulator.cli --replay X.plain.esl --speed 0`.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import gevent
import gevent.event

from screenpop.simulator.cdr import ENCODINGS, CdrPoster
from screenpop.simulator.protocol import EXIT_OK
from screenpop.simulator.server import Simulator

log = logging.getLogger("screenpop.simulator")


def _share(text: str) -> float:
    """A share from 0 to 1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be from 0 to 1")
    return value


def _speed(text: str) -> float:
    if text.lower() in ("inf", "max", "0"):
        return 0.0
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("speed must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="screenpop simulate",
        description="FreeSWITCH event-socket simulator. The event timeline starts when the first client "
                    "subscribes; without --replay or --generate only the protocol is served.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=8021, help="port (0 = any free port, printed on stderr)")
    p.add_argument("--password", default="ClueCon", help="event socket password")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--replay", metavar="FILE", help="replay a recorded <scenario>.plain.esl (or .json.esl) stream")
    mode.add_argument("--generate", action="store_true", help="generate calls (see --rate, --calls, --mix)")
    p.add_argument("--speed", type=_speed, default=1.0,
                   help="time factor for replay and generate; 0 or inf = as fast as the client reads")
    p.add_argument("--linger", type=float, default=1.0,
                   help="seconds to stay up after the last event, then a disconnect notice and exit 0")
    p.add_argument("--from-event", type=int, default=0, metavar="N",
                   help="replay: start sending at event N (earlier events only build the channel table)")
    p.add_argument("--until-event", type=int, default=None, metavar="N",
                   help="replay: after event N-1 close all connections abruptly (a crash) and exit 3")
    p.add_argument("--restamp", action="store_true",
                   help="replay: stamp each event (Event-Date-Timestamp, -Local, -GMT) with the moment it is due "
                        "on the live timeline, and move its channels' timetables (Caller-/Other-Leg-Channel-*-Time) "
                        "with it, so a recording made once stands in for a switch firing it now")
    p.add_argument("--heartbeat", type=float, default=20.0, metavar="SECONDS",
                   help="generate and idle: seconds between HEARTBEAT events, as FreeSWITCH's default 20 (0 = none)")
    p.add_argument("--rate", type=float, default=1.0,
                   help="generate: new calls per second of simulated time (per real second at --speed 1)")
    p.add_argument("--calls", type=int, default=None, help="generate: number of calls")
    p.add_argument("--duration", type=float, default=None,
                   help="generate: seconds (simulated) of call arrivals; neither --calls nor this: run until stopped")
    p.add_argument("--mix", default=None,
                   help="generate: scenario weights among inbound_answered, inbound_missed, ring_group, queue, "
                        "outbound, internal, transfer (e.g. inbound_answered=5,queue=1; default: all, mostly inbound)")
    p.add_argument("--numbers", metavar="FILE",
                   help="generate: external numbers, one per line (default: 200 random +354555xxxx)")
    p.add_argument("--extensions", default="1001-1010", help="generate: extensions, e.g. 1001-1010 or 1001,1002")
    p.add_argument("--expect", metavar="FILE", help="generate: write each call's expected outcome as JSON lines")
    p.add_argument("--seed", type=int, default=None, help="generate: random seed (same seed, same calls)")
    p.add_argument("--hold", type=_share, default=None, metavar="SHARE",
                   help="generate: share of answered calls in which the operator's phone holds once (default 0.25)")
    p.add_argument("--registered", default="1001-1010", metavar="EXTENSIONS",
                   help="originate: the extensions whose phones are registered (others: -ERR USER_NOT_REGISTERED)")
    p.add_argument("--no-answer", default="", metavar="EXTENSIONS",
                   help="originate: extensions whose phones ring but never answer (-ERR NO_ANSWER after "
                        "originate_timeout)")
    p.add_argument("--originate-speed", type=_speed, default=1.0, metavar="FACTOR",
                   help="originate: time factor for the call's events and NO_ANSWER's wait (0 = no waiting)")
    p.add_argument("--record-dir", metavar="DIR",
                   help="record answered calls: RECORD_START/RECORD_STOP events and a stereo WAV file each in DIR")
    p.add_argument("--record-fs-dir", metavar="PATH",
                   help="the folder the RECORD events name instead of DIR (as FreeSWITCH sees its own storage)")
    p.add_argument("--cdr-url", metavar="URL",
                   help="post each ended leg's JSON CDR there, as mod_json_cdr does (e.g. http://127.0.0.1:8080/api/v1/cdr)")
    p.add_argument("--cdr-cred", default="", metavar="USER:PASSWORD", help="HTTP Basic credentials (json_cdr's cred)")
    p.add_argument("--cdr-encode", default="false", choices=ENCODINGS,
                   help="the body: raw JSON (false, mod_json_cdr's default), cdr=<URL-encoded> (true) or cdr=<base64>")
    p.add_argument("--cdr-retries", type=int, default=0, help="retries after a failed post (json_cdr's retries)")
    p.add_argument("--cdr-delay", type=float, default=5.0, help="seconds between tries (json_cdr's delay)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("simulator: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    from screenpop.simulator.generator import parse_extensions
    try:
        registered = frozenset(parse_extensions(args.registered))
        no_answer = frozenset(parse_extensions(args.no_answer)) if args.no_answer else frozenset()
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    recorder = None
    if args.record_dir:
        from screenpop.simulator import speech
        from screenpop.simulator.recording import Recorder

        if not speech.espeak_available():
            print("simulator: --record-dir needs espeak-ng for the recordings' speech (apt install espeak-ng)",
                  file=sys.stderr)
            return 2
        recorder = Recorder(args.record_dir, args.record_fs_dir)
    elif args.record_fs_dir:
        print("simulator: --record-fs-dir needs --record-dir", file=sys.stderr)
        return 2
    cdr = CdrPoster(args.cdr_url, args.cdr_cred, args.cdr_encode, args.cdr_retries, args.cdr_delay) if args.cdr_url else None
    sim = Simulator(args.host, args.port, args.password, cdr=cdr, heartbeat=args.heartbeat, registered=registered,
                    no_answer=no_answer, originate_speed=args.originate_speed, recorder=recorder)
    generator = None
    if args.generate:
        from screenpop.simulator.generator import CallGenerator, parse_extensions, parse_mix, read_numbers
        try:
            generator = CallGenerator(rate=args.rate, calls=args.calls, duration=args.duration,
                                      mix=parse_mix(args.mix), numbers=read_numbers(args.numbers),
                                      extensions=parse_extensions(args.extensions), seed=args.seed,
                                      expect_path=args.expect, recorder=recorder,
                                      **({} if args.hold is None else {"hold_share": args.hold}))
        except ValueError as exc:
            print(f"simulator: {exc}", file=sys.stderr)
            return 2
    elif args.replay and not Path(args.replay).is_file():
        print(f"simulator: no such capture: {args.replay}", file=sys.stderr)
        return 2
    if not args.replay and (args.from_event or args.until_event is not None or args.restamp):
        print("simulator: --from-event/--until-event/--restamp need --replay", file=sys.stderr)
        return 2
    try:
        sim.start()
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2

    stopped = gevent.event.Event()

    def on_signal() -> None:
        log.info("signal received: shutting down")
        stopped.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, on_signal)

    if args.replay:
        job = gevent.spawn(sim.replay, args.replay, args.speed, args.linger, args.from_event, args.until_event,
                           args.restamp)
    elif generator is not None:
        job = gevent.spawn(sim.generate, generator, args.linger, args.speed)
    else:
        log.info("idle mode: protocol only, no events")
        job = gevent.spawn(sim.idle)
    try:
        gevent.wait([job, stopped], count=1)
        if job.ready():
            code = job.get()
        else:                               # a signal: say goodbye like a FreeSWITCH shutting down
            job.kill()
            sim.stop_listening()
            sim.close_clients(notice=True)
            code = EXIT_OK
        if sim.cdr is not None and not sim.cdr.wait(sim.cdr.attempts * (sim.cdr.delay + sim.cdr.timeout) + 1):
            log.warning("exiting with CDRs not posted yet")
    finally:
        if generator is not None:
            generator.close()
    log.info("exit %d", code)
    return code




if __name__ == "__main__":
    sys.exit(main())
