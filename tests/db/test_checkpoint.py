"""SQLite's WAL checkpoints off the event loop (db/checkpoint.py): never inside a commit, run on a native thread,
and the WAL started again from its beginning even under a writer that never pauses."""
from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import gevent

from screenpop.db import checkpoint
from screenpop.db.checkpoint import Checkpointer
from screenpop.db.database import open_database
from screenpop.db.worker import DbWorker

ROW = 2000  # bytes a row: a transaction of 20 rows is ~10 pages


def _open(tmp_path: Path):
    db = open_database(f"sqlite:///{tmp_path / 'wal.db'}")
    db.execute_sql("CREATE TABLE t (x BLOB)")
    return db


def _write(db, transactions: int, tick=None) -> None:
    """Transactions of 20 rows from a greenlet of its own (a connection of its own, as the daemon's writer has)."""
    def writer():
        for _ in range(transactions):
            with db.atomic():
                for _ in range(20):
                    db.execute_sql("INSERT INTO t VALUES (randomblob(?))", (ROW,))
            if tick is not None:
                tick()
            gevent.sleep(0)
    gevent.spawn(writer).get(timeout=120)


def _wal_frames(path: Path) -> int:
    """Frames in the WAL now, as a fresh connection's no-op checkpoint counts them (it copies what it can)."""
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


def test_commits_no_longer_checkpoint(tmp_path):
    """Past SQLite's 1000-page threshold, no commit of the daemon's connections copies the WAL back (they would
    stop the event loop for it): the WAL holds every page written."""
    db = _open(tmp_path)
    Checkpointer(db)
    _write(db, 300)  # ~3000 pages
    assert db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    with sqlite3.connect(tmp_path / "wal.db") as conn:
        assert conn.execute("PRAGMA wal_checkpoint(NOOP)").fetchone()[1] > 2000  # not copied, not restarted
    db.close()


def test_wal_starts_again_under_a_writer_that_never_pauses(tmp_path, monkeypatch):
    """A writer ticking after every transaction: the checkpoints run on a pool thread, never the loop's, and the
    WAL stays a few intervals' worth of pages however long the writer goes on; every row is there."""
    db = _open(tmp_path)
    ckpt = Checkpointer(db, interval=0.05)
    threads, sizes = set(), []
    run = ckpt._checkpoint

    def traced(mode):
        threads.add(threading.get_ident())
        if mode == "PASSIVE":
            sizes.append(_wal_frames(tmp_path / "wal.db"))  # what the WAL holds when a round starts
        return run(mode)

    monkeypatch.setattr(ckpt, "_checkpoint", traced)
    _write(db, 1500, ckpt.tick)  # ~15000 pages
    ckpt.stop()
    assert threads and threading.get_ident() not in threads
    assert len(sizes) >= 4
    assert max(sizes[2:]) < 10000  # restarted each time: without the second pass it would count every page written
    assert db.execute_sql("SELECT count(*) FROM t").fetchone()[0] == 1500 * 20
    db.close()


def test_a_failing_checkpoint_is_logged_once_and_retried(tmp_path, monkeypatch, caplog):
    db = _open(tmp_path)
    ckpt = Checkpointer(db, interval=0.0)
    failing = [True]
    run = ckpt._checkpoint

    def flaky(mode):
        return sqlite3.OperationalError("disk I/O error") if failing[0] else run(mode)

    monkeypatch.setattr(ckpt, "_checkpoint", flaky)
    caplog.set_level(logging.INFO, logger=checkpoint.log.name)
    def tick_when_done():  # the writer ticks until the pass it started has run
        ckpt.tick()
        if ckpt._pass is not None:
            ckpt._pass.wait(10)

    _write(db, 30, tick_when_done)
    failing[0] = False
    _write(db, 30, tick_when_done)
    ckpt.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed (disk I/O error)" in m for m in messages) == 1, messages
    assert sum("work again" in m for m in messages) == 1, messages
    assert db.execute_sql("SELECT count(*) FROM t").fetchone()[0] == 60 * 20
    db.close()


def _read_then_write(db, n: int) -> None:
    """A web step's shape (store a CDR leg unless it is there): a read, then a write, in one transaction."""
    if not db.execute_sql("SELECT 1 FROM t WHERE rowid = ?", (-n,)).fetchone():
        db.execute_sql("INSERT INTO t VALUES (randomblob(?))", (ROW,))


def test_the_database_workers_steps_never_meet_a_checkpoint_holding_the_writer_lock(tmp_path):
    """While the writer's RESTART checkpoint runs on its thread it holds SQLite's writer lock, and a transaction that
    read first fails at once when it writes (no busy wait for an upgrade): POST /api/v1/cdr answered 503 "database is
    locked" at 30 calls/s. The worker starts no step while one runs."""
    db = _open(tmp_path)
    ckpt = Checkpointer(db, interval=0.0)
    worker = DbWorker(db, ckpt.quiet)
    worker.start()
    seen_clear = []
    run = ckpt._checkpoint

    def traced(mode):
        seen_clear.append(mode == "RESTART" and not ckpt.quiet.is_set())
        return run(mode)

    ckpt._checkpoint = traced
    steps = gevent.spawn(lambda: [worker.atomic(_read_then_write, db, n) for n in range(400)])
    _write(db, 400, ckpt.tick)
    steps.get(timeout=120)
    worker.stop()
    ckpt.stop()
    assert any(seen_clear), "the RESTART checkpoints ran with the worker held off"
    assert ckpt.quiet.is_set()
    assert db.execute_sql("SELECT count(*) FROM t").fetchone()[0] == 400 * 20 + 400
    db.close()


def test_a_step_refused_while_another_connection_writes_runs_again_without_stopping_the_loop(tmp_path):
    """Another process writing (`screenpop import`) holds the writer lock: the worker's read-then-write step is
    refused at once, rolled back, and run again after pauses in which the loop goes on, until the lock is free."""
    db = _open(tmp_path)
    worker = DbWorker(db)
    worker.start()
    other = sqlite3.connect(tmp_path / "wal.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (x'00')")
    ticks = []

    def tick() -> None:
        while True:
            gevent.sleep(0.01)
            ticks.append(1)

    ticker = gevent.spawn(tick)
    gevent.spawn_later(0.5, other.execute, "COMMIT")
    worker.atomic(_read_then_write, db, 1)
    ticker.kill()
    worker.stop()
    assert len(ticks) >= 5, "the loop ran while the step waited (a blocked loop ticks once at most)"
    assert db.execute_sql("SELECT count(*) FROM t").fetchone()[0] == 2
    other.close()
    db.close()
