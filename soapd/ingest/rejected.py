"""The inbox's ``rejected/`` folder: files soapd will not take, each with its reason beside it.

An inbox file that is not a readable FITS frame (or is too big once decompressed,
or is a symbolic link leading out of the inbox) would otherwise sit in the inbox
for ever and be warned about at every start. :func:`reject` moves it to
``<inbox>/rejected/`` and writes ``<name>.reason.txt`` next to it (one line: the
time in UTC and the reason); :func:`list_rejected` reads them back for
``soapd status``. The watcher and the start-up scan ignore the folder. To try a
file again, fix it and move it back into the inbox.

A file is only moved when its folder really is inside the inbox (a path through
a symbolic link to another folder is left where it is): soapd never renames
files outside the inbox.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soapd.fileio import atomic_write_text, fsync_dir

__all__ = ["REASON_SUFFIX", "REJECTED_DIR", "is_rejected_path", "list_rejected", "reject"]

logger = logging.getLogger(__name__)

#: Name of the folder, inside the inbox, that holds rejected files.
REJECTED_DIR = "rejected"
#: Suffix of the reason file written beside each rejected file.
REASON_SUFFIX = ".reason.txt"


def _inside(path: Path, folder: Path) -> bool:
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == root or root in real.parents


def is_rejected_path(path: Path, inbox: Path) -> bool:
    """Return True when ``path`` lies in the inbox's ``rejected/`` folder."""
    rejected = inbox / REJECTED_DIR
    return path == rejected or rejected in path.parents or _inside(path.parent, rejected)


def _one_line(text: str) -> str:
    """Return ``text`` on one line with control characters shown escaped."""
    flat = " ".join(text.split())
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in flat)


def _free_name(folder: Path, name: str) -> Path:
    """Return ``folder/name``, or ``folder/name.N`` for the first N not taken."""
    candidate = folder / name
    n = 1
    while candidate.exists() or candidate.is_symlink() or _reason(candidate).exists():
        candidate = folder / f"{name}.{n}"
        n += 1
    return candidate


def _reason(path: Path) -> Path:
    return path.with_name(path.name + REASON_SUFFIX)


def reject(path: Path, inbox: Path, reason: str, *, now: datetime | None = None) -> Path | None:
    """Move the inbox file ``path`` to ``<inbox>/rejected/`` with a reason file; return its path.

    A symbolic link is moved as the link, never its target. Return None (and
    move nothing) when ``path`` is gone or its folder is not inside the inbox.
    Raise OSError if the move itself fails (a read-only inbox).
    """
    if not (path.exists() or path.is_symlink()) or not _inside(path.parent, inbox):
        return None
    folder = inbox / REJECTED_DIR
    folder.mkdir(exist_ok=True)
    dest = _free_name(folder, path.name)
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    atomic_write_text(_reason(dest), f"{when} {_one_line(reason)}\n")
    try:
        path.rename(dest)
    except OSError:
        _reason(dest).unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return dest


def list_rejected(inbox: Path | None) -> list[dict[str, Any]]:
    """Return the rejected files of ``inbox``, newest first: name, reason, rejected_utc, bytes.

    Empty when there is no inbox or nothing was rejected.
    """
    folder = None if inbox is None else inbox / REJECTED_DIR
    if folder is None or not folder.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for entry in folder.iterdir():
        if entry.name.endswith(REASON_SUFFIX):
            continue
        try:
            text = _reason(entry).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            text = ""
        when, _, why = text.partition(" ")
        try:
            size = entry.lstat().st_size if entry.is_symlink() else entry.stat().st_size
        except OSError:  # removed meanwhile
            continue
        out.append(
            {
                "name": _one_line(entry.name),
                "reason": why or "(no reason file)",
                "rejected_utc": when or None,
                "bytes": size,
            }
        )
    return sorted(out, key=lambda r: (r["rejected_utc"] or "", r["name"]), reverse=True)
