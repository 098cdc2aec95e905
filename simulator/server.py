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

Run it as its own process: `python -m screenpop.simulator.server --replay X.plain.esl --speed 0`.
"""
from __future__ import annotations

import argparse
import bisect
import json
import logging
import re
import signal
import sys
import time
import uuid as uuidlib
from collections import deque
from pathlib import Path

import gevent
import gevent.event
from gevent import socket
from gevent.server import StreamServer

from screenpop.simulator.capture import read_capture
from screenpop.simulator.cdr import ENCODINGS, CdrPoster
from screenpop.simulator.events import SimEvent
from screenpop.simulator.originate import Originator

log = logging.getLogger("screenpop.simulator")

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
DISCONNECT_NOTICE = (b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
                     b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")
MAX_PACKET = 1024 * 1024          # a command block larger than this is hostile: drop the client
HIGH_WATER = 4 * 1024 * 1024      # queued bytes per client before the publisher waits for it
STALL_TIMEOUT = 15.0              # a client that does not drain below HIGH_WATER in this long is dropped

EXIT_OK = 0
EXIT_CRASHED = 3                  # --until-event: the simulated FreeSWITCH "crashed" as asked

FS_VERSION = "1.10.12-release"
LAB_USERS = frozenset(str(n) for n in range(1001, 1011))  # the lab's registered phones (`originate` rings only these)
CORE = {  # the identity of the simulated switch (the lab the captures came from)
    "Core-UUID": "",
    "FreeSWITCH-Hostname": "vm",
    "FreeSWITCH-Switchname": "pbx",
    "FreeSWITCH-IPv4": "192.0.2.2",
    "FreeSWITCH-IPv6": "fd00::2",
}

# switch_event.c EVENT_NAMES: what `event`/`nixevent` accept (case-insensitive, optional SWITCH_EVENT_ prefix).
EVENT_NAMES = frozenset("""
CUSTOM CLONE CHANNEL_CREATE CHANNEL_DESTROY CHANNEL_STATE CHANNEL_CALLSTATE CHANNEL_ANSWER CHANNEL_HANGUP
CHANNEL_HANGUP_COMPLETE CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_BRIDGE
CHANNEL_UNBRIDGE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_OUTGOING CHANNEL_PARK CHANNEL_UNPARK
CHANNEL_APPLICATION CHANNEL_ORIGINATE CHANNEL_UUID API LOG INBOUND_CHAN OUTBOUND_CHAN STARTUP SHUTDOWN PUBLISH
UNPUBLISH TALK NOTALK SESSION_CRASH MODULE_LOAD MODULE_UNLOAD DTMF MESSAGE PRESENCE_IN NOTIFY_IN PRESENCE_OUT
PRESENCE_PROBE MESSAGE_WAITING MESSAGE_QUERY ROSTER CODEC BACKGROUND_JOB DETECTED_SPEECH DETECTED_TONE
PRIVATE_COMMAND HEARTBEAT TRAP ADD_SCHEDULE DEL_SCHEDULE EXE_SCHEDULE RE_SCHEDULE RELOADXML NOTIFY PHONE_FEATURE
PHONE_FEATURE_SUBSCRIBE SEND_MESSAGE RECV_MESSAGE REQUEST_PARAMS CHANNEL_DATA GENERAL COMMAND SESSION_HEARTBEAT
CLIENT_DISCONNECTED SERVER_DISCONNECTED SEND_INFO RECV_INFO RECV_RTCP_MESSAGE SEND_RTCP_MESSAGE CALL_SECURE NAT
RECORD_START RECORD_STOP PLAYBACK_START PLAYBACK_STOP CALL_UPDATE FAILURE SOCKET_DATA MEDIA_BUG_START
MEDIA_BUG_STOP CONFERENCE_DATA_QUERY CONFERENCE_DATA CALL_SETUP_REQ CALL_SETUP_RESULT CALL_DETAIL DEVICE_STATE
TEXT SHUTDOWN_REQUESTED CERT_RELOAD ALL""".split())


def event_name(token: str) -> str | None:
    """The canonical event name for a subscription token, or None (switch_name_event)."""
    up = token.upper()
    if up in EVENT_NAMES:
        return up
    if len(up) > 13 and up[13:] in EVENT_NAMES:
        return up[13:]
    return None


def command_reply(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode("utf-8", "replace")


def api_response(body: str | bytes) -> bytes:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


# ---------------------------------------------------------------------------------------------------------
# The core database FreeSWITCH keeps from its own events (switch_core_sqldb.c core_event_handler)
# ---------------------------------------------------------------------------------------------------------

CHANNEL_COLUMNS = (
    "uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr", "dest",
    "application", "application_data", "dialplan", "context", "read_codec", "read_rate", "read_bit_rate",
    "write_codec", "write_rate", "write_bit_rate", "secure", "hostname", "presence_id", "presence_data",
    "accountcode", "callstate", "callee_name", "callee_num", "callee_direction", "call_uuid", "sent_callee_name",
    "sent_callee_num", "initial_cid_name", "initial_cid_num", "initial_ip_addr", "initial_dest",
    "initial_dialplan", "initial_context",
)
_CALL_A = ("uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr",
           "dest", "presence_id", "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
           "callee_direction", "call_uuid", "hostname", "sent_callee_name", "sent_callee_num")
_CALL_B = ("uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr",
           "dest", "presence_id", "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
           "callee_direction", "sent_callee_name", "sent_callee_num")
CALL_COLUMNS = _CALL_A + tuple("b_" + c for c in _CALL_B) + ("call_created_epoch",)

CS_NEW, CS_INIT, CS_ROUTING, CS_EXECUTE, CS_REPORTING, CS_HANGUP, CS_DESTROY = 0, 1, 2, 4, 11, 10, 12
CCS_DOWN, CCS_HANGUP = 0, 7


class ChannelTable:
    """The `channels` and `calls` tables, maintained from events exactly as FreeSWITCH's core does."""

    def __init__(self, switchname: str = "pbx"):
        self.switchname = switchname
        self.rows: dict[str, dict[str, str]] = {}
        self.calls: list[dict[str, str]] = []
        self.sessions_since_startup = 0
        self.peak = 0
        self._creates: deque[float] = deque()
        self._pending: dict[str, list[dict[str, str]]] = {}
        self.sps_peak = 0

    def _update(self, uuid: str, **cols: str) -> None:
        row = self.rows.get(uuid)
        if row is not None:
            row.update(cols)
        elif uuid:
            # FreeSWITCH queues inserts ahead of updates, so an update fired just before CHANNEL_CREATE
            # (the a-leg's CODEC events) still lands on the new row.
            if len(self._pending) > 10000:
                self._pending.clear()
            self._pending.setdefault(uuid, []).append(cols)

    def apply(self, ev: SimEvent, now_epoch: int | None = None) -> None:
        """Fold one event into the tables (`ev.get` reads its headers)."""
        name = ev.name
        g = ev.get
        uid = g("Unique-ID")
        if name == "CHANNEL_CREATE":
            epoch = str(now_epoch if now_epoch is not None else (ev.ts_us // 1_000_000 or int(time.time())))
            row = dict.fromkeys(CHANNEL_COLUMNS, "")
            row.update(uuid=uid, direction=g("Call-Direction"), created=g("Event-Date-Local"), created_epoch=epoch,
                       name=g("Channel-Name"), state=g("Channel-State"), callstate=g("Channel-Call-State"),
                       dialplan=g("Caller-Dialplan"), context=g("Caller-Context"), hostname=self.switchname,
                       initial_cid_name=g("Caller-Caller-ID-Name"), initial_cid_num=g("Caller-Caller-ID-Number"),
                       initial_ip_addr=g("Caller-Network-Addr"), initial_dest=g("Caller-Destination-Number"),
                       initial_dialplan=g("Caller-Dialplan"), initial_context=g("Caller-Context"))
            for cols in self._pending.pop(uid, ()):
                row.update(cols)
            self.rows[uid] = row
            self.sessions_since_startup += 1
            self.peak = max(self.peak, len(self.rows))
            self._creates.append(time.monotonic())
            self.sps_peak = max(self.sps_peak, self.sessions_per_second())
        elif name in ("CHANNEL_ANSWER", "CHANNEL_PROGRESS_MEDIA", "CODEC"):
            self._update(uid, read_codec=g("Channel-Read-Codec-Name"), read_rate=g("Channel-Read-Codec-Rate"),
                         read_bit_rate=g("Channel-Read-Codec-Bit-Rate"), write_codec=g("Channel-Write-Codec-Name"),
                         write_rate=g("Channel-Write-Codec-Rate"), write_bit_rate=g("Channel-Write-Codec-Bit-Rate"))
        elif name in ("CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_EXECUTE"):
            self._update(uid, application=g("Application"), application_data=g("Application-Data"),
                         presence_id=g("Channel-Presence-ID"), presence_data=g("Channel-Presence-Data"),
                         accountcode=g("variable_accountcode"))
        elif name == "CHANNEL_ORIGINATE":
            self._update(uid, presence_id=g("Channel-Presence-ID"), presence_data=g("Channel-Presence-Data"),
                         accountcode=g("variable_accountcode"), call_uuid=g("Channel-Call-UUID"))
        elif name == "CALL_UPDATE":
            self._update(uid, callee_name=g("Caller-Callee-ID-Name"), callee_num=g("Caller-Callee-ID-Number"),
                         sent_callee_name=g("Sent-Callee-ID-Name"), sent_callee_num=g("Sent-Callee-ID-Number"),
                         callee_direction=g("Direction"), cid_name=g("Caller-Caller-ID-Name"),
                         cid_num=g("Caller-Caller-ID-Number"))
        elif name == "CHANNEL_CALLSTATE":
            try:
                num = int(g("Channel-Call-State-Number") or 0)
            except ValueError:
                num = CCS_DOWN
            if num not in (CCS_DOWN, CCS_HANGUP):
                self._update(uid, callstate=g("Channel-Call-State"))
        elif name == "CHANNEL_STATE":
            try:
                num = int(g("Channel-State-Number"))
            except ValueError:
                num = CS_DESTROY
            if num in (CS_NEW, CS_INIT, CS_REPORTING, CS_HANGUP, CS_DESTROY):
                pass
            elif num == CS_ROUTING:
                self._update(uid, state=g("Channel-State"), cid_name=g("Caller-Caller-ID-Name"),
                             cid_num=g("Caller-Caller-ID-Number"), callee_name=g("Caller-Callee-ID-Name"),
                             callee_num=g("Caller-Callee-ID-Number"), sent_callee_name=g("Sent-Callee-ID-Name"),
                             sent_callee_num=g("Sent-Callee-ID-Number"), ip_addr=g("Caller-Network-Addr"),
                             dest=g("Caller-Destination-Number"), dialplan=g("Caller-Dialplan"),
                             context=g("Caller-Context"), presence_id=g("Channel-Presence-ID"),
                             presence_data=g("Channel-Presence-Data"), accountcode=g("variable_accountcode"))
            else:
                self._update(uid, state=g("Channel-State"))
        elif name == "CHANNEL_BRIDGE":
            a, b = g("Bridge-A-Unique-ID"), g("Bridge-B-Unique-ID")
            if not a or not b:
                a, b = g("Caller-Unique-ID"), g("Other-Leg-Unique-ID")
            call_uuid = g("Channel-Call-UUID")
            for u in (a, b):
                self._update(u, call_uuid=call_uuid)
            epoch = str(now_epoch if now_epoch is not None else (ev.ts_us // 1_000_000 or int(time.time())))
            self.calls.append({"call_uuid": call_uuid, "call_created": g("Event-Date-Local"),
                               "call_created_epoch": epoch, "caller_uuid": a, "callee_uuid": b})
        elif name == "CHANNEL_UNBRIDGE":
            cuuid = g("Caller-Unique-ID")
            call_uuid = g("Channel-Call-UUID")
            for row in self.rows.values():
                if row["call_uuid"] == call_uuid:
                    row["call_uuid"] = row["uuid"]
            self.calls = [c for c in self.calls if cuuid not in (c["caller_uuid"], c["callee_uuid"])]
        elif name == "CHANNEL_DESTROY":
            if uid:
                self.rows.pop(uid, None)
                self._pending.pop(uid, None)
                self.calls = [c for c in self.calls if uid not in (c["caller_uuid"], c["callee_uuid"])]
        elif name == "CHANNEL_UUID":
            old = g("Old-Unique-ID")
            row = self.rows.pop(old, None)
            if row is not None:
                row["uuid"] = uid
                self.rows[uid] = row
            for row in self.rows.values():
                if row["call_uuid"] == old:
                    row["call_uuid"] = uid

    def channel_rows(self) -> list[dict[str, str]]:
        """`select * from channels order by created_epoch` (ties in insertion order)."""
        return sorted(self.rows.values(), key=lambda r: int(r["created_epoch"] or 0))

    def call_rows(self) -> list[dict[str, str]]:
        """The basic_calls view ordered by call_created_epoch (unbridged legs, whose epoch is NULL, first)."""
        callees = {c["callee_uuid"] for c in self.calls}
        out = []
        for a in self.rows.values():
            mine = [c for c in self.calls if c["caller_uuid"] == a["uuid"]]
            if not mine:
                if a["uuid"] in callees:
                    continue
                mine = [None]
            for c in mine:
                row = {k: a[k] for k in _CALL_A}
                b = self.rows.get(c["callee_uuid"]) if c else None
                for k in _CALL_B:
                    row["b_" + k] = b[k] if b else ""
                row["call_created_epoch"] = c["call_created_epoch"] if c else ""
                out.append(row)
        return sorted(out, key=lambda r: (r["call_created_epoch"] != "", int(r["call_created_epoch"] or 0)))

    def sessions_per_second(self) -> int:
        now = time.monotonic()
        while self._creates and now - self._creates[0] > 1.0:
            self._creates.popleft()
        return len(self._creates)


def render_rows(rows: list[dict[str, str]], columns: tuple[str, ...], fmt: str, delim: str = ",") -> str:
    """mod_commands `show` output: JSON like cJSON_PrintUnformatted, else delimited text with a total line."""
    if fmt == "json":
        if not rows:
            return '{"row_count": 0}\n'
        return json.dumps({"row_count": len(rows), "rows": rows}, ensure_ascii=False, separators=(",", ":"))
    lines = [delim.join(columns)] + [delim.join(r.get(c, "") for c in columns) for r in rows] if rows else []
    return "".join(line + "\n" for line in lines) + f"\n{len(rows)} total.\n"


# ---------------------------------------------------------------------------------------------------------
# One event-socket connection
# ---------------------------------------------------------------------------------------------------------

_PACKET_END = re.compile(rb"\r?\n\r?\n")


class Client:
    """An inbound event-socket connection: the reader runs in the server's greenlet, a writer drains `out`."""

    def __init__(self, sim: "Simulator", sock, addr):
        self.sim = sim
        self.sock = sock
        self.peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        self.authed = False
        self.running = True
        self.fmt = "plain"
        self.events_on = False
        self.event_list: set[str] = set()
        self.custom: set[str] = set()
        self.all_custom = False           # `event ... ALL` also subscribes every CUSTOM subclass
        self.filters: list[tuple[str, str]] = []
        self.out: deque[bytes] = deque()
        self.queued = 0
        self.sent_events = 0
        self._wake = gevent.event.Event()
        self._drained = gevent.event.Event()
        self._drained.set()
        self._close_after_flush = False
        self._closed = False
        self._writer = gevent.spawn(self._write_loop)

    # -- output -------------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self._closed or self._close_after_flush:
            return
        self.out.append(data)
        self.queued += len(data)
        if self.queued > HIGH_WATER:
            self._drained.clear()
        self._wake.set()

    def _write_loop(self) -> None:
        try:
            while True:
                while not self.out:
                    if self._close_after_flush or self._closed:
                        return
                    self._wake.clear()
                    self._wake.wait()
                chunks, size = [], 0
                while self.out and size < 1024 * 1024:
                    data = self.out.popleft()
                    chunks.append(data)
                    size += len(data)
                self.sock.sendall(b"".join(chunks) if len(chunks) > 1 else chunks[0])
                self.queued -= size
                if self.queued <= HIGH_WATER // 2:
                    self._drained.set()
        except (OSError, gevent.GreenletExit):
            pass
        finally:
            self._drained.set()
            self._shutdown_socket()

    def _shutdown_socket(self) -> None:
        if not self._closed:
            self._closed = True
            self.running = False
            try:
                self.sock.close()
            except OSError:
                pass

    def close(self, notice: bool = True) -> None:
        """Flush what is queued, optionally add the disconnect notice, then close."""
        if self._closed or self._close_after_flush:
            return
        if notice:
            self.send(DISCONNECT_NOTICE)
        self._close_after_flush = True
        self.running = False
        self._wake.set()

    def abort(self) -> None:
        """Close at once, dropping anything unsent."""
        self.out.clear()
        self._writer.kill(block=False)
        self._shutdown_socket()

    def wait_closed(self, timeout: float) -> None:
        self._writer.join(timeout)

    def wait_drained(self, timeout: float) -> bool:
        return self._drained.wait(timeout)

    # -- subscription --------------------------------------------------------------------------------------
    def wants(self, ev: SimEvent) -> bool:
        if not self.events_on or self._closed or self._close_after_flush:
            return False
        lst = self.event_list
        if "ALL" in lst:
            send = True
        elif ev.name in lst:
            send = ev.name != "CUSTOM" or not ev.subclass or self.all_custom or ev.subclass in self.custom
        else:
            send = False
        if send and self.filters:
            send = self._filtered(ev)
        return send

    def _filtered(self, ev: SimEvent) -> bool:
        for header, value in self.filters:
            hval = ev.get(header)
            if not hval:
                continue
            if value.startswith("/"):
                try:
                    if re.search(value[1:].rstrip("/"), hval):
                        return True
                except re.error:
                    continue
            elif hval.lower() == value.lower():
                return True
        return False

    # -- input ---------------------------------------------------------------------------------------------
    def serve(self) -> None:
        buf = b""
        self.send(AUTH_REQUEST)
        try:
            while self.running:
                m = _PACKET_END.search(buf)
                if m is None:
                    if len(buf) > MAX_PACKET:
                        log.warning("client %s: command block over %d bytes, dropping the connection", self.peer, MAX_PACKET)
                        self.abort()
                        return
                    data = self.sock.recv(65536)
                    if not data:
                        return
                    buf += data
                    continue
                block, buf = buf[:m.start()], buf[m.end():]
                lines = block.decode("utf-8", "replace").replace("\r", "").split("\n")
                while lines and not lines[0].strip():   # stray blank lines before a command
                    lines.pop(0)
                if not lines:
                    continue
                headers = {}
                for line in lines[1:]:
                    k, sep, v = line.partition(":")
                    if sep:
                        headers[k.strip()] = v.strip()
                body = b""
                if "Content-Length" in headers:
                    try:
                        need = max(0, int(headers["Content-Length"]))
                    except ValueError:
                        need = 0
                    if need > MAX_PACKET:
                        log.warning("client %s: body of %d bytes refused, dropping the connection", self.peer, need)
                        self.abort()
                        return
                    while len(buf) < need:
                        data = self.sock.recv(65536)
                        if not data:
                            return
                        buf += data
                    body, buf = buf[:need], buf[need:]
                try:
                    self.sim.handle_command(self, lines[0].strip(), headers, body)
                except Exception:  # never let one bad command kill the connection or the server
                    log.exception("client %s: error handling %r", self.peer, lines[0][:80])
                    self.send(command_reply("-ERR command parse error."))
        except OSError:
            pass
        finally:
            if not self._closed and not self._close_after_flush:
                self.close(notice=False)


# ---------------------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------------------

class Simulator:
    """The event-socket server plus the event timeline (replay or generator) it publishes to its clients."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8021, password: str = "ClueCon"):
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
        self.cdr: CdrPoster | None = None     # mod_json_cdr: posts each ended leg's CDR
        self.heartbeat = 20.0                 # seconds between HEARTBEAT events in generate and idle modes; 0: none
        self.originator = Originator(self.publish, self.core, registered=LAB_USERS)  # `originate`: click-to-call

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


def date_headers(ts_us: int) -> list[tuple[str, str]]:
    """Event-Date-Local / -GMT / -Timestamp for a microsecond timestamp."""
    secs = ts_us // 1_000_000
    return [("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs))),
            ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(secs))),
            ("Event-Date-Timestamp", str(ts_us))]


def load_capture_events(path: str | Path) -> list[SimEvent]:
    """The event frames of a recorded stream (plain or json), as SimEvents that resend their exact bytes.

    Replies and notices the recording client received (auth/request, command/reply...) are not events; a
    truncated last frame is dropped.
    """
    out = []
    for frame in read_capture(path):
        try:
            whole = len(frame.body) == int(frame.headers.get("Content-Length", "-1"))
        except ValueError:
            whole = False
        if not whole:
            continue
        if frame.content_type == "text/event-plain":
            out.append(SimEvent.from_plain_frame(frame.raw, frame.body))
        elif frame.content_type == "text/event-json":
            ev = SimEvent.from_json_frame(frame.raw, frame.body)
            if ev is not None:
                out.append(ev)
    return out


def _core_identity(events: list[SimEvent]) -> dict[str, str]:
    for ev in events:
        if ev.get("Core-UUID"):
            return {k: ev.get(k) for k in CORE}
    return {}


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

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
    p.add_argument("--registered", default="1001-1010", metavar="EXTENSIONS",
                   help="originate: the extensions whose phones are registered (others: -ERR USER_NOT_REGISTERED)")
    p.add_argument("--no-answer", default="", metavar="EXTENSIONS",
                   help="originate: extensions whose phones ring but never answer (-ERR NO_ANSWER after "
                        "originate_timeout)")
    p.add_argument("--originate-speed", type=_speed, default=1.0, metavar="FACTOR",
                   help="originate: time factor for the call's events and NO_ANSWER's wait (0 = no waiting)")
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

    sim = Simulator(args.host, args.port, args.password)
    if args.cdr_url:
        sim.cdr = CdrPoster(args.cdr_url, args.cdr_cred, args.cdr_encode, args.cdr_retries, args.cdr_delay)
    sim.heartbeat = max(0.0, args.heartbeat)
    from screenpop.simulator.generator import parse_extensions
    try:
        sim.originator.registered = frozenset(parse_extensions(args.registered))
        sim.originator.no_answer = frozenset(parse_extensions(args.no_answer)) if args.no_answer else frozenset()
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    sim.originator.speed = args.originate_speed
    generator = None
    if args.generate:
        from screenpop.simulator.generator import CallGenerator, parse_extensions, parse_mix, read_numbers
        try:
            generator = CallGenerator(rate=args.rate, calls=args.calls, duration=args.duration,
                                      mix=parse_mix(args.mix), numbers=read_numbers(args.numbers),
                                      extensions=parse_extensions(args.extensions), seed=args.seed,
                                      expect_path=args.expect)
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
