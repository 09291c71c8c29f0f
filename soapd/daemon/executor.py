"""The pool interface the daemon's jobs use, and the choice of pool (``service.executor``).

``"process"``: :class:`soapd.daemon.pool.WorkerPool` (worker processes on this host);
``"dask"``: :class:`soapd.daemon.dask_pool.DaskPool` (the workers of a
dask.distributed scheduler). Both run the same pure frame function
(:func:`soapd.frames.run_task`) and hand back outcomes in submission order; only the
scheduler thread of the driver writes the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from soapd.config import Config
from soapd.frames import FrameTask, TaskOutcome
from soapd.stacks.plan import StackKey, StackOutcome, StackTask

if TYPE_CHECKING:
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = ["FramePool", "make_pool"]


class FramePool(Protocol):
    """What the scheduler thread needs from a pool of workers (see ``WorkerPool``)."""

    n_workers: int

    @property
    def inflight(self) -> dict[int, FrameTask]:
        """Frames submitted and not yet collected, in submission order."""
        ...

    @property
    def stacks_inflight(self) -> dict[StackKey, StackTask]:
        """Stack tasks submitted and not yet collected, in submission order."""
        ...

    @property
    def capacity(self) -> int:
        """How many more tasks may be submitted now."""
        ...

    def start(self) -> None:
        """Start the workers (or connect to them); raise RuntimeError when impossible."""
        ...

    def submit(self, task: FrameTask) -> None:
        """Queue a frame task."""
        ...

    def submit_stack(self, task: StackTask) -> None:
        """Queue a stack task."""
        ...

    def take_started(self) -> list[int]:
        """Return (and forget) the frames started since the last call, in order."""
        ...

    def collect(self, *, timeout_s: float = 0.0) -> list[TaskOutcome]:
        """Return finished frame outcomes in submission order."""
        ...

    def collect_stacks(self, *, timeout_s: float = 0.0) -> list[StackOutcome]:
        """Return finished stack outcomes in submission order."""
        ...

    def cancel_queued(self) -> list[int]:
        """Withdraw the frames no worker has started; return their ids."""
        ...

    def oldest_age_s(self) -> float:
        """Seconds the longest-running started frame has run (0 when none)."""
        ...

    def shutdown(self) -> None:
        """Stop (or disconnect from) the workers; safe to call twice."""
        ...


def make_pool(
    config: Config,
    catalogs: ReferenceProvider | None,
    *,
    on_event: Callable[[], None] | None = None,
) -> FramePool:
    """Return the pool ``service.executor`` names (not started yet).

    Raise ConfigError when the executor is "dask" and dask.distributed is not installed.
    """
    if config.service.executor == "dask":
        from soapd.daemon.dask_pool import DaskPool

        return DaskPool(config, catalogs, on_event=on_event)
    from soapd.daemon.pool import WorkerPool

    return WorkerPool(config, catalogs, on_event=on_event)
