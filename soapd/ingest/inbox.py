"""The inbox folder: notice FITS files that are complete, hand their paths to the daemon.

:class:`InboxWatcher` runs a watchdog observer over the inbox (recursively). A
file counts as arrived when it was **closed after writing** (inotify
``IN_CLOSE_WRITE``) or **moved in** (from elsewhere, or renamed inside the
inbox, e.g. ``x.part`` -> ``x.fits``); a bare creation never counts, because the
file may still be half-written. A folder moved in is scanned. Suffixes are
filtered here (``.fits .fit .fts`` and their ``.gz .bz2 .fz`` forms; names
starting with a dot are ignored), not with watchdog patterns, whose semantics
changed in watchdog 7. :meth:`InboxWatcher.scan` is the start-up scan for files
that arrived while soapd was down. The ``rejected/`` folder (files soapd will
not take, :mod:`soapd.ingest.rejected`) is never watched for work, and a
folder that is a symbolic link is not entered (a link to a file is handed on;
the drain job refuses one that leads out of the inbox).

The event handler runs on the observer thread and does only two things: put
the path on a queue and call the wake callback. It never touches the database;
registering the file (and dropping duplicates by checksum) is the drain job's
work. Close-after-write events need Linux inotify; elsewhere only moves and
scans find files.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

from watchdog.events import (
    DirMovedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from soapd.ingest.fitscheck import has_fits_suffix
from soapd.ingest.rejected import REJECTED_DIR, is_rejected_path

__all__ = ["InboxHandler", "InboxWatcher", "is_candidate", "scan_dir"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT_S = 10.0


def is_candidate(path: Path) -> bool:
    """Return True when ``path``'s name looks like a FITS frame soapd should pick up."""
    return not path.name.startswith(".") and has_fits_suffix(path.name)


def scan_dir(directory: Path, *, inbox: Path | None = None) -> Iterator[Path]:
    """Yield candidate FITS files under ``directory`` (recursively), in sorted order.

    Folders reached through symbolic links are not entered (``os.walk`` does
    not follow them); a symbolic link to a file is yielded for the drain job
    to judge. With ``inbox``, its ``rejected/`` folder is skipped.
    """
    if not directory.is_dir():
        return
    skip = None if inbox is None else inbox / REJECTED_DIR
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(root) / d != skip)
        for name in sorted(files):
            path = Path(root) / name
            if is_candidate(path) and (path.is_file() or path.is_symlink()):
                yield path


def _path(raw: bytes | str) -> Path:
    return Path(os.fsdecode(raw))


class InboxHandler(FileSystemEventHandler):
    """watchdog handler: enqueue finished FITS files and wake the drain job."""

    def __init__(
        self,
        paths: queue.Queue[Path],
        wake: Callable[[], None] | None = None,
        *,
        inbox: Path | None = None,
    ) -> None:
        super().__init__()
        self._paths = paths
        self._wake = wake
        self._inbox = inbox

    def _ignored(self, path: Path) -> bool:
        return self._inbox is not None and is_rejected_path(path, self._inbox)

    def enqueue(self, path: Path) -> None:
        """Put ``path`` on the queue and call the wake callback (errors in it are logged).

        Paths in the inbox's ``rejected/`` folder are ignored.
        """
        if self._ignored(path):
            return
        self._paths.put(path)
        if self._wake is not None:
            try:
                self._wake()
            except Exception:  # the observer thread must survive a failing callback
                logger.exception("inbox wake callback failed")

    def on_closed(self, event: FileClosedEvent) -> None:
        """Enqueue a file closed after writing, if it is a FITS candidate."""
        path = _path(event.src_path)
        if not event.is_directory and is_candidate(path):
            logger.debug("inbox: %s closed after writing", path)
            self.enqueue(path)

    def on_created(self, event: FileSystemEvent) -> None:
        """Scan a folder created in the inbox for files closed before its watch was added.

        inotify watches a new folder only after the creation event arrives, so a file
        written into it at once can be missed; scanning closes that gap. A file still
        being written is enqueued too early, fails the FITS check, and comes back with
        its close event; a file seen twice is registered once (checksum identity).
        Bare file creation is ignored: files are taken when closed or moved in.
        """
        folder = _path(event.src_path)
        if not event.is_directory or folder.is_symlink() or self._ignored(folder):
            return
        for path in scan_dir(folder, inbox=self._inbox):
            logger.debug("inbox: %s found in a new folder", path)
            self.enqueue(path)

    def on_moved(self, event: DirMovedEvent | FileMovedEvent) -> None:
        """Enqueue the FITS files of a file or folder moved in (or renamed inside)."""
        if not event.dest_path:
            return
        dest = _path(event.dest_path)
        if event.is_directory:
            if dest.is_symlink() or self._ignored(dest):
                return
            for path in scan_dir(dest, inbox=self._inbox):
                logger.debug("inbox: %s moved in with its folder", path)
                self.enqueue(path)
        elif is_candidate(dest):
            logger.debug("inbox: %s moved in", dest)
            self.enqueue(dest)


def _make_observer() -> Any:
    """Return an observer that reports close-after-write and moves from outside as moves."""
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver

        return InotifyObserver(generate_full_events=True)
    from watchdog.observers import Observer  # pragma: no cover - not Linux

    logger.warning(  # pragma: no cover
        "inbox: close-after-write events need Linux inotify; only moved-in files and "
        "scans will be noticed on this platform"
    )
    return Observer()  # pragma: no cover


class InboxWatcher:
    """Watch ``inbox_dir`` and put arrived FITS paths on ``paths``; call ``wake`` after each.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. The
    folder is created if missing.
    """

    def __init__(
        self,
        inbox_dir: Path,
        paths: queue.Queue[Path],
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.inbox_dir = inbox_dir
        self.paths = paths
        self._handler = InboxHandler(paths, wake, inbox=inbox_dir)
        self._observer: Any = None

    def start(self) -> Self:
        """Start watching (creating the folder if needed); return self."""
        if self._observer is not None:
            return self
        self.inbox_dir.mkdir(parents=True, exist_ok=True)
        observer = _make_observer()
        observer.schedule(self._handler, str(self.inbox_dir), recursive=True)
        observer.start()
        self._observer = observer
        logger.info("watching inbox %s", self.inbox_dir)
        return self

    def scan(self) -> int:
        """Enqueue every candidate already in the inbox (the start-up scan); return the count.

        Call it after :meth:`start`, so that nothing arriving in between is
        missed; a file seen both ways is enqueued twice and registered once.
        """
        count = 0
        for path in scan_dir(self.inbox_dir, inbox=self.inbox_dir):
            self._handler.enqueue(path)
            count += 1
        if count:
            logger.info("inbox scan: %d file(s) waiting in %s", count, self.inbox_dir)
        return count

    def stop(self) -> None:
        """Stop the observer thread and wait for it. Safe to call twice."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=_JOIN_TIMEOUT_S)

    @property
    def running(self) -> bool:
        """Return True while the observer thread is alive."""
        return self._observer is not None and bool(self._observer.is_alive())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
