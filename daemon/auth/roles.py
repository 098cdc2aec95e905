"""The one place that says what each role may do, for people and tokens alike (docs/accounts.md).

Roles are ranked: a manager may do all an operator may, an admin all a manager may. Every page, API route and
template asks `allows(role, capability)` (pages through User.can, daemon/web/pages/base.py); none compares roles.
"""
from __future__ import annotations

from screenpop.daemon.i18n import gettext, lazy_gettext

ROLES = ("operator", "manager", "admin")
NAMES = {"operator": lazy_gettext("operator"), "manager": lazy_gettext("manager"), "admin": lazy_gettext("admin")}
UNKNOWN = lazy_gettext("unknown role")

# what each capability needs at least
NEEDS = {
    "customers": "operator",        # search, read, add and change customers, numbers and orders
    "own_calls": "operator",        # the calls and missed calls of one's own extension, one's own pops
    "team_calls": "manager",        # every employee's calls and pops, the team's missed-call list
    "dashboard": "manager",         # the dashboard's figures and charts
    "reports": "manager",           # the reports as CSV
    "recordings": "manager",        # play call recordings (as configured: [recordings] listen); operators their own calls
    "hold_recordings": "manager",   # hold a call's recordings from deletion, or release them
    "listen_log": "admin",          # who listened to which recording
    "delete_customers": "manager",  # delete a customer, remove a number from one
    "people": "admin",              # people: add, change, disable, reset passwords; their sessions
    "tokens": "admin",              # API tokens: list and revoke
    "configuration": "admin",       # employees, custom fields, categories, card layouts and teams
}

# what a refused person reads: why, in words
WHAT = {
    "customers": lazy_gettext("customer records"),
    "own_calls": lazy_gettext("your calls"),
    "team_calls": lazy_gettext("every employee's calls"),
    "dashboard": lazy_gettext("the dashboard"),
    "reports": lazy_gettext("the reports"),
    "recordings": lazy_gettext("call recordings"),
    "hold_recordings": lazy_gettext("holding recordings from deletion"),
    "listen_log": lazy_gettext("the recordings' listen log"),
    "delete_customers": lazy_gettext("deleting customers and their numbers"),
    "people": lazy_gettext("managing people and their sessions"),
    "tokens": lazy_gettext("API tokens"),
    "configuration": lazy_gettext("the configuration pages"),
}


def allows(role: str | None, capability: str, needed: str | None = None) -> bool:
    """Whether role may do capability; an unknown role may do nothing, an unknown capability is a programming error.
    needed: the role the configuration asks for a capability it sets (recordings: [recordings] listen)."""
    needed = needed if needed in ROLES else NEEDS[capability]
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def refusal(role: str | None, capability: str) -> str:
    """Why role may not do capability, in a sentence a person can act on."""
    article = "an" if (role or "u")[:1] in "aeiou" else "a"  # English's; other languages' sentences leave it out
    return gettext("This needs the %(needed)s role (%(what)s); you are signed in as %(article)s %(role)s. Ask an admin if "
                   "you need it.", needed=str(NAMES[NEEDS[capability]]), what=str(WHAT[capability]), article=article,
                   role=str(NAMES.get(role or "", UNKNOWN)))
