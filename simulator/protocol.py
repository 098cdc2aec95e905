"""The simulator's side of mod_event_socket: handshake, command replies, and one inbound connection (Client:
reading command blocks, subscriptions and filters, writing events with backpressure)."""
from __future__ import annotations

import logging
import re
from collections import deque

import gevent
import gevent.event

from screenpop.daemon.pbx.protocol import Frame, FrameError, FrameSplitter
from screenpop.simulator.events import SimEvent

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
# One event-socket connection
# ---------------------------------------------------------------------------------------------------------

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
        """Read command blocks (protocol.FrameSplitter; CRLF blank lines too) and hand each to the simulator."""
        splitter = FrameSplitter(max_head=MAX_PACKET, max_body=MAX_PACKET, keep_raw=True,
                                  discard_long=False, crlf=True)
        self.send(AUTH_REQUEST)
        try:
            while self.running:
                data = self.sock.recv(65536)
                if not data:
                    return
                splitter.feed(data)
                try:
                    for frame in splitter.frames():
                        if not self.running:
                            return
                        self._command(frame)
                except FrameError as exc:
                    log.warning("client %s: %s, dropping the connection", self.peer, exc)
                    self.abort()
                    return
        except OSError:
            pass
        finally:
            if not self._closed and not self._close_after_flush:
                self.close(notice=False)

    def _command(self, frame: Frame) -> None:
        """Act on one command block; an error in it is answered, never let kill the connection or the server."""
        block = frame.raw[:len(frame.raw) - len(frame.body)]
        lines = block.decode("utf-8", "replace").replace("\r", "").split("\n")
        while lines and not lines[0].strip():   # stray blank lines before a command
            lines.pop(0)
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers[k.strip()] = v.strip()
        try:
            self.sim.handle_command(self, lines[0].strip(), headers, frame.body)
        except Exception:  # never let one bad command kill the connection or the server
            log.exception("client %s: error handling %r", self.peer, lines[0][:80])
            self.send(command_reply("-ERR command parse error."))


