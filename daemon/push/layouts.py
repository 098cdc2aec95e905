"""Card layouts an admin chooses (docs/card.md, "Layouts"): stored in the database, chosen per team (a named set of
extensions), cached for the card builder. A pop for extension X uses X's team's layout, else the layout named
"default", else the built-in one (layout.DEFAULT_ITEMS). The cache is read again on the next card after a change
made through this daemon, and every [card] layout_reload seconds for changes made through another.

The JSON API and the admin page share the steps below: each runs in the caller's transaction on the bound models
(the database worker) and raises DataError (400 bad input, 404 missing, 409 conflict).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import peewee

from screenpop.daemon.customers import fields as custom, values
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.i18n import lazy_gettext, lazy_join
from screenpop.daemon.push.layout import (BUILT_IN, CUSTOMER_PREFIX, DEFAULT_ITEMS, ORDER_PREFIX, SOURCE_PREFIX, STYLES,
                                          Item)
from screenpop.db.models import CardLayoutRow, Team, TeamMember, database

DEFAULT = "default"  # the layout of every extension in no team
MAX_ITEMS = 40
MAX_EXTENSIONS = 1000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_PAGES = ("new", "preview")  # the admin page's own paths beside /layouts/<name>
_LABEL_MAX = 60  # a source field's label in a key


@dataclass(frozen=True)
class StoredLayout:
    """One layout as the API gives it: its name, its items, the teams that use it, and whether it is the built-in."""

    name: str
    items: tuple[Item, ...]
    teams: tuple[str, ...] = ()
    built_in: bool = False

    def as_dict(self) -> dict:
        return {"name": self.name, "items": [i._asdict() for i in self.items], "teams": list(self.teams),
                "built_in": self.built_in}


@dataclass(frozen=True)
class TeamLayout:
    """One team: its name, the layout its pops use, its extensions."""

    name: str
    layout: str
    extensions: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"name": self.name, "layout": self.layout, "extensions": list(self.extensions)}


def decode(stored: str | None) -> tuple[Item, ...]:
    """A stored layout's items; an entry that is not {field, style} is left out (the column is only ever written
    checked, but it is text)."""
    try:
        found = json.loads(stored or "[]")
    except ValueError:
        return ()
    return tuple(Item(e["field"], e["style"]) for e in found if isinstance(e, dict) and isinstance(e.get("field"), str)
                 and e.get("style") in STYLES) if isinstance(found, list) else ()


def load(db: peewee.Database) -> tuple[list[StoredLayout], list[TeamLayout]]:
    """Every layout (the default first, the built-in one when none is stored) and every team, in two queries."""
    teams: dict[str, TeamLayout] = {}
    for name, layout, extension in db.execute_sql(
            "SELECT t.name, t.layout, m.extension FROM team t LEFT JOIN team_member m ON m.team = t.name "
            "ORDER BY t.name, m.extension").fetchall():
        team = teams.get(name) or TeamLayout(name, layout, ())
        teams[name] = TeamLayout(name, layout, team.extensions + ((extension,) if extension else ()))
    stored = {name: decode(items) for name, items in db.execute_sql("SELECT name, items FROM card_layout")}
    users = {n: tuple(t.name for t in teams.values() if t.layout == n) for n in stored}
    out = [StoredLayout(DEFAULT, stored[DEFAULT], users[DEFAULT]) if DEFAULT in stored
           else StoredLayout(DEFAULT, DEFAULT_ITEMS, built_in=True)]
    out += [StoredLayout(n, stored[n], users[n]) for n in sorted(stored) if n != DEFAULT]
    return out, list(teams.values())


class Layouts:
    """Which layout each extension's pops use, cached: read on the database worker at most every reload seconds,
    and on the next card after changed() (a change made through this daemon)."""

    def __init__(self, reload: float = 5.0) -> None:
        """reload: [card] layout_reload, how old the cache may be (a change made through another daemon shows then)."""
        self.reload = reload
        self._read_at = float("-inf")
        self._default: tuple[Item, ...] = DEFAULT_ITEMS
        self._by_extension: dict[str, tuple[Item, ...]] = {}

    def items(self, db: peewee.Database, extension: str, offline: bool = False) -> tuple[Item, ...]:
        """The layout of extension's pops; offline: from the cache only (the database is out of reach)."""
        now = time.monotonic()
        if not offline and now - self._read_at >= self.reload:
            layouts, teams = load(db)
            by_name = {layout.name: layout.items for layout in layouts}
            self._default = by_name[DEFAULT]
            self._by_extension = {e: by_name.get(t.layout, self._default) for t in teams for e in t.extensions}
            self._read_at = now
        return self._by_extension.get(extension, self._default)

    def changed(self) -> None:
        """A layout or team was changed through this daemon: the next card reads them again."""
        self._read_at = float("-inf")


# ---- what a layout may name -----------------------------------------------------------------------------


def known_keys(db: peewee.Database, sources: list[str]) -> dict[str, Any]:
    """Every key a layout may name, with what it shows: the built-in pieces, the custom fields of customers and
    orders, the sources' fields ('source.<name>'; 'source.<name>.<label>' for one field, not listed: a source's
    labels are what it answers). Each description is translated when it is shown, in its reader's language."""
    keys = dict(BUILT_IN)
    for field in custom.load_fields(db):
        prefix = CUSTOMER_PREFIX if field.entity == "customer" else ORDER_PREFIX
        keys[prefix + field.key] = (lazy_gettext("%(label)s (customer field)",
                                                 label=field.label) if field.entity == "customer"
                                     else lazy_gettext("%(label)s (order field)", label=field.label))
    for name in sources:
        keys[SOURCE_PREFIX + name] = lazy_gettext("every field of source %(name)s", name=name)
    return keys


def source_names(sources: Any) -> list[str]:
    """The configured sources' names, which a layout may name, from the daemon's Sources (None: there are none)."""
    return [source.name for source in sources.sources] if sources else []


def _known(key: str, keys: dict[str, str]) -> bool:
    if key in keys:
        return True
    source, dot, label = key.partition(".")[2].partition(".")
    return (key.startswith(SOURCE_PREFIX) and bool(dot) and SOURCE_PREFIX + source in keys
            and 0 < len(label) <= _LABEL_MAX and label == label.strip() and label.isprintable())


def layout_items(raw: Any, keys: dict[str, str]) -> tuple[Item, ...]:
    """A layout's items from the API's JSON ([{"field": key, "style": "plain|strong|warning"}], style optional),
    checked: every unknown key is named in one 400, as is a key listed twice."""
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise DataError(400, lazy_gettext('items: must be a list of {"field": key, "style": '
                                          '"plain"|"strong"|"warning"}'))
    if len(raw) > MAX_ITEMS:
        raise DataError(400, lazy_gettext("items: at most %(max)s", max=MAX_ITEMS))
    out: list[Item] = []
    for entry in raw:
        extra = set(entry) - {"field", "style"}
        if extra:
            raise DataError(400, lazy_gettext("items: unknown member %(extra)r (each item has field and style)",
                                              extra=sorted(extra)[0][:30]))
        field, style = entry.get("field"), entry.get("style", "plain")
        if not isinstance(field, str) or not field:
            raise DataError(400, lazy_gettext("items: every item needs a field (a key)"))
        if style not in STYLES:
            raise DataError(400, lazy_gettext("items: %(field)r has style %(style)r: must be one of %(styles)s",
                                              field=field[:60], style=str(style)[:20], styles=', '.join(STYLES)))
        out.append(Item(field, style))
    unknown = [i.field for i in out if not _known(i.field, keys)]
    if unknown:
        raise DataError(400, lazy_gettext("items: unknown field(s): %(fields)s",
                                          fields=', '.join(repr(u[:60]) for u in unknown[:10])),
                        unknown=unknown[:10], known=sorted(keys))
    seen: set[str] = set()
    twice = [i.field for i in out if i.field in seen or seen.add(i.field)]
    if twice:
        raise DataError(400, lazy_gettext("items: listed twice: %(fields)s",
                                          fields=', '.join(repr(t[:60]) for t in twice[:10])))
    return tuple(out)


def text_items(text: str) -> list[dict]:
    """The admin page's form of a layout, one item a line, "key" or "key style", as the API's items (checked by
    layout_items like the API's)."""
    out = []
    for row in text.splitlines():
        parts = row.split()
        if not parts:
            continue
        if len(parts) > 1 and parts[-1] in STYLES:
            out.append({"field": " ".join(parts[:-1]), "style": parts[-1]})
        else:
            out.append({"field": " ".join(parts)})
    return out


def as_text(items: tuple[Item, ...]) -> str:
    """A layout in the admin page's form (text_items reads it back)."""
    return "\n".join(i.field if i.style == "plain" else f"{i.field} {i.style}" for i in items)


def check_name(raw: Any, what: str) -> str:
    """A layout's or team's name: 1 to 40 letters, digits, _ or - (it is part of a URL); 400 otherwise."""
    if not isinstance(raw, str) or not _NAME.fullmatch(raw) or raw in _PAGES:
        raise DataError(400, lazy_gettext("%(what)s: 1 to 40 letters, digits, _ or -, starting with a letter or digit "
                                          "(not %(pages)s)", what=what, pages=' or '.join(_PAGES)))
    return raw


# ---- the admin's steps ----------------------------------------------------------------------------------


def get_layout(name: str) -> StoredLayout:
    found = next((layout for layout in load(database.obj)[0] if layout.name == name), None)
    if found is None:
        raise DataError(404, lazy_gettext("no layout %(name)r", name=name[:40]))
    return found


def save_layout(name: str, raw: Any, sources: list[str]) -> tuple[StoredLayout, bool]:
    """Make or replace a layout from the API's items (checked by layout_items against what a layout may name now:
    sources are the configured sources' names); returns it and whether it is new."""
    check_name(name, "name")
    items = layout_items(raw, known_keys(database.obj, sources))
    stored = json.dumps([i._asdict() for i in items], ensure_ascii=False, separators=(",", ":"))
    created = CardLayoutRow.get_or_none(CardLayoutRow.name == name) is None
    if created:
        CardLayoutRow.create(name=name, items=stored)
    else:
        CardLayoutRow.update(items=stored).where(CardLayoutRow.name == name).execute()
    return get_layout(name), created


def delete_layout(name: str) -> None:
    """Delete a layout; one a team uses is refused; deleting "default" brings the built-in layout back."""
    layout = get_layout(name)
    if layout.built_in:
        raise DataError(404, lazy_gettext("the built-in layout is not stored: nothing to delete"))
    if layout.teams:
        raise DataError(409, lazy_gettext("layout %(name)r is the layout of team(s) %(teams)s: give them another first",
                                          name=name, teams=', '.join(layout.teams)), teams=list(layout.teams))
    CardLayoutRow.delete().where(CardLayoutRow.name == name).execute()


def get_team(name: str) -> TeamLayout:
    found = next((t for t in load(database.obj)[1] if t.name == name), None)
    if found is None:
        raise DataError(404, lazy_gettext("no team %(name)r", name=name[:40]))
    return found


def team_input(body: dict) -> tuple[str, list[str]]:
    """A team's layout name and extensions from the API's JSON: {"layout": name, "extensions": [...]}."""
    for key in ("layout", "extensions"):
        if key not in body:
            raise DataError(400, lazy_gettext("%(key)s: required", key=key))
    layout = check_name(body["layout"], "layout")
    raw = body["extensions"]
    if not isinstance(raw, list) or not all(isinstance(e, str) for e in raw) or len(raw) > MAX_EXTENSIONS:
        raise DataError(400, lazy_gettext("extensions: must be a list of at most %(max)s extensions",
                                          max=MAX_EXTENSIONS))
    extensions = []
    for given in raw:
        try:
            extensions.append(values.extension(given.strip()))
        except ValueError as exc:
            raise DataError(400, lazy_gettext("extensions: %(reason)s", reason=exc)) from None
    return layout, sorted(set(extensions))


def save_team(name: str, layout: str, extensions: list[str]) -> tuple[TeamLayout, bool]:
    """Make or replace a team (its layout must exist; "default" only once stored, so a team never silently
    follows the built-in one); an extension in another team is refused, naming it."""
    check_name(name, "name")
    if CardLayoutRow.get_or_none(CardLayoutRow.name == layout) is None:
        raise DataError(400, lazy_gettext("layout: no layout %(layout)r (save it first)", layout=layout))
    if extensions:
        taken = list(TeamMember.select(TeamMember.extension, TeamMember.team)
                     .where(TeamMember.extension.in_(extensions) & (TeamMember.team != name)).tuples())
        if taken:
            in_teams = lazy_join(lazy_gettext("%(extension)s is in team %(team)s", extension=e, team=t)
                                 for e, t in taken[:10])
            raise DataError(409, lazy_gettext("extensions: %(taken)s", taken=in_teams),
                            taken={e: t for e, t in taken})
    created = Team.get_or_none(Team.name == name) is None
    if created:
        Team.create(name=name, layout=layout)
    else:
        Team.update(layout=layout).where(Team.name == name).execute()
    TeamMember.delete().where(TeamMember.team == name).execute()
    if extensions:
        TeamMember.insert_many([{"extension": e, "team": name} for e in extensions]).execute()
    return get_team(name), created


def delete_team(name: str) -> None:
    """Delete a team: its extensions' pops use the default layout again."""
    get_team(name)
    TeamMember.delete().where(TeamMember.team == name).execute()
    Team.delete().where(Team.name == name).execute()
