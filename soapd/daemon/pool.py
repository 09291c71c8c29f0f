"""Pixel work in a process pool (DESIGN §4.3a): one frame per task, results back by value.

Stacked epochs are built in the same pool: :meth:`WorkerPool.submit_stack` sends a
:class:`~soapd.stacks.plan.StackTask`, :meth:`WorkerPool.collect_stacks` returns
the :class:`~soapd.stacks.plan.StackOutcome` values; frames and stacks share the
workers (``capacity`` counts both).

The scheduler thread submits :class:`~soapd.frames.FrameTask` values; a worker
process runs :func:`soapd.frames.run_task` on it (``pipeline.process_frame`` plus
the frame's field-wide Parquet table, written atomically under
``paths.tables_dir``) and returns a :class:`~soapd.frames.TaskOutcome`. Workers
never touch the database: every write stays on the scheduler thread. The config
and the catalog service are handed to each worker once, by the pool
initializer, not with every task. How each error becomes an outcome is
:mod:`soapd.frames`' business; a worker that dies comes back here as "retry".
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

from soapd.config import Config
from soapd.frames import FrameTask, TaskOutcome, run_task
from soapd.logs import setup_logging
from soapd.stacks.plan import StackOutcome, StackTask, run_stack_task

if TYPE_CHECKING:
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = ["InFlight", "WorkerPool"]

logger = logging.getLogger(__name__)

#: Modules the fork server imports before forking workers.
_PRELOAD = (
    "soapd.daemon.pool",
    "soapd.frames",
    "soapd.pipeline",
    "soapd.output.export",
    "soapd.catalogs",
    "soapd.stacks.plan",
)

#: Environment variables that cap math-library threads in the workers.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(slots=True)
class _WorkerState:
    """What the pool initializer hands each worker process once."""

    config: Config
    catalogs: ReferenceProvider | None


# Set once per worker process by _init_worker.
_WORKER: list[_WorkerState] = []


def _init_worker(config: Config, catalogs: ReferenceProvider | None) -> None:
    """Worker-process set-up: keep config and catalogs; let the parent handle signals."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(config.logging.level, config.logging.style)
    _WORKER[:] = [_WorkerState(config, catalogs)]


def _run_in_worker(task: FrameTask) -> TaskOutcome:
    """Run ``task`` with the config and catalogs this worker process was given."""
    state = _WORKER[0]
    return run_task(task, state.config, state.catalogs)


def _stack_in_worker(task: StackTask) -> StackOutcome:
    """Build one stacked epoch with the config this worker process was given."""
    return run_stack_task(task, _WORKER[0].config)


#: Serialises starting the fork server (it briefly changes this process's environment).
_FORKSERVER_LOCK = threading.Lock()


def _start_forkserver() -> None:
    """Start multiprocessing's fork server, if it is not running, without the current folder.

    The fork server is started as ``python -c ...``, so its ``sys.path`` begins
    with the current folder, and Pythons without the fix of CPython gh-117378
    (every 3.11, the 3.12 and 3.13 releases before it was backported) ignore the
    ``sys.path`` the parent hands it. A folder named
    ``soapd`` there, even an empty one, is then imported as a namespace package
    before an editable install's finder (a meta-path finder asked after the path
    finder) is consulted; the preload's ImportError is swallowed, and every
    worker forked from the server inherits that broken ``soapd`` module:
    BrokenProcessPool. ``PYTHONSAFEPATH=1`` (the ``-P`` flag) keeps the folder
    off the server's ``sys.path``; workers still get this process's ``sys.path``
    from multiprocessing's preparation data. The variable is set only while the
    server starts, so other children of this process do not inherit it.
    """
    from multiprocessing import forkserver

    with _FORKSERVER_LOCK:
        before = os.environ.get("PYTHONSAFEPATH")
        os.environ["PYTHONSAFEPATH"] = "1"
        try:
            forkserver.ensure_running()
        finally:
            if before is None:
                del os.environ["PYTHONSAFEPATH"]
            else:
                os.environ["PYTHONSAFEPATH"] = before


@dataclass(slots=True)
class InFlight:
    """A submitted task and when it was submitted (monotonic seconds)."""

    task: FrameTask
    future: Future[TaskOutcome]
    submitted_s: float


@dataclass(slots=True)
class StackInFlight:
    """A submitted stack task and when it was submitted (monotonic seconds)."""

    task: StackTask
    future: Future[StackOutcome]
    submitted_s: float


class WorkerPool:
    """A ``ProcessPoolExecutor`` of ``service.workers`` processes and the tasks in flight.

    Not thread-safe except :meth:`oldest_age_s`, which the supervisor calls; all
    other methods run on the scheduler thread.
    """

    def __init__(
        self,
        config: Config,
        catalogs: ReferenceProvider | None = None,
        *,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """Prepare a pool for ``config`` (processes start on the first submit)."""
        self.config = config
        self.catalogs = catalogs
        self.n_workers = config.service.workers or os.cpu_count() or 1
        self._on_done = on_done
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.inflight: dict[int, InFlight] = {}
        self.stacks_inflight: dict[tuple[str, str], StackInFlight] = {}

    @property
    def capacity(self) -> int:
        """How many more tasks may be submitted now (keeps each worker one task ahead)."""
        busy = len(self.inflight) + len(self.stacks_inflight)
        return max(0, 2 * self.n_workers - busy)

    def _ensure(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            # The fork server imports soapd once, now; every worker (also those that
            # replace a retired one later) is forked from it, so all run the code the
            # daemon started with even if the installed files change underneath.
            context.set_forkserver_preload(list(_PRELOAD))
            # One math-library thread per worker: the pool already uses every core,
            # and BLAS/OpenMP threads on top only oversubscribe them. The fork
            # server inherits these when it starts (an operator's values win).
            for name in _THREAD_VARS:
                os.environ.setdefault(name, "1")
            _start_forkserver()
            self._executor = ProcessPoolExecutor(
                max_workers=self.n_workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.config, self.catalogs),
                max_tasks_per_child=self.config.service.max_tasks_per_child,
            )
        return self._executor

    def start(self) -> None:
        """Start the fork server and the worker processes now rather than at the first frame."""
        executor = self._ensure()
        for future in [executor.submit(os.getpid) for _ in range(self.n_workers)]:
            future.result()

    def submit(self, task: FrameTask) -> None:
        """Send ``task`` to a worker process."""
        future = self._ensure().submit(_run_in_worker, task)
        with self._lock:
            self.inflight[task.frame_id] = InFlight(task, future, time.monotonic())
        if self._on_done is not None:
            callback = self._on_done
            future.add_done_callback(lambda _f: callback())

    def submit_stack(self, task: StackTask) -> None:
        """Send a stack task to a worker process (one per target and epoch at a time)."""
        future = self._ensure().submit(_stack_in_worker, task)
        with self._lock:
            self.stacks_inflight[task.key] = StackInFlight(task, future, time.monotonic())
        if self._on_done is not None:
            callback = self._on_done
            future.add_done_callback(lambda _f: callback())

    def collect_stacks(self, *, timeout_s: float = 0.0) -> list[StackOutcome]:
        """Return finished stack outcomes in submission order (a dead worker: an error outcome).

        ``timeout_s`` waits that long for the oldest one.
        """
        from concurrent.futures import wait

        with self._lock:
            items = list(self.stacks_inflight.values())
        if items and timeout_s > 0:
            wait([items[0].future], timeout=timeout_s)
        outcomes: list[StackOutcome] = []
        broken = False
        for item in items:
            if not item.future.done():
                break
            exc = None if item.future.cancelled() else item.future.exception()
            if item.future.cancelled() or exc is not None:
                broken = broken or isinstance(exc, BrokenProcessPool)
                why = "cancelled" if exc is None else f"{type(exc).__name__}: {exc}"
                outcomes.append(StackOutcome(task=item.task, error=f"worker process died ({why})"))
            else:
                outcomes.append(item.future.result())
            with self._lock:
                del self.stacks_inflight[item.task.key]
        if broken:
            self._discard_executor()
        return outcomes

    def collect(self, *, timeout_s: float = 0.0) -> list[TaskOutcome]:
        """Return finished outcomes **in submission order** (waiting up to ``timeout_s``).

        An outcome is held back until every task submitted before it has
        finished, so results are stored in ledger order whatever order the
        workers finish in: alert decisions, which depend on what is already
        stored, are then the same in every run (also after a crash and restart).
        A task whose worker died (``BrokenProcessPool``) comes back as a "retry"
        outcome, and the pool is rebuilt for the next submit.
        """
        from concurrent.futures import wait

        with self._lock:
            items = list(self.inflight.values())
        if items and timeout_s > 0:
            wait([items[0].future], timeout=timeout_s)
        outcomes: list[TaskOutcome] = []
        broken = False
        for item in items:
            if not item.future.done():
                break
            exc = None if item.future.cancelled() else item.future.exception()
            if item.future.cancelled() or exc is not None:
                broken = broken or isinstance(exc, BrokenProcessPool)
                why = "cancelled" if exc is None else f"{type(exc).__name__}: {exc}"
                outcomes.append(
                    TaskOutcome(
                        frame_id=item.task.frame_id,
                        outcome="retry",
                        error=f"worker process died or pool restarted ({why})",
                    )
                )
            else:
                outcomes.append(item.future.result())
            with self._lock:
                del self.inflight[item.task.frame_id]
        if broken:
            self._discard_executor()
        return outcomes

    def _discard_executor(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def oldest_age_s(self) -> float:
        """Seconds the oldest task in flight has been waiting or running (0 when idle)."""
        with self._lock:
            starts = [i.submitted_s for i in self.inflight.values()]
            starts += [i.submitted_s for i in self.stacks_inflight.values()]
        return time.monotonic() - min(starts) if starts else 0.0

    def cancel_queued(self) -> list[int]:
        """Cancel tasks not yet started; return their frame ids (to be abandoned).

        Stack tasks not yet started are dropped too (the database still shows their
        epochs as out of date, so the next start builds them).
        """
        cancelled: list[int] = []
        with self._lock:
            for key, stack in list(self.stacks_inflight.items()):
                if stack.future.cancel():
                    del self.stacks_inflight[key]
            for frame_id, item in list(self.inflight.items()):
                if item.future.cancel():
                    cancelled.append(frame_id)
                    del self.inflight[frame_id]
        return cancelled

    def shutdown(self) -> None:
        """Stop the worker processes, waiting for tasks already running. Safe to call twice."""
        self._discard_executor()
