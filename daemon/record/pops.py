"""The pop's row shape, defined once: what the writer stores in call_event and gives back (RETURNING), the hub
builds cards from, the cross-node fan-out notifies and reads, and replays read."""
from __future__ import annotations

import datetime as dt
from typing import NamedTuple


class PopRow(NamedTuple):
    """What a card is built from: one CallEvent, live or read back."""

    id: int
    event: str
    uuid: str
    direction: str
    at: dt.datetime
    extension: str
    number: str
    name: str
    customer_id: int | None
    matches: int
    taken_by: str | None = None  # live pops: who took a call answered elsewhere (replays ask the stored parties)

    @classmethod
    def from_pending(cls, p) -> "PopRow":
        """From the writer's committed PendingPop."""
        return cls(p.id, p.event, p.call.uuid, p.direction, p.at, p.extension, p.peer_number or "", p.peer_name or "",
                   p.customer_id, p.matches, p.taken_by)


# The columns of call_event in PopRow order, for replay queries.
POP_COLUMNS = 'id, event, uuid, direction, "at", extension, peer_number, peer_name, customer_id, matches'
