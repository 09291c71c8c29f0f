"""``Soap``: the Python API for people coming from skynetsoap, sharing the daemon's state.

``Soap(observation_id)`` downloads one Skynet observation's frames and runs the
photometry pipeline on them, like skynetsoap's ``Soap``, but through the same
ledger, frame folder, field-wide tables and catalog cache as the daemon
(``soapd run``): what one has downloaded or processed, the other reuses.

* :meth:`Soap.download` records the observation's archived exposures in the
  ledger, skips those already downloaded (identity: the exposure id, not a
  count of files; skynetsoap B19), downloads the rest one by one (each file
  written atomically and recorded in its own transaction; skynetsoap B1), and
  logs a failing exposure and carries on with the others.
* :meth:`Soap.run` processes each frame with :func:`soapd.frames.run_task`
  (``pipeline.process_frame`` plus the Parquet field-wide table) in this
  process, and **reuses** frames already processed with the same config
  fingerprint whose table holds the requested forced positions. Its date
  arguments are honoured (skynetsoap B13).

Every ledger step (download, start, outcome, record) is a function of
:mod:`soapd.frames`, the same the daemon calls, so a failure of each kind ends
the same way here and there (tries counted against ``service.max_tries``, none
when Skynet is down). This module holds glue only: no SQL, no pixel work.

One writer: while it downloads or processes, ``Soap`` holds the state folder's
lock (:class:`soapd.store.lock.StateLock`). While a daemon (``soapd run``) holds
it, those calls **refuse** with :class:`~soapd.store.lock.StateLocked`, whose
message names the daemon's pid; nothing is written. ``Soap(...,
read_only=True)`` opens the database with ``mode=ro`` and always works beside a
daemon: :meth:`Soap.run` then returns the frames already processed and skips
the others.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Self, TypeVar

from soapd.api.results import PhotometryResult, TimeLike, date_bounds, to_mjd
from soapd.api.soap_tools import HINT, SoapTools
from soapd.api.support import (
    exp_in_range,
    fetch_file,
    forced_targets,
    frame_row_mjd,
    progress_iter,
    resolve_config,
    row_in_range,
    stored_table,
    why_skipped,
)
from soapd.config import Config, Token, read_token
from soapd.errors import (
    FrameUnreadable,
    SkynetAuthError,
    SkynetError,
    SkynetUnavailable,
    SoapdError,
    StoreError,
)
from soapd.frames import Processor, process_one, start_task
from soapd.store.lock import StateLock

if TYPE_CHECKING:
    import httpx
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    from soapd.models import FrameRow, Target
    from soapd.pipeline.calibrate import ReferenceProvider
    from soapd.skynet.records import Exposure
    from soapd.skynet.source import ExposureSource
    from soapd.store import Store

__all__ = ["Processor", "RunReport", "Soap"]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _writer(method: Callable[Concatenate[Soap, _P], _R]) -> Callable[Concatenate[Soap, _P], _R]:
    """Run ``method`` holding the state folder's lock, unless the Soap is read-only."""

    @functools.wraps(method)
    def wrapped(self: Soap, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self.read_only:
            return method(self, *args, **kwargs)
        with self._lock.holding(f"Soap cannot {method.__name__}(){HINT}"):
            return method(self, *args, **kwargs)

    return wrapped


@dataclass(frozen=True, slots=True)
class RunReport:
    """What the last :meth:`Soap.run` did, frame by frame (frame ids)."""

    processed: tuple[int, ...] = ()
    reused: tuple[int, ...] = ()
    skipped: tuple[tuple[int, str], ...] = ()


class Soap(SoapTools):
    """One Skynet observation: download, photometry, results; shares the daemon's store.

    Parameters
    ----------
    observation_id
        The Skynet observation id.
    config
        A :class:`~soapd.config.Config`, a TOML path, or None ($SOAPD_CONFIG, else
        the built-in defaults with state in ``./soapd_data``). Point it at the
        daemon's config to share its frames, tables and results.
    state_dir
        Overrides ``paths.state_dir`` (database, frames, field-wide tables).
    token
        The Skynet API token; default: $CREDENTIALS_DIRECTORY/skynet-token,
        $SOAPD_SKYNET_TOKEN, $SKYNET_API_TOKEN or ``skynet.token_file``.
    source
        An archive client to use instead of building a ``SkynetClient`` (tests,
        other archives); ``transport`` is handed to the ``SkynetClient`` instead.
    catalogs
        The reference-catalog service; default: ``CatalogService`` over the
        config's catalog cache (None when calibration is off).
    processor
        Runs one frame (default :func:`soapd.frames.run_task`).
    read_only
        Open the database read-only (``mode=ro``) and never download or process:
        :meth:`run` returns the frames already processed (by this API or a running
        daemon). Safe beside ``soapd run``.
    """

    def __init__(
        self,
        observation_id: int,
        *,
        config: Config | str | Path | None = None,
        state_dir: str | Path | None = None,
        token: str | Token | None = None,
        source: ExposureSource | None = None,
        transport: httpx.BaseTransport | None = None,
        catalogs: ReferenceProvider | None = None,
        processor: Processor | None = None,
        read_only: bool = False,
    ) -> None:
        if isinstance(observation_id, bool) or int(observation_id) <= 0:
            raise ValueError(f"observation_id must be a positive integer, got {observation_id!r}")
        self.observation_id = int(observation_id)
        self.config = resolve_config(config, state_dir)
        self._token = Token(token) if isinstance(token, str) else token
        self._source = source
        self._owns_source = False
        self._transport = transport
        self._catalogs = catalogs
        self._catalogs_built = catalogs is not None
        self._processor = processor
        self._store: Store | None = None
        self.read_only = read_only
        self._lock = StateLock(self.config.paths.state_dir, owner="Soap (Python API)")
        self.last_run = RunReport()

    def __repr__(self) -> str:
        ro = ", read_only=True" if self.read_only else ""
        return f"Soap(observation_id={self.observation_id}, state_dir={self.state_dir!s}{ro})"

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

    # -- download -----------------------------------------------------------------------

    @_writer
    def download(
        self,
        after: TimeLike | None = None,
        before: TimeLike | None = None,
        days_ago: float | None = None,
    ) -> list[Path]:
        """Download the observation's archived frames in the date range; return their paths.

        Exposures already downloaded (by this API or the daemon) are not fetched
        again. A failing exposure is logged and counted in the ledger as the daemon
        counts it (failed after ``service.max_tries``; a later call tries it again)
        and the others continue; while Skynet is unavailable nothing is counted and
        the remaining downloads wait for a later call. Raise SkynetAuthError if the
        token is missing or refused, SkynetNotFound if the observation does not exist.
        """
        if self.read_only:
            raise SoapdError("Soap(read_only=True) cannot download; create a Soap without it")
        lower, upper = date_bounds(after=after, before=before, days_ago=days_ago)
        client = self._client()
        exposures = [
            e for e in client.iter_archived(self.observation_id) if exp_in_range(e, lower, upper)
        ]
        self.store.record_seen(exposures)
        paths = [
            (to_mjd(exp.meta.mid_time_utc) if exp.meta.mid_time_utc else math.inf, path)
            for exp, path in self._fetch_each(client, exposures)
        ]
        ordered = [p for _, p in sorted(paths, key=lambda item: item[0])]
        return list(dict.fromkeys(ordered))  # exposures with identical bytes share one file

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
                got = fetch_file(self.store, client, exp, config=self.config)
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

    # -- processing ---------------------------------------------------------------------

    @_writer
    def run(
        self,
        forced_positions: Sequence[SkyCoord] | SkyCoord | None = None,
        after: TimeLike | None = None,
        before: TimeLike | None = None,
        days_ago: float | None = None,
        *,
        download: bool | None = None,
    ) -> PhotometryResult:
        """Photometry of every frame of the observation in the date range.

        Parameters
        ----------
        forced_positions
            Sky positions measured on every frame (forced photometry), named
            ``"RA+DEC"`` in degrees in the ``target_name`` column.
        after, before, days_ago
            Mid-exposure UTC range of the frames (as :meth:`download`).
        download
            True: download first; False: use only frames already downloaded; None
            (default): download when a token or archive client is available.

        Returns
        -------
        PhotometryResult
            The field-wide rows of every processed frame, sorted by time. Frames
            processed before with the same config (by this API or the daemon) are
            read back from their stored table, not processed again.

        Raises
        ------
        StateLocked
            A daemon (or another ``Soap``) processes this state folder now; nothing
            was written. ``Soap(..., read_only=True)`` reads its results instead.
        """
        can_download = not self.read_only and (
            bool(download) or (download is None and (self._source is not None or self._has_token()))
        )
        if can_download:
            try:
                self.download(after, before, days_ago)
            except SkynetError as exc:
                if download:
                    raise
                can_download = False
                logger.warning("Skynet unavailable (%s); using frames already downloaded", exc)
        lower, upper = date_bounds(after=after, before=before, days_ago=days_ago)
        targets = forced_targets(forced_positions)
        tables: list[Table] = []
        processed: list[int] = []
        reused: list[int] = []
        skipped: list[tuple[int, str]] = []
        stored = {r["frame_id"]: r for r in self.store.frames_with_tables()}
        todo: list[FrameRow] = []
        for row in (f for f in self._frames() if row_in_range(f, lower, upper)):
            table = stored_table(row, stored.get(row.frame_id), targets, self.config.fingerprint())
            if table is None:
                todo.append(row)
            else:
                tables.append(table)
                reused.append(row.frame_id)
        if can_download:
            todo = self._refetch(todo)
        for row in progress_iter(todo, "photometry"):
            table, why = self._process(row, targets)
            if table is None:
                skipped.append((row.frame_id, why))
                logger.warning("frame %d skipped: %s", row.frame_id, why)
                continue
            tables.append(table)
            processed.append(row.frame_id)
        self.last_run = RunReport(tuple(processed), tuple(reused), tuple(skipped))
        logger.info(
            "observation %d: %d frame(s) processed, %d reused, %d skipped",
            self.observation_id,
            len(processed),
            len(reused),
            len(skipped),
        )
        return PhotometryResult.from_tables(tables).filter_by_date(
            None if lower == -math.inf else lower, None if upper == math.inf else upper
        )

    def _process(self, row: FrameRow, targets: Sequence[Target]) -> tuple[Table | None, str]:
        """Process one frame through the ledger as the daemon does; return (table, why not)."""
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
            config=self.config,
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
