"""Per-frame ledger work of the Python API: download one exposure, reuse or process one frame.

Each function moves one frame through the daemon's ledger exactly as the
daemon's jobs do (``soapd.daemon.jobs``), so that frames handled here and there are
indistinguishable: downloads are recorded with ``mark_downloaded`` (or counted
with ``mark_download_failed``), processing goes ``start_attempt`` ->
``workers.run_task`` -> ``alerts.record.record_result``. No SQL here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soapd.api.support import has_forced_rows, why_skipped
from soapd.config import Config
from soapd.errors import FrameUnreadable, SkynetAuthError, SkynetError, SoapdError, StoreError

if TYPE_CHECKING:
    from astropy.table import Table

    from soapd.daemon.pool import FrameTask, TaskOutcome
    from soapd.models import Target
    from soapd.skynet.records import Exposure
    from soapd.skynet.source import ExposureSource
    from soapd.store import Store
    from soapd.store.ledger import FrameRow

__all__ = ["MAX_TRIES", "Processor", "ensure_downloaded", "process_row", "stored_table"]

logger = logging.getLogger(__name__)

#: ``run_task``'s signature: (task, config, catalogs) -> outcome. Tests pass a counting wrapper.
Processor = Callable[["FrameTask", Config, Any], "TaskOutcome"]

#: Download or processing attempts per frame before the ledger marks it failed.
MAX_TRIES = 3


def ensure_downloaded(
    store: Store, client: ExposureSource, exp: Exposure, frames_dir: Path
) -> Path | None:
    """Given an exposure recorded in the ledger, make sure its file is on disk; return the path.

    Return None if the ledger says it was downloaded but the file is gone. A failed
    download is counted in the ledger (``MAX_TRIES``) and re-raised.
    """
    row = store.find_frame(exp_id=exp.exp_id)
    if row is not None and row.state == "failed" and row.path is None:
        store.requeue(frame_ids=[row.frame_id], states=("failed",))
        row = store.find_frame(exp_id=exp.exp_id)
    if row is None:
        raise StoreError(f"exposure {exp.exp_id} vanished from the ledger")
    if row.state != "seen":
        if row.path is not None and row.path.exists():
            return row.path
        logger.warning(
            "exposure %d is '%s' but its file %s is gone; not downloaded again",
            exp.exp_id,
            row.state,
            row.path,
        )
        return None
    try:
        got = client.download(exp, frames_dir)
    except (SkynetError, FrameUnreadable) as exc:
        if not isinstance(exc, SkynetAuthError):
            store.mark_download_failed(row.frame_id, str(exc), max_tries=MAX_TRIES)
        raise
    try:
        rec = store.mark_downloaded(row.frame_id, got.path, got.sha256, got.size_bytes)
    except StoreError:  # the daemon recorded this exposure meanwhile
        now = store.frame(row.frame_id)
        if now is None or now.path is None:
            raise
        if now.path != got.path:
            got.path.unlink(missing_ok=True)
        return now.path
    if rec.created:
        return got.path
    owner = store.frame(rec.frame_id)
    if owner is not None and owner.path is not None and owner.path != got.path:
        got.path.unlink(missing_ok=True)
        return owner.path
    return got.path


def stored_table(
    row: FrameRow, stored: dict[str, Any] | None, targets: Sequence[Target], fingerprint: str
) -> Table | None:
    """Return a frame's stored field-wide table if it can be reused, else None.

    Reusable: the frame is processed, with the config ``fingerprint``, its Parquet
    table is readable and holds a forced row at every target position.
    """
    if row.state != "processed" or stored is None:
        return None
    if stored.get("config_hash") != fingerprint:
        return None
    path = Path(str(stored.get("catalog_path")))
    if not path.is_file():
        return None
    from soapd.output.export import read_table

    try:
        table = read_table(path, fmt="parquet")
    except SoapdError as exc:
        logger.warning(
            "frame %d: stored table unreadable (%s); processing again", row.frame_id, exc
        )
        return None
    if not all(has_forced_rows(table, t.ra_deg, t.dec_deg) for t in targets):
        return None
    return table


def process_row(
    store: Store,
    row: FrameRow,
    targets: Sequence[Target],
    *,
    config: Config,
    catalogs: Any,
    processor: Processor | None = None,
) -> tuple[Table | None, str]:
    """Process one frame through the ledger as the daemon does; return (table, why not).

    ``processor`` defaults to :func:`soapd.daemon.pool.run_task`; the result is stored
    with :func:`soapd.alerts.record.record_result`. Errors become ledger states
    ('downloaded' again for a retry, 'rejected', 'failed'), never a frame stuck in
    'processing'.
    """
    from soapd.alerts.record import record_result
    from soapd.daemon.pool import FrameTask, run_task

    if row.state == "processed" and row.path is not None and row.path.exists():
        store.requeue(frame_ids=[row.frame_id], states=(row.state,))
    elif row.state != "downloaded":
        return None, why_skipped(row)
    try:
        started = store.start_attempt(row.frame_id)
    except StoreError as exc:  # the daemon took it in the meantime
        return None, f"taken by another process ({exc}); run again later"
    if started.path is None or not started.path.exists():
        store.mark_failed(row.frame_id, f"file {started.path} is missing")
        return None, f"file {started.path} is missing"
    task = FrameTask(
        frame_id=row.frame_id,
        path=started.path,
        meta=row.meta,
        targets=(*store.active_targets(), *targets),
    )
    try:
        outcome = (processor or run_task)(task, config, catalogs)
        if outcome.outcome == "ok" and outcome.result is not None:
            record_result(
                store,
                row.frame_id,
                outcome.result,
                config=config,
                table_path=None if outcome.table_path is None else str(outcome.table_path),
            )
            return outcome.result.table, ""
    except Exception as exc:  # unit-of-work boundary, as in the daemon's jobs
        logger.exception("frame %d: processing or storing failed", row.frame_id)
        store.mark_retry(row.frame_id, f"{type(exc).__name__}: {exc}", max_tries=MAX_TRIES)
        return None, f"{type(exc).__name__}: {exc}"
    except BaseException:  # Ctrl-C: do not leave the frame 'processing' for ever
        store.mark_retry(row.frame_id, "interrupted", max_tries=MAX_TRIES + 1)
        raise
    if outcome.outcome == "rejected":
        store.mark_rejected(row.frame_id, outcome.error)
    elif outcome.outcome == "failed":
        store.mark_failed(row.frame_id, outcome.error)
    else:
        store.mark_retry(row.frame_id, outcome.error, max_tries=MAX_TRIES)
    return None, outcome.error
