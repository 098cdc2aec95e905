"""Synthetic FreeSWITCH calls for the simulator: the legs, events and headers a FreeSWITCH 1.10 PBX produces.

Each scenario replays, with fresh UUIDs, numbers and timings, the per-leg event sequence recorded from a real
PBX (see the project's capture notes): the same event names and order, the same header blocks
(Event-*, Channel-*, Caller-*, Other-Leg-*, variable_*) in the same order and value shapes, including the
quirks a call tracker must survive (Channel-Call-UUID changing on b-legs, the queue answering the caller
itself, agent legs without variable_originator, REQUEST_PARAMS headers leaking into channel variables, ...).

For every call the generator also knows what a correct screen-pop system must conclude (the `calls` entry and
the `pops` of the capture's expected.json); `--expect FILE` writes one JSON line per call.

Rendering is cheap: a leg's header blocks are encoded once and only the lines that change are re-encoded.
"""
from __future__ import annotations

import heapq
import json
import random
import time
import uuid as uuidlib
import zlib
from pathlib import Path
from typing import Iterator

from screenpop.simulator.events import Block, SimEvent
from screenpop.simulator.recording import RecordedCall, Recorder

SCENARIOS = ("inbound_answered", "inbound_missed", "ring_group", "queue", "outbound", "internal", "transfer")
DEFAULT_MIX = {"inbound_answered": 5, "inbound_missed": 2, "ring_group": 1, "queue": 1, "outbound": 2,
               "internal": 1, "transfer": 1}

DOMAIN = "127.0.0.1"
COMPANY_NUMBER, COMPANY_NAME = "+3545550000", "Lab Company"
RING_GROUP_DID, RING_GROUP_EXT = "+3545552001", "2001"
QUEUE_DID, QUEUE_EXT, QUEUE_NAME = "+3545553000", "3000", "support@127.0.0.1"
GATEWAY = "pstn"

CALLER_NAMES = (
    "Jón Jónsson", "Guðrún Helgadóttir", "Anna Sigurðardóttir", "Ólafur Þórðarson", "Þórunn Ýr Ægisdóttir",
    "Björk Guðmundsdóttir", "Séamus Ó Briain", "Zoë Müller-Lüdenscheidt", "Łukasz Żółć", "Ærøskøbing Fiskehus",
    "<b>VIP</b> Kristín", "Smith & Sons ehf.", "Ünïcødé <i>test</i>", "Åsa & Örn", "Hrafn 'Krummi' Óðinsson",
    "Ragnheiður Ösp", "Ívar Beinlausi", "Sæunn Ýrr", "Ελένη Παπαδοπούλου", "Иван Петров",
)

CALLING = {
    "STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", "2408"),
    "CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", "301"),
    "CODEC_R": ("switch_core_codec.c", "switch_core_session_set_real_read_codec", "168"),
    "CODEC_W": ("switch_core_codec.c", "switch_core_session_set_write_codec", "450"),
    "CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "626"),
    "ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", "632"),
    "OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", "768"),
    "EXECUTE": ("switch_core_session.c", "switch_core_session_exec", "2944"),
    "EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", "2967"),
    "PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", "3505"),
    "ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3846"),
    "PRESENCE": ("switch_channel.c", "switch_channel_perform_presence", "805"),
    "BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1689"),
    "UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1879"),
    "CALL_UPDATE": ("mod_sofia.c", "sofia_receive_message", "2100"),
    "HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3445"),
    "HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", "943"),
    "DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", "1584"),
    "API": ("switch_loadable_module.c", "switch_api_execute", "2954"),
    "TRANSFEROR": ("sofia.c", "sofia_handle_sip_i_refer", "9670"),
    "TRANSFEREE": ("sofia.c", "sofia_handle_sip_i_refer", "9675"),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", "1646"),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", "2020"),
    "CC_START": ("mod_callcenter.c", "callcenter_function", "3113"),
    "CC_COUNT": ("mod_callcenter.c", "cc_queue_count", "878"),
    "CC_PRESENCE": ("mod_callcenter.c", "cc_send_presence", "3392"),
    "CC_AGENT": ("mod_callcenter.c", "cc_agent_update", "1067"),
    "CC_OFFER": ("mod_callcenter.c", "outbound_agent_thread_run", "1717"),
    "CC_BRIDGE_START": ("mod_callcenter.c", "outbound_agent_thread_run", "1934"),
    "CC_BRIDGE_END": ("mod_callcenter.c", "outbound_agent_thread_run", "2062"),
    "CC_MEMBER_END": ("mod_callcenter.c", "outbound_agent_thread_run", "2098"),
    "RECORD_START": ("switch_ivr_async.c", "record_callback", "1485"),
    "RECORD_STOP": ("switch_ivr_async.c", "send_record_stop_event", "1243"),
    "HOLD": ("switch_channel.c", "switch_channel_mark_hold", "877"),
    "UNHOLD": ("switch_channel.c", "switch_channel_mark_hold", "877"),
}
# a phone's re-INVITE to hold (sendonly) and to resume, as switch_core_media_negotiate_sdp reports their presence
HOLD_PRESENCE = ("src/switch_core_media.c", "switch_core_media_negotiate_sdp", "6517")
UNHOLD_PRESENCE = ("src/switch_core_media.c", "switch_core_media_negotiate_sdp", "6627")
MOH = "local_stream://moh"
HOLD_SHARE = 0.25  # the share of answered calls in which the operator's phone puts the caller on hold once
STATE_NUM = {"CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
             "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8, "CS_RESET": 9,
             "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13}
CALLSTATE_NUM = {"DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5, "RING_WAIT": 6,
                 "HANGUP": 7, "UNHELD": 8}
RATE_KHZ = 8  # samples per millisecond of an 8 kHz PCMU channel (record_samples)
CODEC_ITEMS = (("Channel-Read-Codec-Name", "PCMU"), ("Channel-Read-Codec-Rate", "8000"),
               ("Channel-Read-Codec-Bit-Rate", "64000"), ("Channel-Write-Codec-Name", "PCMU"),
               ("Channel-Write-Codec-Rate", "8000"), ("Channel-Write-Codec-Bit-Rate", "64000"))
SIP_ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY"
PROFILE_FIELDS = ("Direction", "Logical-Direction", "Username", "Dialplan", "Caller-ID-Name", "Caller-ID-Number",
                  "Orig-Caller-ID-Name", "Orig-Caller-ID-Number", "Callee-ID-Name", "Callee-ID-Number",
                  "Network-Addr", "ANI", "Destination-Number", "Unique-ID", "Source", "Transfer-Source", "Context",
                  "RDNIS", "Channel-Name", "Profile-Index")
TIME_FIELDS = ("Profile-Created-Time", "Channel-Created-Time", "Channel-Answered-Time", "Channel-Progress-Time",
               "Channel-Progress-Media-Time", "Channel-Hangup-Time", "Channel-Transfer-Time",
               "Channel-Resurrect-Time", "Channel-Bridged-Time", "Channel-Last-Hold", "Channel-Hold-Accum")
PROFILE_TAIL = (("Screen-Bit", "true"), ("Privacy-Hide-Name", "false"), ("Privacy-Hide-Number", "false"))


# -----------------------------------------------------------------------------------------------------------
# Options
# -----------------------------------------------------------------------------------------------------------

def parse_mix(text: str | None) -> dict[str, float]:
    """'inbound_answered=5,queue=1' -> weights (names may use '-' or '_'); None -> DEFAULT_MIX."""
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, weight = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r} in --mix (known: {', '.join(SCENARIOS)})")
        try:
            mix[name] = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"bad weight in --mix: {part!r}") from None
        if mix[name] < 0:
            raise ValueError(f"negative weight in --mix: {part!r}")
    if not any(mix.values()):
        raise ValueError("--mix gives every scenario weight 0")
    return mix


def parse_extensions(text: str | None) -> list[str]:
    """'1001-1010' or '1001,1002,2005' (ranges and lists may be combined)."""
    out: list[str] = []
    for part in (text or "1001-1010").split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep and lo.isdigit() and hi.isdigit():
            if int(hi) < int(lo) or int(hi) - int(lo) > 100000:
                raise ValueError(f"bad extension range {part!r}")
            out.extend(str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1))
        elif part.isalnum():
            out.append(part)
        else:
            raise ValueError(f"bad extension {part!r}")
    if not out:
        raise ValueError("no extensions")
    return list(dict.fromkeys(out))


def read_numbers(path: str | None) -> list[str] | None:
    """External numbers, one per line ('#' comments and blank lines ignored); None when no file is given."""
    if not path:
        return None
    numbers = [line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    numbers = [n for n in numbers if n]
    if not numbers:
        raise ValueError(f"{path}: no numbers")
    return numbers


def did_for(ext: str) -> str:
    """The company number that reaches an extension directly (the lab's +35455510NN -> 10NN)."""
    digits = "".join(ch for ch in ext if ch.isdigit()) or "0"
    return "+354555" + digits[-4:].zfill(4)


_date_cache: dict[int, tuple[str, str]] = {}


def date_items(ts_us: int) -> list[tuple[str, str]]:
    secs = ts_us // 1_000_000
    cached = _date_cache.get(secs)
    if cached is None:
        if len(_date_cache) > 4096:
            _date_cache.clear()
        cached = _date_cache[secs] = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs)),
                                      time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(secs)))
    return [("Event-Date-Local", cached[0]), ("Event-Date-GMT", cached[1]), ("Event-Date-Timestamp", str(ts_us))]


def local_stamp(ts_us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts_us // 1_000_000))


# -----------------------------------------------------------------------------------------------------------
# The switch core and its channels
# -----------------------------------------------------------------------------------------------------------

class Switch:
    """What the legs share: identity, clock, sequence numbers, id generators, and the outgoing event list."""

    def __init__(self, rng: random.Random, core: dict[str, str]):
        self.rng = rng
        self.core_items = list(core.items())
        self.now_us = 0
        self.out: list[SimEvent] = []
        self.session_id = 0
        self._seq = 0
        self.next_sequence = self._own_sequence

    def _own_sequence(self) -> int:
        self._seq += 1
        return self._seq

    def uuid(self) -> str:
        return str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4))

    def token(self, n: int = 13) -> str:
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def head(self, name: str, calling: str, subclass: str = "") -> list[tuple[str, str]]:
        f, fn, line = CALLING[calling]
        items = [("Event-Subclass", subclass), ("Event-Name", "CUSTOM")] if subclass else [("Event-Name", name)]
        items += self.core_items
        items += date_items(self.now_us)
        items += [("Event-Calling-File", f), ("Event-Calling-Function", fn), ("Event-Calling-Line-Number", line),
                  ("Event-Sequence", "")]      # numbered on delivery (SimEvent.set_sequence)
        return items

    def emit(self, name: str, calling: str, parts: list, subclass: str = "", body: str = "") -> SimEvent:
        head = self.head(name, calling, subclass)
        ev = SimEvent("CUSTOM" if subclass else name, subclass, self.now_us, [head] + parts, body)
        ev.seq_index = len(head) - 1
        self.out.append(ev)
        return ev

    def core_event(self, name: str, calling: str, items: list[tuple[str, str]], subclass: str = "") -> SimEvent:
        return self.emit(name, calling, [items], subclass)


class Leg:
    """One FreeSWITCH channel: its basic data, caller profile, other-leg profile and variables, each a Block."""

    def __init__(self, sw: Switch, name: str, direction: str, hit_dialplan: bool, profile: dict[str, str]):
        self.sw = sw
        self.uuid = sw.uuid()
        self.name = name
        self.direction = direction
        self.hit = "true" if hit_dialplan else "false"
        self.state, self.state_num = "CS_NEW", 0
        self.callstate = "DOWN"
        self.presence_id = ""
        self.call_uuid = self.uuid
        self.answer_state = "ringing"
        self.hangup_cause = ""
        self.codec = False
        self.has_profile = False
        self.p = dict(profile)
        self.p.setdefault("Unique-ID", self.uuid)
        self.p.setdefault("Channel-Name", name)
        self.t = dict.fromkeys(TIME_FIELDS, 0)
        self.other: Block | None = None
        self.vars = Block()
        self._basic: Block | None = None
        self._basic_key = None
        self._profile: Block | None = None
        self.session_id = 0
        self.times = {"created": 0, "answered": 0, "progress": 0, "bridged": 0, "hangup": 0}
        self.recording: tuple | None = None  # (FreeSWITCH's path, its start, what stop_recording needs)

    # -- blocks ----------------------------------------------------------------------------------------------
    def basic(self) -> Block:
        key = (self.state, self.state_num, self.callstate, self.presence_id, self.call_uuid, self.answer_state,
               self.hangup_cause, self.codec)
        if key != self._basic_key:
            items = [("Channel-State", self.state), ("Channel-Call-State", self.callstate),
                     ("Channel-State-Number", str(self.state_num)), ("Channel-Name", self.name),
                     ("Unique-ID", self.uuid), ("Call-Direction", self.direction),
                     ("Presence-Call-Direction", self.direction), ("Channel-HIT-Dialplan", self.hit)]
            if self.presence_id:
                items.append(("Channel-Presence-ID", self.presence_id))
            items += [("Channel-Call-UUID", self.call_uuid), ("Answer-State", self.answer_state)]
            if self.hangup_cause:
                items.append(("Hangup-Cause", self.hangup_cause))
            if self.codec:
                items += CODEC_ITEMS
            self._basic, self._basic_key = Block(items), key
        return self._basic

    def profile_items(self, prefix: str, with_index: bool = True, zero_times: bool = False) -> list[tuple[str, str]]:
        items = []
        for f in PROFILE_FIELDS:
            v = self.p.get(f)
            if v is None or (f == "Profile-Index" and not with_index) or (f == "Transfer-Source" and not with_index):
                continue
            items.append((prefix + f, v))
        items += [(prefix + f, "0" if zero_times else str(self.t[f])) for f in TIME_FIELDS]
        items += [(prefix + k, v) for k, v in PROFILE_TAIL]
        return items

    def profile(self) -> Block:
        if self._profile is None:
            self._profile = Block(self.profile_items("Caller-"))
        return self._profile

    def setp(self, **fields: str | None) -> None:
        for k, v in fields.items():
            key = k.replace("_", "-")
            if v is None:
                self.p.pop(key, None)
            else:
                self.p[key] = v
        self._profile = None

    def sett(self, field: str, us: int) -> None:
        self.t[field] = us
        self._profile = None

    def set_other(self, kind: str | None, leg: "Leg | None" = None, zero_times: bool = False,
                  logical: str | None = None) -> None:
        """Attach a snapshot of the other leg's caller profile (Other-Type + Other-Leg-*), or drop it."""
        if kind is None or leg is None:
            self.other = None
            return
        items = [("Other-Type", kind)] + leg.profile_items("Other-Leg-", with_index=False, zero_times=zero_times)
        if logical:
            items[2] = ("Other-Leg-Logical-Direction", logical)
        self.other = Block(items)

    def _own_vars(self) -> Block:
        if self.vars.frozen:          # an emitted event still refers to it: copy on write
            self.vars = self.vars.copy()
        return self.vars

    def setv(self, *pairs) -> None:
        block = self._own_vars()
        for k, v in pairs:
            block.set("variable_" + k, v, to_end=True)

    def delv(self, *names: str) -> None:
        block = self._own_vars()
        for n in names:
            block.pop("variable_" + n)

    def getv(self, name: str) -> str:
        return self.vars.get("variable_" + name)

    # -- events ----------------------------------------------------------------------------------------------
    def ev(self, name: str, calling: str, pre=(), post=(), with_vars: bool = True, subclass: str = "",
           profile: bool = True) -> SimEvent:
        parts: list = []
        if pre:
            parts.append(list(pre))
        parts.append(self.basic())
        if self.has_profile and profile:
            parts.append(self.profile())
            if self.other is not None:
                parts.append(self.other)
        if with_vars:
            self.vars.frozen = True
            parts.append(self.vars)
        if post:
            parts.append(list(post))
        return self.sw.emit(name, calling, parts, subclass)

    def state_to(self, state: str, num: int | None = None) -> None:
        self.state = state
        self.state_num = STATE_NUM[state] if num is None else num
        self.ev("CHANNEL_STATE", "STATE", with_vars=False)
        if state == "CS_HANGUP" and self.recording is not None:
            self.stop_recording()  # the hangup state removes the media bugs: the recording closes

    def start_recording(self, fs_path: str, finish) -> None:
        """record_session with RECORD_STEREO=true: RECORD_START as switch_ivr_async.c's record_callback fires it
        (the channel's data, then Record-File-Path). finish(seconds) writes the file when the recording stops."""
        self.setv(("RECORD_STEREO", "true"))
        self.recording = (fs_path, self.sw.now_us, finish)
        self.ev("RECORD_START", "RECORD_START", post=(("Record-File-Path", fs_path),))

    def stop_recording(self) -> None:
        """RECORD_STOP as send_record_stop_event fires it: record_samples/_seconds/_ms and the completion cause set
        as channel variables first (a hangup with speech heard: success-silence), then the path and the cause."""
        fs_path, start_us, finish = self.recording
        self.recording = None
        ms = (self.sw.now_us - start_us) // 1000
        finish(ms / 1000)
        self.setv(("record_samples", str(ms * RATE_KHZ)), ("record_seconds", str(ms // 1000)), ("record_ms", str(ms)),
                  ("record_completion_cause", "success-silence"))
        self.ev("RECORD_STOP", "RECORD_STOP", post=(("Record-File-Path", fs_path),
                                                    ("Record-Completion-Cause", "success-silence")))

    def callstate_to(self, callstate: str, running: str | None = None) -> None:
        old = self.callstate
        self.callstate = callstate
        if running:
            self.state, self.state_num = running, STATE_NUM[running]
        self.ev("CHANNEL_CALLSTATE", "CALLSTATE", with_vars=False,
                pre=(("Original-Channel-Call-State", old), ("Channel-Call-State-Number", str(CALLSTATE_NUM[callstate]))))

    def codecs(self) -> None:
        self.codec = True
        self.has_profile = True
        self.ev("CODEC", "CODEC_R", with_vars=False, post=(("channel-read-codec-name", "PCMU"),
                ("channel-read-codec-rate", "8000"), ("channel-read-codec-bit-rate", "64000")))
        self.ev("CODEC", "CODEC_W", with_vars=False, post=(("Channel-Write-Codec-Name", "PCMU"),
                ("Channel-Write-Codec-Rate", "8000"), ("Channel-Write-codec-bit-rate", "64000")))

    def execute(self, app: str, data: str = "", effects=(), complete: bool = True, dialplan: bool = True) -> str:
        """CHANNEL_EXECUTE (+ _COMPLETE). dialplan=False: run by an API (uuid_bridge), no Application-UUID."""
        app_uuid = self.sw.uuid()
        if dialplan:
            self.setv(("current_application", app))
            if data:
                self.setv(("current_application_data", data))
            else:
                self.delv("current_application_data")
        post = [("Application", app)] + ([("Application-Data", data)] if data else [])
        if dialplan:
            post.append(("Application-UUID", app_uuid))
        self.ev("CHANNEL_EXECUTE", "EXECUTE", post=post)
        if effects:
            self.setv(*effects)
        if complete:
            self.execute_complete(app, data, app_uuid)
        return app_uuid

    def execute_complete(self, app: str, data: str, app_uuid: str, num: int | None = None) -> None:
        """CHANNEL_EXECUTE_COMPLETE; `num` overrides Channel-State-Number for this event only (after a transfer)."""
        saved = self.state_num
        if num is not None:
            self.state_num = num
        post = [("Application", app)] + ([("Application-Data", data)] if data else []) + [
            ("Application-Response", "_none_"), ("Application-UUID", app_uuid)]
        self.ev("CHANNEL_EXECUTE_COMPLETE", "EXECUTE_COMPLETE", post=post)
        self.state_num = saved

    def presence(self, status: str, info_state: str, count: int, calling: tuple[str, str, str]) -> None:
        user = self.presence_id or f"{self.p.get('Caller-ID-Number', '')}@{DOMAIN}"
        self.ev("PRESENCE_IN", "PRESENCE", with_vars=False, post=(
            ("proto", "any"), ("login", "src/switch_channel.c"), ("from", user), ("rpid", "unknown"),
            ("status", status), ("event_type", "presence"), ("alt_event_type", "dialog"),
            ("presence-call-info-state", info_state), ("presence-call-direction", self.direction),
            ("event_count", str(count)), ("Presence-Calling-File", calling[0]),
            ("Presence-Calling-Function", calling[1]), ("Presence-Calling-Line", calling[2])))

    def answer(self) -> None:
        now = self.sw.now_us
        self.answer_state = "answered"
        self.times["answered"] = now
        self.sett("Channel-Answered-Time", now)
        self.ev("CHANNEL_ANSWER", "ANSWER")

    def progress(self) -> None:
        now = self.sw.now_us
        self.times["progress"] = now
        self.sett("Channel-Progress-Time", now)
        self.ev("CHANNEL_PROGRESS", "PROGRESS")

    def hold(self, partner: "Leg") -> None:
        """The phone on this leg holds (re-INVITE sendonly): switch_channel_mark_hold sets the leg holding (callstate
        HELD, Channel-Last-Hold) and fires CHANNEL_HOLD; the partner hears music on hold (a broadcast playback)."""
        self.callstate_to("HELD")
        self.sett("Channel-Last-Hold", self.sw.now_us)
        self.ev("CHANNEL_HOLD", "HOLD")
        self.presence("hold", "held", 1, HOLD_PRESENCE)
        partner.execute("playback", MOH, complete=False, dialplan=False)
        partner.ev("PLAYBACK_START", "PLAYBACK_START", post=(("Playback-File-Type", "local_stream"),
                                                             ("Playback-File-Path", MOH)))

    def unhold(self, partner: "Leg") -> int:
        """The phone resumes (re-INVITE sendrecv): the partner's music stops, then the leg is unheld (callstate
        UNHELD, the hold added to Channel-Hold-Accum) and fires CHANNEL_UNHOLD. The hold's length in µs."""
        partner.ev("PLAYBACK_STOP", "PLAYBACK_STOP", post=(("Playback-File-Type", "local_stream"),
                                                           ("Playback-File-Path", MOH), ("Playback-Status", "break")))
        partner.ev("CHANNEL_EXECUTE_COMPLETE", "EXECUTE_COMPLETE", post=(
            ("Application", "playback"), ("Application-Data", MOH), ("Application-Response", "FILE PLAYED")))
        held = self.sw.now_us - self.t["Channel-Last-Hold"]
        self.sett("Channel-Hold-Accum", self.t["Channel-Hold-Accum"] + held)
        self.callstate_to("UNHELD")
        self.ev("CHANNEL_UNHOLD", "UNHOLD")
        self.presence("unhold", "active", 1, UNHOLD_PRESENCE)
        return held

    def hangup(self, cause: str, vars_=()) -> None:
        now = self.sw.now_us
        self.times["hangup"] = now
        self.hangup_cause = cause
        self.answer_state = "hangup"
        self.state_num = 10
        self.sett("Channel-Hangup-Time", now)
        self.setv(*vars_)
        self.ev("CHANNEL_HANGUP", "HANGUP")

    def hangup_complete(self, last_app: str = "", last_arg: str = "") -> None:
        self.setv(*cdr_vars(self, last_app, last_arg))
        self.ev("CHANNEL_HANGUP_COMPLETE", "HANGUP_COMPLETE", pre=(("Hangup-Cause", self.hangup_cause),))
        self.state_num = 12

    def destroy(self) -> None:
        self.ev("CHANNEL_DESTROY", "DESTROY")
        self.state_to("CS_DESTROY")

    def report_and_destroy(self, last_app: str = "", last_arg: str = "") -> None:
        self.state_to("CS_REPORTING")
        self.hangup_complete(last_app, last_arg)
        self.destroy()


def cdr_vars(leg: Leg, last_app: str, last_arg: str) -> list[tuple[str, str]]:
    """The CDR variables FreeSWITCH adds at CHANNEL_HANGUP_COMPLETE (times, durations, RTP statistics)."""
    t = leg.times
    start, end = t["created"], t["hangup"] or leg.sw.now_us
    answer, progress, bridge = t["answered"], t["progress"], t["bridged"]
    out = [("hangup_cause", leg.hangup_cause), ("hangup_cause_q850", "16"), ("digits_dialed", "none"),
           ("start_stamp", local_stamp(start)), ("profile_start_stamp", local_stamp(start))]
    if answer:
        out.append(("answer_stamp", local_stamp(answer)))
    if bridge:
        out.append(("bridge_stamp", local_stamp(bridge)))
    if progress:
        out.append(("progress_stamp", local_stamp(progress)))
    out.append(("end_stamp", local_stamp(end)))
    for name, us in (("start", start), ("profile_start", start), ("answer", answer), ("bridge", bridge),
                     ("last_hold", leg.t["Channel-Last-Hold"]), ("resurrect", 0), ("progress", progress),
                     ("progress_media", 0), ("end", end)):
        out += [(f"{name}_epoch", str(us // 1_000_000)), (f"{name}_uepoch", str(us))]
        if name == "last_hold":
            accum = leg.t["Channel-Hold-Accum"]
            out += [("hold_accum_seconds", str(accum // 1_000_000)), ("hold_accum_usec", str(accum)),
                    ("hold_accum_ms", str(accum // 1000))]
    if last_app:
        out += [("last_app", last_app), ("last_arg", last_arg)]
    name = leg.p.get("Orig-Caller-ID-Name", "")
    out.append(("caller_id", f'"{name}" <{leg.p.get("Orig-Caller-ID-Number", "")}>'))
    dur = end - start
    bill = end - answer if answer else 0
    prog = progress - start if progress else 0
    ans = answer - start if answer else 0
    wait = (bridge or answer) - start if (bridge or answer) else 0
    for unit, div in (("sec", 1_000_000), ("msec", 1000), ("usec", 1)):
        d = "duration" if unit == "sec" else ("mduration" if unit == "msec" else "uduration")
        out += [(d, str(dur // div)), (f"bill{unit}", str(bill // div)), (f"progress{unit}", str(prog // div)),
                (f"answer{unit}", str(ans // div)), (f"wait{unit}", str(wait // div)),
                (f"progress_media{unit}", "0"), (f"flow_bill{unit}", str(dur // div))]
    if not answer:
        return out
    packets = bill // 20_000
    for direction, count in (("in", packets), ("out", packets)):
        out += [(f"rtp_audio_{direction}_raw_bytes", str(count * 172)),
                (f"rtp_audio_{direction}_media_bytes", str(count * 172)),
                (f"rtp_audio_{direction}_packet_count", str(count)),
                (f"rtp_audio_{direction}_media_packet_count", str(count)),
                (f"rtp_audio_{direction}_skip_packet_count", "0"),
                (f"rtp_audio_{direction}_dtmf_packet_count", "0"),
                (f"rtp_audio_{direction}_cng_packet_count", "0")]
        if direction == "in":
            out += [("rtp_audio_in_jitter_packet_count", "0"), ("rtp_audio_in_flush_packet_count", "0"),
                    ("rtp_audio_in_largest_jb_size", "0"), ("rtp_audio_in_jitter_min_variance", "0.00"),
                    ("rtp_audio_in_jitter_max_variance", "0.00"), ("rtp_audio_in_jitter_loss_rate", "0.00"),
                    ("rtp_audio_in_jitter_burst_rate", "0.00"),
                    ("rtp_audio_in_mean_interval", "20.00" if count else "0.00"),
                    ("rtp_audio_in_flaw_total", "0"), ("rtp_audio_in_quality_percentage", "100.00"),
                    ("rtp_audio_in_mos", "4.50")]
    out += [("rtp_audio_rtcp_packet_count", "0"), ("rtp_audio_rtcp_octet_count", "0")]
    return out


# -----------------------------------------------------------------------------------------------------------
# Variable templates (modelled on the recorded legs; values are fresh per call)
# -----------------------------------------------------------------------------------------------------------

def sdp(sw: Switch, ip: str = DOMAIN) -> str:
    o = sw.rng.randrange(1_700_000_000, 1_800_000_000)
    port = sw.rng.randrange(16384, 32768, 2)
    return (f"v=0\r\no=FreeSWITCH {o} {o + 1} IN IP4 {ip}\r\ns=FreeSWITCH\r\nc=IN IP4 {DOMAIN}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-15\r\na=ptime:20\r\n")


def media_in_vars(sw: Switch) -> list[tuple[str, str]]:
    """What sofia sets once it has the far end's SDP."""
    return [("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b,CORE_PCM_MODULE.PCMA@8000h@20i@64000b"),
            ("rtp_use_codec_string", "PCMU,PCMA"), ("remote_video_media_flow", "inactive"),
            ("remote_text_media_flow", "inactive"), ("remote_audio_media_flow", "sendrecv"),
            ("audio_media_flow", "sendrecv"), ("remote_media_ip", DOMAIN),
            ("remote_media_port", str(sw.rng.randrange(16384, 32768, 2))), ("rtp_audio_recv_pt", "0"),
            ("rtp_use_codec_name", "PCMU"), ("rtp_use_codec_rate", "8000"), ("rtp_use_codec_ptime", "20"),
            ("rtp_use_codec_channels", "1"), ("rtp_last_audio_codec_string", "PCMU@8000h@20i@1c"),
            ("read_codec", "PCMU"), ("original_read_codec", "PCMU"), ("read_rate", "8000"),
            ("original_read_rate", "8000"), ("write_codec", "PCMU"), ("write_rate", "8000"), ("dtmf_type", "rfc2833")]


def media_local_vars(sw: Switch) -> list[tuple[str, str]]:
    return [("rtp_local_sdp_str", sdp(sw)), ("local_media_ip", DOMAIN),
            ("local_media_port", str(sw.rng.randrange(16384, 32768, 2))), ("advertised_media_ip", DOMAIN),
            ("rtp_use_timer_name", "soft"), ("rtp_use_pt", "0"), ("rtp_use_ssrc", str(sw.rng.getrandbits(32))),
            ("rtp_2833_send_payload", "101"), ("rtp_2833_recv_payload", "101")]


def request_params_leak(sw: Switch, calling: tuple[str, str, str]) -> list[tuple[str, str]]:
    """A FreeSWITCH quirk: directory lookups copy the REQUEST_PARAMS event's headers into channel variables."""
    return [("Event-Name", "REQUEST_PARAMS")] + sw.core_items + date_items(sw.now_us) + [
        ("Event-Calling-File", calling[0]), ("Event-Calling-Function", calling[1]),
        ("Event-Calling-Line-Number", calling[2]), ("Event-Sequence", str(sw.next_sequence()))]


def user_vars(ext: str) -> list[tuple[str, str]]:
    return [("user_context", "default"), ("effective_caller_id_name", f"Operator {ext}"),
            ("effective_caller_id_number", ext), ("accountcode", ext), ("callgroup", "operators")]


# -----------------------------------------------------------------------------------------------------------
# Calls
# -----------------------------------------------------------------------------------------------------------

class Call:
    """One business call: builds its legs, emits their events over time (a generator yielding delays in
    seconds), and knows the outcome a correct screen-pop system derives from them."""

    scenario = ""

    def __init__(self, gen: "CallGenerator", seq: int):
        self.gen = gen
        self.sw = gen.sw
        self.rng = gen.rng
        self.seq = seq
        self.legs: list[Leg] = []
        self.expected: dict = {}
        self.pops: list[dict[str, str]] = []
        self.recorded = False
        self.recording: str | None = None  # FreeSWITCH's path of the call's recording (--record-dir)
        self.hold: dict[str, float] = {}  # seconds on hold per extension whose phone held

    def pick_extensions(self, n: int) -> list[str]:
        return self.rng.sample(self.gen.extensions, n)

    def pick_caller(self) -> tuple[str, str]:
        number = self.rng.choice(self.gen.numbers)
        h = zlib.crc32(number.encode())
        name = number if h % 7 == 0 else CALLER_NAMES[h % len(CALLER_NAMES)]   # some carriers send no name
        return number, name

    def span(self, lo: float, hi: float) -> float:
        return round(self.rng.uniform(lo, hi), 2)

    def outcome(self, **kw) -> None:
        base = {"direction": None, "external_number": None, "external_name": None, "did": None,
                "from_extension": None, "extensions_rung": [], "answered_by": None, "external_answered": None,
                "answered_elsewhere": [], "missed_by": [], "talked": [], "hangup_cause": "NORMAL_CLEARING",
                "a_leg_billsec": 0}
        base.update(kw)
        self.expected = base

    def pop(self, ext: str, event: str) -> None:
        self.pops.append({"extension": ext, "event": event})

    def record(self) -> dict:
        out = {"seq": self.seq, "scenario": self.scenario, "a_leg": self.legs[0].uuid if self.legs else None,
               "legs": [leg.uuid for leg in self.legs], "call": self.expected, "pops": self.pops, "hold": self.hold}
        if self.recording:
            out["recording"] = self.recording
        return out

    def talk(self, phone: Leg, partner: Leg, ext: str, talk_s: float):
        """The conversation (a generator step: use with `yield from`); in a share of calls (the generator's own
        random stream, so the calls are otherwise the same) the extension's phone holds halfway for 1-4 s."""
        if self.gen.hold_rng.random() >= self.gen.hold_share:
            yield talk_s
            return
        hold_s = round(self.gen.hold_rng.uniform(1.0, 4.0), 2)
        yield talk_s / 2
        phone.hold(partner)
        yield hold_s
        self.hold[ext] = self.hold.get(ext, 0.0) + phone.unhold(partner) / 1_000_000
        yield talk_s / 2

    # -- leg factories --------------------------------------------------------------------------------------
    def new_leg(self, name: str, direction: str, hit: bool, profile: dict[str, str]) -> Leg:
        leg = Leg(self.sw, name, direction, hit, profile)
        self.sw.session_id += 1
        leg.session_id = self.sw.session_id
        leg.times["created"] = self.sw.now_us
        for f in ("Profile-Created-Time", "Channel-Created-Time"):
            leg.t[f] = self.sw.now_us
        self.legs.append(leg)
        return leg

    def trunk_leg(self, number: str, name: str, did: str) -> Leg:
        """A call from the PSTN trunk: profile external, context public, then transferred by the dialplan."""
        sw = self.sw
        chan = f"sofia/external/{number}@{DOMAIN}"
        a = self.new_leg(chan, "inbound", True, {
            "Direction": "inbound", "Logical-Direction": "inbound", "Username": number, "Dialplan": "XML",
            "Caller-ID-Name": name, "Caller-ID-Number": number, "Orig-Caller-ID-Name": name,
            "Orig-Caller-ID-Number": number, "Network-Addr": DOMAIN, "ANI": number, "Destination-Number": did,
            "Source": "mod_sofia", "Context": "public", "Profile-Index": "1"})
        a.state_to("CS_NEW")
        a.codecs()
        a.state_to("CS_INIT")
        a.state_num = 2
        tag, call_id = sw.token(), str(sw.uuid())
        a.setv(("direction", "inbound"), ("uuid", a.uuid), ("call_uuid", a.uuid), ("session_id", str(a.session_id)),
               ("sip_from_user", number), ("sip_from_uri", f"{number}@{DOMAIN}"), ("sip_from_host", DOMAIN),
               ("video_media_flow", "disabled"), ("text_media_flow", "disabled"), ("channel_name", chan),
               ("sip_call_id", call_id), ("sip_local_network_addr", DOMAIN), ("sip_network_ip", DOMAIN),
               ("sip_network_port", "5090"), ("sip_invite_stamp", str(sw.now_us)), ("sip_received_ip", DOMAIN),
               ("sip_received_port", "5090"), ("sip_via_protocol", "udp"),
               ("sip_from_user_stripped", number.lstrip("+")), ("sip_from_tag", tag),
               ("sofia_profile_name", "external"), ("sofia_profile_url", f"sip:mod_sofia@{DOMAIN}:5080"),
               ("recovery_profile_name", "external"),
               ("sip_full_via", f"SIP/2.0/UDP {DOMAIN}:5090;rport=5090;branch=z9hG4bK{sw.token()}"),
               ("sip_from_display", name), ("sip_full_from", f'"{name}" <sip:{number}@{DOMAIN}>;tag={tag}'),
               ("sip_full_to", f"<sip:{did}@{DOMAIN}:5080>"), ("sip_allow", SIP_ALLOW), ("sip_req_user", did),
               ("sip_req_port", "5080"), ("sip_req_uri", f"{did}@{DOMAIN}:5080"), ("sip_req_host", DOMAIN),
               ("sip_to_user", did), ("sip_to_port", "5080"), ("sip_to_uri", f"{did}@{DOMAIN}:5080"),
               ("sip_to_host", DOMAIN), ("sip_contact_user", "mod_sofia"), ("sip_contact_port", "5090"),
               ("sip_contact_uri", f"mod_sofia@{DOMAIN}:5090"), ("sip_contact_host", DOMAIN),
               ("sip_user_agent", "LabPSTN/1.0"), ("sip_via_host", DOMAIN), ("sip_via_port", "5090"),
               ("sip_via_rport", "5090"), ("max_forwards", "70"), ("switch_r_sdp", sdp(sw)),
               *media_in_vars(sw), ("endpoint_disposition", "RECEIVED"))
        a.ev("CHANNEL_CREATE", "CREATE")
        a.callstate_to("RINGING", running="CS_ROUTING")
        a.state_to("CS_ROUTING")
        a.state_to("CS_EXECUTE")
        return a

    def route_public(self, a: Leg, did: str, target: str) -> None:
        """The public context: set domain_name, transfer to `target` in the default context."""
        a.setv(("DP_MATCH", f"ARRAY::{did}|:{did[-2:]}"))
        a.execute("set", f"domain_name={DOMAIN}", effects=[("domain_name", DOMAIN)])
        app_uuid = a.execute("transfer", f"{target} XML default", complete=False)
        history = f"{self.sw.now_us // 1_000_000}:{self.sw.uuid()}:bl_xfer:{target}/default/XML"
        a.setp(Destination_Number=target, Transfer_Source=history, Context="default", RDNIS=did, Profile_Index="2")
        a.setv(("transfer_history", history), ("transfer_source", history), ("max_forwards", "69"))
        a.execute_complete("transfer", f"{target} XML default", app_uuid, num=2)
        a.state_to("CS_ROUTING")
        a.state_to("CS_EXECUTE")
        a.setv(("DP_MATCH", f"ARRAY::{target}|:{target}"))

    def desk_phone_leg(self, ext: str, dialled: str) -> Leg:
        """A desk phone placing a call: profile internal, authenticated (variable_user_name)."""
        sw = self.sw
        chan = f"sofia/internal/{ext}@{DOMAIN}"
        a = self.new_leg(chan, "inbound", True, {
            "Direction": "inbound", "Logical-Direction": "inbound", "Username": ext, "Dialplan": "XML",
            "Caller-ID-Name": f"Operator {ext}", "Caller-ID-Number": ext, "Orig-Caller-ID-Name": f"Operator {ext}",
            "Orig-Caller-ID-Number": ext, "Network-Addr": DOMAIN, "ANI": ext, "Destination-Number": dialled,
            "Source": "mod_sofia", "Context": "default", "Profile-Index": "1"})
        a.state_to("CS_NEW")
        a.presence_id = f"{ext}@{DOMAIN}"
        a.codecs()
        a.state_to("CS_INIT")
        a.state_num = 2
        tag = sw.token()
        a.setv(("direction", "inbound"), ("uuid", a.uuid), ("call_uuid", a.uuid), ("session_id", str(a.session_id)),
               ("sip_from_user", ext), ("sip_from_uri", f"{ext}@{DOMAIN}"), ("sip_from_host", DOMAIN),
               ("video_media_flow", "disabled"), ("text_media_flow", "disabled"), ("channel_name", chan),
               ("sip_call_id", sw.uuid()), ("sip_local_network_addr", DOMAIN), ("sip_network_ip", DOMAIN),
               ("sip_network_port", "5070"), ("sip_invite_stamp", str(sw.now_us)), ("sip_received_ip", DOMAIN),
               ("sip_received_port", "5070"), ("sip_via_protocol", "udp"), ("sip_authorized", "true"),
               *request_params_leak(sw, ("sofia.c", "sofia_handle_sip_i_invite", "10723")),
               ("sip_number_alias", ext), ("sip_auth_username", ext), ("sip_auth_realm", DOMAIN),
               ("number_alias", ext), ("requested_user_name", ext), ("requested_domain_name", DOMAIN),
               *user_vars(ext), ("user_name", ext), ("domain_name", DOMAIN), ("sip_from_user_stripped", ext),
               ("sip_from_tag", tag), ("sofia_profile_name", "internal"),
               ("sofia_profile_url", f"sip:mod_sofia@{DOMAIN}:5060"), ("recovery_profile_name", "internal"),
               ("sip_full_via", f"SIP/2.0/UDP {DOMAIN}:5070;rport=5070;branch=z9hG4bK{sw.token()}"),
               ("sip_from_display", f"Operator {ext}"),
               ("sip_full_from", f'"Operator {ext}" <sip:{ext}@{DOMAIN}>;tag={tag}'),
               ("sip_full_to", f"<sip:{dialled}@{DOMAIN}:5060>"), ("sip_allow", SIP_ALLOW),
               ("sip_req_user", dialled), ("sip_req_port", "5060"), ("sip_req_uri", f"{dialled}@{DOMAIN}:5060"),
               ("sip_req_host", DOMAIN), ("sip_to_user", dialled), ("sip_to_port", "5060"),
               ("sip_to_uri", f"{dialled}@{DOMAIN}:5060"), ("sip_to_host", DOMAIN),
               ("sip_contact_params", f"transport=udp;gw=gw{ext}"), ("sip_contact_user", ext),
               ("sip_contact_port", "5070"), ("sip_contact_uri", f"{ext}@{DOMAIN}:5070"),
               ("sip_contact_host", DOMAIN), ("sip_user_agent", "LabDeskPhone/1.0"), ("sip_via_host", DOMAIN),
               ("sip_via_port", "5070"), ("sip_via_rport", "5070"), ("max_forwards", "70"),
               ("presence_id", f"{ext}@{DOMAIN}"), ("switch_r_sdp", sdp(sw)), *media_in_vars(sw),
               ("endpoint_disposition", "RECEIVED"))
        a.ev("CHANNEL_CREATE", "CREATE")
        a.callstate_to("RINGING", running="CS_ROUTING")
        a.state_to("CS_ROUTING")
        a.state_num = 4
        a.presence("CS_ROUTING", "alerting", 0, ("src/switch_core_state_machine.c", "check_presence", "521"))
        a.state_to("CS_EXECUTE")
        a.setv(("DP_MATCH", f"ARRAY::{dialled}|:{dialled}"))
        return a

    def user_leg(self, a: Leg, ext: str, dialed_extension: bool = True, outgoing_twice: bool = False,
                 cc: dict[str, str] | None = None, extra_vars=()) -> Leg:
        """The PBX ringing a desk phone (user/<ext>): outbound on the internal profile, up to RINGING."""
        sw = self.sw
        chan = f"sofia/internal/{ext}@{DOMAIN}:5070"
        cid_name, cid_num = a.p["Caller-ID-Name"], a.p["Caller-ID-Number"]
        profile = {"Direction": "outbound", "Logical-Direction": "outbound", "Username": a.p.get("Username"),
                   "Dialplan": "XML", "Caller-ID-Name": cid_name, "Caller-ID-Number": cid_num,
                   "Orig-Caller-ID-Name": a.p["Orig-Caller-ID-Name"], "Orig-Caller-ID-Number": a.p["Orig-Caller-ID-Number"],
                   "Callee-ID-Name": "Outbound Call", "Callee-ID-Number": ext, "Network-Addr": DOMAIN,
                   "ANI": a.p["ANI"], "Destination-Number": ext, "Source": "mod_sofia", "Context": "default",
                   "RDNIS": a.p.get("RDNIS"), "Profile-Index": "1"}
        if cc is not None:   # mod_callcenter originates with a bare profile
            for k in ("Username", "Dialplan", "Network-Addr", "RDNIS"):
                profile.pop(k)
        profile = {k: v for k, v in profile.items() if v is not None}
        b = self.new_leg(chan, "outbound", False, profile)
        b.has_profile = True
        b.state = "CS_NONE"
        b.state_num = 1
        if cc is None:
            b.set_other("originator", a, zero_times=True)
        b.ev("CHANNEL_OUTGOING", "OUTGOING", with_vars=False)
        b.presence_id = f"{ext}@{DOMAIN}"
        if outgoing_twice:
            b.ev("CHANNEL_OUTGOING", "OUTGOING", with_vars=False)
        if cc is None:
            b.call_uuid = a.uuid
        b.state_to("CS_INIT")
        b.state_num = 2
        b.setv(("direction", "outbound"), ("is_outbound", "true"), ("uuid", b.uuid))
        if cc is not None:
            b.setv(("call_uuid", b.uuid))
        b.setv(("session_id", str(b.session_id)), ("sip_local_network_addr", DOMAIN), ("sip_profile_name", "internal"))
        if cc is not None:
            b.setv(("video_media_flow", "disabled"))
        b.setv(("text_media_flow", "disabled"), ("channel_name", chan),
               ("sip_destination_url", f"sip:{ext}@{DOMAIN}:5070;transport=udp;gw=gw{ext}"), *extra_vars)
        if cc is None:
            b.setv(("max_forwards", str(int(a.getv("max_forwards") or "70") - 1)),
                   ("originator_codec", "PCMU@8000h@20i"), ("originator", a.uuid), ("signal_bond", a.uuid),
                   ("switch_m_sdp", sdp(sw)), ("call_uuid", a.uuid), ("dialed_user", ext), ("dialed_domain", DOMAIN))
            if dialed_extension:
                b.setv(("export_vars", "dialed_extension"), ("dialed_extension", ext))
            if outgoing_twice:     # several users in one dial string: their directory variables come early
                b.setv(*user_vars(ext))
        else:
            b.setv(*request_params_leak(sw, CALLING["CC_OFFER"][:2] + ("1755",)), *cc.items(),
                   ("cc_side", "agent"), ("loopback_bowout", "false"), ("loopback_bowout_on_execute", "false"),
                   ("ignore_early_media", "true"), ("origination_caller_id_name", cid_name),
                   ("origination_caller_id_number", cid_num), ("call_timeout", "15"), ("dialed_user", ext),
                   ("dialed_domain", DOMAIN))
        b.setv(("sip_invite_domain", DOMAIN), ("presence_id", f"{ext}@{DOMAIN}"),
               ("originate_early_media", "true" if cc is None else "false"))
        if cc is None:
            b.setv(("originating_leg_uuid", a.uuid))
        b.setv(("originate_endpoint", "sofia"), ("rtp_use_codec_string", "PCMU@8000h@20i" if cc is None else "PCMU,PCMA"),
               ("local_media_ip", DOMAIN), ("local_media_port", str(sw.rng.randrange(16384, 32768, 2))),
               ("advertised_media_ip", DOMAIN), ("audio_media_flow", "sendrecv"))
        if cc is None:
            b.setv(("video_media_flow", "inactive"))
        b.setv(("rtp_local_sdp_str", sdp(sw)), ("sip_outgoing_contact_uri", f"<sip:mod_sofia@{DOMAIN}:5060>"),
               ("sip_req_uri", f"{ext}@{DOMAIN}:5070;transport=udp;gw=gw{ext}"), ("sip_to_host", f"{DOMAIN}:5070"),
               ("sip_from_host", DOMAIN), ("sofia_profile_name", "internal"), ("recovery_profile_name", "internal"),
               ("sofia_profile_url", f"sip:mod_sofia@{DOMAIN}:5060"))
        b.ev("CHANNEL_CREATE", "CREATE")
        b.ev("CHANNEL_ORIGINATE", "ORIGINATE")
        b.state_to("CS_ROUTING")
        b.state_num = 7
        b.presence("CS_ROUTING", "progressing", 0, ("src/switch_core_state_machine.c", "check_presence", "521"))
        b.state_to("CS_CONSUME_MEDIA")
        return b

    def ring(self, b: Leg, a: Leg, ext: str) -> None:
        """The phone answers the INVITE with 180 Ringing."""
        sw = self.sw
        tag, branch = sw.token(), sw.token()
        if b.p.get("Network-Addr") is None:
            b.setp(Network_Addr=DOMAIN)
        name, number = a.p["Caller-ID-Name"], a.p["Caller-ID-Number"]
        b.setv(("sip_reply_host", DOMAIN), ("sip_reply_port", "5070"), ("sip_network_ip", DOMAIN),
               ("sip_network_port", "5070"), ("sip_user_agent", "LabDeskPhone/1.0"), ("sip_allow", SIP_ALLOW),
               ("sip_recover_contact", f"<sip:{ext}@{DOMAIN}:5070;transport=udp>"),
               ("sip_full_via", f"SIP/2.0/UDP {DOMAIN};rport=5060;branch=z9hG4bK{branch}"),
               ("sip_recover_via", f"SIP/2.0/UDP {DOMAIN};rport=5060;branch=z9hG4bK{branch}"),
               ("sip_from_display", name), ("sip_full_from", f'"{name}" <sip:{number}@{DOMAIN}>;tag={sw.token()}'),
               ("sip_full_to", f"<sip:{ext}@{DOMAIN}:5070;transport=udp;gw=gw{ext}>;tag={tag}"),
               ("sip_from_user", number), ("sip_from_uri", f"{number}@{DOMAIN}"),
               ("sip_to_params", f"transport=udp;gw=gw{ext}"), ("sip_to_user", ext), ("sip_to_port", "5070"),
               ("sip_to_uri", f"{ext}@{DOMAIN}:5070"), ("sip_contact_params", "transport=udp"),
               ("sip_contact_user", ext), ("sip_contact_port", "5070"), ("sip_contact_uri", f"{ext}@{DOMAIN}:5070"),
               ("sip_contact_host", DOMAIN), ("sip_to_tag", tag), ("sip_from_tag", sw.token()),
               ("sip_cseq", str(sw.rng.randrange(10**8, 10**9))), ("sip_call_id", sw.uuid()), ("sip_to_host", DOMAIN))
        b.progress()
        b.callstate_to("RINGING")

    def a_progress(self, a: Leg, b: Leg, ext: str, dialed_user: str | None) -> None:
        a.setp(Callee_ID_Name="Outbound Call", Callee_ID_Number=b.p.get("Callee-ID-Number", ext))
        if dialed_user:
            a.setv(("dialed_user", dialed_user), ("dialed_domain", DOMAIN))
        a.setv(("originate_disposition", "failure"), ("DIALSTATUS", "INVALIDARGS"),
               ("originate_signal_bond", b.uuid),
               ("originated_legs", f"{b.uuid};Outbound Call;{b.p.get('Callee-ID-Number', ext)}"),
               ("sip_to_tag", self.sw.token()))
        a.progress()

    def answer_b(self, b: Leg, presence: bool = True) -> None:
        b.codecs()
        b.setv(("switch_r_sdp", sdp(self.sw)),
               *(kv for kv in media_in_vars(self.sw) if kv[0] not in ("rtp_use_codec_string", "audio_media_flow")),
               *media_local_vars(self.sw)[4:])
        b.answer()
        if presence:
            b.presence("answered", "active", 1, ("src/switch_channel.c", "switch_channel_perform_mark_answered", "3904"))
        b.callstate_to("ACTIVE")

    def answer_a(self, a: Leg) -> None:
        a.setv(("switch_m_sdp", sdp(self.sw)), *media_local_vars(self.sw), ("video_media_flow", "inactive"),
               ("text_media_flow", "inactive"))
        a.answer()

    def bridge_answered(self, a, b) -> None:
        """The a-leg goes ACTIVE, the answered b-leg is re-announced as its originatee, and the two are bridged."""
        a.callstate_to("ACTIVE")
        b.set_other("originator", a, zero_times=True)
        b.ev("CHANNEL_OUTGOING", "OUTGOING", with_vars=False)
        self.bridge(a, b)

    def record_session(self, a: Leg, b: Leg) -> None:
        """With --record-dir: the a-leg's record_session starts as it is first bridged (stereo: a's own side on the
        left); the file is written when the recording stops, as long as the recording ran."""
        recorder = self.gen.recorder
        if recorder is None or a.recording is not None or self.recorded:
            return
        self.recorded = True
        fs_path, local = recorder.paths(a.uuid, self.sw.now_us)
        customer_left = a.name.startswith("sofia/external/")
        extension = b.p.get("Destination-Number", "") if customer_left else a.p.get("Caller-ID-Number", "")
        number = a.p.get("Caller-ID-Number", "") if customer_left else b.p.get("Destination-Number", "")
        left = "customer" if customer_left else "operator"
        self.recording = fs_path
        a.start_recording(fs_path, lambda seconds: recorder.finish(local, RecordedCall(
            seconds, self.scenario, self.seq, a.uuid, left, extension, number)))

    def bridge(self, a: Leg, b: Leg, running: str | None = None) -> None:
        """a-leg CHANNEL_BRIDGE (a is Bridge-A), b follows into CS_EXCHANGE_MEDIA, both send CALL_UPDATE."""
        self.record_session(a, b)
        now = self.sw.now_us
        a.times["bridged"] = b.times["bridged"] = now
        a.sett("Channel-Bridged-Time", now)
        b.sett("Channel-Bridged-Time", now)
        b.call_uuid = a.uuid
        a.set_other("originatee", b, logical="inbound")
        a.setv(("originate_causes", f"ARRAY::{b.uuid};NONE|:{b.uuid};NONE"),
               ("sip_cseq", str(self.rng.randrange(10**8, 10**9))), ("endpoint_disposition", "ANSWER"),
               ("originate_disposition", "SUCCESS"), ("DIALSTATUS", "SUCCESS"), ("signal_bond", b.uuid))
        a.delv("originate_signal_bond")
        a.ev("CHANNEL_BRIDGE", "BRIDGE", pre=(("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)))
        b.state_to(running or "CS_EXCHANGE_MEDIA")

    def call_updates(self, a: Leg, b: Leg, b_ext: str | None):
        """Both legs' CALL_UPDATE after a bridge, 20 ms apart (a generator step: use with `yield from`)."""
        for me, peer in ((b, a), (a, b)):
            if me is b and b_ext:
                b.setv(("endpoint_disposition", "ANSWER"), *user_vars(b_ext), ("originate_endpoint", "user"))
            me.setv(("bridge_to", peer.uuid), ("last_bridge_to", peer.uuid), ("bridge_channel", peer.name),
                    ("bridge_uuid", peer.uuid), ("last_sent_callee_id_name", peer.p["Caller-ID-Name"]),
                    ("last_sent_callee_id_number", peer.p["Caller-ID-Number"]))
            sent_name = peer.p["Caller-ID-Name"] if me is b else me.p.get("Callee-ID-Name", "")
            sent_num = peer.p["Caller-ID-Number"] if me is b else me.p.get("Callee-ID-Number", "")
            me.ev("CALL_UPDATE", "CALL_UPDATE", pre=(("Direction", "SEND"), ("Sent-Callee-ID-Name", sent_name),
                                                    ("Sent-Callee-ID-Number", sent_num), ("Bridged-To", peer.uuid)))
            if me is b:
                yield 0.02

    def hangup_pair(self, a: Leg, b: Leg, bridge_app: tuple[str, str, str] | None, a_presence: bool = False,
                    b_presence: bool = True, bridged: bool = True, destroy: bool = True) -> None:
        """The caller (a) hangs up a bridged call; b follows; the a-leg's bridge application completes."""
        a.hangup("NORMAL_CLEARING", [("sip_reason", 'Q.850;cause=16;text="NORMAL_CLEARING"'), ("sip_term_status", "200"),
                                     ("proto_specific_hangup_cause", "sip:200"), ("sip_term_cause", "16"),
                                     ("last_bridge_role", "originator")])
        b.delv("bridge_to")
        b.hangup("NORMAL_CLEARING", [("sip_reason", 'Q.850;cause=16;text="NORMAL_CLEARING"'), ("sip_hangup_phrase", "OK"),
                                     ("last_bridge_hangup_cause", "NORMAL_CLEARING"),
                                     ("last_bridge_proto_specific_hangup_cause", "sip:200")])
        b.state_to("CS_HANGUP")
        b.callstate_to("HANGUP")
        if bridged:
            a.delv("bridge_to")
            a.setv(("sip_hangup_disposition", "recv_bye"), ("bridge_hangup_cause", "NORMAL_CLEARING"))
            a.ev("CHANNEL_UNBRIDGE", "UNBRIDGE", pre=(("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)))
        if bridge_app and destroy:
            a.execute_complete(*bridge_app)
        a.state_to("CS_HANGUP")
        a.callstate_to("HANGUP")
        if a_presence:
            a.state_num = 11
            a.presence("CS_HANGUP", "idle", 2, ("src/switch_core_state_machine.c", "check_presence", "521"))
        a.state_to("CS_REPORTING")
        a.hangup_complete(*(bridge_app[:2] if bridge_app else ("", "")))
        if destroy:
            a.destroy()
        b.call_uuid = b.uuid
        b.setv(("call_uuid", b.uuid), ("bridge_hangup_cause", "NORMAL_CLEARING"), ("sip_hangup_disposition", "send_bye"))
        if b_presence:
            b.state_num = 11
            b.presence("CS_HANGUP", "idle", 2, ("src/switch_core_state_machine.c", "check_presence", "521"))
        b.state_to("CS_REPORTING")
        b.hangup_complete()
        if destroy:
            b.destroy()

    def lose(self, b: Leg, cause: str, disposition: str) -> None:
        """A b-leg that rang and is cancelled (ring-group loser, caller gave up)."""
        b.hangup(cause, [("group_dial_status", "LOSE_RACE"), ("sip_hangup_disposition", disposition),
                         ("call_completed_elsewhere", "true"), ("sip_invite_failure_status", "487"),
                         ("sip_invite_failure_phrase", "Request Terminated")])
        b.state_to("CS_HANGUP")
        b.callstate_to("HANGUP")
        b.state_num = 11
        b.presence("CS_HANGUP", "idle", 1, ("src/switch_core_state_machine.c", "check_presence", "521"))
        b.call_uuid = b.uuid
        b.report_and_destroy()

    def api_contact(self, ext: str) -> None:
        self.sw.core_event("API", "API", [("API-Command", "sofia_contact"), ("API-Command-Argument", f"*/{ext}@{DOMAIN}")])

    def extension_apps(self, a: Leg, ext: str, export_vars: str = "dialed_extension") -> tuple[str, str, str]:
        a.execute("export", f"dialed_extension={ext}", effects=[("dialed_extension", ext), ("export_vars", export_vars)])
        a.execute("set", "call_timeout=30", effects=[("call_timeout", "30")])
        a.execute("set", "hangup_after_bridge=true", effects=[("hangup_after_bridge", "true")])
        a.execute("set", "continue_on_fail=true", effects=[("continue_on_fail", "true")])
        data = f"user/{ext}@{DOMAIN}"
        return ("bridge", data, a.execute("bridge", data, complete=False))

    def run(self) -> Iterator[float]:
        raise NotImplementedError


class InboundCall(Call):
    """A customer calls an extension's DID; the extension answers (or not, for inbound_missed)."""

    scenario = "inbound_answered"
    answered = True

    def run(self):
        number, name = self.pick_caller()
        ext = self.pick_extensions(1)[0]
        did = did_for(ext)
        ring_s, talk_s = self.span(0.5, 3.0), self.span(1.0, 8.0)
        giveup_s = self.span(2.0, 8.0)
        a = self.trunk_leg(number, name, did)
        self.route_public(a, did, ext)
        app = self.extension_apps(a, ext)
        self.api_contact(ext)
        b = self.user_leg(a, ext)
        self.ring(b, a, ext)
        self.pop(ext, "ringing")
        yield 0.02
        self.a_progress(a, b, ext, ext)
        if not self.answered:
            yield giveup_s
            failure = [("sip_hangup_disposition", "recv_cancel"), ("sip_invite_failure_status", "487"),
                       ("sip_invite_failure_phrase", "CANCEL"), ("sip_reason", 'Q.850;cause=19;text="NO_ANSWER"'),
                       ("sip_term_status", "487"), ("proto_specific_hangup_cause", "sip:487"), ("sip_term_cause", "487")]
            a.hangup("ORIGINATOR_CANCEL", failure)
            yield 0.02
            b.hangup("ORIGINATOR_CANCEL", [("sip_reason", 'Q.850;cause=19;text="NO_ANSWER"'),
                                           ("sip_hangup_phrase", "Request Terminated"),
                                           ("last_bridge_hangup_cause", "ORIGINATOR_CANCEL"),
                                           ("last_bridge_proto_specific_hangup_cause", "sip:487")])
            b.state_to("CS_HANGUP")
            b.callstate_to("HANGUP")
            a.setv(("originate_causes", f"{b.uuid};ORIGINATOR_CANCEL"), ("originate_disposition", "ORIGINATOR_CANCEL"),
                   ("originate_failed_cause", "ORIGINATOR_CANCEL"))
            a.execute_complete(*app)
            a.state_to("CS_HANGUP")
            a.callstate_to("HANGUP")
            a.report_and_destroy(*app[:2])
            b.state_num = 11
            b.presence("CS_HANGUP", "idle", 1, ("src/switch_core_state_machine.c", "check_presence", "521"))
            b.setv(("sip_hangup_disposition", "send_cancel"), ("sip_invite_failure_status", "487"),
                   ("sip_invite_failure_phrase", "Request Terminated"))
            b.report_and_destroy()
            self.pop(ext, "missed")
            self.outcome(direction="INCOMING", external_number=number, external_name=name, did=did,
                         extensions_rung=[ext], missed_by=[ext], hangup_cause="ORIGINATOR_CANCEL", a_leg_billsec=0)
            return
        yield ring_s
        self.answer_b(b)
        self.pop(ext, "answered")
        yield 0.02
        self.answer_a(a)
        self.bridge_answered(a, b)
        yield from self.call_updates(a, b, ext)
        yield from self.talk(b, a, ext, talk_s)
        self.hangup_pair(a, b, app)
        self.pop(ext, "ended")
        self.outcome(direction="INCOMING", external_number=number, external_name=name, did=did,
                     extensions_rung=[ext], answered_by=ext, talked=[ext],
                     a_leg_billsec=(a.times["hangup"] - a.times["answered"]) // 1_000_000)


class MissedCall(InboundCall):
    scenario = "inbound_missed"
    answered = False


class RingGroupCall(Call):
    """A customer calls the ring group's DID; its members ring together; one answers, the others LOSE_RACE."""

    scenario = "ring_group"

    def run(self):
        number, name = self.pick_caller()
        members = self.pick_extensions(min(3, len(self.gen.extensions)))
        ring_s, talk_s = self.span(0.5, 3.0), self.span(1.0, 8.0)
        a = self.trunk_leg(number, name, RING_GROUP_DID)
        self.route_public(a, RING_GROUP_DID, RING_GROUP_EXT)
        a.execute("set", "call_timeout=30", effects=[("call_timeout", "30")])
        a.execute("set", "hangup_after_bridge=true", effects=[("hangup_after_bridge", "true")])
        a.execute("set", "continue_on_fail=true", effects=[("continue_on_fail", "true")])
        data = ",".join(f"user/{e}@{DOMAIN}" for e in members)
        app = ("bridge", data, a.execute("bridge", data, complete=False))
        legs = []
        for ext in members:
            self.api_contact(ext)
            legs.append(self.user_leg(a, ext, dialed_extension=False, outgoing_twice=True))
        order = list(zip(members, legs))
        self.rng.shuffle(order)          # 180 Ringing arrives in any order, within milliseconds
        for ext, b in order:
            self.ring(b, a, ext)
            self.pop(ext, "ringing")
        yield 0.02
        a.set_other("originatee", order[-1][1], logical="inbound")
        a.setv(("signal_bond", order[-1][1].uuid))
        self.a_progress(a, order[0][1], order[0][0], members[-1])
        winner_ext, winner = self.rng.choice(order)
        yield ring_s
        self.answer_b(winner)
        self.pop(winner_ext, "answered")
        for ext, b in order:
            if b is not winner:
                self.lose(b, "LOSE_RACE", "send_cancel")
                self.pop(ext, "answered_elsewhere")
        a.setv(("last_bridge_hangup_cause", "LOSE_RACE"))
        self.answer_a(a)
        a.callstate_to("ACTIVE")
        self.bridge(a, winner)
        yield 0.02
        yield from self.call_updates(a, winner, winner_ext)
        yield from self.talk(winner, a, winner_ext, talk_s)
        self.hangup_pair(a, winner, app)
        self.pop(winner_ext, "ended")
        self.outcome(direction="INCOMING", external_number=number, external_name=name, did=RING_GROUP_DID,
                     extensions_rung=[e for e, _ in order], answered_by=winner_ext,
                     answered_elsewhere=[e for e, _ in order if e != winner_ext], talked=[winner_ext],
                     a_leg_billsec=(a.times["hangup"] - a.times["answered"]) // 1_000_000)


class QueueCall(Call):
    """A customer calls the mod_callcenter queue: the queue answers the caller, then offers an agent."""

    scenario = "queue"

    def cc_info(self, leg: Leg | None, action: str, calling: str, items: list[tuple[str, str]]) -> None:
        head = [("CC-Queue", QUEUE_NAME), ("CC-Action", action)] if action not in ("agent-state-change",) else [("CC-Action", action)]
        if leg is None:
            self.sw.core_event("CUSTOM", calling, head + items, subclass="callcenter::info")
        else:
            leg.ev("CUSTOM", calling, post=head + items, subclass="callcenter::info")

    def run(self):
        sw = self.sw
        number, name = self.pick_caller()
        agent = self.pick_extensions(1)[0]
        wait_s, ring_s, talk_s = self.span(0.2, 3.0), self.span(0.5, 3.0), self.span(1.0, 8.0)
        a = self.trunk_leg(number, name, QUEUE_DID)
        self.route_public(a, QUEUE_DID, QUEUE_EXT)
        answer_uuid = a.execute("answer", complete=False)
        a.setv(*media_local_vars(sw))
        a.answer()
        a.callstate_to("ACTIVE")
        a.setv(("endpoint_disposition", "ANSWER"))
        a.execute_complete("answer", "", answer_uuid)
        cc_app = ("callcenter", QUEUE_NAME, a.execute("callcenter", QUEUE_NAME, complete=False))
        member = sw.uuid()
        joined = str(sw.now_us // 1_000_000)
        a.setv(("cc_side", "member"), ("cc_member_uuid", member), ("cc_queue_joined_epoch", joined), ("cc_queue", QUEUE_NAME))
        member_items = [("CC-Member-UUID", member), ("CC-Member-Session-UUID", a.uuid), ("CC-Member-CID-Name", name),
                        ("CC-Member-CID-Number", number)]
        self.cc_info(a, "member-queue-start", "CC_START", member_items)
        self.cc_info(None, "members-count", "CC_COUNT", [("CC-Count", "1"), ("CC-Selection", "Single-Queue")])
        self.queue_presence("Active (1 waiting)", "CS_ROUTING", "confirmed")
        a.setv(("sip_to_tag", sw.token()), ("sip_cseq", str(self.rng.randrange(10**8, 10**9))))
        a.ev("PLAYBACK_START", "PLAYBACK_START", post=(("Playback-File-Type", "tone_stream"),
                                                        ("Playback-File-Path", "tone_stream://%(1000,4000,440)")))
        yield wait_s
        agent_id = f"{agent}@{DOMAIN}"
        self.cc_info(None, "agent-state-change", "CC_AGENT", [("CC-Agent", agent_id), ("CC-Agent-State", "Receiving")])
        self.cc_info(None, "agent-offering", "CC_OFFER", [("CC-Agent", agent_id), ("CC-Agent-Type", "callback"),
                                                          ("CC-Agent-System", "single_box")] + member_items)
        self.api_contact(agent)
        cc = {"cc_queue": QUEUE_NAME, "cc_queue_joined_epoch": joined, "cc_member_uuid": member,
              "cc_member_session_uuid": a.uuid, "cc_member_pre_answer_uuid": member, "cc_agent": agent_id,
              "cc_agent_type": "callback"}
        b = self.user_leg(a, agent, cc=cc)
        yield 0.02
        self.ring(b, a, agent)
        self.pop(agent, "ringing")
        yield ring_s
        self.answer_b(b)
        self.pop(agent, "answered")
        b.ev("CHANNEL_OUTGOING", "OUTGOING", with_vars=False)
        yield 0.02
        called = joined
        answered = str(sw.now_us // 1_000_000)
        b.setv(("endpoint_disposition", "ANSWER"), *user_vars(agent), ("originate_endpoint", "user"))
        b.delv("cc_member_pre_answer_uuid")
        self.cc_info(b, "bridge-agent-start", "CC_BRIDGE_START", [
            ("CC-Agent", agent_id), ("CC-Agent-System", "single_box"), ("CC-Agent-UUID", b.uuid),
            ("CC-Agent-Called-Time", called), ("CC-Agent-Answered-Time", answered),
            ("CC-Member-Joined-Time", joined)] + member_items + [("CC-Member-DNIS", QUEUE_DID)])
        history_b = f"{sw.now_us // 1_000_000}:{sw.uuid()}:uuid_br:{a.uuid}"
        b.setp(Transfer_Source=history_b, Profile_Index="2")
        b.set_other("originator", a)
        b.state_to("CS_HIBERNATE")
        b.state_to("CS_RESET")
        history_a = f"{sw.now_us // 1_000_000}:{sw.uuid()}:uuid_br:{b.uuid}"
        a.setp(Callee_ID_Name="Outbound Call", Callee_ID_Number=agent, Transfer_Source=history_a, Profile_Index="3")
        a.set_other("originatee", b, logical="inbound")
        a.setv(("cc_agent_found", "true"), ("cc_agent_uuid", b.uuid), ("uuid_bridge", b.uuid),
               ("bridge_channel", b.name), ("bridge_uuid", b.uuid), ("signal_bond", b.uuid),
               ("original_destination_number", QUEUE_EXT), ("original_caller_id_name", name),
               ("original_caller_id_number", number),
               ("transfer_history", f"ARRAY::{a.getv('transfer_history')}|:{history_a}"), ("transfer_source", history_a))
        played_ms = (sw.now_us - a.times["answered"]) // 1000
        a.setv(("playback_last_offset_pos", str(played_ms * 8 // 2)), ("playback_seconds", str(played_ms // 1000)),
               ("playback_ms", str(played_ms)), ("playback_samples", str(played_ms * 8)))
        a.state_num = 8
        a.ev("PLAYBACK_STOP", "PLAYBACK_STOP", post=(("Playback-File-Type", "tone_stream"),
                                                      ("Playback-File-Path", "tone_stream://%(1000,4000,440)"),
                                                      ("Playback-Status", "done")))
        self.cc_info(None, "members-count", "CC_COUNT", [("CC-Count", "1"), ("CC-Selection", "Single-Queue")])
        self.queue_presence("Idle", "CS_HANGUP", "terminated")
        a.delv("cc_agent_found")
        a.setv(("cc_cause", "answered"))
        a.execute_complete(*cc_app)
        for st in ("CS_HIBERNATE", "CS_RESET", "CS_SOFT_EXECUTE"):
            a.state_to(st)
        b.state_to("CS_SOFT_EXECUTE")
        b.delv("uuid_bridge")
        b.setv(("bridge_channel", a.name), ("bridge_uuid", a.uuid), ("signal_bond", a.uuid),
               ("original_destination_number", agent), ("original_caller_id_name", name),
               ("original_caller_id_number", number), ("transfer_history", history_b), ("transfer_source", history_b))
        b.execute("uuid_bridge", a.uuid, complete=False, dialplan=False)
        a.delv("uuid_bridge")
        a.execute("uuid_bridge", b.uuid, complete=False, dialplan=False)
        yield 0.02
        now = sw.now_us
        a.times["bridged"] = b.times["bridged"] = now
        a.sett("Channel-Bridged-Time", now)
        b.sett("Channel-Bridged-Time", now)
        a.setv(("endpoint_disposition", "ANSWER"))
        self.record_session(a, b)
        a.ev("CHANNEL_BRIDGE", "BRIDGE", pre=(("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)))
        b.call_uuid = a.uuid
        b.state_to("CS_EXCHANGE_MEDIA")
        self.cc_info(None, "agent-state-change", "CC_AGENT", [("CC-Agent", agent_id), ("CC-Agent-State", "In a queue call")])
        answered_epoch = str(now // 1_000_000)
        a.setv(("cc_agent_bridged", "true"), ("cc_agent", agent_id), ("cc_queue_answered_epoch", answered_epoch))
        b.setv(("cc_agent_bridged", "true"), ("call_uuid", a.uuid))
        yield from self.call_updates(a, b, None)
        yield from self.talk(b, a, agent, talk_s)
        self.hangup_pair(a, b, cc_app, destroy=False)
        yield 0.06
        ended = [("CC-Agent", agent_id), ("CC-Agent-System", "single_box"), ("CC-Agent-UUID", b.uuid),
                 ("CC-Agent-Called-Time", called), ("CC-Agent-Answered-Time", answered)]
        left = str(sw.now_us // 1_000_000)
        self.cc_info(b, "bridge-agent-end", "CC_BRIDGE_END", [("CC-Hangup-Cause", "SUCCESS"), *ended[:3],
                     ("CC-Agent-Bridged", "true"), *ended[3:], ("CC-Member-Joined-Time", joined),
                     ("CC-Bridge-Terminated-Time", left)] + member_items)
        a.setv(("cc_queue_terminated_epoch", left))
        self.cc_info(a, "member-queue-end", "CC_MEMBER_END", [("CC-Hangup-Cause", "SUCCESS"), ("CC-Cause", "Terminated"),
                     *ended, ("CC-Member-Leaving-Time", left), ("CC-Member-Joined-Time", joined)] + member_items)
        self.cc_info(None, "agent-state-change", "CC_AGENT", [("CC-Agent", agent_id), ("CC-Agent-State", "Waiting")])
        b.destroy()
        a.destroy()
        self.pop(agent, "ended")
        self.outcome(direction="INCOMING", external_number=number, external_name=name, did=QUEUE_DID,
                     extensions_rung=[agent], answered_by=agent, talked=[agent],
                     a_leg_billsec=(a.times["hangup"] - a.times["answered"]) // 1_000_000)

    def queue_presence(self, status: str, state: str, answer_state: str) -> None:
        self.sw.core_event("PRESENCE_IN", "CC_PRESENCE", [
            ("proto", "callcenter"), ("login", QUEUE_NAME), ("from", QUEUE_NAME), ("force-status", status),
            ("rpid", "unknown"), ("event_type", "presence"), ("alt_event_type", "dialog"), ("event_count", "0"),
            ("channel-state", state), ("unique-id", QUEUE_NAME), ("answer-state", answer_state),
            ("presence-call-direction", "inbound")])


class OutboundCall(Call):
    """An operator dials an external number from the desk phone; it leaves through the gateway."""

    scenario = "outbound"

    def run(self):
        sw = self.sw
        ext = self.pick_extensions(1)[0]
        number = self.rng.choice(self.gen.dialable)
        ring_s, talk_s = self.span(0.5, 3.0), self.span(1.0, 8.0)
        a = self.desk_phone_leg(ext, number)
        self.pop(ext, "dialing")
        a.execute("set", f"effective_caller_id_number={COMPANY_NUMBER}", effects=[("effective_caller_id_number", COMPANY_NUMBER)])
        a.execute("set", f"effective_caller_id_name={COMPANY_NAME}", effects=[("effective_caller_id_name", COMPANY_NAME)])
        a.execute("set", "call_timeout=30", effects=[("call_timeout", "30")])
        a.execute("set", "hangup_after_bridge=true", effects=[("hangup_after_bridge", "true")])
        data = f"sofia/gateway/{GATEWAY}/{number}"
        app = ("bridge", data, a.execute("bridge", data, complete=False))
        chan = f"sofia/external/{number}"
        b = self.new_leg(chan, "outbound", False, {
            "Direction": "outbound", "Logical-Direction": "outbound", "Username": ext, "Dialplan": "XML",
            "Caller-ID-Name": COMPANY_NAME, "Caller-ID-Number": COMPANY_NUMBER, "Orig-Caller-ID-Name": f"Operator {ext}",
            "Orig-Caller-ID-Number": ext, "Callee-ID-Name": "Outbound Call", "Callee-ID-Number": number,
            "Network-Addr": DOMAIN, "ANI": ext, "Destination-Number": number, "Source": "mod_sofia",
            "Context": "default", "Profile-Index": "1"})
        b.has_profile = True
        b.state, b.state_num = "CS_NONE", 1
        b.set_other("originator", a, zero_times=True)
        b.ev("CHANNEL_OUTGOING", "OUTGOING", with_vars=False)
        b.call_uuid = a.uuid
        b.state_to("CS_INIT")
        b.state_num = 2
        b.setv(("direction", "outbound"), ("is_outbound", "true"), ("uuid", b.uuid), ("session_id", str(b.session_id)),
               ("sip_gateway_name", GATEWAY), ("sip_invite_domain", DOMAIN), ("sip_local_network_addr", DOMAIN),
               ("sip_profile_name", "gateway"), ("text_media_flow", "disabled"), ("channel_name", chan),
               ("sip_destination_url", f"sip:{number}@{DOMAIN}:5090"), ("max_forwards", "69"),
               ("originator_codec", "PCMU@8000h@20i"), ("originator", a.uuid), ("signal_bond", a.uuid),
               ("switch_m_sdp", sdp(sw)), ("call_uuid", a.uuid), ("originate_early_media", "true"),
               ("originating_leg_uuid", a.uuid), ("originate_endpoint", "sofia"),
               ("rtp_use_codec_string", "PCMU@8000h@20i"), *media_local_vars(sw)[1:4],
               ("audio_media_flow", "sendrecv"), ("video_media_flow", "inactive"), ("rtp_local_sdp_str", sdp(sw)),
               ("sip_outgoing_contact_uri", f"<sip:gw+{GATEWAY}@{DOMAIN}:5080;transport=udp;gw={GATEWAY}>"),
               ("sip_req_uri", f"{number}@{DOMAIN}:5090"), ("sip_to_host", f"{DOMAIN}:5090"), ("sip_from_host", DOMAIN),
               ("sofia_profile_name", "external"), ("recovery_profile_name", "external"),
               ("sofia_profile_url", f"sip:mod_sofia@{DOMAIN}:5080"))
        b.ev("CHANNEL_CREATE", "CREATE")
        b.ev("CHANNEL_ORIGINATE", "ORIGINATE")
        b.state_to("CS_ROUTING")
        b.state_to("CS_CONSUME_MEDIA")
        tag, branch = sw.token(), sw.token()
        b.setv(("sip_reply_host", DOMAIN), ("sip_reply_port", "5090"), ("sip_network_ip", DOMAIN),
               ("sip_network_port", "5090"), ("sip_user_agent", "LabPSTN/1.0"), ("sip_allow", SIP_ALLOW),
               ("sip_recover_contact", f"<sip:{number}@{DOMAIN}:5090;transport=udp>"),
               ("sip_full_via", f"SIP/2.0/UDP {DOMAIN}:5080;rport=5080;branch=z9hG4bK{branch}"),
               ("sip_recover_via", f"SIP/2.0/UDP {DOMAIN}:5080;rport=5080;branch=z9hG4bK{branch}"),
               ("sip_from_display", COMPANY_NAME),
               ("sip_full_from", f'"{COMPANY_NAME}" <sip:{COMPANY_NUMBER}@{DOMAIN}>;tag={sw.token()}'),
               ("sip_full_to", f"<sip:{number}@{DOMAIN}:5090>;tag={tag}"), ("sip_from_user", COMPANY_NUMBER),
               ("sip_from_uri", f"{COMPANY_NUMBER}@{DOMAIN}"), ("sip_to_user", number), ("sip_to_port", "5090"),
               ("sip_to_uri", f"{number}@{DOMAIN}:5090"), ("sip_contact_params", "transport=udp"),
               ("sip_contact_user", number), ("sip_contact_port", "5090"), ("sip_contact_uri", f"{number}@{DOMAIN}:5090"),
               ("sip_contact_host", DOMAIN), ("sip_to_tag", tag), ("sip_from_tag", sw.token()),
               ("sip_cseq", str(sw.rng.randrange(10**8, 10**9))), ("sip_call_id", sw.uuid()), ("sip_to_host", DOMAIN))
        b.progress()
        b.callstate_to("RINGING")
        yield 0.02
        self.a_progress(a, b, number, None)
        yield ring_s
        self.answer_b(b, presence=False)
        self.answer_a(a)
        a.presence("answered", "active", 1, ("src/switch_channel.c", "switch_channel_perform_mark_answered", "3904"))
        a.callstate_to("ACTIVE")
        self.pop(ext, "answered")
        self.bridge(a, b)
        yield 0.02
        yield from self.call_updates(a, b, None)
        yield from self.talk(a, b, ext, talk_s)
        self.hangup_pair(a, b, app, a_presence=True, b_presence=False)
        self.pop(ext, "ended")
        self.outcome(direction="OUTGOING", external_number=number, from_extension=ext, external_answered=True,
                     talked=[ext], a_leg_billsec=(a.times["hangup"] - a.times["answered"]) // 1_000_000)


class InternalCall(Call):
    """One extension dials another."""

    scenario = "internal"

    def run(self):
        caller, callee = self.pick_extensions(2)
        ring_s, talk_s = self.span(0.5, 3.0), self.span(1.0, 8.0)
        a = self.desk_phone_leg(caller, callee)
        self.pop(caller, "dialing")
        app = self.extension_apps(a, callee)
        self.api_contact(callee)
        b = self.user_leg(a, callee)
        self.ring(b, a, callee)
        self.pop(callee, "ringing")
        yield 0.02
        self.a_progress(a, b, callee, callee)
        yield ring_s
        self.answer_b(b)
        self.pop(callee, "answered")
        self.answer_a(a)
        a.presence("answered", "active", 1, ("src/switch_channel.c", "switch_channel_perform_mark_answered", "3904"))
        self.bridge_answered(a, b)
        yield from self.call_updates(a, b, callee)
        yield talk_s
        self.hangup_pair(a, b, app, a_presence=True)
        self.pop(caller, "ended")
        self.pop(callee, "ended")
        self.outcome(direction="INTERNAL", from_extension=caller, extensions_rung=[callee], answered_by=callee,
                     talked=[caller, callee], a_leg_billsec=(a.times["hangup"] - a.times["answered"]) // 1_000_000)


class TransferCall(Call):
    """Inbound call answered by one extension, which blind-transfers it (SIP REFER) to another."""

    scenario = "transfer"

    def run(self):
        sw = self.sw
        number, name = self.pick_caller()
        first, second = self.pick_extensions(2)
        did = did_for(first)
        ring1, talk1, ring2, talk2 = self.span(0.5, 2.0), self.span(1.0, 4.0), self.span(0.5, 2.5), self.span(1.0, 6.0)
        a = self.trunk_leg(number, name, did)
        self.route_public(a, did, first)
        app = self.extension_apps(a, first)
        self.api_contact(first)
        b1 = self.user_leg(a, first)
        self.ring(b1, a, first)
        self.pop(first, "ringing")
        yield 0.02
        self.a_progress(a, b1, first, first)
        yield ring1
        self.answer_b(b1)
        self.pop(first, "answered")
        self.answer_a(a)
        self.bridge_answered(a, b1)
        yield from self.call_updates(a, b1, first)
        yield talk1
        b1.setv(("transfer_disposition", "recv_replace"), ("transfer_to", f"blind:{a.uuid}"),
                ("transfer_destination", f"blind:{second}"), ("transfer_fallback_extension", first),
                ("endpoint_disposition", "BLIND_TRANSFER"))
        b1.ev("CUSTOM", "TRANSFEROR", subclass="sofia::transferor")
        a.setv(("sip_h_Referred-By", f"<sip:{DOMAIN}:5070>"), ("sip_refer_to", f"<sip:{second}@{DOMAIN}>"))
        a.ev("CUSTOM", "TRANSFEREE", subclass="sofia::transferee")
        self.pop(first, "transferred")
        yield 0.02
        b1.delv("bridge_to", "signal_bond")
        b1.hangup("NORMAL_CLEARING")
        b1.state_to("CS_HANGUP")
        b1.callstate_to("HANGUP")
        history = f"{sw.now_us // 1_000_000}:{sw.uuid()}:bl_xfer:{second}/default/XML"
        a.setp(Destination_Number=second, Transfer_Source=history, RDNIS=first, Profile_Index="3")
        a.set_other(None)
        a.delv("bridge_to", "signal_bond")
        a.setv(("bridge_hangup_cause", "NORMAL_CLEARING"),
               ("transfer_history", f"ARRAY::{a.getv('transfer_history')}|:{history}"), ("max_forwards", "68"),
               ("transfer_source", history))
        a.state_num = 2
        a.ev("CHANNEL_UNBRIDGE", "UNBRIDGE", pre=(("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b1.uuid)))
        a.execute_complete(*app)
        a.callstate_to("RINGING", running="CS_ROUTING")
        a.state_to("CS_ROUTING")
        a.callstate_to("ACTIVE", running="CS_EXECUTE")
        a.state_to("CS_EXECUTE")
        b1.state_num = 11
        b1.call_uuid = b1.uuid
        b1.presence("CS_HANGUP", "idle", 2, ("src/switch_core_state_machine.c", "check_presence", "521"))
        b1.setv(("call_uuid", b1.uuid), ("sip_hangup_disposition", "recv_bye"))
        b1.report_and_destroy()
        a.setv(("DP_MATCH", f"ARRAY::{second}|:{second}"))
        app = self.extension_apps(a, second, export_vars="dialed_extension,dialed_extension")
        a.callstate_to("RING_WAIT")
        self.api_contact(second)
        yield 0.02
        b2 = self.user_leg(a, second, extra_vars=[("sip_h_Referred-By", f"<sip:{DOMAIN}:5070>")])
        self.ring(b2, a, second)
        self.pop(second, "ringing")
        a.setp(Callee_ID_Number=second)
        yield ring2
        self.answer_b(b2)
        self.pop(second, "answered")
        a.set_other("originatee", b2, logical="inbound")
        self.bridge_answered(a, b2)
        yield from self.call_updates(a, b2, second)
        yield talk2
        self.hangup_pair(a, b2, app)
        self.pop(second, "ended")
        self.outcome(direction="INCOMING", external_number=number, external_name=name, did=did,
                     extensions_rung=[first, second], answered_by=first, talked=[first, second],
                     a_leg_billsec=(a.times["hangup"] - a.times["answered"]) // 1_000_000)


CALL_TYPES = {cls.scenario: cls for cls in (InboundCall, MissedCall, RingGroupCall, QueueCall, OutboundCall,
                                             InternalCall, TransferCall)}
NEEDS_EXTENSIONS = {"internal": 2, "transfer": 2}


# -----------------------------------------------------------------------------------------------------------
# The generator
# -----------------------------------------------------------------------------------------------------------

class CallGenerator:
    """Calls arriving at `rate` per second (virtual time), their events merged in time order.

    `calls` or `duration` bounds the arrivals (neither: run until stopped). The same seed gives the same
    calls, UUIDs, numbers and timings; timestamps follow the wall clock at the moment the timeline starts.
    """

    def __init__(self, rate: float = 1.0, calls: int | None = None, duration: float | None = None,
                 mix: dict[str, float] | None = None, numbers: list[str] | None = None,
                 extensions: list[str] | None = None, seed: int | None = None, expect_path: str | None = None,
                 start_us: int | None = None, recorder: Recorder | None = None, hold_share: float = HOLD_SHARE):
        if rate <= 0:
            raise ValueError("--rate must be > 0")
        if calls is not None and calls < 0:
            raise ValueError("--calls must be >= 0")
        self.rate = rate
        self.max_calls = calls
        self.duration = duration
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self.rng = random.Random(self.seed)
        self.hold_share = hold_share
        self.hold_rng = random.Random(self.seed + 1)  # apart, so holds leave every other choice as it was
        self.extensions = extensions or parse_extensions(None)
        self.numbers = numbers or [f"+354555{self.rng.randrange(4000, 10000):04d}" for _ in range(200)]
        # what an operator can dial out to ("anonymous" can call in, but nobody dials it)
        self.dialable = [n for n in self.numbers if n.lstrip("+").isdigit()] or [COMPANY_NUMBER]
        mix = dict(mix or DEFAULT_MIX)
        for name, need in NEEDS_EXTENSIONS.items():
            if mix.get(name) and len(self.extensions) < need:
                mix[name] = 0
        if not any(mix.values()):
            raise ValueError("no scenario of --mix is possible with the given extensions")
        self.mix_names = [n for n, w in mix.items() if w > 0]
        self.mix_weights = [mix[n] for n in self.mix_names]
        self.core = {"Core-UUID": str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4)),
                     "FreeSWITCH-Hostname": "vm", "FreeSWITCH-Switchname": "pbx",
                     "FreeSWITCH-IPv4": "192.0.2.2", "FreeSWITCH-IPv6": "fd00::2"}
        self.sw = Switch(self.rng, self.core)
        self.sequence_base = 0
        self.start_us = start_us
        self.calls_started = 0
        self.records: list[dict] = []
        self.recorder = recorder  # answered calls recorded (RECORD_START/STOP, a WAV file each) when given
        self._expect = open(expect_path, "w", encoding="utf-8") if expect_path else None
        self._sim = None

    def bind(self, sim) -> None:
        """Share the simulator's Event-Sequence counter (API/BACKGROUND_JOB events interleave with calls)."""
        self._sim = sim
        self.sw.next_sequence = sim.next_sequence

    def describe(self) -> str:
        bound = (f"{self.max_calls} calls" if self.max_calls is not None else
                 f"{self.duration}s of arrivals" if self.duration is not None else "until stopped")
        mix = ",".join(f"{n}={w:g}" for n, w in zip(self.mix_names, self.mix_weights))
        return (f"{self.rate:g} calls/s, {bound}, mix {mix}, {len(self.extensions)} extensions, "
                f"{len(self.numbers)} numbers, seed {self.seed}")

    def _finished_arrivals(self, n: int, t_us: int) -> bool:
        if self.max_calls is not None and n >= self.max_calls:
            return True
        if self.duration is not None and t_us - self.start_us >= self.duration * 1_000_000:
            return True
        return False

    def events(self) -> Iterator[SimEvent]:
        """All events of all calls in time order; each is valid until the next one is requested."""
        sw = self.sw
        if self.start_us is None:
            self.start_us = int(time.time() * 1_000_000)
        interval = int(1_000_000 / self.rate)
        heap: list[tuple[int, int, object]] = []
        order = 0
        next_arrival = self.start_us
        while True:
            if not self._finished_arrivals(self.calls_started, next_arrival) and (not heap or next_arrival <= heap[0][0]):
                due, runner = next_arrival, None
                next_arrival += interval
            elif heap:
                due, _, runner = heapq.heappop(heap)
            else:
                break
            sw.now_us = due
            if runner is None:
                scenario = self.rng.choices(self.mix_names, self.mix_weights)[0]
                self.calls_started += 1
                call = CALL_TYPES[scenario](self, self.calls_started)
                runner = self._drive(call)
            try:
                delay = next(runner)
            except StopIteration:
                delay = None
            yield from self._drain()
            if delay is not None:
                order += 1
                heapq.heappush(heap, (sw.now_us + int(delay * 1_000_000), order, runner))

    def _drive(self, call: Call):
        for delay in call.run():
            yield delay
        rec = call.record()
        if len(self.records) < 100_000:       # kept for in-process use; --expect has them all
            self.records.append(rec)
        if self._expect is not None:
            self._expect.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self._expect.flush()

    def _drain(self) -> Iterator[SimEvent]:
        out = self.sw.out
        standalone = self._sim is None      # bound to a simulator, it numbers events when it publishes them
        i = 0
        while i < len(out):
            if standalone:
                out[i].set_sequence(self.sw.next_sequence())
            yield out[i]
            i += 1
        out.clear()

    def close(self) -> None:
        if self._expect is not None:
            self._expect.close()
            self._expect = None
