"""Call tracking: one state machine per business call, fed FreeSWITCH channel events in stream order.

A call is keyed by its a-leg. Legs join it through ``variable_originator`` (bridge and ring-group
b-legs), ``variable_cc_member_session_uuid`` (mod_callcenter agent legs) or a CHANNEL_BRIDGE that
pulls a leg in from another call (attended transfer). The direction rules live in
``screenpop.daemon.calls.direction``; this module decides which extension is told what, and when:

* INCOMING / INTERNAL callee: ``ringing`` when its phone rings (CHANNEL_PROGRESS on a leg towards
  it), ``answered`` when that leg answers, ``answered_elsewhere`` when another extension answers
  after it started ringing, ``missed`` when the call ends and nobody answered after it rang.
* OUTGOING and INTERNAL caller: ``dialing`` once the call's other side is known, then for OUTGOING
  ``answered`` when the far end answers.
* ``transferred`` for an extension whose answered leg leaves by a transfer (its last event);
  ``ended`` for every extension still connected when its leg or the call ends, and for the caller
  of an OUTGOING or INTERNAL call nobody answered (its ``dialing`` is over).

RECORD_START / RECORD_STOP of a leg the tracker follows become a ``RecordingState`` of its call, handed to the
sink's ``save_recording`` (docs/recordings.md); nothing else about a call changes with them.

Times come from the channel's own timetable (``Caller-Channel-Answered-Time`` and the like, which every
channel event carries), else from the event's ``Event-Date-Timestamp``: so a replay at any speed records the
same durations, and a leg that rang or answered while the daemon was away (its events lost) is caught up, at
the right time, by the first of its events that arrives. Nothing here touches the database: changes go to a
``Sink``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from screenpop.daemon.calls.direction import (
    EXTERNAL,
    INCOMING,
    INTERNAL,
    OTHER,
    OUTGOING,
    PHONE,
    DirectionRules,
    LegInfo,
    call_direction,
    parent_uuid,
)
from screenpop.daemon.pbx.protocol import Event

log = logging.getLogger("screenpop.calls")

# The events the tracker reads; the ESL subscription asks for exactly these.
SUBSCRIBED_EVENTS = [
    "CHANNEL_CREATE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_DESTROY",
    "CHANNEL_HOLD",
    "CHANNEL_UNHOLD",
    "CUSTOM",
    "callcenter::info",
    "sofia::transferor",
    "sofia::transferee",
    "sofia::replaced",
    "RECORD_START",
    "RECORD_STOP",
]
RECORD_EVENTS = ("RECORD_START", "RECORD_STOP")
MAX_RECORDING_SECONDS = 7 * 86400  # a record_ms beyond a week is not believed

TRANSFER_DISPOSITIONS = ("BLIND_TRANSFER", "ATTENDED_TRANSFER")
FORGET_AFTER = 50_000  # how many finished leg UUIDs are remembered so their late events are ignored

# Party states. RANG: stopped ringing, outcome not known yet (answered elsewhere, or missed).
# LEAVING: left by a transfer; "transferred" once someone takes over, "ended" if the call ends instead.
IDLE, RINGING, RANG, ANSWERED, LEAVING, DONE = "idle", "ringing", "rang", "answered", "leaving", "done"


# The channel's timetable (switch_channel.c: µs since the epoch, 0 until reached), carried by each channel event
# under the prefix "Caller-" for the event's own leg and "Other-Leg-" for the leg bridged to it.
CREATED_TIME = "Channel-Created-Time"
PROGRESS_TIME = "Channel-Progress-Time"
PROGRESS_MEDIA_TIME = "Channel-Progress-Media-Time"
ANSWERED_TIME = "Channel-Answered-Time"
BRIDGED_TIME = "Channel-Bridged-Time"
HANGUP_TIME = "Channel-Hangup-Time"
# µs the leg has held so far (switch_channel.c adds each hold when it ends; 0 for holds by uuid_hold, which it
# does not time): the leg's hold total whenever it says more than the events did
HOLD_ACCUM = "Channel-Hold-Accum"
OWN, OTHER = "Caller-", "Other-Leg-"
# Which moment of the timetable an event reports (CHANNEL_HANGUP fires before FreeSWITCH sets the hangup time).
OWN_TIME = {
    "CHANNEL_CREATE": CREATED_TIME,
    "CHANNEL_PROGRESS": PROGRESS_TIME,
    "CHANNEL_PROGRESS_MEDIA": PROGRESS_MEDIA_TIME,
    "CHANNEL_ANSWER": ANSWERED_TIME,
    "CHANNEL_BRIDGE": BRIDGED_TIME,
    "CHANNEL_HANGUP": HANGUP_TIME,
    "CHANNEL_HANGUP_COMPLETE": HANGUP_TIME,
    "CHANNEL_DESTROY": HANGUP_TIME,
}
_EPOCH = dt.datetime(1970, 1, 1)


def timetable(h: Mapping[str, str], name: str, leg: str = OWN) -> dt.datetime | None:
    """One moment of a leg's timetable (µs since the epoch) as naive UTC; None if absent or not reached (0)."""
    try:
        us = int(h.get(leg + name) or 0)
        return _EPOCH + dt.timedelta(microseconds=us) if us > 0 else None
    except (ValueError, OverflowError):
        return None


def event_time(h: Mapping[str, str]) -> dt.datetime:
    """The event's own time (Event-Date-Timestamp, µs since the epoch) as naive UTC."""
    try:
        us = int(h.get("Event-Date-Timestamp", ""))
    except ValueError:
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)


@dataclass(eq=False)
class Party:
    """One extension's part in a call."""

    extension: str
    role: str
    seq: int
    state: str = IDLE
    rang_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    outcome: str | None = None
    talked: bool = False
    talk_seconds: float | None = None
    hold_seconds: float = 0.0  # on hold in this call: its phone's holds, and the caller held while it talked
    dirty: bool = True
    stored: bool = False  # the writer has its row: an update, not an insert (PostgreSQL's insert runs a trigger)


@dataclass(eq=False, slots=True)
class Leg:
    """One FreeSWITCH channel that belongs to a call."""

    uuid: str
    call: "CallState"
    info: LegInfo
    hung_up: bool
    answered: bool
    transfer: bool
    rang: bool
    guessed: dt.datetime | None  # the resync moment its ringing or answer was recorded at, until its timetable tells
    held_since: dt.datetime | None = None  # on hold since (CHANNEL_HOLD), until CHANNEL_UNHOLD or its hangup
    held_for: tuple[str, ...] = ()  # the extensions whose hold it is (the phone's own, or those talking then)
    hold_seconds: float = 0.0  # this leg's holds so far, ended ones


def hold_union(intervals: list[tuple[dt.datetime, dt.datetime]]) -> float:
    """Seconds inside any of these (start, end) intervals: the time a call was on hold by anyone, overlaps once."""
    total, reached = 0.0, None
    for start, end in sorted(intervals):
        if reached is None or start > reached:
            total, reached = total + (end - start).total_seconds(), end
        elif end > reached:
            total, reached = total + (end - reached).total_seconds(), end
    return total


@dataclass(eq=False)
class CallState:
    """What is known about one business call; the writer persists it as Call and CallParty rows."""

    uuid: str
    a_leg: Leg | None
    started_at: dt.datetime
    direction: str | None = None
    external_number: str | None = None
    external_name: str | None = None
    did: str | None = None
    dialed: str = ""
    caller_name: str = ""
    from_extension: str | None = None
    customer_id: int | None = None
    matches: int = 0
    parties: dict[str, Party] = field(default_factory=dict)
    rung: list[str] = field(default_factory=list)
    talked: list[str] = field(default_factory=list)
    answered_by: str | None = None
    external_answered: bool | None = None
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    hangup_cause: str | None = None
    a_leg_billsec: int | None = None
    queue: str | None = None  # the mod_callcenter queue the caller waited in (cc_queue), if any
    hold_seconds: float = 0.0  # on hold by anyone: hold_union of holds, plus hold_untimed (add_hold)
    holds: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list, repr=False)  # each leg's timed holds
    hold_untimed: float = 0.0  # held, times unknown: Hold-Accum beyond the events, or stored before a restart
    legs: list[Leg] = field(default_factory=list)
    finished: bool = False
    adopted: bool = False
    recovered: bool = False  # built from FreeSWITCH's CDRs alone (daemon/record/cdr.py): nobody was told of it
    db_id: int | None = None
    stored: tuple | None = field(default=None, repr=False)  # the call row as the writer last stored it

    def add_hold(self, since: dt.datetime | None, seconds: float, at: dt.datetime) -> None:
        """A leg's hold of `seconds` that ends at `at` (since: its CHANNEL_HOLD, None when not seen). The call is on
        hold while anyone holds it: a hold overlapping another leg's counts once; what has no known times adds."""
        timed = min(seconds, max(0.0, (at - since).total_seconds())) if since is not None else 0.0
        if timed > 0:
            self.holds.append((since, since + dt.timedelta(seconds=timed)))
        self.hold_untimed += seconds - timed
        self.hold_seconds = round(hold_union(self.holds) + self.hold_untimed, 6)

    def taken_by(self, extension: str, at: dt.datetime) -> str | None:
        """Who took the call extension was ringing for: the latest other party to answer up to at (card.py asks the
        stored parties the same for pops read back from the database)."""
        answered = [p for p in self.parties.values()
                    if p.extension != extension and p.answered_at is not None and p.answered_at <= at]
        return max(answered, key=lambda p: p.answered_at).extension if answered else None

    @property
    def missed(self) -> bool:
        """Nobody the call was meant for picked up (INCOMING or INTERNAL); OUTGOING calls are never missed."""
        return self.direction in (INCOMING, INTERNAL) and self.answered_by is None and self.finished

    @property
    def extension(self) -> str | None:
        """The extension the call is filed under: who answered, else who called, else the first that rang."""
        return self.answered_by or self.from_extension or (self.rung[0] if self.rung else None)

    def ring_seconds(self) -> float | None:
        """From the call's start to the first answer (or to its end when nobody answered)."""
        end = self.answered_at or self.ended_at
        return None if end is None else max(0.0, (end - self.started_at).total_seconds())

    def talk_seconds(self) -> float | None:
        """From the first answer to the end of the call."""
        if self.answered_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.answered_at).total_seconds())

    def summary(self) -> dict:
        """The call in the shape of the captures' expected.json ``calls`` entries."""
        return {
            "direction": self.direction,
            "external_number": self.external_number,
            "external_name": self.external_name,
            "did": self.did,
            "from_extension": self.from_extension,
            "extensions_rung": list(self.rung),
            "answered_by": self.answered_by,
            "external_answered": self.external_answered,
            "answered_elsewhere": [p.extension for p in self.parties.values() if p.outcome == "answered_elsewhere"],
            "missed_by": [p.extension for p in self.parties.values() if p.outcome == "missed"],
            "talked": list(self.talked),
            "hangup_cause": self.hangup_cause,
            "a_leg_billsec": self.a_leg_billsec,
        }


@dataclass(eq=False)
class RecordingState:
    """A file FreeSWITCH records of a call (switch_ivr_async.c's record_callback: RECORD_START when the media bug
    starts, RECORD_STOP with record_ms and Record-Completion-Cause when it closes, both with the channel's data).

    party: who the recorded leg is (customer: an external leg; operator: an extension's phone), which is the left
    channel of a stereo file unless RECORD_STEREO_SWAP; extension: the operator on the recording. A stop's
    started_at is only a fallback: the start's, once stored, stays.
    """

    call_uuid: str
    leg_uuid: str
    path: str
    party: str
    extension: str | None
    started_at: dt.datetime
    stopped_at: dt.datetime | None = None
    seconds: float | None = None
    completion_cause: str | None = None
    discarded: bool = False


class Sink(Protocol):
    """Where the tracker's conclusions go (the database writer, or a list in tests)."""

    def save_call(self, call: CallState) -> None: ...

    def save_recording(self, recording: RecordingState) -> None: ...

    def queue_pop(self, call: CallState, extension: str, event: str, at: dt.datetime, peer_number: str, peer_name: str) -> None: ...


class CallTracker:
    """Turns the ordered event stream into calls, parties and pops."""

    def __init__(
        self,
        rules: DirectionRules,
        sink: Sink,
        lookup: Callable[[str], tuple[int | None, int]] = lambda number: (None, 0),
    ) -> None:
        self.rules = rules
        self.sink = sink
        self.lookup = lookup
        self.legs: dict[str, Leg] = {}
        self.calls: dict[str, CallState] = {}
        self._restored: set[str] = set()
        self._missing: set[str] = set()
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self._handlers: dict[str, Callable[[Leg, Mapping[str, str], dt.datetime], None]] = {
            "CHANNEL_PROGRESS": self._on_progress,
            "CHANNEL_PROGRESS_MEDIA": self._on_progress,
            "CHANNEL_ANSWER": self._on_answer,
            "CHANNEL_BRIDGE": self._on_bridge,
            "CHANNEL_HANGUP": self._on_hangup,
            "CHANNEL_HANGUP_COMPLETE": self._on_hangup_complete,
            "CHANNEL_DESTROY": self._on_destroy,
            "CHANNEL_HOLD": self._on_hold,
            "CHANNEL_UNHOLD": self._on_unhold,
            "callcenter::info": self._on_queue,
            "sofia::transferor": self._on_transfer_hint,
            "sofia::replaced": self._on_transfer_hint,
        }

    # ---- intake -------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Apply one event; anything that is not about a channel of interest is ignored."""
        h = event.headers
        uuid = h.get("Unique-ID")
        name = event.name
        if name in RECORD_EVENTS:
            leg = self.legs.get(uuid or "")
            if leg is None:
                log.debug("%s of leg %s, not a leg of a call followed; ignored", name, uuid)
            else:
                self._on_record(leg, name, h)
            return
        if not uuid or uuid in self._forgotten or (name not in self._handlers and name != "CHANNEL_CREATE"):
            return
        at = timetable(h, OWN_TIME.get(name, "")) or event_time(h)
        leg = self.legs.get(uuid)
        if leg is not None and leg.call.adopted and leg is leg.call.a_leg:
            leg = self._readopt(leg, h)
        if leg is None:
            if name in ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY") and not parent_uuid(h):
                return
            leg = self._register(uuid, h, timetable(h, CREATED_TIME) or at)
            if leg is None:
                return
        call = leg.call
        if _pending(leg):
            self._catch_up(leg, name, h, OWN)
        unanswered = call.answered_by is None and not call.external_answered
        if leg is call.a_leg and (unanswered or any(map(_pending, call.legs))):
            other = self._other_leg(leg, h)
            if other is not None and _pending(other):
                self._catch_up(other, "", h, OTHER)  # the a-leg's hangup can come before the b-leg's own events
        handler = self._handlers.get(name)
        if handler is not None:
            handler(leg, h, at)

    def _other_leg(self, a_leg: Leg, h: Mapping[str, str]) -> Leg | None:
        """The leg of the a-leg's call this event's Other-Leg-* headers describe; one the a-leg was bridged to while
        the daemon was away (never seen) is registered from them, so its answer counts even if the call is over."""
        uuid = h.get("Other-Leg-Unique-ID") or ""
        other = self.legs.get(uuid)
        if other is not None:
            return other if other.call is a_leg.call else None
        if not uuid or uuid in self._forgotten or not timetable(h, ANSWERED_TIME, OTHER):
            return None
        log.info("call %s: leg %s, answered while FreeSWITCH was out of reach, known from the call's events",
                 a_leg.call.uuid, uuid)
        created = timetable(h, CREATED_TIME, OTHER) or event_time(h)
        return self._register(uuid, _other_leg_headers(h, a_leg.uuid), created)

    def _catch_up(self, leg: Leg, name: str, h: Mapping[str, str], prefix: str) -> None:
        """What the leg's timetable (under `prefix` in this event) says happened and its events did not (sent
        while the daemon was away): it rang, it answered, at those times; a time guessed at a resync becomes
        the real one."""
        guessed = leg.guessed is not None
        progress = None
        if guessed or not (leg.rang or leg.answered or name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA")):
            progress = timetable(h, PROGRESS_TIME, prefix) or timetable(h, PROGRESS_MEDIA_TIME, prefix)
        answered = None
        if guessed or not (leg.answered or name == "CHANNEL_ANSWER"):
            answered = timetable(h, ANSWERED_TIME, prefix)
        if guessed and (answered or progress):
            self._retime(leg, progress, answered)
        if progress and not leg.rang:
            self._on_progress(leg, h, progress)
        if answered and not leg.answered:
            self._on_answer(leg, h, answered)

    # ---- resynchronisation ----------------------------------------------------------------

    def restore(self, calls: Iterable[CallState]) -> None:
        """Calls the database still has open (after a daemon restart): followed again, settled at the next resync."""
        for call in calls:
            if call.uuid in self.legs:
                continue
            if call.direction == INCOMING:
                info = LegInfo(EXTERNAL, None, True)
            else:
                info = LegInfo(PHONE, call.from_extension, True)
            leg = Leg(call.uuid, call, info, False, call.answered_at is not None, False, True, None)
            call.a_leg = leg
            call.legs = [leg]
            self.legs[call.uuid] = leg
            self.calls[call.uuid] = call
            self._restored.add(call.uuid)

    def resync(self, rows: list[dict], now: dt.datetime) -> None:
        """Bring the tracker in line with FreeSWITCH's ``show channels as json`` after a (re)connect.

        Channels we never saw are adopted; a known leg that answered meanwhile is answered now. Known
        legs missing from the list have ended: events already received may still say how, so they are
        only closed by ``settle``, which the caller runs once those events are through. Pops already
        given are not given again.
        """
        up = {r["uuid"]: r for r in rows if isinstance(r, dict) and r.get("uuid")}
        for uuid in [u for u, r in up.items() if u in self._forgotten or r.get("callstate") == "HANGUP"]:
            del up[uuid]  # ended already: its hangup events were seen or are on their way
        self._missing = {uuid for uuid in self.legs if uuid not in up}
        children = []
        for uuid, row in up.items():
            parent = row.get("call_uuid") or ""
            if parent and parent != uuid and (parent in up or parent in self.legs):
                children.append(row)
            else:
                self._adopt(row, "", now)
        for row in sorted(children, key=lambda r: r.get("callstate") in ("ACTIVE", "HELD", "UNHELD")):
            self._adopt(row, row["call_uuid"], now)  # ringing legs first: an answer then tells them
        self._restored.clear()

    def settle(self, now: dt.datetime) -> None:
        """Close what the last resync found gone and no event has ended since: b-legs first, then a-legs."""
        missing = [self.legs[u] for u in self._missing if u in self.legs]
        self._missing = set()
        for leg in sorted(missing, key=lambda l: l is l.call.a_leg):
            if leg.uuid in self.legs:
                log.info("call leg %s ended while FreeSWITCH was out of reach", leg.uuid)
                self._on_hangup(leg, {}, now)
                self._drop(leg)

    def _adopt(self, row: dict, parent: str, now: dt.datetime) -> None:
        """Replay one channel row as the events that would have brought it to its current state.

        The row tells no times: what it shows happening is recorded at the resync (`now`), and the leg's
        next event puts the real times from its timetable in their place (``_retime``).
        """
        uuid = row["uuid"]
        h = _row_headers(row, parent)
        leg = self.legs.get(uuid)
        if leg is not None and parent and parent in self.legs and self._stray(leg):
            leg = self._rejoin(leg, h, now)  # adopted alone at an earlier resync; now the row names its call
            if leg is None:
                return
        elif leg is not None and uuid in self._restored:
            leg.info = self.rules.classify_leg(h)
            log.info("call %s still up after restart; resumed", uuid)
        elif leg is None:
            try:
                created = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(row.get("created_epoch") or 0))
            except (TypeError, ValueError, OverflowError):
                created = now
            leg = self._register(uuid, h, created if created.year > 1970 else now)
            if leg is None:
                return
            leg.call.adopted = True
            log.info("call leg %s adopted from FreeSWITCH", uuid)
            log.debug("call leg %s is channel %s", uuid, row.get("name", ""))  # the name can hold the caller's number
        state = row.get("callstate", "")
        before = (leg.rang, leg.answered)
        if state in ("RINGING", "EARLY", "ACTIVE", "HELD", "UNHELD"):
            self._on_progress(leg, h, now)
        if state in ("ACTIVE", "HELD", "UNHELD"):  # UNHELD: answered, held once and resumed
            self._on_answer(leg, h, now)
        if (leg.rang, leg.answered) != before:
            leg.guessed = now

    def _readopt(self, leg: Leg, h: Mapping[str, str]) -> Leg | None:
        """Events of a leg adopted from `show channels` correct what the row could not tell.

        A b-leg caught before FreeSWITCH tied it to its a-leg looks like an a-leg of its own; its events name
        the parent, so it moves there (what it did meanwhile is caught up from its timetable). The channel's
        creation time replaces the row's whole seconds.
        """
        call = leg.call
        parent = parent_uuid(h)
        if parent and parent in self.legs and self._stray(leg):
            return self._rejoin(leg, h, event_time(h))
        created = timetable(h, CREATED_TIME)
        if created is not None:
            call.started_at = created
        return leg

    @staticmethod
    def _stray(leg: Leg) -> bool:
        """A leg adopted as a call of its own whose direction nothing told: a b-leg whose parent was not known."""
        call = leg.call
        return call.adopted and leg is call.a_leg and call.direction is None and call.legs == [leg]

    def _rejoin(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> Leg | None:
        """Move a stray leg into the call of the parent its headers name: registered again, as a b-leg."""
        del self.legs[leg.uuid]
        self.calls.pop(leg.call.uuid, None)
        return self._register(leg.uuid, h, at)

    def _retime(self, leg: Leg, progress: dt.datetime | None, answered: dt.datetime | None) -> None:
        """Put the leg's real ring and answer times where a resync recorded its own moment instead."""
        guess, leg.guessed = leg.guessed, None
        call = leg.call
        ext = leg.info.extension
        far_end = call.direction == OUTGOING and leg.info.kind == EXTERNAL
        callee = leg.info.kind == PHONE and not leg.info.inbound and ext != call.from_extension
        if not (far_end or callee):
            return  # its ringing and answer are nobody's (a caller's own leg, a queue answering)
        answer = answered if leg.answered else None
        first = answer is not None and call.answered_at == guess and (far_end or call.answered_by == ext)
        for party in call.parties.values():
            mine = callee and party.extension == ext
            if mine and party.rang_at == guess and (progress or answer):
                party.rang_at, party.dirty = progress or answer, True
            if answer and party.answered_at == guess and (mine or party.role == "caller"):
                party.answered_at, party.dirty = answer, True
            if first and party.ended_at == guess and party.outcome in ("answered_elsewhere", "transferred"):
                party.ended_at, party.dirty = answer, True
        if first:
            call.answered_at = answer
        self.sink.save_call(call)

    # ---- legs and calls -------------------------------------------------------------------

    def _register(self, uuid: str, h: Mapping[str, str], at: dt.datetime) -> Leg | None:
        """A leg seen for the first time: join it to its parent's call, or open a call with it as a-leg."""
        info = self.rules.classify_leg(h)
        parent = parent_uuid(h)
        if parent:
            owner = self.legs.get(parent)
            if owner is None:
                if parent in self._forgotten:
                    self._forget(uuid)  # its call is over: so are all its events
                else:
                    log.debug("leg %s belongs to leg %s, not known (yet); event ignored", uuid, parent)
                return None
            leg = Leg(uuid, owner.call, info, False, False, False, False, None)
            self.legs[uuid] = leg
            owner.call.legs.append(leg)
            if owner.call.direction is None:
                self._decide(owner.call, leg, h, at)
            return leg
        call = CallState(uuid=uuid, a_leg=None, started_at=at)
        leg = Leg(uuid, call, info, False, False, False, False, None)
        call.a_leg = leg
        call.legs.append(leg)
        self.legs[uuid] = leg
        self.calls[uuid] = call
        call.dialed = h.get("Caller-Destination-Number", "")
        call.caller_name = h.get("Caller-Caller-ID-Name", "")
        if info.kind == EXTERNAL:
            if info.inbound:
                call.external_number = h.get("Caller-Caller-ID-Number", "")
                call.external_name = h.get("Caller-Orig-Caller-ID-Name") or h.get("Caller-Caller-ID-Name", "")
                call.did = h.get("variable_sip_req_user") or h.get("variable_sip_to_user") or call.dialed or None
            else:
                call.external_number = call.dialed
        log.debug("call %s opened by %s leg %s", uuid, info.kind, h.get("Channel-Name", ""))
        self._decide(call, None, h, at)
        return leg

    def _decide(self, call: CallState, joining: Leg | None, h: Mapping[str, str], at: dt.datetime) -> None:
        """Settle the call's direction as soon as the rules can, and tell the caller it is dialing."""
        a = call.a_leg.info
        j = joining.info if joining else LegInfo(OTHER, None, False)
        direction = call_direction(a, j)
        if direction is None:
            return
        call.direction = direction
        if direction == OUTGOING:
            call.from_extension = (a if a.kind == PHONE else j).extension
            if call.external_number is None:
                call.external_number = h.get("Caller-Destination-Number", "") or call.dialed
        elif direction == INTERNAL:
            call.from_extension = a.extension
        self._resolve_customer(call)
        if call.from_extension:
            self._party(call, call.from_extension, "caller").role = "caller"
            self._pop(call, call.from_extension, "dialing", at)
        self.sink.save_call(call)

    def _resolve_customer(self, call: CallState) -> None:
        if call.external_number:
            call.customer_id, call.matches = self.lookup(call.external_number)

    def _party(self, call: CallState, extension: str, role: str) -> Party:
        party = call.parties.get(extension)
        if party is None:
            party = Party(extension=extension, role=role, seq=len(call.parties))
            call.parties[extension] = party
        return party

    def _forget(self, uuid: str) -> None:
        self._forgotten[uuid] = None
        if len(self._forgotten) > FORGET_AFTER:
            self._forgotten.popitem(last=False)

    # ---- pops -----------------------------------------------------------------------------

    def _peer(self, call: CallState, extension: str) -> tuple[str, str]:
        """What the extension's card shows as the other side: the external party, or the other extension."""
        if call.direction != INTERNAL:
            return call.external_number or "", call.external_name or ""
        if extension == call.from_extension:
            return call.dialed, ""
        return call.from_extension or "", call.caller_name

    def _pop(self, call: CallState, extension: str, event: str, at: dt.datetime) -> None:
        number, name = self._peer(call, extension)
        self.sink.queue_pop(call, extension, event, at, number, name)

    # ---- handlers -------------------------------------------------------------------------

    def _on_progress(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        call = leg.call
        if call.finished or leg.info.kind != PHONE or leg.info.inbound or leg.answered or leg.rang:
            return
        leg.rang = True
        ext = leg.info.extension
        party = self._party(call, ext, "callee")
        if ext not in call.rung:
            call.rung.append(ext)
            party.rang_at = party.rang_at or at
            party.dirty = True
        if call.direction is None or ext == call.from_extension:
            return  # click-to-call: the operator's own phone rings before the far end is dialled
        if party.state == RANG:
            party.state = RINGING
        if party.state in (RINGING, ANSWERED):
            return
        party.state = RINGING
        party.rang_at = party.rang_at or at
        party.dirty = True
        self._handed_over(call, party, at)
        self._pop(call, ext, "ringing", at)
        self.sink.save_call(call)

    def _on_answer(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        call = leg.call
        if call.finished or leg.answered:
            return
        leg.answered = True
        if call.direction == OUTGOING and leg.info.kind == EXTERNAL:
            self._external_answered(call, at)
        elif (
            call.direction is not None
            and leg.info.kind == PHONE
            and not leg.info.inbound
            and leg.info.extension != call.from_extension
        ):
            self._connect(call, leg.info.extension, at)

    def _external_answered(self, call: CallState, at: dt.datetime) -> None:
        if call.external_answered:
            return
        call.external_answered = True
        call.answered_at = call.answered_at or at
        ext = call.from_extension
        if ext:
            party = self._party(call, ext, "caller")
            party.state = ANSWERED
            party.answered_at = at
            party.talked = True
            party.dirty = True
            if ext not in call.talked:
                call.talked.append(ext)
            self._pop(call, ext, "answered", at)
        self.sink.save_call(call)

    def _connect(self, call: CallState, ext: str, at: dt.datetime) -> None:
        """An extension is now talking in this call: answered, or brought in by a transfer."""
        party = self._party(call, ext, "callee")
        if party.state == ANSWERED:
            return
        self._handed_over(call, party, at)
        if party.state not in (RINGING, RANG):
            self._pop(call, ext, "ringing", at)
            party.rang_at = party.rang_at or at
        party.state = ANSWERED
        party.answered_at = at
        party.talked = True
        party.outcome = "answered"
        party.dirty = True
        self._pop(call, ext, "answered", at)
        if call.answered_by is None:
            call.answered_by = ext
            call.answered_at = at
        if call.direction == INTERNAL and call.from_extension and call.from_extension not in call.talked:
            call.talked.append(call.from_extension)
            caller = self._party(call, call.from_extension, "caller")
            caller.talked = True
            caller.state = ANSWERED
            caller.answered_at = caller.answered_at or at
            caller.dirty = True
        if ext not in call.talked:
            call.talked.append(ext)
        for other in call.parties.values():
            if other is not party and other.state in (RINGING, RANG):
                other.state = DONE
                other.outcome = "answered_elsewhere"
                other.ended_at = at
                other.dirty = True
                self._pop(call, other.extension, "answered_elsewhere", at)
        self.sink.save_call(call)

    def _handed_over(self, call: CallState, taker: Party, at: dt.datetime) -> None:
        """Someone new takes the call: extensions that left it, or are leaving it, by a transfer were transferred."""
        for party in call.parties.values():
            if party is taker:
                continue
            leaving = party.state == LEAVING or (
                party.state == ANSWERED
                and any(l.transfer and not l.hung_up and l.info.extension == party.extension for l in call.legs)
            )
            if leaving:
                party.state = DONE
                party.outcome = "transferred"
                party.ended_at = party.ended_at or at
                party.dirty = True
                self._pop(call, party.extension, "transferred", party.ended_at)

    def _on_bridge(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        """A bridge between legs of different calls moves the far leg into this call (attended transfer)."""
        a_uuid, b_uuid = h.get("Bridge-A-Unique-ID", ""), h.get("Bridge-B-Unique-ID", "")
        a, b = self.legs.get(a_uuid), self.legs.get(b_uuid)
        if a is None or b is None or a.call is b.call:
            if a is not None and b is not None and b.info.kind == PHONE and not b.info.inbound and not b.answered:
                self._on_answer(b, h, at)
            return
        if a.info.kind == PHONE and b.info.kind == PHONE:
            anchor, moved = (a, b) if a.call.started_at <= b.call.started_at else (b, a)
        else:
            anchor, moved = (b, a) if a.info.kind == PHONE else (a, b)
        if moved.info.kind != PHONE or anchor.call.finished:
            return
        old = moved.call
        party = old.parties.get(moved.info.extension)
        if party is not None and party.state == ANSWERED:
            party.state = DONE
            party.ended_at = at
            party.dirty = True
            self._pop(old, party.extension, "ended", at)
        old.legs.remove(moved)
        moved.call = anchor.call
        anchor.call.legs.append(moved)
        log.info("call %s: extension %s joins from call %s (transfer)", anchor.call.uuid, moved.info.extension, old.uuid)
        self._connect(anchor.call, moved.info.extension, at)
        self.sink.save_call(old)
        if not old.finished and all(l.hung_up for l in old.legs):
            self._end_call(old, at)

    def _on_record(self, leg: Leg, name: str, h: Mapping[str, str]) -> None:
        """RECORD_START / RECORD_STOP: the recording of this leg's call; the operator on it is the leg's own
        extension, or (a customer's leg) the extension that first talked in the call, once someone has."""
        path = h.get("Record-File-Path", "")
        if not path:
            log.warning("%s of leg %s without Record-File-Path; ignored", name, leg.uuid)
            return
        call = leg.call
        operator = leg.info.kind == PHONE
        if h.get("variable_RECORD_STEREO_SWAP", "").lower() in ("true", "yes", "on", "1"):
            operator = not operator
        if leg.info.kind == PHONE and leg.info.extension:
            extension = leg.info.extension
        else:
            extension = call.talked[0] if call.talked else call.extension
        at = event_time(h)
        rec = RecordingState(call.uuid, leg.uuid, path, "operator" if operator else "customer", extension, at)
        if name == "RECORD_STOP":
            rec.stopped_at = at
            try:
                rec.seconds = max(0, int(h.get("variable_record_ms", ""))) / 1000
            except ValueError:
                rec.seconds = None
            if rec.seconds is not None and rec.seconds > MAX_RECORDING_SECONDS:
                rec.seconds = None  # not a length a call has: a stream's nonsense
            # a stop without its start seen (the daemon was away): the start is the stop less the length recorded
            rec.started_at = at - dt.timedelta(seconds=rec.seconds or 0)
            rec.completion_cause = h.get("Record-Completion-Cause") or None
            rec.discarded = h.get("variable_RECORD_DISCARDED", "") == "true"
        self.sink.save_recording(rec)

    def _on_transfer_hint(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        leg.transfer = True

    def _on_hangup(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        if leg.held_since is not None:
            self._end_hold(leg, h, at)  # FreeSWITCH unholds a holding leg as it hangs up: in case that was missed
        if leg.hung_up:
            return
        leg.hung_up = True
        call = leg.call
        if call.finished:
            return
        transfer = leg.transfer or h.get("variable_endpoint_disposition", "") in TRANSFER_DISPOSITIONS
        if leg.info.kind == PHONE and (leg is not call.a_leg or transfer):
            self._leg_left(call, leg, transfer, at)
        if leg is call.a_leg:
            call.hangup_cause = h.get("Hangup-Cause") or call.hangup_cause
            if not transfer:
                self._end_call(call, at)
                return
        if all(l.hung_up for l in call.legs):
            self._end_call(call, at)
        else:
            self.sink.save_call(call)

    def _leg_left(self, call: CallState, leg: Leg, transfer: bool, at: dt.datetime) -> None:
        """A phone's leg hung up while the call may go on: transferred, ended, or rang out (decided later)."""
        party = call.parties.get(leg.info.extension)
        if party is None:
            return
        if party.state == RINGING and not leg.answered:
            party.state = RANG
            party.dirty = True
        elif party.state == ANSWERED:
            party.state = LEAVING if transfer else DONE
            party.ended_at = at
            party.dirty = True
            if not transfer:
                self._pop(call, party.extension, "ended", at)
            else:
                taker = next((p for p in call.parties.values() if p.state == ANSWERED and p.answered_at > party.answered_at), None)
                if taker is not None:
                    self._handed_over(call, taker, at)  # the one taking over is already connected

    def _end_call(self, call: CallState, at: dt.datetime) -> None:
        """The call is over: tell everyone still waiting or connected, then persist the outcome."""
        if call.finished:
            return
        call.finished = True
        call.ended_at = at
        if call.direction == OUTGOING and call.external_answered is None:
            call.external_answered = False
        for party in call.parties.values():
            if party.state in (RINGING, RANG):
                party.state = DONE
                party.outcome = "missed"
                party.ended_at = at
                party.dirty = True
                self._pop(call, party.extension, "missed", at)
            elif party.state in (ANSWERED, LEAVING) or (party.role == "caller" and party.state == IDLE):
                party.state = DONE
                party.ended_at = party.ended_at or at
                party.dirty = True
                self._pop(call, party.extension, "ended", at)
        for party in call.parties.values():
            if party.answered_at and party.ended_at:
                party.talk_seconds = max(0.0, (party.ended_at - party.answered_at).total_seconds())
        if not any(l.uuid in self.legs for l in call.legs):
            self.calls.pop(call.uuid, None)
        if call.direction is None:
            log.debug("call %s ended before its direction was known; not recorded", call.uuid)
        else:
            log.info("call %s %s ended: %s", call.uuid, call.direction, _outcome(call))
            self.sink.save_call(call)

    def _on_hangup_complete(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        self._on_hangup(leg, h, at)
        self._end_hold(leg, h, at)  # the leg's final hold total: holds whose events were missed count too
        call = leg.call
        if leg is call.a_leg:
            call.hangup_cause = h.get("Hangup-Cause") or call.hangup_cause
            try:
                call.a_leg_billsec = int(h.get("variable_billsec", ""))
            except ValueError:
                pass
            if call.direction is not None:
                self.sink.save_call(call)
        self._drop(leg)

    def _on_destroy(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        self._on_hangup(leg, h, at)
        self._drop(leg)

    def _on_hold(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        """CHANNEL_HOLD: the leg's phone put the call on hold (a re-INVITE with sendonly or inactive), or uuid_hold
        held the leg. The hold is its extension's if it is a phone's leg, else theirs who talk in the call now."""
        call = leg.call
        if call.finished or leg.held_since is not None or leg.hung_up:
            return
        leg.held_since = at
        leg.held_for = self._holders(call, leg)

    def _on_unhold(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        """CHANNEL_UNHOLD: the hold is over (FreeSWITCH also sends it as a holding leg hangs up)."""
        self._end_hold(leg, h, at)

    @staticmethod
    def _holders(call: CallState, leg: Leg) -> tuple[str, ...]:
        ext = leg.info.extension
        if leg.info.kind == PHONE and ext in call.parties:
            return (ext,)
        return tuple(p.extension for p in call.parties.values() if p.state == ANSWERED)

    def _end_hold(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        """Count the leg's hold that ends now for its call and its holders: from CHANNEL_HOLD to `at`, or what
        FreeSWITCH's own total for the leg (Hold-Accum, of holds the phone made) says beyond what was counted."""
        since, holders = leg.held_since, leg.held_for
        leg.held_since, leg.held_for = None, ()
        seconds = max(0.0, (at - since).total_seconds()) if since is not None else 0.0
        try:
            accum = int(h.get(OWN + HOLD_ACCUM) or 0) / 1_000_000
        except ValueError:
            accum = 0.0
        if accum > 0:
            seconds = round(accum - leg.hold_seconds, 6)
        if seconds < 0.001:  # nothing new (FreeSWITCH's clock and the events' differ by microseconds)
            return
        call = leg.call
        leg.hold_seconds += seconds
        call.add_hold(since, seconds, at)
        for ext in holders or self._holders(call, leg):
            party = call.parties.get(ext)
            if party is not None:
                party.hold_seconds += seconds
                party.dirty = True
        log.debug("call %s: leg %s on hold %.1f s", call.uuid, leg.uuid, seconds)
        if call.direction is not None:
            self.sink.save_call(call)

    def _on_queue(self, leg: Leg, h: Mapping[str, str], at: dt.datetime) -> None:
        """mod_callcenter's events name the queue the caller waits in (CC-Queue, as its cc_queue variable)."""
        queue = h.get("CC-Queue") or h.get("variable_cc_queue")
        call = leg.call
        if queue and call.queue is None:
            call.queue = queue
            self.sink.save_call(call)

    def _drop(self, leg: Leg) -> None:
        """Forget a finished leg; the call goes too once it is over and none of its legs is left."""
        if self.legs.pop(leg.uuid, None) is None:
            return
        self._forget(leg.uuid)
        call = leg.call
        if call.finished and not any(l.uuid in self.legs for l in call.legs):
            self.calls.pop(call.uuid, None)


def _pending(leg: Leg) -> bool:
    """Whether the leg's timetable can still tell something: it rings towards someone (a phone, or the far end of an
    outgoing call) and has not answered, or its times were guessed at a resync. A caller's own leg never can."""
    return leg.guessed is not None or not (leg.answered or leg.info.inbound or leg.info.kind == OTHER)


def _outcome(call: CallState) -> str:
    """How a call ended, for its log line: the hangup cause (or why there is none), then who answered."""
    cause = call.hangup_cause or "hangup not seen (it ended while FreeSWITCH was out of reach)"
    if call.direction == OUTGOING:
        who = "answered by the far end" if call.external_answered else "not answered by the far end"
        return f"{cause}, dialled by {call.from_extension or 'an unknown extension'}, {who}"
    return f"{cause}, answered by {call.answered_by or 'nobody'}"


def _row_headers(row: dict, parent: str) -> dict[str, str]:
    """Map a ``show channels as json`` row onto the event headers the rules read."""
    h = {
        "Unique-ID": row.get("uuid", ""),
        "Channel-Name": row.get("name", ""),
        "Call-Direction": row.get("direction", ""),
        "Caller-Caller-ID-Number": row.get("initial_cid_num") or row.get("cid_num", ""),
        "Caller-Caller-ID-Name": row.get("initial_cid_name") or row.get("cid_name", ""),
        "Caller-Destination-Number": row.get("dest", ""),
        "Caller-Callee-ID-Number": row.get("callee_num", ""),
        "Caller-Context": row.get("initial_context") or row.get("context", ""),
        "variable_presence_id": row.get("presence_id", ""),
        "variable_sip_req_user": row.get("initial_dest", ""),
    }
    if parent:
        h["variable_originator"] = parent
    return {k: str(v) for k, v in h.items() if v}


def _other_leg_headers(h: Mapping[str, str], parent: str) -> dict[str, str]:
    """The headers the rules read, for the leg an event describes under Other-Leg-*, as a b-leg of `parent`."""
    names = {"Unique-ID": "Unique-ID", "Channel-Name": "Channel-Name", "Call-Direction": "Direction",
             "Caller-Caller-ID-Number": "Caller-ID-Number", "Caller-Caller-ID-Name": "Caller-ID-Name",
             "Caller-Callee-ID-Number": "Callee-ID-Number", "Caller-Destination-Number": "Destination-Number",
             "Caller-Context": "Context"}
    out = {name: h.get(OTHER + other, "") for name, other in names.items()}
    out["variable_originator"] = parent
    return {k: v for k, v in out.items() if v}


def parse_channels(body: str) -> list[dict]:
    """Rows of an ``api show channels as json`` reply; raises ValueError on anything else."""
    data = json.loads(body)
    if not isinstance(data, dict) or "row_count" not in data:
        raise ValueError("not a show channels reply")
    rows = data.get("rows") or []
    if not isinstance(rows, list):
        raise ValueError("show channels rows is not a list")
    return [r for r in rows if isinstance(r, dict)]
