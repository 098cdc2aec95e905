"""Languages (issue 18, docs/i18n.md): complete catalogues in step with the sources, the choice of language, the
locale's formats in the call centre's zone, Icelandic sorting, and the pages speaking the reader's language."""
from __future__ import annotations

import ast
import datetime as dt
import re
from html.parser import HTMLParser
import sys
from contextlib import closing
from zoneinfo import ZoneInfo

import pytest
from babel.messages.pofile import read_po

from screenpop.daemon import i18n
from screenpop.daemon.config import CardConfig
from screenpop.db import collation
from screenpop.tray import i18n as tray_i18n

from support import ROOT, HubApp

sys.path.insert(0, str(ROOT / "packaging"))
import catalogues  # noqa: E402

_PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]|%[sd]")


def test_catalogues_are_complete_and_in_step_with_the_sources(capsys):
    """Every string in a gettext call has an English and an Icelandic translation; run packaging/catalogues.py."""
    status = catalogues.main(["--check"])
    assert status == 0, capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "daemon" / "locale").glob("*/LC_MESSAGES/*.po"))
                         + sorted((ROOT / "tray" / "locale").glob("*/LC_MESSAGES/*.po")), ids=lambda p: str(p.relative_to(ROOT)))
def test_translations_keep_every_placeholder(path):
    """A translation that renames %(name)s, or names one its message has not, would raise when the page is rendered; one
    may leave a value out that its language does not say (the English article of a role)."""
    with path.open("rb") as fh:
        catalog = read_po(fh)
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(_PLACEHOLDER.findall(ids[-1])) - {"num"}
        for text in strings:
            assert set(_PLACEHOLDER.findall(text)) - {"num"} <= wanted, (message.id, text)
            assert wanted - set(_PLACEHOLDER.findall(text)) <= {"article"}, (message.id, text)


def test_gettext_speaks_the_language_of_the_moment():
    with i18n.use("is"):
        assert i18n.gettext("Customers") == "Viðskiptavinir"
        assert i18n.gettext("Open customer %(id)s", id=5) == "Opna viðskiptavin 5"
        lazy = i18n.lazy_gettext("Calls")
    assert i18n.gettext("Customers") == "Customers"
    assert str(lazy) == "Calls"  # translated when used, in the language of that moment
    with i18n.use("is"):
        assert str(lazy) == "Símtöl"


def test_language_choice():
    assert i18n.best(None, "de-DE", "is-IS") == "is"
    assert i18n.best("is_IS.UTF-8") == "is" and i18n.best("EN") == "en" and i18n.best("fr") is None
    assert i18n.from_accept_language([("de", 1.0), ("is", 0.8), ("en", 0.5)]) == "is"
    assert i18n.from_accept_language([("is", 0)]) is None
    assert i18n.from_environment({"LANG": "is_IS.UTF-8"}) == "is"
    assert i18n.from_environment({"LC_ALL": "C", "LANG": "is_IS.UTF-8"}) is None  # LC_ALL decides
    assert i18n.from_environment({"LANGUAGE": "de:is", "LANG": "en_US.UTF-8"}) == "is"
    assert tray_i18n.desktop_language({"LC_MESSAGES": "is_IS.UTF-8"}) == "is"
    assert tray_i18n.desktop_language({"LANG": "C.UTF-8"}) is None


def test_icelandic_formats_in_the_call_centres_zone():
    """The issue's examples: 1.234,50 kr., 14:02, 7. des. 2026; Reykjavik is UTC all year, New York is not."""
    config = CardConfig(locale="en_US", currency="ISK", decimals=2)
    icelandic = i18n.Formats.for_language("is", config, ZoneInfo("Atlantic/Reykjavik"))
    assert icelandic.money("1234.5") == "1.234,50\xa0kr."
    assert icelandic.clock("2026-12-07T14:02:00Z") == "14:02"
    assert icelandic.date("2026-12-07T14:02:00Z") == "7. des. 2026"
    assert icelandic.datetime("2026-12-07T14:02:00Z") == "7. des. 2026, 14:02 GMT"
    assert icelandic.number(1234567.5, 1) == "1.234.567,5"
    assert icelandic.country("IS") == "Ísland"
    english = i18n.Formats.for_language("en", config, ZoneInfo("America/New_York"))
    assert english.money("1234.5") == "ISK1,234.50"
    assert english.datetime(dt.datetime(2026, 12, 7, 14, 2)) == "Dec 7, 2026, 9:02\u202fAM EST"
    assert english.country("IS") == "Iceland"


def test_icelandic_sorting():
    """Þ, Æ, Ö after Z; Á after A (not after Z), Ð after D; English folds them to their Latin look-alikes."""
    names = ["Örn", "Þórður", "Zóphónías", "Ásta", "Adam", "Æsa", "Davíð", "Ðaði", "Eva", "anna", "Birna"]
    assert sorted(names, key=lambda n: collation.sort_key(n, "is")) == [
        "Adam", "anna", "Ásta", "Birna", "Davíð", "Ðaði", "Eva", "Zóphónías", "Þórður", "Æsa", "Örn"]
    assert sorted(["Þórður", "Tómas", "Zoe", "Æsa", "Adam"], key=lambda n: collation.sort_key(n, "en")) == [
        "Adam", "Æsa", "Þórður", "Tómas", "Zoe"]  # Þ read as th


@pytest.fixture
def app(db, tmp_path):
    with closing(HubApp(db, tmp_path / "photos")) as hub_app:
        yield hub_app.app


def test_pages_speak_the_browsers_language_until_the_person_chooses(app):
    client = app.test_client()
    page = client.get("/signin", headers={"Accept-Language": "is-IS,is;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="is">' in page
    page = client.get("/signin", headers={"Accept-Language": "de, en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="en">' in page
    with client.session_transaction() as s:
        s["csrf"] = "x"
    r = client.post("/language", data={"csrf": "x", "language": "is", "next": "/signin"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/signin")
    page = client.get("/signin", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="is">' in page  # the person's choice wins over the browser's
    assert client.post("/language", data={"csrf": "x", "language": "xx"}).status_code == 400


class _Text(HTMLParser):
    """The visible text nodes of a page (scripts and styles aside), and its attributes people read."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")
        self.texts += [v for k, v in attrs if k in ("placeholder", "aria-label", "title", "alt") and v]

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.texts.append(" ".join(data.split()))


# keys an admin types, shown as they are in every language: the built-in layout's name, the layout editor's keys
NAMES_NOT_WORDS = {"default", "note", "name", "orders", "total_debt", "place", "caller_id", "sources", "number", "when",
                   "operator",
                   # the dashboard's CSV links are the reports' file names (/reports/<name>.csv), as the CLI's --report
                   "employees", "customers", "categories", "missed", "load", "daily", "service", "numbers", "peaks",
                   "unknown_callers", "calls"}


def _english_only() -> set[str]:
    """Every message whose Icelandic differs from its English, with no placeholder: the texts an Icelandic page must
    not show as they are."""
    with (ROOT / "daemon/locale/is/LC_MESSAGES/screenpop.po").open("rb") as fh:
        catalog = read_po(fh)
    return {m.id for m in catalog if isinstance(m.id, str) and m.id and "%(" not in m.id and m.string != m.id}


def test_every_page_in_icelandic_has_no_english_left(db, tmp_path):
    """Each page an admin and an operator open, rendered in Icelandic: no text node or label is an English message."""
    from screenpop.daemon.auth import tokens
    from screenpop.db.models import Customer, Phone

    from support import RULES

    with closing(HubApp(db, tmp_path / "photos")) as hub_app:
        customer = Customer.create(name="Þórður Ólafsson", company="Ölgerðin", city="Reykjavík", country="IS")
        number = RULES.classify("+3545551234")
        Phone.create(customer=customer, e164=number.e164, rev=number.rev, raw="5551234", label="vinna")
        _, admin = tokens.create(None, role="admin", name="stjórn")
        client = hub_app.app.test_client()
        minted = client.post("/api/v1/signin-links", json={"next": "/"}, headers={"Authorization": f"Bearer {admin}"})
        assert client.get(minted.get_json()["url"].split("localhost", 1)[1]).status_code == 303
        english = _english_only()
        pages = ["/customers", "/customers?q=thordur", f"/customers/{customer.id}", f"/customers/{customer.id}/edit",
                 "/customers/new?number=5559999", "/customers/choose?number=5551234", "/calls", "/missed", "/employees",
                 "/tokens", "/fields", "/categories", "/layouts", "/layouts/default", "/dashboard", "/people", "/sessions",
                 "/account", "/admin/listens", "/transcripts", "/transcripts?q=endurgreidsla", "/alerts", "/nowhere"]
        for path in pages:
            r = client.get(path, headers={"Accept-Language": "is"})
            assert r.status_code in (200, 404), (path, r.status_code)
            parser = _Text()
            parser.feed(r.get_data(as_text=True))
            left = [t for t in parser.texts if t in english - NAMES_NOT_WORDS]
            assert not left, (path, left)
            if path == "/customers?q=thordur":
                assert "Ölgerðin" in r.get_data(as_text=True), "searching thordur finds Þórður"


# the refusals a person reads (the API's JSON error, a page's form error or flashed note, an import's row errors), and
# where their message is; ValueError only in the modules whose ValueErrors are shown as they are
REFUSALS = {"DataError": 1, "PeopleError": 1, "OriginateError": 1, "FollowUpError": 1, "ImageRejected": 0,
            "_RowError": 0, "_FileError": 1, "_error": 1, "failed": 1, "fail": 1}
SHOWN_VALUE_ERRORS = {"daemon/customers/values.py", "daemon/customers/fields.py", "daemon/analysis/store.py",
                      "daemon/reports/catalog.py", "daemon/web/pages/conversation.py"}


def _plain_text(node: ast.expr) -> bool:
    """A message written as text rather than through gettext: a literal, an f-string, or text joined to one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _plain_text(node.left) or _plain_text(node.right)
    return False


def test_every_refusal_in_the_daemon_is_translatable():
    """No DataError(400, "…"), PeopleError(409, f"…") and the like: each refusal's message is lazy_gettext(…) (or
    gettext), so it reaches the reader in their language (docs/i18n.md, "Writing translatable code")."""
    plain = []
    for path in sorted((ROOT / "daemon").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            at = REFUSALS.get(func, 0 if func == "ValueError" and name in SHOWN_VALUE_ERRORS else None)
            if at is not None and len(node.args) > at and _plain_text(node.args[at]):
                plain.append(f"{name}:{node.lineno}: {ast.unparse(node)[:100]}")
    assert not plain, "refusals written as plain text (wrap them in lazy_gettext):\n" + "\n".join(plain)
