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

skynetsoap's surface (issue #14): every constructor argument and method of
skynetsoap 1.0.1 with its meaning (:mod:`soapd.api.compat`,
:mod:`soapd.api.soap_tools`): ``verbose``, ``config_path``, ``image_dir`` and
``result_dir`` (frames in ``soap_images/<obs id>/r<exp id>.fits`` when the state
is the API's own), ``run(images=, debug=, convert_vega_to_ab=)``, ``plot``,
``export``, ``debug_image(..., show=)``, the cache methods with ``confirm``;
warnings for an unknown observation and for forced positions no frame covered.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from soapd.api.compat import SoapCompat, resolve_layout, set_verbosity, warn_not_covered
from soapd.api.compat_run import (
    check_backends,
    run_config,
    select_images,
    split_positions,
    warn_no_frames,
    warn_unknown_observation,
)
from soapd.api.results import PhotometryResult, TimeLike, date_bounds, to_mjd
from soapd.api.soap_tools import SoapTools
from soapd.api.state import SoapState, writer
from soapd.api.support import (
    exp_in_range,
    forced_targets,
    progress_iter,
    resolve_config,
    row_in_range,
    stored_table,
)
from soapd.config import Config, Token
from soapd.errors import SkynetError, SoapdError
from soapd.frames import Processor
from soapd.store.lock import StateLock

if TYPE_CHECKING:
    import httpx
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    from soapd.models import FrameRow
    from soapd.pipeline.calibrate import ReferenceProvider
    from soapd.skynet.source import ExposureSource
    from soapd.store import Store

__all__ = ["Processor", "RunReport", "Soap"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunReport:
    """What the last :meth:`Soap.run` did, frame by frame (frame ids)."""

    processed: tuple[int, ...] = ()
    reused: tuple[int, ...] = ()
    skipped: tuple[tuple[int, str], ...] = ()


class Soap(SoapCompat, SoapTools, SoapState):
    """One Skynet observation: download, photometry, results; shares the daemon's store.

    Parameters
    ----------
    observation_id
        The Skynet observation id.
    config
        A :class:`~soapd.config.Config` (or skynetsoap's ``SOAPConfig``), a TOML
        path, or None (``config_path``, else $SOAPD_CONFIG, else the built-in
        defaults). Point it at the daemon's config (one that names
        ``paths.state_dir``) to share its frames, tables and results; otherwise
        the state is the API's own, in ``./soapd_data``.
    config_path
        skynetsoap's name for a TOML path (used when ``config`` is None).
    calibrator
        skynetsoap's calibration backend. soapd takes a reference-catalog
        provider here (as ``catalogs``); skynetsoap's ``calibrate_image`` objects
        are refused (TypeError).
    solver
        skynetsoap's astrometry backend: soapd uses the archive's WCS, so anything
        but None is refused (TypeError).
    verbose
        True: soapd's INFO messages on stderr (a level name sets that level).
    image_dir, result_dir
        skynetsoap's folders; the observation id is appended. Default: with the
        API's own state ``soap_images`` and ``soap_results`` in the working
        folder, else the daemon's frame folder and ``<state_dir>/results``.
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

    def __init__(  # noqa: PLR0917 - skynetsoap's positional signature
        self,
        observation_id: int,
        config: Config | str | Path | None = None,
        config_path: str | Path | None = None,
        calibrator: ReferenceProvider | None = None,
        solver: object | None = None,
        verbose: bool | str = False,
        image_dir: str | Path | None = None,
        result_dir: str | Path | None = None,
        *,
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
        set_verbosity(verbose)
        self.observation_id = int(observation_id)
        self.config, private = resolve_config(
            config if config is not None else config_path, state_dir
        )
        self.layout = resolve_layout(
            self.observation_id,
            self.config,
            private=private,
            image_dir=image_dir,
            result_dir=result_dir,
        )
        self.image_dir = self.layout.image_dir
        self.result_dir = self.layout.result_dir
        catalogs = catalogs if catalogs is not None else check_backends(calibrator, solver)
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
        self._result: PhotometryResult | None = None

    def __repr__(self) -> str:
        ro = ", read_only=True" if self.read_only else ""
        return f"Soap(observation_id={self.observation_id}, state_dir={self.state_dir!s}{ro})"

    # -- download -----------------------------------------------------------------------

    @writer
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
        token is missing or refused. When the archive lists no exposure, warn
        (:class:`~soapd.api.compat.UnknownObservationWarning`: unknown observation,
        or nothing archived yet) and return ``[]``. New files go to ``image_dir``.
        """
        if self.read_only:
            raise SoapdError("Soap(read_only=True) cannot download; create a Soap without it")
        lower, upper = date_bounds(after=after, before=before, days_ago=days_ago)
        client = self._client()
        listed = list(client.iter_archived(self.observation_id))
        if not listed:
            warn_unknown_observation(client, self.observation_id)
        exposures = [e for e in listed if exp_in_range(e, lower, upper)]
        self.store.record_seen(exposures)
        paths = [
            (to_mjd(exp.meta.mid_time_utc) if exp.meta.mid_time_utc else math.inf, path)
            for exp, path in self._fetch_each(client, exposures)
        ]
        ordered = [p for _, p in sorted(paths, key=lambda item: item[0])]
        return list(dict.fromkeys(ordered))  # exposures with identical bytes share one file

    # -- processing ---------------------------------------------------------------------

    @writer
    def run(
        self,
        forced_positions: Sequence[SkyCoord] | SkyCoord | None = None,
        after: TimeLike | None = None,
        before: TimeLike | None = None,
        days_ago: float | None = None,
        *,
        download: bool | None = None,
        images: Sequence[str | Path] | None = None,
        debug: bool | None = None,
        convert_vega_to_ab: bool | None = None,
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
        images
            skynetsoap's explicit list of FITS files: only the observation's frames
            stored at those paths are measured (others are reported). A list of
            paths as the first argument means the same.
        debug
            Draw each processed frame's debug figure into the debug folder
            (default: ``debug.enabled`` of a ``SOAPConfig``).
        convert_vega_to_ab
            Calibrate Vega bands onto AB for this run (default:
            ``calibration.convert_to_ab``).

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
        forced_positions, images = split_positions(forced_positions, images)
        config = run_config(self.config, convert_vega_to_ab)
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
        frames = self._frames()
        if not frames and not can_download:
            warn_no_frames(self.observation_id, self.state_dir, downloaded=can_download)
        for row in (f for f in select_images(frames, images) if row_in_range(f, lower, upper)):
            table = stored_table(row, stored.get(row.frame_id), targets, config.fingerprint())
            if table is None:
                todo.append(row)
            else:
                tables.append(table)
                reused.append(row.frame_id)
        if can_download:
            todo = self._refetch(todo)
        for row in progress_iter(todo, "photometry"):
            table, why = self._process(row, targets, config)
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
        self._result = PhotometryResult.from_tables(tables).filter_by_date(
            None if lower == -math.inf else lower, None if upper == math.inf else upper
        )
        warn_not_covered(self._result, targets)
        if (
            debug
            if debug is not None
            else getattr(getattr(config, "debug", None), "enabled", False)
        ):
            self._debug_frames([*reused, *processed])
        return self._result

    def _debug_frames(self, frame_ids: Sequence[int]) -> None:
        """Draw the debug figure of each frame (skynetsoap's ``debug.enabled``)."""
        for frame_id in frame_ids:
            row = self.store.frame(frame_id)
            if row is not None and row.path is not None and row.path.is_file():
                try:
                    self.debug_image(row.path)
                except SoapdError as exc:
                    logger.warning("frame %d: no debug figure: %s", frame_id, exc)
