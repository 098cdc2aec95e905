"""Helpers for the tray tests: a small real SSE server speaking the daemon's push interface, and a real desktop
(Xvfb, a session D-Bus, dunst as the notification server, trayer as the tray host) to run the tray client in."""
from __future__ import annotations

import io
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support import RULES, wait_for

DESKTOP_TOOLS = ("Xvfb", "dbus-daemon", "dunst", "dunstctl", "trayer", "xdotool")


def missing_tools() -> list[str]:
    return [t for t in DESKTOP_TOOLS if shutil.which(t) is None]


# ---- a push server ------------------------------------------------------------------------------


class PushServer:
    """`GET /api/v1/events` as the daemon serves it: Bearer token, `retry:`, `: keepalive`, `id:`/`event: pop`
    frames (and `event: update` ones), replay after Last-Event-ID; customer photos behind the same token. Records every request."""

    def __init__(self, token: str = "secret-token", retry_ms: int = 100, keepalive: float = 1.0) -> None:
        self.token = token
        self.retry_ms = retry_ms
        self.keepalive = keepalive
        self.cards: list[dict] = []
        self.requests: list[dict] = []  # {"path", "headers", "status"}
        self.photo = _png((40, 110, 180), 64)  # the size the tray asks for
        self.missed: dict | None = None  # GET /api/v1/missed answers this (None: 404, a daemon without it)
        self.originate = (200, {"status": "dialling", "uuid": "c2c-1"})  # POST /api/v1/originate's answer
        self.photo_gate = threading.Event()  # cleared: a photo request waits (a slow daemon) until it is set again
        self.photo_gate.set()
        self._subscribers: list[queue.Queue] = []
        self.gate = threading.Event()  # cleared: new streams wait before answering (pops pile up for a replay)
        self.gate.set()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self)

            def do_POST(self) -> None:
                outer._post(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.drop()
        self.httpd.shutdown()
        self.httpd.server_close()

    def push(self, card: dict) -> int:
        """Send a pop to every open stream; returns its id."""
        with self._lock:
            pop_id = len(self.cards) + 1
            card = {**card, "id": pop_id}
            self.cards.append(card)
            subs = list(self._subscribers)
        for q in subs:
            q.put(frame(card))
        return pop_id

    def update(self, pop_id: int, **changes) -> None:
        """Send the pop pop_id again as an `update` (the daemon's sources answered), with changes, no id line."""
        with self._lock:
            card = {**self.cards[pop_id - 1], **changes}
            subs = list(self._subscribers)
        for q in subs:
            q.put(frame(card, "update"))

    def drop(self) -> None:
        """End every open stream (the daemon restarting)."""
        with self._lock:
            subs, self._subscribers = self._subscribers, []
        for q in subs:
            q.put(None)

    def streams(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def event_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith("/api/v1/events")]

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        """POST /api/v1/originate: recorded with its JSON body, answered with self.originate."""
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        authorized = h.headers.get("Authorization") == f"Bearer {self.token}"
        status, answer = self.originate if authorized and h.path == "/api/v1/originate" else (401, {"error": "no"})
        self.requests.append({"path": h.path, "headers": dict(h.headers), "status": status, "body": json.loads(body or b"null")})
        self._json(h, status, answer)

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, status: int, answer: object) -> None:
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def originates(self) -> list[dict]:
        """The bodies of the POST /api/v1/originate requests, in order."""
        return [r["body"] for r in self.requests if r["path"] == "/api/v1/originate" and "body" in r]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        authorized = h.headers.get("Authorization") == f"Bearer {self.token}"
        record = {"path": h.path, "headers": dict(h.headers), "status": 200 if authorized else 401}
        self.requests.append(record)
        if not authorized:
            self._json(h, 401, {"error": "unauthorized"})
            return
        if h.path.startswith("/api/v1/missed?") and self.missed is not None:
            self._json(h, 200, self.missed)
            return
        if h.path.startswith("/api/v1/customers/") and "/photo" in h.path:
            self.photo_gate.wait(60)
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", str(len(self.photo)))
            h.end_headers()
            h.wfile.write(self.photo)
            return
        if not h.path.startswith("/api/v1/events"):
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.close_connection = True
        self.gate.wait(30)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        q: queue.Queue = queue.Queue()
        last = h.headers.get("Last-Event-ID")
        with self._lock:
            backlog = [c for c in self.cards if last is not None and last.isdigit() and c["id"] > int(last)]
            self._subscribers.append(q)
        try:
            h.wfile.write(f"retry: {self.retry_ms}\n\n".encode() + b"".join(frame(c) for c in backlog))  # one read
            h.wfile.flush()
            while True:
                try:
                    data = q.get(timeout=self.keepalive)
                except queue.Empty:
                    h.wfile.write(b": keepalive\n\n")
                    h.wfile.flush()
                    continue
                if data is None:
                    return
                h.wfile.write(data)
                h.wfile.flush()
        except OSError:
            pass
        finally:
            with self._lock:
                if q in self._subscribers:
                    self._subscribers.remove(q)


def frame(card: dict, event: str = "pop") -> bytes:
    """A pop as the daemon frames it; an update has no id line (docs/card.md)."""
    head = f"id: {card['id']}\n" if event == "pop" else ""
    return f"{head}event: {event}\ndata: {json.dumps(card, ensure_ascii=False)}\n\n".encode()


def _png(colour, size: int = 128) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def card(event: str = "ringing", call_uuid: str = "call-1", number: str = "+3545551234", customer: dict | None = None,
         caller_name: str = "", matches: int | None = None, candidates: list | None = None,
         direction: str = "INCOMING", extension: str = "1001", operator: str | None = None, at: str | None = None,
         colleague: str | None = None, taken_by: dict | None = None, sources: dict | None = None,
         layout=None) -> dict:
    """A card as the daemon builds it (docs/card.md), its title and lines from the daemon's own layout (the default,
    [numbers] default_region IS, unless layout is given); at defaults to now."""
    from screenpop.daemon.push.layout import CardLayout

    if matches is None:
        matches = 1 if customer else 0
    withheld = not number.lstrip("+").isdigit()
    if customer:
        record = f"/customers/{customer['id']}"
    elif withheld or direction == "INTERNAL":
        record = None
    elif matches > 1:
        record = f"/customers/choose?number=%2B{number.lstrip('+')}"
    else:
        record = f"/customers/new?number={number.lstrip('+')}"
    c = {
        "event": event, "call_uuid": call_uuid, "direction": direction,
        "at": at or time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "extension": extension, "operator": operator, "number": number, "caller_name": caller_name,
        "colleague": colleague, "taken_by": taken_by, "matches": matches, "customer": customer,
        "candidates": candidates or [], "record_url": record, "can_call": not withheld,
        "sources": sources,
    }
    c["title"], c["lines"] = (layout or CardLayout()).render(c, RULES)
    return c


def customer(cid: int = 7, name: str = "Jón Jónsson", company: str = "Norðurljós ehf.", category: str = "regular",
             total_debt: str = "0.00", orders: list | None = None, note: str = "", photo: bool = True) -> dict:
    """A card's customer part; its category's flag as the category list a database starts with has it."""
    return {
        "id": cid, "name": name, "company": company, "category": category,
        "category_flag": {"vip": "★ VIP", "problem": "⚠ PROBLEM"}.get(category, ""), "note": note, "city": "Reykjavík",
        "country": "IS", "photo_url": f"/api/v1/customers/{cid}/photo" if photo else None,
        "orders": orders or [], "total_debt": total_debt,
    }


# ---- a desktop ----------------------------------------------------------------------------------


class Desktop:
    """Xvfb on a free display, a session bus, dunst and trayer; env() for the processes started in it.

    dunst runs with DUNSTRC, or with dunst_defaults with no configuration of ours: what a user who never
    configured it gets (the packaged /etc/xdg/dunst/dunstrc, else dunst's built-in settings)."""

    def __init__(self, folder: Path, dunst_defaults: bool = False) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        self.bus_pid: int | None = None
        home = folder / "home"
        for sub in ("config/dunst", "cache", "runtime"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(home / "runtime", 0o700)
        self.base_env = {
            **os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"), "XDG_RUNTIME_DIR": str(home / "runtime"),
            "NO_AT_BRIDGE": "1", "GDK_BACKEND": "x11",
        }
        self.base_env.pop("WAYLAND_DISPLAY", None)
        self.dunst_defaults = dunst_defaults
        # dunst's context menu (`dunstctl context`) asks dmenu which action to invoke; this one answers with the line
        # of the action named in dmenu-want and keeps the menu it was given in dmenu-in.txt (not with dunst_defaults)
        dmenu = folder / "dmenu.sh"
        dmenu.write_text(f'#!/bin/sh\ncat > "{folder}/dmenu-in.tmp"\nmv "{folder}/dmenu-in.tmp" "{folder}/dmenu-in.txt"\n'
                         f'grep -F "$(cat "{folder}/dmenu-want")" "{folder}/dmenu-in.txt" | head -n 1\n', encoding="utf-8")
        dmenu.chmod(0o755)
        if not dunst_defaults:
            (home / "config" / "dunst" / "dunstrc").write_text(
                DUNSTRC.replace("[global]", f"[global]\n    dmenu = {dmenu}"), encoding="utf-8")
        self.env = dict(self.base_env)

    def start(self) -> "Desktop":
        r, w = os.pipe()
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                                pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=self._log("xvfb"))
        os.close(w)
        self.procs.append(xvfb)
        with os.fdopen(r) as fh:
            number = fh.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not report a display")
        self.display = f":{number}"
        self.env["DISPLAY"] = self.display
        out = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
                             capture_output=True, text=True, env=self.env, timeout=10, check=True).stdout.split()
        self.env["DBUS_SESSION_BUS_ADDRESS"], self.bus_pid = out[0], int(out[1])
        config = [] if self.dunst_defaults else ["-config", str(self.folder / "home/config/dunst/dunstrc")]
        self.spawn("dunst", ["dunst", *config])
        wait_for(lambda: self.dunstctl("is-paused").returncode == 0, 10, "dunst on the session bus")
        self.spawn("trayer", ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
                              "--height", "32", "--SetDockType", "true", "--expand", "true", "--transparent", "false"])
        wait_for(lambda: bool(self.xdotool("search", "--class", "trayer").stdout.strip()), 10, "trayer's window")
        return self

    def _log(self, name: str):
        fh = open(self.folder / f"{name}.log", "ab")
        self.logs.append(fh)
        return fh

    def spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        p = subprocess.Popen(args, stdout=self._log(name), stderr=subprocess.STDOUT, env={**self.env, **(env or {})})
        self.procs.append(p)
        return p

    def run(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout)

    def dunstctl(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("dunstctl", *args)

    def xdotool(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("xdotool", *args)

    def displayed(self) -> int:
        r = self.dunstctl("count", "displayed")
        return int(r.stdout.strip() or 0) if r.returncode == 0 else 0

    def history(self) -> list[dict]:
        """dunst's history, newest first: summary, body, icon_path, id, appname, urgency."""
        r = self.dunstctl("history")
        data = json.loads(r.stdout)["data"][0]
        return [{k: v["data"] for k, v in n.items()} for n in data]

    def act(self, key: str) -> str:
        """Invoke the action `key` of the notification on screen through dunst's context menu (dunst then emits
        ActionInvoked to the client, as for a click on a button); dunst's menu line for it, `#Label (summary) [id,key]`."""
        menu = self.folder / "dmenu-in.txt"
        menu.unlink(missing_ok=True)
        (self.folder / "dmenu-want").write_text(f",{key}]", encoding="utf-8")
        self.dunstctl("context")
        wait_for(menu.exists, 10, "dunst's context menu")
        lines = [line for line in menu.read_text(encoding="utf-8").splitlines() if line.endswith(f",{key}]")]
        assert lines, f"no action {key!r} in dunst's menu: {menu.read_text(encoding='utf-8')!r}"
        return lines[0]

    def click_notification(self) -> None:
        """Left-click the notification on screen (this dunstrc: its default action, as GNOME and KDE do)."""
        wait_for(lambda: bool(self.xdotool("search", "--onlyvisible", "--class", "Dunst").stdout.strip()), 5,
                 "dunst's window")
        window = self.xdotool("search", "--onlyvisible", "--class", "Dunst").stdout.split()[0]
        self.xdotool("mousemove", "--window", window, "60", "20", "click", "1")

    def close_all(self) -> None:
        self.dunstctl("close-all")

    def screenshot(self, path: Path) -> Path:
        from PIL import ImageGrab

        ImageGrab.grab(xdisplay=self.display).save(path)
        return path

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self.bus_pid:
            try:
                os.kill(self.bus_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for fh in self.logs:
            fh.close()


DUNSTRC = """
[global]
    monitor = 0
    follow = none
    width = 420
    height = 300
    origin = top-right
    offset = 10x50
    notification_limit = 5
    font = DejaVu Sans 10
    markup = full
    format = "<b>%s</b>\\n%b"
    alignment = left
    icon_position = left
    min_icon_size = 48
    max_icon_size = 96
    history_length = 50
    show_indicators = no
    sticky_history = yes
    idle_threshold = 0
    frame_width = 2
    frame_color = "#888888"
    mouse_left_click = do_action, close_current

[urgency_low]
    background = "#222222"
    foreground = "#ffffff"
    timeout = 10

[urgency_normal]
    background = "#285577"
    foreground = "#ffffff"
    timeout = 10

[urgency_critical]
    background = "#900000"
    foreground = "#ffffff"
    frame_color = "#ff0000"
    timeout = 0
"""


def wait_file_lines(path: Path, n: int, timeout: float = 10.0) -> list[str]:
    wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= n, timeout, f"{n} lines in {path.name}")
    return path.read_text().splitlines()


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def missed_answer(*rows: tuple[str, str, str | None]) -> dict:
    """GET /api/v1/missed?state=open as the daemon answers an operator: rows of (call uuid, label, e164 or None)."""
    calls = [{"call_uuid": uuid, "started_at": "2026-11-26T09:05:00Z", "state": "open", "number": e164 or "anonymous",
              "e164": e164, "label": label, "callable": bool(e164), "record_url": f"/customers/new?number={e164}&call={uuid}"
              if e164 else None} for uuid, label, e164 in rows]
    return {"state": "open", "open": len(calls), "anonymous": 0, "total": len(calls), "calls": calls}
