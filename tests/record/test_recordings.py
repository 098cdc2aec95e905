"""Recordings on the record (docs/recordings.md): RECORD_START / RECORD_STOP from the simulator become rows linked to
their calls and operators, with FreeSWITCH's path mapped to the daemon's; the keeper checks the files and deletes
old ones on a clock the test moves."""
from __future__ import annotations

import datetime as dt
import json
import logging
import wave

import pytest

from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import CallTracker
from screenpop.daemon.config import RecordingsConfig
from screenpop.daemon.pbx.protocol import Event
from screenpop.daemon.record.recordings import Keeper, PathMap, file_state, hold, under_roots
from screenpop.db.models import Call, Recording
from screenpop.db.worker import DbWorker
from screenpop.simulator.generator import CallGenerator
from screenpop.simulator.recording import Recorder

from support import CAPTURES, run_calls

FS_DIR = "/var/lib/freeswitch/recordings"


def recordings_section(local: str, **more: str) -> str:
    lines = "".join(f"{k} = {v}\n" for k, v in more.items())
    return f'[recordings]\nroots = []\n[recordings.paths]\n"{FS_DIR}" = "{local}"\n' + lines


def test_generated_calls_recordings_are_linked_to_their_calls_and_operators(tmp_path, db_url, db):
    """Every answered call of every scenario: one recording, on its a-leg, with the operator who first talked,
    the customer's side named, FreeSWITCH's path as sent and the daemon's path where the file really is."""
    rec_dir = tmp_path / "rec"
    expect = tmp_path / "expect.jsonl"
    run_calls(tmp_path, db_url, "--generate", "--calls", "40", "--rate", "40", "--speed", "20", "--seed", "7",
              "--expect", str(expect), "--linger", "0.5", "--record-dir", str(rec_dir), "--record-fs-dir", FS_DIR,
              recordings=recordings_section(str(rec_dir)))
    wanted = [json.loads(line) for line in expect.read_text(encoding="utf-8").splitlines()]
    recorded = [w for w in wanted if "recording" in w]
    assert recorded and len(recorded) == sum(1 for w in wanted if w["call"]["talked"])
    rows = {r.call_uuid: r for r in Recording.select()}
    assert set(rows) == {w["a_leg"] for w in recorded}
    calls = {c.uuid: c for c in Call.select()}
    for w in recorded:
        row = rows[w["a_leg"]]
        call = w["call"]
        assert row.leg_uuid == w["a_leg"] and row.fs_path == w["recording"]
        assert row.path == str(rec_dir / w["recording"][len(FS_DIR) + 1:])
        assert row.status in ("stopped", "ok")  # the keeper checks files every [recordings] check_interval
        assert row.stopped_at is not None and row.stopped_at >= row.started_at
        assert row.completion_cause == "success-silence" and row.seconds > 0
        operator = call["from_extension"] if call["direction"] != "INCOMING" else call["talked"][0]
        assert row.extension == operator, w["scenario"]
        assert row.party == ("customer" if call["direction"] == "INCOMING" else "operator"), w["scenario"]
        assert w["a_leg"] in calls
        with wave.open(row.path) as audio:
            assert audio.getnchannels() == 2 and abs(audio.getnframes() / 8000 - row.seconds) < 0.01


@pytest.mark.parametrize("scenario", ["inbound-answered", "queue", "transfer", "outbound"])
def test_replayed_capture_gets_its_recording(tmp_path, db_url, db, scenario):
    """A real FreeSWITCH capture replayed with --record-dir: the a-leg's recording, linked to the call."""
    rec_dir = tmp_path / "rec"
    run_calls(tmp_path, db_url, "--replay", str(CAPTURES / f"{scenario}.plain.esl"), "--speed", "0", "--linger", "0.3",
              "--record-dir", str(rec_dir), "--record-fs-dir", FS_DIR, timeout=30)
    (call,) = Call.select()
    (row,) = Recording.select()
    assert row.call_uuid == call.uuid and row.leg_uuid == call.uuid
    assert row.extension == (call.from_extension or call.answered_by)
    assert row.fs_path.startswith(FS_DIR + "/") and row.path == row.fs_path  # no mapping configured: as sent
    assert row.stopped_at is not None and row.status == "stopped"  # outside the default root: the check will say so


def test_tracker_links_record_events_of_its_legs_and_ignores_others(tmp_path, caplog):
    """In process: a start and a stop for the call's a-leg; events of unknown or forgotten legs, or without a
    path, change nothing and raise nothing."""
    class Sink:
        def __init__(self):
            self.recordings = []

        def save_call(self, call):
            pass

        def queue_pop(self, *args):
            pass

        def save_recording(self, rec):
            self.recordings.append(rec)

    sink = Sink()
    tracker = CallTracker(DirectionRules(frozenset({"external"}), frozenset({"public"}), lambda n: len(n) == 4), sink)
    tracker.handle(Event({"Event-Name": "RECORD_START", "Unique-ID": "nobody", "Record-File-Path": "/x.wav"}))
    gen = CallGenerator(rate=10, calls=1, seed=1, mix={"inbound_answered": 1}, recorder=Recorder(tmp_path, FS_DIR))
    for ev in gen.events():
        if ev.name == "RECORD_STOP":
            tracker.handle(Event({"Event-Name": "RECORD_STOP", "Unique-ID": ev.get("Unique-ID")}))  # no path
            for ms in ("9" * 30, "-5", "x"):  # a hostile stream's lengths: no crash, no time out of range
                tracker.handle(Event({**dict(ev.items()), "Record-File-Path": "/other.wav", "variable_record_ms": ms}))
        tracker.handle(Event(dict(ev.items())))
    (call,) = gen.records
    start, *nonsense, stop = sink.recordings
    assert [(n.seconds, n.started_at == n.stopped_at) for n in nonsense] == [(None, True), (0.0, True), (None, True)]
    assert (start.call_uuid, start.leg_uuid, start.path) == (call["a_leg"], call["a_leg"], call["recording"])
    assert start.stopped_at is None and start.party == "customer" and start.extension == call["call"]["answered_by"]
    assert stop.stopped_at > start.started_at and stop.seconds > 0 and stop.completion_cause == "success-silence"
    assert abs((stop.started_at - start.started_at).total_seconds()) < 0.01  # a stop alone knows its start too
    assert "without Record-File-Path" in caplog.text
    tracker.handle(Event({"Event-Name": "RECORD_STOP", "Unique-ID": call["a_leg"], "Record-File-Path": "/x.wav"}))
    assert len(sink.recordings) == 5  # the call is over and its legs forgotten


def test_path_map_takes_the_longest_prefix_on_whole_path_parts():
    paths = PathMap({"/var/lib/freeswitch/recordings": "/mnt/a", "/var/lib/freeswitch/recordings/big": "/mnt/b/"})
    assert paths.local("/var/lib/freeswitch/recordings/2026/x.wav") == "/mnt/a/2026/x.wav"
    assert paths.local("/var/lib/freeswitch/recordings/big/x.wav") == "/mnt/b/x.wav"
    assert paths.local("/var/lib/freeswitch/recordingsX/x.wav") == "/var/lib/freeswitch/recordingsX/x.wav"
    assert paths.local("/elsewhere/x.wav") == "/elsewhere/x.wav"


def test_only_files_under_the_roots_are_reachable(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    (root / "a.wav").write_bytes(b"x")
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"x")
    (root / "link.wav").symlink_to(secret)
    roots = [str(root)]
    assert under_roots(str(root / "a.wav"), roots) == str(root / "a.wav")
    for hostile in (str(root / ".." / "secret.wav"), str(root / "link.wav"), str(secret), str(root), "",
                    str(root / "a.wav\x00"), "/etc/passwd", str(root) + "/../../../etc/passwd"):
        assert under_roots(hostile, roots) is None, hostile
    assert under_roots(str(root / "a.wav"), [str(root) + "/"]) is not None
    assert under_roots(str(tmp_path / "recX" / "a.wav"), roots) is None


def _wav(path, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(int(4 * 8000 * seconds)))


def test_file_states(tmp_path):
    roots = [str(tmp_path)]
    good = tmp_path / "good.wav"
    _wav(good)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio")
    whole = good.read_bytes()
    (tmp_path / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "dir.wav").mkdir()
    unreadable = tmp_path / "locked.wav"
    _wav(unreadable)
    unreadable.chmod(0)
    assert file_state(str(good), roots).status == "ok" and file_state(str(good), roots).size == good.stat().st_size
    assert file_state(str(tmp_path / "gone.wav"), roots).status == "missing"
    assert "truncated" in file_state(str(tmp_path / "truncated.wav"), roots).why
    for name in ("empty.wav", "text.wav", "dir.wav", "truncated.wav"):
        assert file_state(str(tmp_path / name), roots).status == "unreadable", name
    if unreadable.stat().st_uid != 0 and not __import__("os").access(unreadable, __import__("os").R_OK):
        assert file_state(str(unreadable), roots).status == "unreadable"
    assert file_state("/etc/hostname", roots).status == "unreadable"  # outside the roots


def _row(call_uuid: str, path, started: dt.datetime, status: str = "stopped") -> Recording:
    return Recording.create(call_uuid=call_uuid, leg_uuid=call_uuid, party="customer", extension="1001",
                            fs_path=str(path), path=str(path), started_at=started, stopped_at=started, status=status)


def test_keeper_checks_files_and_deletes_old_recordings_on_a_controlled_clock(tmp_path, db, caplog):
    """Files checked once stopped (ok, missing, unreadable: logged, never raised); recordings older than keep_days
    deleted with their file and the analysis hook told, unless held; retention off deletes nothing."""
    caplog.set_level(logging.INFO, "screenpop.recordings")
    now = dt.datetime(2026, 6, 1, 12, 0)
    clock = [now]
    root = tmp_path / "rec"
    old, held, fresh = root / "old.wav", root / "held.wav", root / "fresh.wav"
    for path in (old, held, fresh):
        _wav(path)
    (root / "bad.wav").write_text("garbage")
    rows = {
        "old": _row("c-old", old, now - dt.timedelta(days=40)),
        "held": _row("c-held", held, now - dt.timedelta(days=40)),
        "fresh": _row("c-fresh", fresh, now - dt.timedelta(days=2)),
        "missing": _row("c-missing", root / "gone.wav", now - dt.timedelta(days=1)),
        "bad": _row("c-bad", root / "bad.wav", now - dt.timedelta(days=1)),
        "running": _row("c-running", root / "running.wav", now - dt.timedelta(days=90), status="recording"),
        "stop-unseen": _row("c-unseen", old, now - dt.timedelta(hours=1), status="recording"),
    }
    Call.create(uuid="c-unseen", direction="INCOMING", started_at=now - dt.timedelta(hours=1),
                ended_at=now - dt.timedelta(minutes=50))  # ended while the daemon was away: its stop never came
    Call.create(uuid="c-running", direction="INCOMING", started_at=now - dt.timedelta(minutes=1))
    worker = DbWorker(db)
    worker.start()
    forgotten: list[list[int]] = []
    try:
        config = RecordingsConfig(roots=[str(root)], keep_days=0)
        keeper = Keeper(config, worker, forget=[forgotten.append], clock=lambda: clock[0])
        assert keeper.check_once() == 6
        status = {name: Recording.get_by_id(row.id).status for name, row in rows.items()}
        assert status == {"old": "ok", "held": "ok", "fresh": "ok", "missing": "missing", "bad": "unreadable",
                          "running": "recording", "stop-unseen": "ok"}
        assert "its stop was not seen" in caplog.text
        Recording.delete().where(Recording.id == rows.pop("stop-unseen").id).execute()
        assert Recording.get_by_id(rows["old"].id).size == old.stat().st_size
        assert "gone.wav is missing" in caplog.text and "bad.wav is unreadable" in caplog.text
        assert keeper.sweep_once() == 0 and old.exists()  # keep_days 0: retention off
        assert hold("c-held", True) == 1
        config.keep_days = 30
        assert keeper.sweep_once() == 1
        assert not old.exists() and held.exists() and fresh.exists()
        assert forgotten == [[rows["old"].id]]
        gone = Recording.get_by_id(rows["old"].id)
        assert gone.status == "deleted" and gone.deleted_at == now
        clock[0] = now + dt.timedelta(days=29)  # fresh is now 31 days old; missing and bad 30: kept another day
        assert keeper.sweep_once() == 1 and not fresh.exists()
        clock[0] = now + dt.timedelta(days=31)
        assert keeper.sweep_once() == 2  # a missing file is deleted all the same: only its row is left to mark
        assert hold("c-held", False) == 1
        assert keeper.sweep_once() == 1 and not held.exists()
        assert Recording.get_by_id(rows["running"].id).deleted_at is None  # never while still recording
    finally:
        worker.stop()


def test_simulator_writes_one_stereo_file_per_recorded_call(tmp_path):
    recorder = Recorder(tmp_path, FS_DIR)
    gen = CallGenerator(rate=10, calls=20, seed=2, recorder=recorder)
    starts = stops = 0
    for ev in gen.events():
        if ev.name == "RECORD_START":
            starts += 1
            assert ev.get("Record-File-Path").startswith(FS_DIR + "/") and ev.get("variable_RECORD_STEREO") == "true"
        elif ev.name == "RECORD_STOP":
            stops += 1
            assert ev.get("Record-Completion-Cause") == "success-silence" and int(ev.get("variable_record_ms")) > 0
    assert starts == stops == recorder.written == len(list(tmp_path.rglob("*.wav"))) > 0
