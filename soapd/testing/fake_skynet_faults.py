"""The fault switches of :class:`~soapd.testing.fake_skynet.FakeSkynet` (a mixin).

Each switch changes how the fake answers from now on, under the fake's lock:
random 503s, slow answers, truncated downloads, an HTML page with status 200
instead of the file for a while (a proxy's or a maintenance page), drip-fed
downloads (bytes just under a client's read timeout) and one server file name
for every exposure (names that collide). All waits are bounded by
:data:`MAX_DELAY_S`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from soapd.testing.fake_skynet_http import Drip

__all__ = ["HTML_PAGE", "MAX_DELAY_S", "FaultSwitches", "Faults"]

#: The page :meth:`FaultSwitches.serve_html` sends with status 200 (Content-Type text/html).
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Down for maintenance</title></head>"
    b"<body><h1>Skynet is down for maintenance</h1><p>Back soon.</p></body></html>\n"
)
#: Longest delay, in seconds, any switch may add to one answer.
MAX_DELAY_S = 30.0


@dataclass(slots=True)
class Faults:
    """The switches' state (read by the fake when it answers)."""

    fail_rate: float = 0.0
    slow: list[float] = field(default_factory=list)
    truncate: int = 0
    html_until_s: float = 0.0
    drip: list[Drip] = field(default_factory=list)
    same_name: str | None = None


class FaultSwitches:
    """Methods that switch faults on; the class using it provides ``_lock`` and ``_faults``."""

    _lock: threading.RLock
    _faults: Faults

    def set_fail_rate(self, rate: float) -> None:
        """Answer this fraction of requests with 503 (seeded, repeatable)."""
        if not 0.0 <= rate < 1.0:
            raise ValueError("fail rate must be in [0, 1)")
        with self._lock:
            self._faults.fail_rate = rate

    def slow_next(self, delay_s: float, count: int = 1) -> None:
        """Delay the next ``count`` responses by ``delay_s`` seconds (at most 30 s)."""
        with self._lock:
            self._faults.slow.extend([min(max(delay_s, 0.0), MAX_DELAY_S)] * count)

    def truncate_next_download(self, count: int = 1) -> None:
        """Send only half of the next ``count`` files, then close the connection."""
        with self._lock:
            self._faults.truncate += count

    def serve_html(self, duration_s: float) -> None:
        """For ``duration_s`` seconds, answer every download with :data:`HTML_PAGE` and status 200.

        What a proxy or a maintenance page does: the right status, the wrong body
        (``Content-Type: text/html``). 0 ends it now.
        """
        with self._lock:
            self._faults.html_until_s = time.monotonic() + max(duration_s, 0.0)

    def drip_next_download(
        self, chunk_bytes: int = 64, interval_s: float = 0.5, count: int = 1
    ) -> None:
        """Send the next ``count`` files ``chunk_bytes`` at a time, ``interval_s`` apart.

        Bytes keep arriving just under a client's read timeout, so only an overall
        deadline ends such a transfer; :meth:`stop` interrupts it.
        """
        if chunk_bytes < 1 or interval_s < 0:
            raise ValueError("drip needs chunk_bytes >= 1 and interval_s >= 0")
        with self._lock:
            self._faults.drip.extend([Drip(chunk_bytes, min(interval_s, MAX_DELAY_S))] * count)

    def collide_names(self, filename: str | None = "image.fits") -> None:
        """Send every download under the same server file name (None: each its own again)."""
        with self._lock:
            self._faults.same_name = filename
