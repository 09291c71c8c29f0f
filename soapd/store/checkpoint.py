"""WAL checkpoints on their own thread, so that a commit never waits for one.

In WAL mode a commit appends the changed pages to the ``-wal`` file; a
*checkpoint* copies them back into the database file and fsyncs it. SQLite's
default runs the checkpoint inside the commit that takes the WAL past 1,000 pages:
a frame with thousands of target rows dirties more than that, so every such commit
paid for a whole checkpoint (a 6,000-row ``save_result``: ~65 ms commit of which
~57 ms checkpoint, bench/README.md). Here each read-write :class:`~soapd.store.Store`
on a file asks a process-wide :class:`WalCheckpointer` for that file to run a
``PASSIVE`` checkpoint after each transaction it commits; the checkpoint runs on the
checkpointer's own thread and connection, while the writer goes on (SQLite lets one
checkpointer and one writer work at once; readers are never blocked). Commits run the
checkpoint themselves only past :data:`WAL_AUTOCHECKPOINT_PAGES` (64 MiB at 4 KiB
pages), a backstop for a checkpointer that cannot keep up or cannot finish (a long
reader holds old pages).

Durability is unchanged: a committed transaction is in the WAL whether or not it
has been checkpointed, and ``synchronous = NORMAL`` fsyncs at checkpoints as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["WAL_AUTOCHECKPOINT_PAGES", "WalCheckpointer", "acquire", "release"]

log = logging.getLogger(__name__)

#: A committing connection checkpoints itself only once the WAL holds this many pages.
WAL_AUTOCHECKPOINT_PAGES = 16_384

_lock = threading.Lock()
_registry: dict[str, tuple[WalCheckpointer, int]] = {}


class WalCheckpointer:
    """A thread that runs ``PRAGMA wal_checkpoint(PASSIVE)`` on one database when asked.

    :meth:`request` never blocks: requests made while a checkpoint runs are merged
    into the next one. The thread (and its connection) ends after ``idle_s`` seconds
    without a request and starts again with the next, so nothing lingers in a process
    that stopped writing. An error is logged (once per kind in a row) and the thread
    goes on; the commits' own backstop checkpoint still bounds the WAL.
    """

    def __init__(
        self, path: Path | str, *, busy_timeout_ms: int = 1_000, idle_s: float = 1.0
    ) -> None:
        """Prepare a checkpointer for the database file ``path`` (no thread until a request)."""
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.idle_s = idle_s
        self.checkpoints = 0
        self._cond = threading.Condition()
        self._pending = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._last_error = ""

    def __repr__(self) -> str:
        """Return the class, the file and how many checkpoints ran."""
        return f"WalCheckpointer({self.path!r}, checkpoints={self.checkpoints})"

    def request(self) -> None:
        """Ask for a checkpoint soon (starts the thread if it is not running)."""
        with self._cond:
            if self._stop:
                return
            self._pending = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="soapd-wal-checkpoint", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after the checkpoint in progress, if any (waits up to ``timeout_s``)."""
        with self._cond:
            self._stop = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(timeout_s)

    def _next(self) -> bool:
        """Wait for a request; return False when the thread should end (idle or stopped)."""
        with self._cond:
            if not self._pending and not self._stop:
                self._cond.wait(self.idle_s)
            if self._stop or not self._pending:
                self._thread = None
                return False
            self._pending = False
            return True

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            while self._next():
                self._checkpoint(conn)
        except Exception as exc:  # opening failed: nothing to checkpoint with
            log.warning("WAL checkpoints of %s stop: %s", self.path, exc)
            with self._cond:
                self._thread = None
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            kind = type(exc).__name__ + str(exc)
            if kind != self._last_error:
                log.warning(
                    "WAL checkpoint of %s failed (%s); the next commit past %d pages "
                    "checkpoints instead",
                    self.path,
                    exc,
                    WAL_AUTOCHECKPOINT_PAGES,
                )
            self._last_error = kind
            return
        self._last_error = ""
        self.checkpoints += 1


def acquire(path: Path | str) -> WalCheckpointer:
    """Return the process's checkpointer for the database file ``path`` (one per file).

    Each call must be paired with :func:`release`; the last release stops it.
    """
    key = str(Path(path).resolve())
    with _lock:
        checkpointer, users = _registry.get(key, (None, 0))
        if checkpointer is None:
            checkpointer = WalCheckpointer(key)
        _registry[key] = (checkpointer, users + 1)
        return checkpointer


def release(checkpointer: WalCheckpointer) -> None:
    """Give back a checkpointer from :func:`acquire`; stop it when no Store uses it."""
    with _lock:
        entry = _registry.get(checkpointer.path)
        if entry is None or entry[0] is not checkpointer:
            return
        users = entry[1] - 1
        if users > 0:
            _registry[checkpointer.path] = (checkpointer, users)
            return
        del _registry[checkpointer.path]
    checkpointer.close()
