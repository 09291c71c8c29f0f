"""One writer per state folder: an exclusive ``fcntl.flock`` on ``<state_dir>/soapd.lock``.

``soapd run`` (and ``--until-idle``) holds it for its whole life; ``Soap`` holds
it while it downloads or processes. A second writer fails at once with
:class:`StateLocked`, whose message names the holder's process id and what it
is. The kernel drops the lock when its holder exits, also after ``kill -9``, so
a stale file never blocks a start; the file's text (pid and owner) only serves
the message. Worker processes never inherit the lock (the fork server is
started by exec and gets only the descriptors it is given).

Readers take no lock: ``soapd status``, lightcurves and ``Soap(read_only=True)``
always work. :func:`lock_holder` tells who holds it without taking it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from soapd.errors import StoreError

__all__ = ["LOCK_NAME", "Holder", "StateLock", "StateLocked", "lock_holder"]

#: The lock file's name inside ``paths.state_dir``.
LOCK_NAME = "soapd.lock"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a state folder's lock: process id and what it is (``soapd run``, ``Soap``)."""

    pid: int | None
    owner: str

    def describe(self) -> str:
        """Return e.g. ``"soapd run (pid 1234)"``."""
        return f"{self.owner} (pid {self.pid})" if self.pid else self.owner


class StateLocked(StoreError):
    """Another process writes this state folder (a running daemon, or a ``Soap``)."""

    def __init__(self, message: str, holder: Holder) -> None:
        """Keep the ``holder`` beside the message."""
        super().__init__(message)
        self.holder = holder


def _read_holder(fd: int) -> Holder:
    """Parse the lock file's text (``pid=N owner=...``) from the descriptor ``fd``."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace")
    fields = dict(part.split("=", 1) for part in text.split("\n") if "=" in part)
    pid_text = fields.get("pid", "").strip()
    return Holder(
        pid=int(pid_text) if pid_text.isdigit() else None,
        owner=fields.get("owner", "another soapd process").strip(),
    )


def lock_holder(state_dir: Path) -> Holder | None:
    """Return who holds ``state_dir``'s lock, or None when nobody does (takes no lock)."""
    path = Path(state_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):  # none, or not ours to read
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class StateLock:
    """The exclusive lock of one state folder; use as a context manager or acquire/release.

    Parameters
    ----------
    state_dir
        The state folder (``paths.state_dir``); created if missing.
    owner
        What takes the lock, for the other side's message (``"soapd run"``, ``"Soap"``).
    """

    def __init__(self, state_dir: Path, *, owner: str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self.owner = owner
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`StateLocked` naming its holder (never waits)."""
        if self._fd is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateLocked(
                f"{self.state_dir} is in use by {holder.describe()}: only one process may "
                f"process frames in a state folder at a time (lock file {self.path})",
                holder,
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid={os.getpid()}\nowner={self.owner}\n".encode())
        self._fd = fd

    @contextlib.contextmanager
    def holding(self, refused: str) -> Iterator[None]:
        """Hold the lock for the block (re-entrant); released when the outermost block ends.

        A StateLocked raised here starts with ``refused`` (what could not be done).
        """
        if self._depth == 0:
            try:
                self.acquire()
            except StateLocked as exc:
                raise StateLocked(f"{refused}: {exc}", exc.holder) from None
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.release()

    def release(self) -> None:
        """Drop the lock (the file stays; its text is cleared). Safe to call twice."""
        self._depth = 0
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> Self:
        """Acquire."""
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release."""
        self.release()
