"""`originate` in the simulator: the click-to-call a FreeSWITCH 1.10 carries out, in every mode (replay, generate, idle).

A call is the recorded `outbound-c2c` capture's two legs (data/click-to-call.plain.esl.gz: the operator's phone leg
rings and answers, FreeSWITCH answers the job, then the outbound leg rings, answers, is bridged, both hang up), with
fresh UUIDs, the originated extension and number in place of the recorded ones, and every time moved to now. The
job's answer is FreeSWITCH's: '+OK <uuid>' once the operator answered, '-ERR USER_NOT_REGISTERED' for an extension
not registered, '-ERR NO_ANSWER' (after ringing) for one set not to answer.
"""
from __future__ import annotations

import gzip
import re
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

import gevent

from screenpop.simulator.capture import split_frames
from screenpop.simulator.events import SimEvent, date_values

TEMPLATE = Path(__file__).with_name("data") / "click-to-call.plain.esl.gz"
RECORDED_EXTENSION, RECORDED_NUMBER = "1001", "+3545559876"
_ENDPOINT = re.compile(r"user/([0-9A-Za-z_.-]+)(?:@\S+)?\s+(\S+)")
_BRIDGED = re.compile(r"/([+0-9]+)\)")
_TIMEOUT = re.compile(r"originate_timeout=([0-9]+)")
_DATES = ("Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp")


class Originator:
    """Carries out `originate <dial string>` by publishing a click-to-call's events through the simulator."""

    def __init__(self, publish: Callable[[SimEvent], None], core: dict[str, str], registered: frozenset[str] | None = None,
                 no_answer: frozenset[str] = frozenset(), speed: float = 1.0, template: Path = TEMPLATE) -> None:
        self.publish = publish
        self.core = core                    # the switch's identity (Core-UUID, hostname...), stamped on every event
        self.registered = registered        # None: every extension is registered
        self.no_answer = no_answer
        self.speed = speed                  # 0: the events back to back, no waiting
        raw = gzip.decompress(template.read_bytes())
        self.template = [SimEvent.from_plain_frame(f.raw, f.body) for f in split_frames(raw)]

    def parse(self, arg: str) -> tuple[str, str] | None:
        """(extension, number) of an originate argument: `{vars}user/EXT[@domain] NUMBER XML ctx` or `... &bridge(.../NUMBER)`."""
        found = _ENDPOINT.search(arg)
        if found is None:
            return None
        extension, target = found.groups()
        if target.startswith("&"):
            bridged = _BRIDGED.search(target)
            return (extension, bridged.group(1)) if bridged else None
        return extension, target

    def run(self, arg: str, answered: Callable[[str], None]) -> None:
        """Carry out one originate; answered(text) is called with FreeSWITCH's answer when FreeSWITCH gives it."""
        parsed = self.parse(arg)
        if parsed is None:
            answered("-ERR INVALID_NUMBER_FORMAT\n")  # FreeSWITCH: no endpoint it can call
            return
        extension, number = parsed
        if self.registered is not None and extension not in self.registered:
            answered("-ERR USER_NOT_REGISTERED\n")
            return
        if extension in self.no_answer:
            timeout = _TIMEOUT.search(arg)
            gevent.sleep((int(timeout.group(1)) if timeout else 60) * self._scale())
            answered("-ERR NO_ANSWER\n")
            return
        self._play(extension, number, answered)

    def _scale(self) -> float:
        return 1.0 / self.speed if self.speed > 0 else 0.0

    def _play(self, extension: str, number: str, answered: Callable[[str], None]) -> None:
        uuids: dict[str, str] = {}

        def fresh(match: re.Match) -> str:
            text = match.group(0)
            if match.group("uuid"):
                return uuids.setdefault(text, str(uuidlib.uuid4()))
            return number if text == RECORDED_NUMBER else extension

        swap = re.compile(r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|"
                          + re.escape(RECORDED_NUMBER) + r"(?![0-9])|(?<![0-9])" + RECORDED_EXTENSION + r"(?![0-9])")
        first = self.template[0].ts_us
        start = time.time()
        shift = int(start * 1_000_000) - first
        scale = self._scale()
        operator_leg = ""
        for ev in self.template:
            due = start + (ev.ts_us - first) / 1e6 * scale
            delay = due - time.time()
            if delay > 0:
                gevent.sleep(delay)
            if ev.name == "BACKGROUND_JOB":
                answered(f"+OK {operator_leg}\n")
                continue
            ts = ev.ts_us + shift
            dates = date_values(ts)
            items = []
            for key, value in ev.items():
                if key in _DATES:
                    value = dates[key][0]
                elif key in self.core:
                    value = self.core[key]
                elif key.endswith("-Time") and value.isdigit() and value != "0":
                    value = str(int(value) + shift)
                else:
                    value = swap.sub(fresh, value)
                items.append((key, value))
            out = SimEvent(ev.name, ev.subclass, ts, [items])
            out.seq_index = next(i for i, (k, _) in enumerate(items) if k == "Event-Sequence")
            if not operator_leg:
                operator_leg = out.get("Unique-ID")
            self.publish(out)
