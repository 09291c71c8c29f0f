"""Register a local FITS file: check it, checksum it, put it safely in the frames folder.

:func:`register_file` copies the file into the frames folder under a name that
starts with its SHA-256 (so the same content always lands on the same name,
whatever it was called), through a hidden ``.part`` file that is fsynced and
renamed, and checks that the copy is a readable FITS image. With
``action="move"`` the original is removed once the copy is durable. The caller
(the drain job) records the returned :class:`RegisteredFile` in the ledger,
where ``sha256`` is UNIQUE: the same content dropped twice, or dropped and also
downloaded from Skynet, is one frame.

This module does no SQL and never modifies the original file unless moving it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from soapd.errors import FrameUnreadable
from soapd.fileio import copy_to_part, publish, sha256_file
from soapd.ingest.fitscheck import FitsCheck, check_fits, has_fits_suffix, safe_filename

__all__ = ["RegisteredFile", "register_file"]

logger = logging.getLogger(__name__)

_HASH_PREFIX = 16
ACTIONS = ("copy", "move")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredFile:
    """A local frame now held in the frames folder.

    ``path`` is the stored copy, ``original`` where it was found, ``sha256`` and
    ``size_bytes`` its identity, ``check`` what :func:`check_fits` found.
    ``already_present`` is True when identical content was stored before.
    """

    path: Path
    original: Path
    sha256: str
    size_bytes: int
    check: FitsCheck
    already_present: bool = False


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


def register_file(src: Path, frames_dir: Path, *, action: str = "copy") -> RegisteredFile:
    """Given a FITS file, store it in ``frames_dir`` and return its :class:`RegisteredFile`.

    ``action`` is "copy" (leave the original) or "move" (remove it after the
    copy is durable). Identical content stored before, under any name, is not
    copied again: its path is returned with ``already_present`` True.
    Raise FrameUnreadable if the file vanished, is empty, or is not a readable
    FITS image (the original is then left where it is), ValueError for an
    unknown ``action``.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if not src.is_file():
        raise FrameUnreadable(f"{src}: the file is gone or is not a regular file")
    if src.stat().st_size == 0:
        raise FrameUnreadable(f"{src}: the file is empty")
    frames_dir.mkdir(parents=True, exist_ok=True)
    part = frames_dir / f".{uuid.uuid4().hex}.part"
    try:
        digest, size = copy_to_part(src, part)
        try:
            check = check_fits(part)
        except FrameUnreadable as exc:
            raise FrameUnreadable(f"{src}: {str(exc).split(': ', 1)[-1]}") from None
        existing = _find_stored(frames_dir, digest, size)
        already = existing is not None
        dest = existing if existing is not None else frames_dir / _stored_name(digest, src.name)
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
    )
