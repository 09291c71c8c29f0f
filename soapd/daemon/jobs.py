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
``process_pending``  collect finished worker results (frames, then stacked epochs), submit more
                     'downloaded' frames, then the stacks of epochs that frames joined
``flush_alerts``     send the alert outbox
``reconcile``        re-list the last ``reconcile_window_h`` and requeue what is missing
``heartbeat``        one INFO line with the backlog and counters
"""

from __future__ import annotations

import logging
import queue
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from soapd.config import Config, Token, read_token
from soapd.daemon.intake import download_frames, drain_inbox
from soapd.daemon.pool import WorkerPool
from soapd.errors import (
    FrameUnreadable,
    SkynetAuthError,
    SkynetError,
    SkynetNotFound,
    SoapdError,
    StoreError,
)
from soapd.frames import TaskOutcome, apply_outcome, start_task
from soapd.ingest.retry import Backoff
from soapd.logs import FrameLogger
from soapd.models import FrameRow
from soapd.skynet.fetcher import Fetcher, FetchResult
from soapd.skynet.records import Exposure
from soapd.skynet.source import ExposureSource
from soapd.stacks.plan import StackTask
from soapd.store import Store

if TYPE_CHECKING:
    from soapd.alerts.notifiers import Notifier
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
    "reconcile",
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
)


@dataclass
class JobContext:
    """Everything the jobs share. Built by the service; touched only by the scheduler thread.

    ``source_factory`` builds the archive client from a token (tests pass one
    that talks to the fake server); ``wake(job_id)`` asks the scheduler to run a
    job now; ``inbox`` is filled by the watcher thread; ``fetcher`` runs the
    downloads on their own threads (made by ``download_frames``); ``inbox_retry``
    holds inbox files to copy again later (a full disk).
    """

    config: Config
    store: Store
    pool: WorkerPool
    wake: Callable[[str], None]
    source_factory: Callable[[Token], ExposureSource] | None = None
    read_token: Callable[[], Token | None] | None = None
    notifiers: list[Notifier] = field(default_factory=list)
    inbox: queue.Queue[Path] = field(default_factory=queue.Queue)
    source: ExposureSource | None = None
    auth_blocked_until: float = 0.0
    counters: Counter[str] = field(default_factory=Counter)
    fetcher: Fetcher | None = None
    #: Finished downloads held back until every earlier frame still downloading has ended,
    #: so that frames reach 'downloaded' (and so processing and alerts) in ledger order.
    download_held: list[FetchResult] = field(default_factory=list)
    inbox_retry: Backoff[Path] = field(default_factory=lambda: Backoff(base_s=5.0, cap_s=600.0))
    #: Stacked epochs waiting for a worker, by (target name, epoch key); the newest plan wins.
    stack_queue: dict[tuple[str, str], StackTask] = field(default_factory=dict)
    #: Epochs built this run with nothing to stack (considered frames, config hash).
    stack_empty: dict[tuple[str, str], tuple[frozenset[int], str]] = field(default_factory=dict)
    #: Whether the start-up sweep for out-of-date stacks has run.
    stacks_swept: bool = False

    @property
    def max_tries(self) -> int:
        """Download or processing attempts per frame (``service.max_tries``)."""
        return self.config.service.max_tries

    def get_source(self) -> ExposureSource | None:
        """Return the archive client, (re)building it from a freshly read token when needed.

        While the token is missing or was refused, return None until
        ``skynet.auth_retry_interval_s`` has passed, so the API is not hammered.
        """
        if self.source is not None:
            return self.source
        if self.source_factory is None or time.monotonic() < self.auth_blocked_until:
            return None
        reader = self.read_token or (lambda: read_token(self.config.skynet))
        try:
            token = reader()
        except SoapdError as exc:
            token = None
            logger.error("cannot read the Skynet token: %s", exc)  # noqa: TRY400
        if not token:
            self._block_auth(
                "no Skynet API token: put it in $CREDENTIALS_DIRECTORY/skynet-token "
                "(systemd LoadCredential=), $SOAPD_SKYNET_TOKEN or skynet.token_file"
            )
            return None
        self.source = self.source_factory(token)
        return self.source

    def _block_auth(self, message: str) -> None:
        wait_s = self.config.skynet.auth_retry_interval_s
        self.auth_blocked_until = time.monotonic() + wait_s
        logger.error("%s; polling paused, next try in %.0f s", message, wait_s)
        self.store.set_status(auth_error=message, auth_error_utc=self.store.now())
        if self.source is not None:
            self.source.close()
            self.source = None

    def auth_failed(self, exc: SkynetAuthError) -> None:
        """Say plainly that the token was refused and pause polling for the retry interval."""
        self._block_auth(
            f"Skynet refused the API token ({exc}); replace the token (the credential file, "
            "$SOAPD_SKYNET_TOKEN or skynet.token_file) - it is re-read at the next try"
        )


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
    (``--until-idle``). Frames go to the workers first; stacked epochs that frames
    joined (and, once after start, every out-of-date epoch) get what capacity is left.
    """
    done = 0
    for outcome in ctx.pool.collect(timeout_s=wait_s):
        finish(ctx, outcome)
        done += 1
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


def _submit(ctx: JobContext, row: FrameRow, targets: tuple[Target, ...]) -> None:
    log = FrameLogger(logger, {"frame_id": row.frame_id, "exp_id": row.exp_id})
    try:
        task = start_task(ctx.store, row.frame_id, targets)
    except StoreError as exc:  # the Python API took it in the meantime
        log.info("not started: %s", exc)
        return
    except FrameUnreadable as exc:  # its file is gone: the frame is failed
        ctx.counters["failed"] += 1
        log.warning("failed: %s", exc)
        return
    try:
        ctx.pool.submit(task)
    except (RuntimeError, OSError) as exc:  # pool shut down or broken, process start failed
        log.exception("could not hand it to a worker")
        ctx.store.mark_retry(row.frame_id, f"submit failed: {exc}", max_tries=ctx.max_tries)


def finish(ctx: JobContext, out: TaskOutcome) -> None:
    """Apply one worker outcome to the ledger (:func:`soapd.frames.apply_outcome`) and log it."""
    row = ctx.store.frame(out.frame_id)
    log = FrameLogger(
        logger,
        {"frame_id": out.frame_id, "exp_id": row and row.exp_id, "obs_id": row and row.obs_id},
    )
    out, state = apply_outcome(ctx.store, out, config=ctx.config)
    if state == "processed":
        from soapd.daemon.stack_jobs import plan_stacks

        plan_stacks(ctx, out.frame_id, _target_names(out))
        ctx.counters["processed"] += 1
        ctx.store.set_status(last_success_utc=ctx.store.now())
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


def flush_alerts(ctx: JobContext, store: Store | None = None) -> None:
    """Send due alerts from the outbox through the configured notifiers.

    The service runs this on its own thread with its own connection (``store``),
    so a slow or failing notifier never delays the storing of frames.
    """
    from soapd.alerts import outbox

    outbox.flush(
        store or ctx.store, ctx.notifiers, config=ctx.config.alerts, circular=ctx.config.circular
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
    return new + requeued


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
    logger.info("%s", line)
    return line
