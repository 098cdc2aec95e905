"""The operator's missed calls still to be returned, for the tray icon's badge and its menu section.

One request, `GET /api/v1/missed?state=open` with the tray's token (the daemon gives an operator token its own
extension's calls only), made by one thread: when the tray starts, when poked (after a missed pop, after a call
of the operator's own was answered) and every `every` seconds. Pokes while a request runs make one more, not one
each. The count, the rows and the last error are read under `lock`.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from screenpop.tray import http
from screenpop.tray.config import TrayConfig, TrayConfigError
from screenpop.tray.text import local_time, one_line

log = logging.getLogger("screenpop.tray")

MENU_ROWS = 8  # rows the menu lists; the count says how many there are in all
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class MissedCall:
    """One missed call still to be returned, as the menu shows it."""

    call_uuid: str
    label: str
    at: str
    number: str | None  # what Call back dials (None: nothing to dial)
    path: str | None  # the record, or the new-customer page

    def menu_text(self) -> str:
        return f"{local_time(self.at)}  {one_line(self.label, 60)}"


def parse(body: object) -> tuple[int, list[MissedCall]]:
    """The daemon's answer as (open count, rows); ValueError when it is not the answer's shape."""
    if not isinstance(body, dict) or not isinstance(body.get("open"), int) or not isinstance(body.get("calls"), list):
        raise ValueError("not the missed calls' answer")
    rows = []
    for c in body["calls"]:
        if not isinstance(c, dict) or not isinstance(c.get("call_uuid"), str):
            continue
        path = c.get("record_url")
        number = c.get("e164")
        rows.append(MissedCall(c["call_uuid"], str(c.get("label") or c.get("number") or ""), str(c.get("started_at") or ""),
                               number if c.get("callable") and isinstance(number, str) and number else None,
                               path if isinstance(path, str) and path.startswith("/") and not path.startswith("//") else None))
    return body["open"], rows


class MissedCalls:
    """Keeps the open count and the newest MENU_ROWS rows fresh; on_change() runs (on this thread) after each change."""

    def __init__(self, config: TrayConfig, on_change: Callable[[], None], every: float) -> None:
        self.config = config
        self.on_change = on_change
        self.every = every
        self.count = 0
        self.calls: list[MissedCall] = []
        self.error = ""
        self.lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="missed-calls", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def poke(self) -> None:
        """Refresh soon (a missed pop came, or a call of this operator's was answered)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.refresh()
            self._wake.wait(self.every if self.every > 0 else None)

    def refresh(self) -> None:
        """One request; the count and rows replaced, or the error kept (the last count stays shown)."""
        url = self.config.url(f"/api/v1/missed?state=open&limit={MENU_ROWS}")
        try:
            with http.get(url, {"Authorization": f"Bearer {self.config.resolved_token()}"}, timeout=10.0) as resp:
                data = resp.read(MAX_BODY)
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
            count, rows = parse(json.loads(data))
        except (OSError, ValueError, TrayConfigError) as exc:
            with self.lock:
                changed, self.error = self.error != str(exc), str(exc)
            if changed:
                log.warning("missed calls not read: %s", exc)
        else:
            with self.lock:
                changed = (count, rows, "") != (self.count, self.calls, self.error)
                self.count, self.calls, self.error = count, rows, ""
            if changed:
                log.info("missed calls not returned: %d", count)
        if changed:
            self.on_change()
