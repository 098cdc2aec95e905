"""`screenpop tray`'s command line: options, the config (`--setup` writes it), logging, then the icon and its stream.

The one entry point of the workstation client: `screenpop tray` hands its arguments here, and the PyInstaller
bundle (packaging/tray.spec) runs this file as its script, so the bundle never needs the daemon's code or stack.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import sys

from screenpop.tray import config as tray_config
from screenpop.tray import i18n
from screenpop.tray.i18n import gettext as _
from screenpop.tray.text import one_line

DESCRIPTION = "The workstation tray client: a pop for every call to this operator (--setup writes its config)."
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
_LOG_LINE = 2000  # a log message longer than this is cut


class _LogLines(logging.Formatter):
    """Each message on one line (stranger-supplied text cannot forge another entry); under journald (the tray's user
    unit) every line starts with the `<N>` priority journald keeps (journalctl -p) and the time is journald's."""

    def __init__(self, journal: bool) -> None:
        super().__init__(("" if journal else "%(asctime)s ") + "%(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message, _LOG_LINE)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


def _stderr_is_journal() -> bool:
    """Whether stderr is the stream systemd connected to the journal ($JOURNAL_STREAM names its device:inode; a
    child whose stderr went elsewhere inherits the variable, hence the check of the stream itself)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):  # no stderr at all (a windowed Windows start)
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{device}:{inode}"


def setup_logging(level: str) -> None:
    """The tray's log on stderr: for journald under its user unit, else with a time of its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogLines(_stderr_is_journal()))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


def build_parser() -> argparse.ArgumentParser:
    """`screenpop tray`'s options."""
    p = argparse.ArgumentParser(prog="screenpop tray", description=DESCRIPTION)
    p.add_argument("--config", "-c", metavar="FILE", default=os.environ.get("SCREENPOP_TRAY_CONFIG"),
                   help="tray config (default: $SCREENPOP_TRAY_CONFIG, else $XDG_CONFIG_HOME/screenpop/tray.toml)")
    p.add_argument("--setup", action="store_true", help="write the config (asks on a terminal for what the flags omit)")
    p.add_argument("--server", help="the daemon's URL (default http://127.0.0.1:8080)")
    p.add_argument("--extension", help="this operator's extension")
    p.add_argument("--token", help="API token from `screenpop token create`; discouraged: every local user can read a "
                   "command line (/proc/PID/cmdline), so use --token-file or --setup's prompt")
    p.add_argument("--token-file", help="a file holding the token")
    p.add_argument("--no-icon", action="store_true", help="notifications only, no tray icon")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the tray (or write its config with --setup) until Quit or Ctrl-C (status 130); a bad config or a missing
    desktop library ends it in words."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    i18n.choose()  # the desktop's language for --setup's questions; the config's, once read, wins
    try:
        if args.setup:
            path = tray_config.setup(args.config, server=args.server, extension=args.extension, token=args.token,
                                     token_file=args.token_file)
            print(_("tray config written to %(path)s (mode 0600)", path=path))
            return 0
        config = tray_config.load(args.config)
        i18n.choose(config.language)
        overrides = {k: v for k, v in (("server", args.server), ("extension", args.extension), ("token", args.token),
                                       ("token_file", args.token_file)) if v is not None}
        config = tray_config.validate(dataclasses.replace(config, **overrides), "command line")
        if not (config.token or config.token_file):
            raise tray_config.TrayConfigError(
                _("no token in %(path)s; run `screenpop tray --setup`", path=args.config or tray_config.default_path()))
        config.resolved_token()
    except tray_config.TrayConfigError as exc:
        raise SystemExit(f"screenpop: {exc}") from None
    missing = [m for m in ("pystray", "plyer") + (("dbus",) if sys.platform.startswith("linux") else ())
               if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit("screenpop: " + _("the tray needs %(missing)s: pip install 'screenpop[tray]'", missing=", ".join(missing)))
    from screenpop.tray.app import run

    return run(config, show_icon=not args.no_icon)


if __name__ == "__main__":
    sys.exit(main())
