"""Lightcurves of any sky position from the kept field-wide tables (DESIGN §5.4).

Every processed frame keeps its full source table (``frames.catalog_path``) and
its footprint (``frames.footprint_json``: the sky corners of the pixel grid and of
the part inside the edge buffer). :func:`extract_lightcurve` opens only the tables
of frames whose footprint holds the position (frames without WCS never do), finds
the position in each with :func:`extract_target` (nearest extracted source within
the radius, one row per frame) and, where the frame has no source there, adds an
upper-limit row at the frame's limiting magnitude. A frame that did not *cover* the
position gives no row at all: outside its covered part (off the frame or in the
edge buffer, so no table is opened), or marked not covered by a forced row of a
target there (masked pixels). Frames processed before footprints were stored fall
back to the bounding box of their sources.
:func:`backfill_target` stores that lightcurve as a target's measurements (for a
target added after the frames were processed); backfilled points raise no alerts.

Not covered: a frame that did not measure the position has no point in these
lightcurves. Only :func:`extract_target` with ``forced_photometry`` (the Python
API, for positions the user asked for) returns a row for such a frame, marked
not covered: no flux, no limit, no UPPER_LIMIT.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from astropy.table import Table, vstack

from soapd.columns import column_or, filled
from soapd.errors import SoapdError
from soapd.flags import UNMEASURED, Flag, coverage_of
from soapd.timeutil import jd_from_mjd, to_mjd

if TYPE_CHECKING:
    from soapd.store import Store

__all__ = [
    "backfill_target",
    "covers",
    "extract_lightcurve",
    "extract_target",
    "footprint_contains",
    "row_mjd",
]

logger = logging.getLogger(__name__)


def footprint_contains(
    corners: Sequence[tuple[float, float]], ra_deg: float, dec_deg: float
) -> bool:
    """Return True if (ra, dec) lies inside the sky polygon ``corners`` (degrees, in order).

    The corners are projected onto the tangent plane at the position (gnomonic, so
    great-circle edges are straight lines there) and the origin is tested with the
    even-odd rule; a corner 90 degrees or more away means outside. Works across
    RA = 0 and at the poles. Fewer than 3 corners contain nothing.
    """
    if len(corners) < 3:
        return False
    ra = np.radians(np.array([c[0] for c in corners], np.float64))
    dec = np.radians(np.array([c[1] for c in corners], np.float64))
    ra0, dec0 = math.radians(ra_deg), math.radians(dec_deg)
    cos_c = math.sin(dec0) * np.sin(dec) + math.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    if np.any(cos_c <= 1e-12):
        return False
    x = np.cos(dec) * np.sin(ra - ra0) / cos_c
    y = (math.cos(dec0) * np.sin(dec) - math.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cos_c
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    crosses = (y > 0) != (y2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x + (0.0 - y) * (x2 - x) / (y2 - y)
    return bool(np.count_nonzero(crosses & (x_at > 0)) % 2 == 1)


def covers(table: Table, ra_deg: float, dec_deg: float) -> bool:
    """Return True if (ra, dec) lies inside the bounding box of the table's sources.

    For frames stored without a footprint. Only extracted sources count (a forced
    row holds the requested position, wherever it is). The box is taken in the
    tangent plane at the position (offsets in deg), so it works across RA = 0 and
    near the poles. A table with fewer than 3 sources with coordinates covers nothing.
    """
    if "ra" not in table.colnames or "dec" not in table.colnames:
        return False
    ra, dec = filled(table, "ra"), filled(table, "dec")
    forced = column_or(table, "is_forced", default=False).astype(bool)
    ok = np.isfinite(ra) & np.isfinite(dec) & ~forced
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
        "coverage": "covered",
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
    ``zeropoint_scatter`` and ``separation_arcsec``. Only frames whose stored
    footprint holds the position are opened (see the module docstring); unreadable
    tables are skipped with a warning.
    """
    from soapd.output.export import read_table

    name = target_name or f"{ra_deg % 360.0:.6f} {dec_deg:+.6f}"
    parts: list[Table] = []
    for frame in store.frames_with_tables():
        if int(frame.get("flags") or 0) & Flag.NO_WCS:
            continue
        footprint = frame.get("footprint")
        # Off the frame, or in its edge buffer: the frame did not cover the position.
        if footprint is not None and not footprint_contains(footprint[1], ra_deg, dec_deg):
            continue
        try:
            table = read_table(frame["catalog_path"])
        except SoapdError as exc:
            logger.warning("frame %d: field-wide table skipped: %s", frame["frame_id"], exc)
            continue
        if _not_covered_at(table, ra_deg, dec_deg, radius_arcsec):
            continue  # a target measured there was not covered (masked pixels)
        found = extract_target(
            table, ra_deg, dec_deg, radius_arcsec=radius_arcsec, target_name=name
        )
        if len(found) == 0:
            if footprint is None and not covers(table, ra_deg, dec_deg):
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


def _not_covered_at(table: Table, ra_deg: float, dec_deg: float, radius_arcsec: float) -> bool:
    """Return True if a forced row within the radius says the frame did not cover it."""
    forced = column_or(table, "is_forced", default=False).astype(bool)
    if not forced.any():
        return False
    flags = column_or(table, "flag", default=0).astype(np.int64)
    gone = forced & ((flags & UNMEASURED) != 0)
    if not gone.any():
        return False
    sep = _separation_arcsec(
        filled(table, "ra")[gone], filled(table, "dec")[gone], ra_deg % 360.0, dec_deg
    )
    return bool(np.any(sep <= radius_arcsec))


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
        not covered (``NOT_COVERED``, or ``OFF_FRAME`` in old tables) carry no
        measurement: they are left out, but with ``forced_photometry`` a frame
        whose only row at the position is a not-covered forced row gives that row
        (``is_detection`` False, no magnitude, NaN limits, no ``UPPER_LIMIT``), so
        a position asked for explicitly has one row per frame that says the truth.

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
    # OFF_FRAME alone: a table written before coverage was a state
    gone = (flags & UNMEASURED) != 0
    near = sep <= radius_arcsec
    keep = near & ~gone
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
    if forced_photometry:  # a frame that did not cover the asked position says so
        spare = np.flatnonzero(near & gone & is_forced)
        for i in spare[np.argsort(np.round(sep[spare], 6), kind="stable")]:
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
    """Turn forced rows below ``snr_threshold`` into upper limits, in place.

    Not-covered rows stay not covered: no detection, no magnitude, no limit and no
    UPPER_LIMIT (an old table's OFF_FRAME row gets the NOT_COVERED bit).
    """
    n = len(out)
    forced = column_or(out, "is_forced", default=False).astype(bool)
    flags = column_or(out, "flag", default=0).astype(np.int64)
    gone = (flags & UNMEASURED) != 0
    snr = column_or(out, "snr", np.nan).astype(float)
    below = forced & ~gone & ~(snr >= snr_threshold)
    detected = column_or(out, "is_detection", default=True).astype(bool)
    detected = np.where(forced, ~below, detected) & ~gone
    out["is_detection"] = detected if n else np.zeros(0, bool)
    flags = np.where(below, flags | Flag.UPPER_LIMIT, flags & ~np.int64(Flag.UPPER_LIMIT))
    flags = np.where(detected | gone, flags, flags | Flag.UPPER_LIMIT)
    flags = np.where(gone, flags | Flag.NOT_COVERED, flags)
    out["flag"] = flags.astype(np.int64)
    _set_mag(out, "calibrated_mag", below | gone, _recomputed_mag(out))
    _set_mag(out, "calibrated_mag_err", below | gone, _recomputed_err(out))
    if gone.any():
        for name in out.colnames:
            if name.startswith("limiting_"):
                _set_mag(out, name, gone, column_or(out, name, np.nan).astype(float))
        if "coverage" in out.colnames:
            codes = np.array([coverage_of(int(v)) for v in flags], dtype=object)
            out["coverage"] = np.where(gone, codes, column_or(out, "coverage", "")).astype(str)


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
