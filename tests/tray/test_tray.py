"""Tray client units: SSE parsing, reconnect with Last-Event-ID against a real HTTP server, pop text escaping,
the config file, the tray state. No display needed (the desktop is in test_tray_desktop.py)."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest

from screenpop.tray import config as tc
from screenpop.tray.app import BADGE, TrayState, draw_icon
from screenpop.tray.missed import MissedCalls
from screenpop.tray.originate import call_back
from screenpop.tray.notify import Notifier, PhotoCache, card_text, esc
from screenpop.tray.stream import EventStream, Message, SSEParser

from desktop import PushServer, card, customer, missed_answer
from support import wait_for


def parse(*chunks: bytes) -> tuple[list[Message], SSEParser]:
    p = SSEParser()
    out = []
    for c in chunks:
        out.extend(p.feed(c))
    return out, p


# ---- SSE parsing ----------------------------------------------------------------------------------


def test_sse_messages_ids_and_event_names():
    msgs, p = parse(b"retry: 2000\n\nid: 1\nevent: pop\ndata: {\"a\": 1}\n\nid: 2\nevent: pop\ndata: {}\n\n")
    assert msgs == [Message("pop", '{"a": 1}', "1"), Message("pop", "{}", "2")]
    assert p.retry == 2000 and p.last_id == "2"


def test_sse_lines_split_anywhere_and_every_line_ending():
    stream = b"id: 7\r\nevent: pop\rdata: x\r\n\r\n: keepalive\n\nid: 8\ndata: y\r\r"
    whole, _ = parse(stream)
    assert whole == [Message("pop", "x", "7"), Message("message", "y", "8")]
    for size in (1, 2, 3, 5):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        assert parse(*chunks)[0] == whole, size
    # a CR at the end of one read and its LF at the start of the next are one line end
    assert parse(b"data: a\r", b"\n\r", b"\n")[0] == [Message("message", "a", None)]


def test_sse_multiline_data_comments_and_field_rules():
    msgs, p = parse(b": hello\ndata:first\ndata: second\ndata\n\nretry: soon\nevent: x\n\ndata:  two spaces\n\n")
    assert msgs == [Message("message", "first\nsecond\n", None), Message("message", " two spaces", None)]
    assert p.retry is None, "a non-numeric retry is ignored"


def test_sse_id_applies_only_when_dispatched_and_survives_empty_events():
    p = SSEParser()
    assert list(p.feed(b"id: 5\ndata: a\n")) == [] and p.last_id is None, "not dispatched yet"
    assert list(p.feed(b"\nid: 6\n\n")) == [Message("message", "a", "5")]
    assert p.last_id == "6", "an id with no data still moves the last event id"
    assert list(p.feed(b"id: bad\x00\ndata: b\n\n")) == [Message("message", "b", "6")], "an id with NUL is ignored"


def test_sse_utf8_split_across_reads_and_bom():
    data = "data: Jón Þór\n\n".encode()
    cut = data.index("ó".encode()) + 1
    assert parse(b"\xef\xbb\xbf" + data[:cut], data[cut:])[0] == [Message("message", "Jón Þór", None)]


# ---- the stream against a server --------------------------------------------------------------------


@pytest.fixture
def server():
    s = PushServer(retry_ms=100, keepalive=0.3)
    yield s
    s.close()


def _stream(server, got, states, token="secret-token", **kw):
    s = EventStream(server.url, lambda: token, got.append, lambda st, d: states.append(st), **kw)
    s.start()
    return s


def test_stream_reconnects_with_last_event_id_and_loses_nothing(server):
    got, states = [], []
    s = _stream(server, got, states)
    try:
        wait_for(lambda: server.streams() == 1, 5, "the stream")
        assert "Last-Event-ID" not in server.event_requests()[0]["headers"]
        assert server.event_requests()[0]["headers"]["Authorization"] == "Bearer secret-token"
        server.push(card(call_uuid="a"))
        wait_for(lambda: len(got) == 1, 5, "pop 1")
        server.drop()
        server.push(card(call_uuid="b"))  # while nobody listens
        wait_for(lambda: len(got) == 2, 5, "pop 2 replayed after the reconnect")
        assert server.event_requests()[-1]["headers"]["Last-Event-ID"] == "1"
        server.push(card(call_uuid="c"))
        wait_for(lambda: len(got) == 3, 5, "pop 3")
        assert [json.loads(m.data)["call_uuid"] for m in got] == ["a", "b", "c"]
        assert [m.id for m in got] == ["1", "2", "3"]
        assert states.count("connected") == 2 and "disconnected" in states
    finally:
        s.stop()


def test_the_stream_asks_for_the_trays_language_when_the_config_or_the_desktop_names_one(server, monkeypatch):
    """Accept-Language: the config's language, else the desktop's; neither: none, so the daemon's pops are in the
    operator's own setting or the organisation's language (docs/tray.md)."""
    from screenpop.tray import i18n

    monkeypatch.setenv("LANGUAGE", "is")
    assert i18n.choose("en") == "en" and i18n.asked() == "en", "the config's language first"
    assert i18n.choose("") == "is" and i18n.asked() == "is", "else the desktop's"
    monkeypatch.setenv("LANGUAGE", "de")
    assert i18n.choose("") == "en" and i18n.asked() is None, "a desktop language we have no words for: ask for none"
    got, states = [], []
    for language in ("is", None):
        s = _stream(server, got, states, language=language)
        try:
            wait_for(lambda: server.streams() == 1, 5, "the stream")
            assert server.event_requests()[-1]["headers"].get("Accept-Language") == language
        finally:
            s.stop()
        wait_for(lambda: server.streams() == 0, 5, "the stream closed")


def test_stream_backoff_doubles_to_the_cap_while_nobody_listens(server):
    port = int(server.url.rsplit(":", 1)[1])
    server.close()
    got, states = [], []
    s = EventStream(f"http://127.0.0.1:{port}", lambda: "t", got.append, lambda st, d: states.append((time.monotonic(), st)),
                    min_backoff=0.05, max_backoff=0.2)
    s.start()
    try:
        wait_for(lambda: sum(1 for _, st in states if st == "connecting") >= 6, 5, "six attempts")
    finally:
        s.stop()
    starts = [t for t, st in states if st == "connecting"]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert 0.04 <= gaps[0] < 0.15 and gaps[1] >= 0.09, gaps
    assert all(g < 0.45 for g in gaps), f"capped at max_backoff: {gaps}"


def test_stream_wrong_token_is_unauthorized_and_retries_slowly_until_reconnect(server):
    got, states = [], []
    token = ["wrong"]
    s = EventStream(server.url, lambda: token[0], got.append, lambda st, d: states.append(st), unauthorized_delay=30)
    s.start()
    try:
        wait_for(lambda: "unauthorized" in states, 5, "unauthorized")
        time.sleep(0.3)
        assert len(server.event_requests()) == 1, "no fast retry with a refused token"
        token[0] = "secret-token"  # fixed in the config; the menu's Reconnect
        s.reconnect()
        wait_for(lambda: server.streams() == 1, 5, "the stream with the right token")
        assert states[-1] == "connected"
    finally:
        s.stop()


def test_stream_stop_ends_a_quiet_connection_promptly(server):
    got, states = [], []
    s = _stream(server, got, states)
    wait_for(lambda: server.streams() == 1, 5, "the stream")
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 2 and states[-1] == "stopped"


# ---- pop text ----------------------------------------------------------------------------------------


def test_pop_text_is_the_daemons_title_and_lines_escaped_and_bold_where_it_says():
    c = customer(name="Ann <i>A</i>", company="Smith & Sons", category="problem", total_debt="1250.00", note="pays <late>",
                 orders=[{"number": "A-1", "title": "Boat & trailer", "stage": "delivery", "responsible": "Anna",
                          "amount": "2000.00", "paid": "750.00", "debt": "1250.00"}])
    pop = card(customer=c, caller_name="<b>ANN</b>", operator="Anna", at="2026-11-26T14:32:05Z")
    summary, body = card_text(pop, markup=True, summary_markup=True)
    assert summary == "Smith &amp; Sons  ⚠ PROBLEM"
    shown = body.splitlines()
    assert shown[:7] == [
        "<b>pays &lt;late&gt;</b>", "Ann &lt;i&gt;A&lt;/i&gt;", "A-1 Boat &amp; trailer: delivery · Anna · $1,250.00",
        "<b>Debt $1,250.00</b>", "Reykjavík, Iceland", "Caller ID: &lt;b&gt;ANN&lt;/b&gt;", "555 1234"]
    assert shown[7].startswith("Nov 26, ") and shown[7].endswith(" · INCOMING") and shown[8] == "Operator 1001 Anna"
    # without markup support nothing is escaped and nothing is bold
    summary, body = card_text(pop, markup=False, summary_markup=False)
    assert summary == "Smith & Sons  ⚠ PROBLEM" and body.splitlines()[:2] == ["pays <late>", "Ann <i>A</i>"]
    assert "<b>" not in body.replace("<b>ANN</b>", "")


def test_pop_text_from_a_rogue_daemon_is_still_one_escaped_line_each():
    lines = [{"text": "<a href='x'>click</a>\n\x1b[31mred", "style": "strong"}, {"text": "x" * 500}, "not a line",
             {"style": "warning"}, {"text": "&amp;", "style": "<b>"}] + [{"text": f"line {i}"} for i in range(40)]
    summary, body = card_text({"title": "<i>T</i>\r\nX", "lines": lines})
    assert summary == "&lt;i&gt;T&lt;/i&gt;  X"
    shown = body.splitlines()
    assert shown[0] == "<b>&lt;a href='x'&gt;click&lt;/a&gt;  [31mred</b>"
    assert len(shown[1]) == 120 and shown[1].endswith("…") and shown[2] == "&amp;amp;"
    assert len(shown) == 24 - 2, "at most 24 lines, the empty ones dropped"
    assert "\x1b" not in body and "\r" not in summary


def test_pop_text_of_a_card_without_lines_says_who_and_the_number():
    old = {k: v for k, v in card(number="+3545550000", caller_name="<Gunna>").items() if k not in ("title", "lines")}
    assert card_text(old) == ("&lt;Gunna&gt;", "+3545550000")
    assert card_text(card(event="dialing", direction="OUTGOING", customer=customer(company="")))[0] == "Calling Jón Jónsson"


class FakeServer:
    """Stands in for the D-Bus server (tray/bus.py's NotificationBus): records Notify/Close as the bus would get them."""

    server_name = "dunst"

    def __init__(self, capabilities=("actions", "body", "body-markup", "icon-static")):
        self.capabilities = set(capabilities)
        self.calls = []
        self.next = 40

    def notify(self, summary, body, icon, timeout, hints, actions, replaces_id=0):
        self.calls.append(("notify", {"summary": summary, "body": body, "icon": icon, "timeout": timeout,
                                      "hints": hints, "actions": actions, "replaces_id": replaces_id}))
        if replaces_id:
            return replaces_id
        self.next += 1
        return self.next

    def close(self, nid):
        self.calls.append(("close", nid))

    def notes(self) -> list[dict]:
        return [kw for kind, kw in self.calls if kind == "notify"]


def test_notifier_replaces_and_closes_by_call(tmp_path, server):
    fake = FakeServer()
    n = Notifier(PhotoCache(server.url, lambda: "secret-token", tmp_path), timeout=25, backend=fake)
    n.handle(card(call_uuid="u1", customer=customer(cid=9)))
    first = fake.notes()[0]
    assert first["timeout"] == 25 and first["replaces_id"] == 0 and first["hints"]["urgency"] == 2
    assert "placeholder-" in first["icon"], "the pop never waits for the photo"
    wait_for(lambda: len(fake.notes()) == 2, 10, "the photo put on the pop")
    again = fake.notes()[1]
    assert again["replaces_id"] == 41 and open(again["icon"], "rb").read() == server.photo
    assert {k: v for k, v in again.items() if k not in ("icon", "replaces_id")} == \
        {k: v for k, v in first.items() if k not in ("icon", "replaces_id")}, "the same pop, actions included"
    photo_req = [r for r in server.requests if "/photo" in r["path"]][0]
    assert photo_req["path"] == "/api/v1/customers/9/photo?size=64"
    assert photo_req["headers"]["Authorization"] == "Bearer secret-token"
    n.handle(card(event="answered_elsewhere", call_uuid="u1", customer=customer(cid=9),
                  taken_by={"extension": "1002", "name": "Anna"}))
    kw = fake.notes()[-1]
    assert kw["replaces_id"] == 41 and kw["summary"] == "Taken by 1002 Anna" and kw["timeout"] == 4.0
    assert kw["body"].splitlines()[0] == "<b>Norðurljós ehf.</b>" and kw["actions"] == []
    calls = len(fake.calls)
    n.handle(card(event="answered_elsewhere", call_uuid="never-shown"))
    assert len(fake.calls) == calls, "no pop was up for that call: nothing to say"
    n.handle(card(call_uuid="u2", customer=customer(cid=9)))
    assert fake.notes()[-1]["icon"] == again["icon"], "a cached photo is shown at once"
    n.handle(card(event="missed", call_uuid="u2"))
    assert fake.notes()[-1]["replaces_id"] == 42 and fake.notes()[-1]["summary"].startswith("Missed: ")
    n.handle(card(event="ended", call_uuid="u2"))
    assert fake.calls[-1] == ("close", 42)
    assert len(fake.notes()) == 5


def test_a_slow_photo_never_delays_the_pop_and_lands_only_on_the_current_pop(tmp_path, server):
    """The photo endpoint hangs (a slow daemon) until the test lets it answer: show() returning at all proves the pop
    did not wait; the photo then replaces the icon in place, but not on a pop that was closed or replaced meanwhile."""
    fake = FakeServer()
    n = Notifier(PhotoCache(server.url, lambda: "secret-token", tmp_path), timeout=25, backend=fake)
    server.photo_gate.clear()
    try:
        n.handle(card(call_uuid="slow", customer=customer(cid=5)))
        (first,) = fake.notes()
        assert "placeholder-" in first["icon"]
        n.handle(card(call_uuid="gone", customer=customer(cid=6)))
        n.handle(card(event="ended", call_uuid="gone"))
        n.handle(card(call_uuid="moved", customer=customer(cid=8)))
        n.handle(card(event="missed", call_uuid="moved", customer=customer(cid=8)))
        wait_for(lambda: len([r for r in server.requests if "/photo" in r["path"]]) == 4, 10, "four photo requests")
    finally:
        server.photo_gate.set()
    wait_for(lambda: "/photos/" in fake.notes()[-1]["icon"], 10, "the photo on the slow pop")
    photo_pops = [kw for kw in fake.notes() if "/photos/" in kw["icon"]]
    assert [kw["replaces_id"] for kw in photo_pops if kw["summary"] == first["summary"]][:1] == [41]
    time.sleep(0.5)  # the other two fetches have ended by now; neither may have re-shown its old pop
    shown = [(kw["replaces_id"], kw["summary"]) for kw in fake.notes() if "/photos/" in kw["icon"]]
    assert (42, first["summary"]) not in shown, "a closed pop never comes back for its photo"
    assert not [kw for kw in photo_pops if kw["replaces_id"] == 43 and not kw["summary"].startswith("Missed")], \
        "the ringing pop's photo never overwrites the missed pop that replaced it"


def test_an_update_redraws_only_the_pop_its_notification_still_shows():
    fake = FakeServer()
    n = Notifier(None, backend=fake)
    sources = {"pending": False, "external_id": None, "fields": [{"source": "erp", "name": "<i>Owed</i>", "value": "<b>9</b>"}]}
    ringing = {**card(call_uuid="u1"), "id": 5}
    answered = {**card(call_uuid="u1", sources=sources), "id": 5}  # the daemon's lines, with the sources' fields
    n.handle(ringing)
    n.update(answered)
    assert [kw["replaces_id"] for _, kw in fake.calls] == [0, 41], "the same notification, redrawn"
    assert "&lt;i&gt;Owed&lt;/i&gt;: &lt;b&gt;9&lt;/b&gt;" in fake.calls[-1][1]["body"].splitlines()
    n.handle({**card(event="missed", call_uuid="u1"), "id": 6})
    n.update(answered)
    n.update({**card(call_uuid="never-shown", sources=sources), "id": 7})
    assert len(fake.calls) == 3 and fake.calls[-1][1]["summary"].startswith("Missed: "), "no ringing pop comes back"
    n.handle({**card(event="ended", call_uuid="u1"), "id": 8})
    n.update(answered)
    assert fake.calls[-1] == ("close", 41)


def test_photo_urls_that_leave_the_server_are_not_fetched(tmp_path, server):
    c = customer()
    c["photo_url"] = "//evil.example/x.png"
    icon = PhotoCache(server.url, lambda: "secret-token", tmp_path).icon_for(card(customer=c))
    assert "placeholder-" in icon and not [r for r in server.requests if "/photo" in r["path"]]


# ---- config -----------------------------------------------------------------------------------------


def test_config_round_trip_and_mode(tmp_path):
    path = tmp_path / "sub" / "tray.toml"
    written = tc.setup(path, server="http://pbx.example:8080/", extension="1001", token='to"k\\en')
    assert written == path and stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = tc.load(path)
    assert cfg == tc.TrayConfig(server="http://pbx.example:8080", extension="1001", token='to"k\\en')
    assert cfg.resolved_token() == 'to"k\\en' and cfg.url("/customers/7") == "http://pbx.example:8080/customers/7"
    # a later setup keeps what it is not told; a token file replaces the token
    (tmp_path / "tok").write_text("filetoken\n")
    tc.setup(path, token_file=str(tmp_path / "tok"), interactive=False)
    cfg = tc.load(path)
    assert cfg.extension == "1001" and cfg.token == "" and cfg.resolved_token() == "filetoken"
    full = tc.TrayConfig(server="https://a.b", extension="7", token="x", notification_timeout=12.5, do_not_disturb=True)
    tc.save(full, path)
    assert tc.load(path) == full


def test_config_setup_asks_on_a_terminal(tmp_path):
    answers = iter(["http://10.0.0.5:8080", "1002"])
    tc.setup(tmp_path / "t.toml", interactive=True, ask=lambda _: next(answers), ask_secret=lambda _: "s3cret")
    assert tc.load(tmp_path / "t.toml") == tc.TrayConfig(server="http://10.0.0.5:8080", extension="1002", token="s3cret")


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "t.toml"
    for text, words in [("server = 'ftp://x'", "server"), ("colour = 1", "unknown key 'colour'"),
                        ("notification_timeout = 'long'", "notification_timeout"), ("do_not_disturb = 1", "do_not_disturb"),
                        ("server = ", "not valid TOML"), ("missed_refresh = 1", "missed_refresh must be 0"),
                        ("missed_refresh = -5", "missed_refresh")]:
        path.write_text(text)
        with pytest.raises(tc.TrayConfigError, match=words):
            tc.load(path)
    with pytest.raises(tc.TrayConfigError, match="missing extension, token"):
        tc.setup(tmp_path / "new.toml", interactive=False)
    assert tc.load(tmp_path / "absent.toml") == tc.TrayConfig()
    path.write_text("missed_refresh = 0")
    assert tc.load(path).missed_refresh == 0.0 and tc.TrayConfig().missed_refresh == 60.0


def test_default_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert tc.default_path() == tmp_path / "screenpop" / "tray.toml"


def test_cli_setup_writes_the_file_non_interactively(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "tray.toml"
    r = subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", "tray", "--setup", "--config", str(path),
                        "--server", "http://127.0.0.1:9", "--extension", "1001", "--token", "abc"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 0, r.stderr
    assert tc.load(path).token == "abc" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    r = subprocess.run([sys.executable, "-m", "screenpop.daemon.cli", "tray", "--config", str(tmp_path / "none.toml")],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode != 0 and "tray --setup" in r.stderr


def test_tray_command_logs_for_journald_under_its_user_unit(tmp_path):
    """`python -m screenpop.tray.cli`, the bundle's entry point: with stderr on the journal's stream (its user unit)
    every line carries the `<N>` priority and no time of its own; elsewhere it has a time."""
    import subprocess
    import sys

    def first_line(journal: bool) -> str:
        log = tmp_path / f"tray-{journal}.log"
        with open(log, "wb") as err:
            st = os.fstat(err.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}" if journal else "1:1"}
            proc = subprocess.Popen([sys.executable, "-m", "screenpop.tray.cli", "--config", str(tmp_path / "none.toml"),
                                     "--server", "http://127.0.0.1:9", "--extension", "1001", "--token", "t",
                                     "--no-icon"], stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            wait_for(lambda: "tray for extension" in log.read_text(), 30, "the tray's first log line")
        finally:
            proc.terminate()
            proc.wait(10)
        return next(line for line in log.read_text().splitlines() if "tray for extension" in line)

    assert first_line(True) == "<6>INFO screenpop.tray: tray for extension 1001, daemon http://127.0.0.1:9"
    terminal = first_line(False)
    assert terminal[:4].isdigit() and "INFO screenpop.tray: tray for extension 1001" in terminal


# ---- state and icons -----------------------------------------------------------------------------------


def test_tray_state_recent_calls_missed_and_ringing():
    st = TrayState(tc.TrayConfig(server="http://s:1", extension="1001"))
    st.apply(card(call_uuid="x", customer=customer(cid=3)))
    assert st.icon_kind() == "disconnected"
    st.connection = "connected"
    assert st.icon_kind() == "ringing" and st.current.path == "/customers/3"
    st.apply(card(event="missed", call_uuid="x", customer=customer(cid=3)))
    assert st.icon_kind() == "connected" and st.recent["x"].missed and "missed" in st.recent["x"].menu_text()
    for i in range(12):
        st.apply(card(call_uuid=f"c{i}", number=f"+35455500{i:02d}"))
        st.apply(card(event="ended", call_uuid=f"c{i}", number=f"+35455500{i:02d}"))
    assert len(st.recent) == 10 and "x" not in st.recent
    assert st.recent["c11"].path == "/customers/new?number=3545550011" and st.recent["c11"].number == "+3545550011"
    st.apply(card(event="missed", call_uuid="w", number="anonymous"))
    assert st.recent["w"].number is None and st.recent["w"].path is None, "withheld: nothing to call or open"
    st.apply(card(call_uuid="s", number="+3545557777", matches=2, candidates=TWINS))
    assert st.current.path == "/customers/choose?number=%2B3545557777", "several matches: the chooser, not greyed out"
    st.dnd = True
    assert st.icon_kind() == "dnd" and "do not disturb" in st.title()


def test_icons_are_drawn_for_every_state():
    images = {k: draw_icon(k) for k in ("connected", "disconnected", "ringing", "dnd", "unauthorized")}
    assert all(im.size == (64, 64) for im in images.values())
    assert len({im.tobytes() for im in images.values()}) == 5


def test_the_missed_count_is_a_badge_on_every_icon_and_in_the_tooltip():
    for kind in ("connected", "ringing", "dnd"):
        plain, three, many = draw_icon(kind), draw_icon(kind, 3), draw_icon(kind, 250)
        assert draw_icon(kind, 0).tobytes() == plain.tobytes()
        assert three.getpixel((60, 16))[:3] == BADGE and plain.getpixel((60, 16))[:3] != BADGE
        assert three.tobytes() != many.tobytes()
    st = TrayState(tc.TrayConfig(server="http://s:1", extension="1001"))
    st.connection = "connected"
    assert st.title(2) == "screenpop (1001): connected, 2 missed calls to return"
    assert st.title(1).endswith("1 missed call to return") and "missed" not in st.title(0)


def test_missed_calls_are_read_with_the_token_and_refreshed_when_poked(server):
    server.missed = missed_answer(("m1", "Acme ehf", "+3545550001"), ("m2", "withheld number", None))
    changes = []
    missed = MissedCalls(tc.TrayConfig(server=server.url, token="secret-token", extension="1001"),
                         lambda: changes.append(1), every=0)
    missed.start()
    try:
        wait_for(lambda: missed.count == 2, 10, "the first read")
        assert [(c.call_uuid, c.number, c.path) for c in missed.calls] == [
            ("m1", "+3545550001", "/customers/new?number=+3545550001&call=m1"), ("m2", None, None)]
        assert missed.calls[0].menu_text().endswith("  Acme ehf")
        asked = [r for r in server.requests if r["path"].startswith("/api/v1/missed")]
        assert asked[0]["path"] == "/api/v1/missed?state=open&limit=8"
        assert asked[0]["headers"]["Authorization"] == "Bearer secret-token"
        server.missed = missed_answer()
        missed.poke()
        wait_for(lambda: missed.count == 0 and not missed.calls, 10, "the read after the poke")
        assert len(changes) == 2
        server.missed = None  # an older daemon: 404; the last count stays, the error is kept
        missed.poke()
        wait_for(lambda: missed.error == "HTTP 404", 10, "the refusal")
    finally:
        missed.stop()
    bad = MissedCalls(tc.TrayConfig(server=server.url, token="wrong"), lambda: None, every=0)
    bad.refresh()
    assert bad.error == "HTTP 401" and bad.count == 0


def test_call_back_posts_to_originate_and_says_a_refusal_in_words(server):
    config = tc.TrayConfig(server=server.url, token="secret-token", extension="1001")
    assert call_back(config, "+3545550001") == (True, "dialling +3545550001")
    sent = [r for r in server.requests if r["path"] == "/api/v1/originate"][-1]
    assert sent["body"] == {"number": "+3545550001"} and sent["headers"]["Authorization"] == "Bearer secret-token"
    server.originate = (409, {"error": "your phone (1001) is not registered", "cause": "USER_NOT_REGISTERED"})
    assert call_back(config, "+3545550001") == (False, "your phone (1001) is not registered")
    assert call_back(tc.TrayConfig(server="http://127.0.0.1:9", token="x"), "1")[0] is False


def test_tray_modules_import_without_a_display(monkeypatch):
    import importlib
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    code = "import screenpop.tray.app, screenpop.tray.notify, screenpop.tray.stream, screenpop.tray.config, sys; " \
           "assert 'pystray' not in sys.modules and 'gi' not in sys.modules and 'dbus' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert importlib.import_module("screenpop.tray")


def _tray_cmd(server_url: str, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "screenpop.daemon.cli", "tray", "--config", "/nonexistent/tray.toml",
            "--server", server_url, "--extension", "1001", "--token", "secret-token", *extra]


def test_without_a_display_the_tray_says_so(server):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND")}
    r = subprocess.run(_tray_cmd(server.url), env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--no-icon" in r.stderr and "Traceback" not in r.stderr


def test_no_icon_mode_follows_the_stream_even_without_a_notification_server(server, tmp_path):
    import signal
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS")}
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={tmp_path}/no-bus"
    env["XDG_CACHE_HOME"] = str(tmp_path)
    log = tmp_path / "tray.log"
    with open(log, "wb") as fh:
        p = subprocess.Popen(_tray_cmd(server.url, "--no-icon"), env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: server.streams() == 1, 15, "the stream")
        server.push(card(customer=customer()))
        wait_for(lambda: "pop 1 ringing" in log.read_text() and "no notification server" in log.read_text(), 10, "the pop")
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert "Traceback" not in log.read_text()


def test_a_replayed_call_that_is_already_over_does_not_flash_up(server, tmp_path):
    from screenpop.tray.app import TrayApp

    fake = FakeServer()
    app = TrayApp(tc.TrayConfig(server=server.url, extension="1001", token="secret-token"), show_icon=False,
                  backend=fake)
    app.stream.start()
    try:
        wait_for(lambda: server.streams() == 1, 5, "the stream")
        server.push(card(call_uuid="live"))
        wait_for(lambda: len(fake.calls) == 1, 5, "the live pop")
        server.gate.clear()
        server.drop()
        server.push(card(call_uuid="over"))
        server.push(card(event="answered", call_uuid="over"))
        server.push(card(call_uuid="still", number="+3545550001"))
        server.push(card(call_uuid="other", extension="1002"))
        server.gate.set()
        wait_for(lambda: len(app.state.recent) == 3, 5, "the replay")
        titles = [kw["summary"] for kw in fake.notes()]
        assert len(titles) == 2 and titles[1] == "555 0001", "only the call still ringing pops again"
        assert list(app.state.recent) == ["live", "over", "still"] and app.state.ringing == {"live", "still"}
    finally:
        app.stream.stop()


def test_reconnect_drops_a_quiet_connection_at_once():
    server = PushServer(retry_ms=100, keepalive=30.0)  # no byte for 30 s: only an abort ends the read
    got, states = [], []
    s = _stream(server, got, states)
    try:
        wait_for(lambda: server.streams() == 1, 5, "the stream")
        server.push(card())
        wait_for(lambda: len(got) == 1, 5, "the pop")
        s.reconnect()
        wait_for(lambda: len(server.event_requests()) == 2, 3, "the second connection")
        assert server.event_requests()[1]["headers"]["Last-Event-ID"] == "1"
    finally:
        s.stop()
        server.close()


# ---- actions on the pop ---------------------------------------------------------------------------------

HOSTILE_ID = '<b>x</b>" & \x1b[31m\n<a href="javascript:alert(1)">y</a>'
TWINS = [{"id": 1, "name": "Twin 1", "company": "T"}, {"id": 2, "name": "Twin 2", "company": "T"}]


@pytest.mark.parametrize("kind, c, page, keys", [
    ("known", card(customer=customer(cid=7)), "/customers/7", ["default", "open"]),
    ("vip", card(customer=customer(cid=7, category="vip")), "/customers/7", ["default", "open"]),
    ("problem", card(customer=customer(cid=7, category="problem")), "/customers/7", ["default", "open"]),
    ("several", card(number="+3545557777", matches=2, candidates=TWINS),
     "/customers/choose?number=%2B3545557777", ["default", "choose"]),
    ("unknown", card(number="+3545550042"), "/customers/new?number=3545550042", ["default", "new"]),
    ("withheld", card(number="anonymous"), None, []),
    ("named by a source", {**card(number="+3545550042"), "record_url": "/customers/9"}, "/customers/9",
     ["default", "open"]),
    ("internal", card(number="1002", direction="INTERNAL"), None, []),
    ("dialing", card(event="dialing", direction="OUTGOING", customer=customer(cid=7)), "/customers/7",
     ["default", "open"]),
    ("missed known", card(event="missed", customer=customer(cid=7)), "/customers/7", ["default", "open", "call"]),
    ("missed several", card(event="missed", number="+3545557777", matches=2, candidates=TWINS),
     "/customers/choose?number=%2B3545557777", ["default", "choose", "call"]),
    ("missed unknown", card(event="missed", number="+3545550042"), "/customers/new?number=3545550042",
     ["default", "new", "call"]),
    ("missed withheld", card(event="missed", number="anonymous"), None, []),
    ("missed internal", card(event="missed", number="1002", direction="INTERNAL"), None, ["call"]),
    ("answered", card(event="answered", customer=customer(cid=7)), None, []),
    ("ended", card(event="ended", number="+3545550042"), None, []),
])
def test_actions_for_each_kind_of_pop(kind, c, page, keys):
    from screenpop.tray.actions import actions_for

    a = actions_for(c)
    assert a.page == page, kind
    listed = a.dbus_list()
    assert listed[::2] == keys, kind
    assert all(isinstance(x, str) and x.isprintable() for x in listed)
    assert (a.number is not None) == ("call" in keys)
    if "call" in keys:
        assert a.number == c["number"] and listed[listed.index("call") + 1] == "Call back"
    labels = dict(zip(listed[::2], listed[1::2]))
    assert labels.get("default", labels.get("open")) == labels.get("open", labels.get("default"))


def test_hostile_caller_id_and_number_never_change_the_actions():
    """The labels are the tray's own, the page is only ever the daemon's record_url path, and a number the daemon
    did not declare callable (or one with control characters) is never dialled."""
    from screenpop.tray.actions import actions_for

    plain = actions_for(card(event="missed", number="+3545550042"))
    hostile = actions_for(card(event="missed", number="+3545550042", caller_name=HOSTILE_ID))
    assert hostile == plain
    c = card(event="missed", number=HOSTILE_ID)
    c["can_call"] = True  # even if a daemon said so
    assert actions_for(c).number is None
    for url in ("javascript:alert(1)", "//evil.example/x", "https://evil.example", "/customers/1\r\nX: y", 7, None):
        c = card(event="missed", customer=customer(cid=7))
        c["record_url"] = url
        a = actions_for(c)
        assert a.page is None and a.dbus_list()[::2] == ["call"], url
    c = card(customer=customer(cid=7))
    c["record_url"] = "https://pbx.example:8443/customers/7"  # [http] public_url set: cut to the path
    assert actions_for(c).page == "/customers/7"
    c = card(event="missed", number="+3545550042")
    del c["can_call"]  # an older daemon: no Call back rather than a guess
    assert actions_for(c).number is None


def test_notifier_hands_clicks_to_the_tray_and_forgets_closed_pops():
    got = []
    fake = FakeServer()
    n = Notifier(None, backend=fake, on_action=lambda c, a, k: got.append((c["call_uuid"], a.page, a.number, k)))
    n.handle(card(call_uuid="r1", customer=customer(cid=7)))
    assert fake.notes()[-1]["actions"] == ["default", "Open", "open", "Open"]
    n.invoked(41, "default")
    n.handle(card(event="missed", call_uuid="r1", customer=customer(cid=7)))
    assert fake.notes()[-1]["replaces_id"] == 41, "the missed pop replaces the ringing one, with its own actions"
    assert fake.notes()[-1]["actions"] == ["default", "Open", "open", "Open", "call", "Call back"]
    n.invoked(41, "call")
    n.invoked(99, "default")  # not ours
    assert got == [("r1", "/customers/7", None, "default"), ("r1", "/customers/7", "+3545551234", "call")]
    n.closed(41, 2)  # dismissed
    n.invoked(41, "default")
    assert len(got) == 2, "a dismissed pop's id means nothing any more"
    n.handle(card(event="missed", call_uuid="r1", customer=customer(cid=7)))
    assert fake.notes()[-1]["replaces_id"] == 0, "a call whose pop was dismissed pops anew"


def test_a_server_without_actions_gets_none():
    fake = FakeServer(capabilities=("body", "body-markup"))
    n = Notifier(None, backend=fake, on_action=lambda *a: pytest.fail("no actions"))
    n.handle(card(event="missed", customer=customer(cid=7)))
    assert fake.notes()[-1]["actions"] == []
    n.invoked(41, "default")


@pytest.mark.parametrize("status, answer, words", [
    (200, {"status": "dialling", "uuid": ""}, "Your phone answered: dialling +3545550042."),
    (409, {"error": "your phone (1001) is not registered with FreeSWITCH: is it switched on and signed in?",
           "cause": "USER_NOT_REGISTERED"},
     "Not called: your phone (1001) is not registered with FreeSWITCH: is it switched on and signed in?"),
    (429, {"error": "too many calls started: try again in 4 s"}, "Not called: too many calls started: try again in 4 s."),
    (502, None, "Not called: HTTP 502."),
])
def test_call_back_posts_the_number_and_tells_the_answer_in_words(server, status, answer, words):
    from screenpop.tray.app import TrayApp

    fake = FakeServer()
    app = TrayApp(tc.TrayConfig(server=server.url, extension="1001", token="secret-token"), show_icon=False,
                  backend=fake)
    server.originate = (status, answer)
    app.notifier.handle(card(event="missed", call_uuid="m1", number="+3545550042"))
    app.notifier.invoked(41, "call")
    wait_for(lambda: len(fake.notes()) == 3, 10, "the Call back's answer")
    assert server.originates() == [{"number": "+3545550042"}]
    post = [r for r in server.requests if r["path"] == "/api/v1/originate"][0]
    assert post["headers"]["Authorization"] == "Bearer secret-token"
    calling, answered = fake.notes()[1:]
    assert calling["replaces_id"] == answered["replaces_id"] == 41, "the missed pop turns into the Call back's answer"
    assert calling["summary"] == answered["summary"] == "Call back +3545550042"
    assert answered["body"] == esc(words) and answered["actions"] == []


def test_call_back_says_so_when_the_daemon_cannot_be_reached():
    from support import free_port
    from screenpop.tray.app import TrayApp

    fake = FakeServer()
    app = TrayApp(tc.TrayConfig(server=f"http://127.0.0.1:{free_port()}", extension="1001", token="t"),
                  show_icon=False, backend=fake)
    app.call_back("+3545550042")
    wait_for(lambda: len(fake.notes()) == 2, 10, "the answer")
    assert fake.notes()[1]["body"].startswith("Not called: the daemon did not answer (")
