"""The dask worker's side of a frame, and the catalog slice shipped with it (``executor = "dask"``).

:func:`run_remote` is what :class:`soapd.daemon.dask_pool.DaskPool` submits for each
frame: it says "started" (a dask event), then runs :func:`soapd.frames.run_task`, on
the frame's shared path or on its bytes written to a temporary folder.
:func:`catalog_slice` builds, on the driver, what the worker needs to calibrate the
frame without the driver's catalog files or cache: a :class:`CatalogSlice`.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soapd.config import Config
from soapd.frames import FrameTask, TaskOutcome, run_task

if TYPE_CHECKING:
    from astropy.table import Table

    from soapd.catalogs.cache import Tile
    from soapd.catalogs.service import CatalogService
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = ["SLICE_MARGIN_DEG", "START_TOPIC", "CatalogSlice", "catalog_slice", "run_remote"]

#: dask event topic on which a worker says it started a frame ({"key": task key}).
START_TOPIC = "soapd-frame-start"
#: Degrees added to the frame's radius when the tiles shipped with a task are chosen.
SLICE_MARGIN_DEG = 0.1


# ------------------------------------------------------------------------------ catalogs
@dataclass(slots=True)
class CatalogSlice:
    """A catalog service and the tables a worker needs for one frame (picklable).

    ``CatalogService`` pickles without its in-memory tables; this carries them:
    ``tiles`` the cached tiles around the frame, ``local`` the local catalog files'
    tables. :meth:`service_on_worker` puts them back into the service.
    """

    service: CatalogService
    tiles: dict[tuple[str, Tile], Table] = field(default_factory=dict)
    local: dict[str, list[Table]] | None = None

    def service_on_worker(self) -> CatalogService:
        """Return the service with the shipped tables in its memory (call on the worker)."""
        svc = self.service
        svc._tiles.update(self.tiles)
        if self.local is not None:
            svc._local = dict(self.local)
        return svc


def _header_cone(path: Path, hdu: int) -> tuple[float, float, float] | None:
    """Return (RA, Dec, radius; deg) of the frame's image from its FITS header, or None."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from soapd.catalogs.cache import angular_sep_deg

    try:
        with fits.open(path, memmap=False) as hdul:
            if hdu >= 0:
                header = hdul[hdu].header
            else:
                header = next(h.header for h in hdul if h.header.get("NAXIS", 0) == 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header).celestial
        if not wcs.has_celestial:
            return None
        nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
        xs = [0.0, nx - 1.0, 0.0, nx - 1.0, (nx - 1) / 2.0]
        ys = [0.0, 0.0, ny - 1.0, ny - 1.0, (ny - 1) / 2.0]
        ra, dec = wcs.all_pix2world(xs, ys, 0)
        radius = float(max(angular_sep_deg(ra[4], dec[4], ra[:4], dec[:4])))
    except (OSError, KeyError, ValueError, StopIteration, IndexError):
        return None
    if not all(math.isfinite(v) for v in (ra[4], dec[4], radius)):
        return None
    return float(ra[4]) % 360.0, float(dec[4]), radius


def catalog_slice(
    catalogs: ReferenceProvider | None, task: FrameTask, config: Config
) -> ReferenceProvider | CatalogSlice | None:
    """Return what goes with ``task`` for its calibration (a :class:`CatalogSlice`).

    Providers other than a ``CatalogService`` (tests' fakes) go as they are. Only
    tiles the driver has cached are shipped, so the worker makes the same choice
    between tiles and local files as a worker on the driver's host.
    """
    from soapd.catalogs.registry import spec
    from soapd.catalogs.service import CatalogService
    from soapd.filters import normalise_filter

    if not isinstance(catalogs, CatalogService):
        return catalogs
    catalogs._local_tables("")  # read the local files once, on the driver
    shipped = CatalogSlice(service=catalogs, local=dict(catalogs._local or {}))
    cone = _header_cone(task.path, config.frame.hdu)
    if cone is None:
        return shipped
    ra, dec, radius = cone
    bands = {normalise_filter(task.meta.filter or None), config.calibration.unfiltered_band}
    names = {name for band in bands for name in catalogs.chain(band)}
    from soapd.catalogs.cache import tiles_for_cone

    for name in sorted(names):
        s = spec(name)
        if s.vizier_id is None:
            continue
        key = catalogs._key(s)
        for tile in tiles_for_cone(ra, dec, radius + SLICE_MARGIN_DEG, catalogs.config.tile_deg):
            table = catalogs._tiles.get((name, tile))
            if table is None:
                table = catalogs.cache.get(name, tile, key)
                if table is not None:  # keep it in memory for the next frames of the field
                    if len(catalogs._tiles) > 256:
                        catalogs._tiles.clear()
                    catalogs._tiles[(name, tile)] = table
            if table is not None:
                shipped.tiles[(name, tile)] = table
    return shipped


# ------------------------------------------------------------------------- worker side
def run_remote(
    key: str,
    task: FrameTask,
    config: Config,
    catalogs: ReferenceProvider | CatalogSlice | None,
    data: bytes | None,
) -> TaskOutcome:
    """Run one frame on a dask worker (:func:`soapd.frames.run_task`); return its outcome.

    Says "started" (a dask event on :data:`START_TOPIC`) first. With ``data`` (the
    frame's bytes) the frame is written to a temporary folder and run there, with
    ``paths.state_dir`` in that folder too; the result names the original file and
    has no table path (the driver writes the table).
    """
    try:
        from distributed import get_worker

        get_worker().log_event(START_TOPIC, {"key": key})
    except (ImportError, ValueError):  # not on a dask worker (tests call this directly)
        pass
    provider = catalogs.service_on_worker() if isinstance(catalogs, CatalogSlice) else catalogs
    if data is None:
        return run_task(task, config, provider)
    with tempfile.TemporaryDirectory(prefix="soapd-frame-") as tmp:
        local = Path(tmp) / task.path.name
        local.write_bytes(data)
        cfg = replace(config, paths=replace(config.paths, state_dir=Path(tmp) / "state"))
        out = run_task(replace(task, path=local), cfg, provider)
    if out.result is None:
        return replace(out, error=out.error.replace(str(local), str(task.path)))
    return replace(out, result=_renamed(out.result, local, task.path), table_path=None)


def _renamed(result: Any, local: Path, original: Path) -> Any:
    """Return ``result`` with the temporary file name ``local`` replaced by ``original``."""
    summary = replace(
        result.summary, image_file=result.summary.image_file.replace(str(local), str(original))
    )
    table = result.table
    for name, value in list(table.meta.items()):
        if isinstance(value, str) and str(local) in value:
            table.meta[name] = value.replace(str(local), str(original))
    for name in table.colnames:
        col = table[name]
        if col.dtype.kind in "US" and len(col) and str(local) in str(col[0]):
            table[name] = [str(v).replace(str(local), str(original)) for v in col]
    return replace(result, summary=summary, table=table)
