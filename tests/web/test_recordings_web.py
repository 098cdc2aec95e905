"""Recordings over HTTP (docs/recordings.md): byte ranges (206, Content-Range, If-Range, 416 for bad or huge ranges),
a missing file's 404 with a message, only files under the recording roots, who may listen, the listen log, holding
a call from deletion; the player on the calls list and the record page."""
from __future__ import annotations

import datetime as dt
import wave
from contextlib import closing

import pytest

from screenpop.daemon.auth import tokens
from screenpop.daemon.config import RecordingsConfig
from screenpop.daemon.web.recordings import byte_range
from screenpop.db.models import Call, CallParty, Customer, Recording, RecordingListen

from support import HubApp, post_form, signed_in

A, B = "0b8e4b4e-0000-4000-8000-00000000000a", "0b8e4b4e-0000-4000-8000-00000000000b"


class Rig(HubApp):
    """The daemon's app over a database with two recorded calls: A (1001 talked, customer's) and B (1002 talked)."""

    def __init__(self, db, tmp_path, listen: str = "admin") -> None:
        self.root = tmp_path / "rec"
        self.config = RecordingsConfig(roots=[str(self.root)], listen=listen)
        super().__init__(db, tmp_path / "photos", recordings=self.config)
        _, self.op = tokens.create("1001", name="Operator 1001")
        _, self.other = tokens.create("1002")
        _, self.admin = tokens.create(None, role="admin", name="boss")
        _, self.manager = tokens.create(None, role="manager")
        self.customer = Customer.create(name="Anna")
        self.rec = {uuid: self.recorded(uuid, ext) for uuid, ext in ((A, "1001"), (B, "1002"))}
        self.client = self.app.test_client()

    def recorded(self, uuid: str, ext: str) -> Recording:
        started = dt.datetime(2026, 12, 1, 10, 0)
        call = Call.create(uuid=uuid, direction="INCOMING", external_number="+3545551234", customer=self.customer,
                           started_at=started, answered_by=ext, extension=ext, talk_seconds=2.0)
        CallParty.create(call=call, extension=ext, role="callee", talked=True, outcome="answered")
        path = self.root / f"{uuid}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(bytes(range(256)) * 250)  # 64000 bytes of audio: 2 s
        return Recording.create(call_uuid=uuid, leg_uuid=uuid, party="customer", extension=ext, fs_path=str(path),
                                path=str(path), started_at=started, stopped_at=started, seconds=2.0, status="ok",
                                size=path.stat().st_size)

    def get(self, path: str, token: str = "admin", **headers: str):
        return self.client.get(path, headers={"Authorization": f"Bearer {getattr(self, token)}", **headers})

    def audio(self, uuid: str = A, token: str = "admin", **headers: str):
        return self.get(f"/api/v1/calls/{uuid}/recordings/{self.rec[uuid].id}/audio", token, **headers)


@pytest.fixture
def rig(db, tmp_path):
    with closing(Rig(db, tmp_path)) as r:
        yield r


def test_ranges_are_served_exactly(rig):
    whole = (rig.root / f"{A}.wav").read_bytes()
    size = len(whole)
    r = rig.audio()
    assert r.status_code == 200 and r.data == whole and r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Content-Type"] == "audio/wav" and r.headers["Content-Length"] == str(size)
    etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    for header, (first, last) in {"bytes=0-99": (0, 99), "bytes=100-": (100, size - 1), "bytes=-10": (size - 10, size - 1),
                                  "bytes=1000-1000": (1000, 1000), "bytes=60000-99999999": (60000, size - 1),
                                  "bytes=0-" + "9" * 150: (0, size - 1), "bytes=-" + "9" * 30: (0, size - 1)}.items():
        r = rig.audio(Range=header)
        assert r.status_code == 206, header
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/{size}", header
        assert r.data == whole[first:last + 1] and r.headers["Content-Length"] == str(last - first + 1), header
    assert rig.audio(Range="bytes=0-9", **{"If-Range": etag}).status_code == 206
    assert rig.audio(Range="bytes=0-9", **{"If-Range": modified}).status_code == 206
    stale = rig.audio(Range="bytes=0-9", **{"If-Range": '"0-0"'})
    assert stale.status_code == 200 and stale.data == whole  # the file changed since: the whole new one
    assert rig.audio(Range="bytes=0-9", **{"If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200
    assert rig.audio(Range="bytes=0-1,5-9").status_code == 200  # several ranges: the whole file (RFC 9110 allows)


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=5-2", "items=0-9", "bytes=-0", "bytes=", "bytes=--1",
                                    "bytes=99999999-", "bytes=" + "9" * 25 + "-", "bytes=" + " " * 300 + "0-9", "0-9",
                                    "bytes=0-" + "9" * 400])
def test_bad_and_unsatisfiable_ranges_are_416(rig, header):
    size = rig.rec[A].size
    r = rig.audio(Range=header)
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}" and r.data == b""


def test_byte_range_rules():
    assert byte_range(None, 10) is None
    assert byte_range("bytes=0-0", 10) == (0, 0)
    assert byte_range("bytes=9-", 10) == (9, 9)
    assert byte_range("bytes=-100", 10) == (0, 9)
    for bad in ("bytes=10-", "bytes=0-", "bytes=-1"):
        with pytest.raises(ValueError):
            byte_range(bad, 0 if bad != "bytes=10-" else 10)


def test_missing_deleted_and_outside_files_are_404_or_410_with_a_message(rig, tmp_path, caplog):
    (rig.root / f"{A}.wav").unlink()
    r = rig.audio()
    assert r.status_code == 404 and r.get_json() == {"error": f"recording {rig.rec[A].id}: its file is missing"}
    assert Recording.get_by_id(rig.rec[A].id).status == "missing" and "is missing" in caplog.text
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF....WAVE top secret")
    (rig.root / "link.wav").symlink_to(secret)
    for hostile in (str(secret), str(rig.root / ".." / "secret.wav"), str(rig.root / "link.wav"), "/etc/passwd",
                    str(rig.root)):
        Recording.update(path=hostile, status="ok").where(Recording.id == rig.rec[B].id).execute()
        r = rig.audio(B)
        assert r.status_code == 404 and b"top secret" not in r.data and b"root:" not in r.data, hostile
        assert "outside the recording folders" in r.get_json()["error"]
    Recording.update(deleted_at=dt.datetime(2026, 12, 5)).where(Recording.id == rig.rec[B].id).execute()
    assert rig.audio(B).status_code == 410
    assert rig.get(f"/api/v1/calls/{A}/recordings/999999/audio").status_code == 404
    assert rig.get(f"/api/v1/calls/{B}/recordings/{rig.rec[A].id}/audio").status_code == 404  # not this call's
    assert rig.get("/api/v1/calls/..%2F..%2Fetc/recordings/1/audio").status_code == 404


def test_who_may_listen_follows_the_configuration(rig):
    assert rig.audio(token="op").status_code == 403  # listen = "admin"
    assert rig.audio(token="manager").status_code == 403
    rig.config.listen = "manager"
    assert rig.audio(A, token="manager").status_code == 200 and rig.audio(B, token="manager").status_code == 200
    assert rig.audio(token="op").status_code == 403
    rig.config.listen = "operator"
    assert rig.audio(A, token="op").status_code == 200  # 1001 talked in call A
    assert rig.audio(B, token="op").status_code == 403  # ... not in B
    assert rig.audio(B, token="other").status_code == 200
    assert rig.get(f"/api/v1/calls/{B}/recordings", "op").status_code == 403
    listed = rig.get(f"/api/v1/calls/{A}/recordings", "op").get_json()["recordings"]
    assert [(r["id"], r["status"], r["party"], r["extension"]) for r in listed] == [(rig.rec[A].id, "ok", "customer", "1001")]
    assert rig.client.get(f"/api/v1/calls/{A}/recordings/{rig.rec[A].id}/audio").status_code == 401


def test_every_listen_is_logged_once_and_admins_read_the_log(rig):
    rig.audio(Range="bytes=0-")
    rig.audio(Range="bytes=30000-")  # a seek within the same listen
    rig.audio()  # the player loading it again within ten minutes: the same listen
    rig.audio(B)
    rig.config.listen = "operator"
    rig.audio(token="op")
    log = list(RecordingListen.select().order_by(RecordingListen.id))
    assert [(entry.call_uuid, entry.role, entry.who) for entry in log] == [
        (A, "admin", f"token {log[0].token_id}"), (B, "admin", f"token {log[0].token_id}"),
        (A, "operator", f"token {log[2].token_id} (1001)")]
    browser = signed_in(rig.app, rig.admin)
    page = browser.get("/admin/listens").get_data(as_text=True)
    assert A in page and B in page and "token" in page and "operator" in page
    assert f"<td>{rig.rec[A].id}</td>" in page and f"<td>{rig.rec[B].id}</td>" in page
    assert signed_in(rig.app, rig.op).get("/admin/listens").status_code == 403


def test_holding_a_call_from_deletion(rig):
    def put(uuid, body, token="admin"):
        return rig.client.put(f"/api/v1/calls/{uuid}/hold", json=body,
                              headers={"Authorization": f"Bearer {getattr(rig, token)}"})

    r = put(A, {"keep": True})
    assert r.status_code == 200 and r.get_json() == {"call_uuid": A, "keep": True, "recordings": 1}
    assert Recording.get_by_id(rig.rec[A].id).keep
    assert put(A, {"keep": True}, "op").status_code == 403
    assert put(B, {"keep": False}, "manager").status_code == 200
    assert put(A, {"keep": "yes"}).status_code == 400
    assert put(A, {"keep": True, "more": 1}).status_code == 400
    assert put("0b8e4b4e-0000-4000-8000-0000000000ff", {"keep": True}).status_code == 404
    assert put("not a uuid", {"keep": True}).status_code == 404
    browser = signed_in(rig.app, rig.admin)
    page = browser.get(f"/customers/{rig.customer.id}").get_data(as_text=True)
    assert "Release" in page and "held" in page  # A is held; B offers Hold
    assert post_form(browser, f"/calls/{A}/hold", {"keep": "0", "next": "/calls"}).status_code == 303
    assert not Recording.get_by_id(rig.rec[A].id).keep
    operator = signed_in(rig.app, rig.op)
    assert post_form(operator, f"/calls/{B}/hold", {"keep": "1"}).status_code == 403
    assert not Recording.get_by_id(rig.rec[B].id).keep


def test_players_on_the_calls_list_and_the_record_page(rig):
    admin = signed_in(rig.app, rig.admin)
    calls = admin.get("/calls").get_data(as_text=True)
    for uuid in (A, B):
        assert f'src="/calls/{uuid}/recordings/{rig.rec[uuid].id}"' in calls
    record = admin.get(f"/customers/{rig.customer.id}").get_data(as_text=True)
    assert record.count("<audio") == 2 and "Hold" in record
    r = admin.get(f"/calls/{A}/recordings/{rig.rec[A].id}", headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.data == b"RIFF" and "media-src 'self'" in r.headers["Content-Security-Policy"]
    assert "media-src 'self'" in admin.get("/calls").headers["Content-Security-Policy"]
    operator = signed_in(rig.app, rig.op)
    assert "<audio" not in operator.get("/calls").get_data(as_text=True)  # listen = "admin"
    assert operator.get(f"/calls/{A}/recordings/{rig.rec[A].id}").status_code == 403
    rig.config.listen = "operator"
    mine = operator.get("/calls").get_data(as_text=True)
    assert f"/calls/{A}/recordings/" in mine and f"/calls/{B}/recordings/" not in mine and "Hold" not in mine
    missing = admin.get(f"/calls/{A}/recordings/999999")
    assert missing.status_code == 404 and "has no recording 999999" in missing.get_data(as_text=True)
