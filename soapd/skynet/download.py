"""One FITS download made safe: our own file name, a ``.part`` file, checks, fsync, rename.

:func:`save_response` takes an httpx streaming response for exposure ``exp_id``:

* the file is stored as ``r<exp_id>.fits``, a name built from the exposure id
  alone (``skynet_api.md`` §3.5): server names are not documented and can
  collide, and a collision once had one exposure processed with another's
  pixels. The server's name is kept as metadata only;
* a body that is not a file (``Content-Type`` ``text/html``, JSON or XML, or
  bytes that start like a web page) is refused at once without reading it
  all: :class:`~soapd.errors.SkynetBadAnswer`, a transient fault;
* the body is streamed to a hidden ``.part`` file while its SHA-256 is
  computed, and compared with Content-Length (:class:`Truncated`, which the
  client retries); ``deadline_s`` (a ``time.monotonic()`` instant) bounds the
  whole transfer, so bytes drip-fed just under the read timeout cannot hold a
  thread for long (:class:`TooSlow`); ``stop`` (an event) interrupts it;
* the complete file is checked in the checker process
  (:mod:`soapd.ingest.checker`): a gzip or bzip2 body is decompressed there
  within ``max_bytes`` (``[frame] max_decompressed_mb``), so the SHA-256
  recorded is that of the FITS file stored; a file over the limit is
  :class:`~soapd.errors.FrameRejected`, an unreadable one a ``SkynetBadAnswer``;
* then it is fsynced, renamed into place and the folder fsynced. On any
  failure the ``.part`` files are removed, so only complete frames are ever
  seen under a final name.

It also reports what the header says about server-side reduction
(``reducequiet=1`` silently falls back to the raw frame when reduction fails,
``skynet_api.md`` §3.5).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from soapd.errors import FrameRejected, FrameUnreadable, SkynetBadAnswer
from soapd.fileio import CHUNK_BYTES, publish, write_part
from soapd.ingest.checker import FileChecker, shared_checker
from soapd.ingest.fitscheck import FitsCheck
from soapd.ingest.unpack import compression_of
from soapd.skynet.source import DownloadedFile

__all__ = [
    "Stopped",
    "TooSlow",
    "Truncated",
    "local_name",
    "reduction_status",
    "save_response",
    "server_filename",
]

logger = logging.getLogger(__name__)

#: Content types that are never a FITS file (a page, an error document).
_NOT_A_FILE = ("text/html", "application/xhtml", "application/json", "text/xml", "application/xml")
#: First bytes (after blanks) of a web page or a JSON/XML document.
_PAGE_STARTS = (b"<", b"{", b"[")
_EXCERPT = 120


class Truncated(Exception):
    """A download ended before Content-Length bytes arrived: worth another attempt."""


class TooSlow(Exception):
    """A download passed its overall deadline (``skynet.download_deadline_s``)."""


class Stopped(Exception):
    """A download was interrupted because soapd is stopping."""


def local_name(exp_id: int) -> str:
    """Return the local file name of exposure ``exp_id``: ``r<exp_id>.fits``, never the server's."""
    return f"r{int(exp_id)}.fits"


def server_filename(disposition: str | None) -> str | None:
    """Return the file name in a Content-Disposition value (text between the outer quotes)."""
    if disposition and disposition.count('"') >= 2:
        return disposition[disposition.index('"') + 1 : disposition.rindex('"')] or None
    return None


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


def _excerpt(data: bytes) -> str:
    text = " ".join(data[:_EXCERPT].decode("utf-8", "replace").split())
    return "".join(ch for ch in text if ch.isprintable())


def _page_error(exp_id: int, content_type: str, head: bytes) -> SkynetBadAnswer:
    kind = "an HTML page" if b"<" in head[:1] or "html" in content_type else "a document"
    shown = f" (Content-Type {content_type})" if content_type else ""
    return SkynetBadAnswer(
        f"exposure {exp_id}: the archive answered with {kind}{shown} instead of a FITS "
        f"file: {_excerpt(head)!r}; a proxy or maintenance page? soapd will try again"
    )


def _refuse_page(response: httpx.Response, exp_id: int) -> None:
    """Raise SkynetBadAnswer when the Content-Type says the body is a page, not a file."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith(_NOT_A_FILE):
        head = b""
        for chunk in response.iter_bytes(_EXCERPT):
            head = chunk
            break
        raise _page_error(exp_id, content_type, head)


def _received(
    response: httpx.Response,
    exp_id: int,
    *,
    deadline_s: float,
    stop: threading.Event | None,
) -> Iterator[bytes]:
    """Yield the body in chunks; raise Truncated, TooSlow, Stopped or SkynetBadAnswer.

    The first bytes are looked at before anything is written: a body that starts
    like a web page or a JSON/XML document is refused at once. The length check
    runs after the last chunk, so :func:`~soapd.fileio.write_part` never fsyncs
    a truncated file.
    """
    expected_raw = response.headers.get("content-length")
    expected = int(expected_raw) if expected_raw and expected_raw.isdigit() else None
    size = 0
    try:
        for chunk in response.iter_bytes(CHUNK_BYTES):
            if size == 0 and chunk.lstrip()[:1] in _PAGE_STARTS:
                raise _page_error(exp_id, "", chunk.lstrip())
            size += len(chunk)
            if stop is not None and stop.is_set():
                raise Stopped(f"exposure {exp_id}: download interrupted, soapd is stopping")
            if time.monotonic() > deadline_s:
                raise TooSlow(f"received {size} of {expected if expected is not None else '?'}")
            yield chunk
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if stop is not None and stop.is_set():  # the client was closed under the transfer
            raise Stopped(f"exposure {exp_id}: download interrupted, soapd is stopping") from None
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


def _checked(
    part: Path, size: int, exp_id: int, *, max_bytes: int, checker: FileChecker
) -> tuple[Path, FitsCheck, str | None, int | None]:
    """Check the complete download in the checker process, decompressing it if needed.

    Return (file holding the FITS data, its check, its SHA-256 and size when it
    was decompressed, else None). Raise FrameRejected (over the limit) or
    SkynetBadAnswer (empty, or not a readable FITS file).
    """
    if size == 0:
        raise SkynetBadAnswer(f"exposure {exp_id}: the archive sent an empty file")
    with part.open("rb") as fh:
        packed = compression_of(fh.read(4))
    plain = part.with_name(part.name + ".fits")
    try:
        if packed is None:
            check = checker.check(part, max_bytes=max_bytes)
        else:
            got = checker.unpack(part, plain, max_bytes=max_bytes)
    except FrameRejected as exc:
        raise FrameRejected(f"exposure {exp_id}: {exc}") from None
    except FrameUnreadable as exc:
        raise SkynetBadAnswer(
            f"exposure {exp_id}: the downloaded file is not usable FITS: {exc}"
        ) from None
    if packed is None:
        return part, check, None, None
    part.unlink(missing_ok=True)
    return plain, got.check, got.sha256, got.size_bytes


def save_response(
    response: httpx.Response,
    exp_id: int,
    dest_dir: Path,
    *,
    reduced: bool,
    max_bytes: int,
    deadline_s: float = float("inf"),
    stop: threading.Event | None = None,
    checker: FileChecker | None = None,
) -> DownloadedFile:
    """Given a 200 streaming response for exposure ``exp_id``, store the file; return its record.

    Raise Truncated (retry it), TooSlow (past ``deadline_s``), Stopped,
    SkynetBadAnswer (a page instead of the file, an empty or unreadable body) or
    FrameRejected (its data exceed ``max_bytes``). Nothing but a complete file
    is left in ``dest_dir``.
    """
    _refuse_page(response, exp_id)
    final = dest_dir / local_name(exp_id)
    part = dest_dir / f".{final.name}.{uuid.uuid4().hex[:12]}.part"
    stored = part
    try:
        digest, size = write_part(
            part, _received(response, exp_id, deadline_s=deadline_s, stop=stop)
        )
        stored, check, unpacked_sha, unpacked_size = _checked(
            part, size, exp_id, max_bytes=max_bytes, checker=checker or shared_checker()
        )
        publish(stored, final, part_synced=True)
    except BaseException:
        part.unlink(missing_ok=True)
        stored.unlink(missing_ok=True)
        raise
    if unpacked_sha is not None and unpacked_size is not None:
        digest, size = unpacked_sha, unpacked_size
    status = reduction_status(check, requested=reduced)
    if status == "probably_unreduced":
        logger.warning(
            "exposure %s: asked for a reduced frame but got integer pixels and no calibration "
            "keywords (BIASCORR/DARKCORR/FLATCORR/CALSTAT); the archive may have sent the raw "
            "frame",
            exp_id,
        )
    server_name = server_filename(response.headers.get("content-disposition"))
    logger.debug("exposure %s saved as %s (%d bytes)", exp_id, final.name, size)
    return DownloadedFile(
        path=final, sha256=digest, size_bytes=size, server_filename=server_name, reduction=status
    )
