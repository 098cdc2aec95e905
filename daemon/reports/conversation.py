"""How calls went, from their recordings (docs/analysis.md): the audio figures summed per employee and per
customer, and the calls where a phrase alert matched, for a Period on both databases. The figures themselves are
found by daemon/analysis/ and stored per recording and side (side_metrics, phrase_match)."""
from __future__ import annotations

import peewee
from peewee import JOIN, Case, fn

from screenpop.daemon.reports.analytics import Period, ratio, secs
from screenpop.db.models import Call, Customer, Employee, PhraseMatch, SideMetrics

OPERATOR, CUSTOMER = "operator", "customer"


def _of(side: str, field: peewee.Field) -> peewee.Node:
    """SUM of field over the rows of one side."""
    return fn.SUM(Case(None, [(SideMetrics.side == side, field)], 0))


def _count(side: str, flag: peewee.Field) -> peewee.Node:
    return fn.SUM(Case(None, [((SideMetrics.side == side) & (flag == True), 1)], 0))  # noqa: E712 - SQL, not Python


def _calls(query: peewee.ModelSelect, uuid: peewee.Field) -> peewee.ModelSelect:
    """query (over side_metrics or phrase_match) joined to each row's call, the analysis rows read first: a year
    holds far more calls than analysed recordings, and SQLite, left to choose, read every call of the period (2 s
    over a year of a million calls with none analysed). Its CROSS JOIN keeps the order; PostgreSQL plans as usual."""
    return query.join(Call, JOIN.CROSS).where(Call.uuid == uuid)


def _in(period: Period, query: peewee.ModelSelect) -> peewee.ModelSelect:
    if period.since is not None:
        query = query.where(Call.started_at >= period.since)
    if period.until is not None:
        query = query.where(Call.started_at < period.until)
    if period.extension:
        query = query.where(Call.extension == period.extension)
    return query


def _figures(mine: str, theirs: str) -> list[peewee.Node]:
    """The summed figures from one side's point of view (its talk, the other's talk as its listening)."""
    return [fn.COUNT(fn.DISTINCT(SideMetrics.recording_id)).alias("recordings"),
            _of(mine, SideMetrics.talk).alias("talk"), _of(theirs, SideMetrics.talk).alias("listen"),
            _of(mine, SideMetrics.overtalk).alias("overtalk"), _of(mine, SideMetrics.silence).alias("silence"),
            fn.MAX(SideMetrics.longest_silence).alias("longest"), _of(mine, SideMetrics.interruptions).alias("interrupts"),
            _of(theirs, SideMetrics.interruptions).alias("interrupted"), _count(mine, SideMetrics.spoke_first).alias("first")]


def _row(r: dict, talk_key: str, listen_key: str) -> dict:
    talk, listen = float(r["talk"] or 0), float(r["listen"] or 0)
    return {"recordings": int(r["recordings"]), f"{talk_key}_talk_s": secs(talk), f"{listen_key}_talk_s": secs(listen),
            "talk_listen_ratio": round(talk / listen, 3) if listen else None,
            "overtalk_s": secs(r["overtalk"] or 0), "silence_s": secs(r["silence"] or 0),
            "longest_silence_s": secs(r["longest"] or 0), f"{talk_key}_interruptions": int(r["interrupts"] or 0),
            f"{listen_key}_interruptions": int(r["interrupted"] or 0),
            f"{talk_key}_spoke_first": ratio(int(r["first"] or 0), int(r["recordings"]))}


def employees(period: Period) -> list[dict]:
    """Per operator (the call's extension): recordings analysed, talk and listen time, their ratio, overtalk,
    silence, the operator interrupting the customer and the reverse, and phrase alert matches."""
    query = _in(period, _calls(SideMetrics.select(Call.extension, *_figures(OPERATOR, CUSTOMER)), SideMetrics.call_uuid)
                .where(Call.extension.is_null(False)).group_by(Call.extension).order_by(Call.extension))
    alerts = dict(_in(period, _calls(PhraseMatch.select(Call.extension, fn.COUNT(PhraseMatch.id)), PhraseMatch.call_uuid)
                      .group_by(Call.extension)).tuples())
    names = dict(Employee.select(Employee.extension, Employee.name).tuples())
    return [{"extension": r["extension"], "name": names.get(r["extension"], ""), **_row(r, OPERATOR, CUSTOMER),
             "alerts": int(alerts.get(r["extension"], 0))} for r in query.dicts()]


def customers(period: Period) -> list[dict]:
    """Per customer with analysed calls: recordings, the customer's talk and the operators', ratio, overtalk,
    silence, interruptions either way, phrase alert matches; most talk first."""
    query = _in(period, _calls(SideMetrics.select(Customer.id, Customer.name, *_figures(CUSTOMER, OPERATOR)),
                               SideMetrics.call_uuid)
                .join(Customer, on=(Customer.id == Call.customer)).group_by(Customer.id, Customer.name))
    alerts = dict(_in(period, _calls(PhraseMatch.select(Call.customer, fn.COUNT(PhraseMatch.id)), PhraseMatch.call_uuid)
                      .where(Call.customer.is_null(False)).group_by(Call.customer)).tuples())
    rows = [{"customer_id": r["id"], "name": r["name"], **_row(r, CUSTOMER, OPERATOR), "alerts": int(alerts.get(r["id"], 0))}
            for r in query.dicts()]
    rows.sort(key=lambda row: (-(row["customer_talk_s"] or 0), row["customer_id"]))
    return rows


def alerts(period: Period) -> list[dict]:
    """Every phrase alert match in the period's calls, newest call first: when, which call, operator, customer,
    the phrase, who said it, when in the recording, and the line."""
    query = _in(period, _calls(PhraseMatch.select(Call.started_at, Call.id.alias("call_id"), Call.extension,
                                                  Employee.name.alias("employee"), Customer.id.alias("customer_id"),
                                                  Customer.name.alias("customer"), PhraseMatch.phrase, PhraseMatch.side,
                                                  PhraseMatch.at, PhraseMatch.text), PhraseMatch.call_uuid)
                .join(Employee, JOIN.LEFT_OUTER, on=(Employee.id == Call.employee))
                .join(Customer, JOIN.LEFT_OUTER, on=(Customer.id == Call.customer))
                .order_by(Call.started_at.desc(), PhraseMatch.at))
    return [{**r, "at": secs(r["at"])} for r in query.dicts()]
