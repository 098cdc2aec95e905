"""Custom fields and categories as stored (docs/customfields.md): the definitions and the category list read in one
query each, a record's values checked against its definitions, merged into its JSON column, shown as text.

A record's values are one JSON object {key: stored text} in its ``custom`` column, read with the row: the card,
the record page and the CSV export get every value without another query or join, and adding a field changes no
schema. The text and choice values of a customer are also kept, folded by the search index, in ``custom_text``.
The admin's steps on definitions and categories are daemon/customers/admin.py's; the rules for single values are
daemon/customers/values.py's.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import peewee

from screenpop.daemon.customers import values
from screenpop.daemon.i18n import lazy_gettext

SEARCHED = ("text", "choice")  # kinds whose values the customer search finds
# the record's own columns and API keys, which a custom field's key may not take
RESERVED = {
    "customer": {"id", "external_id", "name", "company", "category", "note", "city", "country", "photo", "phones",
                 "fields", "custom", "custom_text", "created_at", "updated_at", "orders", "calls", "debt"},
    "order": {"id", "number", "customer", "customer_id", "title", "stage", "responsible", "responsible_id", "amount",
              "paid", "debt", "status", "fields", "custom"},
}


@dataclass(frozen=True)
class Field:
    """One field an admin defined: on which records (entity), its key, label, kind, options, order."""

    id: int
    entity: str
    key: str
    label: str
    kind: str
    required: bool
    options: tuple[str, ...]
    position: int

    def as_dict(self) -> dict:
        """The field as the API gives it."""
        return {"id": self.id, "entity": self.entity, "key": self.key, "label": self.label, "type": self.kind,
                "required": self.required, "options": list(self.options), "position": self.position}


@dataclass(frozen=True)
class Category:
    """One entry of the category list: the name customers store, its colour, the flag shown on the pop."""

    name: str
    colour: str
    flag: str
    position: int
    is_default: bool

    def as_dict(self) -> dict:
        return {"name": self.name, "colour": self.colour, "flag": self.flag, "position": self.position,
                "default": self.is_default}


def load_fields(db: peewee.Database, entity: str | None = None) -> list[Field]:
    """The definitions (of one entity, or all) in their order."""
    sql = "SELECT id, entity, key, label, kind, required, options, position FROM custom_field"
    params: tuple = ()
    if entity is not None:
        sql += f" WHERE entity = {db.param}"
        params = (entity,)
    rows = db.execute_sql(sql + " ORDER BY entity, position, id", params).fetchall()
    return [Field(i, e, k, label, kind, bool(req), tuple(json.loads(opts or "[]")), pos)
            for i, e, k, label, kind, req, opts, pos in rows]


def load_categories(db: peewee.Database) -> list[Category]:
    """The category list in its order."""
    rows = db.execute_sql("SELECT name, colour, flag, position, is_default FROM category ORDER BY position, name")
    return [Category(n, c, f, p, bool(d)) for n, c, f, p, d in rows.fetchall()]


def default_category(categories: Iterable[Category]) -> str:
    """The category a customer gets when none is given."""
    listed = list(categories)
    return next((c.name for c in listed if c.is_default), listed[0].name if listed else "regular")


def decode(stored: str | None) -> dict[str, str]:
    """A record's custom column as a dict; anything that is not a JSON object of strings counts as no values."""
    try:
        found = json.loads(stored or "{}")
    except ValueError:
        return {}
    return {k: v for k, v in found.items() if isinstance(v, str)} if isinstance(found, dict) else {}


def encode(found: dict[str, str]) -> str:
    """The custom column's text for these values (no empty ones)."""
    return json.dumps({k: v for k, v in found.items() if v}, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def changes(defs: list[Field], given: dict[str, Any], creating: bool) -> dict[str, str]:
    """The values given (the API's JSON or a form's text; null or "" clears) checked against the definitions:
    {key: stored text, "" to clear}. ValueError "key: why" for an unknown key, a bad value, or a required field
    left empty (when creating, also one not given)."""
    by_key = {f.key: f for f in defs}
    unknown = sorted(k for k in given if k not in by_key)
    if unknown:
        if not by_key:
            raise ValueError(lazy_gettext("%(key)s: no such field (there are no fields)", key=unknown[0][:50]))
        raise ValueError(lazy_gettext("%(key)s: no such field (the fields are: %(fields)s)", key=unknown[0][:50],
                                      fields=", ".join(by_key)))
    out: dict[str, str] = {}
    for key, raw in given.items():
        field = by_key[key]
        if isinstance(raw, bool) and field.kind == "yesno":
            raw = "yes" if raw else "no"
        elif raw is None:
            raw = ""
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool) and field.kind == "number":
            raw = str(raw)
        if not isinstance(raw, str):
            if field.kind == "yesno":
                raise ValueError(lazy_gettext("%(key)s: must be text or true/false", key=key))
            raise ValueError(lazy_gettext("%(key)s: must be text", key=key))
        try:
            out[key] = values.field_value(field.kind, raw, field.options)
        except ValueError as exc:
            raise ValueError(lazy_gettext("%(key)s: %(reason)s", key=key, reason=exc)) from None
    for field in defs:
        if field.required and (out.get(field.key) == "" or (creating and not out.get(field.key))):
            raise ValueError(lazy_gettext("%(key)s: required (%(label)s)", key=field.key, label=field.label))
    return out


def merged(stored: dict[str, str], change: dict[str, str]) -> dict[str, str]:
    """The values after a change ("" removes a value)."""
    out = {**stored, **change}
    return {k: v for k, v in out.items() if v}


def search_text(defs: list[Field], found: dict[str, str]) -> str:
    """The values the customer search finds (text and choice fields), one string for the index."""
    return " | ".join(found[f.key] for f in defs if f.kind in SEARCHED and found.get(f.key))


def display(field: Field, value: str) -> str:
    """A stored value as pages and the card show it."""
    if field.kind == "yesno":
        return "Yes" if value == "yes" else "No"
    return value


def shown(defs: list[Field], found: dict[str, str]) -> list[dict]:
    """The values a record has, in the definitions' order: {key, label, type, value, text}."""
    return [{"key": f.key, "label": f.label, "type": f.kind, "value": found[f.key], "text": display(f, found[f.key])}
            for f in defs if found.get(f.key)]
