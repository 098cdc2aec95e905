"""`screenpop report` and `screenpop calls --format csv` on the fixed data set, and the CSV formula guard."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from analytics_data import HOSTILE, build
from screenpop.daemon import cli
from screenpop.daemon.reports.export import safe_cell, write_csv

from support import run_calls

PERIOD = ["--since", "2026-11-23", "--until", "2026-11-25"]


@pytest.fixture
def config(tmp_path, sqlite_url):
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate

    database = open_database(sqlite_url)
    migrate(database)
    with database.atomic():
        build()
    database.close()
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "{sqlite_url}"\n\n[analytics]\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    return str(path)


def run(capsys, *args: str) -> str:
    assert cli.main(list(args)) == 0
    return capsys.readouterr().out


def test_report_json_all(config, capsys):
    out = json.loads(run(capsys, "report", "--config", config, *PERIOD, "--format", "json"))
    assert list(out) == ["employees", "customers", "categories", "missed", "load", "daily", "service", "numbers", "queues",
                         "peaks", "unknown_callers", "conversation_employees", "conversation_customers", "alerts"]
    assert (out["service"][0]["inbound"], out["service"][0]["callback_rate"]) == (9, 1 / 3)
    anna = next(r for r in out["employees"] if r["extension"] == "1001")
    assert (anna["taken"], anna["missed"], anna["answer_rate"]) == (3, 1, 0.75)
    assert out["customers"][0]["open_debt"] == "60.00"
    assert out["customers"][0]["last_contact"] == "2026-11-24T15:00:00+01:00"
    assert [d["date"] for d in out["daily"]] == ["2026-11-23", "2026-11-24"]


def test_report_compared_with_the_previous_period_as_csv(config, capsys):
    out = run(capsys, "report", "--config", config, "--since", "2026-11-24", "--until", "2026-11-25", "--report", "service",
              "--compare", "previous", "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert (row["inbound"], row["inbound_previous"], row["answered"], row["answered_previous"]) == ("5", "4", "2", "4")
    assert row["service_level_previous"] == "1.0"  # Monday: 4, 10, 12 and 20 s


def test_report_thresholds_come_from_the_configuration(config, capsys):
    with open(config, "a", encoding="utf-8") as fh:
        fh.write("service_level_seconds = 10\nshort_abandon_seconds = 30\n")
    (row,) = json.loads(run(capsys, "report", "--config", config, *PERIOD, "--report", "service", "--format", "json"))["service"]
    assert row["short_abandons"] == 1  # c6 (20 s); c4 (31 s) and c5 (40 s) waited longer
    assert row["service_level"] == 3 / 8  # answered within 10 s: 4, 10 and 8 s, of the 9 calls less the short abandon


@pytest.mark.parametrize("args, message", [
    (["--report", "nonsense"], "--report: one of"),
    (["--report", "missed", "--compare", "year"], "no --compare"),
])
def test_report_refuses_with_a_message(config, capsys, args, message):
    with pytest.raises(SystemExit, match=message):
        cli.main(["report", "--config", config, *PERIOD, *args])


def test_report_table_is_terminal_safe(config, capsys):
    out = run(capsys, "report", "--config", config, *PERIOD, "--report", "missed")
    assert "== missed ==" in out and "1001,1003" in out and "2026-11-24 10:00" in out
    text = run(capsys, "report", "--config", config, *PERIOD, "--report", "employees")
    assert "75.0%" in text and "<script>" in text and "\x1b" not in text


def test_report_csv_neutralises_formulas(config, capsys):
    out = run(capsys, "report", "--config", config, *PERIOD, "--report", "employees", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["extension"] for r in rows] == ["1001", "1002", "1003"]
    assert rows[0]["taken"] == "3" and rows[0]["answer_rate"] == "0.75"
    assert rows[2]["name"] == HOSTILE  # starts with <, not a formula
    out = run(capsys, "report", "--config", config, *PERIOD, "--report", "customers", "--format", "csv")
    names = [r["name"] for r in csv.DictReader(io.StringIO(out))]
    assert "'=cmd|' /C calc'!A0" in names


def test_report_extension_and_bad_input(config, capsys):
    out = json.loads(run(capsys, "report", "--config", config, *PERIOD, "--report", "employees", "--extension", "1002",
                         "--format", "json"))
    assert [r["extension"] for r in out["employees"]] == ["1002"]
    with pytest.raises(SystemExit, match="one report"):
        cli.main(["report", "--config", config, "--format", "csv"])
    with pytest.raises(SystemExit, match="not a time"):
        cli.main(["report", "--config", config, "--since", "yesterday"])


def test_report_without_until_ends_now(config, sqlite_url, capsys):
    """Issue 14: with no --until a call stamped ahead by a PBX clock was counted; the period ends now."""
    from analytics_data import add_call
    from screenpop.db.database import open_database
    from screenpop.db.models import utcnow

    database = open_database(sqlite_url)
    ahead = utcnow() + dt.timedelta(hours=2)
    with database.atomic():
        add_call("ahead", "INCOMING", ahead, ahead + dt.timedelta(seconds=30), number="+3545550009",
                 parties=[("1001", "callee", ahead, None, ahead + dt.timedelta(seconds=30), "missed", False)])
    database.close()
    out = json.loads(run(capsys, "report", "--config", config, "--since", "2026-11-01", "--format", "json"))
    assert "+3545550009" not in [r["number"] for r in out["missed"]]
    assert next(r for r in out["employees"] if r["extension"] == "1001")["missed"] == 2  # c13 and c4, not "ahead"
    later = json.loads(run(capsys, "report", "--config", config, "--since", "2026-11-01", "--until", "2100-01-01",
                           "--report", "missed", "--format", "json"))
    assert "+3545550009" in [r["number"] for r in later["missed"]]


def test_calls_csv(config, capsys):
    out = run(capsys, "calls", "--config", config, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 14 and rows[0]["direction"] == "INCOMING"
    c4 = next(r for r in rows if r["uuid"] == "c4")
    assert c4["missed"] == "true" and c4["missed_by"] == "1001 1003"
    assert c4["external_number"] == "+3545550003"  # a plain number, not a formula: kept as it is


@pytest.mark.parametrize(
    "value, cell",
    [
        ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"), ("\tx", "'\tx"),
        ("\rx", "'\rx"), ("\uff1dcmd", "'\uff1dcmd"), ("plain", "plain"), ("a=b", "a=b"), ("", ""),
        ("-12.5", "-12.5"), ("+3545551234", "+3545551234"), ("+354 555 1234", "'+354 555 1234"),
        (-3, -3), (2.5, 2.5), (Decimal("-1.50"), Decimal("-1.50")), (None, ""), (True, "true"),
        (dt.date(2026, 11, 24), "2026-11-24"), (["=1", "2"], "'=1 2"),
    ],
)
def test_safe_cell(value, cell):
    assert safe_cell(value) == cell


def test_write_csv_quotes_and_guards():
    out = io.StringIO()
    write_csv([{"name": '=HYPERLINK("x")', "n": -1}, {"name": "a,b\nc", "n": 2}], out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [["name", "n"], ["'=HYPERLINK(\"x\")", "-1"], ["a,b\nc", "2"]]


def test_report_on_calls_from_the_simulator_through_the_daemon(tmp_path, sqlite_url, capsys):
    """Generated calls of every kind go through the real daemon; the report's counts equal the generator's truth."""
    expect = tmp_path / "expect.jsonl"
    config = run_calls(tmp_path, sqlite_url, "--generate", "--calls", "60", "--rate", "40", "--speed", "20",
                       "--seed", "11", "--extensions", "1001-1004", "--expect", str(expect), "--linger", "0.5",
                       analytics='[analytics]\ntimezone = "UTC"')
    truth: dict[str, dict[str, int]] = {}
    inbound = missed = 0
    for item in (json.loads(line) for line in expect.read_text(encoding="utf-8").splitlines()):
        call = item["call"]
        if call["direction"] == "INCOMING":
            inbound += 1
            missed += call["answered_by"] is None
            for ext in call["talked"]:
                truth.setdefault(ext, {"taken": 0, "made": 0, "missed": 0})["taken"] += 1
            for ext in call["missed_by"]:
                truth.setdefault(ext, {"taken": 0, "made": 0, "missed": 0})["missed"] += 1
        elif call["direction"] == "OUTGOING":
            truth.setdefault(call["from_extension"], {"taken": 0, "made": 0, "missed": 0})["made"] += 1
    out = json.loads(run(capsys, "report", "--config", str(config), "--since", "2000-01-01", "--until", "2100-01-01",
                         "--format", "json"))
    got = {r["extension"]: {k: r[k] for k in ("taken", "made", "missed")} for r in out["employees"]}
    assert got == truth and sum(v["taken"] for v in truth.values()) > 10 and sum(v["missed"] for v in truth.values()) > 0
    assert sum(d["inbound"] for d in out["daily"]) == inbound and sum(d["missed"] for d in out["daily"]) == missed
    assert all(r["answer_avg_s"] is not None for r in out["employees"] if r["taken"])
    from screenpop.db.database import open_database
    from screenpop.db.models import CallParty

    db = open_database(sqlite_url)
    transferred = CallParty.select().where(CallParty.outcome == "transferred").count()
    untimed = CallParty.select().where(CallParty.answered_at.is_null(False) & CallParty.ended_at.is_null(False)
                                       & CallParty.talk_seconds.is_null()).count()
    db.close()
    assert transferred > 0 and untimed == 0, "every party that talked and left, transferors too, has its talk time"
