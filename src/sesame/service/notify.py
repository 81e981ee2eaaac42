"""Telling systemd the daemon's state (``Type=notify``), written to ``$NOTIFY_SOCKET``
directly: one datagram of ``KEY=VALUE`` lines each time.

``READY=1`` once the table is installed and the sensor bound; ``RELOADING=1`` (with
``MONOTONIC_USEC``) then ``READY=1`` around a reload; ``STOPPING=1``; ``STATUS=`` with
what the daemon holds; ``WATCHDOG=1`` from the main loop, at half the interval
systemd asks for (``WATCHDOG_USEC``), so a loop that hangs is restarted. Without
``$NOTIFY_SOCKET`` (not started by systemd) nothing is sent. A notification that
cannot be sent is logged once and never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("sesame")


class Notifier:
    """The notification socket of one daemon (a no-op without ``$NOTIFY_SOCKET``)."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.sock: socket.socket | None = None
        if path.startswith(("/", "@")):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.interval: float | None = None  # seconds between two watchdog pings
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.interval = int(usec) / 2e6
        self.next_ping = 0.0
        self.failed = False

    def send(self, **fields: str) -> None:
        """One notification: ``ready="1"`` is sent as ``READY=1``."""
        if self.sock is None:
            return
        lines = "".join(f"{key.upper()}={value}\n" for key, value in fields.items())
        try:
            self.sock.sendto(lines.encode("utf-8", "replace"), self.address)
        except OSError as exc:
            if not self.failed:
                self.failed = True
                log.warning("cannot notify systemd at %s: %s", self.address, exc.strerror)

    def ready(self, status: str) -> None:
        self.send(ready="1", status=status)

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(reloading="1", monotonic_usec=str(usec))

    def stopping(self) -> None:
        self.send(stopping="1")

    def ping(self, now: float, status: Callable[[], str]) -> None:
        """The loop is alive: ``WATCHDOG=1`` (and the status) when a ping is due."""
        if self.interval is not None and now >= self.next_ping:
            self.next_ping = now + self.interval
            self.send(watchdog="1", status=status())

    def wait(self, now: float) -> float | None:
        """How long the loop may sleep before the next ping is due."""
        return None if self.interval is None else max(0.0, self.next_ping - now)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
