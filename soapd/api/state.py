"""The shared state of :class:`~soapd.api.soap.Soap`: database, archive client, ledger steps.

:class:`SoapState` holds what ``Soap`` shares with the daemon (the store, the
archive client, the catalog service) and the ledger steps of downloading and
processing one frame, each a function of :mod:`soapd.frames` or
:mod:`soapd.api.support`, the same the daemon calls. ``writer`` makes a method
hold the state folder's lock (:class:`soapd.store.lock.StateLock`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Self, TypeVar

from soapd.api.support import fetch_file, frame_row_mjd, progress_iter, why_skipped
from soapd.config import Config, Token, read_token
from soapd.errors import (
    FrameUnreadable,
    SkynetAuthError,
    SkynetUnavailable,
    SoapdError,
    StoreError,
)
from soapd.frames import Processor, process_one, start_task

if TYPE_CHECKING:
    import httpx
    from astropy.table import Table

    from soapd.models import FrameRow, Target
    from soapd.pipeline.calibrate import ReferenceProvider
    from soapd.skynet.records import Exposure
    from soapd.skynet.source import ExposureSource
    from soapd.store import Store
    from soapd.store.lock import StateLock

__all__ = ["HINT", "SoapState", "writer"]

logger = logging.getLogger(__name__)

#: Added to a refusal beside a running daemon.
HINT = " (Soap(..., read_only=True) reads the results meanwhile)"

_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="SoapState")


def writer(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Run ``method`` holding the state folder's lock, unless the Soap is read-only."""

    @functools.wraps(method)
    def wrapped(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self.read_only:
            return method(self, *args, **kwargs)
        with self._lock.holding(f"Soap cannot {method.__name__}(){HINT}"):
            return method(self, *args, **kwargs)

    return wrapped


class SoapState:
    """The store, archive client and ledger steps of ``Soap`` (which sets the attributes)."""

    observation_id: int
    config: Config
    read_only: bool
    #: Where this Soap downloads frames (skynetsoap: ``soap_images/<obs id>/``).
    image_dir: Path
    _lock: StateLock
    _token: Token | None
    _source: ExposureSource | None
    _owns_source: bool
    _transport: httpx.BaseTransport | None
    _catalogs: ReferenceProvider | None
    _catalogs_built: bool
    _processor: Processor | None
    _store: Store | None

    # -- shared state -------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        """Where the database, frames and field-wide tables live."""
        return self.config.paths.state_dir

    @property
    def store(self) -> Store:
        """The soapd database (opened on first use: migrated, or read-only with ``mode=ro``)."""
        if self._store is None:
            from soapd.store import Store

            self._store = Store(self.config.paths.db_path, read_only=self.read_only)
        return self._store

    def close(self) -> None:
        """Close the database and the archive client. Safe to call twice."""
        self._lock.release()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._source is not None and self._owns_source:
            self._source.close()
            self._source = None
            self._owns_source = False

    def __del__(self) -> None:
        """Close what a script never closed (skynetsoap's ``Soap`` has no ``close``)."""
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client(self) -> ExposureSource:
        """Return the archive client, building a SkynetClient from the token if needed."""
        if self._source is None:
            from soapd.skynet.client import SkynetClient

            token = self._token or read_token(self.config.skynet)
            if not token:
                raise SkynetAuthError(
                    "no Skynet API token: pass Soap(token=...) or set $SOAPD_SKYNET_TOKEN "
                    "(or $SKYNET_API_TOKEN, or skynet.token_file in the config)"
                )
            self._source = SkynetClient.from_config(
                self.config.skynet, token, transport=self._transport, frame=self.config.frame
            )
            self._owns_source = True
        return self._source

    def _catalog_service(self) -> ReferenceProvider | None:
        if not self._catalogs_built:
            self._catalogs_built = True
            from soapd.catalogs import CatalogService

            self._catalogs = CatalogService.if_enabled(self.config)
        return self._catalogs

    def _fetch_each(
        self, client: ExposureSource, exposures: Sequence[Exposure]
    ) -> list[tuple[Exposure, Path]]:
        """Fetch each exposure's file (:func:`fetch_file`); return those on disk with their path.

        Failures are logged and the others continue; while Skynet is unavailable
        the remaining exposures wait for a later call.
        """
        out: list[tuple[Exposure, Path]] = []
        errors = 0
        for done, exp in enumerate(progress_iter(exposures, "download")):
            try:
                got = fetch_file(
                    self.store, client, exp, config=self.config, frames_dir=self.image_dir
                )
            except SkynetUnavailable as exc:
                logger.warning(
                    "Skynet is unavailable (%s); %d exposure(s) not downloaded, call download() "
                    "again later",
                    exc,
                    len(exposures) - done,
                )
                break
            except (StoreError, OSError) as exc:
                error = str(exc)
            else:
                error = got.error
                if not error and got.path is not None:
                    out.append((exp, got.path))
            if error:
                errors += 1
                logger.warning("exposure %d: download failed: %s", exp.exp_id, error)
        if errors:
            logger.warning(
                "observation %d: %d of %d exposure(s) failed to download; call download() "
                "again to retry them",
                self.observation_id,
                errors,
                len(exposures),
            )
        return out

    def _process(
        self, row: FrameRow, targets: Sequence[Target], config: Config | None = None
    ) -> tuple[Table | None, str]:
        """Process one frame through the ledger as the daemon does; return (table, why not).

        ``config``: this run's settings (default: the Soap's).
        """
        if self.read_only:
            return None, f"{row.state}, not processed with this config (read-only Soap)"
        if row.state == "processed" and row.path is not None and row.path.exists():
            self.store.requeue(frame_ids=[row.frame_id], states=(row.state,))
        elif row.state != "downloaded":
            return None, why_skipped(row)
        try:
            task = start_task(self.store, row.frame_id, (*self.store.active_targets(), *targets))
        except StoreError as exc:  # the daemon took it in the meantime
            return None, f"taken by another process ({exc}); run again later"
        except FrameUnreadable as exc:  # its file is gone: failed, as in the daemon
            return None, str(exc)
        out, _state = process_one(
            self.store,
            task,
            config=config or self.config,
            catalogs=self._catalog_service(),
            processor=self._processor,
        )
        if out.outcome == "ok" and out.result is not None:
            return out.result.table, ""
        return None, out.error

    def _refetch(self, rows: list[FrameRow]) -> list[FrameRow]:
        """Download again processed frames whose file was pruned; return the rows refreshed."""
        from soapd.skynet.records import Exposure

        gone = [r for r in rows if r.state == "processed" and r.path is None and r.exp_id]
        if not gone:
            return rows
        self.store.requeue(frame_ids=[r.frame_id for r in gone], states=("processed",))
        exposures = [
            Exposure(exp_id=r.exp_id, obs_id=r.obs_id, state="archived", meta=r.meta)
            for r in gone
            if r.exp_id is not None
        ]
        self._fetch_each(self._client(), exposures)
        return [self.store.frame(r.frame_id) or r for r in rows]

    def _has_token(self) -> bool:
        try:
            return bool(self._token or read_token(self.config.skynet))
        except SoapdError:
            return False

    def _frames(self) -> list[FrameRow]:
        """Return every ledger frame of this observation (all states)."""
        rows = self.store.frames_of(obs_id=self.observation_id)
        return sorted(rows, key=lambda r: (frame_row_mjd(r), r.frame_id))
