"""One employee snapshot for everyone who needs names and extensions: the writer (employee ids), the card (operator
names) and the number rules (active extensions count as internal). Only the runtime reads it again: every
[database] employee_reload, on SIGHUP, and at once after a change through its pages or API."""
from __future__ import annotations

from typing import NamedTuple

from screenpop.db.models import Employee


class Member(NamedTuple):
    """One employee as the daemon sees it."""

    id: int
    name: str
    active: bool


class Staff:
    """Employees by extension, read whole by load(); readers see one snapshot or the next, never half of one."""

    def __init__(self, members: dict[str, Member] | None = None) -> None:
        self.members: dict[str, Member] = members or {}

    def load(self) -> bool:
        """Read the employee table again (on the current greenlet's connection); True if anything changed."""
        members = {ext: Member(id_, name, bool(active))
                   for ext, id_, name, active in Employee.select(Employee.extension, Employee.id, Employee.name,
                                                                   Employee.active).tuples()}
        changed = members != self.members
        self.members = members
        return changed

    def employee_id(self, extension: str | None) -> int | None:
        """The id of the employee on extension (active or not), for the call and party rows."""
        member = self.members.get(extension) if extension else None
        return member.id if member else None

    def name(self, extension: str) -> str | None:
        """The name of the employee on extension (active or not), the card's operator."""
        member = self.members.get(extension)
        return member.name if member else None

    def extensions(self) -> frozenset[str]:
        """The extensions of active employees: the number rules count them as internal."""
        return frozenset(ext for ext, member in self.members.items() if member.active)
