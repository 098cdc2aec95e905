"""Each operator's pops in their own language (docs/i18n.md, issue 18): the person's setting, else what the tray asks
for (Accept-Language), else [i18n] default_language; one frame per language a pop is wanted in, on every way a pop
goes out (queued, committed, stored by any daemon, early, replayed, updated by the sources)."""
from __future__ import annotations

import json
import re

import pytest

from screenpop.daemon import i18n
from screenpop.daemon.calls.direction import DirectionRules
from screenpop.daemon.calls.tracker import CallTracker
from screenpop.daemon.customers.lookup import Lookup
from screenpop.daemon.push.hub import ALL, Subscriber
from screenpop.daemon.record.pops import POP_COLUMNS, PopRow
from screenpop.daemon.record.writer import Writer
from screenpop.daemon.sources.fetch import Answer
from screenpop.daemon.sources.source import SourceResult
from screenpop.db.models import Person
from screenpop.simulator.capture import read_events

from support import CAPTURES, RULES, start_hub, stop_hub

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

