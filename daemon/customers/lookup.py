"""Customer lookup by phone number on the call path: exact E.164 first, then the last N digits, in raw SQL."""
from __future__ import annotations

from dataclasses import dataclass

import peewee

from screenpop.db.models import Customer, Phone
from screenpop.db.numbers import Number, NumberRules

MAX_CANDIDATES = 10
_DIGITS_AFTER = "9" * 32


@dataclass(frozen=True, slots=True)
class Match:
    """The lookup result: customer_id only when exactly one customer matches; matches counts distinct customers."""

    customer_id: int | None
    matches: int
    candidates: tuple[int, ...]
    matched_by: str = ""


NO_MATCH = Match(None, 0, ())


class Lookup:
    """Finds the customer behind a number with precompiled SQL, because the query builder costs ~20x on this path."""

    def __init__(self, db: peewee.Database, rules: NumberRules) -> None:
        self.db = db
        self.rules = rules
        p = db.param
        limit = MAX_CANDIDATES + 1
        self._exact = f"SELECT DISTINCT customer_id, 0 AS how FROM phone WHERE e164 = {p} ORDER BY customer_id LIMIT {limit}"
        self._count_exact = f"SELECT COUNT(DISTINCT customer_id) FROM phone WHERE e164 = {p}"
        # rev holds only digits, so every rev starting with prefix lies in [prefix, prefix + "999..."]:
        # an index range scan in any collation, unlike LIKE 'prefix%'. A caller whose number is valid matches by
        # its last digits only numbers of its own country and numbers valid in no plan (country_code NULL).
        anywhere = f"rev >= {p} AND rev <= {p}"
        own_country = f"{anywhere} AND (country_code IS NULL OR country_code = {p})"
        self._suffix = {valid: _Suffix(db, self._exact, where) for valid, where in ((False, anywhere), (True, own_country))}

    def find(self, number: str | Number) -> Match:
        """The customer(s) whose stored number equals this one, else whose last suffix_digits digits do; a valid
        caller's last digits never match a valid number of another country (docs/card.md)."""
        if not isinstance(number, Number):
            number = self.rules.classify(number)
        if number.kind != "e164":
            return NO_MATCH
        exact = (number.e164,)
        if len(number.rev) < self.rules.suffix_digits:
            return self._match(self._ids(self._exact, exact), "e164", self._count_exact, exact) or NO_MATCH
        prefix = number.rev[: self.rules.suffix_digits]
        code = number.country_code
        by = self._suffix[code is not None]
        suffix = (prefix, prefix + _DIGITS_AFTER) if code is None else (prefix, prefix + _DIGITS_AFTER, code)
        if by.both is None:
            return (self._match(self._ids(self._exact, exact), "e164", self._count_exact, exact)
                    or self._match(self._ids(by.select, suffix), "suffix", by.count, suffix) or NO_MATCH)
        rows = self.db.execute_sql(by.both, exact + suffix).fetchall()
        return (self._match(sorted(c for c, how in rows if how == 0), "e164", self._count_exact, exact)
                or self._match(sorted(c for c, how in rows if how == 1), "suffix", by.count, suffix) or NO_MATCH)

    def _ids(self, sql: str, params: tuple) -> list[int]:
        return [row[0] for row in self.db.execute_sql(sql, params).fetchall()]

    def _match(self, ids: list[int], how: str, count_sql: str, params: tuple) -> Match | None:
        """The Match of the customer ids a query found (sorted, at most MAX_CANDIDATES + 1); None if none."""
        if not ids:
            return None
        if len(ids) == 1:
            return Match(ids[0], 1, tuple(ids), how)
        if len(ids) <= MAX_CANDIDATES:
            return Match(None, len(ids), tuple(ids), how)
        total = self.db.execute_sql(count_sql, params).fetchone()[0]
        return Match(None, total, tuple(ids[:MAX_CANDIDATES]), how)


class _Suffix:
    """The last-digits queries for one WHERE clause: the candidates, their count, and on PostgreSQL the exact and
    the suffix query in one round trip (a new caller, unknown to both, is a call centre's common case; the suffix
    rows count only when no number matches exactly). SQLite has no round trip to save, and reading the suffix
    range for a number that matches exactly would only cost."""

    def __init__(self, db: peewee.Database, exact: str, where: str) -> None:
        limit = MAX_CANDIDATES + 1
        self.select = f"SELECT DISTINCT customer_id, 1 AS how FROM phone WHERE {where} ORDER BY customer_id LIMIT {limit}"
        self.count = f"SELECT COUNT(DISTINCT customer_id) FROM phone WHERE {where}"
        self.both = (None if isinstance(db, peewee.SqliteDatabase)
                     else f"SELECT * FROM ({exact}) AS exact UNION ALL SELECT * FROM ({self.select}) AS suffix")


def phone_columns(number: Number) -> dict[str, str | int | None]:
    """The stored form of a customer's number the lookup reads (e164, rev, country_code): every writer uses this."""
    return {"e164": number.e164, "rev": number.rev, "country_code": number.country_code}


def add_phone(customer: Customer | int, raw: str, label: str, rules: NumberRules) -> Phone:
    """Store one number for a customer, normalised to E.164 with its reversed digits; ValueError if it cannot be."""
    number = rules.classify(raw)
    if number.kind != "e164":
        reason = "an internal extension" if number.kind == "extension" else "not a phone number that can be made E.164"
        raise ValueError(f"{raw!r} is {reason}")
    return Phone.create(customer=customer, **phone_columns(number), raw=raw.strip(), label=label)
