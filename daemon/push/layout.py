"""The card's display lines: what the pop says and in which order, built on the server from the card's own fields
(docs/card.md, "What the pop says"). The tray only escapes and shows them, so another layout (one per team, issue
17) is another CardLayout here, never a change in the tray.

Every line is one line of clean text (control and bidi-override characters dropped, hostile text cut to a length
that stays legible on dunst's default settings: 300 px wide, Monospace 8, about 35 characters a line beside a
64 px icon), with a field name (what it shows) and a style the tray renders: plain, strong (bold) or warning
(bold, and the first thing under the summary). Amounts, dates and country names follow [card] (CLDR through
Babel); times are in the call centre's zone.

Which lines a pop shows, in which order and with which style is a layout: a tuple of Items, each naming one key
(a built-in piece, a custom field, the sources' fields). DEFAULT_ITEMS is the card as it always was; an admin's own
layouts, per team, are stored in the database (daemon/push/layouts.py) and passed to render.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple

from screenpop.daemon.config import CardConfig
from screenpop.daemon.i18n import Formats, lazy_gettext, ngettext, use
from screenpop.daemon.i18n import gettext as _
from screenpop.db.numbers import NumberRules, is_withheld

TITLE_MAX = 60
LINE_MAX = 70
NOTE_MAX = 105  # three wrapped lines on dunst's defaults
ORDERS_SHOWN = 3
CANDIDATES_SHOWN = 3
SOURCE_LINES = 8  # fields from the sources (other systems, docs/sources.md) a pop shows
# the summary of a pop by its event, around who it is; in the organisation's language ([i18n] default_language)
PREFIXES = {"dialing": lazy_gettext("Calling %(who)s"), "missed": lazy_gettext("Missed: %(who)s"),
            "transferred": lazy_gettext("Transferred: %(who)s"), "ended": lazy_gettext("Ended: %(who)s")}
DIRECTIONS = {"INCOMING": lazy_gettext("INCOMING"), "OUTGOING": lazy_gettext("OUTGOING"),
              "INTERNAL": lazy_gettext("INTERNAL")}
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


STYLES = ("plain", "strong", "warning")
# the built-in pieces a layout can show, by key, with what each shows (the admin page lists them, in its reader's language)
BUILT_IN = {
    "note": lazy_gettext("the customer's note (up to three lines)"),
    "name": lazy_gettext("the customer's name, when the title is the company"),
    "orders": lazy_gettext("the first 3 open orders (number, title, stage, responsible, debt), then how many more"),
    "total_debt": lazy_gettext("the customer's total debt, when anything is owed"),
    "place": lazy_gettext("city and country"),
    "caller_id": lazy_gettext("the caller-ID name, where it adds something"),
    "sources": lazy_gettext("every source's fields (8 at most)"),
    "number": lazy_gettext("the number as people read it"),
    "when": lazy_gettext("the time and the direction"),
    "operator": lazy_gettext("the extension told and its operator"),
}
CUSTOMER_PREFIX, ORDER_PREFIX, SOURCE_PREFIX = "customer.", "order.", "source."


class Item(NamedTuple):
    """One entry of a layout: the key of what it shows and the style of its lines (a warning comes first)."""

    field: str
    style: str = "plain"


# the card as it always was (docs/card.md, "What the pop says")
DEFAULT_ITEMS = (Item("note", "warning"), Item("name"), Item("orders"), Item("total_debt", "strong"), Item("place"),
                 Item("caller_id"), Item("sources"), Item("number"), Item("when"), Item("operator"))


class CardLayout:
    """Builds a card's summary and lines from its fields by a layout (docs/card.md), and formats amounts, times and
    countries as [card] says for the card and the web pages alike."""

    def __init__(self, config: CardConfig | None = None, zone: dt.tzinfo = dt.timezone.utc,
                 language: str | None = None) -> None:
        """config: [card] (locale, currency, money format); zone: the call centre's ([analytics] timezone); language:
        whose formats (Formats.for_language; None: [card] locale as it is)."""
        self.config, self.zone = config or CardConfig(), zone
        self.formats = Formats.for_language(language, self.config, zone) if language else Formats(self.config, zone)
        self._languages: dict[str, CardLayout] = {}

    def speaking(self, language: str) -> CardLayout:
        """This layout for a reader of language: that language's formats, made once per language."""
        found = self._languages.get(language)
        if found is None:
            found = self._languages[language] = CardLayout(self.config, self.zone, language)
        return found

    # ---- formats (daemon/i18n.py: one home for the card's and the pages') -------------------

    def money(self, amount: Any) -> str:
        """An amount as people read it in the configured locale and currency ("285.000 kr.", "$285,000.00")."""
        return self.formats.money(amount)

    def when(self, at: str, now: dt.datetime | None = None) -> str:
        """A card's time (ISO, UTC) in the call centre's zone: the time alone today, else with the date."""
        return self.formats.when(at, now)

    def country(self, code: Any) -> str:
        """A country as stored ("IS", or a name) as people read it: a known ISO code by its name in the locale."""
        return self.formats.country(clean(code, 40))

    # ---- the lines -------------------------------------------------------------------------

    def render(self, card: dict, rules: NumberRules, now: dt.datetime | None = None,
               items: tuple[Item, ...] = DEFAULT_ITEMS, language: str | None = None) -> tuple[str, list[dict]]:
        """The summary and the lines of one card; rules format its number, now decides what 'today' is, items are
        the layout (its warnings first, then what says what kind of caller it is, then the rest in its order);
        language: whose words and formats (None: the language of the moment, in [card]'s formats)."""
        if language is not None:
            with use(language):
                return self.speaking(language).render(card, rules, now, items)
        event = card.get("event") or ""
        customer = card.get("customer") or None
        direction = card.get("direction") or ""
        raw_number = card.get("number") or ""
        withheld = direction != "INTERNAL" and is_withheld(raw_number)
        number, region = rules.display_form(raw_number)
        number = clean(number, 40)
        head: list[dict] = []  # what kind of caller this is, when it is not a customer
        shown = set()  # texts already on the card: the caller-ID name is shown only when it adds something
        company = name = ""
        if customer:
            company, name = clean(customer.get("company"), TITLE_MAX), clean(customer.get("name"), TITLE_MAX)
            who = company or name or number or _("Unknown caller")
            flag = clean(customer.get("category_flag"), 30)  # the category list's flag (docs/customfields.md)
            who_line = f"{who}  {flag}" if flag else who
            shown |= {company, name}
        elif (card.get("matches") or 0) > 1:
            who_line = number or _("Unknown number")
            head = self._candidates(card)
        elif direction == "INTERNAL":
            colleague = clean(card.get("colleague"), TITLE_MAX)
            who_line = colleague or clean(card.get("caller_name"), TITLE_MAX) or _("Extension %(number)s", number=number)
            shown.add(who_line)
            head = [line("colleague", _("Colleague, extension %(number)s", number=number) if number else _("Colleague"))]
        else:
            who_line = _("Withheld number") if withheld else number or _("Unknown number")
            head = [line("status", _("Not a customer yet") if direction == "OUTGOING" else _("Unknown caller"))]
            if region and not withheld:
                head.append(line("region", self.country(region)))
        if event == "answered_elsewhere":  # shown for a moment in place of the pop: who took it, and whose call
            when = " · ".join(p for p in (self.when(card.get("at") or "", now), direction_word(direction)) if p)
            return self._taken(card), [line("caller", who_line, "strong"), line("when", when)]
        plan = _plan(items)
        piece = _Piece(card, customer, company, name, number, region, withheld, shown | {who_line, number, raw_number},
                       now, _by_key(customer.get("fields")) if customer and plan.custom else {})
        warnings: list[dict] = []
        rest: list[dict] = []
        for draw, arg, style, of_customer in plan.steps:
            if customer or not of_customer:
                for field, text in draw(self, piece, arg):
                    (warnings if style == "warning" else rest).append(line(field, text, style))
        prefix = PREFIXES.get(event)
        return (str(prefix) % {"who": who_line} if prefix else who_line), warnings + head + rest

    # each piece a layout can name: (field, text) lines for one card, none when the card has nothing for it (the
    # customer's own pieces are drawn for a customer's card only: _CUSTOMER_PIECES)

    def _when(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        moment, direction = self.when(p.card.get("at") or "", p.now), direction_word(p.card.get("direction"))
        return [("when", " · ".join(x for x in (moment, direction) if x))]

    def _operator(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        extension = clean(p.card.get("extension"), 20)
        operator = clean(p.card.get("operator"), TITLE_MAX)
        return [("operator", _("Operator %(extension)s %(name)s", extension=extension, name=operator).rstrip())] if extension else []

    def _caller_id(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        caller_id = clean(p.card.get("caller_name"), TITLE_MAX)
        return [("caller_id", _("Caller ID: %(name)s", name=caller_id))] if caller_id and self._adds(caller_id, p.shown) else []

    def _number(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        if p.number and not p.withheld:
            return [("number", f"{p.number} · {self.country(p.region)}" if p.region else p.number)]
        return []

    def _note(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        note = clean(p.customer.get("note"), NOTE_MAX)
        return [("note", note)] if note else []

    def _name(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        return [("name", p.name)] if p.company and p.name else []

    def _total_debt(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        debt = p.customer.get("total_debt")
        return [("total_debt", _("Debt %(amount)s", amount=self.money(debt)))] if _positive(debt) else []

    def _place(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        place = ", ".join(x for x in (clean(p.customer.get("city"), 40), self.country(p.customer.get("country"))) if x)
        return [("place", place)] if place else []

    def _customer_field(self, p: _Piece, key: str) -> list[tuple[str, str]]:
        value = self._custom(p.fields.get(key))
        return [(CUSTOMER_PREFIX + key, value)] if value else []

    def _order_field(self, p: _Piece, key: str) -> list[tuple[str, str]]:
        out = []
        for order in (p.customer.get("orders") or [])[:ORDERS_SHOWN]:
            value = self._custom(_by_key(order.get("fields")).get(key))
            if value:
                out.append((ORDER_PREFIX + key, f"{clean(order.get('number'), 16)} {value}".lstrip()))
        return out

    def _custom(self, found: dict | None) -> str:
        """A custom field's 'Label: value' from a record's card field ('' when it has none); money as [card] says."""
        if found is None:
            return ""
        label, kind = _label(found.get("label")), found.get("type")
        if kind == "money":
            value = self.money(found.get("value"))
        elif kind == "yesno":  # the stored text is English; the reader's words
            value = _("Yes") if found.get("value") == "yes" else _("No")
        else:
            value = clean(found.get("text"))
        return f"{label}: {value}" if label and value else value

    def _orders(self, p: _Piece, _key: str) -> list[tuple[str, str]]:
        """Open orders, ORDERS_SHOWN of them with stage, responsible and debt, then how many more."""
        orders = p.customer.get("orders") or []
        out = []
        for order in orders[:ORDERS_SHOWN]:
            head = " ".join(p for p in (clean(order.get("number"), 16), clean(order.get("title"), 24)) if p)
            stage = clean(order.get("stage"), 20)
            parts = [f"{head}: {stage}" if stage else head, clean(order.get("responsible"), 30)]
            if _positive(order.get("debt")):
                parts.append(self.money(order.get("debt")))
            out.append(("order", " · ".join(p for p in parts if p)))
        more = len(orders) - ORDERS_SHOWN
        if more > 0:
            out.append(("order", ngettext("and %(num)s more open order", "and %(num)s more open orders", more)))
        return out

    def _source_fields(self, p: _Piece, key: str) -> list[tuple[str, str]]:
        """What the configured sources (other systems) said about the number, SOURCE_LINES at most: 'label: value';
        key: '' (all of them), '<name>' (one source's) or '<name>.<label>' (one field)."""
        sources = p.card.get("sources")
        fields = sources.get("fields") if isinstance(sources, dict) else None
        source, _, label = key.partition(".")
        out: list[tuple[str, str]] = []
        for item in fields if isinstance(fields, list) else []:
            if not isinstance(item, dict) or (source and item.get("source") != source) or (label and item.get("name") != label):
                continue
            name, value = clean(item.get("name"), 30), clean(item.get("value"), LINE_MAX)
            if name or value:
                out.append(("source", f"{name}: {value}" if name else value))
            if len(out) == SOURCE_LINES:
                break
        return out

    def _candidates(self, card: dict) -> list[dict]:
        """Several customers on one number: how many, the first few, how many more."""
        matches = card.get("matches") or 0
        out = [line("matches", _("%(count)s customers share this number", count=matches), "strong")]
        candidates = card.get("candidates") or []
        for c in candidates[:CANDIDATES_SHOWN]:
            name, company = clean(c.get("name"), 30), clean(c.get("company"), 30)
            out.append(line("candidate", f"• {name} ({company})" if name and company else f"• {name or company}"))
        more = matches - min(len(candidates), CANDIDATES_SHOWN)
        if more > 0:
            out.append(line("candidate", _("and %(count)s more", count=more)))
        return out

    def _taken(self, card: dict) -> str:
        """The summary of an answered-elsewhere pop: who took the call."""
        taker = card.get("taken_by") or {}
        who = " ".join(p for p in (clean(taker.get("extension"), 20), clean(taker.get("name"), TITLE_MAX)) if p)
        return _("Taken by %(who)s", who=who) if who else _("Answered elsewhere")

    @staticmethod
    def _adds(caller_id: str, shown: set[str]) -> bool:
        """Whether the caller-ID name tells something the card does not: not a name or number already on it, not a
        number of its own, not a withheld marker."""
        folded = _fold(caller_id)
        if any(folded == _fold(s) for s in shown if s):
            return False
        return not _NUMBERLIKE.fullmatch(caller_id) and not is_withheld(caller_id)


class _Piece(NamedTuple):
    """What every layout key of one card is made from, worked out once per card."""

    card: dict
    customer: dict | None
    company: str  # the customer's, cleaned
    name: str
    number: str
    region: str | None
    withheld: bool
    shown: set[str]
    now: dt.datetime | None
    fields: dict[str, dict]  # the customer's custom fields by key (when the layout names any)


class _Plan(NamedTuple):
    """A layout worked out once: per item, the piece's method, its argument, the style and whether it is drawn for a
    customer's card only; whether it names a customer field."""

    steps: tuple[tuple[Any, str, str, bool], ...]
    custom: bool


_CUSTOMER_PIECES = {"note", "name", "orders", "total_debt", "place", "number"}
_PREFIXED = ((CUSTOMER_PREFIX, CardLayout._customer_field, True), (ORDER_PREFIX, CardLayout._order_field, True),
             (SOURCE_PREFIX, CardLayout._source_fields, False))


@lru_cache(maxsize=256)
def _plan(items: tuple[Item, ...]) -> _Plan:
    """How to draw a layout (its items are a tuple the layouts' cache keeps, so this runs once per layout read)."""
    steps = []
    for item in items:
        key = item.field
        if key == "sources":
            steps.append((CardLayout._source_fields, "", item.style, False))
        elif key in BUILT_IN:
            steps.append((getattr(CardLayout, "_" + key), "", item.style, key in _CUSTOMER_PIECES))
        else:  # a key no longer known (a field removed since) draws nothing
            steps += [(draw, key[len(prefix):], item.style, of_customer) for prefix, draw, of_customer in _PREFIXED
                      if key.startswith(prefix)]
    return _Plan(tuple(steps), any(item.field.startswith(CUSTOMER_PREFIX) for item in items))


def _by_key(fields: Any) -> dict[str, dict]:
    """A record's card fields ({key, label, type, value, text}) by key; anything malformed left out."""
    return {f["key"]: f for f in fields if isinstance(f, dict) and isinstance(f.get("key"), str)} \
        if isinstance(fields, list) else {}


@lru_cache(maxsize=4096)
def _label(text: Any) -> str:
    """A custom field's label as a line shows it (the same few labels come back on every card)."""
    return clean(text, 30)


def direction_word(direction: Any) -> str:
    """INCOMING, OUTGOING, INTERNAL in capitals in the organisation's language; anything else as the card has it."""
    word = DIRECTIONS.get(direction) if isinstance(direction, str) else None
    return str(word) if word is not None else (direction or "")


def _fold(text: str) -> str:
    """Text compared as people read it: case and accents aside ("JON JONSSON" is "Jón Jónsson")."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def _positive(amount: Any) -> bool:
    try:
        return Decimal(str(amount)) > 0
    except (InvalidOperation, ValueError):
        return False
