"""sd_notify over ``$NOTIFY_SOCKET``: READY, STATUS, STOPPING and WATCHDOG pings.

A plain ``AF_UNIX`` datagram socket, no library. Outside systemd
(``$NOTIFY_SOCKET`` unset) every call is a no-op, so the daemon code can call
it unconditionally. The watchdog interval comes from ``$WATCHDOG_USEC``
(``WatchdogSec=`` in the unit); the service pings at half of it and only while
its worker is healthy (DESIGN §4.3). This module must not import other soapd modules.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """Send sd_notify messages to the socket named by ``$NOTIFY_SOCKET`` (or do nothing)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """Read ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` from ``env``."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        for_us = not pid or pid == str(os.getpid())
        self.watchdog_usec = int(usec) if usec.isdigit() and int(usec) > 0 and for_us else None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between two WATCHDOG pings (half of ``WatchdogSec``), or None when off."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def notify(self, message: str) -> bool:
        """Send ``message`` (``KEY=VALUE`` lines). Return False outside systemd or on failure."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            logger.warning("sd_notify to %r failed: %s", self._address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Tell systemd start-up is complete (``READY=1``), with an optional status line."""
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        """Set the status line shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self) -> bool:
        """Tell systemd soapd is shutting down (``STOPPING=1``)."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Ping the watchdog (``WATCHDOG=1``); call only while the worker is healthy."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket. Safe to call twice."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())
