"""Lightcurves of any sky position from the kept field-wide tables (DESIGN §5.4).

Every processed frame keeps its full source table (``frames.catalog_path``).
:func:`extract_lightcurve` finds the position in each of them with
:func:`extract_target` (nearest extracted source within the
radius, one row per frame) and, for frames that cover the position but have no
source there, adds an upper-limit row at the frame's limiting magnitude.
:func:`backfill_target` stores that lightcurve as a target's measurements (for a
target added after the frames were processed); backfilled points raise no alerts.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from astropy.table import Table, vstack

from soapd.columns import column_or, filled
from soapd.errors import SoapdError
from soapd.flags import Flag
from soapd.timeutil import jd_from_mjd, to_mjd

if TYPE_CHECKING:
    from soapd.store import Store

__all__ = ["backfill_target", "covers", "extract_lightcurve", "extract_target", "row_mjd"]

logger = logging.getLogger(__name__)


def covers(table: Table, ra_deg: float, dec_deg: float) -> bool:
    """Return True if (ra, dec) lies inside the bounding box of the table's sources.

    The box is taken in the tangent plane at the position (offsets in deg), so it
    works across RA = 0 and near the poles. A table with fewer than 3 sources with
    coordinates covers nothing.
    """
    if "ra" not in table.colnames or "dec" not in table.colnames:
        return False
    ra, dec = filled(table, "ra"), filled(table, "dec")
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.sum() < 3:
        return False
    dra = (ra[ok] - ra_deg + 180.0) % 360.0 - 180.0
    x = dra * math.cos(math.radians(dec_deg))
    y = dec[ok] - dec_deg
    return bool(x.min() <= 0.0 <= x.max() and y.min() <= 0.0 <= y.max())


def _limit_row(frame: dict[str, Any], ra_deg: float, dec_deg: float, name: str) -> dict[str, Any]:
    return {
        "image_file": frame["image_file"] or "",
        "telescope": frame["telescope"] or "",
        "filter": frame["band"] or "",
        "band": frame["band"] or "",
        "exptime": frame["exptime_s"],
        "mjd": frame["mjd"],
        "jd": jd_from_mjd(frame["mjd"]),
        "mid_time_utc": frame["mid_time_utc"] or "",
        "ra": ra_deg,
        "dec": dec_deg,
        "flux": math.nan,
        "flux_err": math.nan,
        "snr": math.nan,
        "calibrated_mag": math.nan,
        "calibrated_mag_err": math.nan,
        "limiting_mag": math.nan if frame["lim_mag"] is None else frame["lim_mag"],
        "is_detection": False,
        "is_forced": False,
        "flag": int(Flag.UPPER_LIMIT),
        "aperture_id": 0,
        "aperture_radius": math.nan,
        "target_name": name,
        "separation_arcsec": math.nan,
    }


def extract_lightcurve(
    store: Store,
    ra_deg: float,
    dec_deg: float,
    *,
    radius_arcsec: float = 3.0,
    target_name: str | None = None,
) -> Table:
    """Return the lightcurve of a position from every kept field-wide table, by time.

    Rows carry the result-table columns plus ``frame_id``, ``cal_catalog``,
    ``zeropoint_scatter`` and ``separation_arcsec``. Unreadable tables are skipped
    with a warning.
    """
    from soapd.output.export import read_table

    name = target_name or f"{ra_deg % 360.0:.6f} {dec_deg:+.6f}"
    parts: list[Table] = []
    for frame in store.frames_with_tables():
        try:
            table = read_table(frame["catalog_path"])
        except SoapdError as exc:
            logger.warning("frame %d: field-wide table skipped: %s", frame["frame_id"], exc)
            continue
        found = extract_target(
            table, ra_deg, dec_deg, radius_arcsec=radius_arcsec, target_name=name
        )
        if len(found) == 0:
            if not covers(table, ra_deg, dec_deg):
                continue
            found = Table(rows=[_limit_row(frame, ra_deg, dec_deg, name)])
        found["frame_id"] = np.full(len(found), frame["frame_id"], dtype=np.int64)
        found["mjd"] = np.full(len(found), frame["mjd"], dtype=float)
        found["cal_catalog"] = np.array([frame["cal_catalog"] or ""] * len(found), dtype=str)
        found["zeropoint_scatter"] = np.full(
            len(found), np.nan if frame["zp_scatter_mag"] is None else frame["zp_scatter_mag"]
        )
        found["zeropoint_scatter"].unit = "mag"
        parts.append(found)
    if not parts:
        return Table()
    out = vstack(parts, join_type="outer", metadata_conflicts="silent")
    out.sort(["mjd", "frame_id"])
    out.meta = {"target_name": name, "ra_deg": ra_deg % 360.0, "dec_deg": dec_deg}
    for col in out.colnames:
        if hasattr(out[col], "mask") and out[col].dtype.kind == "f":
            out[col] = np.ma.filled(out[col], np.nan)
    return out


def backfill_target(store: Store, target_name: str, *, radius_arcsec: float = 3.0) -> int:
    """Measure a target on the frames already processed; return the frames stored.

    Uses :func:`extract_lightcurve`; each row is stored under the frame's own
    ``config_hash``, so a later full re-processing supersedes it.
    """
    target = store.get_target(target_name)
    if target is None:
        raise SoapdError(f"no target named {target_name!r}; add it first")
    lc = extract_lightcurve(
        store,
        target.ra_deg,
        target.dec_deg,
        radius_arcsec=radius_arcsec,
        target_name=target.name,
    )
    hashes = {f["frame_id"]: f["config_hash"] or "" for f in store.frames_with_tables()}
    stored = 0
    for fid in sorted({int(v) for v in lc["frame_id"]} if len(lc) else set()):
        rows = lc[np.asarray(lc["frame_id"]) == fid]
        stored += bool(
            store.save_measurements(
                fid, rows, config_hash=hashes.get(fid, ""), mjd=float(rows["mjd"][0])
            )
        )
    return stored


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


def row_mjd(table: Table) -> npt.NDArray[np.float64]:
    """Return the mid-exposure MJD of every row (from ``mjd``, else ``mid_time_utc``)."""
    if "mjd" in table.colnames:
        return column_or(table, "mjd", np.nan).astype(np.float64)
    if "mid_time_utc" in table.colnames:
        return np.array([to_mjd(str(v)) for v in table["mid_time_utc"]], dtype=np.float64)
    raise KeyError("the table has neither an 'mjd' nor a 'mid_time_utc' column")
