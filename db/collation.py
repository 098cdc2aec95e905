"""Names in the order people of a language expect (docs/i18n.md, "Sorting and search"), sorted by the database so a
list pages correctly over any number of rows.

`sort_key` is the rule. SQLite sorts with it: every SQLite connection has the collations `screenpop_is` and
`screenpop_en`, which compare two texts by their sort_key (db/database.py registers them before connecting, so the
writer's, the database worker's and every other connection have them). PostgreSQL sorts Icelandic with ICU's
Icelandic collation (`is-IS-x-icu`: the same alphabet) and English with the same fold as sort_key's, written in SQL
and compared byte by byte ("C"). `by_name` gives a query's ORDER BY for either. The rule lives in db, beside the
search fold (db/search.py), because every connection db opens needs it and db imports nothing of the daemon.
"""
from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable
from functools import lru_cache

import peewee

from screenpop.db import models

# Icelandic order (Íslensk stafrófsröð): a á b d ð e é f g h i í j k l m n o ó p r s t u ú v x y ý þ æ ö; c, q, w, z
# where the rest of the Latin alphabet has them, å last. Accented letters are letters of their own, after their base;
# ä sorts as æ, ø as ö, đ as d (as ICU's Icelandic collation has them).
_ICELANDIC = "aábcdðeéfghiíjklmnoópqrstuúvwxyýzþæöå"
_ICELANDIC_RANK = {ch: i for i, ch in enumerate(_ICELANDIC)}
_ICELANDIC_SAME = {"ä": "æ", "ø": "ö", "đ": "d"}
COLLATIONS = {"is": "screenpop_is", "en": "screenpop_en"}
PG_ICELANDIC = '"is-IS-x-icu"'
_ENGLISH_LETTERS = str.maketrans({"þ": "th", "æ": "ae", "œ": "oe", "ð": "d", "đ": "d", "ø": "o", "ł": "l", "ħ": "h",
                                  "ŧ": "t", "ı": "i"})  # letters with no accent to drop
KEYS_CACHED = 1 << 16  # the keys a collation keeps: a page of a sorted list compares each row with the same few


def sort_key(text: str | None, lang: str) -> tuple[str, str]:
    """A key that sorts names as people of lang expect: in Icelandic, Á after A, Ð after D, and Þ, Æ, Ö after Z; in
    English, accents and case aside (Þ as th, Æ as ae, Ð as d, Ø as o). Ties go to the plain text, case aside."""
    s = unicodedata.normalize("NFC", (text or "").casefold())
    if lang == "is":
        return "".join(map(_icelandic, s)), s
    return english_fold(s), s


def english_fold(text: str) -> str:
    """text as English sorts it: lower case, þ as th, æ as ae, ð as d, ø as o, accents off."""
    s = text.casefold().translate(_ENGLISH_LETTERS)
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


@lru_cache(maxsize=4096)
def _icelandic(ch: str) -> str:
    """One letter's place, as two characters (so keys compare as plain text): its class (spaces, digits and
    punctuation first, then the alphabet, then other scripts), then its place in the class."""
    base = _ICELANDIC_SAME.get(ch, ch)
    if base not in _ICELANDIC_RANK:  # other accents (ü, ő) sort with their base letter
        base = "".join(c for c in unicodedata.normalize("NFKD", base) if not unicodedata.combining(c))
    if base in _ICELANDIC_RANK:
        return "\x02" + chr(0x100 + _ICELANDIC_RANK[base])
    return ("\x01" if not ch.isalpha() else "\x03") + ch


def _comparer(lang: str) -> Callable[[str, str], int]:
    """An SQLite collation: -1, 0 or 1 as sort_key orders a and b in lang."""
    key = lru_cache(maxsize=KEYS_CACHED)(lambda text: sort_key(text, lang))

    def compare(a: str, b: str) -> int:
        ka, kb = key(a), key(b)
        return (ka > kb) - (ka < kb)
    compare.__name__ = COLLATIONS[lang]
    compare.key = key  # type: ignore[attr-defined]  # its cache, which bench/collation.py empties between runs
    return compare


_COMPARERS = {lang: _comparer(lang) for lang in COLLATIONS}


def register(db: peewee.SqliteDatabase) -> None:
    """Give db's connections the collations (before it connects: peewee adds them to each new connection)."""
    for lang, name in COLLATIONS.items():
        db.register_collation(_COMPARERS[lang], name)


def by_name(column: peewee.ColumnBase, lang: str) -> list[peewee.Node]:
    """ORDER BY terms sorting column as a reader of lang (en, is; others: en) expects, on the bound database."""
    lang = lang if lang in COLLATIONS else "en"
    if isinstance(models.database.obj, peewee.SqliteDatabase):
        return [column.collate(COLLATIONS[lang])]
    if lang == "is":
        return [peewee.fn.lower(column).collate(PG_ICELANDIC)]
    return [_pg_english(column).collate('"C"'), peewee.fn.lower(column).collate('"C"')]


def _pg_fold_pairs() -> tuple[list[tuple[str, str]], str, str]:
    """english_fold per character for the Latin letters beyond ASCII: those folding to several characters (replace),
    and the rest as translate()'s from and to (one each, or none at the end)."""
    multi, single, gone = [], {}, []
    for ch in map(chr, itertools.chain(range(0xC0, 0x250), range(0x1E00, 0x1F00))):
        if unicodedata.category(ch) == "Cn":
            continue
        folded = english_fold(ch)
        if folded == ch:
            continue
        if len(folded) == 1:
            single[ch] = folded
        elif folded:
            multi.append((ch, folded))
        else:
            gone.append(ch)
    return multi, "".join(single) + "".join(gone), "".join(single.values())


_PG_MULTI, _PG_FROM, _PG_TO = _pg_fold_pairs()


def _pg_english(column: peewee.ColumnBase) -> peewee.ColumnBase:
    """english_fold in PostgreSQL: the letters it maps (both cases, whatever the server's locale), then lower()."""
    expr = column
    for ch, folded in _PG_MULTI:
        expr = peewee.fn.replace(expr, ch, folded)
    return peewee.fn.lower(peewee.fn.translate(expr, _PG_FROM, _PG_TO))
