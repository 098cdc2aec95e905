"""The small fixed data set the analytics figures are checked against (hand-computed values in test_analytics.py).

Times are naive UTC; the call centre is in Europe/Berlin (UTC+1 in November). The period under test is local
Monday 2026-11-23 00:00 to Wednesday 2026-11-25 00:00, i.e. UTC 2026-11-22 23:00 to 2026-11-24 23:00.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from screenpop.db.models import Call, CallParty, Customer, Employee, Order

HOSTILE = '<script>alert("x")</script> =HYPERLINK("http://evil") $x$ --> ]]>'
SINCE = dt.datetime(2026, 11, 22, 23, 0)
UNTIL = dt.datetime(2026, 11, 24, 23, 0)


def t(day: int, hh: int, mm: int = 0, ss: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hh, mm, ss)


def add_call(uuid: str, direction: str, start: dt.datetime, end: dt.datetime, *, customer=None, number=None,
             answered_by=None, answered_at=None, from_ext=None, parties=(), did=None, cause=None) -> Call:
    """A call with its parties: (extension, role, rang_at, answered_at, ended_at, outcome, talked); did is the number
    dialled, cause the caller leg's hang-up cause."""
    missed = direction in ("INCOMING", "INTERNAL") and answered_by is None
    call = Call.create(
        uuid=uuid, direction=direction, external_number=number, external_e164=number, customer=customer,
        from_extension=from_ext, answered_by=answered_by, extension=answered_by or from_ext,
        external_answered=(answered_at is not None) if direction == "OUTGOING" else None,
        started_at=start, answered_at=answered_at, ended_at=end,
        ring_seconds=((answered_at or end) - start).total_seconds(),
        talk_seconds=(end - answered_at).total_seconds() if answered_at else None, missed=missed, did=did,
        hangup_cause=cause,
    )
    for seq, (ext, role, rang, answered, ended, outcome, talked) in enumerate(parties):
        CallParty.create(
            call=call, extension=ext, role=role, seq=seq, rang_at=rang, answered_at=answered, ended_at=ended,
            outcome=outcome, talked=talked,
            talk_seconds=(ended - answered).total_seconds() if answered and ended else None,
        )
    return call


def build() -> dict[str, Customer]:
    """Employees, customers, orders and the calls c1..c14 (see each line)."""
    Employee.create(name="Anna", extension="1001")
    Employee.create(name="Bjorn", extension="1002")
    Employee.create(name=HOSTILE, extension="1003")
    c1 = Customer.create(name="Acme", company="Acme ehf", category="regular", external_id="C1")
    c2 = Customer.create(name="Vip Co", category="vip", external_id="C2")
    c3 = Customer.create(name="=cmd|' /C calc'!A0", category="problem", external_id="C3")
    c4 = Customer.create(name="Four", category="regular", external_id="C4")
    c5 = Customer.create(name="Five", category="vip", external_id="C5")
    Order.create(customer=c1, number="O1", amount=Decimal("100"), paid=Decimal("40"), status="open")
    Order.create(customer=c1, number="O2", amount=Decimal("500"), paid=Decimal("0"), status="closed")
    Order.create(customer=c2, number="O3", amount=Decimal("200"), paid=Decimal("250"), status="open")
    Order.create(customer=c3, number="O4", amount=Decimal("80.50"), paid=Decimal("0"), status="open")
    Order.create(customer=c4, number="O5", amount=Decimal("10"), paid=Decimal("0"), status="open")
    Order.create(customer=c5, number="O6", amount=Decimal("5"), paid=Decimal("0"), status="open")
    n1, n2, n3, n4 = "+3545550001", "+3545550002", "+3545550003", "+3545550004"

    # c13: Sunday 23:30 local, before the period: C2, missed by 1001
    add_call("c13", "INCOMING", t(22, 22, 30), t(22, 22, 30, 20), customer=c2, number=n2,
             parties=[("1001", "callee", t(22, 22, 30), None, t(22, 22, 30, 20), "missed", False)])
    # c14: Monday 00:30 local (still Sunday in UTC): C4, 1003 answers after 4 s, talks 60 s
    add_call("c14", "INCOMING", t(22, 23, 30), t(22, 23, 31, 4), customer=c4, number=n4, answered_by="1003",
             answered_at=t(22, 23, 30, 4),
             parties=[("1003", "callee", t(22, 23, 30), t(22, 23, 30, 4), t(22, 23, 31, 4), "answered", True)])
    # c1: C1, 1001 rings at +5 s, answers at +10 s (5 s), talks 300 s
    add_call("c1", "INCOMING", t(23, 8), t(23, 8, 5, 10), customer=c1, number=n1, answered_by="1001",
             answered_at=t(23, 8, 0, 10),
             parties=[("1001", "callee", t(23, 8, 0, 5), t(23, 8, 0, 10), t(23, 8, 5, 10), "answered", True)])
    # c2: C1 again within 24 h; ring group 1001/1002/1003, 1002 answers after 10 s, talks 120 s
    add_call("c2", "INCOMING", t(23, 20), t(23, 20, 2, 12), customer=c1, number=n1, answered_by="1002",
             answered_at=t(23, 20, 0, 12),
             parties=[("1001", "callee", t(23, 20, 0, 2), None, t(23, 20, 0, 12), "answered_elsewhere", False),
                      ("1002", "callee", t(23, 20, 0, 2), t(23, 20, 0, 12), t(23, 20, 2, 12), "answered", True),
                      ("1003", "callee", t(23, 20, 0, 2), None, t(23, 20, 0, 12), "answered_elsewhere", False)])
    # c3: C2, Monday 23:58 local, runs past midnight; 1002 answers (20 s), talks 420 s, transfers to 1001 (300 s)
    add_call("c3", "INCOMING", t(23, 22, 58), t(23, 23, 10, 20), customer=c2, number=n2, answered_by="1002",
             answered_at=t(23, 22, 58, 20),
             parties=[("1002", "callee", t(23, 22, 58), t(23, 22, 58, 20), t(23, 23, 5, 20), "transferred", True),
                      ("1001", "callee", t(23, 23, 5), t(23, 23, 5, 20), t(23, 23, 10, 20), "answered", True)])
    # c11: C3, 1003 answers after 8 s, talks 120 s
    add_call("c11", "INCOMING", t(24, 8), t(24, 8, 2, 8), customer=c3, number=n3, answered_by="1003",
             answered_at=t(24, 8, 0, 8),
             parties=[("1003", "callee", t(24, 8), t(24, 8, 0, 8), t(24, 8, 2, 8), "answered", True)])
    # c4: C3, ring group 1001/1003, nobody answers: missed by both, never returned
    add_call("c4", "INCOMING", t(24, 9), t(24, 9, 0, 31), customer=c3, number=n3,
             parties=[("1001", "callee", t(24, 9, 0, 1), None, t(24, 9, 0, 31), "missed", False),
                      ("1003", "callee", t(24, 9, 0, 1), None, t(24, 9, 0, 31), "missed", False)])
    # c5: unknown number, hangs up in the queue before any phone rang
    add_call("c5", "INCOMING", t(24, 10), t(24, 10, 0, 40), number="+3545559999")
    # c6: unknown number, 1002 rings, nobody answers ...
    add_call("c6", "INCOMING", t(24, 11), t(24, 11, 0, 20), number="+3545558888",
             parties=[("1002", "callee", t(24, 11), None, t(24, 11, 0, 20), "missed", False)])
    # c7: ... and 1002 calls that number back, answered after 15 s, 180 s talk
    add_call("c7", "OUTGOING", t(24, 12), t(24, 12, 3, 15), number="+3545558888", from_ext="1002",
             answered_at=t(24, 12, 0, 15),
             parties=[("1002", "caller", None, t(24, 12, 0, 15), t(24, 12, 3, 15), None, True)])
    # c8: 1001 calls C2, no answer
    add_call("c8", "OUTGOING", t(24, 13), t(24, 13, 0, 30), customer=c2, number=n2, from_ext="1001",
             parties=[("1001", "caller", None, None, t(24, 13, 0, 30), None, False)])
    # c9: C1, 1001 answers after 30 s, talks 60 s
    add_call("c9", "INCOMING", t(24, 14), t(24, 14, 1, 30), customer=c1, number=n1, answered_by="1001",
             answered_at=t(24, 14, 0, 30),
             parties=[("1001", "callee", t(24, 14), t(24, 14, 0, 30), t(24, 14, 1, 30), "answered", True)])
    # c10: internal 1001 -> 1003: in no figure
    add_call("c10", "INTERNAL", t(24, 15), t(24, 15, 5), from_ext="1001", answered_by="1003", answered_at=t(24, 15, 0, 5),
             parties=[("1001", "caller", None, t(24, 15, 0, 5), t(24, 15, 5), None, True),
                      ("1003", "callee", t(24, 15), t(24, 15, 0, 5), t(24, 15, 5), "answered", True)])
    # c12: Wednesday, after the period: C1 calls again (within 24 h of c9), answered by 1001
    add_call("c12", "INCOMING", t(25, 10), t(25, 10, 1), customer=c1, number=n1, answered_by="1001",
             answered_at=t(25, 10, 0, 3),
             parties=[("1001", "callee", t(25, 10), t(25, 10, 0, 3), t(25, 10, 1), "answered", True)])
    return {"c1": c1, "c2": c2, "c3": c3, "c4": c4, "c5": c5}
