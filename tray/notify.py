"""The pop itself: a native desktop notification with the customer's card, its actions, and its photo.

Linux: the freedesktop notification server over D-Bus (tray/bus.py): the id `Notify` returns is kept, so a pop is
replaced ("Missed", the photo once it arrives, a Call back's answer) and closed by id when the call is answered
elsewhere or ends; when the server has the `actions` capability the pop carries its actions (tray/actions.py) and
a click or a button is handed to the tray (`on_action`). Elsewhere (Windows, macOS): plyer's facade, with neither
close nor actions (their notification APIs through plyer have none).

The photo never delays a pop: it is shown at once with the cached photo or a drawn placeholder, the photo is fetched
in the background, and the pop is replaced in place (same id, same actions) when it arrives, if that pop is still
the one on screen for its call.

What a pop says is the daemon's: the card's title and lines (docs/card.md), built there from one layout. Here
each is kept to one line and escaped for the server's body markup (the daemon's text holds what strangers and
users typed), and the lines the daemon marks strong or warning are bold.
"""
from __future__ import annotations

import hashlib
import html
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenpop.tray import http
from screenpop.tray.actions import NONE, PopActions, actions_for
from screenpop.tray.bus import APP_NAME
from screenpop.tray.text import one_line

log = logging.getLogger("screenpop.tray.notify")

PHOTO_SIZE = 64  # dunst's defaults (300 px wide, icons up to 128 px) leave ~35 characters a line beside it
PHOTO_MAX_BYTES = 2 << 20
PHOTO_FRESH_SECONDS = 3600.0
PHOTO_TIMEOUT = 5.0  # the background fetch: the pop is already up, so a slow daemon only delays the photo
KEEP_POPS = 64
STATUS_SECONDS = 8.0  # a Call back's answer
POP_EVENTS = ("ringing", "dialing")
CLOSE_EVENTS = ("ended", "transferred")
TAKEN_SECONDS = 4.0  # how long "Taken by 1002 Anna" stands in for the pop of a call answered elsewhere
TITLE_MAX = 80
LINE_MAX = 120  # the daemon keeps lines shorter; a longer one is cut here, never passed on
MAX_LINES = 24
BOLD_STYLES = ("strong", "warning")
# Servers that parse markup in the summary too (the spec says plain text; these apply body rules to it). Not dunst:
# since 1.4 it escapes the summary itself, so an escaped one shows "&amp;" (seen on the desktop tests' screenshots).
SUMMARY_MARKUP_SERVERS = {"mako"}


def esc(text: Any) -> str:
    """Text for the notification server's markup: & < > escaped (quotes need no escape outside attributes)."""
    return html.escape("" if text is None else str(text), quote=False)


def caller_label(card: dict) -> str:
    """Who this call is with, in one plain line (for the tray menu and logs)."""
    customer = card.get("customer") or {}
    if customer:
        who = customer.get("company") or customer.get("name")
        if customer.get("company") and customer.get("name"):
            who = f"{customer['name']} ({customer['company']})"
        return one_line(who, 60)
    if (card.get("matches") or 0) > 1:
        return one_line(f"{card.get('number') or ''}: {card['matches']} customers", 60)
    return one_line(card.get("caller_name") or card.get("number") or "unknown caller", 60)


def card_text(card: dict, markup: bool = True, summary_markup: bool = True) -> tuple[str, str]:
    """Summary and body of a pop: the title and lines the daemon built (docs/card.md), each piece of text on one
    line and escaped for the server's markup, strong and warning lines bold. A card without lines (a daemon from
    before them) says who it is and the number."""
    e = esc if markup else _plain
    es = esc if summary_markup else _plain
    title = one_line(card.get("title"), TITLE_MAX) or caller_label(card)
    lines = card.get("lines")
    if not isinstance(lines, list):
        return es(title), e(one_line(card.get("number"), 40))
    body = []
    for item in lines[:MAX_LINES]:
        text = one_line(item.get("text"), LINE_MAX) if isinstance(item, dict) else ""
        if text:
            bold = markup and item.get("style") in BOLD_STYLES
            body.append(f"<b>{e(text)}</b>" if bold else e(text))
    return es(title), "\n".join(body)


def _plain(text: Any) -> str:
    return "" if text is None else str(text)


# ---- icons --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "screenpop" / "tray"


_COLOURS = {"vip": (196, 148, 0), "problem": (190, 40, 40), "regular": (40, 110, 180), None: (120, 120, 120)}


def placeholder(folder: Path, card: dict) -> Path:
    """A drawn icon (initials on a circle coloured by category, or '?' for a stranger), cached by content."""
    customer = card.get("customer") or None
    if customer:
        words = [w for w in one_line(customer.get("name") or customer.get("company")).split() if w[:1].isalnum()]
        initials = "".join(w[0] for w in words[:2]).upper() or "?"
        colour = _COLOURS.get((customer.get("category") or "regular").lower(), _COLOURS["regular"])
    else:
        initials, colour = ("#" if (card.get("matches") or 0) > 1 else "?"), _COLOURS[None]
    key = hashlib.sha1(f"{initials}|{colour}".encode()).hexdigest()[:16]
    path = folder / f"placeholder-{key}.png"
    if path.exists():
        return path
    from PIL import Image, ImageDraw, ImageFont

    size = PHOTO_SIZE
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse((4, 4, size - 4, size - 4), fill=colour + (255,))
    try:
        font = ImageFont.load_default(size=size // 2.6)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.text((size / 2, size / 2), initials, fill=(255, 255, 255, 255), font=font, anchor="mm")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    img.save(tmp, "PNG")
    os.replace(tmp, path)
    return path


class PhotoCache:
    """Customer photos fetched from the daemon with the Bearer token, kept in a cache folder for an hour."""

    def __init__(self, server: str, token: Callable[[], str], folder: Path | None = None,
                 timeout: float = PHOTO_TIMEOUT) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.folder = folder or cache_dir()
        self.timeout = timeout

    def _url(self, card: dict) -> str | None:
        """The photo's URL on the daemon, or None: relative URLs only, so the token never goes to another host."""
        customer = card.get("customer") or None
        url = customer.get("photo_url") if customer else None
        if not (isinstance(url, str) and url.startswith("/") and not url.startswith("//")):
            return None
        return self.server + url + ("&" if "?" in url else "?") + f"size={PHOTO_SIZE}"

    def _file(self, full: str) -> Path:
        return self.folder / "photos" / (hashlib.sha1(full.encode()).hexdigest()[:20] + ".img")

    def _placeholder(self, card: dict) -> str:
        try:
            return str(placeholder(self.folder, card))
        except OSError as exc:
            log.warning("cannot draw a placeholder icon: %s", exc)
            return ""

    def icon_now(self, card: dict) -> tuple[str, bool]:
        """The icon to show at once, without the network: the cached photo (however old), else the placeholder; and
        whether the photo is worth fetching now (none cached, or older than an hour)."""
        full = self._url(card)
        if full is None:
            return self._placeholder(card), False
        path = self._file(full)
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return self._placeholder(card), True
        return str(path), age >= PHOTO_FRESH_SECONDS

    def icon_for(self, card: dict) -> str:
        """A local file for the pop's icon, fetching the photo when the cached one is missing or old: the photo when
        the daemon has one, else a placeholder. It waits for the daemon (up to `timeout`): call it off the pop's path."""
        full = self._url(card)
        path = self._photo(full) if full else None
        return str(path) if path is not None else self._placeholder(card)

    def _photo(self, full: str) -> Path | None:
        path = self._file(full)
        try:
            if time.time() - path.stat().st_mtime < PHOTO_FRESH_SECONDS:
                return path
        except OSError:
            pass
        url = full[len(self.server):]
        try:
            # tray/http.py, not urllib.request: a plain-http tray never loads ssl, http.client or email
            with http.get(full, {"Authorization": f"Bearer {self.token()}"}, timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise http.HTTPError(f"HTTP {resp.status} {resp.reason}")
                ctype = resp.header("Content-Type")
                data = resp.read(PHOTO_MAX_BYTES + 1)
        except (OSError, ValueError) as exc:
            log.info("no photo from %s: %s", url, exc)
            return path if path.exists() else None
        if not ctype.startswith("image/") or len(data) > PHOTO_MAX_BYTES or not data:
            log.info("no photo from %s: %s, %d bytes", url, ctype or "no Content-Type", len(data))
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path


# ---- the notification server --------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """One pop on screen: what was sent (to resend it with the photo) and the card and actions its id stands for."""

    nid: int
    card: dict
    actions: PopActions
    summary: str
    body: str
    icon: str
    timeout: float
    urgency: int


class Notifier:
    """Pops for cards: shows ringing/dialing, replaces a pop with 'missed', closes it when the call is answered
    elsewhere, transferred or ended; hands a click or a button on a pop to on_action(card, actions, key).
    Thread-safe (one lock around the server calls)."""

    def __init__(self, photos: PhotoCache | None, timeout: float = 30.0, backend: Any = None,
                 on_action: Callable[[dict, PopActions, str], None] | None = None) -> None:
        self.photos = photos
        self.timeout = timeout
        self.on_action = on_action
        self._lock = threading.Lock()
        self._shown: OrderedDict[str, Shown] = OrderedDict()  # call_uuid (or a status key) -> its pop on screen
        self._backend = backend
        self.kind = "injected" if backend is not None else ""
        self._warned = -1e9

    def _server(self):
        """The notification server; on Linux always the D-Bus one, tried again on every pop until it answers
        (the tray may start before the desktop's notification daemon). None when there is none yet."""
        if self._backend is None:
            if sys.platform.startswith("linux"):
                try:
                    from screenpop.tray.bus import NotificationBus

                    self._backend = NotificationBus(self.invoked, self.closed)
                    self.kind = (f"D-Bus org.freedesktop.Notifications ({self._backend.server_name}; "
                                 f"{'with' if 'actions' in self._backend.capabilities else 'no'} actions)")
                except Exception as exc:  # noqa: BLE001 - no PyGObject, no session bus, no server
                    if time.monotonic() - self._warned > 60:
                        self._warned = time.monotonic()
                        log.warning("no notification server on the session bus (%s); pops are not shown", exc)
                    return None
            else:
                from plyer import notification

                self._backend = notification
                self.kind = "plyer"
            log.info("notifications through %s", self.kind)
        return self._backend

    def _flags(self, server) -> tuple[bool, bool]:
        caps = getattr(server, "capabilities", None)
        if caps is None:
            return False, False  # plyer on Windows/macOS: plain text
        markup = "body-markup" in caps
        return markup, markup and getattr(server, "server_name", "").lower() in SUMMARY_MARKUP_SERVERS

    def handle(self, card: dict) -> None:
        """One card from the stream: pop, turn into 'missed', or close."""
        event = card.get("event")
        if event in POP_EVENTS:
            self.show(card)
        elif event == "missed":
            self.missed(card)
        elif event == "answered_elsewhere":
            self.taken(card)
        elif event in CLOSE_EVENTS:
            self.close(card.get("call_uuid") or "")

    def show(self, card: dict) -> None:
        """A ringing or dialing pop with the card, at once; the photo follows (see the module's docstring)."""
        icon, fetch = self.photos.icon_now(card) if self.photos else ("", False)
        with self._lock:
            server = self._server()
            if server is None:
                return
            markup, summary_markup = self._flags(server)
            summary, body = card_text(card, markup, summary_markup)
            shown = self._send(server, card, summary, body, icon, self.timeout,
                               urgency=2 if card.get("event") == "ringing" else 1)
        if fetch:
            self._photo_later(shown, card)

    def update(self, card: dict) -> None:
        """The daemon's sources answered: the card's notification, if it still shows that very pop, is redrawn
        with their fields in place (same notification id); otherwise nothing (it was closed or moved on)."""
        uuid = card.get("call_uuid") or ""
        shown = self._shown.get(uuid)
        if card.get("event") not in POP_EVENTS or shown is None or shown.card.get("id") != card.get("id"):
            return
        self.show(card)

    def missed(self, card: dict) -> None:
        """A missed call replaces its pop (or pops anew when there was none shown)."""
        icon, fetch = self.photos.icon_now(card) if self.photos else ("", False)  # cached since the ringing pop
        with self._lock:
            server = self._server()
            if server is None:
                return
            summary, body = card_text(card, *self._flags(server))
            shown = self._send(server, card, summary, body, icon, min(self.timeout or 10.0, 10.0), urgency=1)
        if fetch:
            self._photo_later(shown, card)

    def taken(self, card: dict) -> None:
        """A call answered elsewhere: its pop, if one is up, says for a moment who took it, then goes."""
        uuid = card.get("call_uuid") or ""
        if uuid not in self._shown:
            return  # no pop up (or a server without replace): nothing to say
        icon, _ = self.photos.icon_now(card) if self.photos else ("", False)  # cached since the ringing pop
        with self._lock:
            server = self._backend
            if server is None or uuid not in self._shown:
                return
            summary, body = card_text(card, *self._flags(server))
            self._send(server, card, summary, body, icon, TAKEN_SECONDS, urgency=1)

    def status(self, key: str, summary: str, body: str) -> None:
        """A short notice in plain words (a Call back's progress and answer), replacing the pop shown for key (the
        call it was started from) if there is one; no actions."""
        with self._lock:
            server = self._server()
            if server is None:
                return
            markup, summary_markup = self._flags(server)
            self._send(server, {"call_uuid": key, "event": "status"}, esc(summary) if summary_markup else summary,
                       esc(body) if markup else body, "", STATUS_SECONDS, urgency=1)
        log.info("told: %s: %s", summary, body)

    def _send(self, server, card: dict, summary: str, body: str, icon: str, timeout: float, urgency: int,
              replacing: Shown | None = None) -> Shown | None:
        """Show a pop (under the lock), replacing the call's pop on screen; what was shown, or None (plyer, failure)."""
        uuid = card.get("call_uuid") or ""
        try:
            if not hasattr(server, "close"):
                # plyer on Windows wants an .ico; our icons are PNG, so the app's own icon is used there
                server.notify(title=summary, message=body, app_name=APP_NAME,
                              app_icon="" if sys.platform == "win32" else icon, timeout=int(timeout))
                return None
            actions = actions_for(card) if "actions" in server.capabilities else NONE
            previous = replacing or self._shown.get(uuid)
            nid = server.notify(summary, body, icon, timeout, {"urgency": urgency, "category": "x-screenpop.call"},
                                actions.dbus_list(), previous.nid if previous else 0)
        except Exception as exc:  # noqa: BLE001 - the stream goes on; the next pop tries again
            log.warning("notification failed: %s", exc)
            if self.kind.startswith("D-Bus"):
                self._drop_backend()  # the server may have restarted; connect again next time
            return None
        shown = Shown(nid, card, actions, summary, body, icon, timeout, urgency)
        if uuid:
            self._shown.pop(uuid, None)
            self._shown[uuid] = shown
            while len(self._shown) > KEEP_POPS:
                self._shown.popitem(last=False)
        return shown

    def _drop_backend(self) -> None:
        backend, self._backend = self._backend, None
        stop = getattr(backend, "stop", None)
        if stop is not None:
            stop()

    def _photo_later(self, shown: Shown | None, card: dict) -> None:
        """Fetch the photo off the pop's path; when it arrives, put it on the pop if that is still the call's pop."""
        def fetch() -> None:
            icon = self.photos.icon_for(card)
            if shown is None or icon == shown.icon:
                return  # plyer (the cache is warm for the next pop), or nothing better than what is shown
            uuid = card.get("call_uuid") or ""
            with self._lock:
                if self._shown.get(uuid) is not shown or self._backend is None:
                    return  # replaced, closed or dismissed meanwhile
                log.info("photo for pop %s arrived; shown", card.get("id"))
                self._send(self._backend, card, shown.summary, shown.body, icon, shown.timeout, shown.urgency, shown)

        threading.Thread(target=fetch, name="photo", daemon=True).start()

    def invoked(self, nid: int, key: str) -> None:
        """The server's ActionInvoked: a click or a button on one of our pops (any other id is not ours)."""
        with self._lock:
            shown = next((s for s in self._shown.values() if s.nid == nid), None)
        if shown is None or self.on_action is None or not shown.actions.dbus_list():
            return
        log.info("action %s on pop %s", key, shown.card.get("id"))
        self.on_action(shown.card, shown.actions, key)

    def closed(self, nid: int, reason: int) -> None:
        """The server's NotificationClosed: expired, dismissed or closed by us; the pop is no longer on screen."""
        with self._lock:
            for uuid, shown in list(self._shown.items()):
                if shown.nid == nid:
                    del self._shown[uuid]

    def close(self, call_uuid: str) -> None:
        """Take the call's pop off the screen (answered elsewhere, transferred, ended)."""
        with self._lock:
            shown = self._shown.pop(call_uuid, None)
            if shown is None or self._backend is None or not hasattr(self._backend, "close"):
                return
            try:
                self._backend.close(shown.nid)
            except Exception as exc:  # noqa: BLE001
                log.info("closing notification %s failed: %s", shown.nid, exc)
