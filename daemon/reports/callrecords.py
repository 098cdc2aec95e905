"""Recorded calls as plain records: what `screenpop calls` prints and exports.

The field names of a record match the ``calls`` entries of the captures' expected.json, plus the
call's identity, times and matched customer, so a recording can be checked against the database.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

import peewee
from peewee import JOIN

from screenpop.db.models import Call, CallParty, Customer


def calls_query(
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    extension: str | None = None,
    direction: str | None = None,
    missed: bool | None = None,
    customer_id: int | None = None,
) -> peewee.ModelSelect:
    """Calls (with their customer) started in [since, until), filtered, newest first."""
    query = Call.select(Call, Customer).join(Customer, JOIN.LEFT_OUTER).switch(Call)
    if since is not None:
        query = query.where(Call.started_at >= since)
    if until is not None:
        query = query.where(Call.started_at < until)
    if extension:
        involved = CallParty.select(CallParty.call).where(CallParty.extension == extension)
        query = query.where((Call.id.in_(involved)) | (Call.from_extension == extension))
    if direction:
        query = query.where(Call.direction == direction)
    if missed is not None:
        query = query.where(Call.missed == missed)
    if customer_id is not None:
        query = query.where(Call.customer == customer_id)
    return query.order_by(Call.started_at.desc(), Call.id.desc())


def records(calls: list[Call]) -> list[dict]:
    """The calls as records, their parties read in batches."""
    parties: dict[int, list[CallParty]] = defaultdict(list)
    ids = [c.id for c in calls]
    for start in range(0, len(ids), 500):
        for party in CallParty.select().where(CallParty.call.in_(ids[start : start + 500])):
            parties[party.call_id].append(party)
    return [_record(call, parties[call.id]) for call in calls]


def call_records(
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    extension: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Calls started in [since, until), optionally only those an extension took part in, oldest first."""
    query = calls_query(since, until, extension)
    if limit:
        query = query.limit(limit)
    return records(list(reversed(list(query))))


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=dt.timezone.utc).isoformat(timespec="milliseconds")


def _record(call: Call, parties: list[CallParty]) -> dict:
    rung = sorted((p for p in parties if p.rang_at), key=lambda p: (p.rang_at, p.seq))
    talked = sorted((p for p in parties if p.talked), key=lambda p: (p.answered_at or call.started_at, p.seq))
    customer = call.customer if call.customer_id else None
    return {
        "id": call.id,
        "uuid": call.uuid,
        "direction": call.direction,
        "external_number": call.external_number,
        "external_name": call.external_name,
        "did": call.did,
        "from_extension": call.from_extension,
        "extensions_rung": [p.extension for p in rung],
        "answered_by": call.answered_by,
        "external_answered": call.external_answered,
        "answered_elsewhere": [p.extension for p in sorted(parties, key=lambda p: p.seq) if p.outcome == "answered_elsewhere"],
        "missed_by": [p.extension for p in sorted(parties, key=lambda p: p.seq) if p.outcome == "missed"],
        "talked": [p.extension for p in talked],
        "hangup_cause": call.hangup_cause,
        "a_leg_billsec": call.a_leg_billsec,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "ring_seconds": call.ring_seconds,
        "talk_seconds": call.talk_seconds,
        "missed": call.missed,
        "extension": call.extension,
        "node": call.node,
        "recovered": call.recovered,
        "matches": call.matches,
        "customer": None
        if customer is None
        else {"id": customer.id, "name": customer.name, "company": customer.company, "category": customer.category},
    }
