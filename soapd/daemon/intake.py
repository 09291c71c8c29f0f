"""The intake jobs: downloads from the archive and files from the inbox (see :mod:`.jobs`).

``download_frames`` starts downloads on the threads of
:class:`~soapd.skynet.fetcher.Fetcher` and records on the scheduler thread
those that ended (:func:`soapd.downloads.record_download`); it never waits on
the network itself, so a slow transfer holds one download thread, never the
scheduler (the inbox and processing go on). ``drain_inbox`` registers the files
the inbox watcher queued; a file soapd will not take is moved to
``<inbox>/rejected/`` with its reason, one it could not copy (a full disk) is
tried again later. Both take the daemon's :class:`~soapd.daemon.jobs.JobContext`
and run on its scheduler thread, like every job that writes to the database.
"""

from __future__ import annotations

import logging
import queue
import time
from pathlib import Path
from typing import TYPE_CHECKING

from soapd.downloads import Fetched, download_backoff, exposure_of, record_download
from soapd.errors import FrameError, SkynetAuthError, SkynetUnavailable
from soapd.logs import FrameLogger
from soapd.models import FrameRow
from soapd.skynet.fetcher import Fetcher, FetchResult

if TYPE_CHECKING:
    from soapd.daemon.context import JobContext
    from soapd.ingest.files import RegisteredFile

__all__ = ["download_frames", "drain_inbox"]

logger = logging.getLogger(__name__)


def download_frames(ctx: JobContext, *, limit: int | None = None, wait_s: float = 0.0) -> int:
    """Record finished downloads, start more 'seen' frames on the download threads.

    Return how many frames arrived. Downloads run on the threads of
    :class:`~soapd.skynet.fetcher.Fetcher` (``skynet.download_threads``); this
    job, on the scheduler thread, only starts them and records their results
    (:func:`soapd.downloads.record_download`), and is woken when one ends.
    ``limit`` caps the downloads started by this run (one attempt per frame);
    ``wait_s`` waits that long for those in flight, starting more as threads
    free up (``--until-idle``, tests). An answer that is not the file waits
    with backoff and counts no try until ``skynet.download_budget_s``; an
    unavailable archive starts no more downloads in this run; a refused token
    pauses polling.
    """
    fetcher = _fetcher(ctx)
    deadline = time.monotonic() + wait_s
    left = limit if limit is not None else fetcher.n_threads
    got, stop, started = 0, False, set[int]()
    while True:
        left_s = deadline - time.monotonic()
        results = fetcher.collect(timeout_s=min(left_s, 1.0) if left_s > 0 else 0.0)
        arrived, halt = _record_downloads(ctx, _in_ledger_order(ctx, fetcher, results))
        got, stop = got + arrived, stop or halt
        if not stop and left > len(started):
            started |= _start_downloads(ctx, fetcher, left - len(started), started)
        if not fetcher.inflight or time.monotonic() >= deadline:
            break
    if got:
        ctx.wake("process_pending")
    if not fetcher.inflight and ctx.source is not None and _downloadable(ctx, fetcher):
        ctx.wake("download_frames")
    return got


def _in_ledger_order(
    ctx: JobContext, fetcher: Fetcher, results: list[FetchResult]
) -> list[FetchResult]:
    """Return the finished downloads that may be recorded now, in frame order.

    Downloads run side by side and end in any order; a frame recorded before an
    earlier one would be processed first, and alert decisions (a first detection,
    a deeper limit) depend on that order. A result waits in ``ctx.download_held``
    while a frame with a smaller id is still downloading. A frame waiting for its
    backoff holds nothing back: order is kept among downloads in flight.
    """
    pending = sorted([*ctx.download_held, *results], key=lambda r: r.frame_id)
    first_running = min(fetcher.inflight, default=None)
    if first_running is None:
        ctx.download_held = []
        return pending
    ready = [r for r in pending if r.frame_id < first_running]
    ctx.download_held = [r for r in pending if r.frame_id >= first_running]
    return ready


def _fetcher(ctx: JobContext) -> Fetcher:
    if ctx.fetcher is None:
        ctx.fetcher = Fetcher(
            ctx.config.skynet.download_threads,
            backoff=download_backoff(ctx.config.skynet),
            on_done=lambda: ctx.wake("download_frames"),
        )
    return ctx.fetcher


def _downloadable(
    ctx: JobContext, fetcher: Fetcher, limit: int = 1, done: set[int] | None = None
) -> list[FrameRow]:
    """Return up to ``limit`` 'seen' frames to start now (not running, waiting or ``done``)."""
    held = {r.frame_id for r in ctx.download_held}
    skip = fetcher.inflight | fetcher.backoff.waiting() | held | (done or set())
    rows = ctx.store.frames_to_download(limit + len(skip))
    return [r for r in rows if r.frame_id not in skip][:limit]


def _start_downloads(ctx: JobContext, fetcher: Fetcher, limit: int, done: set[int]) -> set[int]:
    """Start up to ``limit`` downloads (none of ``done``) on free threads; return their frames."""
    room = min(limit, fetcher.capacity)
    rows = _downloadable(ctx, fetcher, room, done) if room else []
    source = ctx.get_source() if rows else None
    if source is None:
        return set()
    frames_dir = ctx.config.paths.frames_dir
    return {
        r.frame_id for r in rows if fetcher.submit(source, exposure_of(r), r.frame_id, frames_dir)
    }


def _record_downloads(ctx: JobContext, results: list[FetchResult]) -> tuple[int, bool]:
    """Record finished downloads; return (frames arrived, whether to start no more now)."""
    arrived, stop = 0, False
    for result in results:
        row = ctx.store.frame(result.frame_id)
        if row is None or row.state != "seen":  # removed or recorded by another process
            continue
        log = FrameLogger(logger, {"frame_id": row.frame_id, "exp_id": row.exp_id})
        try:
            got = record_download(
                ctx.store,
                row,
                file=result.file,
                error=result.error,
                max_tries=ctx.max_tries,
                backoff=_fetcher(ctx).backoff,
            )
        except SkynetAuthError as exc:
            ctx.auth_failed(exc)
            stop = True
            continue
        except SkynetUnavailable as exc:  # the archive is down: no try counted, next run retries
            ctx.counters["postponed"] += 1
            log.warning("download postponed, Skynet is unavailable: %s", exc)
            stop = True
            continue
        except Exception:  # unit-of-work boundary: a bug in one download, the others are kept
            log.exception("download ended with an unexpected error; the frame stays 'seen'")
            continue
        arrived += _log_download(ctx, log, got, result.duration_s)
    return arrived, stop


def _log_download(ctx: JobContext, log: FrameLogger, got: Fetched, duration_s: float) -> int:
    if got.postponed:
        ctx.counters["postponed"] += 1
        log.warning(
            "download postponed (no try counted, next in %.0f s): %s", got.wait_s, got.error
        )
        return 0
    if got.error:
        verdict = {"failed": "; giving up", "rejected": "; rejected"}.get(got.state, "")
        log.warning("download failed (%s)%s", got.error, verdict)
        return 0
    if not got.new:
        log.info("same file as frame %d (%s); not processed again", got.frame_id, got.reason)
        return 0
    log.debug("downloaded %s in %.1f s", got.path.name if got.path else "", duration_s)
    return 1


def drain_inbox(ctx: JobContext) -> int:
    """Register every file the inbox watcher queued (and those due again). Return new frames.

    Each file is checked and copied (or moved) into the frames folder, then
    recorded; the ledger's checksum identity drops one already known (dropped
    twice, also downloaded from Skynet, or the same frame as ``.fits`` and
    ``.fits.gz``) and its extra copy is deleted. A file soapd will not take
    (not FITS, too big once decompressed, a symbolic link out of the inbox) is
    moved to ``<inbox>/rejected/`` with a reason file; one that could not be
    copied (a full disk) is tried again later with backoff, never dropped.
    """
    queued = ctx.inbox_retry.due_keys()
    while True:
        try:
            queued.append(ctx.inbox.get_nowait())
        except queue.Empty:
            break
    added = 0
    for path in dict.fromkeys(queued):
        reg = _register_inbox_file(ctx, path)
        if reg is None:
            continue
        rec = ctx.store.record_local(reg.path, reg.sha256, reg.size_bytes, source="inbox")
        if rec.created:
            added += 1
            logger.info("inbox: %s registered as frame %d", path.name, rec.frame_id)
            continue
        owner = ctx.store.frame(rec.frame_id)
        if owner is not None and owner.path is not None and owner.path != reg.path:
            reg.path.unlink(missing_ok=True)
        logger.info("inbox: %s is frame %d already (%s)", path.name, rec.frame_id, rec.reason)
    if added:
        ctx.wake("process_pending")
    return added


def _register_inbox_file(ctx: JobContext, path: Path) -> RegisteredFile | None:
    """Copy one inbox file into the frames folder; None if it is not (yet) a frame."""
    from soapd.ingest.checker import mb_to_bytes
    from soapd.ingest.files import register_file
    from soapd.ingest.rejected import reject

    paths = ctx.config.paths
    inbox = paths.inbox_dir
    try:
        reg = register_file(
            path,
            paths.frames_dir,
            action=paths.inbox_action,
            max_bytes=mb_to_bytes(ctx.config.frame.max_decompressed_mb),
            root=inbox,
        )
    except FrameError as exc:
        ctx.inbox_retry.forget(path)
        if not (path.exists() or path.is_symlink()):
            logger.info("inbox: %s is gone", path.name)
            return None
        why = str(exc).removeprefix(f"{path}: ")
        try:
            moved = reject(path, inbox, why) if inbox is not None else None
        except OSError as err:
            moved, why = None, f"{why}; could not move it aside: {err}"
        where = f"; moved to {moved.parent}/" if moved is not None else ""
        logger.warning("inbox: %s not registered: %s%s", path.name, why, where)
        return None
    except OSError as exc:  # a full disk, an I/O error: not the file's fault, try again
        fault = ctx.inbox_retry.failed(path)
        logger.warning(
            "inbox: %s not registered (%s); trying again in %.0f s (attempt %d)",
            path.name,
            exc,
            fault.wait_s,
            fault.count,
        )
        return None
    ctx.inbox_retry.forget(path)
    return reg
