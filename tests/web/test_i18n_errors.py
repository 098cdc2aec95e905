"""Refusals in the reader's language (issue 18, docs/i18n.md): real bad requests against the daemon's HTTP app with
Accept-Language: is get the Icelandic message, with no English message left in it, on SQLite and PostgreSQL; the
API without Accept-Language speaks [i18n] default_language; a CSV import's row errors follow the language of whoever
reads the report."""
from __future__ import annotations

import io
import re
from contextlib import closing

import pytest
from babel.messages.pofile import read_po
from PIL import Image

from screenpop.daemon import i18n
from screenpop.daemon.config import WebConfig
from screenpop.daemon.customers import importer
from screenpop.db.models import Customer

from support import ROOT, RULES, Api, HubApp, signed_in

IS = {"Accept-Language": "is-IS,is;q=0.9"}
EN = {"Accept-Language": "en"}


def _english_fragments() -> set[str]:
    """The fixed words of every translated message (its text between placeholders, 12 characters or more), each
    left out where its Icelandic translation says the same (API keys, URLs): what an Icelandic refusal must not hold."""
    with (ROOT / "daemon/locale/is/LC_MESSAGES/screenpop.po").open("rb") as fh:
        catalog = read_po(fh)
    out = set()
    for message in catalog:
        if isinstance(message.id, str) and message.id and message.string != message.id:
            out |= {part.strip() for part in re.split(r"%\(\w+\)[sdr]", message.id)
                    if len(part.strip()) >= 12 and part.strip() not in message.string}
    return out


ENGLISH = _english_fragments()


def icelandic(text: str, expected: str) -> None:
    """text is expected (the Icelandic message), and holds no English message's words."""
    assert text == expected
    left = [fragment for fragment in ENGLISH if fragment in text]
    assert not left, (text, left)


@pytest.fixture
def api(db, tmp_path):
    with closing(Api(db, tmp_path)) as a:
        yield a


def test_api_refusals_in_icelandic(api):
    """Each kind of refusal the API gives, asked for in Icelandic; the same request in English for comparison."""
    customer = Customer.create(name="Þórður")
    requests = [
        (("POST", "/api/v1/customers"), {"raw": b'{"name": ', "headers": {"Content-Type": "application/json"}},
         400, "meginmálið er ekki gilt JSON", "the body is not valid JSON"),
        (("GET", "/api/v1/customers?limit=501"), {}, 400, "limit: verður að vera á milli 1 og 500",
         "limit: must be between 1 and 500"),
        (("POST", f"/api/v1/customers/{customer.id}/phones"), {"body": {"number": "hringdu"}}, 400,
         "phone: 'hringdu' er ekki símanúmer sem hægt er að rita á E.164-sniði",
         "phone: 'hringdu' is not a phone number that can be made E.164"),
        (("POST", "/api/v1/customers"), {"body": {"name": "Jón", "phones": ["1001"]}}, 400,
         "phones[0]: '1001' er innanhússnúmer", "phones[0]: '1001' is an internal extension"),
        (("GET", "/api/v1/customers/999999"), {}, 404, "enginn viðskiptavinur 999999", "no customer 999999"),
        (("GET", "/api/v1/customers"), {"token": "not-a-token"}, 401, "ógildur aðgangslykill", "invalid token"),
        (("GET", "/api/v1/customers"), {"token": None}, 401, "aðgangslykil (Bearer) vantar", "missing bearer token"),
        (("GET", "/api/v1/events?extension=1002"), {}, 403,
         "aðgangslykill þjónustufulltrúa sér aðeins eigið innanhússnúmer", "an operator token sees only its own extension"),
        (("GET", "/api/v1/events"), {"token": "not-a-token"}, 401, "ógildur aðgangslykill", "invalid token"),
        (("PUT", "/api/v1/layouts/sala"), {"body": {"items": "nafn"}, "token": "admin"}, 400,
         'items: verður að vera listi af {"field": lykill, "style": "plain"|"strong"|"warning"}',
         'items: must be a list of {"field": key, "style": "plain"|"strong"|"warning"}'),
        (("PUT", "/api/v1/layouts/sala"), {"body": {"items": [{"field": "note"}]}}, 403,
         "Til að breyta útliti spjalds þarf aðgangslykil með hlutverk sem leyfir þetta: stillingasíðurnar (kerfisstjóri)",
         "changing a card layout needs a token whose role allows the configuration pages (admin)"),
        (("PATCH", f"/api/v1/customers/{customer.id}"), {"body": {"nafn": "x"}}, 400,
         "óþekktir reitir: nafn", "unknown field(s): nafn"),
        (("GET", "/api/v1/nowhere"), {}, 404, "fannst ekki", "not found"),
    ]
    for (method, path), kwargs, status, said_is, said_en in requests:
        kwargs = {"token": "op", **kwargs}
        headers = kwargs.pop("headers", {})
        s, r = api.req(method, path, headers={**headers, **IS}, **kwargs)
        assert s == status, (path, s, r)
        icelandic(r["error"], said_is)
        s, r = api.req(method, path, headers={**headers, **EN}, **kwargs)
        assert (s, r["error"]) == (status, said_en), path


def test_a_refusal_listing_several_things_in_icelandic(api):
    """A message made of several lazy ones (the extensions taken by other teams) is translated whole."""
    assert api.req("PUT", "/api/v1/layouts/sala", {"items": [{"field": "note"}]}, token="admin")[0] == 201
    assert api.req("PUT", "/api/v1/teams/t1", {"layout": "sala", "extensions": ["1001"]}, token="admin")[0] == 201
    s, r = api.req("PUT", "/api/v1/teams/t2", {"layout": "sala", "extensions": ["1001"]}, token="admin", headers=IS)
    assert s == 409
    icelandic(r["error"], "extensions: 1001 er í teyminu t1")


def test_the_api_speaks_the_default_language_without_accept_language(api):
    i18n.set_default("is")
    try:
        s, r = api.req("GET", "/api/v1/customers/999999")
        assert s == 404
        icelandic(r["error"], "enginn viðskiptavinur 999999")
        assert api.req("GET", "/api/v1/customers/999999", headers=EN)[1]["error"] == "no customer 999999"
    finally:
        i18n.set_default("en")


def test_lazy_messages_are_written_as_text_in_json(api):
    """A lazy message anywhere in an answer (an error's extra, a session's flashed note) is its text, never a 500."""
    with api.app.test_request_context(headers=IS):
        i18n.set_language("is")
        try:
            assert api.app.json.dumps({"a": [i18n.lazy_gettext("not found")]}) == '{"a": ["fannst ekki"]}'
        finally:
            i18n.set_language(None)


def _image(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 0).save(out, "PNG")
    return out.getvalue()


def test_page_refusals_in_icelandic(db, tmp_path):
    """The pages show the same refusals in the person's language: a photo too large, one of too many pixels, a
    bad number on a record, a 404."""
    from screenpop.daemon.auth import tokens

    with closing(HubApp(db, tmp_path / "photos", web_config=WebConfig(photo_max_mb=1))) as site:
        _, op = tokens.create("1001", name="op")
        customer = Customer.create(name="Þórður")
        browser = signed_in(site.app, op)
        with browser.session_transaction() as s:
            csrf = s.setdefault("csrf", "test-csrf-secret")

        def post(path: str, data: dict, **kwargs) -> tuple[int, str]:
            r = browser.post(path, data={**data, "csrf": csrf}, headers=IS, **kwargs)
            return r.status_code, r.get_data(as_text=True)

        too_big = b"\xff" * (1024 * 1024 + 100)  # above photo_max_mb, inside the upload's room for the form
        for data, reason in ((too_big, "skráin er stærri en 1 MB"),
                             (_image((9000, 9000), "1"), "myndin er 9000x9000, fleiri en 40.000.000 dílar")):
            status, page = post(f"/customers/{customer.id}/photo", {"photo": (io.BytesIO(data), "mynd.png")},
                                content_type="multipart/form-data")
            assert status == 400
            assert f"Ekki er hægt að nota þessa mynd: {reason}." in page, page
            assert not [fragment for fragment in ENGLISH if fragment in page]
        status, page = post(f"/customers/{customer.id}/phones", {"number": "hringdu"})
        assert status == 400 and "er ekki símanúmer sem hægt er að rita á E.164-sniði" in page, page
        assert "is not a phone number" not in page
        r = browser.get("/customers/999999", headers=IS)
        assert r.status_code == 404 and "viðskiptavinur 999999" in r.get_data(as_text=True)
        assert not [fragment for fragment in ENGLISH if fragment in r.get_data(as_text=True)]


def test_import_row_errors_in_the_readers_language(db, tmp_path):
    """The CSV import (the command line; no page imports) reports each bad row; its words are translated when the
    report is read, in the reader's language."""
    path = tmp_path / "customers.csv"
    path.write_text("external_id,name,phones\nA1,Anna,1001\nA2,Bjarni,5551234\nA2,Bjarni aftur,\n", encoding="utf-8")
    report = importer.import_customers(path, RULES)
    assert [line for line, _ in report.errors] == [2, 4]
    with i18n.use("is"):
        said = [str(message) for _, message in report.errors]
    icelandic(said[0], "símanúmerið '1001' er innanhússnúmer, ekki númer viðskiptavinar")
    icelandic(said[1], "external_id 'A2' kom þegar fyrir í línu 3")
    assert [str(message) for _, message in report.errors] == [
        "phone '1001' is an internal extension, not a customer number", "external_id 'A2' already appeared on line 3"]
