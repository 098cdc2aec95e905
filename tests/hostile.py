"""A hostile event socket for the tests: garbage frames and a real call with a hostile caller-ID name, served by a
scripted FreeSWITCH (the daemon, push and tray tests all feed it)."""
from __future__ import annotations

import socket
import threading

from screenpop.simulator.capture import read_events

from support import CAPTURES

HOSTILE_NAME = "<b>VIP</b> & \"Ünïcødé\" ; DROP TABLE call; -- 'x' \x07\x1b[31m red"


def hostile_stream() -> bytes:
    """Garbage and lying frames, then a real call whose caller-ID name is hostile and a non-UTF-8 event."""
    from screenpop.daemon.pbx.protocol import encode_value

    parts = [
        b"this is not a frame\n\n",
        b"Content-Type: text/event-plain\nContent-Length: banana\n\n",
        b"Content-Type: text/event-plain\nContent-Length: -5\n\n",
        b"Content-Type: text/event-plain\nX-Huge: " + b"A" * (1024 * 1024) + b"\n\n",
        b"Content-Type: text/event-plain\nContent-Length: 40\n\nEvent-Name: CHANNEL_CREATE\nUnique-ID: \xff\xfe\n\n",
    ]
    events = read_events(CAPTURES / "inbound-answered.plain.esl")
    for frame, _ in events:
        body = frame.body
        body = body.replace(b"Caller-Caller-ID-Name: J%C3%B3n%20J%C3%B3nsson", b"Caller-Caller-ID-Name: " + encode_value(HOSTILE_NAME).encode())
        body = body.replace(b"Caller-Orig-Caller-ID-Name: J%C3%B3n%20J%C3%B3nsson", b"Caller-Orig-Caller-ID-Name: " + encode_value(HOSTILE_NAME).encode())
        parts.append(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body)
    parts.append(b"Content-Length: 30\nContent-Type: text/event-plain\n\nEvent-Name: HEARTBEAT\n\xc3\x28\xa0\n\n")
    return b"".join(parts)


class FakeFreeswitch(threading.Thread):
    """A scripted event socket: handshake like FreeSWITCH, then whatever bytes the test gives it."""

    def __init__(self, port: int, payload: bytes):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", port))
        self.payload = payload
        self.sent = threading.Event()

    def run(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            reader = conn.makefile("rb")
            conn.sendall(b"Content-Type: auth/request\n\n")
            for reply in (b"+OK accepted", b"+OK event listener enabled plain"):
                while reader.readline() not in (b"\n", b""):
                    pass
                conn.sendall(b"Content-Type: command/reply\nReply-Text: " + reply + b"\n\n")
            while reader.readline() not in (b"\n", b""):
                pass
            body = b'{"row_count":0}'
            conn.sendall(b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body)
            conn.sendall(self.payload)
            self.sent.set()
            conn.recv(1)
