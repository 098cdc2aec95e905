"""`screenpop demo`: demo data, the simulator generating calls (and their recordings), the daemon recording them, pops
printed live."""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import gevent
import gevent.event

from screenpop.daemon.auth import signin
from screenpop.daemon.auth.tokens import create as create_token
from screenpop.daemon.config import load
from screenpop.daemon.demo_data import seed
from screenpop.daemon import i18n
from screenpop.daemon.i18n import gettext as _, lazy_gettext, ngettext
from screenpop.daemon.logformat import printable
from screenpop.daemon.push.layout import DIRECTIONS
from screenpop.daemon.runtime import Daemon
from screenpop.db.models import CallEvent, Customer, Employee
from screenpop.db.numbers import NumberRules

DEMO_EXTENSIONS = "1001-1004"  # few operators, so the demo tray's operator gets every fourth call or so
TRAY_EXTENSION = "1001"
DEMO_LINK_SECONDS = 600  # the demo's admin sign-in link: time to read the banner first
# each pop's event and direction as the demo's lines name them, in the terminal's language
EVENTS = {"ringing": lazy_gettext("RINGING"), "dialing": lazy_gettext("DIALING"), "answered": lazy_gettext("ANSWERED"),
          "answered_elsewhere": lazy_gettext("ANSWERED_ELSEWHERE"), "missed": lazy_gettext("MISSED"),
          "transferred": lazy_gettext("TRANSFERRED"), "ended": lazy_gettext("ENDED")}

CONFIG = """\
# screenpop demo configuration (see docs/configuration.md for every option)
[freeswitch]
host = "127.0.0.1"
port = {port}
password = "ClueCon"

[database]
url = "sqlite:///{db}"
photo_dir = "{photos}"

[http]
listen = "127.0.0.1:{http_port}"

[numbers]
default_region = "IS"

[recordings]
roots = ["{recordings}"]

[log]
level = "warning"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _line(event: CallEvent, customer: Customer | None, operators: dict[str, str]) -> str:
    """One pop as the operator's card would sum it up."""
    who = f"{event.extension} {operators.get(event.extension, '')}".strip()
    if customer is not None:
        card = " · ".join(x for x in (customer.company, customer.name) if x)
        if customer.category != "regular":
            card += f" [{customer.category.upper()}]"
    elif event.matches > 1:
        card = _("%(count)s customers share this number", count=event.matches)
    elif event.direction == "INTERNAL":
        card = _("extension %(number)s %(name)s", number=event.peer_number, name=event.peer_name).strip()
    else:
        card = _("unknown caller %(name)s", name=event.peer_name).strip()
    number = event.peer_number if event.direction != "INTERNAL" else ""
    kind = str(EVENTS.get(event.event, event.event.upper()))
    direction = str(DIRECTIONS.get(event.direction, event.direction))
    return (
        f"{event.at:%H:%M:%S}  {who:<28.28}  {kind:<{_widest(EVENTS)}}  {direction:<{_widest(DIRECTIONS)}}  "
        f"{printable(number):<14}  {printable(card)}"
    )


def _widest(words: dict) -> int:
    """The length of the longest of words in the language of the moment: their column's width."""
    return max(len(str(word)) for word in words.values())


def _print_pops(stop: gevent.event.Event, language: str) -> None:
    """Each new pop as a line until stop is set, in language (the terminal's: a greenlet starts with none of its own)."""
    i18n.set_language(language)
    last = 0
    operators = dict(Employee.select(Employee.extension, Employee.name).tuples())
    while not stop.is_set():
        rows = list(CallEvent.select().where(CallEvent.id > last).order_by(CallEvent.id).limit(200))
        customers = {c.id: c for c in Customer.select().where(Customer.id.in_([r.customer_id for r in rows if r.customer_id]))}
        for row in rows:
            print(_line(row, customers.get(row.customer_id), operators), flush=True)
            last = row.id
        stop.wait(0.3)


def _write_secret(path: Path, secret: str) -> None:
    """secret in a file only its owner can read (mode 0600 whatever the umask, also when the file was there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fd, 0o600)
        fh.write(secret + "\n")


def _start_tray(folder: Path, http_port: int, verbose: bool) -> subprocess.Popen | None:
    """On a desktop (an X or Wayland display and a session bus), a tray for the demo operator; else None.

    Its token goes in a 0600 file (--token-file), never on the command line, which every local user can read in
    /proc/<pid>/cmdline."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return None
    _, token = create_token(TRAY_EXTENSION, name="demo tray")
    token_file = folder / "tray.token"
    _write_secret(token_file, token)
    return subprocess.Popen(
        [sys.executable, "-m", "screenpop.tray.cli", "--config", str(folder / "tray.toml"),
         "--server", f"http://127.0.0.1:{http_port}", "--extension", TRAY_EXTENSION, "--token-file", str(token_file)],
        stderr=None if verbose else subprocess.DEVNULL,
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C (or until --calls calls are done)."""
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="screenpop-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    port = args.port or _free_port()
    config_path = folder / "screenpop.toml"
    http_port = _free_port()
    config_path.write_text(
        CONFIG.format(port=port, db=(folder / "screenpop.db").resolve(), photos=(folder / "photos").resolve(), http_port=http_port,
                      recordings=(folder / "recordings").resolve()),
        encoding="utf-8",
    )
    config = load(config_path)
    daemon = Daemon(config)
    numbers_file = folder / "numbers.txt"
    if not Customer.select().exists():
        numbers = seed(NumberRules.from_config(config.numbers), folder / "photos")
        numbers_file.write_text("\n".join(numbers + ["+3545550100", "5551234", "anonymous"]) + "\n", encoding="utf-8")
    sim_cmd = [
        sys.executable, "-m", "screenpop.simulator.cli", "--generate", "--port", str(port),
        "--rate", str(args.rate), "--numbers", str(numbers_file), "--extensions", DEMO_EXTENSIONS, "--seed", "7", "--linger", "2",
        "--record-dir", str((folder / "recordings").resolve()),  # answered calls recorded: players on the pages
    ]
    sim_cmd += ["--calls", str(args.calls)] if args.calls else []
    sim = subprocess.Popen(sim_cmd, stderr=None if args.verbose else subprocess.DEVNULL)
    for _attempt in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            gevent.sleep(0.1)
    daemon.start()
    tray = _start_tray(folder, http_port, args.verbose)
    web = f"http://127.0.0.1:{http_port}"
    admin, _token = create_token(None, role="admin", name="demo admin")
    link = signin.mint(admin.id, "/customers", DEMO_LINK_SECONDS)
    simulator = _("127.0.0.1:%(port)s, %(rate)s calls/s", port=port, rate="%g" % args.rate)
    if args.calls:
        simulator += ", " + ngettext("%(num)s call", "%(num)s calls", args.calls)
    operator = Employee.get_or_none(Employee.extension == TRAY_EXTENSION)
    banner = [
        (_("database"), _("%(path)s (%(customers)s customers, %(operators)s operators)", path=folder / "screenpop.db",
                          customers=Customer.select().count(), operators=Employee.select().count())),
        (_("config"), str(config_path)),
        (_("simulator"), simulator),
        (_("push"), _("%(url)s (token: screenpop token create --config %(path)s …)", url=web + "/api/v1/events",
                      path=config_path)),
        (_("pages"), _("%(url)s (customers, calls, new callers; docs/web.md)", url=web + "/customers")),
        (_("sign in"), _("%(url)s (admin; works once, within %(minutes)s minutes)", url=web + "/signin/" + link,
                         minutes=DEMO_LINK_SECONDS // 60)),
        (_("tray"), _("desktop notifications for extension %(extension)s (%(name)s)", extension=TRAY_EXTENSION,
                      name=operator.name if operator else "") if tray is not None else
         _("no desktop session here; on a workstation: screenpop tray --setup (see docs/tray.md)")),
    ]
    width = max(len(label) for label, _text in banner)
    print(_("screenpop demo in %(folder)s", folder=folder))
    for label, text in banner:
        print(f"  {label:<{width}} {text}")
    print("  " + _("Ctrl-C stops; afterwards: screenpop calls --config %(path)s", path=config_path))
    print()
    stop = gevent.event.Event()
    printer = gevent.spawn(_print_pops, stop, i18n.language())
    try:
        while sim.poll() is None:
            gevent.sleep(0.2)
        gevent.sleep(1.0)
    except KeyboardInterrupt:
        print("\n" + _("stopping…"))
    finally:
        for child in (sim, tray):
            if child is not None and child.poll() is None:
                child.terminate()
                child.wait(timeout=5)
        daemon.stop()
        gevent.sleep(0.5)
        stop.set()
        printer.join(timeout=2)
    print("\n" + _("done. Recorded calls: screenpop calls --config %(path)s", path=config_path))
    return 0
