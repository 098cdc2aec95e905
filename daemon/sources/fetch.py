"""The sources of a daemon: asked by the push hub for each pop that rings (never waiting for them), and by the
record page (waiting at most the sources' timeout); one lookup per number at a time, in a bounded pool of greenlets.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.event
import gevent.pool

from screenpop.daemon.config import SourceConfig
from screenpop.daemon.i18n import lazy_gettext
from screenpop.daemon.sources.http import HttpSource
from screenpop.daemon.sources.source import Source, SourceResult
from screenpop.daemon.sources.sql import SqlSource
from screenpop.db.numbers import NumberForms, NumberRules

log = logging.getLogger("screenpop.sources")

WORKERS = 64  # numbers looked up at once; beyond, a pop goes without its sources (logged once a minute at most)
FULL_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class Answer:
    """What the sources say about one number: each source's result in configuration order; pending while a lookup
    runs (the card then gets an update when it ends)."""

    results: tuple[SourceResult, ...]
    pending: bool = False

    @property
    def external_id(self) -> str | None:
        """The customer's external id as the first source that names one says."""
        return next((r.external_id for r in self.results if r.external_id), None)

    def card(self) -> dict:
        """The card's `sources` part (docs/card.md)."""
        return {"pending": self.pending, "external_id": self.external_id,
                "fields": [{"source": r.source, "name": label, "value": value}
                           for r in self.results for label, value in r.fields]}

    @property
    def adds(self) -> bool:
        """Whether it puts anything on a card: a field or a customer to link."""
        return any(r.fields or r.external_id for r in self.results)


class Sources:
    """Every configured source; falsy when there is none."""

    def __init__(self, configs: list[SourceConfig], rules: Callable[[], NumberRules]) -> None:
        """rules: the daemon's current number rules (they make the forms a number is looked up by)."""
        self.sources: list[Source] = [SqlSource(c) if c.type == "sql" else HttpSource(c) for c in configs]
        self.rules = rules
        self.timeout = max((s.timeout for s in self.sources), default=0.0)
        self._pool = gevent.pool.Pool(WORKERS)
        self._waiting: dict[str, list[Callable[[Answer], None]]] = {}
        self._full_logged = -FULL_LOG_SECONDS

    def __bool__(self) -> bool:
        return bool(self.sources)

    def peek(self, number: str) -> Answer | None:
        """What is known now without asking anyone (cached answers; pending if a lookup runs); None when the number
        is not one sources are asked about (an extension, withheld, text) or there are no sources."""
        forms = self._forms(number)
        if forms is None:
            return None
        results = tuple(s.cached(forms) or SourceResult(s.name) for s in self.sources)
        return Answer(results, pending=forms.e164 in self._waiting)

    def ask(self, number: str, done: Callable[[Answer], None]) -> Answer | None:
        """The answer now if every source's is cached; else a pending one, and done(answer) is called (on another
        greenlet) once every source answered, failed or timed out. Never waits. None: nothing to ask (see peek)."""
        forms = self._forms(number)
        if forms is None:
            return None
        cached = [s.cached(forms) for s in self.sources]
        if all(r is not None for r in cached):
            return Answer(tuple(cached))
        waiting = self._waiting.get(forms.e164)
        if waiting is None:
            if self._pool.full():
                if time.monotonic() - self._full_logged >= FULL_LOG_SECONDS:
                    self._full_logged = time.monotonic()
                    log.warning("%d numbers are being looked up in the sources already; pops go out without them "
                                "until some answer", WORKERS)
                return Answer(tuple(r or SourceResult(s.name, error=lazy_gettext("too many lookups at once"))
                                    for s, r in zip(self.sources, cached)))
            waiting = self._waiting[forms.e164] = []
            self._pool.spawn(self._look_up, forms)
        waiting.append(done)
        return Answer(tuple(r or SourceResult(s.name) for s, r in zip(self.sources, cached)), pending=True)

    def answer(self, numbers: list[str]) -> list[SourceResult]:
        """For a page: each source's first result with fields for any of numbers (else its first result, which may
        say why it failed), waiting at most about the sources' longest timeout."""
        asked: list[Answer] = []
        pending: list[gevent.event.AsyncResult] = []
        for number in numbers:
            result = gevent.event.AsyncResult()
            now = self.ask(number, result.set)
            if now is not None and now.pending:
                pending.append(result)
            elif now is not None:
                asked.append(now)
        gevent.wait(pending, timeout=self.timeout + 1.0)
        asked += [r.value for r in pending if r.ready()]
        if not asked and not pending:
            return []  # no number sources are asked about
        out = []
        for i, source in enumerate(self.sources):
            results = [a.results[i] for a in asked]
            out.append(next((r for r in results if r.fields), results[0] if results else
                            SourceResult(source.name, error=lazy_gettext("no answer in time"))))
        return out

    def _forms(self, number: str) -> NumberForms | None:
        return self.rules().forms(number) if self.sources and number else None

    def _look_up(self, forms: NumberForms) -> None:
        """Every source at once for one number, then each waiting card is told."""
        jobs = [gevent.spawn(s.fetch, forms) for s in self.sources]
        gevent.joinall(jobs)
        answer = Answer(tuple(j.value if j.successful() else SourceResult(s.name, error=lazy_gettext("lookup crashed"))
                              for s, j in zip(self.sources, jobs)))
        for done in self._waiting.pop(forms.e164, []):
            try:
                done(answer)
            except Exception:  # noqa: BLE001 - one receiver's fault must not keep the others from their answer
                log.exception("could not pass on the sources' answer")
