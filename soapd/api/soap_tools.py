"""Debug figures and cache administration of :class:`~soapd.api.soap.Soap` (a mixin).

The cache methods have skynetsoap's signatures and meaning: ``confirm=True``
(the default) asks on the terminal before deleting, ``confirm=False`` deletes
without asking. soapd's own spellings never ask: :meth:`SoapTools.remove_cached`
(``dry_run=True`` by default: report only) and :meth:`SoapTools.prune_cached`.

Deleting cached files writes the ledger, so it holds the state folder's lock
(:class:`soapd.store.lock.StateLock`) like :meth:`Soap.run`, and refuses while a
daemon runs; a read-only ``Soap`` may look but not delete.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from soapd.api.cache import CacheAdmin
from soapd.api.compat import Layout, ask
from soapd.api.state import HINT
from soapd.api.support import frame_file, resolve_config
from soapd.errors import SoapdError

if TYPE_CHECKING:
    from soapd.config import Config
    from soapd.pipeline.calibrate import ReferenceProvider
    from soapd.store import Store
    from soapd.store.lock import StateLock

__all__ = ["HINT", "SoapTools"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _ClassOrInstance(Generic[_P, _R]):
    """A method callable on the class (first argument None) or on an instance (the instance).

    skynetsoap's ``Soap.prune_cache`` is static; on a ``Soap`` it uses that
    ``Soap``'s state folder.
    """

    def __init__(self, func: Callable[Concatenate[Any, _P], _R]) -> None:
        self._func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: object, owner: type | None = None) -> Callable[_P, _R]:
        func = self._func

        @functools.wraps(func)
        def bound(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            return func(obj, *args, **kwargs)

        return bound


class SoapTools:
    """The debugging and cache methods of ``Soap``; ``Soap`` supplies the attributes below."""

    observation_id: int
    config: Config
    read_only: bool
    layout: Layout
    _lock: StateLock

    if TYPE_CHECKING:

        @property
        def store(self) -> Store:
            """The soapd database."""

        @property
        def state_dir(self) -> Path:
            """Where the database, frames and field-wide tables live."""

        def _catalog_service(self) -> ReferenceProvider | None: ...

    # -- debugging ----------------------------------------------------------------------

    def debug_image(
        self,
        image_path: str | Path | int,
        save_path: str | Path | None = None,
        show: bool = False,
    ) -> Path:
        """Draw the four-panel debug figure of a frame (FITS path, file name or exposure id).

        The archive metadata in the ledger (gain, read noise, time) is used as the
        daemon uses it. Saved to ``save_path`` (default
        ``<debug dir>/<stem>_debug.png``: skynetsoap's ``soap_debug/<obs id>/``);
        ``show`` also ``plt.show()`` s it. Return the PNG's path.
        """
        from soapd.output.debug import debug_image
        from soapd.output.plots import show_figure

        path, meta = frame_file(
            self.store, (self.layout.image_dir, self.config.paths.frames_dir), image_path
        )
        out = Path(save_path) if save_path else self.layout.debug_dir / f"{path.stem}_debug.png"
        fig = debug_image(
            path, out, config=self.config, catalogs=self._catalog_service(), meta=meta
        )
        if show:
            show_figure(fig)
        return out

    # -- cache --------------------------------------------------------------------------

    def _admin(self) -> CacheAdmin:
        return CacheAdmin(
            self.config,
            self.store,
            image_root=self.layout.image_dir.parent,
            result_root=self.layout.result_dir.parent,
        )

    def cache_info(self) -> dict[str, Any]:
        """Return file counts and sizes (MB) of the caches, and this observation's files.

        skynetsoap's keys (``n_images``, ``n_results``, ``image_dir``,
        ``result_dir``) are this observation's; soapd's (``frames``, ``tables``,
        ``catalogs``, ``observation``) are per folder.
        """
        info = self._admin().info(self.observation_id)
        preview = self._admin().clear(self.observation_id, confirm=False)
        info.update(
            n_images=preview["images"],
            n_results=preview["results"],
            image_dir=str(self.layout.image_dir),
            result_dir=str(self.layout.result_dir),
        )
        return info

    def clear_cache(
        self, images: bool = True, results: bool = True, confirm: bool = True
    ) -> dict[str, Any]:
        """Delete this observation's frames (``images``) and/or tables and exports (``results``).

        skynetsoap's meaning: ``confirm=True`` asks on the terminal first (without
        a terminal nothing is deleted, with a warning); ``confirm=False`` deletes
        without asking. soapd's :meth:`remove_cached` never asks. Measurements and
        the ledger stay; frames whose file is deleted are downloaded again when
        needed. Return ``images_deleted``, ``results_deleted`` and soapd's statistics.
        """
        preview = self._admin().clear(
            self.observation_id, confirm=False, frames=images, tables=results
        )
        question = (
            f"Delete {preview['files']} cached file(s) ({preview['size_mb']:.1f} MB) of "
            f"observation {self.observation_id}?"
        )
        if confirm and preview["files"] and not ask(question):
            return {**preview, "images_deleted": 0, "results_deleted": 0}
        return self.remove_cached(images=images, results=results, dry_run=False)

    def remove_cached(
        self,
        *,
        images: bool = True,
        results: bool = True,
        catalogs: bool = False,
        dry_run: bool = True,
    ) -> dict[str, Any]:
        """Soapd's spelling of :meth:`clear_cache`: never asks; ``dry_run`` only reports.

        With ``dry_run=False`` this observation's frames (``images``), field-wide
        tables and exports (``results``) and, if ``catalogs``, every catalog tile
        are deleted at once. Return the statistics (``images_deleted``,
        ``results_deleted`` when deleted).
        """
        if dry_run:
            return self._admin().clear(
                self.observation_id,
                confirm=False,
                catalogs=catalogs,
                frames=images,
                tables=results,
            )
        if self.read_only:
            raise SoapdError("Soap(read_only=True) cannot delete cached frames")
        with self._lock.holding(f"Soap cannot delete cached frames{HINT}"):
            stats = self._admin().clear(
                self.observation_id,
                confirm=True,
                catalogs=catalogs,
                frames=images,
                tables=results,
            )
        stats["images_deleted"] = stats["images"]
        stats["results_deleted"] = stats["results"]
        return stats

    @_ClassOrInstance
    def prune_cache(
        self: SoapTools | None,
        max_total_size_mb: float,
        image_dir: str | Path = "soap_images",
        result_dir: str | Path = "soap_results",
        keep_recent: int = 1,
        confirm: bool = True,
    ) -> dict[str, Any]:
        """Delete whole observations' files, oldest first, until the caches fit the budget.

        skynetsoap's static method: ``Soap.prune_cache(...)`` works on the state of
        ``$SOAPD_CONFIG`` (else ``./soapd_data``) and skynetsoap's ``image_dir`` and
        ``result_dir``; on a ``Soap`` it uses that Soap's folders. ``confirm=True``
        asks on the terminal first; ``confirm=False`` deletes without asking. The
        ``keep_recent`` most recently used observations are kept whatever their
        size. Return statistics (``observations_deleted``, ``files_deleted``,
        ``total_before_mb``, ``total_after_mb`` and soapd's).
        """
        with _admin_for(self, image_dir, result_dir) as admin:
            if confirm:
                total = admin.info()["total_size_mb"]
                question = (
                    f"Prune cached observations (now {total:.1f} MB) to {max_total_size_mb} MB?"
                )
                if total > max_total_size_mb and not ask(question):
                    return {"observations_deleted": [], "files_deleted": 0, "confirmed": False}
            stats = admin.prune(max_total_size_mb=max_total_size_mb, keep_recent=keep_recent)
        stats["observations_deleted"] = stats["deleted_observations"]
        stats["files_deleted"] = stats["deleted_files"]
        return stats

    def prune_cached(self, max_total_size_mb: float, keep_recent: int = 1) -> dict[str, Any]:
        """Soapd's spelling of :meth:`prune_cache` on this Soap's state: never asks."""
        stats: dict[str, Any] = self.prune_cache(
            max_total_size_mb, keep_recent=keep_recent, confirm=False
        )
        return stats

    @staticmethod
    def cleanup_observation(  # noqa: PLR0917 - skynetsoap's positional signature
        observation_id: int,
        image_dir: str | Path = "soap_images",
        result_dir: str | Path = "soap_results",
        images: bool = True,
        results: bool = True,
        confirm: bool = True,
    ) -> dict[str, Any]:
        """Delete one observation's cached files (skynetsoap's static method).

        As ``Soap(observation_id, image_dir=..., result_dir=...).clear_cache(images,
        results, confirm)``, on the state of ``$SOAPD_CONFIG`` (else ``./soapd_data``).
        """
        from soapd.api.soap import Soap

        with Soap(observation_id, image_dir=image_dir, result_dir=result_dir) as soap:
            return soap.clear_cache(images=images, results=results, confirm=confirm)


@contextmanager
def _admin_for(
    soap: SoapTools | None, image_dir: str | Path, result_dir: str | Path
) -> Iterator[CacheAdmin]:
    """Yield the cache administration of ``soap``, or of the default state, holding its lock."""
    if soap is not None:
        if soap.read_only:
            raise SoapdError("Soap(read_only=True) cannot prune the cache")
        with soap._lock.holding(f"Soap cannot prune the cache{HINT}"):
            yield soap._admin()
        return
    from soapd.store import Store
    from soapd.store.lock import StateLock

    cfg, _private = resolve_config(None, None)
    roots = (Path(image_dir).resolve(), Path(result_dir).resolve())
    lock = StateLock(cfg.paths.state_dir, owner="Soap.prune_cache (Python API)")
    with lock.holding(f"Soap cannot prune the cache{HINT}"):
        store = Store(cfg.paths.db_path)
        try:
            yield CacheAdmin(cfg, store, image_root=roots[0], result_root=roots[1])
        finally:
            store.close()
            lock.release()
