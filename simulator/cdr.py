"""The simulator's mod_json_cdr: a JSON CDR per call leg, posted to a URL when the leg is over, retried like FreeSWITCH.

The CDR has the shape switch_ivr_generate_json_cdr() gives it (src/switch_ivr.c): ``core-uuid``,
``switchname``, ``channel_data``, ``callStats``, ``variables`` (values URL-encoded, mod_json_cdr's default
``encode-values``), ``app_log`` and ``callflow`` (the newest caller profile first, each with its ``times`` in
microseconds as strings). Its values are the ones the simulator's own events carried: the variables and caller
profile of the leg's CHANNEL_HANGUP_COMPLETE, the profile of its CHANNEL_CREATE as the first one when the leg
was transferred since, and its CHANNEL_EXECUTE events as the app log. Not reproduced: channel flags and caps,
media statistics (``callStats`` stays empty), and the caller profiles between the first and the last.

Posting follows mod_json_cdr.c: ``<url>?uuid=<leg uuid>``, HTTP Basic with ``cred``, the body raw
(``application/json``), URL-encoded or base64 as ``cdr=...``; an answer other than 2xx is retried ``retries``
times, ``delay`` seconds apart, then the CDR is given up (FreeSWITCH would write it to its error log-dir).
"""
from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request

import gevent
import gevent.queue

from screenpop.daemon.pbx.protocol import encode_value
from screenpop.simulator.events import SimEvent

log = logging.getLogger("screenpop.simulator")

PROFILE_FIELDS = (  # switch_ivr_set_json_profile_data: JSON name, event header after Caller- / Other-Leg-
    ("username", "Username"), ("dialplan", "Dialplan"), ("caller_id_name", "Caller-ID-Name"), ("ani", "ANI"),
    ("aniii", "ANI-II"), ("caller_id_number", "Caller-ID-Number"), ("network_addr", "Network-Addr"),
    ("rdnis", "RDNIS"), ("destination_number", "Destination-Number"), ("uuid", "Unique-ID"),
    ("source", "Source"), ("context", "Context"), ("chan_name", "Channel-Name"),
)
TIMES = (  # the callflow's times, in the order switch_ivr_generate_json_cdr writes them
    ("created_time", "Channel-Created-Time"), ("profile_created_time", "Profile-Created-Time"),
    ("progress_time", "Channel-Progress-Time"), ("progress_media_time", "Channel-Progress-Media-Time"),
    ("answered_time", "Channel-Answered-Time"), ("bridged_time", "Channel-Bridged-Time"),
    ("last_hold_time", "Channel-Last-Hold"), ("hold_accum_time", "Channel-Hold-Accum"),
    ("hangup_time", "Channel-Hangup-Time"), ("resurrect_time", "Channel-Resurrect-Time"),
    ("transfer_time", "Channel-Transfer-Time"),
)
ENCODINGS = ("false", "true", "base64")


def _profile(get, prefix: str) -> dict[str, str]:
    return {name: get(f"{prefix}{header}") for name, header in PROFILE_FIELDS}


def _callflow_entry(get) -> dict:
    """One callflow entry from a channel event's Caller-* (and Other-Leg-*) headers."""
    entry: dict = {}
    if get("Caller-Dialplan"):
        entry["dialplan"] = get("Caller-Dialplan")
    if get("Caller-Profile-Index"):
        entry["profile_index"] = get("Caller-Profile-Index")
    profile = _profile(get, "Caller-")
    kind = get("Other-Type")
    if kind in ("originator", "originatee") and get("Other-Leg-Unique-ID"):
        profile[kind] = {f"{kind}_caller_profiles": [_profile(get, "Other-Leg-")]}
    entry["caller_profile"] = profile
    entry["times"] = {name: get(f"Caller-{header}") or "0" for name, header in TIMES}
    return entry


def build_cdr(end: SimEvent, first: SimEvent | None, apps: list[tuple[str, str, int]],
              encode_values: bool = True) -> str:
    """A leg's JSON CDR (cJSON_PrintUnformatted) from its CHANNEL_HANGUP_COMPLETE, its CHANNEL_CREATE and its apps."""
    items = end.items()
    get = end.get
    variables = {}
    for name, value in items:
        if name.startswith("variable_") and value:
            variables[name[9:]] = encode_value(value) if encode_values else value
    cdr: dict = {
        "core-uuid": get("Core-UUID"),
        "switchname": get("FreeSWITCH-Switchname"),
        "channel_data": {"state": get("Channel-State"), "direction": get("Call-Direction"),
                         "state_number": get("Channel-State-Number")},
        "callStats": {},
        "variables": variables,
    }
    if apps:
        cdr["app_log"] = {"applications": [{"app_name": a, "app_data": d, "app_stamp": str(t)} for a, d, t in apps]}
    callflow = [_callflow_entry(get)]
    if first is not None and first.get("Caller-Profile-Index") != get("Caller-Profile-Index"):
        callflow.append(_callflow_entry(first.get))
    cdr["callflow"] = callflow
    return json.dumps(cdr, ensure_ascii=False, separators=(",", ":"))


class CdrBuilder:
    """Follows a leg from its CHANNEL_CREATE to its CHANNEL_HANGUP_COMPLETE and makes its CDR then."""

    def __init__(self, encode_values: bool = True) -> None:
        self.encode_values = encode_values
        self._created: dict[str, SimEvent] = {}
        self._apps: dict[str, list[tuple[str, str, int]]] = {}

    def observe(self, ev: SimEvent) -> tuple[str, str] | None:
        """Take one event; (leg uuid, its CDR) when it ends a leg."""
        name = ev.name
        if name not in ("CHANNEL_CREATE", "CHANNEL_EXECUTE", "CHANNEL_HANGUP_COMPLETE"):
            return None
        uuid = ev.get("Unique-ID")
        if not uuid:
            return None
        if name == "CHANNEL_CREATE":
            self._created[uuid] = ev
        elif name == "CHANNEL_EXECUTE":
            self._apps.setdefault(uuid, []).append((ev.get("Application"), ev.get("Application-Data"), ev.ts_us))
        else:
            return uuid, build_cdr(ev, self._created.pop(uuid, None), self._apps.pop(uuid, []), self.encode_values)
        return None


class CdrPoster:
    """Watches the events the simulator publishes and posts each ended leg's CDR from a greenlet of its own."""

    def __init__(self, url: str, cred: str = "", encode: str = "false", retries: int = 0, delay: float = 5.0,
                 timeout: float = 10.0) -> None:
        if encode not in ENCODINGS:
            raise ValueError(f"--cdr-encode must be one of {', '.join(ENCODINGS)}")
        self.url = url
        self.cred = cred
        self.encode = encode
        self.attempts = max(0, retries) + 1  # mod_json_cdr: retries++ (the first try is not a retry)
        self.delay = delay if delay > 0 or not retries else 5.0  # mod_json_cdr: "Retries set but delay 0"
        self.timeout = timeout
        self.posted = self.failed = 0
        self.builder = CdrBuilder()
        self._queue: gevent.queue.Queue = gevent.queue.Queue()
        self._busy = 0
        self._worker = gevent.spawn(self._run)

    def observe(self, ev: SimEvent) -> None:
        """Follow a published event; a leg's CHANNEL_HANGUP_COMPLETE queues its CDR."""
        ended = self.builder.observe(ev)
        if ended is not None:
            self._busy += 1
            self._queue.put(ended)

    def wait(self, timeout: float) -> bool:
        """Wait until every queued CDR was posted or given up; False if some are still going after timeout."""
        with gevent.Timeout(timeout, False):
            while self._busy:
                gevent.sleep(0.05)
        return not self._busy

    def _run(self) -> None:
        while True:
            uuid, body = self._queue.get()
            try:
                self._post(uuid, body)
            finally:
                self._busy -= 1

    def _request(self, uuid: str, body: str) -> urllib.request.Request:
        if self.encode == "true":
            data, kind = b"cdr=" + encode_value(body).encode(), "application/x-www-form-urlencoded"
        elif self.encode == "base64":
            data, kind = b"cdr=" + base64.b64encode(body.encode()), "application/x-www-form-base64-encoded"
        else:
            data, kind = body.encode(), "application/json"
        headers = {"Content-Type": kind, "User-Agent": "freeswitch-json/1.0"}
        if self.cred:
            headers["Authorization"] = "Basic " + base64.b64encode(self.cred.encode()).decode()
        return urllib.request.Request(f"{self.url}?uuid={uuid}", data=data, headers=headers, method="POST")

    def _post(self, uuid: str, body: str) -> None:
        for attempt in range(self.attempts):
            if attempt:
                gevent.sleep(self.delay)
            try:
                with urllib.request.urlopen(self._request(uuid, body), timeout=self.timeout) as answer:
                    status = answer.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError as exc:
                status = 0
                log.info("CDR of leg %s: %s", uuid, exc)
            if 200 <= status < 300:
                self.posted += 1
                return
            log.info("CDR of leg %s: got error [%d] posting to %s", uuid, status, self.url)
        self.failed += 1
        log.warning("CDR of leg %s: unable to post to web server after %d attempt(s)", uuid, self.attempts)
