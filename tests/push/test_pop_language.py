"""Each operator's pops in their own language (docs/i18n.md, issue 18): the person's setting, else what the tray asks
for (Accept-Language), else [i18n] default_language; one frame per language a pop is wanted in, on every way a pop
goes out (queued, committed, stored by any daemon, early, replayed, updated by the sources)."""
from __future__ import annotations

import json
import re
from contextlib import closing
from decimal import Decimal

import pytest

from screenpop.daemon import i18n
from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import CallTracker
from screenpop.daemon.auth import tokens
from screenpop.daemon.customers.lookup import Lookup, add_phone
from screenpop.daemon.push.hub import ALL, Subscriber
from screenpop.daemon.record.pops import POP_COLUMNS, PopRow
from screenpop.daemon.record.writer import Writer
from screenpop.daemon.sources.fetch import Answer
from screenpop.daemon.sources.source import SourceResult
from screenpop.db.database import open_database
from screenpop.db.migrations import migrate
from screenpop.db.models import CallEvent, Customer, Employee, Order, Person
from screenpop.simulator.capture import read_events

from sse import Stream
from support import CAPTURES, RULES, Started, daemon, free_port, serving, simulator, start_hub, stop_hub, wait_for
from support import write_config

DIRECTION = DirectionRules(frozenset({"external"}), frozenset({"public"}), RULES.is_extension)
SCENARIO = "ring-group-users"  # 7 pops; two extensions' calls answered elsewhere
# the card's own English words; none may be left in an Icelandic pop
ENGLISH = re.compile(r"\b(Calling|Missed|Transferred|Ended|INCOMING|OUTGOING|INTERNAL|Unknown|Withheld|Colleague|"
                     r"Extension|customers?|Operator|Caller|Debt|more|share|Taken|Answered|Iceland)\b")
ICELANDIC = re.compile(r"INNHRINGING|ÚTHRINGING|INNANHÚSS|Fulltrúi|Óþekkt|svaraði|Ísland")


@pytest.fixture
def default_language():
    """Set [i18n] default_language for one test (the daemon sets it once at start), then English again."""
    yield i18n.set_default
    i18n.set_default("en")


def feed(writer: Writer) -> None:
    tracker = CallTracker(DIRECTION, writer)
    for _, event in read_events(CAPTURES / f"{SCENARIO}.plain.esl"):
        tracker.handle(event)


def flush(writer: Writer) -> None:
    while writer.pending or writer._calls:
        writer.flush_once()


def settle(hub) -> None:
    hub.worker.run(lambda: None)


def cards(sub: Subscriber) -> list[dict]:
    """The cards a stream was handed since last asked (id-only frames left out)."""
    out = []
    for _, frame in sub.take():
        out += [json.loads(line[6:]) for line in frame.decode().split("\n") if line.startswith("data: ")]
    return out


def words(card: dict) -> str:
    return "\n".join([card["title"], *(line["text"] for line in card["lines"])])


def assert_icelandic(found: list[dict]) -> None:
    assert found and all(not ENGLISH.search(words(c)) and ICELANDIC.search(words(c)) for c in found), \
        [words(c) for c in found]


def assert_english(found: list[dict]) -> None:
    assert found and all(not ICELANDIC.search(words(c)) and ENGLISH.search(words(c)) for c in found), \
        [words(c) for c in found]


def test_the_persons_setting_comes_first_then_the_trays_then_the_organisations(default_language):
    assert Subscriber("1001", 1, setting="is", asked="en").language == "is"
    assert Subscriber("1001", 1, setting=None, asked="en-GB").language == "en"
    assert Subscriber("1001", 1, setting="xx", asked=None).language == "en", "a setting we have no catalogue for"
    default_language("is")
    assert Subscriber("1001", 1).language == "is"
    assert Subscriber("1001", 1, asked="en").language == "en"
    sub = Subscriber("1001", 1, asked="en")
    sub.follow("is")
    assert sub.language == "is", "the person's setting, changed while the stream is open"
    sub.follow(None)
    assert sub.language == "en", "setting removed: the tray's again"


def test_the_setting_is_the_enabled_person_on_the_tokens_extension(db):
    hub = start_hub(db, lambda: Lookup(db, RULES))
    try:
        Person.create(login="anna", name="Anna", extension="1001", language="is")
        Person.create(login="old", name="Old", extension="1002", language="is", disabled_at="2026-01-01 00:00:00")
        Person.create(login="bjarni", name="Bjarni", extension="1003")
        assert hub.language_setting("1001") == "is"
        assert hub.language_setting("1002") is None, "a disabled person's setting counts no more"
        assert hub.language_setting("1003") is None and hub.language_setting("1009") is None
        assert hub.language_setting(None) is None, "an admin token without an extension"
    finally:
        stop_hub(hub)


def test_each_stream_gets_the_same_pops_in_its_own_language_one_frame_per_language(rig, monkeypatch):
    """Queued, committed (SQLite) and replayed: the English streams' pops English, the Icelandic ones' Icelandic, each
    pop's frames built once for the languages wanted."""
    db, hub, writer = rig
    built: list[tuple[int | None, tuple[str, ...]]] = []
    frames = hub.cards.frames

    def counting(pop, languages, *args, **kwargs):
        built.append((pop.id, tuple(sorted(languages))))
        return frames(pop, languages, *args, **kwargs)

    monkeypatch.setattr(hub.cards, "frames", counting)
    english = hub.subscribe(ALL, None)
    icelandic = [hub.subscribe(ALL, None, asked="is"), hub.subscribe(ALL, None, setting="is", asked="en")]
    feed(writer)
    settle(hub)
    assert_english(english_cards := cards(english))
    for sub in icelandic:
        assert_icelandic(found := cards(sub))
        assert [c["id"] for c in found] == [c["id"] for c in english_cards]
        assert [c["customer"] for c in found] == [c["customer"] for c in english_cards], "the same facts"
    assert len(english_cards) == 7 and built == [(c["id"], ("en", "is")) for c in english_cards]
    assert any(c["event"] == "answered_elsewhere" for c in english_cards)
    late = hub.subscribe(ALL, None, asked="is")  # opened now: it gets the pops as they are stored
    flush(writer)
    settle(hub)
    assert_icelandic(cards(late))
    assert built[7:] == [(c["id"], ("is",)) for c in english_cards], "the commit builds the late stream's only"
    replayed = [json.loads(frame.decode().split("data: ", 1)[1]) for _, frame in hub.replay(ALL, 0, "is")]
    assert_icelandic(replayed)
    assert_english([json.loads(frame.decode().split("data: ", 1)[1]) for _, frame in hub.replay(ALL, 0, "en")])


def test_pops_stored_by_any_daemon_early_ones_and_updates_in_each_streams_language(rig, default_language):
    """The cross-node path (push_stored), pops out while the database is away (push_early) and the sources' update
    frame follow each stream's language too; the organisation's default is Icelandic here."""
    db, hub, writer = rig
    default_language("is")
    feed(writer)
    queued = list(writer._pops)  # the writer's pops, as it hands them to push_early while the database is away
    flush(writer)
    rows = [PopRow(*row) for row in db.execute_sql(f"SELECT {POP_COLUMNS} FROM call_event ORDER BY id").fetchall()]
    english, icelandic = hub.subscribe(ALL, None, asked="en"), hub.subscribe(ALL, None)
    hub.push_stored(rows)
    settle(hub)
    assert_english(cards(english))
    assert_icelandic(cards(icelandic))
    hub.push_early(queued)
    assert_english(cards(english))
    assert_icelandic(cards(icelandic))
    answer = Answer((SourceResult("crm", (("Tier", "gold"),)),))
    hub._update(rows[0], answer)
    update_en, update_is = cards(english), cards(icelandic)
    assert len(update_en) == len(update_is) == 1
    assert_english(update_en)
    assert_icelandic(update_is)
    assert "Tier: gold" in words(update_en[0]) and "Tier: gold" in words(update_is[0])



# ---- the real daemon and simulator -------------------------------------------------------------------------------


def test_two_operators_get_the_same_calls_pops_each_in_their_own_language(tmp_path, sqlite_url):
    """An Icelandic centre ([i18n] default_language is, [card] is_IS and ISK): Anna (1001) set Icelandic on her
    account and her tray asks for English; Bjarni's tray (1002, no setting) asks for English. Ring group calls ring
    both: Anna's pops are Icelandic, Bjarni's English, live and replayed after a reconnect."""
    with closing(Started()) as started:
        db = started.keep(open_database(sqlite_url))
        migrate(db)
        Employee.create(name="Anna Jónsdóttir", extension="1001")
        Employee.create(name="Bjarni Ben", extension="1002")
        Person.create(login="anna", name="Anna Jónsdóttir", extension="1001", language="is")
        known = Customer.create(name="Jón Jónsson", company="Norðurljós ehf.", city="Reykjavík", country="IS")
        add_phone(known, "+3545551234", "mobile", RULES)
        Order.create(customer=known, number="A-1", title="Roof", stage="install", amount=Decimal("1500"), paid=Decimal("400"))
        (tmp_path / "numbers.txt").write_text("+3545551234\n+3545550042\n", encoding="utf-8")
        anna, bjarni = tokens.create("1001")[1], tokens.create("1002")[1]
        esl_port, http_port = free_port(), free_port()
        config = write_config(tmp_path / "screenpop.toml", esl_port, sqlite_url, http_port=http_port,
                              i18n='[i18n]\ndefault_language = "is"', card='[card]\nlocale = "is_IS"\ncurrency = "ISK"')
        started.keep(serving(daemon(tmp_path, config), f"http://127.0.0.1:{http_port}"))
        streams = {"1001": started.keep(Stream(http_port, anna, language="en")),
                   "1002": started.keep(Stream(http_port, bjarni, language="en"))}
        sim = started.keep(simulator(tmp_path, esl_port, "--generate", "--calls", "6", "--rate", "10", "--speed", "10",
                                     "--seed", "5", "--extensions", "1001-1002", "--numbers", str(tmp_path / "numbers.txt"),
                                     "--mix", "ring_group=1", "--linger", "0.3"))
        assert sim.wait(60) == 0, sim.log()
        stored = lambda ext: [i for (i,) in CallEvent.select(CallEvent.id).where(CallEvent.extension == ext)
                              .order_by(CallEvent.id).tuples()]
        wait_for(lambda: all(s.ids == stored(ext) and s.ids for ext, s in streams.items()), 20, "every pop on both")
        icelandic, english = streams["1001"].cards, streams["1002"].cards
        assert {c["call_uuid"] for c in icelandic} == {c["call_uuid"] for c in english}, "the same calls"
        assert_icelandic(icelandic)
        assert_english(english)
        anna_says, bjarni_says = "\n".join(map(words, icelandic)), "\n".join(map(words, english))
        assert "Skuld 1.100\xa0kr." in anna_says and "Debt ISK1,100" in bjarni_says, "money in each one's locale"
        assert "Reykjavík, Ísland" in anna_says and "Reykjavík, Iceland" in bjarni_says
        assert {c["event"] for c in icelandic + english} >= {"ringing", "answered_elsewhere"}
        for ext, token in (("1001", anna), ("1002", bjarni)):  # back after a reconnect: the replay speaks the same
            streams[ext].close()
            again = started.keep(Stream(http_port, token, last_event_id=0, language="en"))
            wait_for(lambda: again.ids == stored(ext), 20, f"the replay of {ext}")
            (assert_icelandic if ext == "1001" else assert_english)(again.cards)
            assert [words(c) for c in again.cards] == [words(c) for c in streams[ext].cards]
