"""The card: what a pop tells the operator's desktop. The one place its payload is built (docs/card.md).

Cards are built for live pops (from the writer's PendingPop) and for replayed ones (CallEvent rows) by the
same code, in precompiled SQL: the pop latency goal is p99 < 50 ms end to end and peewee's query builder
costs ~150 µs a query. The customer part (customer, open orders, candidates) is the same for every pop of
one call to one number, so it is cached per call for a short while; operator and colleague names come from the
employee snapshot (daemon/staff.py). What the pop says (the summary and its lines) comes from the card's own fields
through the layout (layout.py).
"""
from __future__ import annotations

import datetime as dt
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import peewee

from screenpop.daemon.customers import fields as custom
from screenpop.daemon.customers.lookup import Lookup
from screenpop.daemon.i18n import lazy_gettext
from screenpop.daemon.push.layout import DEFAULT_ITEMS, CardLayout, Item
from screenpop.daemon.push.layouts import Layouts
from screenpop.daemon.record.pops import PopRow
from screenpop.daemon.staff import Staff

if TYPE_CHECKING:
    from screenpop.daemon.sources.fetch import Answer

CACHE_SECONDS = 30.0
FIELDS_SECONDS = 5.0  # the custom field definitions are read again after this long (an admin's change shows then)
CACHE_CALLS = 4096
MAX_ORDERS = 50
MAX_CANDIDATES = 10
CENT = Decimal("0.01")
# the admin's preview without a chosen customer (docs/web.md): a customer with two open orders, and a sample value of
# each kind for its custom fields
SAMPLE_NUMBER = "+3545551234"
SAMPLE_EXTENSION = "1001"  # whose pop it is when the admin names no extension
SAMPLE_VALUES = {"number": "12", "money": "1250.00", "date": "2027-01-31", "yesno": "yes", "link": "https://example.com/"}


def _sample_customer(defs: list[custom.Field]) -> dict:
    """The preview's sample customer, with a sample value for every custom field (a choice: its first option)."""
    order = {"number": "A-1", "title": "Roof", "stage": "install", "responsible": "Anna Jónsdóttir",
             "amount": "1500.00", "paid": "500.51", "debt": "999.49", "fields": []}
    customer = {"id": 0, "name": "Jón Jónsson", "company": "Norðurljós ehf.", "category": "vip",
                "category_flag": "\u2605 VIP", "note": "Prefers email", "city": "Reykjavík", "country": "IS",
                "total_debt": "1099.49", "fields": [], "orders": [
                    order, {**order, "number": "A-2", "title": "Gutter", "stage": "quote", "responsible": None,
                            "amount": "100.00", "paid": "0.00", "debt": "100.00", "fields": []}]}
    for field in defs:
        value = (field.options[0] if field.options else "") if field.kind == "choice" else \
            SAMPLE_VALUES.get(field.kind, f"Sample {field.label}")
        shown = {"key": field.key, "label": field.label, "type": field.kind, "value": value,
                 "text": custom.display(field, value)}
        for record in [customer] if field.entity == "customer" else customer["orders"]:
            record["fields"].append(shown)
    return customer


def _iso(at: dt.datetime | str) -> str:
    if isinstance(at, str):  # SQLite gives back text
        at = dt.datetime.fromisoformat(at)
    if at.tzinfo is not None:
        at = at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return at.isoformat(timespec="milliseconds") + "Z"


def _money(value: Any) -> Decimal:
    if value is None:
        return Decimal("0.00")
    return Decimal(str(value)).quantize(CENT)  # SQLite gives floats back; str() is their shortest exact form


class CardBuilder:
    """Builds card dicts and their one-line JSON; call from one greenlet (it owns that greenlet's connection)."""

    def __init__(self, db: peewee.Database, lookup: Callable[[], Lookup], staff: Staff, layout: CardLayout,
                 public_url: str = "", layouts: Layouts | None = None) -> None:
        """layout: what the pop says, from the card's fields (the summary and its lines, [card]'s formats); layouts:
        the admin's layouts per team (None: every pop in the built-in one)."""
        self.db = db
        self.lookup = lookup
        self.staff = staff
        self.layout = layout
        self.layouts = layouts
        self.base = public_url.rstrip("/")
        p = db.param
        self._sql_customer = ("SELECT c.name, c.company, k.colour, c.photo FROM customer c "
                              f"LEFT JOIN category k ON k.name = c.category WHERE c.id = {p}")
        # The customer and its open orders in one query, a row an order (one row with no order if none is open):
        # a card is built for every call of a known customer, on every daemon, and a round trip costs more than
        # the rows.
        self._sql_customer_orders = (
            "SELECT c.id, c.name, c.company, c.category, c.note, c.city, c.country, c.custom, k.flag, k.colour, "
            'o.id, o.number, o.title, o.stage, e.name, o.amount, o.paid, o.custom FROM customer c LEFT JOIN "order" o '
            "ON o.customer_id = c.id AND o.status = 'open' LEFT JOIN employee e ON e.id = o.responsible_id "
            f"LEFT JOIN category k ON k.name = c.category WHERE c.id = {p} ORDER BY o.id LIMIT {MAX_ORDERS}"
        )
        # who took a call another extension was ringing for: the latest to answer up to that moment (a transfer
        # can bring in a second answerer); the rule of CallState.taken_by, which live pops carry, over stored parties
        self._sql_taken = (
            "SELECT p.extension FROM call_party p JOIN call c ON c.id = p.call_id "
            f"WHERE c.uuid = {p} AND p.extension <> {p} AND p.answered_at IS NOT NULL AND p.answered_at <= {p} "
            "ORDER BY p.answered_at DESC LIMIT 1"
        )
        self._sql_external = f"SELECT id FROM customer WHERE external_id = {p}"
        self._calls: OrderedDict[tuple, tuple[float, dict | None, list]] = OrderedDict()
        self._fields: tuple[float, list[custom.Field]] = (-FIELDS_SECONDS, [])

    # ---- the payload ----------------------------------------------------------------------

    def card(self, pop: PopRow, offline: bool = False, sources: Answer | None = None) -> dict:
        """The card for one pop (fields and meaning: docs/card.md) with its lines in the language of the moment;
        offline: from caches only, no query; sources: what the configured sources say about the number so far (None:
        nothing to ask them). The streams get frames() instead: each in its reader's language."""
        card, items = self._facts(pop, offline, sources)
        card["title"], card["lines"] = self.layout.render(card, self.lookup().rules, items=items)
        return card

    def _facts(self, pop: PopRow, offline: bool, sources: Answer | None) -> tuple[dict, tuple[Item, ...]]:
        """A card's fields, the same in every language, and the layout its lines are drawn by."""
        customer, candidates = self._customer_part(pop, offline)
        internal = pop.direction == "INTERNAL"
        named = sources.external_id if sources is not None and customer is None and not offline else None
        linked = self.db.execute_sql(self._sql_external, (named,)).fetchone() if named else None
        number = quote(pop.number or "", safe="")
        if customer is not None:
            record = f"/customers/{customer['id']}"
        elif linked is not None:
            record = f"/customers/{linked[0]}"  # the customer a source named by its external id
        elif internal or not self._dialable(pop.number):
            record = None
        elif pop.matches > 1:
            record = f"/customers/choose?number={number}&call={quote(pop.uuid, safe='')}"
        else:
            record = f"/customers/new?number={number}&call={quote(pop.uuid, safe='')}"
        card = {
            "id": pop.id,
            "event": pop.event,
            "call_uuid": pop.uuid,
            "direction": pop.direction,
            "at": _iso(pop.at),
            "extension": pop.extension,
            "operator": self.staff.name(pop.extension),
            "number": pop.number,
            "caller_name": pop.name,
            "colleague": self.staff.name(pop.number) if internal else None,
            "taken_by": self._taken_by(pop, offline) if pop.event == "answered_elsewhere" else None,
            "matches": pop.matches,
            "customer": customer,
            "candidates": candidates,
            "record_url": self.base + record if record else None,
            "sources": sources.card() if sources is not None else None,
            "can_call": self._callable(pop.number),
        }
        return card, self.layouts.items(self.db, pop.extension, offline) if self.layouts is not None else DEFAULT_ITEMS

    def preview(self, items: tuple[Item, ...], customer_id: int | None = None, extension: str = "") -> dict:
        """The admin's preview (docs/web.md): a ringing card drawn with items by the same layout code as a pop, for
        customer_id (as stored now, with its first number) or a sample customer whose custom fields all have a
        sample value; the sources' part holds a sample value for each source the items name. extension: whose pop
        it is (the operator line)."""
        extension = extension or SAMPLE_EXTENSION
        customer = self._customer(customer_id) if customer_id is not None else None
        if customer_id is not None and customer is None:
            raise LookupError(lazy_gettext("no customer %(customer_id)s", customer_id=customer_id))
        number = ""
        if customer is not None:
            row = self.db.execute_sql(f"SELECT e164 FROM phone WHERE customer_id = {self.db.param} ORDER BY id LIMIT 1",
                                      (customer_id,)).fetchone()
            number = row[0] if row else ""
        else:
            customer, number = _sample_customer(self._definitions()), SAMPLE_NUMBER
        named = [i.field.split(".", 2) for i in items if i.field.startswith("source.")]
        sources = [{"source": part[1], "name": part[2] if len(part) > 2 else "Sample field", "value": "sample"}
                   for part in named]
        if any(i.field == "sources" for i in items) and not sources:
            sources = [{"source": "", "name": "Sample field", "value": "sample"}]
        card = {"event": "ringing", "direction": "INCOMING", "at": _iso(dt.datetime.now(dt.timezone.utc)),
                "extension": extension, "operator": self.staff.name(extension), "number": number,
                "caller_name": "", "matches": 1, "customer": customer, "candidates": [],
                "sources": {"pending": False, "external_id": None, "fields": sources}}
        card["title"], card["lines"] = self.layout.render(card, self.lookup().rules, items=items)
        return card

    def frames(self, pop: PopRow, languages: Iterable[str], offline: bool = False, sources: Answer | None = None,
               update: bool = False) -> dict[str, bytes]:
        """The card as one Server-Sent Events message (id, event and one line of JSON data) in each of languages:
        its fields are worked out once, its summary and lines drawn in each language (docs/i18n.md).

        A pop not stored yet (the database is out of reach; id None) goes out without an id line, so the
        client's Last-Event-ID stays on the last stored pop it got. So does an update (the same card again, with
        what the sources answered since: `event: update`), which is not a pop of its own.
        """
        card, items = self._facts(pop, offline, sources)
        rules = self.lookup().rules
        head = "event: update\n" if update else f"id: {pop.id}\nevent: pop\n" if pop.id is not None else "event: pop\n"
        out = {}
        for language in languages:
            card["title"], card["lines"] = self.layout.render(card, rules, items=items, language=language)
            # json.dumps never emits a raw line break (it escapes \n, \r; U+2028/9 are not SSE line ends)
            out[language] = f"{head}data: {json.dumps(card, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()
        return out

    # ---- parts ----------------------------------------------------------------------------

    def _dialable(self, number: str) -> bool:
        return bool(number) and self.lookup().rules.classify(number).kind == "e164"

    def _taken_by(self, pop: PopRow, offline: bool) -> dict | None:
        """Who answered the call this extension was ringing for: {extension, name}; a live pop says (its parties may
        not be stored yet), a replayed one is asked of the stored parties; None if neither knows."""
        if pop.taken_by is not None:
            extension = pop.taken_by
        elif offline:
            return None
        else:
            row = self.db.execute_sql(self._sql_taken, (pop.uuid, pop.extension, pop.at)).fetchone()
            if row is None:
                return None
            extension = row[0]
        return {"extension": extension, "name": self.staff.name(extension)}

    def _callable(self, number: str) -> bool:
        """Whether click-to-call takes this number (POST /api/v1/originate): the same rule, the number rules' dial form."""
        return bool(number) and self.lookup().rules.dial_form(number) is not None

    def _customer_part(self, pop: PopRow, offline: bool = False) -> tuple[dict | None, list]:
        if pop.customer_id is None and pop.matches <= 1:
            return None, []
        key = (pop.uuid, pop.customer_id, pop.matches, pop.number)
        now = time.monotonic()
        hit = self._calls.get(key)
        if hit is not None and (offline or now - hit[0] < CACHE_SECONDS):
            self._calls.move_to_end(key)
            return hit[1], hit[2]
        if offline:
            return None, []
        customer = self._customer(pop.customer_id) if pop.customer_id is not None else None
        candidates = self._candidates(pop.number) if pop.matches > 1 and customer is None else []
        self._calls[key] = (now, customer, candidates)
        self._calls.move_to_end(key)
        while len(self._calls) > CACHE_CALLS:
            self._calls.popitem(last=False)
        return customer, candidates

    def _customer(self, customer_id: int) -> dict | None:
        rows = self.db.execute_sql(self._sql_customer_orders, (customer_id,)).fetchall()
        if not rows:
            return None  # deleted since the pop
        cid, name, company, category, note, city, country, values, flag, colour = rows[0][:10]
        defs = self._definitions()
        orders = []
        total = Decimal("0.00")
        for order_id, number, title, stage, responsible, amount, paid, order_values in (row[10:] for row in rows):
            if order_id is None:
                break  # no open order
            amount, paid = _money(amount), _money(paid)
            debt = amount - paid
            total += debt
            orders.append({"number": number, "title": title, "stage": stage, "responsible": responsible,
                           "amount": str(amount), "paid": str(paid), "debt": str(debt),
                           "fields": custom.shown([f for f in defs if f.entity == "order"], custom.decode(order_values))})
        return {
            "id": cid, "name": name, "company": company, "category": category, "category_flag": flag or "",
            "category_colour": colour, "note": note, "city": city, "country": country,
            "photo_url": f"/api/v1/customers/{cid}/photo", "orders": orders, "total_debt": str(total),
            "fields": custom.shown([f for f in defs if f.entity == "customer"], custom.decode(values)),
        }

    def _definitions(self) -> list[custom.Field]:
        """The custom field definitions, read at most every FIELDS_SECONDS (a query per card would cost more than
        the rest of the customer part)."""
        read_at, defs = self._fields
        now = time.monotonic()
        if now - read_at >= FIELDS_SECONDS:
            defs = custom.load_fields(self.db)
            self._fields = (now, defs)
        return defs

    def _candidates(self, number: str) -> list[dict]:
        ids = self.lookup().find(number).candidates[:MAX_CANDIDATES]
        if not ids:
            return []
        p = self.db.param
        sql = f"SELECT id, name, company FROM customer WHERE id IN ({', '.join([p] * len(ids))}) ORDER BY id"
        return [{"id": i, "name": n, "company": c} for i, n, c in self.db.execute_sql(sql, ids).fetchall()]

    def customer_for_photo(self, customer_id: int) -> tuple[str, str | None, str | None] | None:
        """(name or company, its category's colour, stored photo file name) of a customer, or None if there is none."""
        row = self.db.execute_sql(self._sql_customer, (customer_id,)).fetchone()
        if row is None:
            return None
        return row[0] or row[1], row[2], row[3]
