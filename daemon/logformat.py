"""Log lines for journald or a terminal: under journald a `<N>` syslog priority prefix and no timestamp of ours.

Logs are English whatever language a request speaks. Every message is one line: control and bidi characters in it (a newline in a request path, a terminal escape in a
caller's name) are shown as escapes, so text from strangers cannot forge a second entry. Tracebacks keep theirs.
"""
from __future__ import annotations

import logging
import os
import re

from screenpop.daemon import i18n
from screenpop.daemon.reports.export import UNSAFE_TEXT

# syslog priorities journald reads from a leading "<N>" (SyslogLevelPrefix=yes, its default)
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str | None) -> str:
    """Caller-supplied text made safe for a terminal or a log: control and bidi characters (daemon/reports/export.py's
    UNSAFE_TEXT) shown as escapes, never obeyed."""
    if not text:
        return ""
    return UNSAFE_TEXT.sub(_escape, text)


def under_journald(fd: int = 2) -> bool:
    """Whether fd is the stream systemd connected to the journal: $JOURNAL_STREAM names its device:inode.

    A child whose stderr was redirected elsewhere inherits the variable, hence the check of the fd itself.
    """
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


class TerminalFormatter(logging.Formatter):
    """'time LEVEL logger: message', the message on one line (printable)."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        """The record in English, like every line of ours: a refusal it quotes (a lazy message, daemon/i18n.py) is
        not written in the language of the request that caused it."""
        with i18n.use("en"):
            return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class JournalFormatter(TerminalFormatter):
    """'<N>LEVEL logger: message': journald keeps N as the entry's priority (journalctl -p) and adds the time.

    journald makes an entry of each line, so every line of a multi-line record (a traceback) carries the prefix.
    """

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))
