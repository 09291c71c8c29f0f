"""One-to-one cross-match of detections with reference stars, and the calibrator cuts.

See :func:`select_calibrators`. Positions are matched on the unit sphere with a
k-d tree (chord distances), so the matching is exact at any declination and
across RA = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from soapd.columns import column_or, filled
from soapd.flags import Flag

if TYPE_CHECKING:
    from astropy.table import Table

    from soapd.config import CalibrationConfig

__all__ = ["Selection", "column", "select_calibrators"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Source flag bits that do not disqualify a calibrator.
_HARMLESS = int(Flag.RECENTERED | Flag.NO_CALIBRATION | Flag.CAL_UNFILTERED)


def column(table: Table, name: str, default: float = np.nan) -> FloatArray:
    """Return a column as float64 with masked values as NaN (``default`` if absent)."""
    return filled(table, name) if name in table.colnames else np.full(len(table), default)


def _unit(ra_deg: FloatArray, dec_deg: FloatArray) -> FloatArray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _chord(arcsec: float) -> float:
    return float(2.0 * np.sin(np.radians(arcsec / 3600.0) / 2.0))


def _crowded(
    tree: Any,
    xyz: FloatArray,
    idx: IntArray,
    mag: FloatArray,
    *,
    allow_unknown: bool,
    dmag: float,
    r: float,
) -> npt.NDArray[np.bool_]:
    """Return True for points ``idx`` that have a bright neighbour within chord ``r``.

    Bright: brighter than the point's magnitude + ``dmag``, or of unknown magnitude
    unless ``allow_unknown``.
    """
    neighbours = tree.query_ball_point(xyz[idx], r)
    counts = np.fromiter((len(n) for n in neighbours), dtype=np.int64, count=len(idx))
    if counts.sum() == 0:
        return np.zeros(len(idx), bool)
    other = np.concatenate([np.asarray(n, dtype=np.int64) for n in neighbours])
    owner = np.repeat(np.arange(len(idx)), counts)
    m_other = mag[other]
    unknown = ~np.isfinite(m_other)
    bright = np.where(unknown, not allow_unknown, m_other < mag[idx][owner] + dmag)
    hit = bright & (other != idx[owner])
    return np.bincount(owner[hit], minlength=len(idx)) > 0


def _mutual_nearest(s_tree: Any, c_tree: Any, r_chord: float) -> tuple[IntArray, IntArray]:
    """Return index pairs (source, star) that are each other's nearest within ``r_chord``."""
    s_xyz, c_xyz = s_tree.data, c_tree.data
    d_sc, j_sc = c_tree.query(s_xyz, k=1, distance_upper_bound=r_chord)
    _, j_cs = s_tree.query(c_xyz, k=1, distance_upper_bound=r_chord)
    pairs_s, pairs_c = [], []
    for a, (d, j) in enumerate(zip(d_sc, j_sc, strict=True)):
        if np.isfinite(d) and j_cs[j] == a:
            pairs_s.append(a)
            pairs_c.append(int(j))
    return np.asarray(pairs_s, np.int64), np.asarray(pairs_c, np.int64)


@dataclass(frozen=True, slots=True)
class Selection:
    """Calibrator candidates: matched source/star rows that passed every cut."""

    src_idx: IntArray
    star_idx: IntArray
    n_matched: int
    #: cut name -> how many matched pairs it removed (first failing cut counts).
    removed: dict[str, int]


def select_calibrators(sources: Table, stars: Table, config: CalibrationConfig) -> Selection:
    """Cross-match one-to-one and keep clean, isolated, unsaturated, non-variable stars.

    A pair is a match when the source and the star are each other's nearest
    neighbour within ``match_radius_arcsec``. A matched pair is a calibrator when
    the source has no disqualifying flag bit (anything but RECENTERED), finite
    ``ins_mag``/``ins_mag_err``; the star has a finite magnitude and error inside
    [mag_min, mag_max] and is not marked variable (``reject_variables``); no
    other catalog star within ``isolation_arcsec`` is brighter than
    ``mag + isolation_dmag`` or of unknown magnitude; and no other detection
    within ``isolation_arcsec`` is brighter than ``ins_mag + isolation_dmag``.
    Detections are inside the frame by construction.
    """
    from scipy.spatial import cKDTree

    empty = np.zeros(0, np.int64)
    s_ra, s_dec = column(sources, "ra"), column(sources, "dec")
    c_ra, c_dec = column(stars, "ra_deg"), column(stars, "dec_deg")
    s_ok = np.isfinite(s_ra) & np.isfinite(s_dec)
    c_ok = np.isfinite(c_ra) & np.isfinite(c_dec)
    if not s_ok.any() or not c_ok.any():
        return Selection(empty, empty, 0, {})
    s_ids, c_ids = np.flatnonzero(s_ok), np.flatnonzero(c_ok)
    s_xyz, c_xyz = _unit(s_ra[s_ok], s_dec[s_ok]), _unit(c_ra[c_ok], c_dec[c_ok])
    s_tree, c_tree = cKDTree(s_xyz), cKDTree(c_xyz)
    ps, pc = _mutual_nearest(s_tree, c_tree, _chord(config.match_radius_arcsec))
    n_matched = len(ps)
    if not n_matched:
        return Selection(empty, empty, 0, {})
    src_i, cat_i = s_ids[ps], c_ids[pc]

    ins = column(sources, "ins_mag")
    ins_err = column(sources, "ins_mag_err")
    flag = column_or(sources, "flag", 0).astype(np.int64)
    mag, mag_err = column(stars, "mag"), column(stars, "mag_err")
    variable = column_or(stars, "variable", default=False).astype(bool)
    crowded_cat = np.zeros(len(pc), bool)
    crowded_src = np.zeros(len(ps), bool)
    if config.isolation_arcsec > 0:
        r_iso = _chord(config.isolation_arcsec)
        crowded_cat = _crowded(
            c_tree, c_xyz, pc, mag[c_ids], allow_unknown=False, dmag=config.isolation_dmag, r=r_iso
        )
        crowded_src = _crowded(
            s_tree, s_xyz, ps, ins[s_ids], allow_unknown=True, dmag=config.isolation_dmag, r=r_iso
        )
    cuts: list[tuple[str, npt.NDArray[np.bool_]]] = [
        ("flagged", (flag[src_i] & ~_HARMLESS) != 0),
        ("no instrumental mag", ~(np.isfinite(ins[src_i]) & (ins_err[src_i] > 0))),
        ("no catalog mag", ~(np.isfinite(mag[cat_i]) & (mag_err[cat_i] > 0))),
        ("too bright", mag[cat_i] < config.mag_min),
        ("too faint", mag[cat_i] > config.mag_max),
        ("variable", variable[cat_i] & config.reject_variables),
        ("crowded (catalog)", crowded_cat),
        ("crowded (detections)", crowded_src),
    ]
    good = np.ones(len(ps), bool)
    removed: dict[str, int] = {}
    for name, bad in cuts:
        hit = good & bad
        if hit.any():
            removed[name] = int(hit.sum())
        good &= ~bad
    return Selection(src_i[good].astype(np.int64), cat_i[good].astype(np.int64), n_matched, removed)
