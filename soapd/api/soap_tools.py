"""Debug figures and cache administration of :class:`~soapd.api.soap.Soap` (a mixin).

Deleting cached files writes the ledger, so it holds the state folder's lock
(:class:`soapd.store.lock.StateLock`) like :meth:`Soap.run`, and refuses while a
daemon runs; a read-only ``Soap`` may look but not delete.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from soapd.api.cache import CacheAdmin
from soapd.api.support import frame_file
from soapd.errors import SoapdError

if TYPE_CHECKING:
    from soapd.config import Config
    from soapd.pipeline.calibrate import ReferenceProvider
    from soapd.store import Store
    from soapd.store.lock import StateLock

__all__ = ["HINT", "SoapTools"]

#: Added to a refusal beside a running daemon.
HINT = " (Soap(..., read_only=True) reads the results meanwhile)"


class SoapTools:
    """The debugging and cache methods of ``Soap``; ``Soap`` supplies the attributes below."""

    observation_id: int
    config: Config
    read_only: bool
    _lock: StateLock

    if TYPE_CHECKING:

        @property
        def store(self) -> Store:
            """The soapd database."""

        @property
        def state_dir(self) -> Path:
            """Where the database, frames and field-wide tables live."""

        def _catalog_service(self) -> ReferenceProvider | None: ...

    # -- debugging and cache ------------------------------------------------------------

    def debug_image(self, image: str | Path | int, out_path: str | Path | None = None) -> Path:
        """Draw the four-panel debug figure of a frame (FITS path, file name or exposure id).

        The archive metadata in the ledger (gain, read noise, time) is used as the
        daemon uses it. Saved to ``out_path`` (default
        ``<state_dir>/debug/<stem>_debug.png``); return the path.
        """
        from soapd.output.debug import debug_image

        path, meta = frame_file(self.store, self.config.paths.frames_dir, image)
        out = Path(out_path) if out_path else self.state_dir / "debug" / f"{path.stem}_debug.png"
        debug_image(path, out, config=self.config, catalogs=self._catalog_service(), meta=meta)
        return out

    def _admin(self) -> CacheAdmin:
        return CacheAdmin(self.config, self.store)

    def cache_info(self) -> dict[str, Any]:
        """Return file counts and sizes (MB) of the frames, tables and catalog caches."""
        return self._admin().info(self.observation_id)

    def clear_cache(self, confirm: bool = False, *, catalogs: bool = False) -> dict[str, Any]:
        """Delete this observation's frames and field-wide tables (and catalogs if asked).

        Nothing is deleted unless ``confirm`` is True: without it the returned
        statistics say what would go. Measurements and the ledger stay; frames
        whose file is deleted are downloaded again when needed.
        """
        if confirm and self.read_only:
            raise SoapdError("Soap(read_only=True) cannot delete cached frames")
        if not confirm:
            return self._admin().clear(self.observation_id, confirm=False, catalogs=catalogs)
        with self._lock.holding(f"Soap cannot delete cached frames{HINT}"):
            return self._admin().clear(self.observation_id, confirm=True, catalogs=catalogs)

    def prune_cache(self, max_total_size_mb: float, keep_recent: int = 1) -> dict[str, Any]:
        """Delete whole observations' files, oldest first, until the caches fit the budget.

        The ``keep_recent`` most recently used observations are kept whatever their
        size; catalog tiles are pruned oldest first after them. Return statistics.
        """
        if self.read_only:
            raise SoapdError("Soap(read_only=True) cannot prune the cache")
        with self._lock.holding(f"Soap cannot prune the cache{HINT}"):
            return self._admin().prune(max_total_size_mb=max_total_size_mb, keep_recent=keep_recent)
