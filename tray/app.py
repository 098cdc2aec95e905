"""`screenpop tray`: the workstation client. A tray icon with a menu, fed by the daemon's push stream, popping a
native notification for each call to this operator.

pystray is imported only in `run` (it raises at import without a display). On Linux its backend is chosen
here rather than by pystray's guess: appindicator when a StatusNotifier host is on the session bus (GNOME with
the extension, KDE, most panels), else gtk (a Gtk.StatusIcon in an XEmbed tray such as trayer, stalonetray,
xfce4-panel); never xorg, which has no menu. $PYSTRAY_BACKEND still wins.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from screenpop.tray import http, i18n
from screenpop.tray.actions import CALL, PopActions, call_number, page_path
from screenpop.tray.config import TrayConfig, TrayConfigError
from screenpop.tray.i18n import gettext as _
from screenpop.tray.missed import MissedCalls
from screenpop.tray.notify import Notifier, PhotoCache, caller_label
from screenpop.tray import originate
from screenpop.tray.stream import EventStream, Message
from screenpop.tray.text import local_time, one_line

log = logging.getLogger("screenpop.tray")

RECENT = 10
ICON_SIZE = 64
COLOURS = {
    "connected": (46, 160, 67),
    "ringing": (230, 120, 0),
    "dnd": (200, 40, 40),
    "disconnected": (130, 130, 130),
    "unauthorized": (130, 130, 130),
}
BADGE = (215, 25, 32)  # the missed calls' count


def draw_icon(kind: str, missed: int = 0):
    """The tray icon for a state, drawn with Pillow: a handset on a coloured disc; a bar for do-not-disturb,
    a cross when disconnected, an exclamation mark when the token is refused, waves while ringing; with the
    number of missed calls still to be returned on a red badge (none when 0)."""
    img = _state_icon(kind)
    if missed > 0:
        _badge(img, missed)
    return img


def _badge(img, count: int) -> None:
    """The missed calls' count, white on a red disc in the icon's top right corner ("99+" above 99)."""
    from PIL import ImageDraw, ImageFont

    text = str(count) if count < 100 else "99+"
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=30 if len(text) == 1 else 24 if len(text) == 2 else 18)
    left, top, right, bottom = d.textbbox((0, 0), text, font=font)
    w = max(right - left + 10, 34)
    box = (ICON_SIZE - w, 0, ICON_SIZE - 1, 33)
    d.rounded_rectangle(box, radius=17, fill=BADGE + (255,), outline=(255, 255, 255, 255), width=2)
    d.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text, font=font, fill=(255, 255, 255, 255), anchor="mm")


def _state_icon(kind: str):
    from PIL import Image, ImageDraw

    s = ICON_SIZE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((2, 2, s - 2, s - 2), fill=COLOURS.get(kind, COLOURS["disconnected"]) + (255,))
    white = (255, 255, 255, 255)
    if kind == "dnd":
        d.rounded_rectangle((14, s // 2 - 6, s - 14, s // 2 + 6), radius=4, fill=white)
        return img
    # handset: two ear/mouth pieces joined by an arc
    d.arc((16, 14, 48, 50), start=110, end=250, fill=white, width=7)
    d.rounded_rectangle((20, 10, 32, 22), radius=3, fill=white)
    d.rounded_rectangle((20, 42, 32, 54), radius=3, fill=white)
    if kind == "ringing":
        for r in (8, 16):
            d.arc((36 - r, 32 - r, 36 + r, 32 + r), start=-50, end=50, fill=white, width=4)
    elif kind == "disconnected":
        d.line((38, 24, 54, 40), fill=white, width=5)
        d.line((54, 24, 38, 40), fill=white, width=5)
    elif kind == "unauthorized":
        d.rectangle((43, 16, 49, 38), fill=white)
        d.rectangle((43, 43, 49, 49), fill=white)
    return img


@dataclass
class RecentCall:
    call_uuid: str
    label: str
    at: str
    event: str
    path: str | None  # the daemon page for this call (the record, the new-caller page or the chooser)
    missed: bool = False
    number: str | None = None  # the number Call back dials, when the daemon says it can be called

    def menu_text(self) -> str:
        mark = "✗ missed · " if self.missed else ""
        return f"{mark}{local_time(self.at)}  {self.label}"


class TrayState:
    """What the tray shows; no GUI here, so it is tested directly."""

    def __init__(self, config: TrayConfig) -> None:
        self.config = config
        self.connection = "disconnected"
        self.detail = ""
        self.dnd = config.do_not_disturb
        self.recent: OrderedDict[str, RecentCall] = OrderedDict()
        self.ringing: set[str] = set()
        self.current: RecentCall | None = None
        self.lock = threading.Lock()

    def icon_kind(self) -> str:
        if self.connection in ("unauthorized",):
            return "unauthorized"
        if self.connection != "connected":
            return "disconnected"
        if self.dnd:
            return "dnd"
        return "ringing" if self.ringing else "connected"

    def title(self, missed: int = 0) -> str:
        text = {"connected": "connected", "unauthorized": "token refused", "connecting": "connecting"}.get(
            self.connection, "not connected")
        ext = f" ({self.config.extension})" if self.config.extension else ""
        dnd = ", do not disturb" if self.dnd else ""
        to_return = f", {missed} missed call{'s' if missed != 1 else ''} to return" if missed > 0 else ""
        return f"screenpop{ext}: {text}{dnd}{to_return}"

    def apply(self, card: dict) -> None:
        """A card for this operator: remember the call, follow what is ringing."""
        uuid = card.get("call_uuid") or str(card.get("id"))
        event = card.get("event") or ""
        with self.lock:
            entry = self.recent.pop(uuid, None)
            if entry is None:
                entry = RecentCall(uuid, caller_label(card), card.get("at") or "", event, page_path(card),
                                   number=call_number(card))
            else:
                entry.event = event
                entry.label = caller_label(card) or entry.label
                entry.path = page_path(card) or entry.path
                entry.number = call_number(card) or entry.number
            entry.missed = entry.missed or event == "missed"
            self.recent[uuid] = entry
            self.recent.move_to_end(uuid)
            while len(self.recent) > RECENT:
                self.recent.popitem(last=False)
            if event in ("ringing", "dialing"):
                self.ringing.add(uuid)
                self.current = entry
            else:
                self.ringing.discard(uuid)
                if self.current is None or self.current.call_uuid == uuid or not self.ringing:
                    self.current = entry


def choose_backend() -> str:
    """pystray backend on Linux: appindicator when a StatusNotifierWatcher runs, else gtk."""
    try:
        import dbus

        bus = dbus.SessionBus(private=True)
        try:
            names = {str(n) for n in bus.list_names()}
        finally:
            bus.close()
        if "org.kde.StatusNotifierWatcher" in names:
            return "appindicator"
    except Exception:  # noqa: BLE001 - no dbus-python or no session bus: the XEmbed tray is the way
        pass
    return "gtk"


class TrayApp:
    """The tray: the stream's cards to the notifier and the menu; the pops' actions and the menu's entries carried
    out (pages opened signed in, Call back through the daemon). backend: the notification server (tests)."""

    def __init__(self, config: TrayConfig, show_icon: bool = True, backend: Any = None) -> None:
        self.config = config
        self.state = TrayState(config)
        self.show_icon = show_icon
        self.icon: Any = None
        self._pystray: Any = None
        self._quit = threading.Event()
        self.notifier = Notifier(PhotoCache(config.server, config.resolved_token), timeout=config.notification_timeout,
                                 backend=backend, on_action=self.on_action)
        self.stream = EventStream(config.server, config.resolved_token, self.on_message, self.on_state,
                                  on_batch=self.on_batch, language=i18n.asked())
        self.missed = MissedCalls(config, self.refresh, config.missed_refresh)
        self.call_back_failed = ""  # the last Call back's refusal in words, shown in the missed section

    # ---- stream callbacks (stream thread) --------------------------------------------------------

    def on_state(self, state: str, detail: str) -> None:
        previous = self.state.connection
        self.state.connection, self.state.detail = state, detail
        if state != previous:
            log.info("state %s%s", state, f" ({detail})" if detail else "")
        self.refresh()

    def on_message(self, msg: Message) -> None:
        self.on_batch([msg], False)

    def on_batch(self, msgs: list[Message], replayed: bool = False) -> None:
        """Cards for this operator, in order. In the replay after a reconnect, a ringing whose call already moved
        on later in the replay is remembered but not popped: it would flash up and close at once."""
        cards, updates = [], []
        for msg in msgs:
            if msg.event not in ("pop", "update"):
                continue
            try:
                card = json.loads(msg.data)
            except ValueError:
                log.warning("pop %s is not JSON; skipped", msg.id)
                continue
            if not isinstance(card, dict):
                continue
            if self.config.extension and str(card.get("extension") or "") not in ("", self.config.extension):
                continue
            if msg.event == "update":
                updates.append(card)  # the same pop with what the daemon's sources answered (docs/card.md)
            else:
                cards.append((msg.id, card))
        moved_on = {card.get("call_uuid"): i for i, (_, card) in enumerate(cards)
                    if replayed and card.get("event") not in ("ringing", "dialing")}
        for i, (pop_id, card) in enumerate(cards):
            self.state.apply(card)
            stale = card.get("event") in ("ringing", "dialing") and moved_on.get(card.get("call_uuid"), -1) > i
            quiet = self.state.dnd and card.get("event") in ("ringing", "dialing", "missed")
            log.info("pop %s %s %s%s", pop_id, card.get("event"), caller_label(card),
                     " (do not disturb)" if quiet else " (already over)" if stale else "")
            if not (quiet or stale):
                self.notifier.handle(card)
        if any(card.get("event") in ("missed", "answered") for _, card in cards):
            self.missed.poke()  # a new missed call, or an answer that may have returned one
        for card in updates:
            log.info("pop %s updated by the sources", card.get("id"))
            self.notifier.update(card)
        if cards:
            self.refresh()

    # ---- GUI -------------------------------------------------------------------------------------

    def refresh(self) -> None:
        icon = self.icon
        if icon is None:
            return
        icon.icon = draw_icon(self.state.icon_kind(), self.missed.count)
        icon.title = self.state.title(self.missed.count)
        icon.update_menu()

    def open_page(self, path: str) -> None:
        """Open a daemon page in the browser, signed in: through a one-time link minted with this tray's token
        (docs/web.md), or the plain page (which asks to sign in) when minting fails. The link is never logged."""
        threading.Thread(target=self._open_page, args=(path,), daemon=True).start()

    def _open_page(self, path: str) -> None:
        import webbrowser

        url = self.config.url(path)
        try:
            status, body = http.post_json(self.config.url("/api/v1/signin-links"), {"next": path},
                                          {"Authorization": f"Bearer {self.config.resolved_token()}"}, timeout=5.0)
            link = body.get("url") if isinstance(body, dict) else None
            if status == 201 and isinstance(link, str) and link.startswith(("http://", "https://")):
                url = link
            else:
                log.warning("no sign-in link for %s (HTTP %d); opening the page itself", path, status)
        except (OSError, ValueError, TrayConfigError) as exc:
            log.warning("no sign-in link for %s (%s); opening the page itself", path, exc)
        log.info("opening %s", path)
        webbrowser.open(url)

    def on_action(self, card: dict, actions: PopActions, key: str) -> None:
        """A click or a button on a pop (the notification server's thread): Call back dials, anything else opens the
        pop's page."""
        if key == CALL and actions.number:
            self.call_back(actions.number, card.get("call_uuid") or "callback")
        elif actions.page:
            self.open_page(actions.page)

    def call_back(self, number: str, key: str = "callback") -> None:
        """Call back (tray/originate.py): the operator's phone rings, then the number is dialled. What happens is told
        in a short notification replacing the pop it came from (key: its call) and, once FreeSWITCH answered, in
        words; a refusal also stays in the missed section until the next Call back. The call then pops `dialing`."""
        threading.Thread(target=self._call_back, args=(number, key), name="call-back", daemon=True).start()

    def _call_back(self, number: str, key: str) -> None:
        title = _("Call back %(number)s", number=one_line(number, 40))
        self.notifier.status(key, title, _("Your phone rings first: pick it up and the number is dialled."))
        placed, words = originate.call_back(self.config, number)
        self.call_back_failed = "" if placed else words
        if placed:
            self.missed.poke()
        self.refresh()
        text = one_line(words, 300)
        end = "" if text.endswith((".", "?", "!")) else "."
        self.notifier.status(key, title, _("Your phone answered: %(text)s", text=text + end) if placed
                             else _("Not called: %(text)s", text=text + end))

    def toggle_dnd(self, *_: Any) -> None:
        self.state.dnd = not self.state.dnd
        log.info("do not disturb %s", "on" if self.state.dnd else "off")
        self.refresh()

    def reconnect(self, *_: Any) -> None:
        log.info("reconnecting on request")
        self.stream.reconnect()

    def quit(self, *_: Any) -> None:
        log.info("quitting")
        self._quit.set()
        self.missed.stop()
        self.stream.stop(timeout=2.0)
        if self.icon is not None:
            self.icon.stop()

    def menu_items(self) -> list:
        """The menu, rebuilt on every update_menu (pystray evaluates the callable then)."""
        ps = self._pystray
        Item, Menu = ps.MenuItem, ps.Menu
        items = []
        with self.state.lock:
            current = self.state.current
            recent = list(reversed(self.state.recent.values()))

        def opener(path: str | None):
            return (lambda *_: self.open_page(path)) if path else (lambda *_: None)

        if current is not None:
            items.append(Item(one_line(current.label, 60), opener(current.path), enabled=bool(current.path), default=True))
        # record_url is the customer's record, /customers/new?number=… for a stranger, the chooser for a shared number
        sub = [Item(one_line(r.menu_text(), 70), opener(r.path), enabled=bool(r.path)) for r in recent]
        sub += self._call_back_items(recent)
        items.append(Item(_("Recent calls"), Menu(*sub) if sub else None, enabled=bool(sub)))
        items.append(Menu.SEPARATOR)
        items.extend(self.missed_section(opener))
        items.append(Menu.SEPARATOR)
        items.append(Item(_("Do not disturb"), self.toggle_dnd, checked=lambda _: self.state.dnd))
        # the calls this operator may see (their own; a manager's token, everyone's): the dashboard is a manager's
        items.append(Item(_("Open call list"), lambda *_: self.open_page("/calls")))
        items.append(Item(_("Reconnect"), self.reconnect))
        items.append(Menu.SEPARATOR)
        items.append(Item(_("Quit"), self.quit))
        return items

    # ---- missed calls to return (tray/missed.py) ---------------------------------------------------

    def missed_section(self, opener: Callable[[str | None], Callable]) -> list:
        """The menu's missed-calls section: how many are still to be returned, the newest of them (each with Open
        and Call back), and the whole list on the web (this operator's)."""
        Item, Menu = self._pystray.MenuItem, self._pystray.Menu
        with self.missed.lock:
            count, rows, error = self.missed.count, list(self.missed.calls), self.missed.error
        head = _("Missed calls to return: %(count)s", count=count) if count else _("No missed calls to return")
        items = [Item(head + (" (not updated)" if error else ""), None, enabled=False)]
        if self.call_back_failed:
            items.append(Item(one_line(_("Call back failed: %(reason)s", reason=self.call_back_failed), 80), None, enabled=False))
        for row in rows:
            items.append(Item(row.menu_text(), Menu(
                Item(_("Open"), opener(row.path), enabled=bool(row.path)),
                Item(_("Call back"), (lambda n: lambda *_: self.call_back(n))(row.number), enabled=bool(row.number)))))
        ext = self.config.extension
        items.append(Item(_("Open missed calls list"), opener("/missed" + (f"?extension={quote(ext)}" if ext else ""))))
        return items

    def _call_back_items(self, recent: list[RecentCall]) -> list:
        """Recent calls' last entry: "Call back", a submenu of the recent calls that can be called back."""
        Item, Menu = self._pystray.MenuItem, self._pystray.Menu
        calls = [Item(one_line(r.menu_text(), 70), (lambda n: lambda *_: self.call_back(n))(r.number))
                 for r in recent if r.number]
        return [Menu.SEPARATOR, Item(_("Call back"), Menu(*calls))] if calls else []

    def run(self) -> int:
        log.info("tray for extension %s, daemon %s", self.config.extension or "(any)", self.config.server)
        if not self.show_icon:
            return self._run_headless()
        import os

        if sys.platform.startswith("linux"):
            if not os.environ.get("PYSTRAY_BACKEND"):
                os.environ["PYSTRAY_BACKEND"] = choose_backend()
            # A tray icon draws no OpenGL; without this GDK probes GLX at start and Mesa (with LLVM) costs ~50 MB.
            os.environ.setdefault("GDK_GL", "disable")
        try:
            with http.without_ssl(not self.config.server.startswith("https:")):
                import pystray
        except Exception as exc:  # noqa: BLE001 - pystray raises at import when there is no display or backend
            log.error("no tray icon possible here (%s); run with --no-icon for notifications only", exc)
            return 2
        self._pystray = pystray
        log.info("tray icon through pystray's %s backend", os.environ.get("PYSTRAY_BACKEND", "default"))
        self.icon = pystray.Icon("screenpop", draw_icon(self.state.icon_kind()), self.state.title(),
                                 menu=pystray.Menu(self.menu_items))
        self._signals()

        def setup(icon) -> None:
            icon.visible = True
            self.stream.start()
            self.missed.start()

        self.icon.run(setup=setup)
        self.stream.stop(timeout=2.0)
        return 0

    def _signals(self) -> None:
        """SIGTERM/SIGINT end the GTK main loop cleanly (Python handlers would wait for it to return)."""
        try:
            from gi.repository import GLib

            for sig in (signal.SIGTERM, signal.SIGINT):
                GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (self.quit(), False)[1])
        except Exception:  # noqa: BLE001 - not GTK (Windows, macOS): Ctrl-C ends it
            pass

    def _run_headless(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, lambda *_: self._quit.set())
            except ValueError:
                pass
        self.stream.start()
        while not self._quit.wait(0.5):
            pass
        self.stream.stop(timeout=2.0)
        return 0


def run(config: TrayConfig, show_icon: bool = True) -> int:
    return TrayApp(config, show_icon).run()
