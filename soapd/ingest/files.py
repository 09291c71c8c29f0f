"""Register a local FITS file: check it, checksum it, put it safely in the frames folder.

:func:`register_file` copies the file into the frames folder under a name that
starts with its SHA-256 (so the same content always lands on the same name,
whatever it was called), through a hidden ``.part`` file that is fsynced and
renamed, and checks that the copy is a readable FITS image. A gzip or bzip2
file is stored decompressed, so its SHA-256 is that of the FITS inside: ``x.fits``
and ``x.fits.gz`` are one frame. Decompression and every read of the pixels
happen in the checker process (:mod:`soapd.ingest.checker`), within
``[frame] max_decompressed_mb``. With ``action="move"`` the original is removed
once the copy is durable. The caller (the drain job) records the returned
:class:`RegisteredFile` in the ledger, where ``sha256`` is UNIQUE: the same
content dropped twice, or dropped and also downloaded from Skynet, is one frame.

This module does no SQL and never modifies the original file unless moving it.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from soapd.config import FrameConfig
from soapd.errors import FrameError, FrameRejected, FrameUnreadable
from soapd.fileio import copy_to_part, publish, sha256_file
from soapd.ingest.checker import FileChecker, mb_to_bytes, shared_checker
from soapd.ingest.fitscheck import FitsCheck, has_fits_suffix, safe_filename
from soapd.ingest.unpack import compression_of

__all__ = ["DEFAULT_MAX_BYTES", "OutsideRoot", "RegisteredFile", "confined", "register_file"]

logger = logging.getLogger(__name__)

_HASH_PREFIX = 16
ACTIONS = ("copy", "move")
#: The data-size limit when the caller gives none (the default ``[frame] max_decompressed_mb``).
DEFAULT_MAX_BYTES = mb_to_bytes(FrameConfig().max_decompressed_mb)


class OutsideRoot(FrameRejected):
    """A symbolic link in the inbox leads out of it: not followed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredFile:
    """A local frame now held in the frames folder.

    ``path`` is the stored copy, ``original`` where it was found, ``sha256`` and
    ``size_bytes`` its identity, ``check`` what :func:`check_fits` found.
    ``already_present`` is True when identical content was stored before;
    ``unpacked`` names the compression removed ("gzip", "bzip2") or is None.
    """

    path: Path
    original: Path
    sha256: str
    size_bytes: int
    check: FitsCheck
    already_present: bool = False
    unpacked: str | None = None


def _stored_name(sha256: str, original: str) -> str:
    name = safe_filename(original) or "frame.fits"
    if not has_fits_suffix(name):
        name += ".fits"
    return f"{sha256[:_HASH_PREFIX]}_{name}"


def _find_stored(frames_dir: Path, sha256: str, size: int) -> Path | None:
    """Return a file already stored with this content (whatever its name), or None."""
    for candidate in sorted(frames_dir.glob(f"{sha256[:_HASH_PREFIX]}_*")):
        if candidate.is_file() and sha256_file(candidate) == (sha256, size):
            return candidate
    return None


def _strip_compression(name: str) -> str:
    """Return ``name`` without a final .gz or .bz2 (the stored copy is decompressed)."""
    lower = name.lower()
    for suffix in (".gz", ".bz2"):
        if lower.endswith(suffix) and has_fits_suffix(name[: -len(suffix)]):
            return name[: -len(suffix)]
    return name


def confined(src: Path, root: Path) -> Path:
    """Return where ``src`` really is; raise OutsideRoot if a symbolic link leads out of ``root``.

    A file reached through a symbolic link (the file itself or a folder on its
    path) must resolve inside ``root``; a plain path is taken as given.
    """
    real = Path(os.path.realpath(src))
    if real == Path(os.path.normpath(Path(src).absolute())):
        return real
    real_root = Path(os.path.realpath(root))
    if real != real_root and real_root not in real.parents:
        raise OutsideRoot(f"{src.name}: a symbolic link to {real}, outside {root}; not followed")
    return real


def register_file(
    src: Path,
    frames_dir: Path,
    *,
    action: str = "copy",
    max_bytes: int = DEFAULT_MAX_BYTES,
    root: Path | None = None,
    checker: FileChecker | None = None,
) -> RegisteredFile:
    """Given a FITS file, store it in ``frames_dir`` and return its :class:`RegisteredFile`.

    ``action`` is "copy" (leave the original) or "move" (remove it after the
    copy is durable). A gzip or bzip2 file (recognised by its first bytes) is
    stored decompressed, so the same frame as ``x.fits`` and ``x.fits.gz`` is
    one identity; decompression and the FITS check run in the checker process
    (``checker``, default :func:`~soapd.ingest.checker.shared_checker`) with the
    limit ``max_bytes`` on the data. With ``root`` (the inbox) a symbolic link
    leading out of it is refused. Identical content stored before, under any
    name, is not copied again: its path is returned with ``already_present`` True.

    Raise FrameUnreadable if the file vanished, is empty, or is not a readable
    FITS image; FrameRejected if its data exceed ``max_bytes`` (OutsideRoot for
    a link out of ``root``); OSError for I/O errors such as a full disk (the
    original is left where it is in every case); ValueError for an unknown ``action``.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    real = confined(src, root) if root is not None else src
    if not real.is_file():
        raise FrameUnreadable(f"{src}: the file is gone or is not a regular file")
    if real.stat().st_size == 0:
        raise FrameUnreadable(f"{src}: the file is empty")
    checker = checker or shared_checker()
    frames_dir.mkdir(parents=True, exist_ok=True)
    part = frames_dir / f".{uuid.uuid4().hex}.part"
    try:
        with real.open("rb") as fh:
            packed = compression_of(fh.read(4))
        try:
            if packed:
                got = checker.unpack(real, part, max_bytes=max_bytes)
                assert got.sha256 is not None
                assert got.size_bytes is not None
                digest, size, check = got.sha256, got.size_bytes, got.check
            else:
                digest, size = copy_to_part(real, part)
                check = checker.check(part, max_bytes=max_bytes)
        except FrameError as exc:  # name the file as the caller knows it
            text = str(exc)
            for name in {real.name, part.name}:
                text = text.removeprefix(f"{name}: ").removeprefix(f"{name} ")
            raise type(exc)(f"{src}: {text}") from None
        existing = _find_stored(frames_dir, digest, size)
        already = existing is not None
        name = _strip_compression(src.name)
        dest = existing if existing is not None else frames_dir / _stored_name(digest, name)
        if already:
            part.unlink()
        else:
            publish(part, dest, part_synced=True)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if action == "move":
        src.unlink(missing_ok=True)
    logger.debug("registered %s as %s (sha256 %s)", src, dest.name, digest[:_HASH_PREFIX])
    return RegisteredFile(
        path=dest,
        original=src,
        sha256=digest,
        size_bytes=size,
        check=check,
        already_present=already,
        unpacked=packed,
    )
