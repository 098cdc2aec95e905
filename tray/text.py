"""Stranger-supplied text made safe to show on one line, and a card's time in local hours: the notification and
the tray menu both show them."""
from __future__ import annotations

import datetime as dt
from typing import Any


_KEPT_SPACES = "\xa0\u202f"  # no-break spaces: "999,50 kr." and "6:53 PM" stay together when a line wraps


def one_line(text: Any, limit: int = 200) -> str:
    """One line of at most `limit` characters, control characters dropped."""
    s = "" if text is None else str(text)
    s = "".join(ch if ch.isprintable() or ch in _KEPT_SPACES else " " for ch in s).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def local_time(at: str | None) -> str:
    """A card's ISO time (UTC) as HH:MM on this computer's clock; empty if missing or malformed."""
    if not at:
        return ""
    try:
        when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone().strftime("%H:%M")
