"""What every request handler of the web app shares: the config, the store opener, caches.

:class:`WebState` is built once by :func:`soapd.web.app.create_app` and hung on
``app.state.soapd``. The database is opened read-only per request
(:meth:`WebState.store`), so handlers running in parallel threads never share
a connection and a long-lived connection never pins an old WAL snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from soapd.store.readonly import ReadOnlyStore

if TYPE_CHECKING:
    from starlette.requests import Request

    from soapd.config import Config

__all__ = ["WebState", "notifier_keys", "web_state"]

logger = logging.getLogger(__name__)


def notifier_keys(cfg: Config) -> list[str]:
    """Return the keys of the configured notifiers (what the outbox records deliveries under).

    Empty when the notifiers cannot be built here (e.g. apprise not installed):
    the status page then lists the notifiers found in past deliveries only.
    """
    from soapd.alerts.notifiers import build_notifiers
    from soapd.errors import SoapdError

    try:
        notifiers = build_notifiers(cfg.notifiers)
    except SoapdError as exc:
        logger.warning("status page: notifiers not listed (%s)", exc)
        return []
    keys = [n.key for n in notifiers]
    for n in notifiers:
        close = getattr(n, "close", None)
        if callable(close):
            close()
    return keys


@dataclass
class WebState:
    """Shared, thread-safe state of one web app."""

    config: Config
    db_path: Path
    notifier_keys: list[str]
    #: One debug figure at a time (each runs the pipeline on a frame: seconds of CPU).
    debug_lock: threading.Lock = field(default_factory=threading.Lock)
    #: frame_id -> PNG bytes of the last few debug figures.
    debug_cache: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    debug_cache_size: int = 8
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def store(self) -> Iterator[ReadOnlyStore]:
        """Open the database read-only for one request and close it afterwards."""
        store = ReadOnlyStore(self.db_path)
        try:
            yield store
        finally:
            store.close()

    def cached_debug(self, frame_id: int) -> bytes | None:
        """Return the cached debug PNG of a frame, or None."""
        with self._cache_lock:
            return self.debug_cache.get(frame_id)

    def remember_debug(self, frame_id: int, png: bytes) -> None:
        """Cache a debug PNG, dropping the oldest beyond ``debug_cache_size``."""
        with self._cache_lock:
            self.debug_cache[frame_id] = png
            self.debug_cache.move_to_end(frame_id)
            while len(self.debug_cache) > self.debug_cache_size:
                self.debug_cache.popitem(last=False)


def web_state(request: Request) -> WebState:
    """Return the app's :class:`WebState` from a request."""
    state: WebState = request.app.state.soapd
    return state
