"""Logging set-up, done once per process, and the per-frame logger adapter.

Under systemd (``$JOURNAL_STREAM`` or ``$INVOCATION_ID`` set) lines carry no
timestamp because journald adds one; on a terminal they do. Noisy library
loggers (httpx, httpcore, apscheduler, watchdog, astroquery) are turned down to
WARNING. This module must not import other soapd modules.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = ["FrameLogger", "setup_logging"]

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
    handler.setFormatter(logging.Formatter(_JOURNAL_FORMAT if journal else _TERMINAL_FORMAT))
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
