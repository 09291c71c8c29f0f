"""Tasks handed out in one order and their results handed back in the same order."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["InOrder"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class InOrder(Generic[K, T, R]):
    """Tasks in submission order (key -> task) and the results of those that finished.

    Not thread-safe by itself: the worker pool holds its lock around every call.
    A result is handed back only once every task submitted before it has its own,
    so results are stored in submission (ledger) order whatever order the workers
    finish in.
    """

    def __init__(self) -> None:
        """Start empty."""
        self.tasks: dict[K, T] = {}
        self._done: dict[K, R] = {}

    def __len__(self) -> int:
        """Return how many tasks are submitted and not yet handed back."""
        return len(self.tasks)

    def __contains__(self, key: object) -> bool:
        """Return True while task ``key`` is submitted and not yet handed back."""
        return key in self.tasks

    def add(self, key: K, task: T) -> None:
        """Submit ``task``; raise RuntimeError when ``key`` is already in flight."""
        if key in self.tasks:
            raise RuntimeError(f"{key!r} is already in the pool")
        self.tasks[key] = task

    def finish(self, key: K, result: R) -> None:
        """Keep ``result`` for task ``key`` (ignored when the task was withdrawn)."""
        if key in self.tasks:
            self._done[key] = result

    def drop(self, key: K) -> None:
        """Withdraw task ``key`` (never started), with any result."""
        self.tasks.pop(key, None)
        self._done.pop(key, None)

    def take(self, cond: threading.Condition, timeout_s: float) -> list[R]:
        """Return the results ready in order, waiting on ``cond`` (held) up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.tasks and next(iter(self.tasks)) not in self._done:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cond.wait(left)
        results: list[R] = []
        for key in list(self.tasks):
            if key not in self._done:
                break
            results.append(self._done.pop(key))
            del self.tasks[key]
        return results
