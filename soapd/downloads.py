"""The download step of the frame lifecycle: fetch a 'seen' frame's file, record it or its fault.

Shared by the daemon (:func:`soapd.daemon.jobs.download_frames`, which fetches
on the download threads of :class:`~soapd.skynet.fetcher.Fetcher` and records
on its scheduler thread) and the Python API (``Soap``, through
:func:`download_one`, which does both in the calling thread). What each
outcome does in the ledger (:func:`record_download`):

* the file arrived -> 'downloaded' (tries reset); bytes already known (another
  frame, or a file that came in by the inbox) are kept once, the extra copy deleted;
* a refused token (``SkynetAuthError``) is raised, no try counted;
* an unavailable archive (``SkynetUnavailable``: network, 5xx after retries) is
  noted on the frame ("download postponed"), raised, no try counted;
* an answer that is not the file (``SkynetBadAnswer``: an HTML page with status
  200, a truncated or unreadable body, a transfer past
  ``skynet.download_deadline_s``) is a transient fault: noted ("download
  postponed"), no try counted, the frame waits with exponential backoff
  (:func:`download_backoff`); only once such answers have gone on for
  ``skynet.download_budget_s`` does each further one count a try;
* a local I/O error (``OSError``: a full disk) is noted and waits the same way,
  never counting a try;
* a file whose data exceed ``[frame] max_decompressed_mb`` (``FrameRejected``)
  -> 'rejected' with the reason, not retried;
* any other archive error (404, other HTTP errors) counts a try, and the frame
  is 'failed' at ``service.max_tries``.

No SQL here: every write is one ``Store`` method.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from soapd.config import SkynetConfig
from soapd.errors import (
    FrameRejected,
    FrameUnreadable,
    SkynetAuthError,
    SkynetBadAnswer,
    SkynetError,
    SkynetUnavailable,
    SoapdError,
    StoreError,
)
from soapd.ingest.retry import Backoff
from soapd.skynet.records import Exposure

if TYPE_CHECKING:
    from soapd.models import FrameRow
    from soapd.skynet.source import DownloadedFile, ExposureSource
    from soapd.store import Store

__all__ = ["Fetched", "download_backoff", "download_one", "exposure_of", "record_download"]

logger = logging.getLogger(__name__)

#: Longest wait, in seconds, between two attempts of a frame with transient faults.
MAX_WAIT_S = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """What a download did with one frame.

    ``path`` is the file now holding the frame's bytes (None when the download
    failed); ``frame_id`` the frame that owns them (another frame when the same
    bytes were known already; ``reason`` says why); ``new`` is True when this call
    added a frame to process; ``error`` is why the download failed and ``state``
    the frame's ledger state afterwards; ``postponed`` is True when the failure
    was transient and counted no try (the frame is tried again after ``wait_s``).
    """

    frame_id: int
    path: Path | None
    new: bool
    state: str
    error: str = ""
    reason: str = ""
    postponed: bool = False
    wait_s: float = 0.0


def download_backoff(cfg: SkynetConfig) -> Backoff[int]:
    """Return the retry schedule of transient download faults for the [skynet] section.

    Waits start at ``skynet.backoff_s`` and double up to :data:`MAX_WAIT_S`; the
    budget is ``skynet.download_budget_s``.
    """
    return Backoff(base_s=cfg.backoff_s, cap_s=MAX_WAIT_S, budget_s=cfg.download_budget_s)


def exposure_of(row: FrameRow) -> Exposure:
    """Return the archive exposure a 'seen' Skynet frame stands for. Raise StoreError."""
    if row.exp_id is None:
        raise StoreError(f"frame {row.frame_id} has no Skynet exposure to download")
    return Exposure(exp_id=row.exp_id, obs_id=row.obs_id, state="archived", meta=row.meta)


def download_one(
    store: Store,
    source: ExposureSource,
    row: FrameRow,
    frames_dir: Path,
    *,
    max_tries: int,
    backoff: Backoff[int] | None = None,
) -> Fetched:
    """Download a 'seen' archive frame into ``frames_dir`` and record it in the ledger.

    The fetch and :func:`record_download` in the calling thread. ``backoff``
    (default: none, so transient faults never count a try) is the retry
    schedule of transient faults. Raise SkynetAuthError or SkynetUnavailable as
    :func:`record_download` does.
    """
    exp = exposure_of(row)
    try:
        got = source.download(exp, frames_dir)
    except (SoapdError, OSError) as exc:
        return record_download(store, row, error=exc, max_tries=max_tries, backoff=backoff)
    return record_download(store, row, file=got, max_tries=max_tries, backoff=backoff)


def record_download(
    store: Store,
    row: FrameRow,
    *,
    file: DownloadedFile | None = None,
    error: BaseException | None = None,
    max_tries: int,
    backoff: Backoff[int] | None = None,
) -> Fetched:
    """Write what the download of ``row`` gave (``file``, or ``error``) to the ledger.

    See the module docstring for what each error does. Raise SkynetAuthError
    and SkynetUnavailable (after noting the latter on the frame) for the caller
    to pause; re-raise an error of no known kind (a bug).
    """
    if error is not None:
        return _record_fault(store, row, error, max_tries=max_tries, backoff=backoff)
    assert file is not None
    if backoff is not None:
        backoff.forget(row.frame_id)
    try:
        rec = store.mark_downloaded(row.frame_id, file.path, file.sha256, file.size_bytes)
    except StoreError:  # another process (the daemon, or a Soap) recorded it meanwhile
        now = store.frame(row.frame_id)
        if now is None or now.path is None:
            raise
        if now.path != file.path:
            file.path.unlink(missing_ok=True)
        reason = "recorded by another process meanwhile"
        return Fetched(
            frame_id=now.frame_id, path=now.path, new=False, state=now.state, reason=reason
        )
    if rec.created:
        return Fetched(frame_id=rec.frame_id, path=file.path, new=True, state="downloaded")
    owner = store.frame(rec.frame_id)
    path = file.path
    if owner is not None and owner.path is not None and owner.path != file.path:
        file.path.unlink(missing_ok=True)
        path = owner.path
    state = owner.state if owner is not None else "downloaded"
    return Fetched(frame_id=rec.frame_id, path=path, new=False, state=state, reason=rec.reason)


def _record_fault(
    store: Store,
    row: FrameRow,
    exc: BaseException,
    *,
    max_tries: int,
    backoff: Backoff[int] | None,
) -> Fetched:
    frame_id = row.frame_id
    if isinstance(exc, SkynetAuthError):
        raise exc
    if isinstance(exc, SkynetUnavailable):
        store.note_error(frame_id, f"download postponed: {exc}")
        raise exc
    transient = isinstance(exc, SkynetBadAnswer) or (
        isinstance(exc, OSError) and not isinstance(exc, SoapdError)
    )
    if transient:
        fault = backoff.failed(frame_id) if backoff is not None else None
        if fault is None or not fault.over_budget or isinstance(exc, OSError):
            wait_s = fault.wait_s if fault is not None else 0.0
            where = "" if isinstance(exc, SkynetBadAnswer) else "local error: "
            note = f"download postponed: {where}{exc}"
            if fault is not None:
                note += f" (transient fault {fault.count}, next try in {wait_s:.0f} s)"
            store.note_error(frame_id, note)
            return Fetched(
                frame_id=frame_id,
                path=None,
                new=False,
                state="seen",
                error=str(exc),
                postponed=True,
                wait_s=wait_s,
            )
        exc = SkynetBadAnswer(
            f"{exc} (answers like this for more than skynet.download_budget_s = "
            f"{backoff.budget_s if backoff is not None else 0:g} s: counted as a try)"
        )
    if isinstance(exc, FrameRejected):
        store.mark_rejected(frame_id, f"rejected: {exc}")
        return Fetched(frame_id=frame_id, path=None, new=False, state="rejected", error=str(exc))
    if isinstance(exc, SkynetError | FrameUnreadable):
        state = store.mark_download_failed(frame_id, str(exc), max_tries=max_tries)
        return Fetched(frame_id=frame_id, path=None, new=False, state=state, error=str(exc))
    raise exc
