"""FreeSWITCH's JSON CDRs (mod_json_cdr, docs/cdr.md): they complete the calls the daemon saw only in part, or not at all.

FreeSWITCH replays no events after an outage of the event socket, but mod_json_cdr posts one CDR per call leg
when the leg is over and retries until it is taken. ``POST /api/v1/cdr`` takes them (HTTP Basic, as its
``cred`` sends it; the JSON raw, URL-encoded as ``cdr=...`` or base64 as ``cdr=...``), keeps each leg once by
its UUID, and once a call's a-leg CDR is in, rebuilds the call from its legs' CDRs by feeding their times to a
private CallTracker: the same rules as live events, no second copy. Then:

* a call the tracker still follows is left to it while FreeSWITCH's events can still reach it; the CDRs complete it
  when it ends (its own hangup wins). With no event socket connection (FreeSWITCH out of reach, maybe until this
  daemon stops) the a-leg's CDR is the only word of its hangup: the tracker gets that hangup from the CDR;
* a call the daemon has (in memory or stored) gets FreeSWITCH's hangup cause and a-leg billsec, its start,
  answer and end times where it has none or they are more than TIME_TOLERANCE off (times set at a reconnect),
  and who answered first (it saw nobody answer, or only who had the call when it came back), so an
  answered call is not reported missed;
* a call the daemon never saw is stored as it was, marked ``recovered``, with no pop.

Every change goes to the daemon's one writer. Caller-ID text inside a CDR is a stranger's: it is stored as
text and never logged.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock
import peewee

from screenpop.daemon.calls.direction import parent_uuid
from screenpop.daemon.calls.tracker import CallState, CallTracker, Party, RecordingState, Sink
from screenpop.daemon.config import CdrConfig
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.i18n import lazy_gettext
from screenpop.daemon.pbx.protocol import Event, decode_value
from screenpop.daemon.record.cdrlegs import call_legs, prune_legs, store_leg
from screenpop.daemon.record.writer import Writer, load_call
from screenpop.db.worker import DbWorker

if TYPE_CHECKING:
    from flask import Blueprint, Response

log = logging.getLogger("screenpop.cdr")
_CALLS_LOG = logging.getLogger("screenpop.calls")

JSON_TYPE = "application/json"                          # encode = false
FORM_TYPE = "application/x-www-form-urlencoded"         # encode = true: cdr=<switch_url_encode(json)>
BASE64_TYPE = "application/x-www-form-base64-encoded"   # encode = base64: cdr=<base64(json)>
TIME_TOLERANCE = dt.timedelta(seconds=1)  # the daemon's times within this of FreeSWITCH's are its own events' times
_PARTY_TIMES = ("rang_at", "answered_at", "ended_at")
PRUNE_SECONDS = 3600.0  # how often CDRs older than [cdr] keep_days are deleted
REMEMBER = 10_000  # finished calls kept at hand, so a CDR finds a call the writer has not stored yet
_UUID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._:-]{0,63}$")
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class LegCdr:
    """One leg as its CDR tells it: the headers the direction rules and the tracker read, and its times (µs, 0: never)."""

    uuid: str
    parent: str | None
    headers: dict[str, str]
    created: int
    progress: int
    answered: int
    ended: int


def decode_body(body: bytes, content_type: str) -> str:
    """The CDR's JSON text from a POST body in any of mod_json_cdr's three encodings."""
    if content_type == JSON_TYPE:
        raw = body
    elif content_type in (FORM_TYPE, BASE64_TYPE):
        if not body.startswith(b"cdr="):
            raise DataError(400, lazy_gettext("a form-encoded CDR must be cdr=<the CDR> (mod_json_cdr's encode = true "
                                              "or base64)"))
        value = body[4:].strip()
        if content_type == FORM_TYPE:
            return decode_value(value)  # switch_url_encode: %XX only ('+' is sent as %2B)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise DataError(400, lazy_gettext("cdr= is not base64 (mod_json_cdr's encode = base64)")) from None
    else:
        raise DataError(415, lazy_gettext("a CDR is sent as %(json)s, %(form)s or %(base64)s",
                                          json=JSON_TYPE, form=FORM_TYPE, base64=BASE64_TYPE))
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _text(value: Any) -> str:
    """A string field of the CDR ('' for anything else); NUL becomes U+FFFD (PostgreSQL text cannot hold it)."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else ""


def _us(raw: str, what: str) -> int:
    if not raw:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16:  # 16 digits: up to the year 2286
        raise DataError(400, lazy_gettext("%(what)s: must be microseconds since the epoch", what=what))
    return int(raw)


def parse_cdr(text: str, encoded_values: bool = True) -> LegCdr:
    """One leg's CDR as switch_ivr_generate_json_cdr() builds it; 400 for anything that is not one.

    encoded_values: the variables' values are URL-encoded (mod_json_cdr's encode-values, its default).
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise DataError(400, lazy_gettext("the CDR is not valid JSON")) from None
    if not isinstance(data, dict):
        raise DataError(400, lazy_gettext("a CDR is a JSON object"))
    variables, channel = data.get("variables"), data.get("channel_data")
    callflow = data.get("callflow")
    if isinstance(callflow, dict):  # FreeSWITCH before 1.6 wrote one profile as an object
        callflow = [callflow]
    if not isinstance(variables, dict) or not isinstance(channel, dict) or not isinstance(callflow, list) or not callflow:
        raise DataError(400, lazy_gettext("a CDR has the objects variables and channel_data and a callflow list"))
    profiles = [p.get("caller_profile") for p in callflow if isinstance(p, dict)]
    if not profiles or not all(isinstance(p, dict) for p in profiles):
        raise DataError(400, lazy_gettext("every callflow entry of a CDR has a caller_profile"))
    values = {str(k): (decode_value(v) if encoded_values else _text(v)) for k, v in variables.items() if isinstance(v, str)}
    uuid = values.get("uuid") or _text(profiles[0].get("uuid"))
    if not _UUID.match(uuid):
        raise DataError(400, lazy_gettext("variables.uuid: the leg's UUID is missing or malformed"))
    latest, first = profiles[0], profiles[-1]  # FreeSWITCH lists the newest caller profile first
    stamps = callflow[0].get("times") if isinstance(callflow[0], dict) else None
    stamps = stamps if isinstance(stamps, dict) else {}

    def when(name: str, variable: str) -> int:
        raw = stamps.get(name)
        return _us(raw if isinstance(raw, str) and raw != "0" else values.get(variable, ""), f"times.{name}")

    created, ended = when("created_time", "start_uepoch"), when("hangup_time", "end_uepoch")
    if not created or not ended:
        raise DataError(400, lazy_gettext("the CDR has no created and hangup time: not a leg that ended"))
    progress = min((t for t in (when("progress_time", "progress_uepoch"),
                                when("progress_media_time", "progress_media_uepoch")) if t), default=0)
    headers = {f"variable_{name}": value for name, value in values.items()}
    headers.update({
        "Unique-ID": uuid,
        "Channel-Name": _text(latest.get("chan_name")) or values.get("channel_name", ""),
        "Call-Direction": _text(channel.get("direction")) or values.get("direction", ""),
        "Caller-Caller-ID-Number": _text(first.get("caller_id_number")),
        "Caller-Caller-ID-Name": _text(first.get("caller_id_name")),
        "Caller-Orig-Caller-ID-Name": _text(first.get("caller_id_name")),
        "Caller-Destination-Number": _text(first.get("destination_number")),
        "Caller-Context": _text(first.get("context")),
        "Caller-Callee-ID-Number": values.get("callee_id_number", ""),
        "Hangup-Cause": values.get("hangup_cause", ""),
        "Caller-Channel-Hold-Accum": values.get("hold_accum_usec", ""),  # the leg's holds (its hang-up counts them)
    })
    return LegCdr(uuid, parent_uuid(headers), headers, created, progress, when("answered_time", "answer_uepoch"), ended)


class _Collect:
    """The private tracker's sink: the calls it concludes; no pops."""

    def __init__(self) -> None:
        self.calls: dict[str, CallState] = {}

    def save_call(self, call: CallState) -> None:
        self.calls[call.uuid] = call

    def queue_pop(self, call: CallState, extension: str, event: str, at: dt.datetime, peer_number: str, peer_name: str) -> None:
        pass

    def save_recording(self, recording: RecordingState) -> None:
        pass  # CDRs hold no recording events


def leg_event(leg: LegCdr, name: str, at: int) -> Event:
    """The event `name` of this leg as FreeSWITCH would have sent it at `at` (µs), from what its CDR tells."""
    return Event({**leg.headers, "Event-Name": name, "Event-Date-Timestamp": str(at)})


def rebuild(legs: list[LegCdr], root: str, tracker: CallTracker) -> CallState | None:
    """The call of a-leg root as the tracker's rules conclude it from its legs' CDRs (None: not a call it records).

    Each leg becomes its events (create, progress, answer, hangup) at its CDR's times, in time order; at one
    instant a leg's creation comes before its answer and its hangup, and a parent before the legs made for it.
    """
    depth = {root: 0}
    by_uuid = {leg.uuid: leg for leg in legs}

    def level(leg: LegCdr) -> int:
        if leg.uuid not in depth:
            depth[leg.uuid] = 1  # also ends a loop of parents
            parent = by_uuid.get(leg.parent or "")
            if parent is not None:
                depth[leg.uuid] = level(parent) + 1
        return depth[leg.uuid]

    timeline = []
    for leg in legs:
        d = level(leg)
        for rank, (name, at) in enumerate((("CHANNEL_CREATE", leg.created), ("CHANNEL_PROGRESS", leg.progress),
                                           ("CHANNEL_ANSWER", leg.answered), ("CHANNEL_HANGUP_COMPLETE", leg.ended))):
            if at:
                timeline.append((at, rank, d, name, leg))
    timeline.sort(key=lambda item: item[:3])
    sink = _Collect()
    private = CallTracker(tracker.rules, sink)  # no customer lookup: a query would yield to other greenlets ...
    quiet, _CALLS_LOG.disabled = _CALLS_LOG.disabled, True  # ... while its "call ... ended" lines are muted
    try:
        for at, _, _, name, leg in timeline:
            private.handle(leg_event(leg, name, at))
    finally:
        _CALLS_LOG.disabled = quiet
    call = sink.calls.get(root)
    return call if call is not None and call.finished and call.direction else None


def _off(mine: dt.datetime | None, theirs: dt.datetime | None) -> bool:
    """FreeSWITCH knows a time the daemon lacks, or has it more than TIME_TOLERANCE apart (a reconnect's time)."""
    return theirs is not None and (mine is None or abs(mine - theirs) > TIME_TOLERANCE)


def complete(call: CallState, cdr: CallState) -> list[str]:
    """Fill in or correct the daemon's call from the same call rebuilt from CDRs; the names of what changed."""
    changed = []
    if cdr.answered_by is not None and call.answered_by != cdr.answered_by:
        call.answered_by = cdr.answered_by  # the daemon saw nobody answer, or only who took the call over later
        changed.append("answered_by")
    for name in ("hangup_cause", "a_leg_billsec"):
        if getattr(cdr, name) is not None and getattr(call, name) != getattr(cdr, name):
            setattr(call, name, getattr(cdr, name))
            changed.append(name)
    for name in ("started_at", "answered_at", "ended_at"):
        if _off(getattr(call, name), getattr(cdr, name)):
            setattr(call, name, getattr(cdr, name))
            changed.append(name)
    if not call.finished:
        call.finished = True
        changed.append("finished")
    if cdr.external_answered and not call.external_answered:
        call.external_answered = True
        changed.append("external_answered")
    for theirs in cdr.parties.values():
        mine = call.parties.get(theirs.extension)
        if mine is None:
            mine = call.parties[theirs.extension] = Party(theirs.extension, theirs.role, len(call.parties))
            _take(mine, theirs)
            changed.append(f"party {theirs.extension}")
        elif (mine.outcome in (None, "missed") and mine.outcome != theirs.outcome) or (theirs.talked and not mine.talked):
            _take(mine, theirs)  # the daemon missed the answer (it saw nothing, or a reconnect's "missed")
            changed.append(f"party {theirs.extension}")
        elif any(_off(getattr(mine, n), getattr(theirs, n)) for n in _PARTY_TIMES):
            for name in _PARTY_TIMES:
                if _off(getattr(mine, name), getattr(theirs, name)):
                    setattr(mine, name, getattr(theirs, name))
            mine.talk_seconds, mine.dirty = theirs.talk_seconds, True
            changed.append(f"party {theirs.extension} times")
    for name in ("rung", "talked"):
        extra = [ext for ext in getattr(cdr, name) if ext not in getattr(call, name)]
        getattr(call, name).extend(extra)
    return changed


def _take(mine: Party, theirs: Party) -> None:
    """The party as FreeSWITCH's legs tell it: it rang, answered or not, left (its rang_at kept if close)."""
    if _off(mine.rang_at, theirs.rang_at):
        mine.rang_at = theirs.rang_at
    mine.answered_at, mine.ended_at, mine.outcome = theirs.answered_at, theirs.ended_at, theirs.outcome
    mine.talked, mine.talk_seconds, mine.state = theirs.talked, theirs.talk_seconds, theirs.state
    mine.dirty = True


class CdrIntake:
    """Takes CDRs, keeps them, and completes calls from them; sits between the tracker and the writer (a Sink).

    The intake and the tracker need each other: the tracker hands its calls to the intake, and the intake asks the
    tracker which calls it still follows and rebuilds calls with its rules. So the intake builds the tracker, with
    itself as the sink, from `make_tracker` (the tracker's constructor with its rules and lookup), and it is `tracker`.
    Its database steps run on the database worker (db/worker.py: its connection, short transactions);
    recording: whether this daemon records its node now, its open calls resumed (otherwise 503, so mod_json_cdr tries
    again or moves on to its next url); hearing: whether FreeSWITCH's events can still reach the tracker (an event
    socket connection is up, or its events are still being dispatched).
    """

    def __init__(self, config: CdrConfig, writer: Writer, worker: DbWorker, make_tracker: Callable[[Sink], CallTracker],
                 recording: Callable[[], bool] = lambda: True, hearing: Callable[[], bool] = lambda: True) -> None:
        self.config = config
        self.writer = writer
        self.worker = worker
        self.recording = recording
        self.hearing = hearing
        self.max_body = config.max_body_kb * 1024  # the HTTP server's body ceiling for POST /api/v1/cdr
        self._secret = config.secret()
        self._lock = gevent.lock.Semaphore()
        self._waiting: set[str] = set()  # calls the tracker still follows whose a-leg CDR is in
        self._recent: OrderedDict[str, CallState] = OrderedDict()
        self.tracker = make_tracker(self)  # last: the sink it is given is whole

    # ---- Sink: the tracker's output on its way to the writer ------------------------------

    def save_call(self, call: CallState) -> None:
        """Pass the call on. One that just ended is completed from its CDRs if they are in already: its CDR came
        while it was followed, or the daemon did not see its a-leg hang up (it was closed at a reconnect, maybe
        by the next run of the daemon)."""
        self.writer.save_call(call)
        if call.finished and call.uuid not in self._recent:
            self._remember(call)
            if call.uuid in self._waiting or call.hangup_cause is None:
                self._waiting.discard(call.uuid)
                gevent.spawn(self._complete_logged, call.uuid)

    def queue_pop(self, call: CallState, extension: str, event: str, at: dt.datetime, peer_number: str, peer_name: str) -> None:
        self.writer.queue_pop(call, extension, event, at, peer_number, peer_name)

    def save_recording(self, recording: RecordingState) -> None:
        """A recording's start or stop, straight to the writer (the CDRs tell nothing about recordings)."""
        self.writer.save_recording(recording)

    def _remember(self, call: CallState) -> None:
        self._recent[call.uuid] = call
        self._recent.move_to_end(call.uuid)
        if len(self._recent) > REMEMBER:
            self._recent.popitem(last=False)

    def resume(self, calls: list[CallState]) -> None:
        """Follow again the calls the database has open (after a restart); each whose a-leg CDR is stored already
        (taken by the run before while it still followed the call) is completed from it as a new CDR would be."""
        self.tracker.restore(calls)
        if calls:
            gevent.spawn(self._complete_stored, [call.uuid for call in calls])

    def _complete_stored(self, uuids: list[str]) -> None:
        """Each resumed call whose a-leg CDR is stored, completed (ended first if no event can end it)."""
        for uuid in uuids:
            self._complete_logged(uuid)  # nothing stored for it: one query, and nothing done

    # ---- intake ---------------------------------------------------------------------------

    def check(self, authorization: str) -> DataError | None:
        """HTTP Basic as mod_json_cdr's cred sends it; the refusal to answer, or None."""
        if not self._secret:
            return DataError(403, lazy_gettext("CDR intake is off: set [cdr] password (docs/cdr.md)"))
        scheme, _, encoded = authorization.partition(" ")
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            user, sep, password = "", "", ""
        user_ok = hmac.compare_digest(user.encode(), self.config.user.encode())
        password_ok = hmac.compare_digest(password.encode(), self._secret.encode())
        ok = scheme.lower() == "basic" and sep == ":" and user_ok and password_ok
        return None if ok else DataError(401, lazy_gettext("wrong or missing credentials (mod_json_cdr's cred = "
                                                           "user:password)"))

    def take(self, body: bytes, content_type: str, query_uuid: str | None) -> tuple[str, bool]:
        """Keep one posted CDR and complete its call; (leg uuid, whether it was new). DataError for bad input."""
        if not self.recording():
            raise DataError(503, lazy_gettext("this daemon does not record this node now (a standby, or still "
                                              "resuming its calls); post again, or to the one recording it"))
        text = decode_body(body, content_type)
        leg = parse_cdr(text, self.config.encode_values)
        if query_uuid is not None and query_uuid != leg.uuid:
            raise DataError(400, lazy_gettext("the ?uuid= of the URL is not the CDR's leg UUID"))
        new = self.worker.atomic(store_leg, leg.uuid, leg.parent, text)
        self.complete_call(leg.uuid)
        return leg.uuid, new

    def prune_forever(self, stopped: gevent.event.Event) -> None:
        """Delete the CDRs older than [cdr] keep_days, hourly until stopped (a few KB a leg add up)."""
        while not stopped.wait(PRUNE_SECONDS):
            try:
                gone = self.worker.atomic(prune_legs, self.config.keep_days)
            except peewee.DatabaseError as exc:
                log.debug("old CDRs not pruned this time: %s", exc)  # the next hour tries again
                continue
            if gone:
                log.info("%d CDR leg(s) older than %d days deleted", gone, self.config.keep_days)

    def _complete_logged(self, uuid: str) -> None:
        try:
            self.complete_call(uuid)
        except Exception:  # a greenlet of its own: its failure must be logged, the CDR is kept and a repeat retries
            log.exception("call of leg %s: completing it from its CDRs failed", uuid)

    def complete_call(self, uuid: str) -> None:
        """Rebuild the call of this leg from its legs' CDRs (once its a-leg's is in) and merge it into the daemon's."""
        root, bodies = self.worker.atomic(call_legs, uuid)
        if root is None:
            return
        legs = []
        for body in bodies:
            try:
                legs.append(parse_cdr(body, self.config.encode_values))
            except DataError:
                continue  # stored by an earlier version of these rules; the others still tell the call
        with self._lock:
            live = self.tracker.calls.get(root)
            if live is not None and not live.finished and not self.hearing():
                self._hang_up_unheard(root, legs)
            if live is not None and not live.finished:  # its events will end it, or a transfer keeps it going
                self._waiting.add(root)
                log.info("call %s: FreeSWITCH's CDR is in while the call is still followed; it completes the call "
                         "when it ends", root)
                return
            cdr = rebuild(legs, root, self.tracker)
            if cdr is None:
                log.debug("call %s: its CDRs make no call the rules record", root)
                return
            call = live or self._recent.get(root) or self.worker.atomic(load_call, root)
            if call is None:
                cdr.recovered = True
                if cdr.external_number:
                    cdr.customer_id, cdr.matches = self.worker.run(self.tracker.lookup, cdr.external_number)
                self.writer.save_call(cdr)
                self._remember(cdr)
                log.info("call %s %s recovered from FreeSWITCH's CDRs (the daemon saw none of it): %s, answered by %s",
                         root, cdr.direction, cdr.hangup_cause or "?", cdr.answered_by or "nobody")
                return
            changed = complete(call, cdr)
            self._remember(call)
            if changed:
                self.writer.save_call(call)
                log.info("call %s completed from FreeSWITCH's CDRs: %s", root, ", ".join(changed))

    def _hang_up_unheard(self, root: str, legs: list[LegCdr]) -> None:
        """The a-leg's CDR is FreeSWITCH's word that the leg hung up. With no event stream, nothing else may tell the
        tracker before this daemon stops (a restored call, FreeSWITCH out of reach): it gets that hangup from the CDR,
        at the CDR's time, and ends the call by its own rules (pops included); the caller then completes the rest."""
        a_leg = next((leg for leg in legs if leg.uuid == root), None)
        if a_leg is None:
            return  # its CDR no longer parses (stored by an earlier version of these rules)
        log.info("call %s: its a-leg's CDR is in and no event from FreeSWITCH can end it now; it ends as the CDR says",
                 root)
        self.tracker.handle(leg_event(a_leg, "CHANNEL_HANGUP_COMPLETE", a_leg.ended))


def blueprint(intake: CdrIntake) -> Blueprint:
    """POST /api/v1/cdr: mod_json_cdr's url; 200 once the CDR is kept (a repeat too), else a JSON error."""
    from flask import Blueprint, jsonify, request  # with the HTTP side, not on the daemon's path to following calls

    bp = Blueprint("cdr", __name__, url_prefix="/api/v1")

    @bp.errorhandler(DataError)
    def refused(exc: DataError) -> Response:
        if exc.status == 401:
            log.warning("401 for POST /api/v1/cdr from %s: %s", request.remote_addr, exc.message)
        elif exc.status != 503:
            log.warning("CDR from %s refused (%d): %s", request.remote_addr, exc.status, exc.message)
        response = jsonify(error=exc.message)
        response.status_code = exc.status
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="screenpop cdr"'
        if exc.status == 503:
            response.headers["Retry-After"] = "5"
        return response

    @bp.post("/cdr")
    def cdr() -> Response:
        refusal = intake.check(request.headers.get("Authorization", ""))
        if refusal is not None:
            raise refusal
        body = request.stream.read()  # the server's ceiling for this route is CdrIntake.max_body (413 above it)
        uuid, new = intake.take(body, request.mimetype, request.args.get("uuid"))
        return jsonify(status="stored" if new else "duplicate", uuid=uuid)

    return bp

