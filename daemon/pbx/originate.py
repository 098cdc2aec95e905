"""Click-to-call (docs/originate.md): FreeSWITCH rings the operator's phone, then dials the number, by `bgapi originate`.

The dial string comes from [originate]; only an extension and a number made of digits (and a leading +) are ever put
into it, so nothing a stranger typed reaches the command line. FreeSWITCH's answer ('+OK <uuid>' or '-ERR <CAUSE>')
comes back in words. The call itself is then tracked from its events like any outgoing call.
"""
from __future__ import annotations

import collections
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from greenswitch.esl import NotConnectedError

from screenpop.daemon.config import OriginateConfig
from screenpop.daemon.i18n import Message, lazy_gettext
from screenpop.daemon.pbx.esl import EslSupervisor, JobTimeoutError
from screenpop.db.numbers import NumberRules

log = logging.getLogger("screenpop.originate")

_SAFE_EXTENSION = re.compile(r"[0-9A-Za-z_.-]{1,32}")
_SAFE_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_CAUSE = re.compile(r"[A-Z_]{3,40}")
_UUID = re.compile(r"[0-9a-fA-F-]{36}")

# FreeSWITCH's hangup causes an originate ends with, as an operator reads them (ext: the operator's extension)
CAUSES: dict[str, Callable[[str], Message]] = {
    "USER_NOT_REGISTERED": lambda ext: lazy_gettext(
        "your phone (%(ext)s) is not registered with FreeSWITCH: is it switched on and signed in?", ext=ext),
    "NO_ANSWER": lambda ext: lazy_gettext(
        "your phone (%(ext)s) rang but was not answered, so the number was not dialled", ext=ext),
    "NO_USER_RESPONSE": lambda ext: lazy_gettext(
        "your phone (%(ext)s) did not respond, so the number was not dialled", ext=ext),
    "USER_BUSY": lambda ext: lazy_gettext("your phone (%(ext)s) is busy: end the call on it first", ext=ext),
    "CALL_REJECTED": lambda ext: lazy_gettext("the call was declined on your phone (%(ext)s)", ext=ext),
    "ORIGINATOR_CANCEL": lambda ext: lazy_gettext(
        "the call was cancelled before your phone (%(ext)s) answered", ext=ext),
    "SUBSCRIBER_ABSENT": lambda ext: lazy_gettext("your phone (%(ext)s) is not reachable", ext=ext),
    "UNALLOCATED_NUMBER": lambda ext: lazy_gettext("FreeSWITCH does not know extension %(ext)s", ext=ext),
    "NO_ROUTE_DESTINATION": lambda ext: lazy_gettext("FreeSWITCH has no route to extension %(ext)s", ext=ext),
    "INVALID_NUMBER_FORMAT": lambda ext: lazy_gettext("FreeSWITCH refused the number's format"),
    "DESTINATION_OUT_OF_ORDER": lambda ext: lazy_gettext("your phone (%(ext)s) is out of order", ext=ext),
    "NORMAL_TEMPORARY_FAILURE": lambda ext: lazy_gettext(
        "FreeSWITCH could not reach your phone (%(ext)s) just now: try again", ext=ext),
    "RECOVERY_ON_TIMER_EXPIRE": lambda ext: lazy_gettext(
        "your phone (%(ext)s) did not answer FreeSWITCH in time", ext=ext),
}


class OriginateError(Exception):
    """Why a call was not placed, in words, with the HTTP status it maps to and FreeSWITCH's cause if it gave one."""

    def __init__(self, status: int, message: Message, cause: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.cause = cause
        self.retry_after = retry_after


@dataclass
class RateLimit:
    """At most `limit` calls per `window` seconds for each key (a token): a sliding window of start times."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _starts: dict[object, collections.deque] = field(default_factory=dict)

    def take(self, key: object) -> float:
        """Count one call for key; 0 if allowed, else the seconds until the next one would be."""
        now = self.clock()
        starts = self._starts.setdefault(key, collections.deque())
        while starts and now - starts[0] >= self.window:
            starts.popleft()
        if len(starts) >= self.limit:
            return self.window - (now - starts[0])
        starts.append(now)
        if len(self._starts) > 10_000:  # forget idle keys
            self._starts = {k: v for k, v in self._starts.items() if v and now - v[-1] < self.window}
        return 0.0


def answer_in_words(answer: str, extension: str) -> OriginateError | None:
    """None for '+OK <uuid>', else the OriginateError for FreeSWITCH's answer ('-ERR USER_NOT_REGISTERED', ...)."""
    text = answer.strip()
    if text.startswith("+OK"):
        return None
    cause = text.removeprefix("-ERR").strip().split(" ", 1)[0] if text.startswith("-ERR") else ""
    if not _CAUSE.fullmatch(cause):
        return OriginateError(502, lazy_gettext("FreeSWITCH gave an unexpected answer to the call request"))
    words = CAUSES.get(cause)
    if words is None:
        return OriginateError(409, lazy_gettext("FreeSWITCH could not place the call (%(cause)s)", cause=cause), cause)
    return OriginateError(409, words(extension), cause)


class Originator:
    """Places click-to-call calls through the supervised ESL connection, with the dial string from [originate]."""

    def __init__(self, esl: EslSupervisor, config: OriginateConfig, rules: Callable[[], NumberRules]) -> None:
        self.esl = esl
        self.config = config
        self.rules = rules
        self.rate = RateLimit(config.rate_limit, config.rate_window)

    def place(self, caller: object, any_extension: bool, own_extension: str | None, extension: str | None,
              raw_number: str) -> str:
        """A call for a token or person (the API's and the pages' one rule): one whose role may not ring any
        extension (any_extension, from daemon/auth/roles.py) rings only its own, others name one (or use their own);
        at most rate_limit calls per rate_window per caller (a token id, or a person). The operator leg's uuid."""
        wanted = extension or own_extension
        if not any_extension and extension and extension != own_extension:
            raise OriginateError(403, lazy_gettext("an operator token calls only from its own extension"))
        if not wanted:
            raise OriginateError(400, lazy_gettext("extension: name the extension whose phone rings first"))
        command = self.command(wanted, raw_number)  # a bad request does not count against the limit
        wait = self.rate.take(caller)
        if wait:
            seconds = max(1, math.ceil(wait))
            raise OriginateError(429, lazy_gettext("too many calls started: try again in %(seconds)s s",
                                                   seconds=seconds), retry_after=seconds)
        return self._run(wanted, command)

    def command(self, extension: str, raw_number: str) -> str:
        """The `originate` command line for extension calling raw_number; OriginateError 400 for a bad number."""
        if not isinstance(extension, str) or not _SAFE_EXTENSION.fullmatch(extension):
            raise OriginateError(400, lazy_gettext("extension: must be an extension number"))
        number = self.rules().dial_form(raw_number, self.config.number_format) if isinstance(raw_number, str) else None
        if number is None or not _SAFE_NUMBER.fullmatch(number):
            raise OriginateError(400, lazy_gettext("number: not a phone number that can be dialled"))
        dial = (self.config.dial_string.replace("{extension}", extension).replace("{number}", number)
                .replace("{timeout}", str(self.config.ring_timeout)))
        return f"originate {dial}"

    def _run(self, extension: str, command: str) -> str:
        wait = self.config.ring_timeout + 5  # FreeSWITCH answers once the phone answered or gave up ringing
        try:
            answer = self.esl.bgapi(command, timeout=wait)
        except JobTimeoutError:
            log.warning("originate for extension %s: no answer from FreeSWITCH within %d s", extension, wait)
            raise OriginateError(504, lazy_gettext("FreeSWITCH did not answer the call request within %(wait)s s",
                                                   wait=wait)) from None
        except NotConnectedError as exc:
            log.warning("originate for extension %s: %s", extension, exc)
            raise OriginateError(503, lazy_gettext("not connected to FreeSWITCH: the call cannot be placed now")) \
                from None
        error = answer_in_words(answer, extension)
        if error is not None:
            log.info("originate for extension %s failed: %s", extension, error.cause or repr(answer[:80]))
            raise error
        uuid = answer.strip()[3:].strip()
        log.info("originate: extension %s answered, dialling out", extension)
        return uuid if _UUID.fullmatch(uuid) else ""
