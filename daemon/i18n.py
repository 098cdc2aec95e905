"""What a person reads, in their language (docs/i18n.md): the translation functions, the choice of language, and
the locale's way of writing dates, times, numbers and money.

Every string a person reads goes through gettext (or ngettext, or lazy_gettext for text made before anyone asked
for it, e.g. a module-level table or an exception raised on the database worker and shown later):

    from screenpop.daemon.i18n import gettext as _
    flash(_("Customer %(name)s added.", name=customer.name))

Templates call the same functions: {{ _("Customers") }}, {{ _("%(n)s calls", n=count) }} (Jinja's i18n
extension, new style: variables are escaped, the text is not). The catalogues are the .po files under
daemon/locale/<language>/LC_MESSAGES/screenpop.po, read and compiled in memory on first use (no generated .mo
file to build or ship); packaging/catalogues.py extracts the strings and updates them.

The language of the moment is a context variable: each request's greenlet sets its own (use()), and everything
else (the CLI, the daemon's log-free work) speaks the organisation's default ([i18n] default_language).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gettext as _gettext
import io
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_skeleton
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import (NumberPattern, format_decimal, get_currency_name, get_currency_precision, get_currency_symbol,
                           parse_pattern)
from babel.support import LazyProxy

from screenpop.daemon.config import CardConfig

DOMAIN = "screenpop"
LANGUAGES = ("en", "is")  # the catalogues there are; en is the source language
LOCALE_DIR = Path(__file__).parent / "locale"
NAMES = {"en": "English", "is": "Íslenska"}  # each language by its own name (a language chooser shows these)

Message = str | LazyProxy  # a text a person reads: plain, or translated only when it is shown (lazy_gettext)

_default = "en"
_current: ContextVar[str | None] = ContextVar("screenpop_language", default=None)


# ---- the catalogues -------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def translations(language: str) -> _gettext.NullTranslations:
    """The catalogue of a language, compiled from its .po once (fuzzy entries left out); English needs none."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language not in LANGUAGES or not path.exists():
        return _gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return _gettext.GNUTranslations(mo)


def language() -> str:
    """The language of the moment: this request's (or this greenlet's use()), else the organisation's default."""
    return _current.get() or _default


def gettext(message: str, **variables: Any) -> str:
    """message in the language of the moment, its %(name)s placeholders filled from variables."""
    text = translations(language()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    """The singular or plural form for n in the language of the moment; %(num)s is n unless given."""
    text = translations(language()).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


def gettext_noop(message: str) -> str:
    """message as it is, marked for the catalogue: words another library looks up in it later (argparse's)."""
    return message


def lazy_gettext(message: str, **variables: Any) -> LazyProxy:
    """gettext, translated only when the text is used (then in the language of that moment)."""
    return LazyProxy(gettext, message, enable_cache=False, **variables)


def lazy_join(parts: Iterable[Any], separator: str = ", ") -> LazyProxy:
    """parts (lazy messages among them) joined into one text, each translated only when the whole is used."""
    items = list(parts)
    return LazyProxy(lambda: separator.join(str(part) for part in items), enable_cache=False)


def lazy_number(value: int) -> LazyProxy:
    """A whole number grouped as the language of the moment writes it when it is shown ("40,000,000", "40.000.000")."""
    return LazyProxy(lambda: format_decimal(value, locale=language()), enable_cache=False)


def lazy_ngettext(singular: str, plural: str, n: int, **variables: Any) -> LazyProxy:
    """ngettext, translated only when the text is used: text made on the database worker for a page to show."""
    return LazyProxy(ngettext, singular, plural, n, enable_cache=False, **variables)


# ---- choosing the language -------------------------------------------------------------------------------


def set_default(value: str) -> None:
    """The organisation's language ([i18n] default_language): what is spoken when nobody says otherwise."""
    global _default
    _default = best(value) or "en"


def default() -> str:
    return _default


def best(*wanted: str | None) -> str | None:
    """The first of wanted that names a language there is a catalogue for ("is", "is-IS", "is_IS.UTF-8" all
    name Icelandic), else None."""
    for tag in wanted:
        if tag:
            base = tag.replace("-", "_").split(".")[0].split("_")[0].strip().lower()
            if base in LANGUAGES:
                return base
    return None


def from_accept_language(accepted: Iterable[tuple[str, float]]) -> str | None:
    """The language a browser asks for (Accept-Language as (tag, quality) pairs, best first) that we have."""
    return best(*(tag for tag, quality in accepted if quality > 0))


def from_environment(env: dict[str, str]) -> str | None:
    """The language of a terminal or desktop session we have: GNU's LANGUAGE list, then LC_ALL, LC_MESSAGES, LANG
    (the first one set decides: LC_ALL=C means the default)."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(name):
            return best(*env[name].split(":"))
    return None


def set_language(value: str | None) -> None:
    """Speak value (a language we have) from now on in this greenlet; None: the default again."""
    _current.set(best(value))


@contextlib.contextmanager
def use(value: str | None) -> Iterator[None]:
    """Speak value inside the block (a pop rendered for an operator, a test), then what was spoken before."""
    token = _current.set(best(value) or language())
    try:
        yield
    finally:
        _current.reset(token)


# ---- formats ---------------------------------------------------------------------------------------------


class Formats:
    """How one locale writes amounts, dates, times and country names, in the call centre's zone: the card's
    (its [card] locale) and each page's (the reader's language) come from here, so they never disagree."""

    def __init__(self, config: CardConfig | None = None, zone: dt.tzinfo = dt.timezone.utc,
                 locale: str | None = None) -> None:
        """config: [card] (currency, money format, decimals, and the locale unless one is given); zone: the call
        centre's ([analytics] timezone)."""
        self.config = config or CardConfig()
        self.zone = zone
        self.locale = Locale.parse(locale or self.config.locale)
        self._money = _money_pattern(self.config, self.locale)
        self._short_time = self.locale.time_formats["short"]
        # Babel's formatting is most of a card's cost (~10-15 µs a call): the same debts come back with every call
        # of a customer, and the short time has hours and minutes only, so each is formatted once
        self._amount = lru_cache(maxsize=4096)(self._format_amount)
        self._clock = lru_cache(maxsize=1440)(self._format_clock)

    @classmethod
    def for_language(cls, lang: str, config: CardConfig | None = None, zone: dt.tzinfo = dt.timezone.utc) -> Formats:
        """The formats a reader of lang expects: [card] locale when it is of that language, else the language's own
        (Icelandic: "1.234 kr.", "14:02", "7. des. 2026")."""
        config = config or CardConfig()
        ours = Locale.parse(config.locale)
        return cls(config, zone, config.locale if ours.language == lang else lang)

    def money(self, amount: Any) -> str:
        """An amount as people read it in the locale and currency ("285.000 kr.", "$285,000.00")."""
        return self._amount(str(amount))

    def _format_amount(self, text: str) -> str:
        try:
            value = Decimal(text)
        except (InvalidOperation, ValueError):
            value = Decimal(0)
        return self._money.apply(value, self.locale)

    def _format_clock(self, hour: int, minute: int) -> str:
        return self._short_time.apply(dt.time(hour, minute), self.locale)

    def number(self, value: Any, decimals: int | None = None) -> str:
        """A count or figure with the locale's grouping and decimal sign ("1.234,5")."""
        if decimals is None:
            return format_decimal(value, locale=self.locale)
        return format_decimal(value, format=f"#,##0.{'0' * decimals}" if decimals else "#,##0", locale=self.locale)

    def percent(self, ratio: float) -> str:
        """A share (0.753) in per cent to one decimal, as the locale writes it ("75,3%", "75.3%")."""
        return format_decimal(ratio * 100, format="#,##0.0", locale=self.locale) + "%"

    def local(self, value: str | dt.datetime | None) -> dt.datetime | None:
        """A stored time (naive UTC, ISO text, or aware) in the call centre's zone; None when missing or unreadable."""
        if not value:
            return None
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).astimezone(self.zone)

    def clock(self, value: str | dt.datetime | None) -> str:
        """The time of day alone ("14:02", "2:02 PM")."""
        local = self.local(value)
        return self._clock(local.hour, local.minute) if local else ""

    def date(self, value: str | dt.datetime | dt.date | None) -> str:
        """A day ("7. des. 2026", "Dec 7, 2026"); a date is taken as it is, a time in the call centre's zone."""
        day = value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else self.local(value)
        return format_date(day, "medium", locale=self.locale) if day else ""

    def datetime(self, value: str | dt.datetime | None) -> str:
        """A day and time as the pages show them, the zone named ("7. des. 2026, 14:02 GMT", "Dec 7, 2026, 2:02 PM GMT")."""
        local = self.local(value)
        if local is None:
            return ""
        day = format_date(local, "medium", locale=self.locale)
        return f"{self.locale.datetime_formats['medium'].format(self._clock(local.hour, local.minute), day)} {local.tzname()}"

    def when(self, at: str, now: dt.datetime | None = None) -> str:
        """A card's time (ISO, UTC) in the call centre's zone: the time alone today, else with the date."""
        local = self.local(at) if isinstance(at, str) else None
        if local is None:
            return ""
        today = (now or dt.datetime.now(dt.timezone.utc)).astimezone(self.zone).date()
        time = self._clock(local.hour, local.minute)
        if local.date() == today:
            return time
        day = format_skeleton("MMMd" if local.year == today.year else "yMMMd", local, locale=self.locale)
        return self.locale.datetime_formats["short"].format(time, day)  # the locale's joint: "Nov 26, 6:53 PM"

    def weekday(self, index: int) -> str:
        """A day of the week, Monday 0, shortened as the locale writes it ("mán.", "Mon")."""
        return self.locale.days["format"]["abbreviated"][index]

    def day_month(self, day: dt.date) -> str:
        """A day of a month without its year, as a chart's axis shows it ("7. des.", "Dec 7")."""
        return format_skeleton("MMMd", day, locale=self.locale)

    def country(self, code: str) -> str:
        """A known two-letter ISO code by its name in the locale ("IS": "Ísland", "Iceland"); other text as given."""
        if len(code) == 2 and code.isalpha():
            return self.locale.territories.get(code.upper(), code)
        return code


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
