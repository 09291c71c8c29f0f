"""Lightcurves of any sky position from the kept field-wide tables (DESIGN §5.4).

Every processed frame keeps its full source table (``frames.catalog_path``).
:func:`extract_lightcurve` finds the position in each of them with
:func:`soapd.api.results.extract_target` (nearest extracted source within the
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
from astropy.table import Table, vstack

from soapd.catalogs.normalise import filled
from soapd.errors import SoapdError
from soapd.flags import Flag
from soapd.timeutil import jd_from_mjd

if TYPE_CHECKING:
    from soapd.store import Store

__all__ = ["backfill_target", "covers", "extract_lightcurve"]

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
    from soapd.api.results import extract_target
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
