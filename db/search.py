"""Customer search: one free-text box over name, company, city, the text and choice custom fields and phone numbers,
fast with a million customers.

Text is folded (lower case, accents and Icelandic letters to ASCII, punctuation to spaces) by one map, used
alike for the stored text and for the query, so both sides agree. SQLite keeps the folded text in an FTS5
trigram table (``customer_search``) that triggers hold in step with customer and phone; PostgreSQL keeps it
in a generated column (``customer.search_text``) with a pg_trgm index (no triggers needed). Each query word
must appear (AND); matches are ranked in tiers: whole words, then word starts, then anywhere.
A query that looks like a number is matched on phones first: exact E.164, then the same last digits, then
the digits anywhere in the number.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import peewee

from screenpop.db.numbers import NumberRules

log = logging.getLogger(__name__)

MAX_RESULTS = 1000
MAX_QUERY = 200
MAX_WORDS = 8
MIN_DIGITS = 3
_CHUNK = 25
_SLACK = 10  # extra phone rows fetched per tier, for customers matched twice through two of their numbers

_LETTERS = {
    "a": "àáâãäåāą", "c": "çćč", "d": "ďđð", "e": "èéêëēęě", "g": "ğ", "i": "ìíîïī", "l": "ł", "n": "ñńň",
    "o": "òóôõöøő", "r": "ř", "s": "śšş", "t": "ťţ", "u": "ùúûüūůű", "y": "ýÿ", "z": "źżž",
}
_MULTI = {"þ": "th", "æ": "ae", "œ": "oe", "ß": "ss", "ẞ": "ss", "Þ": "th", "Æ": "ae", "Œ": "oe"}
_SPACES = "\t\n\r\xa0-.,;:/\\()&+'\"!?*|"


def _single_map() -> dict[str, str]:
    """Every one-character fold: accented letters in both cases to their base letter, punctuation to a space."""
    pairs = {}
    for base, accented in _LETTERS.items():
        for ch in accented:
            pairs[ch] = base
            if len(ch.upper()) == 1 and ch.upper() != ch:
                pairs[ch.upper()] = base
    pairs.update({ch: " " for ch in _SPACES})
    return pairs


_SINGLE = _single_map()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pg_fold(arg: str) -> str:
    """The PostgreSQL expression folding the text expression arg; always the same text, so the index is used."""
    src, dst = "".join(_SINGLE), "".join(_SINGLE.values())
    expr = f"translate(lower({arg}), {_literal(src)}, {_literal(dst)})"
    for s, d in _MULTI.items():
        expr = f"replace({expr}, {_literal(s)}, {_literal(d)})"
    return expr


# padded: every word has a space on each side; custom_text holds the text and choice custom field values
_NAMES = "' ' || name || ' | ' || company || ' | ' || city || ' | ' || custom_text || ' '"
_PG_NAMES = _pg_fold(_NAMES)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SINGLE_TABLE = str.maketrans(_SINGLE)


def fold_sqlite_query(text: str) -> str:
    """The query-side twin of the SQLite views' fold (ASCII lower(), then the same replacements)."""
    text = text.translate(_ASCII_LOWER).translate(_SINGLE_TABLE)
    for src, dst in _MULTI.items():
        text = text.replace(src, dst)
    return text


# ---- schema (migration 3) ----------------------------------------------------------------------------


def install(db: peewee.Database) -> None:
    """Create the search index for the current customers and phones, and what keeps it in step with them."""
    if isinstance(db, peewee.SqliteDatabase):
        _install_sqlite(db)
    else:
        _install_postgres(db)


def reinstall(db: peewee.Database) -> None:
    """Build the index again over what _NAMES reads now (migration 15 added the custom field text to it)."""
    if isinstance(db, peewee.SqliteDatabase):
        for n in range(len(_FOLD_VIEWS), 0, -1):
            db.execute_sql(f"DROP VIEW IF EXISTS customer_fold_{n}")
        for trigger in ("customer_search_ai", "customer_search_au"):
            db.execute_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    else:
        db.execute_sql("ALTER TABLE customer DROP COLUMN IF EXISTS search_text")  # its index goes with it
    install(db)


def _digits_sql(customer: str) -> str:
    """A customer's numbers as digits without the +, space-separated (SQLite, for the trigram table)."""
    return f"(SELECT ' ' || coalesce(group_concat(substr(e164, 2), ' '), '') || ' ' FROM phone WHERE customer_id = {customer})"


def _fold_views() -> list[str]:
    """SQLite views customer_fold_1..N: each applies the next _CHUNK replacements to the one before.

    SQLite has no translate() and its parser takes only ~30 nested calls, but a view is parsed on its own, so
    the chain of replace() is split across views and the last one (id, names) is the folded text. lower()
    knows only ASCII; the trigram tokenizer folds the remaining case itself.
    """
    pairs = list({**_SINGLE, **_MULTI}.items())
    views, source, column = [], "customer", f"lower({_NAMES})"
    for n, start in enumerate(range(0, len(pairs), _CHUNK), 1):
        expr = column
        for src, dst in pairs[start : start + _CHUNK]:
            expr = f"replace({expr}, {_literal(src)}, {_literal(dst)})"
        views.append(f"CREATE VIEW IF NOT EXISTS customer_fold_{n} AS SELECT id, {expr} AS names FROM {source}")
        source, column = f"customer_fold_{n}", "names"
    return views


_FOLD_VIEWS = _fold_views()
_FOLDED = f"customer_fold_{len(_FOLD_VIEWS)}"


def _install_sqlite(db: peewee.Database) -> None:
    run = db.execute_sql
    run("CREATE VIRTUAL TABLE IF NOT EXISTS customer_search USING fts5(names, digits, tokenize = 'trigram')")
    for view in _FOLD_VIEWS:
        run(view)
    folded = {row: f"(SELECT names FROM {_FOLDED} WHERE id = {row})" for row in ("new.id",)}
    digits = {row: _digits_sql(row) for row in ("new.customer_id", "old.customer_id", "new.id", "f.id")}
    triggers = {
        "customer_search_ai": f"AFTER INSERT ON customer BEGIN "
        f"INSERT INTO customer_search (rowid, names, digits) VALUES (new.id, {folded['new.id']}, {digits['new.id']}); END",
        "customer_search_au": f"AFTER UPDATE OF name, company, city, custom_text ON customer BEGIN "
        f"UPDATE customer_search SET names = {folded['new.id']} WHERE rowid = new.id; END",
        "customer_search_ad": "AFTER DELETE ON customer BEGIN DELETE FROM customer_search WHERE rowid = old.id; END",
        "phone_search_ai": f"AFTER INSERT ON phone BEGIN "
        f"UPDATE customer_search SET digits = {digits['new.customer_id']} WHERE rowid = new.customer_id; END",
        "phone_search_au": f"AFTER UPDATE OF e164, customer_id ON phone BEGIN "
        f"UPDATE customer_search SET digits = {digits['old.customer_id']} WHERE rowid = old.customer_id; "
        f"UPDATE customer_search SET digits = {digits['new.customer_id']} WHERE rowid = new.customer_id; END",
        "phone_search_ad": f"AFTER DELETE ON phone BEGIN "
        f"UPDATE customer_search SET digits = {digits['old.customer_id']} WHERE rowid = old.customer_id; END",
    }
    for name, body in triggers.items():
        run(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
    run("DELETE FROM customer_search")
    run(f"INSERT INTO customer_search (rowid, names, digits) SELECT f.id, f.names, {digits['f.id']} FROM {_FOLDED} f")


def _install_postgres(db: peewee.Database) -> None:
    # A stored column, not an expression index: the index's recheck then reads the folded text instead of
    # folding it again for every candidate row (translate() over multibyte text costs ~20 µs a row).
    db.execute_sql(f"ALTER TABLE customer ADD COLUMN IF NOT EXISTS search_text text GENERATED ALWAYS AS ({_PG_NAMES}) STORED")
    schema = _trgm_schema(db)
    if schema is None:
        log.warning("PostgreSQL extension pg_trgm is not available: customer search works but reads the whole "
                    "customer table. After CREATE EXTENSION pg_trgm (postgresql-contrib), add the indexes: "
                    "CREATE INDEX customer_search_trgm ON customer USING gin (search_text gin_trgm_ops); "
                    "CREATE INDEX phone_e164_trgm ON phone USING gin (e164 gin_trgm_ops)")
        return
    ops = f'"{schema}".gin_trgm_ops'
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS customer_search_trgm ON customer USING gin (search_text {ops})")
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS phone_e164_trgm ON phone USING gin (e164 {ops})")


def _trgm_schema(db: peewee.Database) -> str | None:
    """The schema holding pg_trgm, creating the extension in public if it is not there yet; None if it cannot be."""
    find = "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
    row = db.execute_sql(find).fetchone()
    if row is None:
        try:
            with db.atomic():  # a savepoint: a refused CREATE EXTENSION must not abort the migration
                db.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        except peewee.DatabaseError as exc:
            log.warning("cannot create the pg_trgm extension: %s", str(exc).strip().splitlines()[0])
        row = db.execute_sql(find).fetchone()
    return None if row is None else row[0]


# ---- queries -----------------------------------------------------------------------------------------

_NUMBERLIKE = re.compile(r"\+?[0-9 ()./-]+")
_NON_DIGITS = re.compile(r"[^0-9]")
_DIGITS_AFTER = "9" * 32


class _Tiers:
    """Collects customer ids tier by tier, best first, each id once, until enough are found."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.ids: dict[int, None] = {}

    @property
    def full(self) -> bool:
        return len(self.ids) >= self.wanted

    def fetch(self, db: peewee.Database, sql: str, params: list, slack: int = 0) -> None:
        """Run sql (ending in LIMIT) for the ids still missing, plus those already found, which it may repeat."""
        if self.full:
            return
        cursor = db.execute_sql(sql, (*params, self.wanted + len(self.ids) + slack))
        for (customer_id,) in cursor.fetchall():
            self.ids.setdefault(customer_id, None)


def search_customers(db: peewee.Database, text: str, limit: int, offset: int = 0, *,
                     rules: NumberRules | None = None) -> list[int]:
    """Customer ids matching text, best match first: ids[offset:offset + limit] of at most MAX_RESULTS matches.

    rules (the site's number rules) also finds a number typed in national form with a trunk prefix exactly;
    without them a number still matches by its last digits.
    """
    if not isinstance(text, str) or limit <= 0 or offset < 0 or offset >= MAX_RESULTS:
        return []
    text = text.replace("\x00", " ").encode("utf-8", "ignore").decode("utf-8")[:MAX_QUERY].strip()
    if not text:
        return []
    tiers = _Tiers(min(offset + limit, MAX_RESULTS))
    with _indexes_only(db):
        if _NUMBERLIKE.fullmatch(text) and len(_NON_DIGITS.sub("", text)) >= MIN_DIGITS:
            _number_tiers(db, text, tiers, rules)
        _text_tiers(db, text, tiers)
    return list(tiers.ids)[offset : offset + limit]


@contextmanager
def _indexes_only(db: peewee.Database) -> Iterator[None]:
    """On PostgreSQL, bitmap scans of the search indexes only, for these queries.

    With a LIMIT the planner takes a LIKE it cannot estimate for common and walks the table (or its primary
    key) computing the folded text row by row, 0.5-1 s on a million customers when the match is rare.
    """
    if isinstance(db, peewee.SqliteDatabase):
        yield
        return
    names = ("enable_seqscan", "enable_indexscan")
    with db.atomic():
        before = [db.execute_sql(f"SELECT current_setting('{n}')").fetchone()[0] for n in names]
        for n in names:
            db.execute_sql(f"SELECT set_config('{n}', 'off', true)")
        try:
            yield
        finally:
            for n, value in zip(names, before):
                db.execute_sql(f"SELECT set_config('{n}', %s, true)", (value,))


def _number_tiers(db: peewee.Database, text: str, tiers: _Tiers, rules: NumberRules | None) -> None:
    p = db.param
    digits = _NON_DIGITS.sub("", text)
    international = text.startswith("+") or text.startswith("00")
    tail = digits.removeprefix("00") if international else digits.lstrip("0")  # no trunk or international prefix
    whole = None  # the number as the site's rules read it, when they do
    if rules is not None:
        number = rules.classify(text)
        whole = number.e164 if number.kind == "e164" else None
    e164 = whole or ("+" + tail if international else None)
    if e164:
        tiers.fetch(db, f"SELECT customer_id FROM phone WHERE e164 = {p} LIMIT {p}", [e164], _SLACK)
    if len(tail) < MIN_DIGITS:
        return
    rev = tail[::-1]
    tiers.fetch(db, f"SELECT customer_id FROM phone WHERE rev >= {p} AND rev <= {p} LIMIT {p}",
                [rev, rev + _DIGITS_AFTER], _SLACK)
    if whole:
        return  # a whole number is not part of a longer one
    if isinstance(db, peewee.SqliteDatabase):
        tiers.fetch(db, f"SELECT rowid FROM customer_search WHERE customer_search MATCH {p} LIMIT {p}",
                    [f'digits : "{tail}"'])
    else:
        tiers.fetch(db, f"SELECT customer_id FROM phone WHERE e164 LIKE {p} LIMIT {p}", [f"%{tail}%"], _SLACK)


def _text_tiers(db: peewee.Database, text: str, tiers: _Tiers) -> None:
    """Whole words first, then words starting so, then the words anywhere; every word must match."""
    p = db.param
    if isinstance(db, peewee.SqliteDatabase):
        folded = fold_sqlite_query(text)
    else:
        folded = db.execute_sql(f"SELECT {_pg_fold(p)}", (text,)).fetchone()[0]
    words = list(dict.fromkeys(folded.split()))[:MAX_WORDS]
    if not words:
        return
    # A word of one or two characters has too few trigrams to search inside other words: it is always
    # matched as a whole word (one character) or as a word start (two).
    shapes = [
        [f" {w} " for w in words],
        [f" {w} " if len(w) == 1 else f" {w}" for w in words],
        [f" {w} " if len(w) == 1 else f" {w}" if len(w) == 2 else w for w in words],
    ]
    seen = set()
    for shape in shapes:
        key = tuple(shape)
        if key in seen:
            continue
        seen.add(key)
        if isinstance(db, peewee.SqliteDatabase):
            query = " AND ".join(f'names : "{s.replace(chr(34), chr(34) * 2)}"' for s in shape)
            tiers.fetch(db, f"SELECT rowid FROM customer_search WHERE customer_search MATCH {p} LIMIT {p}", [query])
        else:
            where = " AND ".join(f"search_text LIKE {p}" for _ in shape)
            tiers.fetch(db, f"SELECT id FROM customer WHERE {where} LIMIT {p}", [f"%{_like_escape(s)}%" for s in shape])
        if tiers.full:
            return


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
