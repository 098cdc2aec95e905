"""systemd's notify protocol (sd_notify): READY, STATUS, WATCHDOG, RELOADING, STOPPING as datagrams to $NOTIFY_SOCKET.

A few lines of our own instead of libsystemd: the protocol is one AF_UNIX datagram of KEY=value lines. Without
$NOTIFY_SOCKET (not under systemd, or Type= is not notify) every call does nothing.
"""
from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("screenpop.daemon")


def _address(value: str) -> str | bytes | None:
    """The socket address from $NOTIFY_SOCKET: a path, or '@name' for the abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used by a system or user manager on a host


class Notifier:
    """Sends state changes to the service manager; every message is best effort and never raises."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._status = ""
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> None:
        """One datagram of KEY=value lines; a failure is logged once, at warning level, and otherwise ignored."""
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd through %s: %s", os.environ.get("NOTIFY_SOCKET", "?"), exc)

    def ready(self, status: str) -> None:
        self._status = _one_line(status)
        self.send("READY=1", f"STATUS={self._status}")

    def status(self, text: str) -> None:
        """STATUS= for `systemctl status`; sent only when it changed."""
        text = _one_line(text)
        if text != self._status:
            self._status = text
            self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        if self.watchdog_interval:
            self.send("WATCHDOG=1")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str) -> None:
        self._status = _one_line(status)
        self.send("STOPPING=1", f"STATUS={self._status}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for seconds more than the unit's start/stop timeout allows (used only if that is exceeded)."""
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


def _one_line(text: str) -> str:
    """A status may quote an error from the network: a line break in it would start another KEY=value."""
    return " ".join(text.splitlines())


def _watchdog_interval(env) -> float | None:
    """Half of $WATCHDOG_USEC, in seconds, when the watchdog is for this process ($WATCHDOG_PID unset or ours)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000
