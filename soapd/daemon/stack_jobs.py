"""The daemon's stacked-epoch steps, run by ``process_pending`` on the scheduler thread.

``plan_stacks``    queue the epochs a processed frame joined (or, once after start,
                   every out-of-date epoch: :func:`soapd.stacks.plan.dirty_tasks`)
``submit_stacks``  hand queued epochs to the worker pool while frames leave room
                   (one task per epoch at a time; the newest plan wins)
``finish_stack``   store a built stack and its alerts in one transaction
                   (:func:`soapd.stacks.plan.record_stack`), or log why there is none

An epoch with nothing stackable is remembered (``JobContext.stack_empty``) until its
frames change, so it is not tried again and again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime

from soapd.daemon.context import JobContext
from soapd.errors import SoapdError
from soapd.stacks.plan import StackOutcome, dirty_tasks, record_stack

__all__ = ["finish_stack", "plan_stacks", "submit_stacks"]

logger = logging.getLogger("soapd.daemon.jobs")


def plan_stacks(
    ctx: JobContext,
    frame_id: int | None = None,
    target_names: Collection[str] | None = None,
    *,
    throttle: bool | None = None,
) -> int:
    """Queue the stacked epochs that are out of date; return how many were queued.

    With ``frame_id`` (just processed), the epochs of the ``target_names`` it
    measured, open epochs only once they grew by ``stacks.rebuild_growth``; without,
    every out-of-date epoch of every active target (the start-up sweep). ``throttle``
    (default: with ``frame_id``) applies ``stacks.rebuild_growth`` to open epochs;
    the reconcile job sweeps with it, so epochs whose bins ended get their last frames.
    """
    if not ctx.config.stacks.enabled:
        return 0
    if throttle is None:
        throttle = frame_id is not None
    queued = 0
    for target in ctx.store.active_targets():
        if target_names is not None and target.name not in target_names:
            continue
        try:
            # Every out-of-date epoch of the target (the query reads all its candidates
            # anyway), so an epoch whose bin has ended gets its last frames; open epochs
            # wait for stacks.rebuild_growth more frames.
            tasks = dirty_tasks(
                ctx.store,
                target,
                ctx.config,
                done=ctx.stack_empty,
                now_utc=datetime.now(UTC) if throttle else None,
            )
        except (SoapdError, OSError, ValueError) as exc:
            logger.warning("stacks of %s not planned: %s", target.name, exc)
            continue
        for task in tasks:
            ctx.stack_queue[task.key] = task
            queued += 1
    return queued


def submit_stacks(ctx: JobContext) -> None:
    """Hand queued stack tasks to the workers while there is room (one per epoch at a time)."""
    for key in list(ctx.stack_queue):
        if ctx.pool.capacity <= 0:
            return
        if key in ctx.pool.stacks_inflight:
            continue  # rebuilt when the running one is stored
        task = ctx.stack_queue.pop(key)
        try:
            ctx.pool.submit_stack(task)
        except (RuntimeError, OSError):
            logger.exception("stack %s of %s: could not hand it to a worker", key[1], key[0])
            ctx.stack_queue[key] = task
            return


def finish_stack(ctx: JobContext, out: StackOutcome) -> None:
    """Store one built stack (with its alerts) or log why there is none."""
    task = out.task
    name, key = task.key
    if out.error:
        ctx.counters["stack_errors"] += 1
        logger.warning("stack %s of %s failed in %.2f s: %s", key, name, out.duration_s, out.error)
        ctx.stack_empty[task.key] = (task.considered, task.config_hash)
        return
    result = out.result
    if result is None or not result.ok:
        ctx.stack_empty[task.key] = (task.considered, task.config_hash)
        reasons = "; ".join(f"{f}: {r}" for f, r in (result.excluded if result else ()))
        logger.info("stack %s of %s: nothing to stack (%s)", key, name, reasons or "no frames")
        return
    try:
        _, alert_ids = record_stack(ctx.store, out, config=ctx.config)
    except (SoapdError, ValueError) as exc:
        logger.warning("stack %s of %s not stored: %s", key, name, exc)
        return
    ctx.counters["stacks"] += 1
    shown = (
        f"{result.mag:.2f} +/- {result.mag_err:.2f} mag (S/N {result.snr:.1f})"
        if result.is_detection
        else f"limit {result.lim_mag:.2f} mag"
    )
    logger.info(
        "stack %s of %s: %d of %d frame(s), %s, in %.2f s",
        key,
        name,
        result.n_frames,
        len(task.considered),
        shown,
        out.duration_s,
    )
    if alert_ids:
        logger.info("stack %s of %s raised %d new alert(s)", key, name, len(alert_ids))
        ctx.wake("flush_alerts")
