"""Durable file writes and checksums: the one copy soapd uses.

Every file soapd writes for others to read (downloaded and registered frames,
catalog cache tiles, alert files) appears complete or not at all, and survives
a power cut once the call returns:

* :func:`atomic_writer` (and :func:`atomic_write_bytes` / :func:`atomic_write_text`)
  writes to a hidden temporary file in the target's folder, flushes and fsyncs
  it, renames it over the target (:meth:`pathlib.Path.replace`, atomic on POSIX)
  and fsyncs the folder; on any error the temporary file is removed and the target is untouched;
* :func:`write_part` / :func:`copy_to_part` fill a caller-named ``.part`` file
  (flushed and fsynced) while computing its SHA-256, for callers that check the
  bytes before giving them their final name with :func:`publish` (rename, then
  fsync the folder); :func:`publish` also fsyncs a file that a path-based
  writer (astropy, pyarrow) wrote;
* :func:`sha256_file` streams a file's SHA-256.

Standard library only; no logging.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "CHUNK_BYTES",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "copy_to_part",
    "folder_usage",
    "fsync_dir",
    "fsync_file",
    "iter_chunks",
    "pid_alive",
    "publish",
    "sha256_file",
    "write_part",
]

#: Read and write block size, bytes.
CHUNK_BYTES = 1 << 20


def fsync_file(path: Path) -> None:
    """Flush the file (or, on POSIX, the folder) at ``path`` to disk, whoever wrote it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename or creation in ``directory`` durable (a no-op off POSIX).

    Raise OSError when the folder cannot be opened (it is gone, or unreadable).
    """
    if os.name == "posix":
        fsync_file(directory)


def publish(part: Path, final: Path, *, part_synced: bool = False) -> None:
    """Give the complete file ``part`` the name ``final``, durably.

    ``part`` is fsynced (skipped when ``part_synced``: the writer did it, as
    :func:`write_part` does), renamed over ``final`` (same folder, atomic on
    POSIX) and the folder fsynced. For files written by a path-based writer
    (astropy, pyarrow) to a temporary name in ``final``'s folder.
    """
    if not part_synced:
        fsync_file(part)
    Path(part).replace(final)
    fsync_dir(Path(final).parent)


def _temp_name(path: Path) -> Path:
    """Return a fresh hidden temporary name beside ``path``."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int = 0o666) -> Iterator[BinaryIO]:
    """Open a binary file that replaces ``path`` atomically and durably on success.

    Parameters
    ----------
    path
        The final file; its folder must exist.
    mode
        Permission bits of a new file before the umask (as :func:`os.open`);
        the default gives what ``open(path, "wb")`` gives.

    Yields
    ------
    BinaryIO
        The temporary file to write. When the ``with`` block ends normally it is
        flushed, fsynced, renamed over ``path`` and the folder fsynced; when the
        block raises, it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path, part_synced=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_writer`)."""
    with atomic_writer(path, mode=mode) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str, *, encoding: str = "utf-8", mode: int = 0o666) -> None:
    """Write ``text`` to ``path`` atomically and durably (see :func:`atomic_writer`)."""
    atomic_write_bytes(path, text.encode(encoding), mode=mode)


def iter_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the bytes of the file at ``path`` in blocks of at most ``chunk_bytes``."""
    with Path(path).open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            yield chunk


def sha256_file(path: Path) -> tuple[str, int]:
    """Return (SHA-256 hex digest, size in bytes) of the file at ``path``, read in blocks."""
    sha = hashlib.sha256()
    size = 0
    for chunk in iter_chunks(path):
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


def write_part(part: Path, chunks: Iterable[bytes]) -> tuple[str, int]:
    """Write ``chunks`` to the file ``part`` (created or truncated), flush and fsync it.

    Return (SHA-256 hex digest, size in bytes) of what was written. The caller
    renames ``part`` into place (then calls :func:`fsync_dir`) or removes it;
    an exception from ``chunks`` propagates with ``part`` left for the caller.
    """
    sha = hashlib.sha256()
    size = 0
    with Path(part).open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            sha.update(chunk)
            size += len(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return sha.hexdigest(), size


def copy_to_part(src: Path, part: Path) -> tuple[str, int]:
    """Copy ``src`` to ``part`` (fsynced); return (SHA-256 hex digest, size) of the copy."""
    return write_part(part, iter_chunks(src))


def pid_alive(pid: int) -> bool:
    """Return True when process ``pid`` exists (a zombie too; ``pid <= 0``: False).

    For pids written in the state folder (the daemon's status, the writer lock).
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def folder_usage(folder: Path) -> dict[str, int]:
    """Return ``{"files": N, "bytes": B}`` of the files below ``folder`` (zeros when absent)."""
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
