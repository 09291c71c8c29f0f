"""Tasks handed out in one order and their results handed back in the same order."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from soapd.frames import FrameTask, TaskOutcome
    from soapd.stacks.plan import StackKey, StackOutcome, StackTask

__all__ = ["InFlight", "InOrder"]

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


class InFlight:
    """What a worker pool holds, under its one lock: frames and stacks in flight, frames started.

    The base of :class:`~soapd.daemon.pool.WorkerPool` and
    :class:`~soapd.daemon.dask_pool.DaskPool`, which differ in where tasks run but
    hand results back the same way.
    """

    def __init__(self) -> None:
        """Start with nothing in flight."""
        self._cond = threading.Condition(threading.RLock())
        self._frames: InOrder[int, FrameTask, TaskOutcome] = InOrder()
        self._stacks: InOrder[StackKey, StackTask, StackOutcome] = InOrder()
        self._started: list[int] = []

    @property
    def inflight(self) -> dict[int, FrameTask]:
        """Frames submitted and not yet collected, in submission order (frame id -> task)."""
        with self._cond:
            return dict(self._frames.tasks)

    @property
    def stacks_inflight(self) -> dict[StackKey, StackTask]:
        """Stack tasks submitted and not yet collected, in submission order (key -> task)."""
        with self._cond:
            return dict(self._stacks.tasks)

    def take_started(self) -> list[int]:
        """Return (and forget) the frames that workers started since the last call, in order."""
        with self._cond:
            started, self._started = self._started, []
        return started

    def _free(self, slots: int) -> int:
        """How many more tasks fit when each of ``slots`` keeps one task ahead (lock taken)."""
        with self._cond:
            return max(0, 2 * slots - len(self._frames) - len(self._stacks))
