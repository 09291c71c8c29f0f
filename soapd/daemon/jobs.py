"""The daemon's scheduled jobs: thin functions over skynet, ingest, the frame lifecycle and alerts.

Every job takes the :class:`JobContext` and runs on the scheduler's single
thread, so every database write happens there (DESIGN §4.3). The database is
the queue: a job only moves frames from one ledger state to the next, and any
job can be interrupted between two frames without losing or repeating work.
Each frame's steps (download, start, outcome, record) are those of
:mod:`soapd.frames`, which the Python API uses too.

``poll_skynet``      list followed observations/telescopes, record new exposures
``download_frames``  start downloads on their threads, record those that ended (in
                     :mod:`soapd.daemon.intake`, with ``drain_inbox``)
``drain_inbox``      register files the inbox watcher queued (and retry those due)
``process_pending``  count the tries of started frames, store finished ones (then finished
                     stacked epochs), submit more 'downloaded' frames, then the stacks of
                     epochs that frames joined
``flush_alerts``     send the alert outbox
``reconcile``        re-list the last ``reconcile_window_h`` and requeue what is missing
``heartbeat``        one INFO line with the backlog and counters
``prune``            apply ``[retention]`` (daily)
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from soapd.daemon.context import JobContext
from soapd.daemon.intake import download_frames, drain_inbox
from soapd.errors import (
    FrameUnreadable,
    SkynetAuthError,
    SkynetError,
    SkynetNotFound,
    SoapdError,
    StoreError,
)
from soapd.frames import TaskOutcome, apply_outcome, claim_task
from soapd.logs import FrameLogger
from soapd.models import FrameRow
from soapd.skynet.records import Exposure
from soapd.skynet.source import ExposureSource
from soapd.store import Store, is_busy

if TYPE_CHECKING:
    from soapd.models import Target

__all__ = [
    "JOB_NAMES",
    "JobContext",
    "download_frames",
    "drain_inbox",
    "finish",
    "flush_alerts",
    "heartbeat",
    "poll_skynet",
    "process_pending",
    "prune",
    "reconcile",
    "record_outcomes",
    "save_job_errors",
    "settle",
]

logger = logging.getLogger(__name__)

JOB_NAMES = (
    "poll_skynet",
    "download_frames",
    "drain_inbox",
    "process_pending",
    "flush_alerts",
    "reconcile",
    "heartbeat",
    "prune",
)

#: Seconds between two runs of the retention job (``prune``): daily.
PRUNE_INTERVAL_S = 86400.0


def _now_utc() -> datetime:
    return datetime.now(UTC)


def poll_skynet(ctx: JobContext, *, window_s: float | None = None) -> int:
    """List followed observations and telescopes, record new exposures. Return how many are new.

    ``window_s`` (reconciliation) keeps only exposures with a mid-exposure time
    in the last ``window_s`` seconds and sets the telescopes' look-back.
    """
    cfg = ctx.config.skynet
    observations = ctx.store.followed_observations()
    if not observations and not cfg.telescopes:
        return 0  # nothing followed (an inbox-only set-up needs no token)
    source = ctx.get_source()
    if source is None:
        return 0
    ctx.store.set_status(last_poll_utc=ctx.store.now())
    look_back_s = window_s or max(3 * cfg.poll_interval_s, 3600.0)
    since = _now_utc() - timedelta(seconds=look_back_s)
    new = 0
    errors: list[str] = []
    listings: list[tuple[str, Callable[[], list[Exposure]]]] = [
        (f"observation {obs}", partial(_list_obs, source, obs)) for obs in observations
    ]
    listings += [
        (f"telescope {tel}", partial(_list_tel, source, tel, since)) for tel in cfg.telescopes
    ]
    for what, listing in listings:
        try:
            exposures = listing()
        except SkynetAuthError as exc:
            ctx.auth_failed(exc)
            return new
        except SkynetNotFound as exc:
            errors.append(f"{what}: {exc}")
            logger.warning("%s is not on Skynet (or not visible to this token): %s", what, exc)
            continue
        except SkynetError as exc:
            errors.append(f"{what}: {exc}")
            logger.warning("listing %s failed, will retry at the next poll: %s", what, exc)
            continue
        if window_s is not None:
            exposures = [e for e in exposures if _in_window(e, since)]
        ids = ctx.store.record_seen(exposures)
        if ids:
            logger.info("%s: %d new exposure(s)", what, len(ids))
        new += len(ids)
    ctx.store.set_status(last_poll_error="; ".join(errors) or None)
    if not errors:
        ctx.store.set_status(last_poll_ok_utc=ctx.store.now(), auth_error=None)
    ctx.counters["seen"] += new
    if new or ctx.store.frames_to_download(1):
        ctx.wake("download_frames")
    return new


def _list_obs(source: ExposureSource, obs_id: int) -> list[Exposure]:
    return list(source.iter_archived(obs_id))


def _list_tel(source: ExposureSource, telescope: str, since: datetime) -> list[Exposure]:
    return list(source.iter_telescope(telescope, since_utc=since))


def _in_window(exp: Exposure, since: datetime) -> bool:
    when = exp.meta.mid_time_utc or exp.time_archived_utc
    return when is None or when >= since


def process_pending(ctx: JobContext, *, wait_s: float = 0.0) -> int:
    """Store the results of finished frames and stacks, then keep the workers busy.

    Return frames stored. ``wait_s`` waits that long for the first finished frame
    (``--until-idle``). While the database is locked by another process no new
    frame is handed out (see :func:`record_outcomes`). Frames go to the workers
    first; stacked epochs that frames joined (and, once after start, every
    out-of-date epoch) get what capacity is left.
    """
    done = record_outcomes(ctx, wait_s=wait_s)
    if ctx.started or ctx.unapplied:  # the database is locked: hand out nothing new
        return done
    from soapd.daemon.stack_jobs import finish_stack, plan_stacks, submit_stacks

    # With no frame in flight, the wait (--until-idle) is for the oldest stack instead.
    stack_wait = wait_s if not ctx.pool.inflight and not done else 0.0
    for stack_outcome in ctx.pool.collect_stacks(timeout_s=stack_wait):
        finish_stack(ctx, stack_outcome)
    room = ctx.pool.capacity
    if room:
        rows = ctx.store.pending_frames(room)
        targets = tuple(ctx.store.active_targets()) if rows else ()
        for row in rows:
            _submit(ctx, row, targets)
    if not ctx.stacks_swept:
        ctx.stacks_swept = True
        plan_stacks(ctx)
    submit_stacks(ctx)
    return done


def record_outcomes(ctx: JobContext, *, wait_s: float = 0.0) -> int:
    """Count the tries of frames workers started; store finished frames in order. Return stored.

    A try is counted when a worker reports that it started a frame. When the
    database is locked by another process, the starts and outcomes already
    collected stay in ``ctx.started`` / ``ctx.unapplied``, in order, and are
    written at the next call: nothing is dropped.
    """
    ctx.unapplied.extend(ctx.pool.collect(timeout_s=wait_s))
    ctx.started.extend(ctx.pool.take_started())
    done = 0
    try:
        while ctx.started:
            ctx.store.mark_started(ctx.started[0])
            ctx.started.popleft()
        while ctx.unapplied:
            out = ctx.unapplied[0]
            try:
                finish(ctx, out)
            except Exception as exc:
                if is_busy(exc):
                    raise
                ctx.unapplied.popleft()
                _outcome_not_stored(ctx, out, exc)
                continue
            ctx.unapplied.popleft()
            done += 1
    except Exception as exc:
        if not is_busy(exc):
            raise
        logger.warning(
            "the database is locked by another process: %d start(s) and %d result(s) are kept "
            "and written at the next run",
            len(ctx.started),
            len(ctx.unapplied),
        )
    return done


def _outcome_not_stored(ctx: JobContext, out: TaskOutcome, exc: Exception) -> None:
    """Log an outcome that could not be written (not a lock); put the frame back for a retry."""
    logger.error(
        "frame %d: its %r outcome could not be stored (%s: %s); the frame is retried",
        out.frame_id,
        out.outcome,
        type(exc).__name__,
        exc,
    )
    try:
        ctx.store.mark_retry(out.frame_id, f"store: {exc}", max_tries=ctx.max_tries)
    except Exception:  # unit-of-work boundary: the restart sweep puts it back at the latest
        logger.exception("frame %d: cannot put it back either", out.frame_id)


def settle(ctx: JobContext, *, grace_s: float) -> None:
    """At shutdown: put back frames not started; store every outcome of running ones.

    Waits up to ``grace_s`` seconds; frames still running then are redone at the
    next start. Finished stacked epochs are stored too.
    """
    from soapd.daemon.stack_jobs import finish_stack

    for frame_id in ctx.pool.cancel_queued():
        with contextlib.suppress(SoapdError):
            ctx.store.abandon_attempt(frame_id)
    deadline = time.monotonic() + grace_s
    while (ctx.pool.inflight or ctx.unapplied or ctx.started) and time.monotonic() < deadline:
        record_outcomes(ctx, wait_s=1.0)
        for stack in ctx.pool.collect_stacks():
            finish_stack(ctx, stack)
        if ctx.unapplied or ctx.started:  # the database is locked: wait a little
            time.sleep(0.5)
    left = len(ctx.pool.inflight) + len(ctx.unapplied)
    if left:
        logger.warning(
            "%d frame(s) still running or unsaved at exit; they are redone at the next start", left
        )


def _submit(ctx: JobContext, row: FrameRow, targets: tuple[Target, ...]) -> None:
    log = FrameLogger(logger, {"frame_id": row.frame_id, "exp_id": row.exp_id})
    try:
        task = claim_task(ctx.store, row.frame_id, targets)
    except StoreError as exc:  # the Python API took it in the meantime
        log.info("not started: %s", exc)
        return
    except FrameUnreadable as exc:  # its file is gone: the frame is failed
        ctx.counters["failed"] += 1
        log.warning("failed: %s", exc)
        return
    try:
        ctx.pool.submit(task)
    except (RuntimeError, OSError):  # pool shut down, or a worker process could not start
        log.exception("could not hand it to a worker; it waits for the next run")
        ctx.store.abandon_attempt(row.frame_id)


def finish(ctx: JobContext, out: TaskOutcome) -> None:
    """Apply one worker outcome to the ledger (:func:`soapd.frames.apply_outcome`) and log it.

    Raise the database's "locked" error (``soapd.store.is_busy``) with nothing
    written, so that the caller can apply the outcome again later.
    """
    row = ctx.store.frame(out.frame_id)
    log = FrameLogger(
        logger,
        {"frame_id": out.frame_id, "exp_id": row and row.exp_id, "obs_id": row and row.obs_id},
    )
    if row is None or row.state != "processing":
        log.warning(
            "outcome %r dropped: the frame is %s, not 'processing'",
            out.outcome,
            row.state if row else "gone",
        )
        return
    out, state = apply_outcome(ctx.store, out, config=ctx.config)
    if state == "processed":
        from soapd.daemon.stack_jobs import plan_stacks

        ctx.counters["processed"] += 1
        try:
            plan_stacks(ctx, out.frame_id, _target_names(out))
        except Exception as exc:  # the outcome is stored; planning stacks must not undo that
            logger.warning("frame %d: cannot plan its stacked epochs: %s", out.frame_id, exc)
        try:
            ctx.store.set_status(last_success_utc=ctx.store.now())
        except Exception as exc:  # the outcome is stored; a status line must not undo that
            logger.warning("cannot write the service status: %s", exc)
        log.info("%s", frame_line(out))
        ctx.wake("flush_alerts")
    elif out.outcome == "rejected":
        ctx.counters["rejected"] += 1
        log.warning("rejected in %.2f s: %s", out.duration_s, out.error)
    elif out.outcome == "failed":
        ctx.counters["failed"] += 1
        log.warning("failed in %.2f s: %s", out.duration_s, out.error)
    else:
        ctx.counters["failed" if state == "failed" else "retried"] += 1
        verdict = "failed for good" if state == "failed" else "will retry"
        log.warning("error in %.2f s (%s): %s", out.duration_s, verdict, out.error)


def _target_names(out: TaskOutcome) -> set[str]:
    """Return the names of the targets a processed frame has rows for."""
    table = out.result.table if out.result is not None else None
    if table is None or "target_name" not in table.colnames:
        return set()
    return {str(n) for n in table["target_name"]} - {""}


def frame_line(out: TaskOutcome) -> str:
    """Return the one INFO line of a processed frame: zero point, stars, FWHM, limit, time."""
    assert out.result is not None
    s = out.result.summary
    zp = f"zp {s.zp_mag:.3f}±{s.zp_err_mag:.3f} mag" if s.zp_mag == s.zp_mag else "no zp"
    cat = f" {s.cal_catalog}" if s.cal_catalog else ""
    return (
        f"processed in {out.duration_s:.2f} s: {s.band or s.filter_raw} {s.exptime_s:g} s, "
        f"{zp} ({s.n_cal_stars} stars{cat}), fwhm {s.fwhm_px:.2f} px, "
        f"limit {s.lim_mag:.2f} mag, {s.n_sources} sources"
    )


def flush_alerts(ctx: JobContext, store: Store | None = None, *, final: bool = False) -> None:
    """Send due alerts from the outbox through the configured notifiers.

    The service runs this on its own thread with its own connection (``store``),
    so a slow or failing notifier never delays the storing of frames. ``final``
    (``soapd run --until-idle`` before it exits) sends the batches still held for
    ``alerts.batch_window_s`` too: no later run may be there to send them.
    """
    from soapd.alerts import outbox

    now = datetime.now(UTC)
    if final:
        now += timedelta(seconds=ctx.config.alerts.batch_window_s)
    outbox.flush(
        store or ctx.store,
        ctx.notifiers,
        config=ctx.config.alerts,
        now=now,
        circular=ctx.config.circular,
    )


def reconcile(ctx: JobContext) -> int:
    """Re-list the reconciliation window and requeue failed frames with tries left.

    Return the number of frames added or requeued.
    """
    window_s = ctx.config.skynet.reconcile_window_h * 3600.0
    new = poll_skynet(ctx, window_s=window_s) if window_s > 0 else 0
    since = _now_utc() - timedelta(seconds=window_s)
    requeued = ctx.store.requeue(since_utc=since, states=("failed",), max_tries_below=ctx.max_tries)
    if requeued:
        logger.info("reconcile: %d failed frame(s) with tries left requeued", requeued)
        ctx.wake("download_frames")
        ctx.wake("process_pending")
    from soapd.daemon.stack_jobs import plan_stacks

    # Epochs whose time bins ended since their last build get their remaining frames.
    if plan_stacks(ctx, throttle=True):
        ctx.wake("process_pending")
    return new + requeued


def prune(ctx: JobContext) -> str:
    """Apply ``[retention]`` (daily; at start too): delete old frame files and field tables.

    Measurements are never deleted; frames still needed are never chosen
    (:func:`soapd.retention.plan_prune`). Return the summary line ("" when every
    retention limit is off).
    """
    from soapd.retention import run_daily

    outcome = run_daily(ctx.store, ctx.config)
    if outcome is None:
        return ""
    line = f"retention: {outcome.summary()}"
    logger.info("%s", line)
    for error in outcome.errors:
        logger.warning("retention: %s", error)
    return line


def heartbeat(ctx: JobContext) -> str:
    """Log one INFO line with the backlog per state and the counters since start; return it."""
    backlog = ctx.store.backlog()
    states = " ".join(f"{k}={v}" for k, v in backlog.items())
    counts = " ".join(f"{k}={ctx.counters[k]}" for k in ("seen", "processed", "failed", "stacks"))
    line = (
        f"heartbeat: frames {states}; in flight {len(ctx.pool.inflight)}; "
        f"stacks queued {len(ctx.stack_queue)}, building {len(ctx.pool.stacks_inflight)}; "
        f"since start {counts}"
    )
    ctx.store.set_status(heartbeat_utc=ctx.store.now())
    if ctx.errors is not None:
        save_job_errors(ctx)
    logger.info("%s", line)
    return line


def save_job_errors(ctx: JobContext) -> None:
    """Write the current job errors (one line per job) for ``soapd status``; None when none."""
    current = ctx.errors.current() if ctx.errors is not None else {}
    ctx.store.set_status(job_errors=json.dumps(current, sort_keys=True) if current else None)
