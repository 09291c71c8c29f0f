"""Row selection for result tables: times, bands and sky positions (``extract_target``).

Pure functions over astropy Tables with the columns of
:data:`soapd.columns.RESULT_COLUMNS`; :class:`soapd.api.results.PhotometryResult`
wraps them as methods. Times are mid-exposure UTC (the ``mjd`` column); naive
datetimes and ISO strings are read as UTC (skynetsoap B1). No I/O.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from astropy.table import Table

from soapd.catalogs.normalise import column_or
from soapd.filters import normalise_filter
from soapd.flags import Flag
from soapd.timeutil import TimeLike, to_mjd

# TimeLike and to_mjd live in soapd.timeutil; re-exported here for soapd.api callers.
__all__ = ["TimeLike", "date_bounds", "extract_target", "row_bands", "row_mjd", "to_mjd"]


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


def row_mjd(table: Table) -> npt.NDArray[np.float64]:
    """Return the mid-exposure MJD of every row (from ``mjd``, else ``mid_time_utc``)."""
    if "mjd" in table.colnames:
        return column_or(table, "mjd", np.nan).astype(np.float64)
    if "mid_time_utc" in table.colnames:
        return np.array([to_mjd(str(v)) for v in table["mid_time_utc"]], dtype=np.float64)
    raise KeyError("the table has neither an 'mjd' nor a 'mid_time_utc' column")


def row_bands(table: Table) -> npt.NDArray[np.str_]:
    """Return every row's canonical band (from ``filter``, normalised again to be safe)."""
    raw = column_or(table, "filter", "").astype(str)
    if raw.size == 0:
        return np.zeros(0, dtype=str)
    names, inverse = np.unique(raw, return_inverse=True)
    bands = np.array([normalise_filter(str(n)) for n in names], dtype=str)
    out: npt.NDArray[np.str_] = bands[inverse.reshape(-1)]
    return out


def _separation_arcsec(
    ra_deg: npt.NDArray[np.float64], dec_deg: npt.NDArray[np.float64], ra0: float, dec0: float
) -> npt.NDArray[np.float64]:
    """Return great-circle distances in arcsec (astropy's Vincenty formula, stable everywhere)."""
    from astropy.coordinates import angular_separation

    rad = angular_separation(
        np.radians(ra_deg), np.radians(dec_deg), math.radians(ra0), math.radians(dec0)
    )
    sep: npt.NDArray[np.float64] = np.degrees(rad) * 3600.0
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
        :data:`soapd.columns.RESULT_COLUMNS`.
    ra_deg, dec_deg
        The position, degrees (ICRS).
    radius_arcsec
        Largest distance between a row's position and the target, arcsec.
    forced_photometry
        Also use forced rows (``is_forced`` True); otherwise only extracted sources.
    snr_threshold
        Forced rows with S/N below this become upper limits: ``is_detection``
        False, ``Flag.UPPER_LIMIT`` set, ``calibrated_mag`` and
        ``calibrated_mag_err`` NaN (the limit is ``limiting_mag``; ``flux`` and
        ``ins_mag`` stay as measured); forced rows at or above it are detections,
        with ``calibrated_mag = ins_mag + zeropoint`` where the pipeline, with its
        own threshold, left it NaN. Extracted sources keep their ``is_detection``.
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
    is_forced = column_or(table, "is_forced", default=False).astype(bool)
    flags = column_or(table, "flag", default=0).astype(np.int64)
    sep = _separation_arcsec(
        column_or(table, "ra", np.nan).astype(float),
        column_or(table, "dec", np.nan).astype(float),
        ra_deg % 360.0,
        dec_deg,
    )
    keep = (sep <= radius_arcsec) & ((flags & Flag.OFF_FRAME) == 0)
    if not forced_photometry:
        keep &= ~is_forced
    snr = column_or(table, "snr", np.nan).astype(float)
    mjd = row_mjd(table)
    images = column_or(table, "image_file", "").astype(str)
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
    forced = column_or(out, "is_forced", default=False).astype(bool)
    snr = column_or(out, "snr", np.nan).astype(float)
    below = forced & ~(snr >= snr_threshold)
    detected = column_or(out, "is_detection", default=True).astype(bool)
    detected = np.where(forced, ~below, detected)
    out["is_detection"] = detected if n else np.zeros(0, bool)
    flags = column_or(out, "flag", default=0).astype(np.int64)
    flags = np.where(below, flags | Flag.UPPER_LIMIT, flags & ~np.int64(Flag.UPPER_LIMIT))
    flags = np.where(detected, flags, flags | Flag.UPPER_LIMIT)
    out["flag"] = flags.astype(np.int64)
    _set_mag(out, "calibrated_mag", below, _recomputed_mag(out))
    _set_mag(out, "calibrated_mag_err", below, _recomputed_err(out))


def _recomputed_mag(out: Table) -> npt.NDArray[np.float64]:
    """Return ``calibrated_mag``, filled with ``ins_mag + zeropoint`` where it is NaN."""
    mag = column_or(out, "calibrated_mag", np.nan).astype(float)
    ins = column_or(out, "ins_mag", np.nan).astype(float)
    alt = ins + column_or(out, "zeropoint", np.nan).astype(float)
    filled: npt.NDArray[np.float64] = np.where(np.isfinite(mag), mag, alt)
    return filled


def _recomputed_err(out: Table) -> npt.NDArray[np.float64]:
    """Return ``calibrated_mag_err``, filled from ``ins_mag_err`` and ``zeropoint_err``."""
    err = column_or(out, "calibrated_mag_err", np.nan).astype(float)
    alt = np.hypot(
        column_or(out, "ins_mag_err", np.nan).astype(float),
        column_or(out, "zeropoint_err", np.nan).astype(float),
    )
    filled: npt.NDArray[np.float64] = np.where(np.isfinite(err), err, alt)
    return filled


def _set_mag(
    out: Table, name: str, below: npt.NDArray[np.bool_], values: npt.NDArray[np.float64]
) -> None:
    """Set column ``name`` to ``values``, NaN where ``below`` (limits), keeping its unit."""
    if name not in out.colnames:
        return
    unit = out[name].unit
    out[name] = np.where(below, np.nan, values)
    out[name].unit = unit
