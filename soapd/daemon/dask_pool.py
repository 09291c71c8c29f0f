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
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soapd.config import Config
from soapd.daemon.ordered import InOrder
from soapd.errors import ConfigError
from soapd.frames import FrameTask, TaskOutcome, run_task, table_path_for
from soapd.stacks.plan import StackKey, StackOutcome, StackTask, run_stack_task

if TYPE_CHECKING:
    from astropy.table import Table

    from soapd.catalogs.cache import Tile
    from soapd.catalogs.service import CatalogService
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = ["START_TOPIC", "CatalogSlice", "DaskPool", "catalog_slice", "run_remote"]

logger = logging.getLogger(__name__)

#: dask event topic on which a worker says it started a frame ({"key": task key}).
START_TOPIC = "soapd-frame-start"
#: Seconds :meth:`DaskPool.start` waits for the scheduler and a first worker.
START_TIMEOUT_S = 120.0
#: Seconds between two looks at the cluster's size (for ``capacity``).
SIZE_REFRESH_S = 5.0
#: Degrees added to the frame's radius when the tiles shipped with a task are chosen.
SLICE_MARGIN_DEG = 0.1


# ------------------------------------------------------------------------------ catalogs
@dataclass(slots=True)
class CatalogSlice:
    """A catalog service and the tables a worker needs for one frame (picklable).

    ``CatalogService`` pickles without its in-memory tables; this carries them:
    ``tiles`` the cached tiles around the frame, ``local`` the local catalog files'
    tables. :meth:`service_on_worker` puts them back into the service.
    """

    service: CatalogService
    tiles: dict[tuple[str, Tile], Table] = field(default_factory=dict)
    local: dict[str, list[Table]] | None = None

    def service_on_worker(self) -> CatalogService:
        """Return the service with the shipped tables in its memory (call on the worker)."""
        svc = self.service
        svc._tiles.update(self.tiles)
        if self.local is not None:
            svc._local = dict(self.local)
        return svc


def _header_cone(path: Path, hdu: int) -> tuple[float, float, float] | None:
    """Return (RA, Dec, radius; deg) of the frame's image from its FITS header, or None."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from soapd.catalogs.cache import angular_sep_deg

    try:
        with fits.open(path, memmap=False) as hdul:
            if hdu >= 0:
                header = hdul[hdu].header
            else:
                header = next(h.header for h in hdul if h.header.get("NAXIS", 0) == 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header).celestial
        if not wcs.has_celestial:
            return None
        nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
        xs = [0.0, nx - 1.0, 0.0, nx - 1.0, (nx - 1) / 2.0]
        ys = [0.0, 0.0, ny - 1.0, ny - 1.0, (ny - 1) / 2.0]
        ra, dec = wcs.all_pix2world(xs, ys, 0)
        radius = float(max(angular_sep_deg(ra[4], dec[4], ra[:4], dec[:4])))
    except (OSError, KeyError, ValueError, StopIteration, IndexError):
        return None
    if not all(math.isfinite(v) for v in (ra[4], dec[4], radius)):
        return None
    return float(ra[4]) % 360.0, float(dec[4]), radius


def catalog_slice(
    catalogs: ReferenceProvider | None, task: FrameTask, config: Config
) -> ReferenceProvider | CatalogSlice | None:
    """Return what goes with ``task`` for its calibration (a :class:`CatalogSlice`).

    Providers other than a ``CatalogService`` (tests' fakes) go as they are. Only
    tiles the driver has cached are shipped, so the worker makes the same choice
    between tiles and local files as a worker on the driver's host.
    """
    from soapd.catalogs.registry import spec
    from soapd.catalogs.service import CatalogService
    from soapd.filters import normalise_filter

    if not isinstance(catalogs, CatalogService):
        return catalogs
    catalogs._local_tables("")  # read the local files once, on the driver
    shipped = CatalogSlice(service=catalogs, local=dict(catalogs._local or {}))
    cone = _header_cone(task.path, config.frame.hdu)
    if cone is None:
        return shipped
    ra, dec, radius = cone
    bands = {normalise_filter(task.meta.filter or None), config.calibration.unfiltered_band}
    names = {name for band in bands for name in catalogs.chain(band)}
    from soapd.catalogs.cache import tiles_for_cone

    for name in sorted(names):
        s = spec(name)
        if s.vizier_id is None:
            continue
        key = catalogs._key(s)
        for tile in tiles_for_cone(ra, dec, radius + SLICE_MARGIN_DEG, catalogs.config.tile_deg):
            table = catalogs._tiles.get((name, tile))
            if table is None:
                table = catalogs.cache.get(name, tile, key)
            if table is not None:
                shipped.tiles[(name, tile)] = table
    return shipped


# ------------------------------------------------------------------------- worker side
def run_remote(
    key: str,
    task: FrameTask,
    config: Config,
    catalogs: ReferenceProvider | CatalogSlice | None,
    data: bytes | None,
) -> TaskOutcome:
    """Run one frame on a dask worker (:func:`soapd.frames.run_task`); return its outcome.

    Says "started" (a dask event on :data:`START_TOPIC`) first. With ``data`` (the
    frame's bytes) the frame is written to a temporary folder and run there, with
    ``paths.state_dir`` in that folder too; the result names the original file and
    has no table path (the driver writes the table).
    """
    try:
        from distributed import get_worker

        get_worker().log_event(START_TOPIC, {"key": key})
    except (ImportError, ValueError):  # not on a dask worker (tests call this directly)
        pass
    provider = catalogs.service_on_worker() if isinstance(catalogs, CatalogSlice) else catalogs
    if data is None:
        return run_task(task, config, provider)
    with tempfile.TemporaryDirectory(prefix="soapd-frame-") as tmp:
        local = Path(tmp) / task.path.name
        local.write_bytes(data)
        cfg = replace(config, paths=replace(config.paths, state_dir=Path(tmp) / "state"))
        out = run_task(replace(task, path=local), cfg, provider)
    if out.result is None:
        return replace(out, error=out.error.replace(str(local), str(task.path)))
    return replace(out, result=_renamed(out.result, local, task.path), table_path=None)


def _renamed(result: Any, local: Path, original: Path) -> Any:
    """Return ``result`` with the temporary file name ``local`` replaced by ``original``."""
    summary = replace(
        result.summary, image_file=result.summary.image_file.replace(str(local), str(original))
    )
    table = result.table
    for name, value in list(table.meta.items()):
        if isinstance(value, str) and str(local) in value:
            table.meta[name] = value.replace(str(local), str(original))
    for name in table.colnames:
        col = table[name]
        if col.dtype.kind in "US" and len(col) and str(local) in str(col[0]):
            table[name] = [str(v).replace(str(local), str(original)) for v in col]
    return replace(result, summary=summary, table=table)


# ------------------------------------------------------------------------- driver side
@dataclass(slots=True)
class _Slot:
    """One frame in flight: its dask future and when a worker said it started."""

    key: str
    future: Any
    started_s: float | None = None
    sent_bytes: bool = False


class DaskPool:
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
        self._cond = threading.Condition(threading.RLock())
        self._frames: InOrder[int, FrameTask, TaskOutcome] = InOrder()
        self._stacks: InOrder[StackKey, StackTask, StackOutcome] = InOrder()
        self._slots: dict[int, _Slot] = {}
        self._stack_futures: dict[StackKey, Any] = {}
        self._by_key: dict[str, int] = {}
        self._started: list[int] = []
        self._closed = False
        self._subscribed = False

    # ------------------------------------------------------------------ views
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

    @property
    def capacity(self) -> int:
        """How many more tasks may be submitted now (two per worker thread of the cluster)."""
        if self._client is None or self._closed:
            return 0
        self._refresh_size()
        with self._cond:
            return max(0, 2 * self._slots_total - len(self._frames) - len(self._stacks))

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
        with self._cond:
            self._frames.add(task.frame_id, task)
            self._by_key[key] = task.frame_id
            future = self._client.submit(
                run_remote, key, task, self.config, shipped, data, key=key, pure=False
            )
            self._slots[task.frame_id] = _Slot(key=key, future=future, sent_bytes=send)
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

    def take_started(self) -> list[int]:
        """Return (and forget) the frames that workers started since the last call, in order."""
        with self._cond:
            started, self._started = self._started, []
        return started

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
