"""Report and call rows out of the program: CSV that a spreadsheet cannot run, JSON values, a plain text table.

Every CSV screenpop writes goes through ``write_csv``, and every cell through ``safe_cell``: text a spreadsheet
would read as a formula gets a leading apostrophe (the OWASP CSV-injection rule), real numbers stay numbers.
Text that already starts with apostrophes before such a character gets one more, so ``unescape_cell`` (the CSV
importer's) takes exactly the one added off again: an export imports as it was.
"""
from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import IO, Any

from screenpop.daemon.i18n import Formats, gettext as _

# What a terminal or a text line obeys instead of showing: C0 and C1 controls, the bidi controls (U+202E and the
# others reverse the rest of a line), line and paragraph separators. The CLI and the logs escape them, the charts
# drop them.
BIDI = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
UNSAFE_TEXT = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{BIDI}]")
# = + - @, tab and carriage return, and their full-width forms (some spreadsheets accept those for formulas too)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def cell_value(value: Any) -> Any:
    """A row value as plain data: times as ISO 8601, lists joined by spaces, numbers and text unchanged."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return value.get("id")
    return value


def safe_cell(value: Any) -> Any:
    """One CSV cell: numbers as they are, text starting like a formula behind an apostrophe, None empty."""
    value = cell_value(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return value
    text = str(value)
    return "'" + text if _escaped(text) else text


def _escaped(text: str) -> bool:
    """Whether safe_cell puts an apostrophe before text: it starts like a formula, apostrophes aside."""
    return text.lstrip("'").startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text)


def unescape_cell(text: str) -> str:
    """A CSV cell as it was before safe_cell: its added apostrophe taken off (text without one is left alone)."""
    return text[1:] if text.startswith("'") and _escaped(text[1:]) else text


def write_csv(rows: Iterable[dict], out: IO[str], columns: list[str] | None = None) -> None:
    """Rows (dicts with the same keys) as CSV with a header line; every cell through safe_cell."""
    writer = None
    for row in rows:
        if writer is None:
            columns = columns or list(row)
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow([safe_cell(c) for c in columns])
        writer.writerow([safe_cell(row.get(c)) for c in columns])
    if writer is None and columns:
        csv.writer(out, lineterminator="\r\n").writerow([safe_cell(c) for c in columns])


def json_value(value: Any) -> Any:
    """A row value for JSON: times as ISO 8601, money as a decimal string."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def display(key: str, value: Any, formats: Formats | None = None) -> str:
    """A value as the text table shows it: rates in per cent, seconds to one decimal, times to the minute; with a
    page's formats, figures in its reader's locale ("1.234", "75,3%")."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    rate = ("_rate" in key or key.startswith("service_level")) and isinstance(value, float)  # compared ones too
    if formats is not None and isinstance(value, (int, float)):
        return formats.percent(value) if rate else formats.number(value, 1 if isinstance(value, float) else None)
    if rate:
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def text_table(rows: list[dict], printable, max_width: int = 32) -> str:
    """Rows as aligned columns under a header; text made terminal-safe by printable and cut at max_width."""
    if not rows:
        return _("(nothing in this period)")
    columns = list(rows[0])
    cells = [[printable(display(c, r[c]))[:max_width] for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r[c], (int, float, Decimal)) or r[c] is None for r in rows) for c in columns]
    lines = ["  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(columns, widths, numeric)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(row, widths, numeric)).rstrip())
    return "\n".join(lines)


def load_grid(rows: list[dict], formats: Formats) -> str:
    """The load report as the terminal shows it: inbound calls, a line per day of week (named as formats' locale
    names it), a column per hour."""
    lines = ["     " + "".join(f"{h:>5}" for h in range(24))]
    for start in range(0, len(rows), 24):
        day = rows[start : start + 24]
        lines.append(f"{formats.weekday(day[0]['weekday']):<5}" + "".join(f"{r['inbound']:>5}" for r in day))
    return "\n".join(lines)
