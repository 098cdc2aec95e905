"""The conversation pages in process on both databases: a call's figures and transcript, transcript search and
its CSV, phrase alerts (admin), the dashboard's and the record page's lists, the progress endpoint; hostile text
escaped, bad input a 400 (issue 19, parts 2 and 3)."""
from __future__ import annotations

import csv
import datetime as dt
import io
from contextlib import closing

import pytest

from screenpop.daemon.analysis import store
from screenpop.daemon.config import RecordingsConfig
from screenpop.db.models import Call, CallParty, Customer, Employee, PhraseAlert, PhraseMatch, Recording

from support import Api, post_form, signed_in

HOSTILE = '<script>alert("x")</script>'
WHEN = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=1)


class Progress:
    """The analysis worker's status() as the pages get it."""

    def __call__(self) -> dict:
        return {"engine": "pocketsphinx", "queued": 2, "queue_max": 200, "running": 7, "done": 5, "failed": 1,
                "waiting": 3, "matches": 1, "audio_seconds": 12.5, "last_error": "recording 9: file not found",
                "phrases": ["lawyer"]}


@pytest.fixture
def site(db, tmp_path):
    with closing(Api(db, tmp_path)) as api:
        from screenpop.daemon.web.server import create_app

        api.app = create_app(api.hub, None, heartbeat=1.0, analysis=Progress(),
                             recordings=RecordingsConfig(listen="operator"))
        api.client = api.app.test_client()
        anna = Employee.create(name="Anna", extension="1001")
        jon = Customer.create(name=f"Jón {HOSTILE}")
        call = Call.create(uuid="c1", direction="INCOMING", started_at=WHEN, extension="1001", employee=anna,
                           customer=jon, external_number="+3545551234")
        CallParty.create(call=call, extension="1001", role="callee", talked=True)
        Recording.create(call_uuid="c1", leg_uuid="c1", party="customer", extension="1001", fs_path="/rec/c1.wav",
                         path="/rec/c1.wav", started_at=WHEN, status="ok", seconds=9.5)
        result = {"ok": True, "duration": 9.5, "engine": "pocketsphinx", "truncated": False, "metrics": [
            {"side": s, "duration": 9.5, "talk": t, "overtalk": 0.5, "silence": 1.0, "longest_silence": 0.8,
             "spoke_first": s == "operator", "spoke_last": s == "customer", "interruptions": 1}
            for s, t in (("customer", 3.0), ("operator", 4.5))],
            "lines": [{"side": "operator", "start": 0.3, "end": 2.0, "text": "how can i help"},
                      {"side": "customer", "start": 2.5, "end": 4.0, "text": f"i want a refund or my lawyer {HOSTILE}"}]}
        store.save(store.Job(41, "c1", "/rec/c1.wav", "customer"), result, ["lawyer"])
        store.save(store.Job(42, "c1", "/rec/c1-b.wav", "operator"), {"ok": False, "error": "not a PCM WAV file"}, [])
        api.call_id, api.customer_id = call.id, jon.id
        yield api


def test_the_conversation_page(site) -> None:
    browser = signed_in(site.app, site.op)
    r = browser.get(f"/calls/{site.call_id}/conversation")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "media-src 'self'" in r.headers["Content-Security-Policy"]
    assert HOSTILE not in html and "&lt;script&gt;" in html
    assert 'src="/calls/c1/recordings/41"' in html and '<script src="/static/transcript.js">' in html
    assert 'data-start="0.30"' in html and 'data-start="2.50"' in html
    assert "Not analysed: not a PCM WAV file" in html
    assert "“lawyer” (customer at 0:02)" in html
    assert browser.get("/calls/999999/conversation").status_code == 404
    # the calls list and the record link the conversation beside the call's player
    link = f'href="/calls/{site.call_id}/conversation"'
    assert link in browser.get("/calls").get_data(as_text=True)
    assert link in browser.get(f"/customers/{site.customer_id}").get_data(as_text=True)


def test_search_and_csv(site) -> None:
    browser = signed_in(site.app, site.op)
    html = browser.get("/transcripts?q=REFUND&side=customer").get_data(as_text=True)
    assert f'/calls/{site.call_id}/conversation' in html and HOSTILE not in html
    assert "No call where the operator said" in browser.get("/transcripts?q=refund&side=operator").get_data(as_text=True)
    assert browser.get("/transcripts?side=boss&q=x").status_code == 400
    assert browser.get("/transcripts?q=" + "x" * 201).status_code == 400
    r = browser.get("/transcripts.csv?q=refund")
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert r.mimetype == "text/csv" and [row["side"] for row in rows] == ["operator", "customer"]
    assert rows[1]["text"].startswith("i want a refund")
    one = list(csv.DictReader(io.StringIO(browser.get(f"/transcripts.csv?call={site.call_id}").get_data(as_text=True))))
    assert len(one) == 2
    assert browser.get("/transcripts.csv?call=abc").status_code == 400
    assert browser.get("/transcripts.csv").status_code == 400  # every line: an admin's export
    assert len(list(csv.DictReader(io.StringIO(signed_in(site.app, site.admin).get("/transcripts.csv")
                                                .get_data(as_text=True))))) == 2


def test_an_operator_hears_only_their_own_calls(site) -> None:
    """[recordings] listen = "operator": an operator's calls only (the calls they talked in: the recordings' rule)."""
    from screenpop.daemon.auth import tokens

    _, other = tokens.create("1002")
    browser = signed_in(site.app, other)
    html = browser.get(f"/calls/{site.call_id}/conversation").get_data(as_text=True)
    assert "<audio" not in html and "data-start" not in html and "4.5 s" in html
    assert "No call where anyone said" in browser.get("/transcripts?q=refund").get_data(as_text=True)
    assert browser.get(f"/transcripts.csv?call={site.call_id}").get_data(as_text=True).count("\n") == 1  # header
    CallParty.create(call=site.call_id, extension="1002", role="transfer", seq=1, talked=True)
    assert "data-start" in browser.get(f"/calls/{site.call_id}/conversation").get_data(as_text=True)
    assert "refund" in browser.get("/transcripts?q=refund").get_data(as_text=True)


def test_phrase_alerts_are_for_admins(site) -> None:
    op = signed_in(site.app, site.op)
    assert op.get("/alerts").status_code == 403
    admin = signed_in(site.app, site.admin)
    html = admin.get("/alerts").get_data(as_text=True)
    assert "[analysis] phrases in the configuration" in html and "lawyer" in html
    assert post_form(admin, "/alerts", {"phrase": "  cancel   my contract ", "side": "customer"}).status_code == 303
    assert PhraseAlert.get().phrase == "cancel my contract"
    bad = post_form(admin, "/alerts", {"phrase": "Cancel my contract", "side": ""})
    assert bad.status_code == 400 and "exists already" in bad.get_data(as_text=True)
    assert post_form(admin, "/alerts", {"phrase": "x", "side": "boss"}).status_code == 400
    assert post_form(admin, "/alerts", {"phrase": "!!!", "side": ""}).status_code == 400
    assert admin.post("/alerts", data={"phrase": "no csrf"}).status_code == 403
    alert = PhraseAlert.get()
    assert post_form(admin, f"/alerts/{alert.id}/delete", {}).status_code == 303
    assert post_form(admin, f"/alerts/{alert.id}/delete", {}).status_code == 404
    assert PhraseMatch.select().count() == 1  # the configuration's "lawyer" match stays


def test_dashboard_and_record_list_the_matches(site) -> None:
    html = signed_in(site.app, site.admin).get("/dashboard").get_data(as_text=True)
    assert "Analysis (pocketsphinx): 5 recording(s) analysed since the daemon started" in html
    assert "5 waiting" in html and "Last failure: recording 9: file not found" in html
    assert "lawyer" in html and f"/calls/{site.call_id}/conversation" in html
    record = signed_in(site.app, site.op).get(f"/customers/{site.customer_id}").get_data(as_text=True)
    assert "Phrase alerts" in record and "lawyer" in record and HOSTILE not in record


def test_progress_endpoint(site) -> None:
    status, body = site.req("GET", "/api/v1/analysis")
    assert status == 200 and body["done"] == 5 and body["waiting"] == 3 and "failures" not in body
    status, body = site.req("GET", "/api/v1/analysis", token="admin")
    assert body["failures"][0]["error"] == "not a PCM WAV file"
    assert site.req("GET", "/api/v1/analysis", token=None)[0] == 401


def test_who_may_not_listen_reads_no_transcript(site) -> None:
    """[recordings] listen = "admin": an operator sees a call's figures, not its player, transcript or matched lines."""
    from screenpop.daemon.web.server import create_app

    site.app = create_app(site.hub, None, heartbeat=1.0, analysis=Progress(), recordings=RecordingsConfig(listen="admin"))
    op = signed_in(site.app, site.op)
    html = op.get(f"/calls/{site.call_id}/conversation").get_data(as_text=True)
    assert "<audio" not in html and "data-start" not in html and "4.5 s" in html
    assert op.get("/transcripts?q=refund").status_code == 403
    assert op.get(f"/transcripts.csv?call={site.call_id}").status_code == 403
    assert "i want a refund" not in op.get(f"/customers/{site.customer_id}").get_data(as_text=True)
    admin = signed_in(site.app, site.admin)
    assert "data-start" in admin.get(f"/calls/{site.call_id}/conversation").get_data(as_text=True)
