"""FreeSWITCH's CDRs as received: one row per call leg, kept once, and a call's legs found again by their parents."""
from __future__ import annotations

import datetime as dt

from screenpop.db.models import CdrLeg, utcnow

MAX_DEPTH = 16  # legs created for legs created for ...: a loopback or queue chain is a few deep, never this
MAX_LEGS = 500  # legs of one call read back; a call has a handful (a ring group of 50 phones has 51)


def store_leg(uuid: str, parent: str | None, body: str) -> bool:
    """Keep a leg's CDR unless it is here already (mod_json_cdr retries); True when it is new."""
    if CdrLeg.select().where(CdrLeg.uuid == uuid).exists():
        return False
    CdrLeg.insert(uuid=uuid, parent=parent, body=body).on_conflict_ignore().execute()  # a simultaneous repeat
    return True


def call_legs(uuid: str) -> tuple[str | None, list[str]]:
    """The a-leg UUID of the call this leg belongs to and the CDR bodies of the call's legs received so far.

    (None, []) while the a-leg's own CDR has not arrived: a call is rebuilt only from its a-leg down.
    """
    root, seen = uuid, set()
    while True:
        row = CdrLeg.select(CdrLeg.parent).where(CdrLeg.uuid == root).first()
        if row is None or root in seen or len(seen) >= MAX_DEPTH:
            return None, []
        if not row.parent:
            break
        seen.add(root)
        root = row.parent
    bodies, level, found = [], [root], {root}
    while level and len(found) <= MAX_LEGS:
        bodies += [body for (body,) in CdrLeg.select(CdrLeg.body).where(CdrLeg.uuid.in_(level)).tuples()]
        children = [u for (u,) in CdrLeg.select(CdrLeg.uuid).where(CdrLeg.parent.in_(level)).limit(MAX_LEGS).tuples()]
        level = [u for u in children if u not in found]
        found.update(level)
    return root, bodies


def prune_legs(keep_days: int) -> int:
    """Forget the CDRs received more than keep_days ago (their calls are complete; mod_json_cdr retries for
    minutes, not days); how many were deleted."""
    return CdrLeg.delete().where(CdrLeg.received_at < utcnow() - dt.timedelta(days=keep_days)).execute()
