"""What every source shares: one lookup bounded by its timeout, answers cached by number, a pause after failures in
a row (logged once per outage, and once when it answers again), answers larger than max_bytes refused, values made
plain text of bounded length."""
from __future__ import annotations

import abc
import datetime as dt
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import gevent

from screenpop.daemon.config import ConfigError, SourceConfig
from screenpop.daemon.i18n import Message, lazy_gettext
from screenpop.db.numbers import NumberForms

log = logging.getLogger("screenpop.sources")

MAX_FIELDS = 30  # fields one source may put on a card
MAX_VALUE = 500  # characters of one value (and of a label) kept
CACHE_NUMBERS = 10000  # numbers whose answers a source keeps
PLACEHOLDER = re.compile(r"\{(e164|national|digits)\}")
_BRACED = re.compile(r"\{([^{}]*)\}")


class SourceFailed(Exception):
    """A lookup that did not give an answer: unreachable, refused, too slow, too large, not understood."""


@dataclass(frozen=True)
class SourceResult:
    """One source's answer for one number: its fields as (label, value) in order, the customer's external id if it
    said which customer it is; error when it failed or was paused (then no fields)."""

    source: str
    fields: tuple[tuple[str, str], ...] = ()
    external_id: str | None = None
    error: Message = ""


def text(value: Any) -> str | None:
    """A field's value as one bounded piece of text (None: no value, the field is left out). Never trusted: the card
    sends it verbatim and whoever shows it escapes it, like caller-ID text."""
    if value is None:
        return None
    if isinstance(value, bool):
        out = "yes" if value else "no"
    elif isinstance(value, (int, float, Decimal, str)):
        out = str(value)
    elif isinstance(value, (dt.date, dt.time)):
        out = value.isoformat()
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out = bytes(value).decode("utf-8", errors="replace")
    else:
        out = json.dumps(value, ensure_ascii=False, default=str)
    out = out.replace("\x00", "")
    return out[:MAX_VALUE]


def check_placeholders(where: str, template: str, allow: tuple[str, ...] = ()) -> None:
    """ConfigError for a {name} in a template that is neither a number form nor one of allow."""
    for name in _BRACED.findall(template):
        if not PLACEHOLDER.fullmatch("{" + name + "}") and name not in allow:
            known = ", ".join("{" + a + "}" for a in ("e164", "national", "digits", *allow))
            raise ConfigError("[[sources]] %(where)s: unknown placeholder %(name)s (known: %(known)s)", where=where,
                              name="{" + name + "}", known=known)


class Source(abc.ABC):
    """One configured source; subclasses give lookup(forms), the answer as {label: value}, raising SourceFailed (or
    their driver's error), and close any connection that an error or the timeout cut short."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.timeout = config.timeout
        self._cache: OrderedDict[str, tuple[float, SourceResult]] = OrderedDict()
        self.failed_in_row = 0
        self.paused_until = 0.0
        self.down = False

    # ---- the subclasses' part ------------------------------------------------------------------

    @abc.abstractmethod
    def lookup(self, forms: NumberForms) -> dict[str, Any] | None:
        """The answer for a number as {label: value} in order, None when the source has no record of it."""

    # ---- shared ---------------------------------------------------------------------------------

    def cached(self, forms: NumberForms) -> SourceResult | None:
        """The answer kept for this number if still fresh; a paused source answers at once with nothing."""
        now = time.monotonic()
        if now < self.paused_until:
            return SourceResult(self.name, error=lazy_gettext("paused after failures in a row"))
        hit = self._cache.get(forms.e164)
        if hit is not None and now - hit[0] < self.config.cache_seconds:
            return hit[1]
        return None

    def fetch(self, forms: NumberForms) -> SourceResult:
        """Ask the source (at most its timeout), keep the answer, follow its health; never raises."""
        cached = self.cached(forms)
        if cached is not None:
            return cached
        started = time.monotonic()
        try:
            with gevent.Timeout(self.timeout, SourceFailed(lazy_gettext("no answer within %(ms)s ms",
                                                                        ms=format(self.timeout * 1000, "g")))):
                row = self.lookup(forms)
        except SourceFailed as exc:
            return self._failed(exc.args[0])
        except Exception as exc:  # noqa: BLE001 - a driver's own errors: the source failed, the card goes on
            return self._failed(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        result = self._result(row or {})
        self._worked(time.monotonic() - started)
        self._cache[forms.e164] = (time.monotonic(), result)
        self._cache.move_to_end(forms.e164)
        while len(self._cache) > CACHE_NUMBERS:
            self._cache.popitem(last=False)
        return result

    def check_size(self, size: int) -> None:
        """SourceFailed when an answer of size bytes is above max_bytes."""
        if size > self.config.max_bytes:
            raise SourceFailed(lazy_gettext("answer larger than max_bytes (%(max)s)", max=self.config.max_bytes))

    def _result(self, row: dict[str, Any]) -> SourceResult:
        key = self.config.external_id
        external = text(row.pop(key, None)) if key else None
        fields = []
        for label, value in row.items():
            value = text(value)
            if value is not None and len(fields) < MAX_FIELDS:
                fields.append((str(label)[:MAX_VALUE], value))
        return SourceResult(self.name, tuple(fields), external or None)

    def _failed(self, reason: Message) -> SourceResult:
        self.failed_in_row += 1
        if not self.down:
            self.down = True
            log.warning("source %s failed: %s; the cards go out without it, further failures are not logged until it "
                        "answers again (after %d in a row it is paused for %g s at a time)", self.name, reason,
                        self.config.failures, self.config.pause)
        if self.failed_in_row >= self.config.failures:
            self.paused_until = time.monotonic() + self.config.pause
        return SourceResult(self.name, error=reason)

    def _worked(self, seconds: float) -> None:
        if self.down:
            log.info("source %s answers again (in %.0f ms) after %d failure(s) in a row", self.name, seconds * 1000,
                     self.failed_in_row)
        self.down = False
        self.failed_in_row = 0
        self.paused_until = 0.0
