"""Call recordings on disk (docs/recordings.md): where a file FreeSWITCH wrote is found here (the path mapping),
which files may be served (only under the recording roots), each file's state, and the keeper: the greenlet that
checks stopped recordings' files and deletes recordings older than [recordings] keep_days (retention).

File I/O (stat, open, unlink) runs in gevent's thread pool, so a slow or hung network mount never blocks the
hub; database steps run on the database worker. A missing or unreadable file is a status and a log line, never
an exception out of here.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import gevent
import gevent.event
import peewee

from screenpop.daemon.config import RecordingsConfig
from screenpop.db.models import Call, Recording, utcnow
from screenpop.db.worker import DbWorker

log = logging.getLogger("screenpop.recordings")

BATCH = 500  # rows checked or deleted per database step
STOP_LATE = dt.timedelta(minutes=2)  # a call over this long with its recording not stopped: the stop was not seen
OK, MISSING, UNREADABLE, STOPPED, DELETED = "ok", "missing", "unreadable", "stopped", "deleted"


class PathMap:
    """FreeSWITCH's path prefixes to the daemon's ([recordings] paths), longest prefix first, on whole path parts."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self.pairs = sorted(((fs.rstrip("/") or "/", local.rstrip("/") or "/") for fs, local in paths.items()),
                            key=lambda pair: -len(pair[0]))

    def local(self, fs_path: str) -> str:
        """Where the daemon finds the file FreeSWITCH wrote at fs_path (fs_path itself when no mapping applies)."""
        for fs, local in self.pairs:
            if fs_path == fs or fs_path.startswith(fs if fs == "/" else fs + "/"):
                rest = fs_path[len(fs):].lstrip("/")
                return f"{local.rstrip('/')}/{rest}" if rest else local
        return fs_path


def under_roots(path: str, roots: Iterable[str]) -> str | None:
    """The file's real path (symlinks and '..' resolved) if it lies inside one of the roots, else None: nothing
    outside the configured recording folders is ever read or served, whatever a path stored in the database says."""
    if not path or "\x00" in path:
        return None
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real.startswith(base.rstrip("/") + "/"):
            return real
    return None


@dataclass(frozen=True)
class FileState:
    """What a recording's file turned out to be: ok, missing or unreadable; its size; why, in words."""

    status: str
    size: int | None = None
    why: str = ""


def file_state(path: str, roots: Sequence[str]) -> FileState:
    """Check one recording file (blocking: call it in the thread pool): inside the roots, a regular file that
    opens, and a WAV file's RIFF/WAVE header where the name says WAV."""
    real = under_roots(path, roots)
    if real is None:
        return FileState(UNREADABLE, None, f"outside the recording roots ({', '.join(roots) or 'none configured'})")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return FileState(MISSING, None, "no such file")
    except OSError as exc:
        return FileState(UNREADABLE, None, exc.strerror or str(exc))
    if not stat.S_ISREG(st.st_mode):
        return FileState(UNREADABLE, None, "not a regular file")
    try:
        with open(real, "rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        return FileState(UNREADABLE, st.st_size, exc.strerror or str(exc))
    if real.lower().endswith(".wav"):
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return FileState(UNREADABLE, st.st_size, "not a WAV file (no RIFF/WAVE header)")
        riff = int.from_bytes(head[4:8], "little")
        if riff != 0xFFFFFFFF and riff + 8 > st.st_size:  # all ones: a writer that never knew the length
            return FileState(UNREADABLE, st.st_size, f"truncated: its header says {riff + 8} bytes, it has {st.st_size}")
    return FileState(OK, st.st_size)


def blocking(fn: Callable, *args):
    """fn(*args) in gevent's thread pool: file system calls that may hang (a network mount) off the hub."""
    return gevent.get_hub().threadpool.apply(fn, args)


def _remove(path: str, roots: Sequence[str]) -> str:
    """Delete one recording file (blocking); '' when it is gone (or was already), else why it could not be."""
    real = under_roots(path, roots)
    if real is None:
        return "outside the recording roots: not deleted"
    try:
        os.unlink(real)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


# ---- database steps (run on the database worker) ---------------------------------------------------------


def _stopped_rows(late: dt.datetime) -> list[tuple[int, str, str, str]]:
    """Recordings stopped and not checked yet, and those still 'recording' of calls that ended before late (their
    RECORD_STOP was never seen: the daemon was away)."""
    ended = Call.select(Call.uuid).where(Call.ended_at < late)
    query = (Recording.select(Recording.id, Recording.path, Recording.call_uuid, Recording.status)
             .where((Recording.status == STOPPED) | ((Recording.status == "recording") & Recording.call_uuid.in_(ended)))
             .order_by(Recording.id).limit(BATCH))
    return list(query.tuples())


def _set_state(states: list[tuple[int, FileState]], now: dt.datetime) -> None:
    for rec_id, state in states:
        Recording.update(status=state.status, size=state.size, checked_at=now).where(Recording.id == rec_id).execute()


def _expired_rows(cutoff: dt.datetime) -> list[tuple[int, str, str]]:
    query = (Recording.select(Recording.id, Recording.path, Recording.call_uuid)
             .where((Recording.started_at < cutoff) & ~Recording.keep & Recording.deleted_at.is_null()
                    & (Recording.status != "recording"))
             .order_by(Recording.id).limit(BATCH))
    return list(query.tuples())


def hold(call_uuid: str, keep: bool) -> int:
    """Hold a call's recordings from deletion, or release them; how many recordings the call has."""
    Recording.update(keep=keep).where(Recording.call_uuid == call_uuid).execute()
    return Recording.select().where(Recording.call_uuid == call_uuid).count()


class Keeper:
    """The recordings' greenlet: every check_interval the files of recordings stopped since are checked (status
    ok, missing or unreadable, with their size; also a recording whose call ended STOP_LATE ago without its stop); every sweep_interval recordings older than keep_days that are
    not held are deleted, file and analysis (the `forget` hooks, given the ids, on the database worker, in the
    transaction that marks the rows deleted). clock: naive UTC now (tests move it)."""

    def __init__(self, config: RecordingsConfig, worker: DbWorker, *,
                 forget: Sequence[Callable[[list[int]], None]] = (), clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.config = config
        self.worker = worker
        self.forget = list(forget)
        self.clock = clock
        self.roots = config.served_roots()

    def check_once(self) -> int:
        """Check the files of the recordings stopped and not yet checked; how many were checked."""
        rows = self.worker.run(_stopped_rows, self.clock() - STOP_LATE)
        states = []
        for rec_id, path, call_uuid, status in rows:
            if status != STOPPED:
                log.info("recording %d of call %s: its stop was not seen (the call ended while the daemon was away); "
                         "its file is checked as it is", rec_id, call_uuid)
            state = blocking(file_state, path, self.roots)
            if state.status != OK:
                log.warning("recording %d of call %s: %s is %s (%s)", rec_id, call_uuid, path, state.status, state.why)
            states.append((rec_id, state))
        if states:
            self.worker.atomic(_set_state, states, self.clock())
        return len(states)

    def sweep_once(self) -> int:
        """Delete the recordings older than keep_days that are not held; how many were deleted (0: retention off)."""
        if not self.config.keep_days:
            return 0
        now = self.clock()
        cutoff = now - dt.timedelta(days=self.config.keep_days)
        deleted = 0
        while True:
            rows = self.worker.run(_expired_rows, cutoff)
            if not rows:
                return deleted
            ids = []
            for rec_id, path, call_uuid in rows:
                why = blocking(_remove, path, self.roots)
                if why:
                    log.warning("recording %d of call %s: %s not deleted (%s); its row is marked deleted all the same",
                                rec_id, call_uuid, path, why)
                ids.append(rec_id)
            self.worker.atomic(self._mark_deleted, ids, now)
            deleted += len(ids)
            log.info("%d recording(s) older than %d days deleted", len(ids), self.config.keep_days)

    def _mark_deleted(self, ids: list[int], now: dt.datetime) -> None:
        for hook in self.forget:
            hook(ids)
        Recording.update(deleted_at=now, status=DELETED).where(Recording.id.in_(ids)).execute()

    def run(self, stopped: gevent.event.Event) -> None:
        """Check and sweep until stopped; a database or file error costs one round, never the greenlet."""
        next_sweep = 0.0
        elapsed = 0.0
        while not stopped.wait(self.config.check_interval):
            elapsed += self.config.check_interval
            try:
                self.check_once()
                if elapsed >= next_sweep:
                    next_sweep = elapsed + self.config.sweep_interval
                    self.sweep_once()
            except (peewee.DatabaseError, OSError) as exc:
                log.warning("recordings not checked this round: %s", exc)
