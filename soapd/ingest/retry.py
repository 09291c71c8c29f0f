"""Retry schedules for transient faults: exponential waits per key, capped, within a time budget.

:class:`Backoff` remembers, per key (a frame id, an inbox path), when the first
transient fault happened, how many followed, and when the next attempt is due.
The download jobs use it for answers that are not the file (an HTML page with
status 200, a truncated or non-FITS body, a transfer past its deadline): such a
frame waits ``base_s``, then twice that, up to ``cap_s``, and counts no try
until ``budget_s`` has passed since its first fault. The inbox drain uses it for
files it could not copy (a full disk): they are retried, never dropped.

Times are ``time.monotonic()`` seconds (``clock`` replaces it in tests); the
schedule is in memory, so a restart starts every budget again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Backoff", "Fault"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Fault:
    """One transient fault as :meth:`Backoff.failed` recorded it.

    ``count`` faults in a row so far; ``age_s`` since the first; ``wait_s`` until
    the next attempt; ``over_budget`` when ``age_s`` has reached the budget.
    """

    count: int
    age_s: float
    wait_s: float
    over_budget: bool


@dataclass(slots=True)
class _Entry:
    first_s: float
    count: int
    due_s: float


class Backoff(Generic[K]):
    """Per-key exponential backoff: ``base_s * 2**(n-1)`` s after the n-th fault, ``cap_s`` at most.

    ``budget_s`` is how long faults may go on before :attr:`Fault.over_budget`
    turns True (``math.inf``: never).
    """

    def __init__(
        self,
        *,
        base_s: float,
        cap_s: float,
        budget_s: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s = max(0.0, base_s)
        self.cap_s = max(self.base_s, cap_s)
        self.budget_s = budget_s
        self._clock = clock
        self._entries: dict[K, _Entry] = {}

    def failed(self, key: K) -> Fault:
        """Record a transient fault of ``key``; return it with the wait before the next attempt."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(first_s=now, count=0, due_s=now)
        entry.count += 1
        wait_s = min(self.base_s * 2.0 ** (entry.count - 1), self.cap_s)
        entry.due_s = now + wait_s
        age_s = now - entry.first_s
        return Fault(entry.count, age_s, wait_s, age_s >= self.budget_s)

    def due(self, key: K) -> bool:
        """Return True when ``key`` may be tried now (no fault recorded, or its wait is over)."""
        entry = self._entries.get(key)
        return entry is None or self._clock() >= entry.due_s

    def due_keys(self) -> list[K]:
        """Return the keys with a fault recorded whose wait is over, earliest due first."""
        now = self._clock()
        ready = [(e.due_s, k) for k, e in self._entries.items() if now >= e.due_s]
        return [k for _, k in sorted(ready, key=lambda item: item[0])]

    def waiting(self) -> set[K]:
        """Return the keys that must not be tried yet."""
        now = self._clock()
        return {k for k, e in self._entries.items() if now < e.due_s}

    def next_due_s(self) -> float | None:
        """Return the seconds until the earliest key is due again (0 if one is), or None."""
        if not self._entries:
            return None
        return max(0.0, min(e.due_s for e in self._entries.values()) - self._clock())

    def forget(self, key: K) -> None:
        """Drop ``key``'s record (it succeeded, or is no one's business any more)."""
        self._entries.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
