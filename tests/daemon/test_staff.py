"""The employee snapshot: ids and names of every employee, extensions of the active ones, and whether a load changed."""
from __future__ import annotations

from screenpop.daemon.staff import Member, Staff
from screenpop.db.models import Employee


def test_snapshot_of_ids_names_and_active_extensions(db):
    staff = Staff()
    assert staff.load() is False  # nobody yet: nothing changed
    anna = Employee.create(name="Anna Jónsdóttir", extension="1001")
    gone = Employee.create(name="Bjarni Ben", extension="1002", active=False)
    assert staff.load() is True
    assert staff.members == {"1001": Member(anna.id, "Anna Jónsdóttir", True), "1002": Member(gone.id, "Bjarni Ben", False)}
    assert staff.extensions() == frozenset({"1001"})  # only active employees count as internal
    assert staff.employee_id("1002") == gone.id and staff.name("1002") == "Bjarni Ben"  # still named on their calls
    assert staff.employee_id("1003") is None and staff.employee_id(None) is None and staff.name("1003") is None
    assert staff.load() is False
    Employee.update(name="Anna J.").where(Employee.id == anna.id).execute()
    assert staff.load() is True and staff.name("1001") == "Anna J."
