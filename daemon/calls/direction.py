"""The call-direction rules: which side of a leg faces the phone network, which extension a leg belongs to,
and what business direction a call has. Everything here reads headers only; nothing here has state.

The rules, as a reader can check them against a FreeSWITCH event stream:

* A leg is EXTERNAL when it runs through a gateway (``variable_sip_gateway_name`` or a
  ``sofia/gateway/...`` channel name), or its SIP profile is a configured trunk profile, or it
  entered the dialplan in a configured trunk context (stock FreeSWITCH: profile ``external``,
  context ``public``).
* Any other leg that names an internal extension is a PHONE leg, and its extension is, for a leg
  towards the phone: ``variable_dialed_user``, else the user part of ``variable_presence_id``
  (``group_call`` ring groups set no dialed_user), else ``Caller-Callee-ID-Number``, else the user
  part of the channel name; for a leg from the phone: ``variable_user_name`` (the authenticated
  user), else the presence id, else ``Caller-Caller-ID-Number``.
* The business direction of a call, decided by its first leg (the a-leg, which has no
  ``variable_originator``) and the first leg that joins it:

  ==================================  ===============================  =========
  a-leg                               joining leg                      direction
  ==================================  ===============================  =========
  external, inbound (a caller)        any                              INCOMING
  external, outbound (originate)      phone                            OUTGOING
  phone (desk phone or click-to-call) external                         OUTGOING
  phone                               phone                            INTERNAL
  ==================================  ===============================  =========

  FreeSWITCH's own ``Call-Direction`` is per leg and only tells which side started that leg.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

INCOMING = "INCOMING"
OUTGOING = "OUTGOING"
INTERNAL = "INTERNAL"

EXTERNAL = "external"
PHONE = "phone"
OTHER = "other"

_CHANNEL_RE = re.compile(r"^sofia/([^/]+)/(?:sips?:)?([^@;:/]+)")


@dataclass(frozen=True)
class LegInfo:
    """What the rules conclude about one leg."""

    kind: str
    extension: str | None
    inbound: bool


@dataclass(frozen=True)
class DirectionRules:
    """The configurable parts: trunk profiles and contexts, and what counts as an extension."""

    trunk_profiles: frozenset[str]
    trunk_contexts: frozenset[str]
    is_extension: Callable[[str], bool]

    def classify_leg(self, h: Mapping[str, str]) -> LegInfo:
        """Classify one leg from its channel headers (any channel event, or a resync row mapped to headers)."""
        inbound = h.get("Call-Direction", "") == "inbound"
        name = h.get("Channel-Name", "")
        m = _CHANNEL_RE.match(name)
        profile = h.get("variable_sofia_profile_name") or (m.group(1) if m else "")
        if (
            h.get("variable_sip_gateway_name")
            or profile == "gateway"
            or profile in self.trunk_profiles
            or (inbound and h.get("Caller-Context", "") in self.trunk_contexts and not h.get("variable_user_name"))
        ):
            return LegInfo(EXTERNAL, None, inbound)
        channel_user = m.group(2) if m else ""
        presence_user = h.get("variable_presence_id", "").partition("@")[0]
        if inbound:
            candidates = (h.get("variable_user_name", ""), presence_user, h.get("Caller-Caller-ID-Number", ""), channel_user)
        else:
            candidates = (
                h.get("variable_dialed_user", ""),
                presence_user,
                h.get("Caller-Callee-ID-Number", ""),
                channel_user,
            )
        for candidate in candidates:
            if candidate and self.is_extension(candidate):
                return LegInfo(PHONE, candidate, inbound)
        return LegInfo(OTHER, None, inbound)


def call_direction(a_leg: LegInfo, joining: LegInfo) -> str | None:
    """Business direction from the a-leg and the first leg that joins it; None while it cannot be told yet."""
    if a_leg.kind == EXTERNAL:
        if a_leg.inbound:
            return INCOMING
        return OUTGOING if joining.kind == PHONE else None
    if a_leg.kind == PHONE:
        if joining.kind == EXTERNAL:
            return OUTGOING
        if joining.kind == PHONE:
            return INTERNAL
    return None


def parent_uuid(h: Mapping[str, str]) -> str | None:
    """The leg this leg was created for: the originator, a loopback twin, or the queue member it serves.

    A queue member's own leg names itself as the member session: that is no parent.
    """
    parent = (
        h.get("variable_originator")
        or h.get("variable_cc_member_session_uuid")
        or h.get("variable_other_loopback_leg_uuid")
        or None
    )
    return None if parent == h.get("Unique-ID") else parent
