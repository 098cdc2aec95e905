"""The freedesktop notification server (org.freedesktop.Notifications) over the session D-Bus, with actions.

One private GDBus connection (PyGObject's Gio) both sends `Notify` / `CloseNotification` and receives
`ActionInvoked` and `NotificationClosed`: servers send those signals to the connection that sent the `Notify`
(dunst and GNOME Shell address them to it), so listening on another connection would hear nothing.

The signals are delivered on a thread of this module's own, running a GLib main loop on a main context of its own.
Why not the GTK main loop pystray runs: `--no-icon` has none, and dbus-python (which the tray used before) can only
dispatch signals through the default main context, i.e. through whatever runs it; a context of our own works the
same under pystray's gtk and appindicator backends and headless, and a busy GTK loop never delays an action.
Method calls (`call_sync`) may come from any thread: GDBus is thread-safe.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from screenpop.tray.http import without_ssl

log = logging.getLogger("screenpop.tray.bus")

APP_NAME = "screenpop"
BUS_NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
CALL_TIMEOUT_MS = 5000


class NotificationBus:
    """The notification server on the session bus: capabilities, Notify (keeping its id), close, and the action and
    closed signals handed to on_action(id, action_key) and on_closed(id, reason) on the bus thread."""

    def __init__(self, on_action: Callable[[int, str], None], on_closed: Callable[[int, int], None]) -> None:
        with without_ssl(True):  # PyGObject's import pulls asyncio, which would load ssl (tray/http.py)
            from gi.repository import Gio, GLib
        self._GLib = GLib
        self._on_action = on_action
        self._on_closed = on_closed
        self._context = GLib.MainContext()
        self._loop = GLib.MainLoop(self._context)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, args=(Gio,), name="notification-bus", daemon=True)
        self._thread.start()
        self._ready.wait(CALL_TIMEOUT_MS / 1000 + 5)
        if self._conn is None:
            raise self._error or TimeoutError("no session bus connection")
        try:
            info = self._call("GetServerInformation", None, "(ssss)")
            self.server_name = str(info[0])
            self.capabilities = {str(c) for c in self._call("GetCapabilities", None, "(as)")[0]}
        except BaseException:
            self.stop()
            raise

    def _run(self, Gio: Any) -> None:
        """The bus thread: connect with this thread's own main context as the default, so the signal callbacks are
        dispatched here, then run the loop until stop()."""
        self._context.push_thread_default()
        try:
            address = Gio.dbus_address_get_for_bus_sync(Gio.BusType.SESSION, None)
            flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
            conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
            for member in ("ActionInvoked", "NotificationClosed"):
                conn.signal_subscribe(BUS_NAME, BUS_NAME, member, PATH, None, Gio.DBusSignalFlags.NONE, self._signal)
            self._conn = conn
        except Exception as exc:  # noqa: BLE001 - no session bus: the caller raises it
            self._error = exc
            return
        finally:
            self._ready.set()
        try:
            self._loop.run()
        finally:
            self._context.pop_thread_default()

    def _signal(self, _conn, _sender, _path, _iface, member: str, params) -> None:
        try:
            nid, detail = params.unpack()
            if member == "ActionInvoked":
                self._on_action(int(nid), str(detail))
            else:
                self._on_closed(int(nid), int(detail))
        except Exception:  # noqa: BLE001 - a handler's bug must not end the bus thread
            log.exception("handling %s failed", member)

    def _call(self, method: str, args: Any, reply: str) -> tuple:
        GLib = self._GLib
        return self._conn.call_sync(BUS_NAME, PATH, BUS_NAME, method, args, GLib.VariantType(reply),
                                    0, CALL_TIMEOUT_MS, None).unpack()

    def notify(self, summary: str, body: str, icon: str, timeout: float, hints: dict[str, Any],
               actions: list[str], replaces_id: int = 0) -> int:
        """Show (or replace) a notification; its id. hints: 'urgency' an int (a byte on the bus), others strings;
        actions: key, label, key, label… (the spec's flat list); timeout in seconds, 0 until dismissed."""
        GLib = self._GLib
        variants = {k: GLib.Variant("y", v) if k == "urgency" else GLib.Variant("s", str(v)) for k, v in hints.items()}
        args = GLib.Variant("(susssasa{sv}i)", (APP_NAME, replaces_id, icon, summary, body, actions, variants,
                                                 int(timeout * 1000)))
        return int(self._call("Notify", args, "(u)")[0])

    def close(self, notification_id: int) -> None:
        """Take a notification off the screen."""
        self._call("CloseNotification", self._GLib.Variant("(u)", (notification_id,)), "()")

    def stop(self) -> None:
        """End the bus thread and the connection (the notifier makes a new one when the server comes back)."""
        conn, self._conn = self._conn, None
        self._context.invoke_full(self._GLib.PRIORITY_DEFAULT, lambda *_: (self._loop.quit(), False)[1])
        if conn is not None:
            try:
                conn.close_sync(None)
            except Exception:  # noqa: BLE001 - already closed by the bus
                pass
