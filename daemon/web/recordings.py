"""Recordings over HTTP (docs/recordings.md): who may listen ([recordings] listen), a call's recordings for the
lists, the audio served with byte ranges (206, Content-Range, If-Range, 416), every listen logged, calls held from
deletion. The pages (daemon/web/pages/recordings.py) and the JSON API (daemon/web/api.py) share these.

Only files inside the recording roots are ever opened (daemon/record/recordings.py's under_roots), whatever a
stored path says; a missing or unreadable file is a 404 with a message, and its row's status says so from then.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime

from flask import Response

from screenpop.daemon.auth import roles
from screenpop.daemon.customers.data import DataError
from screenpop.daemon.i18n import lazy_gettext
from screenpop.daemon.record.recordings import MISSING, UNREADABLE, blocking, under_roots
from screenpop.daemon.record.recordings import hold as hold_rows
from screenpop.db.models import Call, CallParty, Recording, RecordingListen, utcnow

log = logging.getLogger("screenpop.web")

PLAYABLE = ("ok", "stopped")  # a file there, or stopped and not checked yet (the request finds out)
CHUNK = 64 * 1024
MAX_RANGE_HEADER = 200
LISTEN_WINDOW = dt.timedelta(minutes=10)  # one person playing one recording again within this is one listen
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg",
               ".flac": "audio/flac"}


def may_listen(listen: str, role: str, extension: str | None, call_extensions: set[str]) -> bool:
    """Whether this user may play a call's recordings: their role is at least [recordings] listen
    (daemon/auth/roles.py), and one who sees only their own calls (an operator) only calls they talked in."""
    if not roles.allows(role, "recordings", listen):
        return False
    return roles.allows(role, "team_calls") or (bool(extension) and extension in call_extensions)


def call_extensions(call_uuid: str) -> set[str]:
    """The extensions that talked in the call, and the operators its recordings name (database step)."""
    parties = (CallParty.select(CallParty.extension).join(Call)
               .where((Call.uuid == call_uuid) & CallParty.talked).tuples())
    recorded = Recording.select(Recording.extension).where(Recording.call_uuid == call_uuid).tuples()
    return {ext for (ext,) in [*parties, *recorded] if ext}


@dataclass(frozen=True)
class Playable:
    """A recording a list can offer: its id, call, length, whether its call is held from deletion."""

    id: int
    call_uuid: str
    seconds: float | None
    keep: bool


def playable(call_uuids: list[str], listen: str, role: str, extension: str | None) -> dict[str, list[Playable]]:
    """The recordings of these calls this user may play and that can be played, by call (database step)."""
    if not call_uuids or not may_listen(listen, role, extension, {extension} if extension else set()):
        return {}
    query = (Recording.select(Recording.id, Recording.call_uuid, Recording.seconds, Recording.keep)
             .where(Recording.call_uuid.in_(call_uuids) & Recording.status.in_(PLAYABLE)).order_by(Recording.id))
    if not roles.allows(role, "team_calls"):  # only calls they talked in, or whose recording names them
        talked = (CallParty.select(Call.uuid).join(Call)
                  .where(Call.uuid.in_(call_uuids) & (CallParty.extension == extension) & CallParty.talked))
        query = query.where(Recording.call_uuid.in_(talked) | (Recording.extension == extension))
    out: dict[str, list[Playable]] = {}
    for rec_id, uuid, seconds, keep in query.tuples():
        out.setdefault(uuid, []).append(Playable(rec_id, uuid, seconds, bool(keep)))
    return out


def listing(call_uuid: str) -> list[dict]:
    """A call's recordings as the API gives them (database step)."""
    rows = Recording.select().where(Recording.call_uuid == call_uuid).order_by(Recording.id)
    return [{"id": r.id, "call_uuid": r.call_uuid, "leg_uuid": r.leg_uuid, "party": r.party, "extension": r.extension,
             "fs_path": r.fs_path, "path": r.path, "started_at": _iso(r.started_at), "stopped_at": _iso(r.stopped_at),
             "seconds": r.seconds, "completion_cause": r.completion_cause, "size": r.size, "status": r.status,
             "keep": bool(r.keep), "deleted_at": _iso(r.deleted_at)} for r in rows]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def find(call_uuid: str, rec_id: int) -> tuple[Recording | None, set[str]]:
    """The call's recording rec_id (None if it has none by that id) and the call's extensions (database step)."""
    rec = Recording.get_or_none((Recording.id == rec_id) & (Recording.call_uuid == call_uuid))
    return rec, call_extensions(call_uuid) if rec is not None else set()


def log_listen(rec_id: int, call_uuid: str, token_id: int | None, who: str, role: str) -> None:
    """One listen in the log (database step): who (a person's name and login, or the token), with their token if
    any; the same one playing the same recording again within LISTEN_WINDOW (a reload, a replay) is the same listen."""
    now, who = utcnow(), who[:200]
    same_token = RecordingListen.token.is_null() if token_id is None else RecordingListen.token == token_id
    again = RecordingListen.select().where((RecordingListen.recording == rec_id) & same_token
                                           & (RecordingListen.who == who)
                                           & (RecordingListen.at > now - LISTEN_WINDOW)).exists()
    if not again:
        RecordingListen.create(recording=rec_id, call_uuid=call_uuid, token=token_id, who=who, role=role, at=now)


def listens(limit: int, offset: int) -> list[dict]:
    """The listen log, newest first (database step)."""
    query = (RecordingListen.select(RecordingListen.at, RecordingListen.who, RecordingListen.role, RecordingListen.token,
                                    RecordingListen.call_uuid, Recording.id, Recording.extension, Recording.started_at)
             .join(Recording).order_by(RecordingListen.id.desc()).limit(limit).offset(offset))
    keys = ("at", "who", "role", "token_id", "call_uuid", "recording_id", "extension", "started_at")
    return [dict(zip(keys, row)) for row in query.tuples()]


def _mark(rec_id: int, status: str) -> None:
    Recording.update(status=status, checked_at=utcnow()).where(Recording.id == rec_id).execute()


# ---- the audio ------------------------------------------------------------------------------------------


def audio(rec: Recording, roots: list[str], range_header: str | None, if_range: str | None,
          run: Callable[..., object], listened: Callable[[], None]) -> Response:
    """The recording's file, whole (200) or the one byte range asked (206), with Accept-Ranges, ETag and
    Last-Modified; If-Range that no longer matches gives the whole file; a range that cannot be satisfied or
    is not a byte range gives 416 with Content-Range: bytes */size. listened() is called for a request from the
    start of the file (a player's first request; its seeks ask from later bytes). run: the database worker."""
    if rec.deleted_at is not None:
        raise DataError(410, lazy_gettext("recording %(id)s was deleted on %(deleted_at)s (retention)",
                                          id=rec.id, deleted_at=format(rec.deleted_at, "%Y-%m-%d")))
    real = under_roots(rec.path, roots)
    if real is None:
        log.warning("recording %d of call %s: %s is outside the recording roots (%s); not served", rec.id,
                    rec.call_uuid, rec.path, ", ".join(roots))
        raise DataError(404, lazy_gettext("recording %(id)s: its file is outside the recording folders configured",
                                          id=rec.id))
    try:
        fh, size, mtime = blocking(_open, real)
    except FileNotFoundError:
        log.warning("recording %d of call %s: %s is missing", rec.id, rec.call_uuid, real)
        run(_mark, rec.id, MISSING)
        raise DataError(404, lazy_gettext("recording %(id)s: its file is missing", id=rec.id)) from None
    except OSError as exc:
        log.warning("recording %d of call %s: %s cannot be read (%s)", rec.id, rec.call_uuid, real, exc.strerror or exc)
        run(_mark, rec.id, UNREADABLE)
        raise DataError(404, lazy_gettext("recording %(id)s: its file cannot be read", id=rec.id)) from None
    etag = f'"{size:x}-{int(mtime * 1e6):x}"'
    modified = dt.datetime.fromtimestamp(int(mtime), dt.timezone.utc)
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Last-Modified": format_datetime(modified, usegmt=True),
               "Cache-Control": "private, no-store", "Content-Type": AUDIO_TYPES.get(os.path.splitext(real)[1].lower(),
                                                                                     "application/octet-stream")}
    wanted = range_header if range_header is not None and _if_range_holds(if_range, etag, modified) else None
    try:
        span = byte_range(wanted, size)
    except ValueError:
        fh.close()
        return Response(b"", 416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = span if span is not None else (0, size - 1)
    if start == 0:
        listened()
    status = 206 if span is not None else 200
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    return Response(_read(fh, start, end - start + 1), status, headers=headers, direct_passthrough=True)


def _open(path: str):
    fh = open(path, "rb")
    try:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(21, "not a regular file")
    except OSError:
        fh.close()
        raise
    return fh, st.st_size, st.st_mtime


def _read(fh, start: int, length: int) -> Iterator[bytes]:
    """The bytes asked, in chunks, each read in the thread pool (a network mount may be slow); the file closed at
    the end or when the client goes away."""
    try:
        blocking(fh.seek, start)
        while length > 0:
            chunk = blocking(fh.read, min(CHUNK, length))
            if not chunk:
                return  # the file shrank meanwhile: what is there is all there is
            length -= len(chunk)
            yield chunk
    finally:
        fh.close()


def _if_range_holds(if_range: str | None, etag: str, modified: dt.datetime) -> bool:
    """RFC 9110 13.1.5: no If-Range, or it names the current (strong) ETag, or exactly the Last-Modified date."""
    if not if_range:
        return True
    if_range = if_range.strip()
    if if_range.startswith(('"', "W/")):
        return if_range == etag
    try:
        return parsedate_to_datetime(if_range) == modified
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range a Range header asks of a file of size bytes, as (first, last); None for the whole file
    (no header, or several ranges: served whole, as RFC 9110 allows). ValueError when it cannot be satisfied or is
    not a byte range (-> 416). Numbers of any length are taken: an end past the file is the file's end."""
    if header is None:
        return None
    text = header.strip()
    if len(text) > MAX_RANGE_HEADER:
        raise ValueError("Range header too long")
    if text.startswith("bytes=") and "," in text:
        return None
    match = _RANGE.fullmatch(text.replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        raise ValueError("not a byte range")
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        n = _number(last)
        if n == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    start = _number(first)
    if start >= size:
        raise ValueError("range starts past the end")
    end = size - 1 if last == "" else min(_number(last), size - 1)
    if end < start:
        raise ValueError("range ends before it starts")
    return start, end


def _number(digits: str) -> int:
    """Digits as a number; more than 18 of them is past any file (and past Python's int limit for huge strings)."""
    return int(digits) if len(digits) <= 18 else 10 ** 18


def hold(call_uuid: str, keep: bool) -> int:
    """Hold a call's recordings from deletion or release them (database step); 404 if the call has none."""
    count = hold_rows(call_uuid, keep)
    if not count:
        raise DataError(404, lazy_gettext("call %(call_uuid)s has no recordings", call_uuid=call_uuid))
    return count

