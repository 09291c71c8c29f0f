"""Logging set-up, done once per process, the per-frame logger adapter and frame context.

Under systemd (``$JOURNAL_STREAM`` or ``$INVOCATION_ID`` set) lines carry no
timestamp because journald adds one; on a terminal they do. Noisy library
loggers (httpx, httpcore, apscheduler, watchdog, astroquery) are turned down to
WARNING. Records made inside :func:`frame_context` (a worker processing a
frame) carry the frame id as ``record.frame_id``, and the handler of
:func:`setup_logging` starts their line with ``[frame N]``. This module must not
import other soapd modules.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["FrameFormatter", "FrameLogger", "RepeatedErrors", "frame_context", "setup_logging"]

_NOISY = ("httpx", "httpcore", "apscheduler", "watchdog", "astroquery", "matplotlib", "PIL")
_JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
_TERMINAL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def under_systemd() -> bool:
    """Return True when stderr goes to the journal (soapd runs as a systemd service)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup_logging(level: str = "INFO", style: str = "auto") -> None:
    """Configure the root logger once: ``level`` name, ``style`` auto|journal|plain."""
    journal = style == "journal" or (style == "auto" and under_systemd())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FrameFormatter(_JOURNAL_FORMAT if journal else _TERMINAL_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY:
        if name == "astroquery" and name not in sys.modules:
            # astroquery installs its own logger class when imported; creating its
            # logger first makes that import fail. soapd.daemon.service quiets it later.
            continue
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(capture=True)


class FrameLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that prefixes messages with the frame's identity.

    ``FrameLogger(logger, {"frame_id": 3, "exp_id": 123})`` logs
    ``[frame 3 exp 123] message``.
    """

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Prefix ``msg`` with the non-empty identity fields."""
        extra = self.extra or {}
        parts = [
            f"{label} {extra[key]}"
            for key, label in (
                ("frame_id", "frame"),
                ("exp_id", "exp"),
                ("obs_id", "obs"),
                ("target", "target"),
            )
            if extra.get(key) is not None
        ]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        return f"{prefix}{msg}", kwargs


#: The frame being processed in this thread (or task), if any.
_FRAME_ID: ContextVar[int | None] = ContextVar("soapd_frame_id", default=None)
_FACTORY_LOCK = threading.Lock()
_factory_installed = False


@contextmanager
def frame_context(frame_id: int) -> Iterator[None]:
    """Tag every log record made in this context (thread or task) with ``frame_id``.

    The record gets the attribute ``frame_id``; :class:`FrameFormatter` (the
    handler of :func:`setup_logging`) starts its line with ``[frame N]``. Used by
    ``soapd.frames.run_task``, so that the lines a worker process writes while
    processing a frame say which frame they are about.
    """
    _install_record_factory()
    token = _FRAME_ID.set(frame_id)
    try:
        yield
    finally:
        _FRAME_ID.reset(token)


def _install_record_factory() -> None:
    """Wrap the process's log-record factory once, so records pick up the frame context."""
    global _factory_installed  # noqa: PLW0603 - one process-wide hook, installed once
    with _FACTORY_LOCK:
        if _factory_installed:
            return
        base = logging.getLogRecordFactory()

        def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base(*args, **kwargs)
            frame_id = _FRAME_ID.get()
            if frame_id is not None:
                record.frame_id = frame_id
            return record

        logging.setLogRecordFactory(make)
        _factory_installed = True


class FrameFormatter(logging.Formatter):
    """A formatter that starts a record's message with ``[frame N]`` when it has a frame id.

    Messages that already name their frame first (``[frame 3 exp 4] ...`` from
    :class:`FrameLogger`, or ``frame 3: ...``) are left as they are.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """Format ``record``, prefixing its message with its frame id."""
        frame_id = getattr(record, "frame_id", None)
        if frame_id is None or re.match(rf"\[?frame {frame_id}\b", record.message):
            return super().formatMessage(record)
        tagged = copy.copy(record)
        tagged.message = f"[frame {frame_id}] {record.message}"
        return super().formatMessage(tagged)


@dataclass(slots=True)
class _Streak:
    message: str
    count: int
    since_utc: str
    logged_s: float
    logged_count: int


class RepeatedErrors:
    """One clear line per repeated error, with a count, instead of a traceback each time.

    ``failed(key, message)`` logs ``message`` at ERROR the first time (with the
    traceback of ``exc`` when ``traceback`` is True: an unexpected error); while
    the same message repeats for ``key`` it is counted, and one line
    ``"... (N more times in the last T s)"`` is logged at most every
    ``every_s`` seconds. ``succeeded(key)`` ends the streak with one INFO line
    when it had repeated. :meth:`current` returns each failing key's line for
    ``soapd status``. Thread-safe.
    """

    def __init__(
        self,
        log: logging.Logger,
        *,
        every_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Log through ``log``; repeat a line at most every ``every_s`` seconds of ``clock``."""
        self._log = log
        self.every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._streaks: dict[str, _Streak] = {}

    def failed(
        self, key: str, message: str, *, exc: BaseException | None = None, traceback: bool = False
    ) -> bool:
        """Count one failure of ``key``; return True when a line was logged for it."""
        now = self._clock()
        with self._lock:
            streak = self._streaks.get(key)
            if streak is None or streak.message != message:
                utc = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._streaks[key] = _Streak(message, 1, utc, now, 1)
                first = True
            else:
                streak.count += 1
                first = False
                if now - streak.logged_s < self.every_s:
                    return False
                more, window_s = streak.count - streak.logged_count, now - streak.logged_s
                streak.logged_s, streak.logged_count = now, streak.count
        if first:
            self._log.error("%s", message, exc_info=exc if traceback and exc else None)
        else:
            self._log.error("%s (%d more times in the last %.0f s)", message, more, window_s)
        return True

    def succeeded(self, key: str) -> bool:
        """End ``key``'s failure streak; return True when it was failing."""
        with self._lock:
            streak = self._streaks.pop(key, None)
        if streak is None:
            return False
        if streak.count > 1:
            self._log.info("%s: recovered after %d failures", key, streak.count)
        return True

    def current(self) -> dict[str, str]:
        """Return each failing key's message with its count and since when."""
        with self._lock:
            return {
                key: f"{s.message} ({s.count}x since {s.since_utc})"
                for key, s in self._streaks.items()
            }
