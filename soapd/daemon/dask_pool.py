"""Frames on dask.distributed workers, behind the worker pool's interface (``executor = "dask"``).

:class:`DaskPool` has :class:`soapd.daemon.pool.WorkerPool`'s interface
(:class:`soapd.daemon.executor.FramePool`), so the daemon's jobs, ``soapd run`` and
``soapd reprocess --executor dask`` drive it unchanged. Each frame becomes one
``Client.submit`` of :func:`run_remote`, which runs the same pure frame function as
the process pool (:func:`soapd.frames.run_task`) on a worker of the scheduler at
``service.dask_scheduler``; the outcome comes back by value. Nothing on a worker
touches the database: the driver (the scheduler thread of soapd) writes every start
and outcome, in submission order (:class:`~soapd.daemon.ordered.InOrder`), so the
ledger, the measurements and the alert decisions are those of the process pool.

What goes with each task:

* the frame: its path (workers that mount ``paths.state_dir`` at the same place read
  it there), or, with ``service.dask_send_frames``, its bytes; the worker then writes
  them to a temporary folder, runs the frame there (its image file name is restored
  in the result) and soapd writes the field-wide Parquet table itself;
* the reference catalogs as a :class:`CatalogSlice`: the local catalog files
  (``calibration.catalog_files``), read once on the driver, and every tile of the
  driver's catalog cache around the frame's pointing, so a worker needs neither the
  files nor the cache. Tiles the driver has not cached are fetched by the worker as a
  local worker would (``calibration.online``), into its own cache folder.

Tries: a worker says it started a frame with a dask event (topic :data:`START_TOPIC`);
the driver counts the try then (or, when the event comes late, when the result
arrives). A worker that dies is replaced by dask, which reruns its task
(``distributed.scheduler.allowed-failures``); a task that keeps killing workers comes
back as a "retry" outcome. A frame started more than ``service.stall_timeout_s`` ago
is given up (a "retry" outcome); dask cannot kill the thread that runs it.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from soapd.config import Config
from soapd.daemon.dask_remote import START_TOPIC, CatalogSlice, catalog_slice, run_remote
from soapd.daemon.ordered import InFlight
from soapd.errors import ConfigError
from soapd.frames import FrameTask, TaskOutcome, table_path_for
from soapd.stacks.plan import StackKey, StackOutcome, StackTask, run_stack_task

if TYPE_CHECKING:
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = ["DaskPool"]

logger = logging.getLogger(__name__)

#: Seconds :meth:`DaskPool.start` waits for the scheduler and a first worker.
START_TIMEOUT_S = 120.0
#: Seconds between two looks at the cluster's size (for ``capacity``).
SIZE_REFRESH_S = 5.0


@dataclass(slots=True)
class _Slot:
    """One frame in flight: its dask future and when a worker said it started."""

    key: str
    future: Any
    started_s: float | None = None
    sent_bytes: bool = False
    #: Futures of the values scattered for it (frame bytes, catalog slice), kept until done.
    inputs: list[Any] = field(default_factory=list)


class DaskPool(InFlight):
    """Frames and stacks on the workers of a dask.distributed scheduler.

    Thread-safe like ``WorkerPool``: the scheduler thread submits, collects and shuts
    down; dask's threads finish futures and deliver start events. ``client`` (tests:
    a ``Client`` of a ``LocalCluster``) is used instead of connecting to
    ``service.dask_scheduler``; it is not closed by :meth:`shutdown`.
    """

    def __init__(
        self,
        config: Config,
        catalogs: ReferenceProvider | None = None,
        *,
        on_event: Callable[[], None] | None = None,
        client: Any = None,
        address: str | None = None,
        stall_timeout_s: float | None = None,
    ) -> None:
        """Prepare the pool; the scheduler is contacted at :meth:`start` or the first submit."""
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(
                'service.executor = "dask" needs dask.distributed: pip install "soapd[dask]"'
            ) from None
        self.config = config
        self.catalogs = catalogs
        self.address = address or config.service.dask_scheduler
        self.stall_timeout_s = (
            config.service.stall_timeout_s if stall_timeout_s is None else stall_timeout_s
        )
        self.n_workers = 0
        self._slots_total = 0
        self._size_at = -math.inf
        self._client = client
        self._own_client = client is None
        self._on_event = on_event
        super().__init__()
        self._slots: dict[int, _Slot] = {}
        self._stack_futures: dict[StackKey, Any] = {}
        self._by_key: dict[str, int] = {}
        self._closed = False
        self._subscribed = False

    # ------------------------------------------------------------------ views
    @property
    def capacity(self) -> int:
        """How many more tasks may be submitted now (two per worker thread of the cluster)."""
        if self._client is None or self._closed:
            return 0
        self._refresh_size()
        return self._free(self._slots_total)

    def oldest_age_s(self) -> float:
        """Seconds the longest-running started frame has been on its worker (0 when none)."""
        now = time.monotonic()
        with self._cond:
            starts = [s.started_s for s in self._slots.values() if s.started_s is not None]
        return now - min(starts) if starts else 0.0

    def _refresh_size(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._size_at < SIZE_REFRESH_S:
            return
        try:
            threads = self._client.nthreads()
        except Exception as exc:  # the scheduler is unreachable: keep the last size
            logger.warning("dask scheduler %s: cannot read its workers: %s", self.address, exc)
            self._size_at = now
            return
        with self._cond:
            self.n_workers = len(threads)
            self._slots_total = int(sum(threads.values()))
            self._size_at = now

    # ---------------------------------------------------------------- start-up
    def _ensure(self) -> None:
        if self._closed:
            raise RuntimeError("the dask pool is shut down")
        if self._client is None:
            from distributed import Client

            try:
                connect: Any = Client  # untyped constructor
                self._client = connect(self.address, timeout=START_TIMEOUT_S)
            except OSError as exc:
                raise RuntimeError(
                    f"cannot reach the dask scheduler {self.address}: {exc}"
                ) from exc
        if not self._subscribed:
            self._client.subscribe_topic(START_TOPIC, self._on_start)
            self._subscribed = True

    def start(self) -> None:
        """Connect to the scheduler and wait for a first worker; raise RuntimeError if none."""
        self._ensure()
        try:
            self._client.wait_for_workers(1, timeout=START_TIMEOUT_S)
        except TimeoutError as exc:
            raise RuntimeError(
                f"no dask worker joined the scheduler {self.address} in {START_TIMEOUT_S:.0f} s"
            ) from exc
        self._refresh_size(force=True)
        logger.info(
            "dask scheduler %s: %d worker(s), %d thread(s)",
            self.address or "(given client)",
            self.n_workers,
            self._slots_total,
        )

    # -------------------------------------------------------------- scheduling
    def submit(self, task: FrameTask) -> None:
        """Send ``task`` to the cluster (it is not charged a try until a worker starts it)."""
        self._ensure()
        send = self.config.service.dask_send_frames
        data = task.path.read_bytes() if send else None
        shipped = catalog_slice(self.catalogs, task, self.config)
        key = f"soapd-frame-{task.frame_id}-{uuid.uuid4().hex[:12]}"
        # Large values go to a worker beforehand (scatter), not inside the task graph
        # through the scheduler; the task then depends on them.
        heavy: list[Any] = []
        if data is not None:
            data_arg: Any = self._client.scatter(data, hash=False)
            heavy.append(data_arg)
        else:
            data_arg = None
        shipped_arg: Any = shipped
        if isinstance(shipped, CatalogSlice) and (shipped.tiles or shipped.local):
            shipped_arg = self._client.scatter(shipped, hash=False)
            heavy.append(shipped_arg)
        with self._cond:
            self._frames.add(task.frame_id, task)
            self._by_key[key] = task.frame_id
            future = self._client.submit(
                run_remote, key, task, self.config, shipped_arg, data_arg, key=key, pure=False
            )
            self._slots[task.frame_id] = _Slot(
                key=key, future=future, sent_bytes=send, inputs=heavy
            )
        future.add_done_callback(self._frame_done)

    def submit_stack(self, task: StackTask) -> None:
        """Send a stack task to the cluster (its workers must read ``paths.state_dir``)."""
        self._ensure()
        key = f"soapd-stack-{uuid.uuid4().hex[:12]}"
        with self._cond:
            self._stacks.add(task.key, task)
            future = self._client.submit(run_stack_task, task, self.config, key=key, pure=False)
            self._stack_futures[task.key] = future
        future.add_done_callback(lambda f, k=task.key: self._stack_done(k, f))

    def collect(self, *, timeout_s: float = 0.0) -> list[TaskOutcome]:
        """Return finished outcomes **in submission order** (waiting up to ``timeout_s``).

        As ``WorkerPool.collect``. Frames started longer than the stall timeout ago
        come back as "retry" outcomes; with ``dask_send_frames`` the field-wide table
        of each ok outcome is written here.
        """
        self._check_stalls()
        with self._cond:
            outs = self._frames.take(self._cond, timeout_s)
            sent = {fid for fid in (o.frame_id for o in outs) if self._pop(fid)}
        return [self._write_table(o) if o.frame_id in sent else o for o in outs]

    def collect_stacks(self, *, timeout_s: float = 0.0) -> list[StackOutcome]:
        """Return finished stack outcomes in submission order (waiting up to ``timeout_s``)."""
        with self._cond:
            outs = self._stacks.take(self._cond, timeout_s)
            for out in outs:
                self._stack_futures.pop(out.task.key, None)
        return outs

    def cancel_queued(self) -> list[int]:
        """Withdraw frames no worker has started (and stacks); return the frame ids."""
        with self._cond:
            cancelled = [fid for fid, s in self._slots.items() if s.started_s is None]
            for fid in cancelled:
                slot = self._slots.pop(fid)
                self._by_key.pop(slot.key, None)
                slot.future.cancel()
                self._frames.drop(fid)
            for key, future in list(self._stack_futures.items()):
                if not future.done():
                    future.cancel()
                    self._stacks.drop(key)
                    del self._stack_futures[key]
        return cancelled

    # -------------------------------------------------------------- callbacks
    def _pop(self, frame_id: int) -> bool:
        """Forget a collected frame (lock held); return True when its bytes were sent."""
        slot = self._slots.pop(frame_id, None)
        if slot is None:
            return False
        self._by_key.pop(slot.key, None)
        return slot.sent_bytes

    def _mark_started(self, frame_id: int) -> None:
        """Record the start of ``frame_id`` once (lock held)."""
        slot = self._slots.get(frame_id)
        if slot is None or slot.started_s is not None:
            return
        slot.started_s = time.monotonic()
        self._started.append(frame_id)

    def _on_start(self, event: tuple[float, Any]) -> None:
        """Handle a worker's start event (dask's event thread)."""
        _, msg = event
        key = msg.get("key") if isinstance(msg, dict) else None
        with self._cond:
            frame_id = self._by_key.get(str(key))
            if frame_id is None:
                return
            slot = self._slots.get(frame_id)
            if slot is None or slot.key != key:
                return
            self._mark_started(frame_id)
            self._cond.notify_all()
        if self._on_event is not None:
            self._on_event()

    def _frame_done(self, future: Any) -> None:
        """Turn a finished future into the frame's outcome (dask's callback thread)."""
        with self._cond:
            frame_id = self._by_key.get(future.key)
            if frame_id is None or self._slots.get(frame_id) is None:
                return  # withdrawn or given up meanwhile
        out = _outcome_of(frame_id, future)
        if out is None:
            return
        with self._cond:
            slot = self._slots.get(frame_id)
            if slot is None or slot.key != future.key:
                return
            self._mark_started(frame_id)  # the start event may come after the result
            self._frames.finish(frame_id, out)
            self._cond.notify_all()
        if self._on_event is not None:
            self._on_event()

    def _stack_done(self, key: StackKey, future: Any) -> None:
        """Turn a finished stack future into its outcome (dask's callback thread)."""
        if future.status == "cancelled":
            return
        with self._cond:
            task = self._stacks.tasks.get(key)
        if task is None:
            return
        try:
            out: StackOutcome = future.result()
        except Exception as exc:  # the task kept killing workers, or could not be sent
            out = StackOutcome(task=task, error=f"dask: {type(exc).__name__}: {exc}")
        with self._cond:
            self._stacks.finish(key, out)
            self._cond.notify_all()
        if self._on_event is not None:
            self._on_event()

    def _check_stalls(self) -> None:
        """Give up frames started longer than ``stall_timeout_s`` ago ("retry" outcomes)."""
        now = time.monotonic()
        with self._cond:
            for frame_id, slot in list(self._slots.items()):
                if slot.started_s is None or now - slot.started_s <= self.stall_timeout_s:
                    continue
                if frame_id in self._frames and not slot.future.done():
                    ran_s = now - slot.started_s
                    logger.error(
                        "frame %d has run for %.0f s on a dask worker (service.stall_timeout_s "
                        "= %g); given up",
                        frame_id,
                        ran_s,
                        self.stall_timeout_s,
                    )
                    slot.future.cancel()
                    error = f"stalled: no result after {ran_s:.0f} s on a dask worker"
                    self._frames.finish(
                        frame_id,
                        TaskOutcome(
                            frame_id=frame_id, outcome="retry", error=error, duration_s=ran_s
                        ),
                    )
                    slot.started_s = None  # finished: no longer counts as running

    def _write_table(self, out: TaskOutcome) -> TaskOutcome:
        """Write the field-wide table of an ok outcome whose worker had the frame's bytes."""
        if out.outcome != "ok" or out.result is None:
            return out
        from soapd.fileio import publish
        from soapd.output.export import write_table

        path = table_path_for(self.config, out.frame_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            write_table(out.result.table, part, fmt="parquet")
            publish(part, path)
        except OSError as exc:
            error = f"table: {type(exc).__name__}: {exc}"
            return replace(out, outcome="retry", result=None, error=error)
        return replace(out, table_path=path)

    # ----------------------------------------------------------------- stopping
    def shutdown(self) -> None:
        """Cancel what is in flight and disconnect (the cluster keeps running). Safe twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            futures = [s.future for s in self._slots.values()]
            futures += list(self._stack_futures.values())
            self._slots.clear()
            self._stack_futures.clear()
            self._by_key.clear()
        client = self._client
        if client is None:
            return
        for future in futures:
            future.cancel()
        if self._subscribed:
            try:
                client.unsubscribe_topic(START_TOPIC)
            except Exception as exc:  # the scheduler may be gone already
                logger.debug("dask: unsubscribe failed: %s", exc)
        if self._own_client:
            client.close()


def _outcome_of(frame_id: int, future: Any) -> TaskOutcome | None:
    """Return a finished future's outcome; None when it was cancelled."""
    if future.status == "cancelled":
        return None
    try:
        out: TaskOutcome = future.result()
    except Exception as exc:  # the frame kept killing workers, or could not be sent
        text = f"dask: {type(exc).__name__}: {exc}"
        logger.warning("frame %d: %s; the frame is retried", frame_id, text)
        return TaskOutcome(frame_id=frame_id, outcome="retry", error=text)
    return out
