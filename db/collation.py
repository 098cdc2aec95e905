"""Names in the order people of a language expect (docs/i18n.md, "Sorting and search"), sorted by the database so a
list pages correctly over any number of rows.

`sort_key` is the rule, and it makes plain text: a key whose order, character by character, is the language's
order. Customers keep their name's and company's key for each language in columns of their own (written with the
row, indexed), so SQLite and PostgreSQL sort a million of them by an index, in the same order, with no collation of
either database's own; the short lists (people, employees) sort their rows with the same keys in Python. The rule
lives in db, beside the search fold (db/search.py), because the migration that fills the columns needs it and db
imports nothing of the daemon.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache

LANGUAGES = ("en", "is")
# Icelandic order (Íslensk stafrófsröð): a á b d ð e é f g h i í j k l m n o ó p r s t u ú v x y ý þ æ ö; c, q, w, z
# where the rest of the Latin alphabet has them, å last. Accented letters are letters of their own, after their base;
# ä sorts as æ, ø as ö, đ as d (as ICU's Icelandic collation has them).
_ICELANDIC = "aábcdðeéfghiíjklmnoópqrstuúvwxyýzþæöå"
_ICELANDIC_RANK = {ch: i for i, ch in enumerate(_ICELANDIC)}
_ICELANDIC_SAME = {"ä": "æ", "ø": "ö", "đ": "d"}
_ENGLISH_LETTERS = str.maketrans({"þ": "th", "æ": "ae", "œ": "oe", "ð": "d", "đ": "d", "ø": "o", "ł": "l", "ħ": "h",
                                  "ŧ": "t", "ı": "i"})  # letters with no accent to drop
# Between a key's order and its tie-break: below every character a key holds (names have no control characters,
# and Icelandic's classes start at \x02), so "Ann" comes before "Anna" and "Anna Jóns".
_THEN = "\x01"
# The key of an empty text: after every other, so customers without a company come last in the company order.
# U+10FFFD is the last character every database stores (U+10FFFE and U+10FFFF are not characters).
LAST = "\U0010fffd"


def sort_key(text: str | None, lang: str) -> str:
    """A key that sorts names as people of lang expect: in Icelandic, Á after A, Ð after D, and Þ, Æ, Ö after Z; in
    English, accents and case aside (Þ as th, Æ as ae, Ð as d, Ø as o). Ties go to the plain text, case aside; an
    empty text sorts last. Compared character by character (Python's str, SQLite's BINARY, PostgreSQL's "C")."""
    s = unicodedata.normalize("NFC", (text or "").casefold())
    if not s:
        return LAST
    if lang == "is":
        return "".join(map(_icelandic, s)) + _THEN + s
    return english_fold(s) + _THEN + s


def english_fold(text: str) -> str:
    """text as English sorts it: lower case, þ as th, æ as ae, ð as d, ø as o, accents off."""
    s = text.casefold().translate(_ENGLISH_LETTERS)
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


@lru_cache(maxsize=4096)
def _icelandic(ch: str) -> str:
    """One letter's place, as two characters: its class (spaces, digits and punctuation first, then the alphabet,
    then other scripts), then its place in the class."""
    base = _ICELANDIC_SAME.get(ch, ch)
    if base not in _ICELANDIC_RANK:  # other accents (ü, ő) sort with their base letter
        base = "".join(c for c in unicodedata.normalize("NFKD", base) if not unicodedata.combining(c))
    if base in _ICELANDIC_RANK:
        return "\x03" + chr(0x100 + _ICELANDIC_RANK[base])
    return ("\x02" if not ch.isalpha() else "\x04") + ch


def customer_keys(name: str, company: str) -> dict[str, str]:
    """A customer's sort columns (KEY_COLUMNS, db/models.py) for its name and company: written with every change of
    either, so the lists sort by an index."""
    return {f"{part}_key_{lang}": sort_key(text, lang) for part, text in (("name", name), ("company", company))
            for lang in LANGUAGES}


KEY_COLUMNS = tuple(customer_keys("", ""))
