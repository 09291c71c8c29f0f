"""Result tables for Python users: :class:`PhotometryResult` and :class:`TargetLightcurve`.

A :class:`PhotometryResult` wraps an astropy ``Table`` of result rows (the
columns of :data:`soapd.columns.RESULT_COLUMNS`: one row per source or
forced position per aperture per frame) and offers skynetsoap's selection,
extraction and export methods with its bugs fixed:

* dates are compared as **mid-exposure UTC** (the ``mjd`` column); naive and
  aware datetimes, ISO strings, astropy ``Time`` and MJD floats all work, and
  naive values are taken as UTC (skynetsoap B1: a ``TypeError`` there);
* bands are compared after :func:`soapd.filters.normalise_filter`, so
  ``"rprime"``, ``"r'"`` and ``"r"`` select the same rows;
* :func:`extract_target` keeps one row per frame, and turns forced rows below
  the S/N threshold into **upper limits** (``is_detection`` False, the
  ``UPPER_LIMIT`` flag set, no magnitude; the limit is in ``limiting_mag``)
  instead of dropping them or giving them a magnitude (skynetsoap §11).

Every method returns a new object; the wrapped table is never modified. This
module does no pixel work and no I/O beyond the ``to_*`` exports and ``plot``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from astropy.table import Table, vstack

from soapd.api.result_output import ResultOutput, as_datetime
from soapd.api.select import date_bounds, extract_target, row_bands, row_mjd
from soapd.columns import column_or, covered_mask
from soapd.filters import AB_MINUS_VEGA, mag_system, normalise_filter
from soapd.timeutil import TimeLike, to_mjd

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord

    from soapd.models import FrameResult

__all__ = [
    "PhotometryResult",
    "PhotometryTarget",
    "TargetLightcurve",
    "TimeLike",
    "date_bounds",
    "extract_target",
    "to_mjd",
]

logger = logging.getLogger(__name__)

#: Columns holding magnitudes on the calibrated scale (shifted by an AB/Vega conversion).
_CALIBRATED_MAG_COLUMNS = (
    "calibrated_mag",
    "zeropoint",
    "limiting_mag",
    "limiting_mag_analytic",
    "limiting_mag_robust",
)


class PhotometryResult(ResultOutput):
    """Photometry rows of one or more frames, with skynetsoap's selection methods.

    Parameters
    ----------
    table
        An astropy ``Table`` with the columns of
        :data:`soapd.columns.RESULT_COLUMNS` (a subset is fine for most
        methods). Kept as given; every method returns a new object.
    """

    def __init__(self, table: Table | None = None) -> None:
        self._table: Table = Table() if table is None else table

    @classmethod
    def from_frames(cls, frames: Sequence[FrameResult]) -> Self:
        """Return the rows of several ``FrameResult``s, stacked and sorted by time."""
        return cls.from_tables([f.table for f in frames])

    @classmethod
    def from_tables(cls, tables: Sequence[Table]) -> Self:
        """Return several result tables stacked (columns missing in one are masked)."""
        tables = [t for t in tables if len(t)]
        if not tables:
            return cls(Table())
        stacked = vstack(list(tables), join_type="outer", metadata_conflicts="silent")
        return cls(stacked).sort_by_time()

    def _new(self, table: Table) -> Self:
        """Return an object of the same kind around ``table`` (subclasses add their fields)."""
        return type(self)(table)

    @property
    def table(self) -> Table:
        """The wrapped astropy Table (the object itself: copy it before changing it)."""
        return self._table

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        n_img = len(set(column_or(self._table, "image_file", "").astype(str))) if len(self) else 0
        bands = sorted({str(b) for b in row_bands(self._table)}) if len(self) else []
        return f"<{type(self).__name__}: {len(self)} rows, {n_img} frames, bands {bands}>"

    # -- selections -------------------------------------------------------------------

    def filter_by_date(
        self,
        after: TimeLike | None = None,
        before: TimeLike | None = None,
        days_ago: float | None = None,
        *,
        now: datetime | None = None,
    ) -> Self:
        """Return the rows whose mid-exposure time lies in [after, before] (UTC).

        ``after``/``before`` take ISO text, datetimes (naive = UTC), astropy Time or
        MJD numbers; ``days_ago`` keeps the last N days before ``now`` (default: the
        current time). Rows without a time are dropped when any bound is given.
        """
        lower, upper = date_bounds(after=after, before=before, days_ago=days_ago, now=now)
        if not len(self) or (lower == -math.inf and upper == math.inf):
            return self._new(self._table.copy())
        mjd = row_mjd(self._table)
        keep = (mjd >= lower) & (mjd <= upper)
        return self._new(self._table[keep])

    def filter_by_band(self, band: str) -> Self:
        """Return the rows taken through ``band`` (any alias: ``rprime``, ``r'``, ``r``)."""
        want = normalise_filter(band)
        if not len(self):
            return self._new(self._table.copy())
        return self._new(self._table[row_bands(self._table) == want])

    def filter_by_aperture(self, aperture_id: int) -> Self:
        """Return the rows measured with aperture number ``aperture_id`` (0 = first radius)."""
        if not len(self):
            return self._new(self._table.copy())
        ids = column_or(self._table, "aperture_id", 0).astype(np.int64)
        return self._new(self._table[ids == int(aperture_id)])

    def sort_by_time(self) -> Self:
        """Return the rows sorted by mid-exposure time (stable for equal times)."""
        if not len(self):
            return self._new(self._table.copy())
        order = np.argsort(row_mjd(self._table), kind="stable")
        return self._new(self._table[order])

    def get_best_aperture(self, criterion: Literal["snr", "flux"] = "snr") -> Self:
        """Return one row per source per frame: the aperture with the highest S/N or flux.

        A source is identified by its frame (``image_file``, ``mjd``), whether it is a
        forced row, its ``target_name`` and its pixel position (to 1e-3 px; the sky
        position when the pixel position is unknown). NaN values of the criterion
        count as the lowest.
        """
        if criterion not in ("snr", "flux"):
            raise ValueError(f"criterion must be 'snr' or 'flux', got {criterion!r}")
        t = self._table
        if not len(t):
            return self._new(t.copy())
        value = np.nan_to_num(column_or(t, criterion, np.nan).astype(float), nan=-np.inf)
        x = column_or(t, "x_pix", np.nan).astype(float)
        y = column_or(t, "y_pix", np.nan).astype(float)
        ra = column_or(t, "ra", np.nan).astype(float)
        dec = column_or(t, "dec", np.nan).astype(float)
        use_sky = ~(np.isfinite(x) & np.isfinite(y))
        px = np.round(np.where(use_sky, ra * 3600.0, x), 3)
        py = np.round(np.where(use_sky, dec * 3600.0, y), 3)
        keys = zip(
            column_or(t, "image_file", "").astype(str),
            row_mjd(t),
            column_or(t, "is_forced", default=False).astype(bool),
            column_or(t, "target_name", "").astype(str),
            px,
            py,
            strict=True,
        )
        best: dict[tuple[Any, ...], int] = {}
        for i, key in enumerate(keys):
            j = best.get(key)
            if j is None or value[i] > value[j]:
                best[key] = i
        return self._new(t[np.array(sorted(best.values()), dtype=np.int64)])

    def extract_target(
        self,
        coord: SkyCoord,
        radius_arcsec: float = 3.0,
        forced_photometry: bool = False,
        snr_threshold: float = 3.0,
        *,
        name: str | None = None,
        trigger_time_utc: TimeLike | None = None,
    ) -> TargetLightcurve:
        """Return the lightcurve of ``coord`` (see :func:`extract_target`)."""
        icrs = coord.icrs
        ra, dec = float(icrs.ra.deg), float(icrs.dec.deg)
        table = extract_target(
            self._table,
            ra,
            dec,
            radius_arcsec=radius_arcsec,
            forced_photometry=forced_photometry,
            snr_threshold=snr_threshold,
            target_name=name,
        )
        return TargetLightcurve(
            table,
            name=str(table["target_name"][0]) if len(table) else (name or f"{ra:.6f} {dec:+.6f}"),
            ra_deg=ra,
            dec_deg=dec,
            trigger_time_utc=trigger_time_utc,
        )

    def convert_calibrated_mag_system(self, system: Literal["AB", "Vega"]) -> Self:
        """Return the rows with calibrated magnitudes, limits and zero points on ``system``.

        Uses :data:`soapd.filters.AB_MINUS_VEGA` for each row's band. Rows already on
        ``system`` are unchanged; rows whose system is unknown (narrow bands,
        uncalibrated frames) are left as they are and counted in a warning.
        """
        if system not in ("AB", "Vega"):
            raise ValueError(f"system must be 'AB' or 'Vega', got {system!r}")
        t = self._table.copy()
        if not len(t):
            return self._new(t)
        bands = row_bands(t)
        current = column_or(t, "cal_mag_system", "").astype(str)
        current = np.array(
            [
                c if c in ("AB", "Vega") else mag_system(b)
                for c, b in zip(current, bands, strict=True)
            ]
        )
        offset = np.array([AB_MINUS_VEGA.get(b, np.nan) for b in bands])
        sign = np.where(current == system, 0.0, np.where(system == "AB", 1.0, -1.0))
        known = np.isin(current, ("AB", "Vega")) & np.isfinite(offset)
        shift = np.where(known, sign * np.nan_to_num(offset), 0.0)
        for name in _CALIBRATED_MAG_COLUMNS:
            if name in t.colnames:
                unit = t[name].unit
                t[name] = column_or(t, name, np.nan).astype(float) + shift
                t[name].unit = unit
        n_unknown = int(
            np.sum(~known & np.isfinite(column_or(t, "calibrated_mag", np.nan).astype(float)))
        )
        if n_unknown:
            logger.warning("%d calibrated rows have no AB/Vega system; left unchanged", n_unknown)
        t["cal_mag_system"] = np.where(known, system, current).astype(str)
        return self._new(t)


class TargetLightcurve(PhotometryResult):
    """The lightcurve of one sky position: one row per frame, limits flagged.

    Returned by :meth:`PhotometryResult.extract_target` (skynetsoap's
    ``PhotometryTarget``). ``is_detection`` tells detections (magnitude with error)
    from upper limits (``limiting_mag``); ``trigger_time_utc`` (optional) gives GCN
    drafts and plots their time since trigger.
    """

    def __init__(
        self,
        table: Table | None = None,
        *,
        name: str = "",
        ra_deg: float = math.nan,
        dec_deg: float = math.nan,
        trigger_time_utc: TimeLike | None = None,
    ) -> None:
        super().__init__(table)
        self.name = name
        self.ra_deg = ra_deg
        self.dec_deg = dec_deg
        self.trigger_time_utc: datetime | None = as_datetime(trigger_time_utc)

    def _new(self, table: Table) -> Self:
        return type(self)(
            table,
            name=self.name,
            ra_deg=self.ra_deg,
            dec_deg=self.dec_deg,
            trigger_time_utc=self.trigger_time_utc,
        )

    def __repr__(self) -> str:
        n_det, n_lim = len(self.detections), len(self.upper_limits)
        return (
            f"<TargetLightcurve {self.name!r} at ({self.ra_deg:.5f}, {self.dec_deg:+.5f}): "
            f"{n_det} detections, {n_lim} limits, {len(self) - n_det - n_lim} not covered>"
        )

    def plot(
        self,
        path: str | Path,
        units: Literal["calibrated_mag", "ins_mag", "flux"] = "calibrated_mag",
        *,
        trigger_time_utc: TimeLike | None = None,
        title: str = "",
        show: bool = False,
    ) -> Path:
        """As :meth:`PhotometryResult.plot`, with this target's name and trigger time."""
        trigger = trigger_time_utc if trigger_time_utc is not None else self.trigger_time_utc
        return super().plot(
            path, units, trigger_time_utc=trigger, title=title or self.name, show=show
        )

    @property
    def detections(self) -> Self:
        """The rows that are detections."""
        mask = column_or(self._table, "is_detection", default=False).astype(bool)
        return self._new(self._table[mask])

    @property
    def upper_limits(self) -> Self:
        """The upper limits: non-detections of frames that covered the position (``coverage``)."""
        mask = column_or(self._table, "is_detection", default=False).astype(bool)
        return self._new(self._table[~mask & covered_mask(self._table)])


#: skynetsoap's name for a target's lightcurve.
PhotometryTarget = TargetLightcurve
