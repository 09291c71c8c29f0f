"""Pixel work in worker processes (DESIGN §4.3a): one frame per task, results back by value.

The scheduler thread submits :class:`~soapd.frames.FrameTask` values; a worker
process runs :func:`soapd.frames.run_task` on it (``pipeline.process_frame`` plus
the frame's field-wide Parquet table, written atomically under
``paths.tables_dir``) and sends back a :class:`~soapd.frames.TaskOutcome`.
Workers never touch the database: every write stays on the scheduler thread.

Each worker has its own pipe and gets one task at a time, so the pool always
knows which frame each process holds:

* the worker says **"start"** before it runs a frame; only then is the frame
  charged a try (:meth:`WorkerPool.take_started`, recorded by the scheduler
  thread). A task waiting in the pool, or sent to a worker that dies before
  starting it, goes to the next worker without a try charged;
* a worker that dies (``kill -9``, out of memory) is noticed by its process
  sentinel within :data:`POLL_S`, logged once, and replaced; the frame it was
  running (its try was charged when it started) runs again at once, ahead of
  later frames so that results are still stored in ledger order, until
  ``service.max_tries`` attempts are used; then it comes back as a "retry"
  outcome (and the ledger marks it failed);
* a frame running longer than ``service.stall_timeout_s`` gets its worker
  killed (SIGKILL) and is treated the same way;
* workers die on SIGTERM and with the daemon (:mod:`soapd.daemon.worker`).

Stacked epochs are built by the same workers: :meth:`WorkerPool.submit_stack`
queues a :class:`~soapd.stacks.plan.StackTask`, :meth:`WorkerPool.collect_stacks`
returns the :class:`~soapd.stacks.plan.StackOutcome` values (a worker that dies or
stalls on a stack gives an error outcome; stacks are not charged tries). Frames and
stacks share the workers (``capacity`` counts both).

A monitor thread reads the pipes and sentinels; the scheduler thread submits,
collects and shuts down. All shared state is under one lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from soapd.config import Config
from soapd.daemon.forkserver import forkserver_context
from soapd.daemon.ordered import InFlight
from soapd.daemon.worker import PoolCounts, WorkerProc, exit_text, spawn_worker, stop_workers
from soapd.frames import FrameTask, Processor, TaskOutcome, run_task
from soapd.stacks.plan import StackOutcome, StackTask

if TYPE_CHECKING:
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = ["POLL_S", "WorkerPool"]

logger = logging.getLogger(__name__)

#: Seconds between two looks of the monitor thread at dead workers and stalled frames.
POLL_S = 0.25
#: Seconds :meth:`WorkerPool.start` waits for every worker to be ready.
START_TIMEOUT_S = 120.0
#: Longest wait in seconds before a worker that died during its start-up is replaced again.
MAX_RESPAWN_DELAY_S = 30.0
#: Seconds :meth:`WorkerPool.shutdown` gives a worker to exit before SIGTERM, then SIGKILL.
EXIT_GRACE_S = 5.0


class WorkerPool(InFlight):
    """``service.workers`` worker processes, the tasks in flight and their outcomes.

    Thread-safe. The scheduler thread calls :meth:`submit`, :meth:`take_started`,
    :meth:`collect`, :meth:`cancel_queued` and :meth:`shutdown`; the supervisor
    :meth:`oldest_age_s`; the monitor thread does the rest. ``on_event`` is called
    (from the monitor thread) when a frame starts or ends, or a worker dies.
    """

    def __init__(
        self,
        config: Config,
        catalogs: ReferenceProvider | None = None,
        *,
        on_event: Callable[[], None] | None = None,
        stall_timeout_s: float | None = None,
        runner: Processor = run_task,
    ) -> None:
        """Prepare a pool for ``config`` (processes start at :meth:`start` or the first submit).

        ``runner`` is what a worker runs on each task (:func:`soapd.frames.run_task`;
        tests pass another module-level function). ``stall_timeout_s`` defaults to
        ``service.stall_timeout_s``.
        """
        self.config = config
        self.catalogs = catalogs
        self.n_workers = config.service.workers or os.cpu_count() or 1
        self.stall_timeout_s = (
            config.service.stall_timeout_s if stall_timeout_s is None else stall_timeout_s
        )
        self._on_event = on_event
        self._runner = runner
        super().__init__()
        self._context: Any = None
        self._workers: list[WorkerProc] = []
        self._queue: deque[FrameTask | StackTask] = deque()
        self._attempts: dict[int, int] = {}
        self.max_tries = config.service.max_tries
        self._monitor: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._start_failures = 0
        self._respawn_after_s = 0.0
        self._last_start_error = ""
        self.counts = PoolCounts()

    # ------------------------------------------------------------------ views
    @property
    def capacity(self) -> int:
        """How many more tasks may be submitted now (keeps each worker one task ahead)."""
        return self._free(self.n_workers)

    def worker_pids(self) -> list[int]:
        """Return the process ids of the live workers."""
        with self._cond:
            return [w.pid for w in self._workers]

    def running(self) -> dict[int, int]:
        """Return frame id -> worker pid of every frame a worker has started."""
        with self._cond:
            return {
                w.task.frame_id: w.pid
                for w in self._workers
                if isinstance(w.task, FrameTask) and w.started_s is not None
            }

    def oldest_age_s(self) -> float:
        """Seconds the longest-running started frame has been in its worker (0 when none)."""
        now = time.monotonic()
        with self._cond:
            starts = [w.started_s for w in self._workers if w.started_s is not None]
        return now - min(starts) if starts else 0.0

    # ---------------------------------------------------------------- start-up
    def _ensure(self) -> None:
        """Start the fork server, the workers and the monitor thread if not yet running."""
        if self._closed:
            raise RuntimeError("the worker pool is shut down")
        if self._context is not None:
            return
        self._context = forkserver_context()
        with self._cond:
            for _ in range(self.n_workers):
                self._spawn()
        self._monitor = threading.Thread(target=self._watch, name="soapd-pool-monitor")
        self._monitor.start()

    def _spawn(self) -> None:
        """Start one worker process (lock held)."""
        args = (self.config, self.catalogs, self.config.service.max_tasks_per_child, self._runner)
        self._workers.append(spawn_worker(self._context, args))

    def start(self) -> None:
        """Start the worker processes now and wait until each is ready.

        Raise RuntimeError when they cannot start (a broken install, say).
        """
        self._ensure()
        deadline = time.monotonic() + START_TIMEOUT_S
        with self._cond:
            while True:
                if self._start_failures:
                    raise RuntimeError(f"worker processes cannot start ({self._last_start_error})")
                if len(self._workers) == self.n_workers and all(w.ready for w in self._workers):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"worker processes not ready after {START_TIMEOUT_S:.0f} s")
                self._cond.wait(min(left, POLL_S))

    # -------------------------------------------------------------- scheduling
    def submit(self, task: FrameTask) -> None:
        """Queue ``task`` for the next free worker (it is not charged a try until it starts)."""
        self._ensure()
        with self._cond:
            self._frames.add(task.frame_id, task)
            self._queue.append(task)
            self._dispatch()

    def submit_stack(self, task: StackTask) -> None:
        """Queue a stack task for the next free worker (one per target and epoch at a time)."""
        self._ensure()
        with self._cond:
            self._stacks.add(task.key, task)
            self._queue.append(task)
            self._dispatch()

    def collect_stacks(self, *, timeout_s: float = 0.0) -> list[StackOutcome]:
        """Return finished stack outcomes in submission order (waiting up to ``timeout_s``).

        A stack whose worker died or stalled comes back with its ``error`` set.
        """
        with self._cond:
            return self._stacks.take(self._cond, timeout_s)

    def _dispatch(self) -> None:
        """Send queued tasks to idle workers (lock held)."""
        for w in self._workers:
            if not self._queue:
                return
            if w.task is not None or w.retiring or not w.process.is_alive():
                continue
            task = self._queue.popleft()
            try:
                w.conn.send(task)
            except (OSError, ValueError):  # its pipe is gone: it died; the monitor reaps it
                self._queue.appendleft(task)
                w.retiring = True
                continue
            w.task = task

    def collect(self, *, timeout_s: float = 0.0) -> list[TaskOutcome]:
        """Return finished outcomes **in submission order** (waiting up to ``timeout_s``).

        An outcome is held back until every task submitted before it has
        finished, so results are stored in ledger order whatever order the
        workers finish in: alert decisions, which depend on what is already
        stored, are then the same in every run (also after a crash and restart).
        A frame whose worker died or stalled comes back as a "retry" outcome.
        """
        with self._cond:
            return self._frames.take(self._cond, timeout_s)

    def cancel_queued(self) -> list[int]:
        """Withdraw tasks no worker has received yet; return their frame ids (never started)."""
        with self._cond:
            cancelled = [t.frame_id for t in self._queue if isinstance(t, FrameTask)]
            # Stack tasks not yet started are dropped too (the database still shows their
            # epochs as out of date, so the next start builds them).
            for task in self._queue:
                if isinstance(task, StackTask):
                    self._stacks.drop(task.key)
            self._queue.clear()
            for frame_id in cancelled:
                self._frames.drop(frame_id)
        return cancelled

    # ----------------------------------------------------------------- monitor
    def _watch(self) -> None:
        """Run the monitor thread: read worker messages, reap dead workers, kill stalled ones."""
        while not self._stop.is_set():
            with self._cond:
                lookup: dict[Any, WorkerProc] = {w.conn: w for w in self._workers}
                lookup.update({w.process.sentinel: w for w in self._workers})
            try:
                ready = wait(list(lookup), timeout=POLL_S)
            except (OSError, ValueError):  # a pipe closed meanwhile; look again
                ready = []
            changed = False
            with self._cond:
                for obj in ready:
                    w = lookup[obj]
                    if w in self._workers:
                        changed |= self._read(w)
                for w in list(self._workers):
                    if not w.process.is_alive():
                        self._read(w)
                        self._reap(w)
                        changed = True
                changed |= self._check_stalls()
                if not self._closed:
                    self._refill()
                    self._dispatch()
                if changed:
                    self._cond.notify_all()
            if changed and self._on_event is not None:
                self._on_event()

    def _read(self, w: WorkerProc) -> bool:
        """Handle every message waiting on ``w``'s pipe (lock held). Return True if any."""
        got = False
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                got = True
                self._handle(w, msg)
        except (EOFError, OSError):
            w.retiring = True
        return got

    def _handle(self, w: WorkerProc, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready = True
            self._start_failures = 0
        elif kind == "start" and isinstance(w.task, StackTask) and msg[1] is None:
            w.started_s = time.monotonic()
        elif kind == "start" and isinstance(w.task, FrameTask) and msg[1] == w.task.frame_id:
            w.started_s = time.monotonic()
            frame_id = w.task.frame_id
            self._attempts[frame_id] = self._attempts.get(frame_id, 0) + 1
            self._started.append(frame_id)
        elif kind == "done" and isinstance(w.task, StackTask):
            stack: StackOutcome = msg[1]
            self._stacks.finish(stack.task.key, stack)
            w.task, w.started_s = None, None
        elif kind == "done" and w.task is not None:
            out: TaskOutcome = msg[1]
            self._frames.finish(out.frame_id, out)
            self._attempts.pop(out.frame_id, None)
            w.task, w.started_s = None, None
        elif kind == "retire":
            w.retiring = True
            self.counts.retired += 1

    def _reap(self, w: WorkerProc) -> None:
        """Account for a worker that exited (lock held): its frame, the log line, its slot."""
        w.process.join(timeout=0)
        code = w.process.exitcode
        self._workers.remove(w)
        w.reaped = True
        with contextlib.suppress(OSError):
            w.conn.close()
        with contextlib.suppress(ValueError, AttributeError):
            w.process.close()
        how = exit_text(code)
        if not w.ready:
            self._start_failures += 1
            self._last_start_error = f"worker process {w.pid} died ({how}) during its start-up"
            delay = min(MAX_RESPAWN_DELAY_S, 0.5 * 2.0 ** (self._start_failures - 1))
            self._respawn_after_s = time.monotonic() + delay
            if self._start_failures == 1 and w.task is None:  # else the task's line says it
                logger.error("%s; retrying in %.1f s", self._last_start_error, delay)
        task = w.task
        if task is None:
            if w.retiring and code == 0:
                logger.debug("worker %s retired after its task quota", w.pid)
            elif w.ready:
                self.counts.deaths += 1
                logger.warning("idle worker process %s died (%s); replaced", w.pid, how)
            return
        if isinstance(task, StackTask):
            self.counts.deaths += w.stalled_s is None
            why = "stalled" if w.stalled_s is not None else f"worker process died ({how})"
            self._stacks.finish(task.key, StackOutcome(task=task, error=why))
            who = f"worker process {w.pid} died ({how})" if w.stalled_s is None else "stalled"
            logger.warning("%s while building stack %s; worker replaced", who, task.key)
            return
        if w.started_s is None:
            self.counts.deaths += 1
            self.counts.requeued_unstarted += 1
            self._queue.appendleft(task)
            logger.warning(
                "worker process %s died (%s) before starting frame %d; the frame goes to the "
                "next worker without a try charged; worker replaced",
                w.pid,
                how,
                task.frame_id,
            )
            return
        ran_s = time.monotonic() - w.started_s
        if w.stalled_s is not None:
            error = (
                f"stalled: no result after {ran_s:.0f} s (service.stall_timeout_s = "
                f"{self.stall_timeout_s:g}); worker killed"
            )
        else:
            self.counts.deaths += 1
            error = f"worker process died ({how}) after {ran_s:.1f} s on this frame"
        if task.frame_id not in self._frames:
            return
        used = task.tries + self._attempts.get(task.frame_id, 0)
        if used < self.max_tries:
            # Run it again first, before any frame submitted after it, so that results are
            # still stored in ledger order (alert decisions depend on it). Its try was
            # counted when it started; the next start counts the next one.
            self._queue.appendleft(task)
            self.counts.retried += 1
            verdict = f"retried at once (try {used} of {self.max_tries} used)"
        else:
            gave_up = TaskOutcome(
                frame_id=task.frame_id, outcome="retry", error=error, duration_s=ran_s
            )
            self._frames.finish(task.frame_id, gave_up)
            verdict = f"given up: all {self.max_tries} tries used"
        who = f"worker process {w.pid} died ({how})" if w.stalled_s is None else "stalled"
        logger.warning("%s while processing frame %d; frame %s", who, task.frame_id, verdict)

    def _check_stalls(self) -> bool:
        """Kill workers whose frame ran past ``stall_timeout_s`` (lock held). Return True if any."""
        now = time.monotonic()
        killed = False
        for w in self._workers:
            if w.started_s is None or w.stalled_s is not None or w.task is None:
                continue
            if now - w.started_s <= self.stall_timeout_s:
                continue
            w.stalled_s = now
            self.counts.stalls += 1
            what = (
                f"stack {w.task.key}"
                if isinstance(w.task, StackTask)
                else f"frame {w.task.frame_id} (charged a try)"
            )
            logger.error(
                "%s has run for %.0f s in worker process %s (service.stall_timeout_s = "
                "%g); killing the worker",
                what,
                now - w.started_s,
                w.pid,
                self.stall_timeout_s,
            )
            with contextlib.suppress(OSError, ValueError):
                w.process.kill()
            killed = True
        return killed

    def _refill(self) -> None:
        """Replace exited workers (lock held), after a delay when they died while starting."""
        missing = self.n_workers - len(self._workers)
        if missing <= 0 or time.monotonic() < self._respawn_after_s:
            return
        for _ in range(missing):
            try:
                self._spawn()
            except OSError as exc:
                self._start_failures += 1
                self._last_start_error = f"cannot start a worker process: {exc}"
                self._respawn_after_s = time.monotonic() + MAX_RESPAWN_DELAY_S
                logger.error(  # noqa: TRY400 - one line; the OSError text says it all
                    "%s; retrying in %.0f s", self._last_start_error, MAX_RESPAWN_DELAY_S
                )
                return
            self.counts.respawns += 1

    # ----------------------------------------------------------------- stopping
    def shutdown(self) -> None:
        """Stop the worker processes (tasks still running are abandoned). Safe to call twice.

        Idle workers are asked to exit; any still alive after :data:`EXIT_GRACE_S`
        get SIGTERM (which they do not ignore), then SIGKILL.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            workers = list(self._workers)
            for w in workers:
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join()
        stop_workers([w for w in workers if not w.reaped], grace_s=EXIT_GRACE_S)
        with self._cond:
            self._workers.clear()
