"""The `screenpop` command: one entry point, one subcommand per job.

It speaks the terminal's language (LANGUAGE, LC_ALL, LC_MESSAGES, LANG), else [i18n] default_language of the
configuration it is given, and `screenpop daemon` that default alone (docs/i18n.md): its help, argparse's own words,
its messages and the configuration's errors come from the screenpop catalogue.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from screenpop.daemon import i18n
from screenpop.daemon.config import ConfigError, load
from screenpop.daemon.i18n import gettext as _, gettext_noop
from screenpop.daemon.logformat import JournalFormatter, TerminalFormatter, printable, under_journald
from screenpop.daemon.reports.export import BIDI

if TYPE_CHECKING:  # db.database imports peewee, which imports psycopg: only after gevent has patched (cmd_daemon)
    from screenpop.db.database import DatabaseUrlError

log = logging.getLogger("screenpop")

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_JSON_UNSAFE = re.compile(f"[\\x7f-\\x9f{BIDI}]")  # json.dumps escapes C0 itself
ROLES = ["operator", "manager", "admin"]
# argparse's own words a person meets ("usage: ", "options", "error: "...): argparse looks them up with the gettext
# module's function it bound as `argparse._`, which main() points at our catalogue; listed here to be in it
ARGPARSE_WORDS = (
    gettext_noop("usage: "),
    gettext_noop("positional arguments"),
    gettext_noop("options"),
    gettext_noop("show this help message and exit"),
    gettext_noop("%(prog)s: error: %(message)s\n"),
    gettext_noop("the following arguments are required: %s"),
    gettext_noop("argument %(argument_name)s: %(message)s"),
    gettext_noop("invalid choice: %(value)r (choose from %(choices)s)"),
    gettext_noop("invalid %(type)s value: %(value)r"),
    gettext_noop("unrecognized arguments: %s"),
    gettext_noop("expected one argument"),
    gettext_noop("ambiguous option: %(option)s could match %(matches)s"),
)


def setup_logging(level: str) -> None:
    """Plain lines on stderr: under journald with a priority prefix and its timestamps, elsewhere with ours."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter() if under_journald() else TerminalFormatter())
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


def parse_when(text: str, zone: dt.tzinfo | None = None) -> dt.datetime:
    """A point in time for --since/--until as naive UTC: ISO date or date-time (read in zone, default UTC), or a
    span back from now like 2h, 7d."""
    m = _RELATIVE.match(text.strip())
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if m:
        return now - dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(_("not a time: %(text)s (use 2026-11-26, 2026-11-26T08:00 or 2h / 7d)",
                                           text=repr(text))) from None
    if value.tzinfo is None and zone is not None:
        value = value.replace(tzinfo=zone)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def printable_json(value: object, **kwargs) -> str:
    """value as JSON for a terminal: C1 controls and bidi characters as \\u escapes, so the same JSON value."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False, **kwargs))


def fail(message: str) -> SystemExit:
    """The exit of a command that cannot go on: its message, already in the reader's language, after the name."""
    return SystemExit(f"screenpop: {message}")


def said(exc: ConfigError | DatabaseUrlError) -> str:
    """A configuration or database URL error in the language of the moment (raised below daemon/i18n.py, so they
    carry their msgid and its values)."""
    return _(exc.message, **exc.variables)


def _load_config(path: str | None):
    try:
        config = load(path)
    except ConfigError as exc:
        raise fail(said(exc)) from None
    i18n.set_default(config.i18n.default_language)
    return config


def _connect(config):
    from screenpop.db.database import DatabaseUrlError, open_database

    try:
        return open_database(config.database.resolved_url())
    except DatabaseUrlError as exc:
        raise fail(f"[database] url: {said(exc)}") from None


def _open_db(config):
    from screenpop.db.migrations import migrate

    db = _connect(config)
    migrate(db)
    return db


# ---- subcommands -------------------------------------------------------------------------


def cmd_daemon(args: argparse.Namespace) -> int:
    """Follow FreeSWITCH and record calls until stopped."""
    import peewee

    from screenpop.daemon.runtime import Daemon
    from screenpop.db.database import DatabaseUrlError

    config = _load_config(args.config)
    setup_logging(args.log_level or config.log.level)
    try:
        daemon = Daemon(config)
    except (ConfigError, DatabaseUrlError) as exc:
        raise fail(said(exc)) from None
    except peewee.OperationalError as exc:
        raise fail(_("cannot open the database: %(reason)s", reason=str(exc)).rstrip()) from None

    def reload_config():
        """SIGHUP: the file again (ConfigError if it does not load); --log-level still wins."""
        new = load(args.config)
        if args.log_level:
            new.log.level = args.log_level
        return new

    return daemon.serve_forever(reload=reload_config)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the database schema up to date."""
    from screenpop.db.migrations import current_version, migrate

    config = _load_config(args.config)
    setup_logging(config.log.level)
    db = _connect(config)
    applied = migrate(db)
    if applied:
        print(_("schema version %(version)s (applied %(applied)s)", version=current_version(db),
                applied=", ".join(map(str, applied))))
    else:
        print(_("schema version %(version)s (up to date)", version=current_version(db)))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import customers, employees, orders (CSV) or photos (a folder); bad rows are reported, the rest imports."""
    from screenpop.daemon.customers import importer
    from screenpop.db import audit
    from screenpop.db.numbers import NumberRules

    config = _load_config(args.config)
    setup_logging(config.log.level)
    _open_db(config)
    actor = audit.Actor(name=f"CSV import of {Path(args.path).name}"[:200])  # who the audit trail names
    if args.kind == "customers":
        report = audit.acting(actor, importer.import_customers)(args.path, NumberRules.from_config(config.numbers))
    elif args.kind == "employees":
        report = audit.acting(actor, importer.import_employees)(args.path)
    elif args.kind == "orders":
        report = audit.acting(actor, importer.import_orders)(args.path)
    else:
        photo_dir = Path(args.photo_dir) if args.photo_dir else config.database.resolved_photo_dir()
        report = importer.import_photos(args.path, photo_dir)
    print(_("%(kind)s: %(created)s created, %(updated)s updated, %(unchanged)s unchanged, %(skipped)s skipped",
            kind=args.kind, created=report.created, updated=report.updated, unchanged=report.unchanged,
            skipped=report.skipped))
    for line, message in report.errors:
        text = printable(str(message))
        print("  " + (_("line %(line)s: %(error)s", line=line, error=text) if line else text), file=sys.stderr)
    return 1 if report.errors else 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export customers or orders as CSV with their custom fields, in the columns `screenpop import` reads."""
    from screenpop.daemon.customers import exporter

    config = _load_config(args.config)
    setup_logging(config.log.level)
    db = _open_db(config)
    write = exporter.export_customers if args.kind == "customers" else exporter.export_orders
    if args.out in (None, "-"):
        count = write(db, sys.stdout)
    else:
        with open(args.out, "w", encoding="utf-8", newline="") as out:
            count = write(db, out)
    print(_("%(kind)s: %(count)s exported", kind=args.kind, count=count), file=sys.stderr)
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    """List recorded calls, newest last."""
    from screenpop.daemon.push.layout import DIRECTIONS
    from screenpop.daemon.reports.callrecords import call_records

    config = _load_config(args.config)
    _open_db(config)
    records = call_records(since=args.since, until=args.until, extension=args.extension, limit=args.limit)
    if args.json or args.format == "json":
        for record in records:
            print(printable_json(record))
        return 0
    if args.format == "csv":
        from screenpop.daemon.reports.export import write_csv

        write_csv(records, sys.stdout)
        return 0
    for r in records:
        who = r["answered_by"] or r["from_extension"] or ",".join(r["missed_by"]) or "-"
        party = r["external_number"] or (",".join(r["extensions_rung"]) if r["direction"] == "INTERNAL" else "")
        name = r["customer"]["company"] or r["customer"]["name"] if r["customer"] else r["external_name"]
        flag = _("MISSED") if r["missed"] else ""
        direction = str(DIRECTIONS.get(r["direction"], r["direction"]))
        print(
            f"{r['started_at'][:19].replace('T', ' ')}  {direction:<8}  {printable(party):<16}  "
            f"{printable(name)[:30]:<30}  {printable(who):<6}  {int(r['talk_seconds'] or 0):>5}s  {flag}".rstrip()
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Call analytics for a period in the call centre's time zone: employees, customers, categories, missed, load,
    daily, service, numbers, peaks, unknown_callers, and from the recordings conversation_employees,
    conversation_customers, alerts; any figures beside another period (--compare)."""
    from screenpop.daemon.reports import analytics, catalog
    from screenpop.daemon.reports.export import json_value, load_grid, text_table, write_csv

    config = _load_config(args.config)
    _open_db(config)
    zone = analytics.local_zone(config.analytics.timezone)
    try:
        since = parse_when(args.since, zone) if args.since else parse_when("7d")
        until = parse_when(args.until, zone) if args.until else parse_when("0h")
    except argparse.ArgumentTypeError as exc:
        raise fail(str(exc)) from None
    if args.report and args.report not in catalog.REPORTS:
        raise fail(_("--report: one of %(reports)s", reports=", ".join(catalog.REPORTS)))
    names = [args.report] if args.report else list(catalog.REPORTS)
    if args.format == "csv" and len(names) > 1:
        raise fail(_("CSV holds one report: choose it with --report"))
    if args.compare and args.report and args.report not in catalog.COMPARABLE:
        raise fail(_("the %(report)s report lists calls, not figures: it has no --compare", report=args.report))
    rules = config.analytics
    period = analytics.Period(since, until, zone, args.extension or None, float(rules.service_level_seconds),
                              float(rules.short_abandon_seconds))
    results = {name: catalog.run(name, period, args.compare if name in catalog.COMPARABLE else None)
               for name in names}
    if args.format == "json":
        out = {name: [{k: json_value(v) for k, v in row.items()} for row in rows] for name, rows in results.items()}
        print(printable_json(out, indent=1))
    elif args.format == "csv":
        write_csv(results[names[0]], sys.stdout)
    else:
        formats = i18n.Formats.for_language(i18n.language(), config.card, zone)
        for name, rows in results.items():
            print(f"== {name} ==" + (" " + _("(inbound calls per local hour)") if name == "load" else ""))
            print(load_grid(rows, formats) if name == "load" else text_table(rows, printable))
            print()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Create, list or revoke API tokens for the push stream and the API."""
    from screenpop.daemon.auth import tokens

    config = _load_config(args.config)
    _open_db(config)
    if args.action == "create":
        if args.role == "operator" and not args.extension:
            raise fail(_("an operator token needs --extension"))
        row, clear = tokens.create(args.extension, role=args.role, name=args.name)
        print(clear)
        if row.extension:
            print(_("token %(id)s (%(role)s, extension %(extension)s) created; this is the only time it is shown",
                    id=row.id, role=row.role, extension=row.extension), file=sys.stderr)
        else:
            print(_("token %(id)s (%(role)s) created; this is the only time it is shown", id=row.id, role=row.role),
                  file=sys.stderr)
        return 0
    if args.action == "list":
        for t in tokens.list_tokens():
            state = _("revoked %(when)s", when=t.revoked_at.strftime("%Y-%m-%d %H:%M")) if t.revoked_at else _("active")
            print(f"{t.id:>4}  {t.role:<8}  {t.extension or '-':<8}  {t.created_at:%Y-%m-%d %H:%M}  {state:<24}  {printable(t.name)}".rstrip())
        return 0
    if not tokens.revoke(args.id):
        print("screenpop: " + _("no active token %(id)s", id=args.id), file=sys.stderr)
        return 1
    print(_("token %(id)s revoked", id=args.id))
    return 0


def _new_password(args: argparse.Namespace) -> str:
    """The password for `user create` / `user passwd`: one line from standard input with --password-stdin, else
    typed twice at a prompt that does not echo it."""
    import getpass

    from screenpop.daemon.auth import people

    if args.password_stdin:
        clear = sys.stdin.readline().rstrip("\r\n")
    else:
        clear = getpass.getpass(_("Password: "))
        if getpass.getpass(_("Again: ")) != clear:
            raise fail(_("the two passwords differ; nothing changed"))
    try:
        return people.hash_password(clear)
    except people.PeopleError as exc:
        raise fail(str(exc.message)) from None


def cmd_user(args: argparse.Namespace) -> int:
    """People who sign in to the web pages: create (the first admin too), list, change, reset passwords, disable."""
    from screenpop.daemon.auth import people
    from screenpop.db import audit

    config = _load_config(args.config)
    db = _open_db(config)
    actor = audit.Actor(name="the command line")  # stored on the audit trail as written, like a person's name

    def run(fn, *fn_args):
        with db.atomic():
            return audit.acting(actor, fn)(*fn_args)

    try:
        if args.action == "list":
            locked = run(people.locked, config.web)
            for p in run(people.listing, i18n.language()):  # A to Z by name in the terminal's language
                state = (_("disabled %(when)s", when=p.disabled_at.strftime("%Y-%m-%d")) if p.disabled_at else
                         _("locked until %(when)s UTC", when=locked[p.login].strftime("%H:%M")) if p.login in locked
                         else _("active"))
                print(f"{p.id:>4}  {p.login:<20}  {p.role:<8}  {p.extension or '-':<8}  {state:<24}  "
                      f"{printable(p.name)}".rstrip())
            return 0
        if args.action == "create":
            body = {"login": args.login, "name": args.name, "role": args.role}
            if args.extension is not None:
                body["extension"] = args.extension
            if args.language is not None:
                body["language"] = args.language
            fields = people.person_fields(body, creating=True)
            person = run(people.create, fields, _new_password(args))
            if person.extension:
                print(_("%(login)s (%(role)s, extension %(extension)s) created; they sign in on the web pages' /signin",
                        login=person.login, role=person.role, extension=person.extension))
            else:
                print(_("%(login)s (%(role)s) created; they sign in on the web pages' /signin", login=person.login,
                        role=person.role))
            return 0
        person = run(people.by_login, args.login)
        if person is None:
            raise fail(_("no person with the login %(login)s", login=repr(printable(args.login))))
        if args.action == "passwd":
            ended = run(people.set_password, person.id, _new_password(args))
            print(i18n.ngettext("password of %(login)s changed; %(num)s session ended",
                                "password of %(login)s changed; %(num)s sessions ended", ended, login=person.login))
        elif args.action == "set":
            body = {k: v for k, v in (("name", args.name), ("role", args.role), ("extension", args.extension),
                                      ("language", args.language)) if v is not None}
            changed = run(people.update, person.id, people.person_fields(body, creating=False))
            print(_("%(login)s: %(role)s, extension %(extension)s, %(name)s", login=changed.login, role=changed.role,
                    extension=changed.extension or "-", name=printable(changed.name)))
        elif args.action == "disable":
            done = run(people.set_disabled, person.id, True)
            print(_("%(login)s disabled", login=person.login) if done else
                  _("%(login)s was disabled already", login=person.login))
        elif args.action == "enable":
            done = run(people.set_disabled, person.id, False)
            print(_("%(login)s enabled", login=person.login) if done else
                  _("%(login)s was enabled already", login=person.login))
        elif args.action == "unlock":
            print(_("%(login)s unlocked", login=person.login) if run(people.unlock, person.login) else
                  _("%(login)s was not locked", login=person.login))
    except people.PeopleError as exc:
        raise fail(str(exc.message)) from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Seeded customers, the simulator generating calls, the daemon recording them, pops printed as they happen."""
    from screenpop.daemon import demo

    setup_logging("warning" if not args.verbose else "info")
    return demo.run(args)


# ---- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand, its words in the language of the moment."""
    parser = argparse.ArgumentParser(prog="screenpop", description=_("Screen-pop for FreeSWITCH call centres."))
    sub = parser.add_subparsers(dest="command", required=True, metavar=_("COMMAND"))

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", metavar=_("FILE"), default=os.environ.get("SCREENPOP_CONFIG"),
                       help=_("TOML configuration file (default: $SCREENPOP_CONFIG, else built-in defaults)"))

    p = sub.add_parser("daemon", help=_("follow FreeSWITCH and record calls until stopped"))
    config_arg(p)
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help=_("override [log] level"))
    p.set_defaults(func=cmd_daemon, gevent=True)

    sub.add_parser("simulate", help=_("the FreeSWITCH simulator: replay a capture or generate calls (see simulate --help)"))

    p = sub.add_parser("migrate", help=_("bring the database schema up to date"))
    config_arg(p)
    p.set_defaults(func=cmd_migrate, gevent=False)

    p = sub.add_parser("import", help=_("import customers, employees, orders (CSV) or photos (a folder); bad rows are "
                                        "reported, the rest imports"))
    config_arg(p)
    p.add_argument("kind", choices=["customers", "employees", "orders", "photos"])
    p.add_argument("path", metavar=_("PATH"), help=_("CSV file, or the folder of photos named <external_id>.jpg|png|webp"))
    p.add_argument("--photo-dir", metavar=_("FOLDER"), help=_("where imported photos are stored (default: <state dir>/photos)"))
    p.set_defaults(func=cmd_import, gevent=False)

    p = sub.add_parser("export", help=_("export customers or orders as CSV with their custom fields, in the columns "
                                        "`screenpop import` reads"))
    config_arg(p)
    p.add_argument("kind", choices=["customers", "orders"])
    p.add_argument("--out", "-o", metavar=_("FILE"), help=_("write here (default: standard output)"))
    p.set_defaults(func=cmd_export, gevent=False)

    p = sub.add_parser("calls", help=_("list recorded calls, newest last"))
    config_arg(p)
    p.add_argument("--json", action="store_true", help=_("one JSON object per call"))
    p.add_argument("--since", type=parse_when, metavar=_("TIME"), help=_("calls started at or after (ISO time in UTC, or 2h, 7d…)"))
    p.add_argument("--until", type=parse_when, metavar=_("TIME"), help=_("calls started before"))
    p.add_argument("--extension", metavar=_("EXTENSION"), help=_("only calls this extension took part in"))
    p.add_argument("--limit", type=int, metavar="N", help=_("at most this many (the newest)"))
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help=_("table (default), csv (spreadsheet-safe) or json (as --json)"))
    p.set_defaults(func=cmd_calls, gevent=False)

    p = sub.add_parser("report", help=_("call analytics for a period in the call centre's time zone; any figures "
                                        "beside another period (--compare)"))
    config_arg(p)
    p.add_argument("--report", metavar=_("REPORT"), help=_("one report (default: all): %(reports)s", reports="employees, customers, categories, "
                                      "missed, load, daily, service, numbers, queues, peaks, unknown_callers, "
                                      "conversation_employees, conversation_customers, alerts"))
    p.add_argument("--since", metavar=_("TIME"), help=_("calls started at or after: local date or time ([analytics] timezone), or 2h, 7d "
                                     "(default 7d)"))
    p.add_argument("--until", metavar=_("TIME"), help=_("calls started before (default: now)"))
    p.add_argument("--extension", metavar=_("EXTENSION"), help=_("only this extension's calls"))
    p.add_argument("--compare", choices=["previous", "year"],
                   help=_("each figure beside the previous period's, or the same period's a year before"))
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help=_("table (default; the column names are the report's keys), csv or json"))
    p.set_defaults(func=cmd_report, gevent=False)

    p = sub.add_parser("token", help=_("create, list or revoke API tokens for the push stream and the API"))
    config_arg(p)
    actions = p.add_subparsers(dest="action", required=True, metavar=_("ACTION"))

    def action(name: str, help: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help)
        a.add_argument("--config", "-c", metavar=_("FILE"), default=argparse.SUPPRESS, help=_("as for `token`"))
        return a

    a = action("create", _("create a token and print it (once)"))
    a.add_argument("--extension", metavar=_("EXTENSION"), help=_("the operator's extension (required for operator tokens)"))
    a.add_argument("--role", choices=ROLES, default="operator", help=_("default operator"))
    a.add_argument("--name", default="", metavar=_("NAME"), help=_("a label, e.g. the workstation"))
    action("list", _("every token: id, role, extension, created, revoked"))
    a = action("revoke", _("revoke a token by id; its open streams end"))
    a.add_argument("id", type=int, metavar="ID")
    p.set_defaults(func=cmd_token, gevent=False)

    p = sub.add_parser("user", help=_("people who sign in to the web pages: create (the first admin too), list, change, "
                                      "reset passwords, disable"))
    config_arg(p)
    actions = p.add_subparsers(dest="action", required=True, metavar=_("ACTION"))

    def user_action(name: str, help: str, login: bool = True) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help)
        a.add_argument("--config", "-c", metavar=_("FILE"), default=argparse.SUPPRESS, help=_("as for `user`"))
        if login:
            a.add_argument("login", metavar=_("LOGIN"))
        return a

    def password_arg(a: argparse.ArgumentParser) -> None:
        a.add_argument("--password-stdin", action="store_true",
                       help=_("read the password from standard input (one line) instead of asking twice"))

    a = user_action("create", _("add a person; asks for their password"))
    a.add_argument("--name", required=True, metavar=_("NAME"), help=_("their name as the pages and the audit trail show it"))
    a.add_argument("--role", choices=ROLES, default="operator", help=_("default operator"))
    a.add_argument("--extension", metavar=_("EXTENSION"), help=_("the extension their calls ring on (required for operators)"))
    a.add_argument("--language", choices=["en", "is"], help=_("the pages' language for them (default: the browser's)"))
    password_arg(a)
    user_action("list", _("everyone: id, login, role, extension, state, name"), login=False)
    a = user_action("passwd", _("set a new password (their sessions end)"))
    password_arg(a)
    a = user_action("set", _("change name, role, extension or language"))
    a.add_argument("--name", metavar=_("NAME"))
    a.add_argument("--role", choices=ROLES)
    a.add_argument("--extension", metavar=_("EXTENSION"), help=_('"" for none'))
    a.add_argument("--language", choices=["en", "is", ""], help=_('"" for the browser\'s'))
    user_action("disable", _("they can no longer sign in; their sessions end"))
    user_action("enable", _("they can sign in again"))
    user_action("unlock", _("lift a lock after failed sign-ins at once"))
    p.set_defaults(func=cmd_user, gevent=False)

    p = sub.add_parser("demo", help=_("seeded customers, the simulator generating calls, the daemon recording them, pops "
                                      "printed as they happen"))
    p.add_argument("--dir", metavar=_("FOLDER"), help=_("where the demo keeps its database and config (default: a new temporary folder)"))
    p.add_argument("--rate", type=float, default=0.5, metavar="N", help=_("calls per second (default 0.5)"))
    p.add_argument("--calls", type=int, default=0, metavar="N", help=_("stop after this many calls (default: run until Ctrl-C)"))
    p.add_argument("--port", type=int, default=0, metavar=_("PORT"), help=_("simulator port (default: a free one)"))
    p.add_argument("--verbose", action="store_true", help=_("show the daemon's log too"))
    p.set_defaults(func=cmd_demo, gevent=True)

    sub.add_parser("tray", help=_("the workstation tray client: a pop for every call to this operator (see tray --help)"))
    return parser


def choose_language(argv: list[str], env: dict[str, str]) -> None:
    """Speak the terminal's language, else [i18n] default_language of the configuration the command names (--config,
    else $SCREENPOP_CONFIG): chosen before the arguments are read, so --help and usage errors speak it too."""
    early = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    early.add_argument("--config", "-c", default=env.get("SCREENPOP_CONFIG"))
    try:
        path = early.parse_known_args(argv)[0].config
        i18n.set_default(load(path).i18n.default_language)
    except (argparse.ArgumentError, ConfigError):  # the command itself says what is wrong with it
        pass
    i18n.set_language(i18n.from_environment(env))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `screenpop` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        from gevent import monkey

        monkey.patch_all()
        from screenpop.simulator import cli as simulator

        return simulator.main(argv[1:])
    if argv[:1] == ["tray"]:  # the workstation client has a command line of its own (the PyInstaller bundle's)
        from screenpop.tray import cli as tray

        return tray.main(argv[1:])
    choose_language(argv, dict(os.environ))
    argparse._ = i18n.gettext  # argparse's own words (ARGPARSE_WORDS) from our catalogue, in the language chosen
    args = build_parser().parse_args(argv)
    if args.command == "daemon":  # the service ignores its environment (systemd's LANG): it speaks [i18n]'s language
        i18n.set_language(None)
    if args.gevent:
        from gevent import monkey

        monkey.patch_all()
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
