"""The pop itself: a native desktop notification with the customer's card.

Linux: the freedesktop notification server over D-Bus, through plyer's D-Bus backend chosen on purpose
(`plyer.platforms.linux.notification.NotifyDbus`), never plyer's own guess (`instance()` switches to the
Flatpak portal whenever a folder `/app` exists, and falls back to notify-send, which drops icon and timeout).
plyer 2.1's `_notify` throws away the id the server returns, and without it a pop cannot be replaced or
closed when the call is answered elsewhere or ends; so `DbusNotifier` subclasses it and sends the same
`Notify` call on one dbus-python connection, keeping the id; `CloseNotification` goes through dbus-python
directly too. Elsewhere (Windows, macOS): plyer's facade, without close.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from screenpop.tray import http
from screenpop.tray.text import one_line

log = logging.getLogger("screenpop.tray.notify")

APP_NAME = "screenpop"
PHOTO_SIZE = 64  # dunst's defaults (300 px wide, icons up to 128 px) leave ~35 characters a line beside it
PHOTO_MAX_BYTES = 2 << 20
PHOTO_FRESH_SECONDS = 3600.0
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

    def __init__(self, server: str, token: Callable[[], str], folder: Path | None = None, timeout: float = 2.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.folder = folder or cache_dir()
        self.timeout = timeout

    def icon_for(self, card: dict) -> str:
        """A local file for the pop's icon: the photo when the daemon has one, else a placeholder."""
        customer = card.get("customer") or None
        url = customer.get("photo_url") if customer else None
        path = None
        if isinstance(url, str) and url.startswith("/") and not url.startswith("//"):
            path = self._photo(url)  # relative URLs only: the token never goes to another host
        if path is None:
            try:
                path = placeholder(self.folder, card)
            except OSError as exc:
                log.warning("cannot draw a placeholder icon: %s", exc)
                return ""
        return str(path)

    def _photo(self, url: str) -> Path | None:
        full = self.server + url + ("&" if "?" in url else "?") + f"size={PHOTO_SIZE}"
        name = hashlib.sha1(full.encode()).hexdigest()[:20] + ".img"
        path = self.folder / "photos" / name
        try:
            if time.time() - path.stat().st_mtime < PHOTO_FRESH_SECONDS:
                return path
        except OSError:
            pass
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
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path


# ---- the notification servers -------------------------------------------------------------------


def _dbus_class():
    """plyer's D-Bus backend, subclassed to keep the notification id (Linux only; imported on use)."""
    from plyer.platforms.linux.notification import NotifyDbus

    class DbusNotifier(NotifyDbus):
        """plyer's NotifyDbus with one connection and the id Notify returns (plyer discards it)."""

        BUS_NAME = "org.freedesktop.Notifications"
        PATH = "/org/freedesktop/Notifications"

        def __init__(self) -> None:
            import dbus

            self._dbus = dbus
            # A private connection: the tray's GTK main loop never shares it; used from one thread at a time.
            self._bus = dbus.SessionBus(private=True)
            self._iface = dbus.Interface(self._bus.get_object(self.BUS_NAME, self.PATH), self.BUS_NAME)
            info = self._iface.GetServerInformation()
            self.server_name = str(info[0])
            self.capabilities = {str(c) for c in self._iface.GetCapabilities()}

        def _notify(self, **kwargs) -> int:
            # The same arguments as plyer's NotifyDbus._notify, timeout in seconds (0 = never expires).
            hints = {k: v for k, v in (kwargs.get("hints") or {}).items()}
            if "urgency" in hints:
                hints["urgency"] = self._dbus.Byte(hints["urgency"])
            timeout = kwargs.get("timeout", 10)
            return int(self._iface.Notify(
                kwargs.get("app_name", ""), self._dbus.UInt32(kwargs.get("replaces_id", 0)),
                kwargs.get("app_icon", ""), kwargs.get("title", ""), kwargs.get("message", ""),
                self._dbus.Array(kwargs.get("actions", []), signature="s"),
                self._dbus.Dictionary(hints, signature="sv"), self._dbus.Int32(int(timeout * 1000)),
            ))

        def close(self, notification_id: int) -> None:
            self._iface.CloseNotification(self._dbus.UInt32(notification_id))

    return DbusNotifier


class Notifier:
    """Pops for cards: shows ringing/dialing, replaces a pop with 'missed', closes it when the call is answered
    elsewhere, transferred or ended. Thread-safe (one lock around the server calls)."""

    def __init__(self, photos: PhotoCache | None, timeout: float = 30.0, backend: Any = None) -> None:
        self.photos = photos
        self.timeout = timeout
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}  # call_uuid -> notification id
        self._shown: dict[str, Any] = {}  # call_uuid -> the id of the pop its notification shows
        self._backend = backend
        self.kind = "injected" if backend is not None else ""
        self._warned = -1e9

    def _server(self):
        """The notification server; on Linux always the D-Bus one, tried again on every pop until it answers
        (the tray may start before the desktop's notification daemon). None when there is none yet."""
        if self._backend is None:
            if sys.platform.startswith("linux"):
                try:
                    self._backend = _dbus_class()()
                    self.kind = f"D-Bus org.freedesktop.Notifications ({self._backend.server_name})"
                except Exception as exc:  # noqa: BLE001 - no dbus-python, no session bus, no server
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
        icon = self.photos.icon_for(card) if self.photos else ""
        with self._lock:
            server = self._server()
            if server is None:
                return
            markup, summary_markup = self._flags(server)
            summary, body = card_text(card, markup, summary_markup)
            self._send(server, card, summary, body, icon, self.timeout, urgency=2 if card.get("event") == "ringing" else 1)

    def update(self, card: dict) -> None:
        """The daemon's sources answered: the card's notification, if it still shows that very pop, is redrawn
        with their fields in place (same notification id); otherwise nothing (it was closed or moved on)."""
        uuid = card.get("call_uuid") or ""
        if card.get("event") not in POP_EVENTS or uuid not in self._ids or self._shown.get(uuid) != card.get("id"):
            return
        self.show(card)

    def missed(self, card: dict) -> None:
        """A missed call replaces its pop (or pops anew when there was none shown)."""
        icon = self.photos.icon_for(card) if self.photos else ""  # cached since the ringing pop
        with self._lock:
            server = self._server()
            if server is None:
                return
            summary, body = card_text(card, *self._flags(server))
            self._send(server, card, summary, body, icon, min(self.timeout or 10.0, 10.0), urgency=1)

    def taken(self, card: dict) -> None:
        """A call answered elsewhere: its pop, if one is up, says for a moment who took it, then goes."""
        uuid = card.get("call_uuid") or ""
        if uuid not in self._ids:
            return  # no pop up (or a server without replace): nothing to say
        icon = self.photos.icon_for(card) if self.photos else ""  # cached since the ringing pop
        with self._lock:
            server = self._backend
            if server is None or uuid not in self._ids:
                return
            summary, body = card_text(card, *self._flags(server))
            self._send(server, card, summary, body, icon, TAKEN_SECONDS, urgency=1)

    def _send(self, server, card, summary: str, body: str, icon: str, timeout: float, urgency: int) -> None:
        uuid = card.get("call_uuid") or ""
        try:
            if hasattr(server, "close"):
                nid = server._notify(title=summary, message=body, app_name=APP_NAME, app_icon=icon,
                                     timeout=timeout, hints={"urgency": urgency, "category": "x-screenpop.call"},
                                     replaces_id=self._ids.get(uuid, 0))
                if uuid:
                    self._ids[uuid] = nid
                    self._shown[uuid] = card.get("id")
                    while len(self._ids) > 64:
                        self._shown.pop(next(iter(self._ids)), None)
                        self._ids.pop(next(iter(self._ids)))
            else:
                # plyer on Windows wants an .ico; our icons are PNG, so the app's own icon is used there
                server.notify(title=summary, message=body, app_name=APP_NAME,
                              app_icon="" if sys.platform == "win32" else icon, timeout=int(timeout))
        except Exception as exc:  # noqa: BLE001 - the stream goes on; the next pop tries again
            log.warning("notification failed: %s", exc)
            if self.kind.startswith("D-Bus"):
                self._backend = None  # the server may have restarted; connect again next time

    def close(self, call_uuid: str) -> None:
        with self._lock:
            nid = self._ids.pop(call_uuid, None)
            self._shown.pop(call_uuid, None)
            if nid is None or self._backend is None or not hasattr(self._backend, "close"):
                return
            try:
                self._backend.close(nid)
            except Exception as exc:  # noqa: BLE001
                log.info("closing notification %s failed: %s", nid, exc)
