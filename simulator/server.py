"""A FreeSWITCH simulator: mod_event_socket's inbound protocol over TCP, fed by a recorded capture or by a call generator.

The daemon under test cannot tell it from FreeSWITCH 1.10: the handshake, command replies, api/bgapi, event
subscriptions (plain or json, CUSTOM subclasses, nixevent, filters), disconnect notices and the core
`channels`/`calls` tables behind `show channels|calls as json` follow mod_event_socket.c, mod_commands.c and
switch_core_sqldb.c.

Modes:
  replay    send a capture's events byte for byte, paced by their Event-Date-Timestamp (`--replay FILE`);
            with --restamp only their times change (date values and the channels' timetables), to the moment
            each is due: a stream recorded once
            (e.g. from --generate) then stands in for a live switch at a fraction of the generator's CPU
  generate  synthesise calls of several scenarios at a given rate (`--generate`, see generator.py)
  idle      neither: only the protocol (handshake tests, api)

With --cdr-url it is also mod_json_cdr: each leg's JSON CDR is posted there when the leg ends (cdr.py).
In generate and idle modes the switch fires its HEARTBEAT event every 20 s, as FreeSWITCH does
(switch.conf's event-heartbeat-interval; `--heartbeat`); a replay sends the heartbeats it recorded.

This module is the Simulator: it plays the timeline (replay, generate, idle), answers api/bgapi and publishes
events to the connections. Beside it: protocol.py (one connection, handshake and replies), channels.py (the core
tables), replay.py (captures as events), cli.py (`screenpop simulate`,
`python -m screenpop.simulator.cli --replay X.plain.esl --speed 0`).
"""
from __future__ import annotations

import bisect
import json
import logging
import time
import uuid as uuidlib
from pathlib import Path

import gevent
import gevent.event
from gevent import socket
from gevent.server import StreamServer

from screenpop.simulator.cdr import CdrPoster
from screenpop.simulator.channels import CALL_COLUMNS, CHANNEL_COLUMNS, ChannelTable, render_rows
from screenpop.simulator.events import SimEvent
from screenpop.simulator.originate import Originator
from screenpop.simulator.protocol import (CORE, EVENT_NAMES, EXIT_CRASHED, EXIT_OK, FS_VERSION, HIGH_WATER, LAB_USERS,
                                          STALL_TIMEOUT, Client, api_response, command_reply, event_name)
from screenpop.simulator.recording import Recorder, with_recordings
from screenpop.simulator.replay import _core_identity, date_headers, load_capture_events

log = logging.getLogger("screenpop.simulator")

# ---------------------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------------------

class Simulator:
    """The event-socket server plus the event timeline (replay or generator) it publishes to its clients."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8021, password: str = "ClueCon", *,
                 cdr: CdrPoster | None = None, heartbeat: float = 20.0, registered: frozenset[str] | None = LAB_USERS,
                 no_answer: frozenset[str] = frozenset(), originate_speed: float = 1.0,
                 recorder: Recorder | None = None) -> None:
        """cdr: mod_json_cdr's stand-in, posting each ended leg (None: no CDRs); heartbeat: seconds between HEARTBEAT
        events when generating or idle (0: none); registered, no_answer, originate_speed: how `originate` behaves;
        recorder: --record-dir, replayed calls recorded too (generated ones: the generator's)."""
        self.host = host
        self.port = port
        self.password = password
        self.clients: list[Client] = []
        self.table = ChannelTable(CORE["FreeSWITCH-Switchname"])
        self.core = dict(CORE, **{"Core-UUID": str(uuidlib.uuid4())})
        self.started_at = time.monotonic()
        self.sequence = 0
        self.emit_api_events = False          # generator mode fires API events like FreeSWITCH; replay keeps the recorded ones
        self.subscribed = gevent.event.Event()
        self.server: StreamServer | None = None
        self.published = 0
        self.last_ts = 0                      # Event-Date-Timestamp of the latest event published
        self.cdr = cdr
        self.heartbeat = max(0.0, heartbeat)
        self.originator = Originator(self.publish, self.core, registered=registered, no_answer=no_answer,
                                     speed=originate_speed)  # `originate`: click-to-call
        self.recorder = recorder

    # -- server --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.server = StreamServer((self.host, self.port), self._handle)
        self.server.start()
        self.port = self.server.address[1]
        log.info("listening on %s:%d", self.host, self.port)

    def stop_listening(self) -> None:
        if self.server is not None:
            self.server.close()

    def _handle(self, sock, addr) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Client(self, sock, addr)
        self.clients.append(client)
        log.info("client %s connected", client.peer)
        try:
            client.serve()
        finally:
            client.wait_closed(5)
            if client in self.clients:
                self.clients.remove(client)
            log.info("client %s disconnected (%d events sent)", client.peer, client.sent_events)

    def close_clients(self, notice: bool) -> None:
        for c in list(self.clients):
            c.close(notice=notice)
        for c in list(self.clients):
            c.wait_closed(5)
            if not notice:
                c.abort()

    # -- publishing ----------------------------------------------------------------------------------------
    def publish(self, ev: SimEvent, apply: bool = True) -> None:
        """Fold the event into the channel table, then send it to every client subscribed to it."""
        if ev.seq_index >= 0:
            ev.set_sequence(self.next_sequence())
        if ev.ts_us > self.last_ts:
            self.last_ts = ev.ts_us
        if apply:
            self.table.apply(ev)
        if self.cdr is not None:
            self.cdr.observe(ev)
        self.published += 1
        plain = js = None
        for c in self.clients:
            if c.wants(ev):
                if c.fmt == "json":
                    if js is None:
                        js = ev.json()
                    c.send(js)
                elif c.fmt == "xml":
                    c.send(ev.xml())
                else:
                    if plain is None:
                        plain = ev.plain()
                    c.send(plain)
                c.sent_events += 1

    def backpressure(self) -> None:
        """Wait while a client has too much queued; drop one that stays stuck."""
        for c in list(self.clients):
            if c.queued > HIGH_WATER and not c.wait_drained(STALL_TIMEOUT):
                log.warning("client %s: not reading (%d bytes queued), dropping it", c.peer, c.queued)
                c.abort()

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def core_event(self, name: str, items: list[tuple[str, str]], body: str = "", calling=("", "", "")) -> SimEvent:
        """A non-channel event (API, BACKGROUND_JOB, ...) stamped like FreeSWITCH stamps its events."""
        ts = self.last_ts or int(time.time() * 1_000_000)   # the timeline's clock, not the wall's
        head = [("Event-Name", name)] + [(k, v) for k, v in self.core.items()] + date_headers(ts) + [
            ("Event-Calling-File", calling[0]), ("Event-Calling-Function", calling[1]),
            ("Event-Calling-Line-Number", calling[2]), ("Event-Sequence", "")]
        ev = SimEvent(name, "", ts, [head + items], body)
        ev.seq_index = len(head) - 1
        return ev

    # -- commands ------------------------------------------------------------------------------------------
    def handle_command(self, c: Client, cmd: str, headers: dict[str, str], body: bytes) -> None:
        low = cmd.lower()
        if low.startswith("exit") or low.startswith("..."):
            c.send(command_reply("+OK bye"))
            c.close(notice=True)
            return
        if not c.authed:
            if low.startswith("auth "):
                if cmd[5:] == self.password:
                    c.authed = True
                    c.send(command_reply("+OK accepted"))
                    log.info("client %s authenticated", c.peer)
                else:
                    c.send(command_reply("-ERR invalid"))
                    log.info("client %s: wrong password, disconnecting", c.peer)
                    c.close(notice=True)
            elif low.startswith("userauth "):
                c.send(command_reply("-ERR invalid"))
                c.close(notice=True)
            else:
                c.send(command_reply("-ERR command not found"))
            return
        if low.startswith("api "):
            api_cmd, _, arg = cmd[4:].partition(" ")
            text = self.run_api(api_cmd.strip(), arg.strip())
            c.send(api_response(text or "-ERR no reply\n"))
            self._api_event(api_cmd.strip(), arg.strip())
        elif low.startswith("bgapi "):
            api_cmd, _, arg = cmd[6:].partition(" ")
            job = headers.get("Job-UUID") or str(uuidlib.uuid4())
            c.send(f"Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n".encode())
            gevent.spawn(self._bgapi, api_cmd.strip(), arg.strip(), job)
        elif low.startswith("event"):
            c.send(command_reply(self._event_cmd(c, cmd)))
        elif low.startswith("nixevent"):
            c.send(command_reply(self._nixevent_cmd(c, cmd)))
        elif low.startswith("noevents"):
            if c.events_on:
                c.events_on = False
                c.event_list.clear()
                c.custom.clear()
                c.all_custom = False
                c.send(command_reply("+OK no longer listening for events"))
            else:
                c.send(command_reply("-ERR not listening for events"))
        elif low.startswith("filter "):
            c.send(command_reply(self._filter_cmd(c, cmd[7:])))
        elif low.startswith("sendevent"):
            c.send(command_reply(f"+OK {uuidlib.uuid4()}"))
        elif low.startswith("sendmsg"):
            target = cmd[7:].strip() or headers.get("uuid", "")
            c.send(command_reply("+OK" if target in self.table.rows else f"-ERR invalid session id [{target}]"))
        elif low.startswith("nolog"):
            c.send(command_reply("-ERR not loging"))
        elif low.startswith("log"):
            c.send(command_reply("+OK log level DEBUG [7]"))
        elif low.startswith("linger") or low.startswith("nolinger"):
            c.send(command_reply("-ERR not controlling a session"))
        elif low.startswith("myevents") or low.startswith("divert_events"):
            c.send(command_reply("-ERR not controlling a session."))
        else:
            c.send(command_reply("-ERR command not found"))

    def _event_cmd(self, c: Client, cmd: str) -> str:
        tokens = cmd.split(" ")[1:]
        custom = False
        keys = 0
        names = []
        for i, tok in enumerate(t for t in tokens if t):
            if i == 0 and tok.lower() in ("plain", "json", "xml"):
                c.fmt = tok.lower()
                continue
            if custom:
                c.custom.add(tok)
                names.append(tok)
                continue
            name = event_name(tok)
            if name is None:
                continue
            keys += 1
            c.event_list.add(name)
            names.append(name)
            if name == "CUSTOM":
                custom = True
            elif name == "ALL":
                c.all_custom = True
        if not keys:
            return "-ERR no keywords supplied"
        c.events_on = True
        log.info("client %s subscribed (%s): %s", c.peer, c.fmt, " ".join(names))
        self.subscribed.set()
        return f"+OK event listener enabled {c.fmt}"

    def _nixevent_cmd(self, c: Client, cmd: str) -> str:
        custom = False
        keys = 0
        for tok in (t for t in cmd.split(" ")[1:] if t):
            if custom:
                c.custom.discard(tok)
                continue
            name = event_name(tok)
            if name is None:
                continue
            keys += 1
            if name == "CUSTOM":
                custom = True
            elif name == "ALL":
                c.event_list.clear()
                c.custom.clear()
                c.all_custom = False
            else:
                if "ALL" in c.event_list:
                    c.event_list = set(EVENT_NAMES - {"ALL"})
                c.event_list.discard(name)
        if not keys:
            return "-ERR no keywords supplied"
        c.events_on = True
        return "+OK events nixed"

    @staticmethod
    def _filter_cmd(c: Client, rest: str) -> str:
        rest = rest.lstrip(" ")
        name, sep, value = rest.partition(" ")
        if name.lower() == "delete" and sep:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                c.filters.clear()
            else:
                c.filters = [(h, v) for h, v in c.filters if not (h == name and (not value or v == value))]
            return f"+OK filter deleted. [{name}][{value or '(null)'}]"
        if not sep:
            return "-ERR invalid syntax"
        if name.lower() == "add":
            name, _, value = value.partition(" ")
        c.filters.append((name, value))
        return f"+OK filter added. [{name}]=[{value}]"

    def _bgapi(self, api_cmd: str, arg: str, job: str) -> None:
        if api_cmd.lower() == "originate":  # answered once the operator's phone answers, with the call's events
            self._api_event(api_cmd, arg)
            self.originator.run(arg, lambda text: self._job_done(api_cmd, arg, job, text))
            return
        text = self.run_api(api_cmd, arg) or "Command returned no output!"
        self._api_event(api_cmd, arg)
        self._job_done(api_cmd, arg, job, text)

    def _job_done(self, api_cmd: str, arg: str, job: str, text: str) -> None:
        """FreeSWITCH's BACKGROUND_JOB: a bgapi job's answer as the event's body."""
        items = [("Job-UUID", job), ("Job-Command", api_cmd)]
        if arg:
            items.append(("Job-Command-Arg", arg))
        ev = self.core_event("BACKGROUND_JOB", items, body=text, calling=("mod_event_socket.c", "api_exec", "1572"))
        self.publish(ev, apply=False)

    def _api_event(self, api_cmd: str, arg: str) -> None:
        if not self.emit_api_events:
            return
        items = [("API-Command", api_cmd)] if api_cmd else []
        if arg:
            items.append(("API-Command-Argument", arg))
        ev = self.core_event("API", items, calling=("switch_loadable_module.c", "switch_api_execute", "2954"))
        self.publish(ev, apply=False)

    # -- api commands --------------------------------------------------------------------------------------
    def run_api(self, cmd: str, arg: str) -> str:
        """The text an `api` command returns (mod_commands semantics for what the simulator knows)."""
        name = cmd.lower()
        if name == "status":
            return self._status()
        if name == "uptime":
            scale = {"": 1e6, "us": 1, "microseconds": 1, "ms": 1e3, "milliseconds": 1e3, "s": 1e6, "seconds": 1e6,
                     "m": 6e7, "minutes": 6e7, "h": 3.6e9, "hours": 3.6e9, "d": 8.64e10, "days": 8.64e10}.get(arg.lower())
            if scale is None:
                return "-USAGE: [us|ms|s|m|h|d|microseconds|milliseconds|seconds|minutes|hours|days]\n"
            return f"{int((time.monotonic() - self.started_at) * 1e6 / scale)}\n"
        if name == "version":
            return f"FreeSWITCH Version {FS_VERSION}~64bit ( 64bit)\n"
        if name == "hostname":
            return self.core["FreeSWITCH-Hostname"]
        if name == "show":
            return self._show(arg)
        if name == "uuid_exists":
            return "true" if arg.split(" ")[0] in self.table.rows else "false"
        if name == "uuid_kill":
            return "+OK" if arg.split(" ")[0] in self.table.rows else "-ERR No such channel!\n"
        if name == "originate":  # `api originate` blocks the connection until the operator's phone answers
            answer = gevent.event.AsyncResult()
            gevent.spawn(self.originator.run, arg, answer.set)
            return answer.get()
        if name == "global_getvar":
            return {"hostname": self.core["FreeSWITCH-Hostname"], "switchname": self.core["FreeSWITCH-Switchname"]}.get(arg, "")
        return f"-ERR {cmd} Command not found!\n"

    def _show(self, arg: str) -> str:
        argv = arg.split()
        if not argv:
            return "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels [count|like <match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|interfaces|interface_types|tasks|limits|status\n"
        fmt, delim = "text", ","
        lower = [a.lower() for a in argv]
        if "as" in lower[1:]:                      # show <what> [...] as json|xml|delim <sep>
            i = lower.index("as", 1)
            fmt = lower[i + 1] if i + 1 < len(argv) else "text"
            if fmt == "delim":
                fmt, delim = "text", (argv[i + 2] if i + 2 < len(argv) else ",")
            argv = argv[:i]
        what = argv[0].lower()
        if what in ("channels", "calls") and len(argv) > 1 and argv[1].lower() == "count":
            n = len(self.table.rows) if what == "channels" else len(self.table.call_rows())
            return json.dumps({"row_count": n}) if fmt == "json" else f"\n{n} total.\n"
        if what == "channels":
            return render_rows(self.table.channel_rows(), CHANNEL_COLUMNS, fmt, delim)
        if what in ("calls", "bridged_calls"):
            rows = self.table.call_rows()
            if what == "bridged_calls":
                rows = [r for r in rows if r["b_uuid"]]
            return render_rows(rows, CALL_COLUMNS, fmt, delim)
        if fmt == "json":
            return '{"row_count": 0}\n'
        return "\n0 total.\n"

    def _uptime(self) -> str:
        """'0 years, 0 days, 0 hours, 0 minutes, 59 seconds, 544 milliseconds, 344 microseconds', as FreeSWITCH says it."""
        us = int((time.monotonic() - self.started_at) * 1_000_000)
        parts = []
        for unit, size in (("year", 31_536_000_000_000), ("day", 86_400_000_000), ("hour", 3_600_000_000),
                           ("minute", 60_000_000), ("second", 1_000_000), ("millisecond", 1000), ("microsecond", 1)):
            n, us = divmod(us, size)
            parts.append(f"{n} {unit}{'' if n == 1 else 's'}")
        return ", ".join(parts)

    def _status(self) -> str:
        t = self.table
        sps = t.sessions_per_second()
        return (f"UP {self._uptime()}\n"
                f"FreeSWITCH (Version {FS_VERSION}  64bit) is ready\n"
                f"{t.sessions_since_startup} session(s) since startup\n"
                f"{len(t.rows)} session(s) - peak {t.peak}, last 5min {t.peak} \n"
                f"{sps} session(s) per Sec out of max 50, peak {t.sps_peak}, last 5min {t.sps_peak} \n"
                "200 session(s) max\n"
                "min idle cpu 0.00/99.67\n"
                "Current Stack Size/Max 240K/8192K\n")

    def heartbeat_event(self) -> SimEvent:
        """The HEARTBEAT event with the figures FreeSWITCH puts in it (switch_core.c send_heartbeat)."""
        t = self.table
        items = [("Event-Info", "System Ready"), ("Up-Time", self._uptime()),
                 ("FreeSWITCH-Version", f"{FS_VERSION}~64bit"),
                 ("Uptime-msec", str(int((time.monotonic() - self.started_at) * 1000))),
                 ("Session-Count", str(len(t.rows))), ("Max-Sessions", "200"), ("Session-Per-Sec", "50"),
                 ("Session-Per-Sec-Last", str(t.sessions_per_second())), ("Session-Per-Sec-Max", str(t.sps_peak)),
                 ("Session-Per-Sec-FiveMin", str(t.sps_peak)), ("Session-Since-Startup", str(t.sessions_since_startup)),
                 ("Session-Peak-Max", str(t.peak)), ("Session-Peak-FiveMin", str(t.peak)), ("Idle-CPU", "99.670000")]
        return self.core_event("HEARTBEAT", items, calling=("switch_core.c", "send_heartbeat", "95"))

    def _heartbeats(self) -> None:
        while self.heartbeat > 0:
            gevent.sleep(self.heartbeat)
            self.publish(self.heartbeat_event(), apply=False)

    # -- timelines -----------------------------------------------------------------------------------------
    def play(self, events, speed: float, restamp: bool = False) -> int:
        """Publish an iterable of events, pacing them by Event-Date-Timestamp / speed. Returns how many.

        restamp: an event with a time is stamped with the wall-clock moment it is due on this timeline (at
        speed 0: the moment it is sent), however late the sending is, so a lag shows in the latency measured
        from the stamp; the times of its channels' timetables move with it (see `clock`).
        """
        pace = speed not in (0, float("inf")) and speed > 0
        wall0, epoch0 = time.monotonic(), time.time()
        ts0 = None
        recorded: list[int] = []   # unpaced: the recorded stamps sent so far, ascending, and what each became
        live: list[int] = []

        def clock(t: int) -> int:
            """A recorded moment on this timeline: at a pace, the line through the events' due times; unpaced,
            the stamp of the last event sent that was recorded at or before it (nothing happens between sends)."""
            if pace:
                return int((epoch0 + (t - ts0) / 1e6 / speed) * 1_000_000)
            i = bisect.bisect_right(recorded, t) - 1
            return live[i] if i >= 0 else live[0] - (recorded[0] - t)

        n = 0
        late = {0.001: 0, 0.01: 0, 0.1: 0}     # events handed to the clients later than that after they were due
        latest = 0.0
        for ev in events:
            if pace and ev.ts_us:
                if ts0 is None:
                    ts0 = ev.ts_us
                due = max(0.0, (ev.ts_us - ts0) / 1e6 / speed)
                if restamp:
                    ev.restamp(int((epoch0 + due) * 1_000_000), clock)
                delay = wall0 + due - time.monotonic()
                if delay > 0:               # never early: the stamp is the moment the event is due
                    gevent.sleep(delay)
                    delay = wall0 + due - time.monotonic()
                latest = max(latest, -delay)
                for limit in late:
                    late[limit] += -delay > limit
            elif restamp and ev.ts_us:
                stamp = int(time.time() * 1_000_000)
                if not recorded or ev.ts_us > recorded[-1]:
                    recorded.append(ev.ts_us)
                    live.append(stamp)
                ev.restamp(stamp, clock)
            self.publish(ev)
            n += 1
            if n % 64 == 0:
                self.backpressure()
                gevent.sleep(0)
        self.backpressure()
        if pace:
            log.info("timeline: %d events; late by over 1 ms: %d, 10 ms: %d, 100 ms: %d; at most %.1f ms", n,
                     late[0.001], late[0.01], late[0.1], latest * 1000)
        return n

    def replay(self, path: str | Path, speed: float = 1.0, linger: float = 1.0, from_event: int = 0,
               until_event: int | None = None, restamp: bool = False) -> int:
        """Replay a capture's events (after its own auth/request and command/reply frames) to the subscribers.

        The timeline starts when the first client subscribes. Events before `from_event` only build the
        channel table (FreeSWITCH was already running with those calls up); events from `until_event` on are
        never sent: after event until_event-1 the switch "crashes" (connections closed without a notice) and
        EXIT_CRASHED is returned. Otherwise, after the last event the switch lingers `linger` seconds, says
        goodbye with a disconnect notice to everyone, and EXIT_OK is returned. With `restamp`, every event sent
        carries the moment it is due on the live timeline instead of its recorded time (see `play`).
        """
        events = load_capture_events(path)
        if self.recorder is not None:
            events = with_recordings(events, self.recorder)
        total = len(events)
        self.core.update((k, v) for k, v in _core_identity(events).items() if v)
        if events:
            try:
                self.sequence = max(int(e.get("Event-Sequence") or 0) for e in events)
            except ValueError:
                pass
        start = max(0, min(from_event or 0, total))
        stop = total if until_event is None else max(start, min(until_event, total))
        for ev in events[:start]:
            self.table.apply(ev)
            if self.cdr is not None:
                self.cdr.observe(ev)  # those legs ended while nobody listened: their CDRs were posted all the same
        if restamp:
            for ev in events[start:stop]:
                ev.prepare_restamp()
        log.info("replay %s: %d events, sending %d..%d at speed %s%s%s", Path(path).name, total, start, stop - 1,
                 speed, ", restamped to the live timeline" if restamp else "",
                 f" ({len(self.table.rows)} channel(s) already up)" if start else "")
        self.subscribed.wait()
        log.info("replay: timeline started (first subscriber)")
        sent = self.play(events[start:stop], speed, restamp)
        if until_event is not None:
            log.info("replay: stopping after event %d as asked (--until-event %d): closing %d client(s) abruptly",
                     stop - 1, until_event, len(self.clients))
            self.stop_listening()
            self.close_clients(notice=False)
            return EXIT_CRASHED
        log.info("replay: done (%d events sent); lingering %ss", sent, linger)
        gevent.sleep(max(0.0, linger))
        self.stop_listening()
        self.close_clients(notice=True)
        log.info("replay: finished, goodbye")
        return EXIT_OK

    def generate(self, generator, linger: float = 1.0, speed: float = 1.0) -> int:
        """Publish a call generator's events (generator.CallGenerator), then linger and say goodbye."""
        self.emit_api_events = True
        gevent.spawn(self._heartbeats)
        self.core.update(generator.core)
        self.sequence = generator.sequence_base
        generator.bind(self)
        log.info("generate: %s", generator.describe())
        self.subscribed.wait()
        log.info("generate: timeline started (first subscriber)")
        sent = self.play(generator.events(), speed)
        log.info("generate: done (%d calls, %d events); lingering %ss", generator.calls_started, sent, linger)
        gevent.sleep(max(0.0, linger))
        self.stop_listening()
        self.close_clients(notice=True)
        return EXIT_OK

    def idle(self) -> int:
        """Serve the protocol (no events but the heartbeat) until stopped."""
        gevent.spawn(self._heartbeats)
        gevent.event.Event().wait()
        return EXIT_OK

