"""Result tables for Python users: :class:`PhotometryResult` and :class:`TargetLightcurve`.

A :class:`PhotometryResult` wraps an astropy ``Table`` of result rows (the
columns of :data:`soapd.pipeline.result.RESULT_COLUMNS`: one row per source or
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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeAlias

import numpy as np
import numpy.typing as npt
from astropy.table import Table, vstack
from astropy.time import Time

from soapd.filters import AB_MINUS_VEGA, mag_system, normalise_filter
from soapd.flags import Flag

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord

    from soapd.pipeline.result import FrameResult

__all__ = [
    "PhotometryResult",
    "PhotometryTarget",
    "TargetLightcurve",
    "TimeLike",
    "extract_target",
    "to_mjd",
]

logger = logging.getLogger(__name__)

#: What the date filters accept: ISO-8601 text, datetime/date (naive = UTC), astropy Time,
#: or an MJD number.
TimeLike: TypeAlias = str | datetime | date | Time | float | int

#: An MJD above this is almost surely a JD passed by mistake (MJD 2,400,000 is in 8429 AD).
_JD_GUARD = 2_400_000.0

#: Columns holding magnitudes on the calibrated scale (shifted by an AB/Vega conversion).
_CALIBRATED_MAG_COLUMNS = (
    "calibrated_mag",
    "zeropoint",
    "limiting_mag",
    "limiting_mag_analytic",
    "limiting_mag_robust",
)


def to_mjd(value: TimeLike) -> float:
    """Return ``value`` as an MJD (UTC) float.

    Parameters
    ----------
    value
        ISO-8601 text (``"2026-11-24T03:00:00"``, ``"...Z"``, ``"...+02:00"``) or a
        number in text, a ``datetime``/``date`` (naive values are taken as UTC), an
        astropy ``Time``, or an MJD number.

    Raises
    ------
    ValueError
        If the text cannot be read as a time, or a number looks like a JD.
    TypeError
        For anything else (``bool`` included).
    """
    if isinstance(value, bool):
        raise TypeError("a time must be ISO text, a datetime, an astropy Time or an MJD number")
    if isinstance(value, Time):
        return float(value.utc.mjd)
    if isinstance(value, int | float | np.integer | np.floating):
        mjd = float(value)
        if not math.isfinite(mjd):
            raise ValueError(f"time {value!r} is not finite")
        if mjd > _JD_GUARD:
            raise ValueError(f"{mjd} looks like a JD; pass an MJD (JD - 2400000.5)")
        return mjd
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return float(Time(aware.astimezone(UTC).replace(tzinfo=None), scale="utc").mjd)
    if isinstance(value, date):
        return to_mjd(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, str):
        text = value.strip()
        try:
            return to_mjd(float(text))
        except ValueError as exc:
            if "JD" in str(exc):
                raise
        try:
            return to_mjd(datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(
                f"cannot read {value!r} as a time; use ISO-8601 such as "
                "'2026-11-24T03:00:00Z' or an MJD number"
            ) from None
    raise TypeError(f"cannot use {type(value).__name__} as a time")


def date_bounds(
    *,
    after: TimeLike | None = None,
    before: TimeLike | None = None,
    days_ago: float | None = None,
    now: datetime | None = None,
) -> tuple[float, float]:
    """Return the (lower, upper) MJD bounds of a date selection (``-inf``/``inf`` if open).

    ``days_ago`` keeps times after ``now - days_ago`` (``now`` defaults to the current
    UTC time); with ``after`` as well, the later of the two lower bounds applies.
    """
    lower, upper = -math.inf, math.inf
    if after is not None:
        lower = to_mjd(after)
    if before is not None:
        upper = to_mjd(before)
    if days_ago is not None:
        if isinstance(days_ago, bool) or not math.isfinite(float(days_ago)) or days_ago < 0:
            raise ValueError(f"days_ago must be a non-negative number of days, got {days_ago!r}")
        ref = datetime.now(UTC) if now is None else now
        lower = max(lower, to_mjd(ref - timedelta(days=float(days_ago))))
    return lower, upper


def _column(table: Table, name: str, default: Any) -> npt.NDArray[Any]:
    """Return column ``name`` as a plain array (masked entries filled), or ``default``s."""
    if name not in table.colnames:
        return np.full(len(table), default)
    col = table[name]
    if hasattr(col, "filled"):
        return np.asarray(col.filled(default))
    return np.asarray(col)


def _row_mjd(table: Table) -> npt.NDArray[np.float64]:
    """Return the mid-exposure MJD of every row (from ``mjd``, else ``mid_time_utc``)."""
    if "mjd" in table.colnames:
        return _column(table, "mjd", np.nan).astype(np.float64)
    if "mid_time_utc" in table.colnames:
        return np.array([to_mjd(str(v)) for v in table["mid_time_utc"]], dtype=np.float64)
    raise KeyError("the table has neither an 'mjd' nor a 'mid_time_utc' column")


def _row_bands(table: Table) -> npt.NDArray[np.str_]:
    """Return every row's canonical band (from ``filter``, normalised again to be safe)."""
    raw = _column(table, "filter", "")
    cache: dict[str, str] = {}
    return np.array([cache.setdefault(str(v), normalise_filter(str(v))) for v in raw], dtype=str)


def _separation_arcsec(
    ra_deg: npt.NDArray[np.float64], dec_deg: npt.NDArray[np.float64], ra0: float, dec0: float
) -> npt.NDArray[np.float64]:
    """Return great-circle distances in arcsec (Vincenty formula, stable at all angles)."""
    ra1, dec1 = np.radians(ra_deg), np.radians(dec_deg)
    ra2, dec2 = math.radians(ra0), math.radians(dec0)
    dra = ra1 - ra2
    num1 = np.cos(dec1) * np.sin(dra)
    num2 = math.cos(dec2) * np.sin(dec1) - math.sin(dec2) * np.cos(dec1) * np.cos(dra)
    den = math.sin(dec2) * np.sin(dec1) + math.cos(dec2) * np.cos(dec1) * np.cos(dra)
    sep: npt.NDArray[np.float64] = np.degrees(np.arctan2(np.hypot(num1, num2), den)) * 3600.0
    return sep


def extract_target(
    table: Table,
    ra_deg: float,
    dec_deg: float,
    *,
    radius_arcsec: float = 3.0,
    forced_photometry: bool = False,
    snr_threshold: float = 3.0,
    target_name: str | None = None,
) -> Table:
    """Return the lightcurve of one sky position from a field-wide result table.

    This is the plain-function form used by ``soapd extract RA DEC`` on the stored
    field-wide tables (one Parquet table per frame, stacked) and by
    :meth:`PhotometryResult.extract_target`.

    Parameters
    ----------
    table
        Result rows with at least ``ra``, ``dec`` (deg, ICRS), ``image_file`` and
        ``mjd`` (mid-exposure); usually also ``is_forced``, ``snr``, ``flag``,
        ``aperture_id`` and the magnitude columns of
        :data:`soapd.pipeline.result.RESULT_COLUMNS`.
    ra_deg, dec_deg
        The position, degrees (ICRS).
    radius_arcsec
        Largest distance between a row's position and the target, arcsec.
    forced_photometry
        Also use forced rows (``is_forced`` True); otherwise only extracted sources.
    snr_threshold
        Forced rows with S/N below this become upper limits: ``is_detection``
        False, ``Flag.UPPER_LIMIT`` set and ``ins_mag``, ``ins_mag_err``,
        ``calibrated_mag`` and ``calibrated_mag_err`` NaN (the limit stays in
        ``limiting_mag``); forced rows at or above it are detections. Extracted
        sources are detections whatever their S/N.
    target_name
        Written to the ``target_name`` column (default ``"RA DEC"`` in degrees).

    Returns
    -------
    astropy.table.Table
        One row per frame (key: ``image_file`` and ``mjd``), the nearest row within
        the radius (ties, e.g. several apertures of one source, go to the highest
        S/N), sorted by ``mjd``, with an added ``separation_arcsec`` column. Rows
        flagged ``OFF_FRAME`` carry no measurement and are left out.

    Notes
    -----
    To fix the aperture of a multi-aperture table, select it first
    (``PhotometryResult.filter_by_aperture``).
    """
    if radius_arcsec <= 0 or not math.isfinite(radius_arcsec):
        raise ValueError(f"radius_arcsec must be a positive number, got {radius_arcsec!r}")
    if not -90.0 <= dec_deg <= 90.0:
        raise ValueError(f"dec_deg must lie in [-90, 90], got {dec_deg!r}")
    for name in ("ra", "dec"):
        if name not in table.colnames:
            raise KeyError(f"the table has no {name!r} column; is it a soapd result table?")
    is_forced = _column(table, "is_forced", default=False).astype(bool)
    flags = _column(table, "flag", default=0).astype(np.int64)
    sep = _separation_arcsec(
        _column(table, "ra", np.nan).astype(float),
        _column(table, "dec", np.nan).astype(float),
        ra_deg % 360.0,
        dec_deg,
    )
    keep = (sep <= radius_arcsec) & ((flags & Flag.OFF_FRAME) == 0)
    if not forced_photometry:
        keep &= ~is_forced
    snr = _column(table, "snr", np.nan).astype(float)
    mjd = _row_mjd(table)
    images = _column(table, "image_file", "").astype(str)
    idx = np.flatnonzero(keep)
    # Nearest first; equal distances (apertures of one source) by S/N, highest first.
    order = idx[np.lexsort((-np.nan_to_num(snr[idx], nan=-np.inf), np.round(sep[idx], 6)))]
    chosen: dict[tuple[str, float], int] = {}
    for i in order:
        chosen.setdefault((str(images[i]), float(mjd[i])), int(i))
    rows = np.array(sorted(chosen.values(), key=lambda i: (mjd[i], images[i])), dtype=np.int64)
    out = Table(table[rows], copy=True)
    out["separation_arcsec"] = sep[rows]
    out["separation_arcsec"].unit = "arcsec"
    name = target_name or f"{ra_deg % 360.0:.6f} {dec_deg:+.6f}"
    out["target_name"] = np.array([name] * len(out), dtype=object).astype(str)
    _mark_limits(out, snr_threshold)
    return out


def _mark_limits(out: Table, snr_threshold: float) -> None:
    """Turn forced rows below ``snr_threshold`` into upper limits, in place."""
    n = len(out)
    forced = _column(out, "is_forced", default=False).astype(bool)
    snr = _column(out, "snr", np.nan).astype(float)
    below = forced & ~(snr >= snr_threshold)
    detected = _column(out, "is_detection", default=True).astype(bool)
    detected = np.where(forced, ~below, detected)
    out["is_detection"] = detected if n else np.zeros(0, bool)
    flags = _column(out, "flag", default=0).astype(np.int64)
    flags = np.where(below, flags | Flag.UPPER_LIMIT, flags & ~np.int64(Flag.UPPER_LIMIT))
    flags = np.where(detected, flags, flags | Flag.UPPER_LIMIT)
    out["flag"] = flags.astype(np.int64)
    for name in ("ins_mag", "ins_mag_err", "calibrated_mag", "calibrated_mag_err"):
        if name in out.colnames:
            col = np.asarray(_column(out, name, np.nan), dtype=float)
            unit = out[name].unit
            out[name] = np.where(below, np.nan, col)
            out[name].unit = unit


class PhotometryResult:
    """Photometry rows of one or more frames, with skynetsoap's selection methods.

    Parameters
    ----------
    table
        An astropy ``Table`` with the columns of
        :data:`soapd.pipeline.result.RESULT_COLUMNS` (a subset is fine for most
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
        n_img = len(set(_column(self._table, "image_file", "").astype(str))) if len(self) else 0
        bands = sorted(set(_row_bands(self._table))) if len(self) else []
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
        mjd = _row_mjd(self._table)
        keep = (mjd >= lower) & (mjd <= upper)
        return self._new(self._table[keep])

    def filter_by_band(self, band: str) -> Self:
        """Return the rows taken through ``band`` (any alias: ``rprime``, ``r'``, ``r``)."""
        want = normalise_filter(band)
        if not len(self):
            return self._new(self._table.copy())
        return self._new(self._table[_row_bands(self._table) == want])

    def filter_by_aperture(self, aperture_id: int) -> Self:
        """Return the rows measured with aperture number ``aperture_id`` (0 = first radius)."""
        if not len(self):
            return self._new(self._table.copy())
        ids = _column(self._table, "aperture_id", 0).astype(np.int64)
        return self._new(self._table[ids == int(aperture_id)])

    def sort_by_time(self) -> Self:
        """Return the rows sorted by mid-exposure time (stable for equal times)."""
        if not len(self):
            return self._new(self._table.copy())
        order = np.argsort(_row_mjd(self._table), kind="stable")
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
        value = np.nan_to_num(_column(t, criterion, np.nan).astype(float), nan=-np.inf)
        x = _column(t, "x_pix", np.nan).astype(float)
        y = _column(t, "y_pix", np.nan).astype(float)
        ra = _column(t, "ra", np.nan).astype(float)
        dec = _column(t, "dec", np.nan).astype(float)
        use_sky = ~(np.isfinite(x) & np.isfinite(y))
        px = np.round(np.where(use_sky, ra * 3600.0, x), 3)
        py = np.round(np.where(use_sky, dec * 3600.0, y), 3)
        keys = zip(
            _column(t, "image_file", "").astype(str),
            _row_mjd(t),
            _column(t, "is_forced", default=False).astype(bool),
            _column(t, "target_name", "").astype(str),
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
        bands = _row_bands(t)
        current = _column(t, "cal_mag_system", "").astype(str)
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
                t[name] = _column(t, name, np.nan).astype(float) + shift
                t[name].unit = unit
        n_unknown = int(
            np.sum(~known & np.isfinite(_column(t, "calibrated_mag", np.nan).astype(float)))
        )
        if n_unknown:
            logger.warning("%d calibrated rows have no AB/Vega system; left unchanged", n_unknown)
        t["cal_mag_system"] = np.where(known, system, current).astype(str)
        return self._new(t)

    # -- output -----------------------------------------------------------------------

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows as CSV (units are lost: use ECSV to keep them); return the path."""
        return _write(self._table, path, "csv")

    def to_ecsv(self, path: str | Path) -> Path:
        """Write the rows as ECSV (keeps units, types and metadata); return the path."""
        return _write(self._table, path, "ecsv")

    def to_parquet(self, path: str | Path) -> Path:
        """Write the rows as Parquet (keeps units and types); return the path."""
        return _write(self._table, path, "parquet")

    def to_json(self, path: str | Path) -> Path:
        """Write the rows as JSON (see :func:`soapd.export.write_table`); return the path."""
        return _write(self._table, path, "json")


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
        self.trigger_time_utc: datetime | None = (
            None
            if trigger_time_utc is None
            else Time(to_mjd(trigger_time_utc), format="mjd", scale="utc").to_datetime(UTC)
        )

    def _new(self, table: Table) -> Self:
        return type(self)(
            table,
            name=self.name,
            ra_deg=self.ra_deg,
            dec_deg=self.dec_deg,
            trigger_time_utc=self.trigger_time_utc,
        )

    def __repr__(self) -> str:
        n_det = int(np.sum(_column(self._table, "is_detection", default=False).astype(bool)))
        return (
            f"<TargetLightcurve {self.name!r} at ({self.ra_deg:.5f}, {self.dec_deg:+.5f}): "
            f"{n_det} detections, {len(self) - n_det} limits>"
        )

    @property
    def detections(self) -> Self:
        """The rows that are detections."""
        mask = _column(self._table, "is_detection", default=False).astype(bool)
        return self._new(self._table[mask])

    @property
    def upper_limits(self) -> Self:
        """The rows that are upper limits (non-detections)."""
        mask = _column(self._table, "is_detection", default=False).astype(bool)
        return self._new(self._table[~mask])


#: skynetsoap's name for a target's lightcurve.
PhotometryTarget = TargetLightcurve


def _write(table: Table, path: str | Path, fmt: str) -> Path:
    """Write ``table`` to ``path`` in ``fmt`` through :func:`soapd.export.write_table`."""
    from soapd.export import write_table

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, out, fmt=fmt)
    return out
