"""Decompress and check a frame file within a size limit: the work of the checker process.

soapd never decompresses or reads a frame's pixels in the daemon's own process:
a 1 MB ``.fits.gz`` can hold 1 GB of zeros. :class:`soapd.ingest.checker.FileChecker`
runs :func:`main` in a separate process and sends it one request per line;
the functions here are what that process does:

:func:`unpack`  stream-decompress a gzip or bzip2 file into a ``.part`` file,
                stopping with :class:`~soapd.errors.FrameRejected` as soon as the
                output passes the limit, then :func:`check` it;
:func:`check`   refuse a file whose first bytes are not a FITS header (astropy
                would otherwise decompress a gzip stream in memory), add up the
                data sizes the headers declare (``ZNAXISn``/``ZBITPIX`` of
                tile-compressed ``.fz`` images, read without decompressing) and
                refuse a total over the limit, then run the FITS readability check
                (:func:`~soapd.ingest.fitscheck.check_fits`).

The limit is ``[frame] max_decompressed_mb``. Compression is recognised by the
file's magic bytes, never by its name. The protocol (JSON lines on stdin and
stdout) is in :func:`main`.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from soapd.errors import FrameRejected, FrameUnreadable
from soapd.fileio import CHUNK_BYTES
from soapd.ingest.fitscheck import FitsCheck, check_fits

__all__ = [
    "FITS_MAGIC",
    "Unpacked",
    "check",
    "compression_of",
    "declared_data_bytes",
    "main",
    "too_big",
    "unpack",
]

#: Every FITS file starts with this card.
FITS_MAGIC = b"SIMPLE  ="
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2"}
_MB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Unpacked:
    """What :func:`unpack` wrote: the SHA-256 and size of the decompressed bytes, and the check."""

    sha256: str
    size_bytes: int
    check: FitsCheck


def compression_of(head: bytes) -> str | None:
    """Return "gzip" or "bzip2" when ``head`` (a file's first bytes) starts that way, else None."""
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def too_big(what: str, n_bytes: float, max_bytes: int, *, stopped: bool = False) -> FrameRejected:
    """Return the error for a frame over the limit (``what`` ends where "more than" goes).

    ``stopped``: ``n_bytes`` is where decompression was stopped, not a declared size.
    """
    size = "stopped there" if stopped else f"{n_bytes / _MB:.1f} MB"
    return FrameRejected(
        f"{what} more than {max_bytes / _MB:g} MB ({size}), the limit "
        f"[frame] max_decompressed_mb = {max_bytes / _MB:g}: rejected unread (a decompression "
        "bomb, or raise the limit)"
    )


def _open(src: Path, kind: str) -> gzip.GzipFile | bz2.BZ2File:
    if kind == "gzip":
        return gzip.open(src, "rb")
    return bz2.open(src, "rb")


def _inflate(src: Path, kind: str, max_bytes: int) -> Iterator[bytes]:
    """Yield the decompressed bytes of ``src`` in blocks; raise FrameRejected past ``max_bytes``.

    The standard library's readers decompress at most the block asked for
    (:data:`~soapd.fileio.CHUNK_BYTES`), so memory stays bounded whatever the
    ratio; concatenated members (``cat a.gz b.gz``) follow one another, as gzip does.
    """
    total = 0
    with _open(src, kind) as fh:
        while block := fh.read(CHUNK_BYTES):
            total += len(block)
            if total > max_bytes:
                raise too_big(f"{src.name} decompresses to", total, max_bytes, stopped=True)
            yield block


def unpack(src: Path, dest: Path, *, max_bytes: int) -> Unpacked:
    """Decompress the gzip or bzip2 file ``src`` into ``dest`` (fsynced), then :func:`check` it.

    Raise FrameRejected as soon as the output passes ``max_bytes`` (``dest`` is
    removed), FrameUnreadable for a corrupt stream or a result that is not
    FITS, OSError for I/O errors (a full disk: ENOSPC).
    """
    with src.open("rb") as fh:
        kind = compression_of(fh.read(4))
    if kind is None:
        raise FrameUnreadable(f"{src.name}: not a gzip or bzip2 file")
    sha = hashlib.sha256()
    size = 0
    try:
        with dest.open("wb") as out:
            try:
                for block in _inflate(src, kind, max_bytes):
                    out.write(block)
                    sha.update(block)
                    size += len(block)
            except (OSError, EOFError, zlib.error) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise  # an I/O error (full disk), not a corrupt stream
                raise FrameUnreadable(f"{src.name}: corrupt {kind} data ({exc})") from None
            out.flush()
            os.fsync(out.fileno())
        result = check(dest, max_bytes=max_bytes, name=src.name)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return Unpacked(sha256=sha.hexdigest(), size_bytes=size, check=result)


def _hdu_bytes(header: Any) -> int:
    """Return the data size in bytes a header declares (the image size for a compressed one)."""
    if header.get("ZIMAGE"):
        n_axes = int(header.get("ZNAXIS", 0))
        dims = [int(header.get(f"ZNAXIS{i}", 0)) for i in range(1, n_axes + 1)]
        bitpix = int(header.get("ZBITPIX", 0))
    else:
        n_axes = int(header.get("NAXIS", 0))
        dims = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, n_axes + 1)]
        bitpix = int(header.get("BITPIX", 0))
    if not dims:
        return 0
    return math.prod(dims) * abs(bitpix) // 8 + int(header.get("PCOUNT", 0) or 0)


def declared_data_bytes(path: Path) -> int:
    """Return the data size all HDUs of ``path`` declare once decompressed, headers only read.

    Tile-compressed images count with their image size (``ZNAXISn``, ``ZBITPIX``),
    read from the binary table header without decompressing a tile. Raise
    FrameUnreadable if the headers cannot be read.
    """
    from astropy.io import fits

    total = 0
    try:
        with fits.open(
            path, memmap=False, lazy_load_hdus=True, disable_image_compression=True
        ) as hdul:
            for hdu in hdul:
                total += _hdu_bytes(hdu.header)
    except (OSError, ValueError, TypeError, EOFError, IndexError, KeyError) as exc:
        raise FrameUnreadable(f"{path.name}: not a readable FITS file ({exc})") from None
    return total


def check(path: Path, *, max_bytes: int, name: str | None = None) -> FitsCheck:
    """Check that ``path`` is an uncompressed FITS file within ``max_bytes``; return its check.

    ``name`` is the file name used in messages (the original's, for an unpacked copy).
    Raise FrameUnreadable (not FITS: the first bytes are not ``SIMPLE  =``, or
    the FITS check fails) or FrameRejected (the data declared, tile-compressed
    images included, exceed ``max_bytes``).
    """
    shown = name or path.name
    with path.open("rb") as fh:
        head = fh.read(len(FITS_MAGIC))
    if head != FITS_MAGIC:
        kind = compression_of(head)
        why = f"{kind}-compressed data inside" if kind else "it does not start with SIMPLE ="
        raise FrameUnreadable(f"{shown}: not a readable FITS file ({why})")
    declared = declared_data_bytes(path)
    if declared > max_bytes:
        raise too_big(f"{shown}: its headers declare data of", declared, max_bytes)
    try:
        return check_fits(path)
    except FrameUnreadable as exc:
        raise FrameUnreadable(str(exc).replace(path.name, shown, 1)) from None


# ------------------------------------------------------------------ the process
def _die_with_parent() -> None:
    """Exit as soon as the parent is gone, even in the middle of a request (no orphan).

    ``PR_SET_PDEATHSIG`` would not do: it fires when the parent *thread* that
    started this process ends, and the checker is often started from a
    short-lived download thread. A daemon thread watches the parent's pid instead.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _limit_memory(max_bytes: int) -> None:
    """Cap this process's address space: a backstop behind the size checks."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        soft = _BASE_VM_BYTES + 4 * max_bytes + 1024 * _MB
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_BASE_VM_BYTES = 0


def _vm_bytes() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 512 * _MB


def serve(request: dict[str, Any]) -> dict[str, Any]:
    """Answer one request: ``{"op": "check"|"unpack", "src", "dest", "max_bytes"}``.

    The answer is ``{"ok": true, "check": ..., "sha256", "size_bytes"}`` or
    ``{"ok": false, "kind": "rejected"|"unreadable"|"oserror"|"memory", "message",
    "errno"}``.
    """
    max_bytes = int(request["max_bytes"])
    _limit_memory(max_bytes)
    src = Path(request["src"])
    try:
        if request["op"] == "unpack":
            got = unpack(src, Path(request["dest"]), max_bytes=max_bytes)
            return {"ok": True, "check": asdict(got.check), "sha256": got.sha256,
                    "size_bytes": got.size_bytes}  # fmt: skip
        return {"ok": True, "check": asdict(check(src, max_bytes=max_bytes))}
    except FrameRejected as exc:
        return {"ok": False, "kind": "rejected", "message": str(exc)}
    except FrameUnreadable as exc:
        return {"ok": False, "kind": "unreadable", "message": str(exc)}
    except MemoryError:
        return {"ok": False, "kind": "memory", "message": f"{src.name}: out of memory reading it"}
    except OSError as exc:
        return {"ok": False, "kind": "oserror", "errno": exc.errno, "message": str(exc),
                "filename": None if exc.filename is None else str(exc.filename)}  # fmt: skip


def main() -> int:
    """Serve requests, one JSON object per line on stdin, one answer per line on stdout.

    Ends at end of input (the parent closed the pipe or died).
    """
    global _BASE_VM_BYTES  # noqa: PLW0603 - measured once, after the imports
    _die_with_parent()
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C goes to the whole group: the parent decides
    _BASE_VM_BYTES = _vm_bytes()
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        answer = serve(json.loads(line))
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0
