"""The audit trail: who changed which customer, number, order, employee or person, and when (docs/accounts.md).

The functions that change those rows (daemon/customers/data.py, daemon/customers/importer.py, daemon/auth/people.py)
call record(); who is
acting comes from the step that runs them: the pages and the API wrap each database step in acting(actor, fn)
(it runs on the database worker's greenlet, so the actor travels with the step, not with the request's greenlet).
A step with no actor (the command line, an import) is recorded as done by "the system" unless it names one.
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from screenpop.db.models import ApiToken, AuditEntry, Person, utcnow

MAX_DETAIL = 500


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a person, a token (the API, or a session opened with one), or a named process."""

    person_id: int | None = None
    token_id: int | None = None
    name: str = ""


_current: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("screenpop_actor", default=None)


def acting(actor: Actor | None, fn: Callable) -> Callable:
    """fn, run with actor as the one making its changes (pass the result to the database worker)."""
    def step(*args: Any) -> Any:
        mark = _current.set(actor)
        try:
            return fn(*args)
        finally:
            _current.reset(mark)
    return step


def _name(actor: Actor) -> str:
    """The actor as the record shows it, read now and kept: a person's name, else a token's owner or name."""
    if actor.person_id is not None:
        name = Person.select(Person.name).where(Person.id == actor.person_id).scalar()
        if name:
            return name
    if actor.token_id is not None:
        row = ApiToken.get_or_none(ApiToken.id == actor.token_id)
        owner = (Person.select(Person.name).where((Person.extension == row.extension) & Person.disabled_at.is_null())
                 .scalar() if row is not None and row.extension else None)
        return owner or (row.name if row is not None and row.name else f"token {actor.token_id}")
    return actor.name or "the system"


def record(entity: str, entity_id: int, action: str, detail: str = "", customer_id: int | None = None) -> None:
    """One change, by whoever is acting in this step, now; customer_id: the customer record it is shown on."""
    actor = _current.get() or Actor()
    AuditEntry.create(entity=entity, entity_id=entity_id, customer=customer_id, action=action,
                      detail=detail[:MAX_DETAIL], person=actor.person_id, token=actor.token_id, actor=_name(actor)[:200])


def record_many(changes: list[tuple[str, int, str, str, int | None]]) -> None:
    """Many changes by whoever is acting, now, in one statement (a CSV import's batch): each (entity, entity id,
    action, detail, customer id)."""
    if not changes:
        return
    actor = _current.get() or Actor()
    name, now = _name(actor)[:200], utcnow()
    AuditEntry.insert_many([{"entity": entity, "entity_id": entity_id, "action": action, "detail": detail[:MAX_DETAIL],
                             "customer": customer_id, "person": actor.person_id, "token": actor.token_id,
                             "actor": name, "at": now}
                            for entity, entity_id, action, detail, customer_id in changes]).execute()


def for_customer(customer_id: int, limit: int = 30) -> list[AuditEntry]:
    """The latest changes shown on a customer's record: to the customer, its numbers and its orders."""
    return list(AuditEntry.select().where(AuditEntry.customer == customer_id)
                .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))


def for_entity(entity: str, entity_id: int, limit: int = 30) -> list[AuditEntry]:
    """The latest changes to one row (a person, an order)."""
    return list(AuditEntry.select().where((AuditEntry.entity == entity) & (AuditEntry.entity_id == entity_id))
                .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))


def for_kind(entity: str, limit: int = 30) -> list[AuditEntry]:
    """The latest changes to any row of one kind (the employees page shows the employees')."""
    return list(AuditEntry.select().where(AuditEntry.entity == entity)
                .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))
