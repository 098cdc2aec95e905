"""Conversation analysis in the database: recordings still to analyse, each result kept (figures per side,
transcript lines, phrase matches) or its error, and what the pages read back: a call's analysis, transcript search,
phrase alerts and their matches. Each function is one database step (run on the database worker in the daemon)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from screenpop.daemon.analysis.phrases import Alert, fold, matches
from screenpop.daemon.i18n import lazy_gettext
from screenpop.db.models import (Call, Customer, Employee, PhraseAlert, PhraseMatch, Recording, RecordingAnalysis,
                                 SideMetrics, TranscriptLine, database)

READY = ("ok",)  # the recording's file was checked: complete, readable, inside the recording roots (docs/recordings.md)
SIDES = ("customer", "operator")
SEARCH_LIMIT = 200


@dataclass(frozen=True)
class Job:
    """A recording to analyse: its id, call, file as the daemon reads it, and who is on its left channel."""

    recording_id: int
    call_uuid: str
    path: str
    left: str


def pending(limit: int, skip: set[int]) -> list[Job]:
    """Up to limit complete recordings without an analysis, oldest first, leaving out those in skip (queued now)."""
    done = RecordingAnalysis.select(RecordingAnalysis.recording_id)
    query = (Recording.select(Recording.id, Recording.call_uuid, Recording.path, Recording.party)
             .where(Recording.status.in_(READY), Recording.id.not_in(done))
             .order_by(Recording.id).limit(limit + len(skip)))
    jobs = [Job(r.id, r.call_uuid, r.path, r.party or "customer") for r in query if r.id not in skip]
    return jobs[:limit]


def backlog() -> int:
    """How many complete recordings have no analysis yet."""
    done = RecordingAnalysis.select(RecordingAnalysis.recording_id)
    return Recording.select().where(Recording.status.in_(READY), Recording.id.not_in(done)).count()


def alerts(configured: list[str]) -> list[Alert]:
    """Every phrase alert: the configuration's (either side) and the admin's."""
    stored = [Alert(a.phrase, a.side) for a in PhraseAlert.select().order_by(PhraseAlert.phrase)]
    have = {fold(a.phrase) for a in stored}
    return [*(Alert(p) for p in configured if fold(p) not in have), *stored]


def _clear(recording_id: int) -> None:
    for model in (SideMetrics, TranscriptLine, PhraseMatch):
        model.delete().where(model.recording_id == recording_id).execute()
    RecordingAnalysis.delete().where(RecordingAnalysis.recording_id == recording_id).execute()


def save(job: Job, result: dict[str, Any], configured: list[str]) -> int:
    """Keep one recording's result (replacing any earlier one) and its phrase matches; returns the matches found."""
    with database.atomic():
        _clear(job.recording_id)
        if not result.get("ok"):
            RecordingAnalysis.create(recording_id=job.recording_id, call_uuid=job.call_uuid, state="failed",
                                     error=str(result.get("error", "unknown error"))[:2000])
            return 0
        RecordingAnalysis.create(recording_id=job.recording_id, call_uuid=job.call_uuid, state="done",
                                 engine=result.get("engine", ""), duration=result["duration"],
                                 truncated=bool(result.get("truncated")))
        SideMetrics.insert_many([{**m, "recording_id": job.recording_id, "call_uuid": job.call_uuid}
                                 for m in result["metrics"]]).execute()
        lines = result.get("lines", [])
        if lines:
            TranscriptLine.insert_many([{**line, "recording_id": job.recording_id, "call_uuid": job.call_uuid}
                                        for line in lines]).execute()
        wanted = alerts(configured)
        found = [{"phrase": phrase, "recording_id": job.recording_id, "call_uuid": job.call_uuid,
                  "side": line["side"], "at": line["start"], "text": line["text"]}
                 for line in lines for phrase in matches(wanted, line["side"], line["text"])]
        if found:
            PhraseMatch.insert_many(found).execute()
        return len(found)


def forget(recording_ids: list[int]) -> None:
    """Retention is deleting these recordings: their figures, transcripts and matches go with them (the Keeper's
    hook, inside its transaction on the database worker)."""
    for recording_id in recording_ids:
        _clear(recording_id)


def call_analysis(call_uuid: str) -> list[dict[str, Any]]:
    """A call's recordings' analyses: per recording its state or error, its figures per side and its transcript."""
    out = []
    for analysis in RecordingAnalysis.select().where(RecordingAnalysis.call_uuid == call_uuid).order_by(
            RecordingAnalysis.recording_id):
        rid = analysis.recording_id
        metrics = {m.side: m for m in SideMetrics.select().where(SideMetrics.recording_id == rid)}
        lines = list(TranscriptLine.select().where(TranscriptLine.recording_id == rid)
                     .order_by(TranscriptLine.start, TranscriptLine.side))
        out.append({"recording_id": rid, "state": analysis.state, "error": analysis.error, "engine": analysis.engine,
                    "duration": analysis.duration, "truncated": analysis.truncated,
                    "metrics": [metrics[s] for s in SIDES if s in metrics], "lines": lines})
    return out


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(text: str, side: str = "", limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Transcript lines holding text (case-insensitive), on one side or either, newest calls first, with their call."""
    words = " ".join(text.split())
    if not words:
        return []
    match = peewee.fn.LOWER(TranscriptLine.text) ** _like(words.lower())
    query = (TranscriptLine.select(TranscriptLine, Call.id.alias("call_id"), Call.started_at, Call.external_number,
                                   Call.extension, Customer.id.alias("customer_id"), Customer.name.alias("customer"))
             .join(Call, on=(Call.uuid == TranscriptLine.call_uuid))
             .join(Customer, peewee.JOIN.LEFT_OUTER, on=(Customer.id == Call.customer))
             .where(match).order_by(Call.started_at.desc(), TranscriptLine.start).limit(limit))
    if side:
        query = query.where(TranscriptLine.side == side)
    return list(query.dicts())


def transcript_rows(call_uuids: list[str] | None = None) -> list[dict[str, Any]]:
    """Transcript lines for the CSV export: every line of the given calls (None: all), in call and time order."""
    query = (TranscriptLine.select(Call.id.alias("call_id"), TranscriptLine.call_uuid, Call.started_at,
                                   TranscriptLine.recording_id, TranscriptLine.side, TranscriptLine.start,
                                   TranscriptLine.end, TranscriptLine.text)
             .join(Call, on=(Call.uuid == TranscriptLine.call_uuid))
             .order_by(Call.started_at, TranscriptLine.recording_id, TranscriptLine.start))
    if call_uuids is not None:
        query = query.where(TranscriptLine.call_uuid.in_(call_uuids))
    return list(query.dicts())


def recent_matches(limit: int = 50, customer_id: int | None = None, call_uuid: str | None = None) -> list[dict[str, Any]]:
    """The newest calls with a phrase alert's match (or one customer's, or one call's), with operator and customer."""
    query = (PhraseMatch.select(PhraseMatch.phrase, PhraseMatch.side, PhraseMatch.at, PhraseMatch.text,
                                PhraseMatch.call_uuid, Call.id.alias("call_id"), Call.started_at, Call.extension,
                                Employee.name.alias("employee"), Customer.id.alias("customer_id"),
                                Customer.name.alias("customer"))
             .join(Call, on=(Call.uuid == PhraseMatch.call_uuid))
             .join(Employee, peewee.JOIN.LEFT_OUTER, on=(Employee.id == Call.employee))
             .join(Customer, peewee.JOIN.LEFT_OUTER, on=(Customer.id == Call.customer))
             .order_by(Call.started_at.desc(), PhraseMatch.at).limit(limit))
    if customer_id is not None:
        query = query.where(Call.customer == customer_id)
    if call_uuid is not None:
        query = query.where(PhraseMatch.call_uuid == call_uuid)
    return list(query.dicts())


def add_alert(phrase: str, side: str) -> PhraseAlert:
    """A new phrase alert; ValueError for an empty, too long, multi-line or duplicate phrase or an unknown side."""
    phrase = " ".join(phrase.split())
    if not phrase or len(phrase) > 200:
        raise ValueError(lazy_gettext("a phrase is 1 to 200 characters"))
    if side not in ("", *SIDES):
        raise ValueError(lazy_gettext("side must be customer, operator or empty (either)"))
    if not fold(phrase):
        raise ValueError(lazy_gettext("a phrase needs at least one letter or digit"))
    if any(fold(a.phrase) == fold(phrase) for a in PhraseAlert.select()):
        raise ValueError(lazy_gettext("the alert %(phrase)r exists already", phrase=phrase))
    return PhraseAlert.create(phrase=phrase, side=side)


def remove_alert(alert_id: int) -> bool:
    """Delete a phrase alert and the matches found for it; False when there is no such alert."""
    alert = PhraseAlert.get_or_none(PhraseAlert.id == alert_id)
    if alert is None:
        return False
    with database.atomic():
        PhraseMatch.delete().where(PhraseMatch.phrase == alert.phrase).execute()
        alert.delete_instance()
    return True


def failures(limit: int = 20) -> list[dict[str, Any]]:
    """The newest recordings whose analysis failed, with the reason (for the admin)."""
    return list(RecordingAnalysis.select().where(RecordingAnalysis.state == "failed")
                .order_by(RecordingAnalysis.analysed_at.desc()).limit(limit).dicts())

