"""The conversation figures summed per employee and per customer, and the phrase alerts' calls, on both databases,
through the report catalog and `screenpop report` (issue 19, parts 2 and 3)."""
from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from screenpop.daemon import cli
from screenpop.daemon.analysis import store
from screenpop.daemon.reports import catalog
from screenpop.daemon.reports.analytics import Period
from screenpop.db.models import Call, Customer, Employee

DAY = dt.datetime(2026, 11, 24, 9, 0)
WEEK = Period(DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1))


def metrics(talk_c: float, talk_o: float, first: str, interrupts_o: int = 0) -> list[dict]:
    return [{"side": side, "duration": 60.0, "talk": talk, "overtalk": 2.0, "silence": 5.0,
             "longest_silence": 3.0, "spoke_first": side == first, "spoke_last": False,
             "interruptions": interrupts_o if side == "operator" else 1}
            for side, talk in (("customer", talk_c), ("operator", talk_o))]


def analysed(n: int, ext: str, customer: Customer | None, talk_c: float, talk_o: float, lines=(),
             at: dt.datetime = DAY, interrupts_o: int = 0) -> None:
    employee = Employee.get(Employee.extension == ext)
    Call.create(uuid=f"c{n}", direction="INCOMING", started_at=at, extension=ext, employee=employee, customer=customer)
    job = store.Job(n, f"c{n}", f"/rec/{n}.wav", "customer")
    result = {"ok": True, "duration": 60.0, "engine": "pocketsphinx",
              "metrics": metrics(talk_c, talk_o, "operator", interrupts_o), "lines": list(lines)}
    store.save(job, result, ["lawyer", "cancel my contract"])


@pytest.fixture
def calls(db):
    Employee.create(name="Anna", extension="1001")
    Employee.create(name="Bo", extension="1002")
    jon, ása = Customer.create(name="Jón"), Customer.create(name="Ása")
    analysed(1, "1001", jon, 20.0, 30.0, [{"side": "customer", "start": 1.0, "end": 3.0,
                                            "text": "i want to cancel my contract"}], interrupts_o=2)
    analysed(2, "1001", ása, 10.0, 10.0)
    analysed(3, "1002", jon, 40.0, 20.0, [{"side": "customer", "start": 4.0, "end": 6.0, "text": "my LAWYER says"},
                                          {"side": "operator", "start": 7.0, "end": 9.0, "text": "no lawyer needed"}],
             at=DAY + dt.timedelta(hours=1))
    analysed(4, "1002", ása, 99.0, 99.0, at=DAY - dt.timedelta(days=3))  # outside the period
    return db


def test_figures_per_employee(calls) -> None:
    rows = {r["extension"]: r for r in catalog.run("conversation_employees", WEEK)}
    anna, bo = rows["1001"], rows["1002"]
    assert (anna["name"], anna["recordings"], anna["operator_talk_s"], anna["customer_talk_s"]) == ("Anna", 2, 40.0, 30.0)
    assert anna["talk_listen_ratio"] == pytest.approx(40 / 30, abs=0.001)
    assert (anna["overtalk_s"], anna["silence_s"], anna["longest_silence_s"]) == (4.0, 10.0, 3.0)
    assert (anna["operator_interruptions"], anna["customer_interruptions"], anna["operator_spoke_first"]) == (2, 2, 1.0)
    assert (anna["alerts"], bo["alerts"]) == (1, 2)
    assert bo["recordings"] == 1 and bo["talk_listen_ratio"] == 0.5


def test_figures_per_customer_and_compared(calls) -> None:
    rows = catalog.run("conversation_customers", WEEK)
    assert [r["name"] for r in rows] == ["Jón", "Ása"]  # most customer talk first
    assert (rows[0]["customer_talk_s"], rows[0]["operator_talk_s"], rows[0]["alerts"]) == (60.0, 50.0, 3)
    before = {r["extension"]: r for r in catalog.run("conversation_employees", WEEK, "previous")}
    assert before["1002"]["recordings_previous"] == 1 and before["1002"]["operator_talk_s_previous"] == 99.0


def test_alerts_list_the_calls(calls) -> None:
    rows = catalog.run("alerts", WEEK)
    assert [(r["phrase"], r["side"], r["customer"], r["employee"]) for r in rows] == [
        ("lawyer", "customer", "Jón", "Bo"), ("lawyer", "operator", "Jón", "Bo"),
        ("cancel my contract", "customer", "Jón", "Anna")]
    assert [r["phrase"] for r in store.recent_matches(customer_id=Customer.get(Customer.name == "Ása").id)] == []
    one = Period(WEEK.since, WEEK.until, extension="1001")
    assert [r["phrase"] for r in catalog.run("alerts", one)] == ["cancel my contract"]
    with pytest.raises(ValueError, match="lists calls"):
        catalog.run("alerts", WEEK, "previous")


def test_the_command_writes_csv(calls, db_url: str, tmp_path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    assert cli.main(["report", "--config", str(config), "--since", "2026-11-23", "--until", "2026-11-25",
                     "--report", "conversation_employees", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["extension"], r["operator_talk_s"], r["alerts"]) for r in rows] == [("1001", "40.0", "1"), ("1002", "20.0", "2")]
