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
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["FrameFormatter", "FrameLogger", "frame_context", "setup_logging"]

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
