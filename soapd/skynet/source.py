"""The archive interface the rest of soapd codes against: :class:`ExposureSource`.

Skynet API v2 (:class:`soapd.skynet.client.SkynetClient`) is one implementation;
another archive (SkynetGo, a local mirror, a test fake) only has to provide these
four methods. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from soapd.skynet.records import Exposure

__all__ = ["DownloadedFile", "ExposureSource"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadedFile:
    """A frame file safely on disk: complete, FITS-readable, fsynced.

    ``sha256`` and ``size_bytes`` are those of the stored (decompressed) file,
    computed while it was written; ``server_filename`` is metadata only.

    ``reduction`` says what the file shows about server-side calibration:
    ``"reduced"`` (calibration keywords present), ``"probably_unreduced"``
    (integer pixels and no calibration keywords although reduction was asked
    for), ``"unknown"`` (no keywords, float pixels) or ``"not_requested"``.
    """

    path: Path
    sha256: str
    size_bytes: int
    server_filename: str | None = None
    reduction: str = "unknown"


@runtime_checkable
class ExposureSource(Protocol):
    """Where new exposures come from. Implementations raise :mod:`soapd.errors` types only.

    ``iter_*`` yield archived exposures (downloadable files) and use no time
    cursor for observations: the ledger decides what is new. Errors:
    SkynetAuthError (token refused; do not retry quickly), SkynetNotFound,
    SkynetUnavailable (network or server failure after retries), SkynetBadAnswer
    (a download answered with something else than the file: a page, a truncated
    or unreadable body, too slow; transient), FrameRejected (the file's data
    are too big). ``download`` may be called from several threads at once.
    """

    def iter_archived(self, obs_id: int) -> Iterator[Exposure]:
        """Yield every archived exposure of observation ``obs_id``, oldest id first."""
        ...

    def iter_telescope(self, telescope: str, *, since_utc: datetime) -> Iterator[Exposure]:
        """Yield archived exposures of ``telescope`` taken after ``since_utc`` (aware UTC)."""
        ...

    def download(self, exp: Exposure, dest_dir: Path) -> DownloadedFile:
        """Download ``exp``'s FITS file into ``dest_dir`` atomically; return what was stored.

        The file is named after the exposure id (``r<exp_id>.fits``), never after the server.
        """
        ...

    def close(self) -> None:
        """Release connections. Safe to call twice."""
        ...
