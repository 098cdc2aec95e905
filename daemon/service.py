"""The daemon's runtime: database, tracker, writer and the supervised ESL connection, started and stopped together."""
from __future__ import annotations

import logging
import signal
import socket

import gevent
import gevent.event
import peewee

from screenpop.daemon.calls import SUBSCRIBED_EVENTS, CallTracker, parse_channels
from screenpop.daemon.config import Config
from screenpop.daemon.direction import DirectionRules
from screenpop.daemon.esl import EslSupervisor
from screenpop.daemon.httpserver import HttpServer
from screenpop.daemon.photos import Photos
from screenpop.daemon.push import PushHub
from screenpop.daemon.writer import Writer, load_open_calls
from screenpop.db.database import open_database
from screenpop.db.lookup import Lookup
from screenpop.db.migrations import migrate
from screenpop.db.models import Employee, utcnow
from screenpop.db.numbers import NumberRules

log = logging.getLogger("screenpop.daemon")

EMPLOYEE_RELOAD_SECONDS = 30.0
SETTLE_SECONDS = 1.0  # after a resync, time for the events received before its reply to go through


class Daemon:
    """One daemon: follows one FreeSWITCH and records its calls in the configured database."""

    def __init__(self, config: Config) -> None:
        self.config = config
        url = config.database.resolved_url()
        self.db = open_database(url)
        applied = migrate(self.db)
        if applied:
            log.info("database schema migrated to version %d", applied[-1])
        self.numbers = self._number_rules()
        self.lookup = Lookup(self.db, self.numbers)
        rules = DirectionRules(
            trunk_profiles=frozenset(config.pbx.trunk_profiles),
            trunk_contexts=frozenset(config.pbx.trunk_contexts),
            is_extension=lambda raw: self.numbers.is_extension(raw),
        )
        node = config.node or socket.gethostname()
        self.writer = Writer(self.db, e164=self._e164, node=node, batch_max=config.database.batch_max)
        self.tracker = CallTracker(rules, self.writer, lookup=self._find_customer)
        self.push = PushHub(self.db, lambda: self.lookup, config.http.public_url)
        self.writer.listeners.append(self.push.committed)
        self.http = HttpServer(config.http, self.push, Photos(config.database.resolved_photo_dir()))
        open_calls = load_open_calls(self.db)
        if open_calls:
            log.info("%d call(s) were open when the daemon last stopped; checking them with FreeSWITCH", len(open_calls))
        self.tracker.restore(open_calls)
        fs = config.freeswitch
        self.esl = EslSupervisor(
            host=fs.host,
            port=fs.port,
            password=fs.secret(),
            events=SUBSCRIBED_EVENTS,
            on_event=self._on_event,
            on_connected=self._resync,
            on_disconnected=self._disconnected,
            connect_timeout=fs.connect_timeout,
            command_timeout=fs.command_timeout,
            reconnect_min=fs.reconnect_min,
            reconnect_max=fs.reconnect_max,
        )
        self._snapshot: tuple[list[dict], int] | None = None
        self._stopped = gevent.event.Event()
        self._done = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []

    # ---- helpers the tracker calls ---------------------------------------------------------

    def _number_rules(self) -> NumberRules:
        extensions = frozenset(ext for (ext,) in Employee.select(Employee.extension).where(Employee.active).tuples())
        return NumberRules.from_config(self.config.numbers, extensions)

    def _e164(self, raw: str) -> str | None:
        number = self.numbers.classify(raw)
        return number.e164 if number.kind == "e164" else None

    def _find_customer(self, raw: str) -> tuple[int | None, int]:
        """Customer lookup on the event path; a database hiccup costs the card, never the call."""
        try:
            match = self.lookup.find(raw)
        except peewee.DatabaseError as exc:
            log.warning("customer lookup failed (%s); the pop goes out without a card", exc)
            return None, 0
        return match.customer_id, match.matches

    def _reload_employees(self) -> None:
        """Extensions from the employee table count as internal; pick up changes without a restart."""
        while not self._stopped.wait(EMPLOYEE_RELOAD_SECONDS):
            try:
                rules = self._number_rules()
            except peewee.DatabaseError as exc:
                log.warning("could not reload employees: %s", exc)
                continue
            if rules.extensions != self.numbers.extensions:
                log.info("employee extensions changed: %d known", len(rules.extensions))
                self.numbers = rules
                self.lookup = Lookup(self.db, rules)

    # ---- ESL callbacks -------------------------------------------------------------------

    def _resync(self, api) -> None:
        """After every (re)connect: settle calls that ended meanwhile, adopt calls we never saw.

        Events that reached us before the reply to `show channels` happened before it: they are applied
        first, and the channel list after them, so a stale event never overrides a newer state.
        """
        body = api("show channels as json")
        try:
            rows = parse_channels(body)
        except ValueError:
            log.error("FreeSWITCH answered 'show channels as json' with something else: %.200r", body)
            return
        backlog = self.esl.backlog
        if backlog:
            self._snapshot = (rows, backlog)
        else:
            self._apply_snapshot(rows)

    def _on_event(self, event) -> None:
        self.tracker.handle(event)
        if self._snapshot is not None:
            rows, left = self._snapshot
            self._snapshot = (rows, left - 1) if left > 1 else None
            if left <= 1:
                self._apply_snapshot(rows)

    def _apply_snapshot(self, rows: list[dict]) -> None:
        before = len(self.tracker.calls)
        self.tracker.resync(rows, utcnow())
        gevent.spawn_later(SETTLE_SECONDS, lambda: self.tracker.settle(utcnow()))
        log.info(
            "resynchronised with FreeSWITCH: %d channel(s) up, %d call(s) tracked (was %d)",
            len(rows),
            len(self.tracker.calls),
            before,
        )

    def _disconnected(self) -> None:
        self._snapshot = None
        self.tracker.settle(utcnow())
        log.warning("FreeSWITCH connection lost with %d call(s) in progress; they are checked on reconnect", len(self.tracker.calls))

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Listen for HTTP (a port in use stops the start), then start the writer, the ESL connection, the reloader."""
        try:
            self.http.start()
        except OSError as exc:
            raise SystemExit(f"screenpop: [http] listen {self.config.http.listen}: {exc.strerror or exc}") from None
        self.push.start()
        self._greenlets = [gevent.spawn(self.writer.run), gevent.spawn(self._reload_employees)]
        self.esl.start()
        fs = self.config.freeswitch
        log.info("screenpop daemon started: FreeSWITCH %s:%d, database %s", fs.host, fs.port, self._db_label())

    def _db_label(self) -> str:
        url = self.config.database.resolved_url()
        return url.split("@")[-1] if "@" in url else url

    def stop(self) -> None:
        """Stop taking events, write everything queued, close the database."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping: closing the push streams and the FreeSWITCH connection, writing %d queued event(s)", self.writer.pending)
        self.http.stop()
        self.esl.stop()
        self.tracker.settle(utcnow())
        if not self.writer.stop(timeout=10):
            log.error("could not write %d queued event(s) before exit", self.writer.pending)
        self.push.stop()
        gevent.killall(self._greenlets, timeout=2)
        self.db.close()
        log.info("stopped")
        self._done.set()

    def serve_forever(self) -> int:
        """Run until SIGTERM or SIGINT; exit status 0 after a clean stop."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, lambda: gevent.spawn(self.stop))
        self.start()
        self._done.wait()
        return 0
