"""The tray's words in the operator's language (docs/i18n.md): its menu, notifications' buttons and its command line.

The tray never imports the daemon, so it has its own catalogue (tray/locale/<language>/LC_MESSAGES/tray.po, compiled
in memory on first use) and its own choice of language: the tray config's `language`, else the desktop session's
(LANGUAGE, LC_ALL, LC_MESSAGES, LANG), else English. What a pop says about the caller comes written from the
daemon, which the tray asks for its own language (Accept-Language, when the config or the desktop names one); the
daemon writes it in the operator's own setting first (docs/i18n.md). The tray translates only its own words.

    from screenpop.tray.i18n import gettext as _
    menu_item(_("Missed calls"))
"""
from __future__ import annotations

import gettext as _gettext
import io
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

DOMAIN = "tray"
LANGUAGES = ("en", "is")
LOCALE_DIR = Path(__file__).parent / "locale"

_language = "en"
_asked: str | None = None  # the config's or the desktop's language, None when neither names one we have


@lru_cache(maxsize=None)
def _catalogue(language: str) -> _gettext.NullTranslations:
    """The compiled catalogue of a language (Babel reads the .po once); English is the source and needs none."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == "en" or not path.exists():
        return _gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


def desktop_language(env: dict[str, str] | None = None) -> str | None:
    """The session's language if we have it: the first of LANGUAGE, LC_ALL, LC_MESSAGES, LANG that is set decides."""
    env = dict(os.environ) if env is None else env
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(name):
            for tag in env[name].split(":"):
                base = tag.replace("-", "_").split(".")[0].split("_")[0].lower()
                if base in LANGUAGES:
                    return base
            return None
    return None


def choose(configured: str = "") -> str:
    """Speak the configured language, else the desktop's, else English; the one chosen."""
    global _language, _asked
    _asked = configured if configured in LANGUAGES else desktop_language()
    _language = _asked or "en"
    return _language


def language() -> str:
    return _language


def asked() -> str | None:
    """The language the config or the desktop names (what the tray asks the daemon's pops to be written in), or None:
    then the daemon writes them in the organisation's."""
    return _asked


def gettext(message: str, **variables: Any) -> str:
    """message in the tray's language, its %(name)s placeholders filled from variables."""
    text = _catalogue(_language).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    """The singular or plural form for n in the tray's language; %(num)s is n unless given."""
    return _catalogue(_language).ngettext(singular, plural, n) % {"num": n, **variables}
