"""One FITS download made safe: a local name, a ``.part`` file, checks, fsync, rename.

:func:`save_response` writes an httpx streaming response to ``<name>.part``,
compares the bytes received with Content-Length (raising :class:`Truncated`,
which the client retries), checks the complete file is a readable FITS image
(:class:`~soapd.errors.FrameUnreadable` otherwise, not retried), fsyncs it,
renames it into place and fsyncs the folder. On any failure the ``.part`` file
is removed, so only complete frames are ever seen under a final name. It also
reports what the header says about server-side reduction (``reducequiet=1``
silently falls back to the raw frame when reduction fails, ``skynet_api.md`` §3.5).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx

from soapd.errors import FrameUnreadable
from soapd.fileio import CHUNK_BYTES, publish, write_part
from soapd.ingest.fitscheck import FitsCheck, check_fits, has_fits_suffix, safe_filename
from soapd.skynet.source import DownloadedFile

__all__ = ["Truncated", "filename_from_disposition", "reduction_status", "save_response"]

logger = logging.getLogger(__name__)

_DISPOSITION_STAR = re.compile(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", re.IGNORECASE)
_DISPOSITION_PLAIN = re.compile(r"filename\s*=\s*([^;]+)", re.IGNORECASE)


class Truncated(Exception):
    """A download ended before Content-Length bytes arrived: worth another attempt."""


def filename_from_disposition(exp_id: int, header: str | None) -> str:
    """Return a safe local file name for exposure ``exp_id`` from a Content-Disposition value.

    The server's name is reduced by :func:`~soapd.ingest.fitscheck.safe_filename`
    (last path component, characters ``A-Z a-z 0-9 . _ + -``, no leading dot);
    it is prefixed with ``r<exp_id>_`` unless it already contains the exposure id
    as a whole number (so two exposures never share a local name), and gets
    ``.fits`` appended unless it has a FITS suffix. Without a usable name the
    result is ``r<exp_id>.fits``.
    """
    fallback = f"r{exp_id}.fits"
    if not header:
        return fallback
    raw: str | None = None
    star = _DISPOSITION_STAR.search(header)
    if star:
        raw = unquote(star.group(1).strip().strip('"'))
    elif header.count('"') >= 2:
        raw = header[header.index('"') + 1 : header.rindex('"')]
    else:
        plain = _DISPOSITION_PLAIN.search(header)
        raw = plain.group(1).strip() if plain else None
    safe = safe_filename(raw) if raw else ""
    if not safe:
        return fallback
    if not re.search(rf"(?<!\d){exp_id}(?!\d)", safe):
        safe = f"r{exp_id}_{safe}"
    if not has_fits_suffix(safe):
        safe += ".fits"
    return safe


def reduction_status(check: FitsCheck, *, requested: bool) -> str:
    """Return what a frame shows about server-side calibration.

    ``"not_requested"``; ``"reduced"`` (calibration keywords present);
    ``"probably_unreduced"`` (asked for, but integer pixels and no keywords: a
    raw camera frame); ``"unknown"`` (float pixels, no keywords).
    """
    if not requested:
        return "not_requested"
    if check.reduction_marks:
        return "reduced"
    return "probably_unreduced" if check.integer_pixels else "unknown"


def _received(response: httpx.Response) -> Iterator[bytes]:
    """Yield the body in chunks; raise Truncated if it ends early or short of Content-Length.

    The length check runs after the last chunk, so :func:`~soapd.fileio.write_part`
    never fsyncs a truncated file.
    """
    expected_raw = response.headers.get("content-length")
    expected = int(expected_raw) if expected_raw and expected_raw.isdigit() else None
    size = 0
    try:
        for chunk in response.iter_bytes(CHUNK_BYTES):
            size += len(chunk)
            yield chunk
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise Truncated(
            f"download truncated: connection closed after {size} of "
            f"{expected if expected is not None else '?'} bytes ({type(exc).__name__})"
        ) from None
    # Content-Length counts the bytes on the wire, which differ from the decoded
    # size only under a Content-Encoding such as gzip.
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    received = response.num_bytes_downloaded if encoded else size
    if expected is not None and received != expected:
        raise Truncated(
            f"download truncated: received {received} of {expected} bytes "
            "announced by Content-Length"
        )


def _check_complete(part: Path, size: int, exp_id: int) -> FitsCheck:
    """Return the FITS check of a complete download. Raise FrameUnreadable."""
    if size == 0:
        raise FrameUnreadable(f"exposure {exp_id}: the archive sent an empty file")
    try:
        return check_fits(part)
    except FrameUnreadable as exc:
        raise FrameUnreadable(
            f"exposure {exp_id}: the downloaded file is not usable FITS: {exc}"
        ) from None


def save_response(
    response: httpx.Response, exp_id: int, dest_dir: Path, *, reduced: bool
) -> DownloadedFile:
    """Given a 200 streaming response for exposure ``exp_id``, store the file; return its record.

    Raise Truncated (retry it), or FrameUnreadable if the file is empty or not a
    readable FITS image. Nothing but a complete file is left in ``dest_dir``.
    """
    disposition = response.headers.get("content-disposition")
    final = dest_dir / filename_from_disposition(exp_id, disposition)
    part = final.with_name(final.name + ".part")
    try:
        digest, size = write_part(part, _received(response))
        check = _check_complete(part, size, exp_id)
        publish(part, final, part_synced=True)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    status = reduction_status(check, requested=reduced)
    if status == "probably_unreduced":
        logger.warning(
            "exposure %s: asked for a reduced frame but got integer pixels and no calibration "
            "keywords (BIASCORR/DARKCORR/FLATCORR/CALSTAT); the archive may have sent the raw "
            "frame",
            exp_id,
        )
    server_name = None
    if disposition and disposition.count('"') >= 2:
        server_name = disposition[disposition.index('"') + 1 : disposition.rindex('"')] or None
    logger.debug("exposure %s saved as %s (%d bytes)", exp_id, final.name, size)
    return DownloadedFile(
        path=final,
        sha256=digest,
        size_bytes=size,
        server_filename=server_name,
        reduction=status,
    )
