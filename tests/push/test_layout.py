"""The card's display lines (daemon/push/layout.py): every kind of pop, hostile text, amounts, dates and numbers as
people read them (docs/card.md, "What the pop says"). Pure: no database, no daemon."""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from screenpop.daemon.config import CardConfig
from screenpop.daemon.push.layout import DEFAULT_ITEMS, LINE_MAX, NOTE_MAX, TITLE_MAX, CardLayout, Item, clean

from support import RULES

ICELAND = CardLayout(CardConfig(locale="is_IS", currency="ISK"), ZoneInfo("Atlantic/Reykjavik"))
US = CardLayout(CardConfig(), ZoneInfo("America/New_York"))
NOW = dt.datetime(2026, 11, 26, 20, 0, tzinfo=dt.timezone.utc)
ORDER = {"number": "A-1", "title": "Roof", "stage": "install", "responsible": "Anna Jónsdóttir", "amount": "1500.00",
         "paid": "500.50", "debt": "999.50"}


SEEDED_FLAGS = {"vip": "★ VIP", "problem": "⚠ PROBLEM"}  # the category list a database starts with


def customer(**fields) -> dict:
    base = {"id": 17, "name": "Jón Jónsson", "company": "Norðurljós ehf.", "category": "regular", "note": "",
            "city": "Reykjavík", "country": "IS", "photo_url": "/api/v1/customers/17/photo", "orders": [],
            "total_debt": "0.00"}
    merged = {**base, **fields}
    merged.setdefault("category_flag", SEEDED_FLAGS.get(merged["category"].lower(), ""))
    return merged


def card(**fields) -> dict:
    base = {"id": 1, "event": "ringing", "call_uuid": "c1", "direction": "INCOMING", "at": "2026-11-26T18:53:45.985Z",
            "extension": "1001", "operator": "Anna Jónsdóttir", "number": "+3545551234", "caller_name": "",
            "colleague": None, "taken_by": None, "matches": 0, "customer": None, "candidates": [], "record_url": None}
    return {**base, **fields}


def render(c: dict, layout: CardLayout = ICELAND) -> tuple[str, list[str]]:
    title, lines = layout.render(c, RULES, now=NOW)
    assert all(set(line) == {"field", "text", "style"} for line in lines)
    return title, [line["text"] for line in lines]


def styles(c: dict) -> dict[str, str]:
    return {line["field"]: line["style"] for line in ICELAND.render(c, RULES, now=NOW)[1]}


def test_known_vip_with_note_and_orders_note_first_then_name_orders_total_place_number_time_operator():
    c = card(matches=1, caller_name="JON JONSSON", customer=customer(
        category="vip", note="Prefers email", total_debt="1099.49",
        orders=[ORDER, {**ORDER, "number": "A-2", "title": "Gutter", "stage": "quote", "responsible": None,
                        "debt": "99.99"}]))
    assert render(c) == ("Norðurljós ehf.  ★ VIP", [
        "Prefers email", "Jón Jónsson", "A-1 Roof: install · Anna Jónsdóttir · 1.000\xa0kr.",
        "A-2 Gutter: quote · 100\xa0kr.", "Debt 1.099\xa0kr.", "Reykjavík, Ísland", "555 1234", "18:53 · INCOMING",
        "Operator 1001 Anna Jónsdóttir"])
    assert styles(c)["note"] == "warning" and styles(c)["total_debt"] == "strong" and styles(c)["name"] == "plain"


def test_problem_without_company_is_named_by_its_name_and_flagged():
    title, lines = render(card(matches=1, customer=customer(company="", category="PROBLEM", note="Cash only")))
    assert title == "Jón Jónsson  ⚠ PROBLEM" and lines[:2] == ["Cash only", "Reykjavík, Ísland"]


def test_the_flag_is_the_category_lists_own_and_a_hostile_one_stays_one_line():
    assert render(card(matches=1, customer=customer(category="gold", category_flag="◆ GOLD")))[0] == \
        "Norðurljós ehf.  ◆ GOLD"
    assert render(card(matches=1, customer=customer(category="vip", category_flag="")))[0] == "Norðurljós ehf."
    title = render(card(matches=1, customer=customer(category="x", category_flag="<b>X</b>\n\u202eY")))[0]
    assert title == "Norðurljós ehf.  <b>X</b> Y", "not escaped here (the tray escapes), but one line, no bidi override"


def test_orders_past_three_are_counted_and_a_paid_order_shows_no_debt():
    orders = [{**ORDER, "number": f"A-{i}", "debt": "0.00" if i == 1 else "10.00"} for i in range(1, 6)]
    _, lines = render(card(matches=1, customer=customer(orders=orders, total_debt="40.00")), US)
    assert lines[1:6] == ["A-1 Roof: install · Anna Jónsdóttir", "A-2 Roof: install · Anna Jónsdóttir · $10.00",
                          "A-3 Roof: install · Anna Jónsdóttir · $10.00", "and 2 more open orders", "Debt $40.00"]


def test_unknown_caller_shows_the_number_once_in_the_home_form_and_a_caller_id_that_adds_something():
    assert render(card(number="+3545550042", caller_name="Gunna")) == (
        "555 0042", ["Unknown caller", "Caller ID: Gunna", "18:53 · INCOMING", "Operator 1001 Anna Jónsdóttir"])
    # a caller-ID name that is only the number again, or says nothing, is left out
    for useless in ("+354 555 0042", "5550042", "anonymous", "555 0042"):
        assert "Caller ID" not in " ".join(render(card(number="+3545550042", caller_name=useless))[1])
    assert render(card(direction="OUTGOING", number="+3545550042"))[1][0] == "Not a customer yet"


def test_foreign_number_in_international_form_with_its_country():
    assert render(card(number="+4545551234"))[:2] == ("+45 45 55 12 34", ["Unknown caller", "Danmörk", "18:53 · INCOMING",
                                                                          "Operator 1001 Anna Jónsdóttir"])
    _, lines = render(card(number="+4545551234", matches=1, customer=customer(country="DK")), US)
    assert "+45 45 55 12 34 · Denmark" in lines and "Reykjavík, Denmark" in lines


def test_several_matches_list_the_first_three_and_count_the_rest():
    cands = [{"id": i, "name": f"Twin {i}", "company": "Tvíburar" if i < 3 else ""} for i in range(1, 5)]
    title, lines = render(card(number="+3545557777", matches=5, candidates=cands))
    assert title == "555 7777" and lines[:5] == ["5 customers share this number", "• Twin 1 (Tvíburar)",
                                                  "• Twin 2 (Tvíburar)", "• Twin 3", "and 2 more"]
    assert styles(card(number="+3545557777", matches=5, candidates=cands))["matches"] == "strong"


def test_withheld_number_is_said_once_and_never_as_a_number():
    title, lines = render(card(number="anonymous", caller_name="Anonymous"))
    assert title == "Withheld number" and lines == ["Unknown caller", "18:53 · INCOMING", "Operator 1001 Anna Jónsdóttir"]
    assert render(card(number=""))[0] == "Withheld number"


def test_internal_caller_is_the_colleague_by_name():
    title, lines = render(card(direction="INTERNAL", number="1003", caller_name="1003", colleague="Björn Sigurðsson"))
    assert title == "Björn Sigurðsson" and lines[:2] == ["Colleague, extension 1003", "18:53 · INTERNAL"]
    # not an employee: the caller-ID name the PBX gives, else the extension
    assert render(card(direction="INTERNAL", number="1009", caller_name="Lobby phone"))[0] == "Lobby phone"
    assert render(card(direction="INTERNAL", number="1009"))[0] == "Extension 1009"


def test_answered_elsewhere_says_who_took_it():
    c = card(event="answered_elsewhere", matches=1, customer=customer(category="vip"),
             taken_by={"extension": "1002", "name": "Sigga"})
    assert render(c) == ("Taken by 1002 Sigga", ["Norðurljós ehf.  ★ VIP", "18:53 · INCOMING"])
    assert render(card(event="answered_elsewhere"))[0] == "Answered elsewhere"


def test_missed_dialing_transferred_and_ended_say_so_in_the_summary():
    c = card(matches=1, customer=customer(note="Prefers email"))
    assert render({**c, "event": "missed"})[0] == "Missed: Norðurljós ehf."
    assert render({**c, "event": "missed"})[1][0] == "Prefers email", "the missed pop keeps the note"
    assert render({**c, "event": "dialing", "direction": "OUTGOING"})[0] == "Calling Norðurljós ehf."
    assert render({**c, "event": "transferred"})[0] == "Transferred: Norðurljós ehf."
    assert render({**c, "event": "answered"})[0] == "Norðurljós ehf."


def test_time_alone_today_with_the_date_another_day_in_the_call_centres_zone():
    assert ICELAND.when("2026-11-26T18:53:45.985Z", NOW) == "18:53"
    assert ICELAND.when("2026-11-25T18:53:45Z", NOW) == "25. nóv., 18:53"
    assert ICELAND.when("2025-11-25T18:53:45Z", NOW) == "25. nóv. 2025, 18:53"
    assert US.when("2026-11-26T18:53:45Z", NOW) == "1:53\u202fPM", "New York: 13:53 the same day"
    assert US.when("2026-11-27T03:00:00Z", NOW) == "10:00\u202fPM", "the 27th in UTC, still today in New York"
    assert US.when("2026-11-26T03:00:00Z", NOW) == "Nov 25, 10:00\u202fPM", "the 26th in UTC, yesterday in New York"
    tokyo = CardLayout(CardConfig(), ZoneInfo("Asia/Tokyo"))
    assert tokyo.when("2026-11-26T14:00:00Z", NOW) == "Nov 26, 11:00\u202fPM", "in Tokyo it is the 27th by now"
    assert ICELAND.when("not a time", NOW) == "" and ICELAND.when("", NOW) == ""


@pytest.mark.parametrize("config, amount, shown", [
    (CardConfig(locale="is_IS", currency="ISK"), "285000.00", "285.000\xa0kr."),
    (CardConfig(locale="en_US", currency="USD"), "285000.00", "$285,000.00"),
    (CardConfig(locale="de_DE", currency="EUR"), "1099.49", "1.099,49\xa0€"),
    (CardConfig(locale="is_IS", currency="ISK", decimals=2), "999.50", "999,50\xa0kr."),
    (CardConfig(locale="en_GB", currency="GBP", money_format="#,##0.00 ¤"), "1234.5", "1,234.50 £"),
    (CardConfig(locale="de_CH", currency="CHF"), "1234.5", "CHF\xa01'234.50"),
    (CardConfig(), "not money", "$0.00"),
])
def test_money_from_configuration(config, amount, shown):
    assert CardLayout(config).money(amount) == shown


def test_hostile_text_is_one_clean_bounded_line_and_left_for_the_tray_to_escape():
    evil = "<b>FREE</b>\r\n\x1b[31m\u202eevil\u2028line\x00 & more"
    c = card(number="<i>555</i>", caller_name=evil, matches=1, customer=customer(
        name=evil, company="A&B " + "x" * 500, note="n" * 20000, city=evil, country="<script>",
        orders=[{**ORDER, "number": evil, "title": "t" * 400, "stage": evil, "responsible": evil}]))
    title, lines = render(c)
    assert title == "A&B " + "x" * (TITLE_MAX - 5) + "…", "markup left as text: the tray escapes it"
    assert lines[0] == "n" * (NOTE_MAX - 1) + "…"
    for text in [title, *lines]:
        assert not any(ch in text for ch in "\r\n\x1b\x00\u202e\u2028"), text
        assert len(text) <= max(LINE_MAX * 2, NOTE_MAX), text
    assert "<b>FREE</b> [31m evil line & more" in lines, "the customer's name, cleaned"
    assert "Caller ID: <b>FREE</b> [31m evil line & more" not in lines, "the same as the name: adds nothing"
    assert lines[-3] == "<i>555</i>"
    assert clean(None) == "" and clean("  a \t b  ") == "a b" and clean("x" * 10, 5) == "xxxx…"


def test_the_sources_fields_follow_the_built_in_ones_as_label_and_value_one_line_each():
    sources = {"pending": False, "external_id": None, "fields": [
        {"source": "erp", "name": "Balance", "value": "12.500 kr."}, {"source": "crm", "name": "Tier", "value": "<b>Gold</b>\n"},
        *({"source": "erp", "name": f"F{i}", "value": str(i)} for i in range(20))]}
    _, lines = render(card(matches=1, customer=customer(), sources=sources))
    shown = [text for text in lines if ": " in text and not text.startswith("Operator")]
    assert shown[:2] == ["Balance: 12.500 kr.", "Tier: <b>Gold</b>"], "escaping is the tray's; one line each"
    assert len(shown) == 8 and lines.index("Balance: 12.500 kr.") > lines.index("Reykjavík, Ísland")
    assert render(card(sources={"pending": True, "fields": "junk"}))[1] == render(card())[1]


# ---- layouts an admin chose (docs/card.md, "Layouts") ----------------------------------------------------

FIELDS = [{"key": "tier", "label": "Tier", "type": "choice", "value": "Gold", "text": "Gold"},
          {"key": "limit", "label": "Credit <i>limit</i>", "type": "money", "value": "250000.00", "text": "250000.00"},
          {"key": "hold", "label": "Hold", "type": "yesno", "value": "yes", "text": "Yes"}]
SOURCES = {"pending": False, "external_id": None, "fields": [
    {"source": "erp", "name": "Balance", "value": "12.500 kr."}, {"source": "crm", "name": "Owner", "value": "<b>Sigga</b>"},
    {"source": "erp", "name": "Terms", "value": "30 days\n\u202eevil"}]}


def laid_out(c: dict, *items: tuple[str, str]) -> list[tuple[str, str, str]]:
    return [(x["field"], x["text"], x["style"]) for x in ICELAND.render(c, RULES, now=NOW, items=tuple(Item(*i) for i in items))[1]]


def test_a_layout_shows_its_fields_in_its_order_with_custom_order_and_source_fields_and_warnings_first():
    order = {**ORDER, "fields": [{"key": "due", "label": "Due", "type": "date", "value": "2027-03-01", "text": "2027-03-01"}]}
    c = card(matches=1, customer=customer(note="Cash only", fields=FIELDS, total_debt="999.50",
                                          orders=[order, {**ORDER, "number": "A-2", "fields": []}]), sources=SOURCES)
    assert laid_out(c, ("customer.limit", "plain"), ("order.due", "strong"), ("source.erp.Terms", "plain"),
                    ("customer.hold", "warning"), ("source.crm", "plain"), ("note", "warning"), ("operator", "plain")) == [
        ("customer.hold", "Hold: Yes", "warning"), ("note", "Cash only", "warning"),
        ("customer.limit", "Credit <i>limit</i>: 250.000\xa0kr.", "plain"), ("order.due", "A-1 Due: 2027-03-01", "strong"),
        ("source", "Terms: 30 days evil", "plain"), ("source", "Owner: <b>Sigga</b>", "plain"),
        ("operator", "Operator 1001 Anna Jónsdóttir", "plain")]
    # a field the record has no value for, a removed field, a source that said nothing: no line
    assert laid_out(c, ("customer.nosuch", "plain"), ("order.nosuch", "plain"), ("source.hr", "plain")) == []
    assert [t for _, t, _ in laid_out(c, ("sources", "plain"))] == ["Balance: 12.500 kr.", "Owner: <b>Sigga</b>",
                                                                   "Terms: 30 days evil"]


def test_the_kind_of_caller_stays_under_the_warnings_and_customer_pieces_need_a_customer():
    unknown = card(number="+3545550042", caller_name="Gunna", sources=SOURCES)
    assert laid_out(unknown, ("when", "plain"), ("note", "warning"), ("source.erp.Balance", "warning"),
                    ("customer.tier", "plain"), ("number", "plain"), ("caller_id", "strong")) == [
        ("source", "Balance: 12.500 kr.", "warning"), ("status", "Unknown caller", "plain"),
        ("when", "18:53 · INCOMING", "plain"), ("caller_id", "Caller ID: Gunna", "strong")]
    # the summary is the layout's to leave alone: who is calling, with the category's flag
    assert ICELAND.render(card(matches=1, customer=customer(category="vip")), RULES, now=NOW, items=())[0] == \
        "Norðurljós ehf.  ★ VIP"


def test_hostile_labels_and_values_in_a_layout_stay_one_clean_bounded_line():
    evil = "<b>x</b>\r\n\x1b[31m\u202e" + "y" * 500
    c = card(matches=1, customer=customer(fields=[{"key": "k", "label": evil, "type": "text", "value": evil, "text": evil}]),
             sources={"fields": [{"source": "erp", "name": evil, "value": evil}, "junk", {"source": "erp"}]})
    for _, text, _ in laid_out(c, ("customer.k", "warning"), ("sources", "plain")):
        assert not any(ch in text for ch in "\r\n\x1b\u202e") and len(text) <= 30 + 2 + LINE_MAX, text
        assert text.startswith("<b>x</b> [31m"), "left for the tray to escape"


def test_the_default_layout_is_the_card_as_it_always_was():
    c = card(matches=1, caller_name="JON JONSSON", sources=SOURCES, customer=customer(
        category="vip", note="Prefers email", total_debt="1099.49", fields=FIELDS, orders=[ORDER]))
    assert ICELAND.render(c, RULES, now=NOW) == ICELAND.render(c, RULES, now=NOW, items=DEFAULT_ITEMS)
    assert [i.field for i in DEFAULT_ITEMS] == ["note", "name", "orders", "total_debt", "place", "caller_id", "sources",
                                                "number", "when", "operator"]


def test_every_kind_of_pop_in_icelandic():
    """The pop's own words in the organisation's language ([i18n] default_language is): each kind of pop, no English
    word of the card left (issue 18)."""
    from screenpop.daemon import i18n

    known = card(matches=1, caller_name="Nonni", customer=customer(total_debt="1099.49", orders=[ORDER] * 4))
    kinds = {
        "known": known, "dialing": {**known, "event": "dialing", "direction": "OUTGOING"},
        "missed": {**known, "event": "missed"}, "transferred": {**known, "event": "transferred"},
        "ended": {**known, "event": "ended"}, "unknown": card(), "withheld": card(number="anonymous"),
        "outgoing new": card(direction="OUTGOING"), "colleague": card(direction="INTERNAL", number="1002"),
        "shared": card(matches=4, candidates=[{"name": "Jón", "company": "A"}, {"name": "Gunna", "company": "B"}]),
        "answered elsewhere": card(event="answered_elsewhere", taken_by={"extension": "1002", "name": "Björn"}),
    }
    english = re.compile(r"\b(Calling|Missed|Transferred|Ended|INCOMING|OUTGOING|INTERNAL|Unknown|Withheld|Colleague|"
                         r"Extension|customer|Operator|Caller|Debt|more|share|Taken|Answered)\b")
    with i18n.use("is"):
        seen = {kind: render(c) for kind, c in kinds.items()}
    for kind, (title, lines) in seen.items():
        assert not english.search(" ".join([title, *lines])), (kind, title, lines)
    assert seen["known"][1][-3:] == ["555 1234", "18:53 · INNHRINGING", "Fulltrúi 1001 Anna Jónsdóttir"]
    assert "Skuld 1.099\xa0kr." in seen["known"][1] and "og 1 opin pöntun til viðbótar" in seen["known"][1]
    assert seen["dialing"][0] == "Hringi í Norðurljós ehf." and seen["missed"][0] == "Ósvarað: Norðurljós ehf."
    assert seen["unknown"] == ("555 1234", ["Óþekktur hringjandi", "18:53 · INNHRINGING",
                                            "Fulltrúi 1001 Anna Jónsdóttir"])
    assert seen["answered elsewhere"][0] == "1002 Björn svaraði"
    assert render(known)[1][-1] == "Operator 1001 Anna Jónsdóttir", "English outside the block"


def test_one_layout_writes_a_card_in_each_readers_words_and_formats():
    """The same card for an English and an Icelandic reader of one daemon: each in its words and its locale's formats
    (Formats.for_language: [card] locale for its own language, else the language's own), in the call centre's zone."""
    c = card(customer=customer(total_debt="1099.49", orders=[ORDER], fields=FIELDS), at="2026-11-20T18:53:45.985Z")
    items = (*DEFAULT_ITEMS, Item("customer.hold"), Item("customer.limit"))
    title, english = ICELAND.render(c, RULES, now=NOW, items=items, language="en")
    _, icelandic = ICELAND.render(c, RULES, now=NOW, items=items, language="is")
    english, icelandic = [line["text"] for line in english], [line["text"] for line in icelandic]
    assert title == "Norðurljós ehf."
    assert "Debt ISK1,099" in english and "Skuld 1.099\xa0kr." in icelandic
    assert "Nov 20, 6:53\u202fPM · INCOMING" in english and "20. nóv., 18:53 · INNHRINGING" in icelandic
    assert "Reykjavík, Iceland" in english and "Reykjavík, Ísland" in icelandic
    assert "Hold: Yes" in english and "Hold: Já" in icelandic, "a yes/no field in the reader's words"
    assert "Credit <i>limit</i>: ISK250,000" in english and "Credit <i>limit</i>: 250.000\xa0kr." in icelandic
    assert ICELAND.speaking("is") is ICELAND.speaking("is"), "each language's formats made once"
