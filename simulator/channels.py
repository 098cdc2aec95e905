"""The core tables FreeSWITCH keeps from its own events (switch_core_sqldb.c): channels and calls, and their
`show channels|calls` rendering (mod_commands)."""
from __future__ import annotations

import json
import time
from collections import deque

from screenpop.simulator.events import SimEvent


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

