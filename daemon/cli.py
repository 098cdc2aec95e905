"""The `screenpop` command: one entry point, one subcommand per job."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from pathlib import Path

from screenpop.daemon.logformat import JournalFormatter, TerminalFormatter, printable, under_journald
from screenpop.daemon.reports.export import BIDI

log = logging.getLogger("screenpop")

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_JSON_UNSAFE = re.compile(f"[\\x7f-\\x9f{BIDI}]")  # json.dumps escapes C0 itself


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
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use 2026-11-26, 2026-11-26T08:00 or 2h / 7d)") from None
    if value.tzinfo is None and zone is not None:
        value = value.replace(tzinfo=zone)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def printable_json(value: object, **kwargs) -> str:
    """value as JSON for a terminal: C1 controls and bidi characters as \\u escapes, so the same JSON value."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False, **kwargs))


def _load_config(path: str | None):
    from screenpop.daemon.config import ConfigError, load

    from screenpop.daemon import i18n

    try:
        config = load(path)
    except ConfigError as exc:
        raise SystemExit(f"screenpop: {exc}") from None
    i18n.set_default(config.i18n.default_language)
    return config


def _open_db(config):
    from screenpop.db.database import DatabaseUrlError, open_database
    from screenpop.db.migrations import migrate

    try:
        db = open_database(config.database.resolved_url())
        migrate(db)
    except DatabaseUrlError as exc:
        raise SystemExit(f"screenpop: [database] url: {exc}") from None
    return db


# ---- subcommands -------------------------------------------------------------------------


def cmd_daemon(args: argparse.Namespace) -> int:
    """Follow FreeSWITCH and record calls until stopped."""
    import peewee

    from screenpop.daemon.config import ConfigError, load
    from screenpop.daemon.runtime import Daemon
    from screenpop.db.database import DatabaseUrlError

    config = _load_config(args.config)
    setup_logging(args.log_level or config.log.level)
    try:
        daemon = Daemon(config)
    except (ConfigError, DatabaseUrlError) as exc:
        raise SystemExit(f"screenpop: {exc}") from None
    except peewee.OperationalError as exc:
        raise SystemExit(f"screenpop: cannot open the database: {exc}".rstrip()) from None

    def reload_config():
        """SIGHUP: the file again (ConfigError if it does not load); --log-level still wins."""
        new = load(args.config)
        if args.log_level:
            new.log.level = args.log_level
        return new

    return daemon.serve_forever(reload=reload_config)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the database schema up to date."""
    from screenpop.db.database import open_database
    from screenpop.db.migrations import current_version, migrate

    config = _load_config(args.config)
    setup_logging(config.log.level)
    db = open_database(config.database.resolved_url())
    applied = migrate(db)
    print(f"schema version {current_version(db)}" + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)"))
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
    print(
        f"{args.kind}: {report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.skipped} skipped"
    )
    for line, message in report.errors:
        print(f"  line {line}: {printable(message)}" if line else f"  {printable(message)}", file=sys.stderr)
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
    print(f"{args.kind}: {count} exported", file=sys.stderr)
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    """List recorded calls, newest last."""
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
        flag = "MISSED" if r["missed"] else ""
        print(
            f"{r['started_at'][:19].replace('T', ' ')}  {r['direction']:<8}  {printable(party):<16}  "
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
        raise SystemExit(f"screenpop: {exc}") from None
    if args.report and args.report not in catalog.REPORTS:
        raise SystemExit(f"screenpop: --report: one of {', '.join(catalog.REPORTS)}")
    names = [args.report] if args.report else list(catalog.REPORTS)
    if args.format == "csv" and len(names) > 1:
        raise SystemExit("screenpop: CSV holds one report: choose it with --report")
    if args.compare and args.report and args.report not in catalog.COMPARABLE:
        raise SystemExit(f"screenpop: the {args.report} report lists calls, not figures: it has no --compare")
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
        for name, rows in results.items():
            print(f"== {name} ==" + (" (inbound calls per local hour)" if name == "load" else ""))
            print(load_grid(rows) if name == "load" else text_table(rows, printable))
            print()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Create, list or revoke API tokens for the push stream and the API."""
    from screenpop.daemon.auth import tokens

    config = _load_config(args.config)
    _open_db(config)
    if args.action == "create":
        if args.role == "operator" and not args.extension:
            raise SystemExit("screenpop: an operator token needs --extension")
        row, clear = tokens.create(args.extension, role=args.role, name=args.name)
        print(clear)
        print(f"token {row.id} ({row.role}{', extension ' + row.extension if row.extension else ''}) created; "
              "this is the only time it is shown", file=sys.stderr)
        return 0
    if args.action == "list":
        for t in tokens.list_tokens():
            state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
            print(f"{t.id:>4}  {t.role:<8}  {t.extension or '-':<8}  {t.created_at:%Y-%m-%d %H:%M}  {state:<24}  {printable(t.name)}".rstrip())
        return 0
    if not tokens.revoke(args.id):
        print(f"screenpop: no active token {args.id}", file=sys.stderr)
        return 1
    print(f"token {args.id} revoked")
    return 0


def _new_password(args: argparse.Namespace) -> str:
    """The password for `user create` / `user passwd`: one line from standard input with --password-stdin, else
    typed twice at a prompt that does not echo it."""
    import getpass

    from screenpop.daemon.auth import people

    if args.password_stdin:
        clear = sys.stdin.readline().rstrip("\r\n")
    else:
        clear = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != clear:
            raise SystemExit("screenpop: the two passwords differ; nothing changed")
    try:
        return people.hash_password(clear)
    except people.PeopleError as exc:
        raise SystemExit(f"screenpop: {exc.message}") from None


def cmd_user(args: argparse.Namespace) -> int:
    """People who sign in to the web pages: create (the first admin too), list, change, reset passwords, disable."""
    from screenpop.daemon import i18n
    from screenpop.daemon.auth import people
    from screenpop.db import audit

    config = _load_config(args.config)
    db = _open_db(config)
    actor = audit.Actor(name="the command line")

    def run(fn, *fn_args):
        with db.atomic():
            return audit.acting(actor, fn)(*fn_args)

    try:
        if args.action == "list":
            locked = run(people.locked, config.web)
            for p in run(people.listing, i18n.language()):  # A to Z by name in the terminal's language
                state = (f"disabled {p.disabled_at:%Y-%m-%d}" if p.disabled_at else
                         f"locked until {locked[p.login]:%H:%M} UTC" if p.login in locked else "active")
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
            print(f"{person.login} ({person.role}{', extension ' + person.extension if person.extension else ''}) "
                  "created; they sign in on the web pages' /signin")
            return 0
        person = run(people.by_login, args.login)
        if person is None:
            raise SystemExit(f"screenpop: no person with the login {printable(args.login)!r}")
        if args.action == "passwd":
            ended = run(people.set_password, person.id, _new_password(args))
            print(f"password of {person.login} changed; {ended} session(s) ended")
        elif args.action == "set":
            body = {k: v for k, v in (("name", args.name), ("role", args.role), ("extension", args.extension),
                                      ("language", args.language)) if v is not None}
            changed = run(people.update, person.id, people.person_fields(body, creating=False))
            print(f"{changed.login}: {changed.role}, extension {changed.extension or '-'}, {printable(changed.name)}")
        elif args.action in ("disable", "enable"):
            done = run(people.set_disabled, person.id, args.action == "disable")
            print(f"{person.login} {args.action}d" if done else f"{person.login} was {args.action}d already")
        elif args.action == "unlock":
            print(f"{person.login} unlocked" if run(people.unlock, person.login) else f"{person.login} was not locked")
    except people.PeopleError as exc:
        raise SystemExit(f"screenpop: {exc.message}") from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Seeded customers, the simulator generating calls, the daemon recording them, pops printed as they happen."""
    from screenpop.daemon import demo

    setup_logging("warning" if not args.verbose else "info")
    return demo.run(args)


# ---- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="screenpop", description="Screen-pop for FreeSWITCH call centres.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", metavar="FILE", default=os.environ.get("SCREENPOP_CONFIG"),
                       help="TOML configuration file (default: $SCREENPOP_CONFIG, else built-in defaults)")

    p = sub.add_parser("daemon", help=cmd_daemon.__doc__)
    config_arg(p)
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override [log] level")
    p.set_defaults(func=cmd_daemon, gevent=True)

    sub.add_parser("simulate", help="the FreeSWITCH simulator: replay a capture or generate calls (see simulate --help)")

    p = sub.add_parser("migrate", help=cmd_migrate.__doc__)
    config_arg(p)
    p.set_defaults(func=cmd_migrate, gevent=False)

    p = sub.add_parser("import", help=cmd_import.__doc__)
    config_arg(p)
    p.add_argument("kind", choices=["customers", "employees", "orders", "photos"])
    p.add_argument("path", help="CSV file, or the folder of photos named <external_id>.jpg|png|webp")
    p.add_argument("--photo-dir", help="where imported photos are stored (default: <state dir>/photos)")
    p.set_defaults(func=cmd_import, gevent=False)

    p = sub.add_parser("export", help=cmd_export.__doc__)
    config_arg(p)
    p.add_argument("kind", choices=["customers", "orders"])
    p.add_argument("--out", "-o", metavar="FILE", help="write here (default: standard output)")
    p.set_defaults(func=cmd_export, gevent=False)

    p = sub.add_parser("calls", help=cmd_calls.__doc__)
    config_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per call")
    p.add_argument("--since", type=parse_when, help="calls started at or after (ISO time in UTC, or 2h, 7d…)")
    p.add_argument("--until", type=parse_when, help="calls started before")
    p.add_argument("--extension", help="only calls this extension took part in")
    p.add_argument("--limit", type=int, help="at most this many (the newest)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="table (default), csv (spreadsheet-safe) or json (as --json)")
    p.set_defaults(func=cmd_calls, gevent=False)

    p = sub.add_parser("report", help=cmd_report.__doc__)
    config_arg(p)
    p.add_argument("--report", help="one report (default: all): employees, customers, categories, missed, load, "
                   "daily, service, numbers, queues, peaks, unknown_callers, conversation_employees, "
                   "conversation_customers, alerts")
    p.add_argument("--since", help="calls started at or after: local date or time ([analytics] timezone), or 2h, 7d "
                   "(default 7d)")
    p.add_argument("--until", help="calls started before (default: now)")
    p.add_argument("--extension", help="only this extension's calls")
    p.add_argument("--compare", choices=["previous", "year"],
                   help="each figure beside the previous period's, or the same period's a year before")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_report, gevent=False)

    p = sub.add_parser("token", help=cmd_token.__doc__)
    config_arg(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help)
        a.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS, help="as for `token`")
        return a

    a = action("create", "create a token and print it (once)")
    a.add_argument("--extension", help="the operator's extension (required for operator tokens)")
    a.add_argument("--role", choices=["operator", "manager", "admin"], default="operator", help="default operator")
    a.add_argument("--name", default="", help="a label, e.g. the workstation")
    action("list", "every token: id, role, extension, created, revoked")
    a = action("revoke", "revoke a token by id; its open streams end")
    a.add_argument("id", type=int)
    p.set_defaults(func=cmd_token, gevent=False)

    p = sub.add_parser("user", help=cmd_user.__doc__)
    config_arg(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def user_action(name: str, help: str, login: bool = True) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help)
        a.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS, help="as for `user`")
        if login:
            a.add_argument("login")
        return a

    def password_arg(a: argparse.ArgumentParser) -> None:
        a.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input (one line) instead of asking twice")

    a = user_action("create", "add a person; asks for their password")
    a.add_argument("--name", required=True, help="their name as the pages and the audit trail show it")
    a.add_argument("--role", choices=["operator", "manager", "admin"], default="operator", help="default operator")
    a.add_argument("--extension", help="the extension their calls ring on (required for operators)")
    a.add_argument("--language", choices=["en", "is"], help="the pages' language for them (default: the browser's)")
    password_arg(a)
    user_action("list", "everyone: id, login, role, extension, state, name", login=False)
    a = user_action("passwd", "set a new password (their sessions end)")
    password_arg(a)
    a = user_action("set", "change name, role, extension or language")
    a.add_argument("--name")
    a.add_argument("--role", choices=["operator", "manager", "admin"])
    a.add_argument("--extension", help='"" for none')
    a.add_argument("--language", choices=["en", "is", ""], help='"" for the browser\'s')
    user_action("disable", "they can no longer sign in; their sessions end")
    user_action("enable", "they can sign in again")
    user_action("unlock", "lift a lock after failed sign-ins at once")
    p.set_defaults(func=cmd_user, gevent=False)

    p = sub.add_parser("demo", help=cmd_demo.__doc__)
    p.add_argument("--dir", help="where the demo keeps its database and config (default: a new temporary folder)")
    p.add_argument("--rate", type=float, default=0.5, help="calls per second (default 0.5)")
    p.add_argument("--calls", type=int, default=0, help="stop after this many calls (default: run until Ctrl-C)")
    p.add_argument("--port", type=int, default=0, help="simulator port (default: a free one)")
    p.add_argument("--verbose", action="store_true", help="show the daemon's log too")
    p.set_defaults(func=cmd_demo, gevent=True)

    sub.add_parser("tray", help="the workstation tray client: a pop for every call to this operator (see tray --help)")
    return parser


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
    from screenpop.daemon import i18n

    args = build_parser().parse_args(argv)
    if args.command != "daemon":  # a person at a terminal: their language, else [i18n]'s (_load_config); the service's pops follow [i18n]
        i18n.set_language(i18n.from_environment(dict(os.environ)))
    if args.gevent:
        from gevent import monkey

        monkey.patch_all()
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
