"""The daemon's runtime: database, tracker, writer and the supervised ESL connection, started and stopped together."""
from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import gevent
import gevent.event
import peewee

from screenpop.daemon import i18n
from screenpop.daemon.analysis import store as analysis_store, stt
from screenpop.daemon.analysis.worker import Analyser
from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import SUBSCRIBED_EVENTS, CallTracker, parse_channels
from screenpop.daemon.cluster import Election
from screenpop.daemon.config import Config, ConfigError, NumbersConfig
from screenpop.daemon.customers.lookup import Lookup
from screenpop.daemon.pbx.esl import EslSupervisor
from screenpop.daemon.push.fanout import Listener, Publisher, current_schema
from screenpop.daemon.push.hub import PushHub
from screenpop.daemon.push.layout import CardLayout
from screenpop.daemon.push.layouts import Layouts
from screenpop.daemon.record.cdr import CdrIntake
from screenpop.daemon.record.recordings import Keeper, PathMap
from screenpop.daemon.record.writer import Writer, load_open_calls
from screenpop.daemon.reports.analytics import local_zone
from screenpop.daemon.sdnotify import Notifier
from screenpop.daemon.sources.fetch import Sources
from screenpop.daemon.staff import Staff
from screenpop.db.checkpoint import Checkpointer
from screenpop.db.database import DatabaseUnreachable, guarded, open_database, outage
from screenpop.db.migrations import MIGRATIONS, current_version, migrate
from screenpop.db.models import utcnow
from screenpop.db.numbers import NumberRules
from screenpop.db.worker import DbWorker

if TYPE_CHECKING:
    from screenpop.daemon.auth.directory import Directory
    from screenpop.daemon.web.server import HttpServer

log = logging.getLogger("screenpop.daemon")

SETTLE_SECONDS = 1.0  # after a resync, time for the events received before its reply to go through
STATUS_SECONDS = 5.0  # how often systemd's STATUS= is refreshed (more often when the watchdog asks for it)
MIGRATION_TIMEOUT = 3600.0  # start-up time asked of systemd while a schema migration runs (the unit allows 90 s)
DRAIN_SECONDS = 10.0  # at stop, time for the events already read from FreeSWITCH to be tracked (the unit allows 30 s)
WRITE_SECONDS = 10.0  # at stop, time for everything queued to be written (the database may be away)
EXIT_NOT_WRITTEN = 1  # exit status when calls or pops could not be written before exit
FIRST_FOLLOW_SECONDS = 2.0  # at start, the longest HTTP waits for the first FreeSWITCH attempt (success or failure)
RELOADABLE = ("numbers", "pbx", "log")  # config sections SIGHUP applies; the others need a restart


def _needs_restart(old: Config, new: Config) -> list[str]:
    """The options outside RELOADABLE whose value differs, as '[section] key' (names only: values may be secret)."""
    changed = []
    for section in dataclasses.fields(Config):
        if section.name in RELOADABLE:
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        if dataclasses.is_dataclass(before):
            changed += [f"[{section.name}] {f.name}" for f in dataclasses.fields(before)
                        if getattr(before, f.name) != getattr(after, f.name)]
        elif before != after:
            changed.append(section.name)
    return changed


class Daemon:
    """One daemon: follows one FreeSWITCH and records its calls in the configured database."""

    def __init__(self, config: Config) -> None:
        self.config = config
        if config.analysis.enabled:
            stt.check(config.analysis)  # a missing speech package or model stops the start, saying what to install
        url = config.database.resolved_url()
        self.db = open_database(url)
        self.notify = Notifier()
        if current_version(self.db) < MIGRATIONS[-1].version:
            # a migration that fills new columns can take minutes on a large database: more than systemd's start timeout
            self.notify.status("migrating the database schema")
            self.notify.extend_timeout(MIGRATION_TIMEOUT)
        applied = migrate(self.db)
        if applied:
            log.info("database schema migrated to version %d", applied[-1])
        # SQLite: WAL checkpoints on a native thread, driven by the writer, never inside a commit (db/checkpoint.py)
        self.checkpointer = Checkpointer(self.db) if isinstance(self.db, peewee.SqliteDatabase) else None
        self.staff = Staff()
        self.staff.load()
        self.numbers = self._number_rules()
        self.lookup = Lookup(self.db, self.numbers)
        rules = DirectionRules(
            trunk_profiles=frozenset(config.pbx.trunk_profiles),
            trunk_contexts=frozenset(config.pbx.trunk_contexts),
            is_extension=lambda raw: self.numbers.is_extension(raw),
        )
        self.node = config.node or socket.gethostname()
        # the pipeline, in the order data flows: ESL -> tracker -> CDR intake -> writer -> push hub -> streams
        self.worker = DbWorker(self.db, self.checkpointer.quiet if self.checkpointer is not None else None)
        i18n.set_default(config.i18n.default_language)  # the pops' words and what pages speak when nothing else says
        layout = CardLayout(config.card, local_zone(config.analytics.timezone))
        # the systems the cards' extra fields come from, asked by number off the pop's path (docs/sources.md)
        self.sources = Sources(config.sources, lambda: self.numbers)
        self.push = PushHub(self.worker, lambda: self.lookup, self.staff, layout, config.http.public_url,
                            sources=self.sources, layouts=Layouts(config.card.layout_reload))
        # conversation analysis of the recordings, off the hub in a process of its own (docs/analysis.md)
        self.analyser = Analyser(config.analysis, self.worker) if config.analysis.enabled else None
        publisher, self.listener, self.election = self._cluster_parts()
        self.writer = Writer(self.db, e164=self._e164, node=self.node, batch_max=config.database.batch_max,
                             queue_max=config.database.queue_max,
                             on_committed=self.push.push_committed if self.listener is None else None,
                             on_stalled=self.push.push_early, fence=self.election, publisher=publisher,
                             staff=self.staff, map_path=PathMap(config.recordings.paths).local,
                             checkpointer=self.checkpointer,
                             on_queued=self.push.push_queued if isinstance(self.db, peewee.SqliteDatabase) else None)
        # recordings' files checked once stopped, and deleted after [recordings] keep_days (docs/recordings.md)
        self.keeper = Keeper(config.recordings, self.worker, forget=[analysis_store.forget])
        # the tracker's calls and pops go through the CDR intake, which completes the calls it ends from FreeSWITCH's
        # CDRs, to the writer; the intake builds the tracker with itself as its sink (each needs the other). It takes
        # CDRs only once the node's open calls are resumed: before, it would complete a stored copy of a call that the
        # tracker then resumes from the database as still open, and closes again without its cause.
        self._resumed = False
        self.cdr = CdrIntake(config.cdr, self.writer, self.worker,
                             make_tracker=lambda sink: CallTracker(rules, sink, lookup=self._find_customer),
                             recording=lambda: self._resumed and (self.election is None or self.election.holding),
                             hearing=lambda: self.esl.serving)
        self.tracker = self.cdr.tracker
        fs = config.freeswitch
        self.esl = EslSupervisor(
            host=fs.host,
            port=fs.port,
            password=fs.secret(),
            events=[*SUBSCRIBED_EVENTS, "BACKGROUND_JOB"],  # the tracker's, and the answers to click-to-call's bgapi
            on_event=self._on_event,
            on_connected=self._resync,
            on_disconnected=self._disconnected,
            connect_timeout=fs.connect_timeout,
            command_timeout=fs.command_timeout,
            reconnect_min=fs.reconnect_min,
            reconnect_max=fs.reconnect_max,
            keepalive=fs.keepalive,
        )
        self._snapshot: tuple[list[dict], int] | None = None
        self._stopped = gevent.event.Event()
        self._done = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []
        self._esl_up = gevent.event.Event()
        self._standby = gevent.event.Event()
        self._exit_status = 0
        self.http: HttpServer | None = None

    # ---- several daemons on one PostgreSQL (docs/cluster.md) -----------------------------

    def _cluster_parts(self) -> tuple[Publisher | None, Listener | None, Election | None]:
        """On PostgreSQL: fan-out across daemons (the writer's publisher, this daemon's listener), and (unless
        disabled) the election for this node, whose fence guards every write transaction."""
        if isinstance(self.db, peewee.SqliteDatabase):
            log.info("SQLite: single-node (pops across daemons and standby daemons need PostgreSQL)")
            return None, None, None
        schema = current_schema(self.db)
        listener = Listener(self.db, schema, self.push.push_stored)
        if not self.config.cluster.election:
            return Publisher(schema), listener, None
        cluster = self.config.cluster
        election = Election(self.db, schema, self.node, cluster.poll_interval, cluster.hang_timeout,
                            on_acquired=self._take_over, on_lost=self._lose_node,
                            on_standby=self._stand_by)
        return Publisher(schema), listener, election

    def _resume_open_calls(self, open_calls: list) -> None:
        """Follow the node's open calls again (the database worker runs: their stored CDRs are looked at), then take CDRs."""
        if open_calls:
            log.info("%d call(s) of node %s open in the database; checking them with FreeSWITCH", len(open_calls), self.node)
        self.cdr.resume(open_calls)
        self._resumed = True

    def _take_over(self) -> None:
        """This daemon now holds its node: resume the calls the previous holder left open, connect, resync."""
        while True:
            try:
                open_calls = self.worker.run(load_open_calls, self.db, self.node)
                break
            except peewee.DatabaseError as exc:
                if not isinstance(exc, DatabaseUnreachable):  # that is logged once for the whole outage
                    log.warning("could not read node %s's open calls (%s); retrying", self.node, exc)
                gevent.sleep(1.0)
        self._resume_open_calls(open_calls)
        self.esl.start()
        if self.analyser is not None:
            self.analyser.start()  # one daemon per node analyses: the one recording it

    def _stand_by(self) -> None:
        """Another daemon records this node: ready all the same (a standby serves trays, without FreeSWITCH)."""
        self._standby.set()
        self._esl_up.set()

    def _lose_node(self) -> None:
        """Another daemon records this node now: drop what this one still had to write, exit for a clean restart."""
        self.writer.discard()
        self._exit_status = 1
        gevent.spawn(self.stop)

    # ---- helpers the tracker calls ---------------------------------------------------------

    def _number_rules(self, numbers: NumbersConfig | None = None) -> NumberRules:
        return NumberRules.from_config(numbers or self.config.numbers, self.staff.extensions())

    def _e164(self, raw: str) -> str | None:
        number = self.numbers.classify(raw)
        return number.e164 if number.kind == "e164" else None

    def _find_customer(self, raw: str) -> tuple[int | None, int]:
        """Customer lookup on the event path; a database hiccup costs the card, never the call."""
        if self.writer.stalled or outage.down:
            return None, 0  # the database is out of reach: no query (it could hang the event path)
        try:
            match = guarded(self.db, self.lookup.find, raw)
        except DatabaseUnreachable:
            return None, 0  # logged once for the whole outage (db/database.py)
        except peewee.DatabaseError as exc:
            log.warning("customer lookup failed (%s); the pop goes out without a card", exc)
            return None, 0
        return match.customer_id, match.matches

    def _customer_linked(self, customer_id: int, e164: str | None, call_uuid: str | None) -> None:
        """A web page gave this number or call to a customer: calls in progress from it carry the card from now on."""
        for call in {id(c): c for c in self.tracker.calls.values()}.values():
            if call.customer_id is not None or call.direction == "INTERNAL":
                continue
            if call.uuid == call_uuid or (e164 and call.external_number and self._e164(call.external_number) == e164):
                call.customer_id, call.matches = customer_id, 1
                self.writer.save_call(call)
                log.info("call %s linked to customer %d from the web", call.uuid, customer_id)

    def _reload_employees(self) -> None:
        """Refresh the employee snapshot every [database] employee_reload: changes made elsewhere (another daemon's
        pages or API, `screenpop import employees`, SQL) reach the cards and the number rules without a restart."""
        while not self._stopped.wait(self.config.database.employee_reload):
            try:
                guarded(self.db, self.staff.load)
            except DatabaseUnreachable:
                continue  # logged once for the whole outage
            except peewee.DatabaseError as exc:
                log.warning("could not reload employees: %s", exc)
                continue
            self._apply_extensions()

    def _employees_changed(self) -> None:
        """An employee was added, changed or deleted through this daemon's pages or API: the snapshot is read again
        now, on the database worker after the change's own step, so the next pop names them as they are now."""
        try:
            self.worker.run(self.staff.load)
        except peewee.DatabaseError as exc:
            log.warning("employee change saved, but not yet in the employee snapshot (%s); the next reload, within "
                        "%g s, takes it", exc, self.config.database.employee_reload)
            return
        self._apply_extensions()

    def _apply_extensions(self) -> None:
        """After the snapshot was read: the number rules (and the lookup built on them) follow the active extensions."""
        rules = self._number_rules()
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
        self._esl_up.set()
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
        if self._stopped.is_set():
            log.info("FreeSWITCH connection closed for the stop: %d event(s) received, %d tracked; %d call(s) in "
                     "progress stay open in the database and are checked with FreeSWITCH at the next start",
                     self.esl.events_received, self.esl.events_dispatched, len(self.tracker.calls))
        else:
            log.warning("FreeSWITCH connection lost with %d call(s) in progress; they are checked on reconnect",
                        len(self.tracker.calls))

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Follow FreeSWITCH first (the writer, the ESL connection, the reloader), then load and start HTTP once the
        first connection attempt is over or FIRST_FOLLOW_SECONDS passed: Flask and the pages cost more CPU than all
        the rest of the start, and calls must not wait for them. With the node election, HTTP is loaded before the
        election starts instead: loading it holds the hub for a second or more on a loaded machine, and the lock
        session must ping within [cluster] hang_timeout. A port in use or a bad certificate stops the start."""
        if self.election is None:
            self._resume_open_calls(load_open_calls(self.db, self.node))  # its check of stored CDRs waits for the worker
        self.worker.start()
        self.push.start()
        if self.writer.on_queued is not None:
            self.writer.reserve_ids()  # before the first event: pops go out with their ids before they are stored
        self._greenlets = [gevent.spawn(self.writer.run), gevent.spawn(self._reload_employees),
                           gevent.spawn(self.cdr.prune_forever, self._stopped),
                           gevent.spawn(self.keeper.run, self._stopped)]
        if self.listener is not None:
            self.listener.start()
        http = None
        if self.election is not None:
            http = self._load_http()
            self.election.start()
            first = [self.esl.first_attempt, self._standby]  # a standby never connects
        else:
            self.esl.start()
            if self.analyser is not None:
                self.analyser.start()
            first = [self.esl.first_attempt]
        gevent.wait(first, timeout=FIRST_FOLLOW_SECONDS, count=1)
        if self._stopped.is_set():  # SIGTERM meanwhile
            return
        http = http or self._load_http()
        try:
            http.start()
        except (ConfigError, OSError) as exc:
            self._http_failed(exc)
        self.http = http  # only once listening: stop() must not stop a server that never started
        self._greenlets.append(gevent.spawn(self._report_to_systemd))
        fs = self.config.freeswitch
        log.info("screenpop daemon started: FreeSWITCH %s:%d, database %s", fs.host, fs.port, self._db_label())

    def _load_http(self) -> HttpServer:
        """The HTTP side built (not listening yet); a bad certificate stops the start."""
        try:
            return self._http_server()
        except (ConfigError, OSError) as exc:
            self._http_failed(exc)

    def _http_failed(self, exc: ConfigError | OSError) -> NoReturn:
        self.stop()
        what = f"[http] listen {self.config.http.listen}: {exc.strerror or exc}" if isinstance(exc, OSError) else exc
        raise SystemExit(f"screenpop: {what}") from None

    def _http_server(self) -> HttpServer:
        """The HTTP side, imported only now (Flask, the pages, the photos: not needed to follow calls)."""
        from screenpop.daemon.customers.photos import Photos
        from screenpop.daemon.pbx.originate import Originator
        from screenpop.daemon.web.server import HttpServer

        originator = Originator(self.esl, self.config.originate, lambda: self.numbers)
        return HttpServer(self.config.http, self.push, Photos(self.config.database.resolved_photo_dir()), self.config.web,
                          on_link=self._customer_linked, on_employees_changed=self._employees_changed,
                          zone=local_zone(self.config.analytics.timezone),
                          cdr_intake=self.cdr, originator=originator, sources=self.sources,
                          analytics=self.config.analytics,
                          analysis=self.analyser.status if self.analyser is not None else None,
                          recordings=self.config.recordings,
                          directory=self._directory())

    def _directory(self) -> Directory | None:
        """The organisation's LDAP people sign in with, or None when [ldap] is off (then ldap3 is never imported)."""
        if not self.config.ldap.enabled:
            return None
        from screenpop.daemon.auth.directory import Directory

        return Directory(self.config.ldap)

    def _report_to_systemd(self) -> None:
        """READY=1 once HTTP listens and FreeSWITCH is subscribed, or after [freeswitch] startup_wait anyway
        (a PBX rebooting must not fail the unit: the daemon keeps reconnecting); then WATCHDOG=1 and STATUS=
        from this greenlet of the hub, so a hub blocked for longer than the watchdog interval misses its pings."""
        tick = min(self.notify.watchdog_interval or STATUS_SECONDS, STATUS_SECONDS)
        wait = self.config.freeswitch.startup_wait
        self.notify.extend_timeout(wait + 30)
        self.notify.status(self._status())
        deadline = time.monotonic() + wait
        while not self._esl_up.wait(max(0.0, min(tick, deadline - time.monotonic()))):
            self.notify.watchdog()
            if time.monotonic() >= deadline:
                log.warning("FreeSWITCH %s not reached within %g s; reporting ready anyway and retrying",
                            self.esl.address, wait)
                break
        self.notify.ready(self._status())
        while not self._stopped.wait(tick):
            self.notify.watchdog()
            self.notify.status(self._status())

    def _status(self) -> str:
        """One line for `systemctl status`: the FreeSWITCH link, calls in progress, streams, queued writes."""
        if self.election is not None and not self.election.holding:
            link = f"standby for node {self.node}"
        elif self.esl.connected:
            link = f"FreeSWITCH {self.esl.address} connected"
        else:
            link = f"waiting for FreeSWITCH {self.esl.address}" + (f" ({self.esl.last_error})" if self.esl.last_error else "")
        streams = sum(len(subs) for subs in self.push.subscribers.values())
        analysis = ""
        if self.analyser is not None:
            st = self.analyser.status()
            analysis = f", {st['queued'] + st['waiting']} recording(s) to analyse"
        return (f"{link}; {len(self.tracker.calls)} call(s) in progress, {streams} stream(s) open, "
                f"{self.writer.pending} write(s) queued{analysis}")

    def reload(self, load: Callable[[], Config]) -> None:
        """SIGHUP: apply the log level, [numbers] and [pbx] from the file again, with calls and FreeSWITCH kept up;
        a file that does not load leaves the running configuration as it was."""
        self.notify.reloading()
        try:
            new = load()
            self.staff.load()
            numbers = self._number_rules(new.numbers)
        except (ConfigError, ValueError, peewee.DatabaseError) as exc:
            log.error("configuration not reloaded, the running one stays: %s", exc)
        else:
            for option in _needs_restart(self.config, new):
                log.warning("%s changed: needs a restart to take effect", option)
            for section in RELOADABLE:
                setattr(self.config, section, getattr(new, section))
            logging.getLogger().setLevel(new.log.level.upper())
            self.numbers = numbers
            self.lookup = Lookup(self.db, numbers)
            self.tracker.rules = DirectionRules(
                trunk_profiles=frozenset(new.pbx.trunk_profiles),
                trunk_contexts=frozenset(new.pbx.trunk_contexts),
                is_extension=self.tracker.rules.is_extension,
            )
            log.info("configuration reloaded: log level %s, [numbers] and [pbx] rules applied to new calls", new.log.level)
        finally:
            self.notify.ready(self._status())

    def _db_label(self) -> str:
        url = self.config.database.resolved_url()
        return url.split("@")[-1] if "@" in url else url

    def stop(self) -> None:
        """Stop reading from FreeSWITCH, track every event already read, write everything queued, close the
        database; exit status EXIT_NOT_WRITTEN if the writes could not all be done."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.notify.stopping(f"stopping: writing {self.writer.pending} queued event(s)")
        log.info("stopping: closing the push streams and the FreeSWITCH connection, writing %d queued event(s)", self.writer.pending)
        if self.http is not None:
            self.http.stop()
        self.esl.stop(timeout=DRAIN_SECONDS)
        self.tracker.settle(utcnow())
        if not self.writer.stop(timeout=WRITE_SECONDS):
            log.error("could not write %d queued event(s) within %g s before exit: they are lost (kept nowhere), and "
                      "the calls they belong to are missing or incomplete in the database", self.writer.pending,
                      WRITE_SECONDS)
            self._exit_status = EXIT_NOT_WRITTEN
        if self.election is not None:
            self.election.stop()  # after the last write: a standby takes over only now
        if self.listener is not None:
            self.listener.stop()
        if self.analyser is not None:
            self.analyser.stop()
        self.push.stop()
        self.worker.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        gevent.killall(self._greenlets, timeout=2)
        self.db.close()
        log.info("stopped")
        self._done.set()

    def serve_forever(self, reload: Callable[[], Config] | None = None) -> int:
        """Run until SIGTERM or SIGINT; SIGHUP reloads with reload() if given. Exit status 0 after a clean stop,
        EXIT_NOT_WRITTEN if queued writes were lost, 1 after another daemon took this node."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, lambda: gevent.spawn(self.stop))
        if reload is not None:
            gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(self.reload, reload))
        self.start()
        self._done.wait()
        return self._exit_status
