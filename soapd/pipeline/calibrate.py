"""Cross-match detections with reference stars and fit a robust zero point.

Conventions: instrumental magnitudes are ``ins_mag = -2.5 log10(flux_e / exptime_s)``
(electrons per second, aperture-corrected to total flux), so the zero point is
per second of exposure and ``calibrated_mag = ins_mag + zp_mag``.

The fit, for the calibrators i that pass the cuts (:func:`select_calibrators`):

* ``delta_i = m_cat,i - ins_mag_i`` with ``sigma_i^2 = ins_mag_err_i^2 + m_cat_err_i^2``
  (plus ``(k sigma_colour,i)^2`` when a colour term k is fitted);
* model ``delta = zp`` or ``delta = zp + k (c - c_ref)``, fitted by inverse-variance
  weighted least squares;
* clipping: start from the median; a star is kept when
  ``|delta_i - model_i| <= sigma_clip * max(s, sigma_i)`` with ``s`` = 1.4826 x MAD of
  the kept residuals (the robust scatter; a star's own error only widens its
  window, so bright stars with tiny errors are not over-clipped); clipped stars
  may come back; repeat until the set is stable or ``max_iter``;
* error: the formal WLS error times ``sqrt(max(1, chi2_red))``, with the
  systematic floor ``zp_floor_mag`` added in quadrature.

**Colour term.** When ``calibration.color_term`` is on, ``c`` is the catalog colour
named in ``Calibration.color_name`` (e.g. g-r, on the reference band's system)
and ``c_ref`` (``Calibration.color_ref_mag``) is the median colour of the
calibrators used. ``zp_mag`` is then the zero point **at that median colour**:
applying ``zp_mag`` alone to a target of typical colour is unbiased, and the
exact magnitude of a target of colour c is ``ins_mag + zp_mag + color_term (c - c_ref)``.

A frame that cannot be calibrated keeps a Calibration with NaN zero point, the
NO_CALIBRATION flag and a ``reason`` naming every catalog tried and why it failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from soapd.errors import CatalogError
from soapd.filters import AB_MINUS_VEGA, is_unfiltered
from soapd.flags import Flag

if TYPE_CHECKING:
    from astropy.table import Table

    from soapd.config import CalibrationConfig

__all__ = [
    "Calibration",
    "ReferenceProvider",
    "ZeroPointFit",
    "calibrate_sources",
    "convert_mag_system",
    "fit_zero_point",
    "select_calibrators",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Source flag bits that do not disqualify a calibrator.
_HARMLESS = int(Flag.RECENTERED | Flag.NO_CALIBRATION | Flag.CAL_UNFILTERED)
_MAD_TO_SIGMA = 1.482602218505602


class ReferenceProvider(Protocol):
    """Anything that can hand out reference stars (``soapd.catalogs.CatalogService``)."""

    def chain(self, band: str) -> list[str]:
        """Return catalog names to try, in order, for ``band``."""
        ...

    def stars(
        self, name: str, *, ra_deg: float, dec_deg: float, radius_deg: float, band: str
    ) -> Table:
        """Return catalog ``name``'s stars in the cone; raise CatalogError on failure."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """A frame's zero point (per second of exposure, electrons) and how it was found.

    ``zp_mag``: ``calibrated_mag = ins_mag + zp_mag``; with a colour term it is the
    zero point at the calibrators' median colour ``color_ref_mag`` (module docstring).
    ``scatter_mag``: robust scatter (1.4826 MAD) of the used calibrators' residuals.
    ``n_stars``: calibrators used after clipping; ``n_matched``: one-to-one matches
    before any cut. ``used_index``/``rejected_index``: rows of ``sources`` used, and
    those that passed the cuts but were clipped.
    """

    zp_mag: float = float("nan")
    zp_err_mag: float = float("nan")
    scatter_mag: float = float("nan")
    n_stars: int = 0
    n_matched: int = 0
    catalog: str | None = None
    ref_band: str = ""
    mag_system: str = "none"
    color_term: float | None = None
    color_term_err: float | None = None
    flags: int = 0
    reason: str = ""
    used_index: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    rejected_index: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    #: Colour of the colour term (e.g. "g-r"), empty when none was fitted.
    color_name: str = ""
    #: Median colour of the calibrators (mag): where ``zp_mag`` applies exactly.
    color_ref_mag: float = float("nan")
    #: How the reference magnitudes were obtained (e.g. "R = Jordi2006(r, i)").
    ref_how: str = ""

    @property
    def ok(self) -> bool:
        """True when a finite zero point was fitted."""
        return bool(np.isfinite(self.zp_mag))


@dataclass(frozen=True, slots=True)
class ZeroPointFit:
    """Result of :func:`fit_zero_point` (see the module docstring)."""

    zp_mag: float
    zp_err_mag: float
    scatter_mag: float
    color_term: float | None
    color_term_err: float | None
    color_ref_mag: float
    keep: npt.NDArray[np.bool_]
    chi2_red: float


def _col(table: Table, name: str, default: float = np.nan) -> FloatArray:
    if name not in table.colnames:
        return np.full(len(table), default)
    return np.asarray(np.ma.filled(np.ma.asarray(table[name], dtype=float), np.nan), dtype=float)


def _wls(y: FloatArray, sigma: FloatArray, x: FloatArray | None) -> tuple[FloatArray, FloatArray]:
    """Weighted least squares of ``y = a (+ b x)``; return (params, covariance)."""
    w = 1.0 / sigma**2
    A = np.ones((len(y), 1)) if x is None else np.column_stack([np.ones_like(y), x])
    ata = A.T @ (A * w[:, None])
    cov = np.linalg.pinv(ata)
    params = cov @ (A.T @ (w * y))
    return np.asarray(params, dtype=float), np.asarray(cov, dtype=float)


def _robust_sigma(r: FloatArray) -> float:
    return float(_MAD_TO_SIGMA * np.median(np.abs(r - np.median(r)))) if len(r) else np.nan


def fit_zero_point(
    delta_mag: FloatArray,
    sigma_mag: FloatArray,
    *,
    color_mag: FloatArray | None = None,
    color_err_mag: FloatArray | None = None,
    sigma_clip: float = 3.0,
    max_iter: int = 10,
    min_stars: int = 3,
    floor_mag: float = 0.0,
) -> ZeroPointFit | None:
    """Fit ``delta = zp (+ k (c - c_ref))`` robustly; None if fewer than ``min_stars`` survive.

    Parameters
    ----------
    delta_mag
        Catalog minus instrumental magnitude per calibrator (mag).
    sigma_mag
        Their 1-sigma errors (mag; instrumental and catalog in quadrature).
    color_mag, color_err_mag
        Catalog colour and its error per calibrator; given -> a colour term is fitted.
    sigma_clip, max_iter, min_stars, floor_mag
        Clip threshold (in robust sigma), iteration cap, fewest stars, systematic floor.
    """
    delta = np.asarray(delta_mag, dtype=float)
    sig = np.asarray(sigma_mag, dtype=float)
    use_color = color_mag is not None
    c = np.asarray(color_mag, dtype=float) if use_color else np.zeros_like(delta)
    ce = np.asarray(color_err_mag, dtype=float) if color_err_mag is not None else np.zeros_like(c)
    p_count = 2 if use_color else 1
    if len(delta) < max(min_stars, p_count):
        return None
    c0 = float(np.median(c))
    keep = np.ones(len(delta), dtype=bool)
    params = np.array([np.median(delta), 0.0])
    for _ in range(max_iter):
        slope = float(params[1]) if use_color else 0.0
        sig_eff = np.sqrt(sig**2 + (slope * ce) ** 2)
        resid = delta - (params[0] + slope * (c - c0))
        s = _robust_sigma(resid[keep])
        new_keep = np.abs(resid) <= sigma_clip * np.fmax(s, sig_eff)
        if new_keep.sum() < max(min_stars, p_count):
            return None
        params, _ = _wls(
            delta[new_keep], sig_eff[new_keep], (c - c0)[new_keep] if use_color else None
        )
        if not use_color:
            params = np.array([params[0], 0.0])
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    keep = new_keep
    c_ref = float(np.median(c[keep])) if use_color else float("nan")
    slope = float(params[1]) if use_color else 0.0
    sig_eff = np.sqrt(sig**2 + (slope * ce) ** 2)
    x = (c - c_ref)[keep] if use_color else None
    params, cov = _wls(delta[keep], sig_eff[keep], x)
    model = params[0] + (params[1] * (c - c_ref) if use_color else 0.0)
    resid = delta - model
    n = int(keep.sum())
    dof = n - p_count
    chi2_red = float(np.sum((resid[keep] / sig_eff[keep]) ** 2) / dof) if dof > 0 else float("nan")
    inflate = max(1.0, chi2_red) if np.isfinite(chi2_red) else 1.0
    zp_err = float(np.sqrt(cov[0, 0] * inflate + floor_mag**2))
    return ZeroPointFit(
        zp_mag=float(params[0]),
        zp_err_mag=zp_err,
        scatter_mag=_robust_sigma(resid[keep]),
        color_term=float(params[1]) if use_color else None,
        color_term_err=float(np.sqrt(cov[1, 1] * inflate)) if use_color else None,
        color_ref_mag=c_ref,
        keep=keep,
        chi2_red=chi2_red,
    )


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

    n_src, n_cat = len(sources), len(stars)
    empty = np.zeros(0, np.int64)
    s_ra, s_dec = _col(sources, "ra"), _col(sources, "dec")
    c_ra, c_dec = _col(stars, "ra_deg"), _col(stars, "dec_deg")
    s_ok = np.isfinite(s_ra) & np.isfinite(s_dec)
    c_ok = np.isfinite(c_ra) & np.isfinite(c_dec)
    if not s_ok.any() or not c_ok.any():
        return Selection(empty, empty, 0, {})
    s_ids, c_ids = np.flatnonzero(s_ok), np.flatnonzero(c_ok)
    s_xyz, c_xyz = _unit(s_ra[s_ok], s_dec[s_ok]), _unit(c_ra[c_ok], c_dec[c_ok])
    s_tree, c_tree = cKDTree(s_xyz), cKDTree(c_xyz)
    r_match = _chord(config.match_radius_arcsec)
    d_sc, j_sc = c_tree.query(s_xyz, k=1, distance_upper_bound=r_match)
    _, j_cs = s_tree.query(c_xyz, k=1, distance_upper_bound=r_match)
    pairs_s, pairs_c = [], []
    for a, (d, j) in enumerate(zip(d_sc, j_sc, strict=True)):
        if np.isfinite(d) and j_cs[j] == a:
            pairs_s.append(a)
            pairs_c.append(int(j))
    n_matched = len(pairs_s)
    if not n_matched:
        return Selection(empty, empty, 0, {})
    ps, pc = np.asarray(pairs_s), np.asarray(pairs_c)
    src_i, cat_i = s_ids[ps], c_ids[pc]

    ins = _col(sources, "ins_mag")
    ins_err = _col(sources, "ins_mag_err")
    flag = (
        np.asarray(np.ma.filled(np.ma.asarray(sources["flag"]), 0), dtype=np.int64)
        if "flag" in sources.colnames
        else np.zeros(n_src, np.int64)
    )
    mag, mag_err = _col(stars, "mag"), _col(stars, "mag_err")
    variable = (
        np.asarray(np.ma.filled(np.ma.asarray(stars["variable"]), fill_value=False), dtype=bool)
        if "variable" in stars.colnames
        else np.zeros(n_cat, bool)
    )
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


def _failed(reason: str, *, flags: int, ref_band: str, n_matched: int = 0) -> Calibration:
    return Calibration(
        flags=flags | int(Flag.NO_CALIBRATION),
        reason=reason,
        ref_band=ref_band,
        n_matched=n_matched,
    )


def calibrate_sources(
    sources: Table,
    *,
    band: str,
    center_ra_deg: float,
    center_dec_deg: float,
    radius_deg: float,
    config: CalibrationConfig,
    catalogs: ReferenceProvider,
) -> Calibration:
    """Fit the zero point of ``sources`` (columns ra, dec, ins_mag, ins_mag_err, flag, snr).

    Walks ``catalogs.chain(ref_band)`` and returns the first catalog's fit that
    keeps at least ``min_stars`` calibrators; ``ref_band`` is ``band``, or
    ``calibration.unfiltered_band`` for unfiltered frames (then CAL_UNFILTERED is
    set). Never raises for a missing catalog or too few stars: returns a
    Calibration with NaN zero point, the NO_CALIBRATION flag and a ``reason``.

    Parameters
    ----------
    sources
        One row per detection: ``ra``/``dec`` (deg), ``ins_mag``/``ins_mag_err``
        (mag, -2.5 log10 e-/s, aperture-corrected to total), ``flag`` (Flag bits), ``snr``.
    band
        Canonical band of the frame (``soapd.filters.normalise_filter``).
    center_ra_deg, center_dec_deg, radius_deg
        Cone covering the frame (deg).
    config
        The ``[calibration]`` section.
    catalogs
        Reference star provider (``soapd.catalogs.CatalogService``).
    """
    flags = 0
    ref_band = band
    if is_unfiltered(band):
        ref_band = config.unfiltered_band
        flags |= int(Flag.CAL_UNFILTERED)
    if not config.enabled:
        return _failed(
            "calibration disabled (calibration.enabled = false)", flags=flags, ref_band=ref_band
        )
    if len(sources) == 0:
        return _failed("no detections to calibrate with", flags=flags, ref_band=ref_band)
    chain = catalogs.chain(ref_band)
    if not chain:
        return _failed(
            f"no reference catalog provides band {ref_band!r}; set calibration.chains",
            flags=flags,
            ref_band=ref_band,
        )
    reasons: list[str] = []
    best_matched = 0
    for name in chain:
        try:
            stars = catalogs.stars(
                name,
                ra_deg=center_ra_deg,
                dec_deg=center_dec_deg,
                radius_deg=radius_deg,
                band=ref_band,
            )
        except CatalogError as exc:
            logger.warning(
                "calibration: %s unusable for %s: %s; trying the next catalog", name, ref_band, exc
            )
            reasons.append(f"{name}: {exc}")
            continue
        except Exception as exc:
            logger.warning(
                "calibration: %s failed unexpectedly (%s: %s)", name, type(exc).__name__, exc
            )
            reasons.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        sel = select_calibrators(sources, stars, config)
        best_matched = max(best_matched, sel.n_matched)
        cut_note = ", ".join(f"{k} {v}" for k, v in sel.removed.items()) or "none removed"
        if len(sel.src_idx) < config.min_stars:
            msg = (
                f"{name}: {len(sel.src_idx)} usable calibrators of {sel.n_matched} matched "
                f"(need {config.min_stars}; {cut_note})"
            )
            logger.warning("calibration: %s; trying the next catalog", msg)
            reasons.append(msg)
            continue
        cal = _fit_catalog(
            sources, stars, sel, name=name, ref_band=ref_band, flags=flags, config=config
        )
        if cal.ok:
            logger.info(
                "calibration: %s %s zp=%.3f+-%.3f scatter=%.3f n=%d/%d (%s)",
                name,
                ref_band,
                cal.zp_mag,
                cal.zp_err_mag,
                cal.scatter_mag,
                cal.n_stars,
                cal.n_matched,
                cut_note,
            )
            return cal
        logger.warning("calibration: %s: %s; trying the next catalog", name, cal.reason)
        reasons.append(f"{name}: {cal.reason}")
    return _failed("; ".join(reasons), flags=flags, ref_band=ref_band, n_matched=best_matched)


def _fit_catalog(
    sources: Table,
    stars: Table,
    sel: Selection,
    *,
    name: str,
    ref_band: str,
    flags: int,
    config: CalibrationConfig,
) -> Calibration:
    ins = _col(sources, "ins_mag")[sel.src_idx]
    ins_err = _col(sources, "ins_mag_err")[sel.src_idx]
    mag = _col(stars, "mag")[sel.star_idx]
    mag_err = _col(stars, "mag_err")[sel.star_idx]
    color = _col(stars, "color")[sel.star_idx]
    color_err = _col(stars, "color_err")[sel.star_idx]
    delta, sigma = mag - ins, np.hypot(ins_err, mag_err)
    src_idx = sel.src_idx
    use_color = config.color_term and bool(stars.meta.get("color_name"))
    if use_color:
        has = np.isfinite(color) & np.isfinite(color_err)
        if has.sum() >= max(config.min_stars, 3):
            delta, sigma, color, color_err, src_idx = (
                delta[has],
                sigma[has],
                color[has],
                color_err[has],
                src_idx[has],
            )
        else:
            logger.warning(
                "calibration: %s: only %d calibrators have a %s colour; fitting zp alone",
                name,
                int(has.sum()),
                stars.meta.get("color_name"),
            )
            use_color = False
    fit = fit_zero_point(
        delta,
        sigma,
        color_mag=color if use_color else None,
        color_err_mag=color_err if use_color else None,
        sigma_clip=config.sigma_clip,
        max_iter=config.max_iter,
        min_stars=config.min_stars,
        floor_mag=config.zp_floor_mag,
    )
    system = str(stars.meta.get("system", "none"))
    if fit is None:
        return _failed(
            f"fewer than {config.min_stars} calibrators survive clipping",
            flags=flags,
            ref_band=ref_band,
            n_matched=sel.n_matched,
        )
    zp = fit.zp_mag
    if config.convert_to_ab and system == "Vega" and ref_band in AB_MINUS_VEGA:
        zp += AB_MINUS_VEGA[ref_band]
        system = "AB"
    return Calibration(
        zp_mag=zp,
        zp_err_mag=fit.zp_err_mag,
        scatter_mag=fit.scatter_mag,
        n_stars=int(fit.keep.sum()),
        n_matched=sel.n_matched,
        catalog=name,
        ref_band=ref_band,
        mag_system=system,
        color_term=fit.color_term,
        color_term_err=fit.color_term_err,
        flags=flags,
        reason="",
        used_index=src_idx[fit.keep],
        rejected_index=src_idx[~fit.keep],
        color_name=str(stars.meta.get("color_name", "")) if use_color else "",
        color_ref_mag=fit.color_ref_mag,
        ref_how=str(stars.meta.get("how", "")),
    )


def convert_mag_system(table: Table, to: str) -> Table:
    """Return a copy of a result/lightcurve table with calibrated rows on system ``to``.

    Rows whose ``cal_mag_system`` is the other system and whose ``band`` has an
    entry in ``soapd.filters.AB_MINUS_VEGA`` get ``calibrated_mag``, ``zeropoint``
    and every ``limiting_mag*`` column shifted by m_AB - m_Vega; their
    ``cal_mag_system`` becomes ``to``. Other rows (uncalibrated, unfiltered,
    narrow bands) are left as they are. Raise ValueError for a ``to`` other
    than "AB" or "Vega".
    """
    if to not in ("AB", "Vega"):
        raise ValueError(f"magnitude system must be 'AB' or 'Vega', not {to!r}")
    out = table.copy()
    if len(out) == 0 or "cal_mag_system" not in out.colnames or "band" not in out.colnames:
        return out
    src = "Vega" if to == "AB" else "AB"
    sign = 1.0 if to == "AB" else -1.0
    systems = np.asarray(out["cal_mag_system"]).astype(str)
    bands = np.asarray(out["band"]).astype(str)
    offset = np.array([AB_MINUS_VEGA.get(b, np.nan) for b in bands])
    rows = (systems == src) & np.isfinite(offset)
    cols = [
        c
        for c in out.colnames
        if c in ("calibrated_mag", "zeropoint") or c.startswith("limiting_mag")
    ]
    for c in cols:
        values = np.asarray(out[c], dtype=float).copy()
        values[rows] += sign * offset[rows]
        out[c] = (
            values if not hasattr(out[c], "unit") or out[c].unit is None else values * out[c].unit
        )
    sys_col = systems.astype(object)
    sys_col[rows] = to
    out["cal_mag_system"] = sys_col.astype(str)
    return out
