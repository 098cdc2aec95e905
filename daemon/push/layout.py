"""The card's display lines: what the pop says and in which order, built on the server from the card's own fields
(docs/card.md, "What the pop says"). The tray only escapes and shows them, so another layout (one per team, issue
17) is another CardLayout here, never a change in the tray.

Every line is one line of clean text (control and bidi-override characters dropped, hostile text cut to a length
that stays legible on dunst's default settings: 300 px wide, Monospace 8, about 35 characters a line beside a
64 px icon), with a field name (what it shows) and a style the tray renders: plain, strong (bold) or warning
(bold, and the first thing under the summary). Amounts, dates and country names follow [card] (CLDR through
Babel); times are in the call centre's zone.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from babel import Locale
from babel.dates import format_skeleton
from babel.numbers import (NumberPattern, get_currency_name, get_currency_precision, get_currency_symbol,
                           parse_pattern)

from screenpop.daemon.config import CardConfig
from screenpop.db.numbers import NumberRules, is_withheld

TITLE_MAX = 60
LINE_MAX = 70
NOTE_MAX = 105  # three wrapped lines on dunst's defaults
ORDERS_SHOWN = 3
CANDIDATES_SHOWN = 3
SOURCE_LINES = 8  # fields from the sources (other systems, docs/sources.md) a pop shows
PREFIXES = {"dialing": "Calling ", "missed": "Missed: ", "transferred": "Transferred: ", "ended": "Ended: "}
# C0/C1 controls, line and paragraph separators, zero-width and bidi controls: text a caller or a user typed must
# neither break a line nor turn the rest of it around
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NUMBERLIKE = re.compile(r"[+0-9 ()./-]*")


def clean(text: Any, limit: int = LINE_MAX) -> str:
    """Stranger-supplied text as one line of at most limit characters (… where it was cut); '' for None."""
    if text is None:
        return ""
    s = " ".join(_UNSAFE.sub(" ", str(text)[: limit * 4]).split())
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def line(field: str, text: str, style: str = "plain") -> dict:
    """One display line: the field it shows, its text, and plain, strong or warning."""
    return {"field": field, "text": text, "style": style}


class CardLayout:
    """The default layout: builds a card's summary and lines from its fields (docs/card.md)."""

    def __init__(self, config: CardConfig | None = None, zone: dt.tzinfo = dt.timezone.utc) -> None:
        """config: [card] (locale, currency, money format); zone: the call centre's ([analytics] timezone)."""
        self.config = config or CardConfig()
        self.zone = zone
        self.locale = Locale.parse(self.config.locale)
        self._money = _money_pattern(self.config, self.locale)
        self._short_time = self.locale.time_formats["short"]
        # Babel's formatting is most of a card's cost (~10-15 µs a call): the same debts come back with every call
        # of a customer, and the short time has hours and minutes only, so each is formatted once
        self._amount = lru_cache(maxsize=4096)(self._format_amount)
        self._clock = lru_cache(maxsize=1440)(self._format_clock)

    # ---- formats ---------------------------------------------------------------------------

    def money(self, amount: Any) -> str:
        """An amount as people read it in the configured locale and currency ("285.000 kr.", "$285,000.00")."""
        return self._amount(str(amount))

    def _format_amount(self, text: str) -> str:
        try:
            value = Decimal(text)
        except (InvalidOperation, ValueError):
            value = Decimal(0)
        return self._money.apply(value, self.locale)

    def _format_clock(self, hour: int, minute: int) -> str:
        return self._short_time.apply(dt.time(hour, minute), self.locale)

    def when(self, at: str, now: dt.datetime | None = None) -> str:
        """A card's time (ISO, UTC) in the call centre's zone: the time alone today, else with the date."""
        try:
            moment = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except (AttributeError, ValueError):
            return ""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        local = moment.astimezone(self.zone)
        today = (now or dt.datetime.now(dt.timezone.utc)).astimezone(self.zone).date()
        time = self._clock(local.hour, local.minute)
        if local.date() == today:
            return time
        day = format_skeleton("MMMd" if local.year == today.year else "yMMMd", local, locale=self.locale)
        return self.locale.datetime_formats["short"].format(time, day)  # the locale's joint: "Nov 26, 6:53 PM"

    def country(self, code: Any) -> str:
        """A country as stored ("IS", or a name) as people read it: a known ISO code by its name in the locale."""
        text = clean(code, 40)
        if len(text) == 2 and text.isalpha():
            return self.locale.territories.get(text.upper(), text)
        return text

    # ---- the lines -------------------------------------------------------------------------

    def render(self, card: dict, rules: NumberRules, now: dt.datetime | None = None) -> tuple[str, list[dict]]:
        """The summary and the lines of one card; rules format its number, now decides what 'today' is."""
        event = card.get("event") or ""
        customer = card.get("customer") or None
        direction = card.get("direction") or ""
        raw_number = card.get("number") or ""
        withheld = direction != "INTERNAL" and is_withheld(raw_number)
        number, region = rules.display_form(raw_number)
        number = clean(number, 40)
        lines: list[dict] = []
        shown = set()  # texts already on the card: the caller-ID name is shown only when it adds something
        if customer:
            company, name = clean(customer.get("company"), TITLE_MAX), clean(customer.get("name"), TITLE_MAX)
            who = company or name or number or "Unknown caller"
            flag = clean(customer.get("category_flag"), 30)  # the category list's flag (docs/customfields.md)
            who_line = f"{who}  {flag}" if flag else who
            note = clean(customer.get("note"), NOTE_MAX)
            if note:
                lines.append(line("note", note, "warning"))
            if company and name:
                lines.append(line("name", name))
            shown |= {company, name}
            lines += self._orders(customer)
            place = ", ".join(p for p in (clean(customer.get("city"), 40), self.country(customer.get("country"))) if p)
            if place:
                lines.append(line("place", place))
            number_line = True
        elif (card.get("matches") or 0) > 1:
            who_line = number or "Unknown number"
            lines += self._candidates(card)
            number_line = False
        elif direction == "INTERNAL":
            colleague = clean(card.get("colleague"), TITLE_MAX)
            who_line = colleague or clean(card.get("caller_name"), TITLE_MAX) or f"Extension {number}"
            shown.add(who_line)
            lines.append(line("colleague", f"Colleague, extension {number}" if number else "Colleague"))
            number_line = False
        else:
            who_line = "Withheld number" if withheld else number or "Unknown number"
            status = "Not a customer yet" if direction == "OUTGOING" else "Unknown caller"
            lines.append(line("status", status))
            if region and not withheld:
                lines.append(line("region", self.country(region)))
            number_line = False
        caller_id = clean(card.get("caller_name"), TITLE_MAX)
        if caller_id and self._adds(caller_id, shown | {who_line, number, raw_number}):
            lines.append(line("caller_id", f"Caller ID: {caller_id}"))
        lines += self._source_fields(card)
        if number_line and number and not withheld:
            lines.append(line("number", f"{number} · {self.country(region)}" if region else number))
        when = line("when", " · ".join(p for p in (self.when(card.get("at") or "", now), direction) if p))
        if event == "answered_elsewhere":  # shown for a moment in place of the pop: who took it, and whose call
            return self._taken(card), [line("caller", who_line, "strong"), when]
        lines.append(when)
        extension = clean(card.get("extension"), 20)
        if extension:
            lines.append(line("operator", f"Operator {extension} {clean(card.get('operator'), TITLE_MAX)}".rstrip()))
        return PREFIXES.get(event, "") + who_line, lines

    def _orders(self, customer: dict) -> list[dict]:
        """Open orders, ORDERS_SHOWN of them with stage, responsible and debt, then how many more and the total."""
        orders = customer.get("orders") or []
        out = []
        for order in orders[:ORDERS_SHOWN]:
            head = " ".join(p for p in (clean(order.get("number"), 16), clean(order.get("title"), 24)) if p)
            stage = clean(order.get("stage"), 20)
            parts = [f"{head}: {stage}" if stage else head, clean(order.get("responsible"), 30)]
            if _positive(order.get("debt")):
                parts.append(self.money(order.get("debt")))
            out.append(line("order", " · ".join(p for p in parts if p)))
        more = len(orders) - ORDERS_SHOWN
        if more > 0:
            out.append(line("order", f"and {more} more open order{'s' if more > 1 else ''}"))
        if _positive(customer.get("total_debt")):
            out.append(line("total_debt", f"Debt {self.money(customer.get('total_debt'))}", "strong"))
        return out

    @staticmethod
    def _source_fields(card: dict) -> list[dict]:
        """What the configured sources (other systems) said about the number, SOURCE_LINES at most: 'label: value'."""
        sources = card.get("sources")
        fields = sources.get("fields") if isinstance(sources, dict) else None
        out = []
        for item in (fields if isinstance(fields, list) else [])[:SOURCE_LINES]:
            name, value = clean(item.get("name"), 30), clean(item.get("value"), LINE_MAX)
            if name or value:
                out.append(line("source", f"{name}: {value}" if name else value))
        return out

    def _candidates(self, card: dict) -> list[dict]:
        """Several customers on one number: how many, the first few, how many more."""
        matches = card.get("matches") or 0
        out = [line("matches", f"{matches} customers share this number", "strong")]
        candidates = card.get("candidates") or []
        for c in candidates[:CANDIDATES_SHOWN]:
            name, company = clean(c.get("name"), 30), clean(c.get("company"), 30)
            out.append(line("candidate", f"• {name} ({company})" if name and company else f"• {name or company}"))
        more = matches - min(len(candidates), CANDIDATES_SHOWN)
        if more > 0:
            out.append(line("candidate", f"and {more} more"))
        return out

    def _taken(self, card: dict) -> str:
        """The summary of an answered-elsewhere pop: who took the call."""
        taker = card.get("taken_by") or {}
        who = " ".join(p for p in (clean(taker.get("extension"), 20), clean(taker.get("name"), TITLE_MAX)) if p)
        return f"Taken by {who}" if who else "Answered elsewhere"

    @staticmethod
    def _adds(caller_id: str, shown: set[str]) -> bool:
        """Whether the caller-ID name tells something the card does not: not a name or number already on it, not a
        number of its own, not a withheld marker."""
        folded = _fold(caller_id)
        if any(folded == _fold(s) for s in shown if s):
            return False
        return not _NUMBERLIKE.fullmatch(caller_id) and not is_withheld(caller_id)


def _money_pattern(config: CardConfig, locale: Locale) -> NumberPattern:
    """The money pattern with the currency's sign, code or name written in and its decimals fixed, once: Babel
    looks them up on every amount otherwise, which made amounts the dearest part of a card (~35 µs each)."""
    pattern = parse_pattern(config.money_format or locale.currency_formats["standard"].pattern)
    code = config.currency

    def sign(text: str) -> str:
        return (text.replace("¤¤¤", get_currency_name(code, locale=locale)).replace("¤¤", code)
                .replace("¤", get_currency_symbol(code, locale=locale)))

    pattern.prefix = tuple(sign(p) for p in pattern.prefix)
    pattern.suffix = tuple(sign(p) for p in pattern.suffix)
    digits = config.decimals if config.decimals >= 0 else get_currency_precision(code)
    pattern.frac_prec = (digits, digits)
    return pattern


def _fold(text: str) -> str:
    """Text compared as people read it: case and accents aside ("JON JONSSON" is "Jón Jónsson")."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def _positive(amount: Any) -> bool:
    try:
        return Decimal(str(amount)) > 0
    except (InvalidOperation, ValueError):
        return False
