"""Run-time helpers of the service: the worker heartbeat and the job waker.

:class:`Health` decides whether the supervisor may ping the systemd watchdog;
:class:`Waker` lets any thread ask for a scheduled job to run now. Both are
thread-safe and know nothing about frames or the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["Health", "Waker"]

logger = logging.getLogger(__name__)


class Health:
    """The worker heartbeat: when each job started and finished. Thread-safe.

    Healthy means no job has been running for more than ``stall_s``, some job
    finished within ``stall_s`` (the scheduler is alive), and no frame has been in
    a worker for more than ``stall_s``.
    """

    def __init__(self, stall_s: float) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}
        self.last_finished = time.monotonic()
        self.stall_s = stall_s
        #: Runs finished per job since start.
        self.runs: Counter[str] = Counter()
        #: When (monotonic s) each job last finished.
        self.finished_at: dict[str, float] = {}

    def started(self, job_id: str) -> None:
        """Record that ``job_id`` started."""
        with self._lock:
            self._running[job_id] = time.monotonic()

    def finished(self, job_id: str) -> None:
        """Record that ``job_id`` finished."""
        with self._lock:
            self._running.pop(job_id, None)
            self.last_finished = time.monotonic()
            self.runs[job_id] += 1
            self.finished_at[job_id] = self.last_finished

    def problem(self, oldest_frame_s: float = 0.0) -> str | None:
        """Return why the worker looks hung, or None when it is healthy."""
        now = time.monotonic()
        with self._lock:
            running = dict(self._running)
            idle_s = now - self.last_finished
        for job_id, since in running.items():
            if now - since > self.stall_s:
                return f"job {job_id} has been running for {now - since:.0f} s"
        if not running and idle_s > self.stall_s:
            return f"no job has run for {idle_s:.0f} s"
        if oldest_frame_s > self.stall_s:
            return f"a frame has been in a worker for {oldest_frame_s:.0f} s"
        return None


class Waker:
    """Run a scheduled job now, without tripping APScheduler's ``max_instances=1``.

    Any thread may call :meth:`wake`; it only records the wish and nudges the
    supervisor, whose thread calls :meth:`flush` to reschedule the jobs. Keeping
    ``modify_job`` off the job threads matters: APScheduler's ``shutdown`` holds
    its job-store lock while it waits for the running job, so a job that
    rescheduled another job itself could deadlock the shutdown. A job that is
    queued or running when woken is run again right after it ends (the
    scheduler's own events say when). A no-op without a scheduler (``--until-idle``).
    """

    def __init__(self, notify: Callable[[], None] = lambda: None) -> None:
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._pending: set[str] = set()
        self._notify = notify
        self.scheduler: Any = None

    def attach(self, scheduler: Any) -> None:
        """Listen to ``scheduler``'s job events."""
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED

        self.scheduler = scheduler
        scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._ended, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def close(self) -> None:
        """Ignore wakes from now on (before the scheduler shuts down)."""
        with self._lock:
            self.scheduler = None
            self._pending.clear()

    def _submitted(self, event: Any) -> None:
        with self._lock:
            self._busy.add(event.job_id)

    def _ended(self, event: Any) -> None:
        with self._lock:
            self._busy.discard(event.job_id)
            if event.job_id not in self._again:
                return
            self._again.discard(event.job_id)
            self._pending.add(event.job_id)
        self._notify()

    def wake(self, job_id: str) -> None:
        """Ask for ``job_id`` to run as soon as the scheduler thread is free (any thread)."""
        with self._lock:
            if self.scheduler is None:
                return
            (self._again if job_id in self._busy else self._pending).add(job_id)
        self._notify()

    def flush(self) -> None:
        """Reschedule the woken jobs to run now (the supervisor's thread only)."""
        from apscheduler.jobstores.base import JobLookupError
        from apscheduler.schedulers import SchedulerNotRunningError

        with self._lock:
            scheduler, todo = self.scheduler, self._pending - self._busy
            self._again |= self._pending & self._busy
            self._pending = set()
        if scheduler is None:
            return
        now = datetime.now(UTC)
        for job_id in sorted(todo):
            try:
                scheduler.modify_job(job_id, next_run_time=now)
            except (JobLookupError, SchedulerNotRunningError):
                logger.debug("cannot wake %s: the scheduler is stopping", job_id)
