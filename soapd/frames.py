"""The frame lifecycle, shared by the daemon's jobs and the Python API (``Soap``).

A frame moves through the ledger in five steps, one function each; the daemon
(:mod:`soapd.daemon.jobs`) and ``Soap`` (:mod:`soapd.api.soap`) both call these,
so a frame handled by either is handled the same way:

``download_one``   fetch a 'seen' frame's file and record it, or its fault (:mod:`soapd.downloads`)
``claim_task``     move a 'downloaded' frame to 'processing' for a worker pool; its task
                   (the try is counted when a worker starts it; ``start_task`` counts it now)
``run_task``       run the pipeline and write the field-wide table; the outcome by value
``apply_outcome``  write an outcome to the ledger (``record_result`` when it is ok)
``record_result``  evaluate the alert rules and store everything in one transaction

The daemon runs ``run_task`` in its worker processes and applies the outcomes
on its scheduler thread; ``Soap`` calls :func:`process_one`, which runs it in the
calling process and applies the outcome. What each failure does:

* download: see :mod:`soapd.downloads` (a refused token or an unavailable archive
  counts no try; an answer that is not the file is retried with backoff and
  counts a try only after ``skynet.download_budget_s``; 404 and other HTTP
  errors count a try; the frame is 'failed' at ``service.max_tries``).
* processing: ``FrameRejected`` -> 'rejected' (never retried); ``FrameUnreadable``
  -> 'failed'; any other ``SoapdError`` or an ``OSError`` -> retried ('downloaded'
  again, 'failed' at ``service.max_tries``); an unexpected exception (a bug) ->
  'failed', its traceback logged once; a worker that dies -> retried.

No SQL here: every write is one ``Store`` method.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from soapd import __version__
from soapd.config import Config
from soapd.downloads import Fetched, download_one
from soapd.errors import FrameRejected, FrameUnreadable, SoapdError
from soapd.logs import frame_context
from soapd.models import ExposureMeta, FrameResult, FrameRow, Target

if TYPE_CHECKING:
    from soapd.pipeline.calibrate import ReferenceProvider
    from soapd.store import Store

__all__ = [
    "Fetched",
    "FrameTask",
    "Outcome",
    "Processor",
    "TaskOutcome",
    "apply_outcome",
    "claim_task",
    "download_one",
    "known_meta",
    "process_one",
    "record_result",
    "run_task",
    "start_task",
    "table_path_for",
    "verify_file",
    "without_off_footprint_rows",
]

logger = logging.getLogger(__name__)

Outcome = Literal["ok", "rejected", "failed", "retry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameTask:
    """One frame to process: what ``run_task`` needs besides the config and catalogs.

    ``sha256`` is the checksum the ledger registered for ``path``: the worker
    checks the file still has it before reading a pixel (None: not checked).
    ``tries`` is how many processing attempts the frame had used when it was
    claimed (the worker pool retries a frame whose worker died while tries are left).
    """

    frame_id: int
    path: Path
    meta: ExposureMeta
    targets: tuple[Target, ...]
    sha256: str | None = None
    tries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    """What ``run_task`` returns: the outcome, the result when ok, the error text otherwise."""

    frame_id: int
    outcome: Outcome
    result: FrameResult | None = None
    table_path: Path | None = None
    error: str = ""
    duration_s: float = 0.0


#: ``run_task``'s signature: (task, config, catalogs) -> outcome. Tests pass a counting wrapper.
Processor = Callable[[FrameTask, Config, "ReferenceProvider | None"], TaskOutcome]


# --------------------------------------------------------------------- processing
def claim_task(store: Store, frame_id: int, targets: Sequence[Target]) -> FrameTask:
    """Move a 'downloaded' frame to 'processing' for a worker pool (no try counted); its task.

    The try is counted when a worker reports that it started the frame
    (``Store.mark_started``). Raise StoreError when the frame is not
    'downloaded' (another process took it), or FrameUnreadable when its file is
    gone (the frame is marked failed).
    """
    claimed = store.claim_frame(frame_id)
    task = _task_for(store, claimed, targets)
    return replace(task, tries=claimed.tries)


def start_task(store: Store, frame_id: int, targets: Sequence[Target]) -> FrameTask:
    """Move a 'downloaded' frame to 'processing' counting the try now; return its task.

    For callers that run the task at once in their own process (``Soap``).
    Raise as :func:`claim_task`.
    """
    started = store.start_attempt(frame_id)
    return _task_for(store, started, targets)


def _task_for(store: Store, row: FrameRow, targets: Sequence[Target]) -> FrameTask:
    """Return the task of frame ``row`` (just claimed or started); fail it when its file is gone."""
    frame_id, path = row.frame_id, row.path
    if path is None or not path.is_file():
        why = f"file {path} is missing"
        store.mark_failed(frame_id, why)
        raise FrameUnreadable(why)
    return FrameTask(
        frame_id=frame_id, path=path, meta=row.meta, targets=tuple(targets), sha256=row.sha256
    )


def verify_file(task: FrameTask) -> None:
    """Raise FrameUnreadable when the task's file no longer has the registered checksum."""
    from soapd.fileio import sha256_file

    if task.sha256 is None:
        return
    digest, _size = sha256_file(task.path)
    if digest != task.sha256:
        raise FrameUnreadable(
            f"{task.path.name} changed since it was registered (sha256 {digest[:16]}..., "
            f"the ledger has {task.sha256[:16]}...); not processed"
        )


def known_meta(config: Config, path: Path) -> ExposureMeta | None:
    """Return the archive metadata the ledger holds for the file at ``path``, or None.

    A frame the daemon downloaded is known by its checksum: processing it again by
    hand (``soapd process``) then uses the archive's gain, read noise, filter and
    times where the header lacks them, as the daemon did, and gets the same numbers.
    None when there is no soapd database at ``paths.state_dir`` or the file is not
    in it. The database is opened read-only (safe beside a running daemon).
    """
    from soapd.fileio import sha256_file
    from soapd.store import Store

    db = config.paths.db_path
    if not db.is_file():
        return None
    try:
        digest, _size = sha256_file(path)
    except OSError:  # unreadable: the pipeline says why when it tries
        return None
    with Store(db, read_only=True) as store:
        row = store.find_frame(sha256=digest)
    return row.meta if row is not None else None


def table_path_for(config: Config, frame_id: int) -> Path:
    """Return where frame ``frame_id``'s field-wide Parquet table is kept."""
    return config.paths.tables_dir / f"frame_{frame_id:09d}.parquet"


def run_task(
    task: FrameTask, config: Config, catalogs: ReferenceProvider | None = None
) -> TaskOutcome:
    """Run the pipeline on a task's frame, write its field-wide table; return the outcome.

    Never raises an Exception: errors become outcomes (see the module docstring).
    Every log record made meanwhile carries ``frame_id`` (:func:`soapd.logs.frame_context`).
    """
    from soapd.fileio import publish
    from soapd.output.export import write_table
    from soapd.pipeline import process_frame

    start = time.perf_counter()
    outcome: Outcome = "ok"
    error = ""
    result: FrameResult | None = None
    out: Path | None = None
    with frame_context(task.frame_id):
        try:
            verify_file(task)
            result = process_frame(
                task.path,
                targets=list(task.targets),
                config=config,
                meta=task.meta,
                catalogs=catalogs,
            )
            out = table_path_for(config, task.frame_id)
            out.parent.mkdir(parents=True, exist_ok=True)
            part = out.with_name(out.name + ".part")
            write_table(result.table, part, fmt="parquet")
            publish(part, out)
        except FrameRejected as exc:
            outcome, error = "rejected", f"rejected: {exc}"
        except FrameUnreadable as exc:
            outcome, error = "failed", f"unreadable: {exc}"
        except (SoapdError, OSError) as exc:  # expected and maybe transient: try again
            outcome, error = "retry", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # unit-of-work boundary: a bug fails this frame, not the worker
            logger.exception(
                "frame %d: unexpected %s while processing %s",
                task.frame_id,
                type(exc).__name__,
                task.path,
            )
            outcome, error = "failed", f"unexpected {type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - start
    if outcome != "ok":
        return TaskOutcome(frame_id=task.frame_id, outcome=outcome, error=error, duration_s=elapsed)
    return TaskOutcome(
        frame_id=task.frame_id, outcome="ok", result=result, table_path=out, duration_s=elapsed
    )


def process_one(
    store: Store,
    task: FrameTask,
    *,
    config: Config,
    catalogs: ReferenceProvider | None,
    processor: Processor | None = None,
) -> tuple[TaskOutcome, str]:
    """Run a started task in this process and apply its outcome; return it and the new state.

    ``processor`` defaults to :func:`run_task`. A processor that raises is
    treated as a worker that died (retried); an interrupt (Ctrl-C) puts the frame
    back without counting against its last try, and is re-raised.
    """
    try:
        try:
            out = (processor or run_task)(task, config, catalogs)
        except Exception as exc:  # unit-of-work boundary, as a worker dying in the daemon's pool
            logger.exception("frame %d: the processor failed", task.frame_id)
            error = f"{type(exc).__name__}: {exc}"
            out = TaskOutcome(frame_id=task.frame_id, outcome="retry", error=error)
        return _apply_retrying(store, out, config=config)
    except BaseException:
        row = store.frame(task.frame_id)
        if row is not None and row.state == "processing":  # never leave it there for ever
            store.mark_retry(task.frame_id, "interrupted", max_tries=config.service.max_tries + 1)
        raise


#: Seconds :func:`process_one` keeps retrying to store an outcome while the database is locked.
BUSY_RETRY_S = 300.0


def _apply_retrying(store: Store, out: TaskOutcome, *, config: Config) -> tuple[TaskOutcome, str]:
    """:func:`apply_outcome`, retried while another process holds the write lock."""
    from soapd.store import is_busy

    deadline = time.monotonic() + BUSY_RETRY_S
    while True:
        try:
            return apply_outcome(store, out, config=config)
        except Exception as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            logger.warning(
                "frame %d: the database is locked by another process; storing again in 1 s",
                out.frame_id,
            )
            time.sleep(1.0)


def apply_outcome(store: Store, out: TaskOutcome, *, config: Config) -> tuple[TaskOutcome, str]:
    """Write one outcome of a frame in 'processing' to the ledger; return it and the new state.

    ok -> :func:`record_result` ('processed'); rejected -> 'rejected'; failed ->
    'failed'; retry -> 'downloaded' again, or 'failed' at ``service.max_tries``. An
    ok result that cannot be stored becomes a retry (the returned outcome says so),
    except when the database is locked by another process: then the error
    (``soapd.store.is_busy``) is raised and nothing is written, so the caller can
    apply the same outcome again later.
    """
    if out.outcome == "ok" and out.result is not None:
        try:
            record_result(
                store,
                out.frame_id,
                out.result,
                config=config,
                table_path=None if out.table_path is None else str(out.table_path),
            )
        except Exception as exc:  # unit-of-work boundary: the frame must not stay 'processing'
            from soapd.store import is_busy

            if is_busy(exc):  # another process holds the write lock: keep the result, retry
                raise
            logger.exception("frame %d: storing the result failed", out.frame_id)
            error = f"store: {type(exc).__name__}: {exc}"
            out = replace(out, outcome="retry", result=None, table_path=None, error=error)
        else:
            return out, "processed"
    if out.outcome == "rejected":
        store.mark_rejected(out.frame_id, out.error)
        return out, "rejected"
    if out.outcome == "failed":
        store.mark_failed(out.frame_id, out.error)
        return out, "failed"
    state = store.mark_retry(out.frame_id, out.error, max_tries=config.service.max_tries)
    return out, state


def record_result(
    store: Store,
    frame_id: int,
    result: FrameResult,
    *,
    config: Config,
    table_path: str | None,
) -> list[int]:
    """Evaluate the alert rules and store ``result`` in one transaction; return new alert ids.

    Measurements, frame summary, the state 'processed', the alert drafts and the
    targets' new rule states of :func:`soapd.alerts.history.decide_alerts` go to
    ``Store.save_result`` together.
    Target rows outside the frame's footprint (off the frame, or a frame without
    WCS) are dropped first: such a target gets no row at all. A target inside the
    footprint that could not be measured keeps its not-covered row (no flux, no
    limit), which the rules and lightcurves never see.
    """
    from soapd.alerts.history import decide_alerts

    result = without_off_footprint_rows(result)
    decision = decide_alerts(store, frame_id, result, config=config)
    ids = store.save_result(
        frame_id,
        result,
        alerts=decision.drafts,
        rule_states=decision.states,
        config_hash=config.fingerprint(),
        soapd_version=__version__,
        table_path=table_path,
        lim_nsigma=config.limits.n_sigma,
    )
    if ids:
        logger.info("frame %d raised %d new alert(s)", frame_id, len(ids))
    return ids


def without_off_footprint_rows(result: FrameResult) -> FrameResult:
    """Return ``result`` without the forced rows whose position is outside the footprint.

    Those are the not-covered rows flagged OFF_FRAME (NO_WCS frames set it too): the
    frame never imaged the position, so the daemon keeps nothing of them.
    """
    from soapd.columns import column_or
    from soapd.flags import Flag

    table = result.table
    if len(table) == 0 or "flag" not in table.colnames:
        return result
    flags = column_or(table, "flag", 0).astype("int64")
    outside = int(Flag.NOT_COVERED | Flag.OFF_FRAME)
    drop = (flags & outside) == outside
    if not drop.any():
        return result
    return replace(result, table=table[~drop])
