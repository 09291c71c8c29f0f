"""Curve of growth, aperture corrections to total flux, and the aperture radii per mode.

The curve of growth ``c(r)`` is the median, over bright isolated unsaturated
stars, of ``F(r) / F(r_total)``, with ``r_total = max(max_radius_px, 4 FWHM)``.
The aperture correction of radius ``r`` is ``ap_corr_mag = 2.5 log10 c(r)``
(<= 0): ``ins_mag = -2.5 log10(F(r) / t) + ap_corr_mag`` is then a total-flux
magnitude at every radius, so magnitudes at different radii agree and one zero
point serves all of them (skynetsoap bug B3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from astropy.stats import mad_std

from soapd.config import PhotometryConfig
from soapd.pipeline import sep_wrapper

__all__ = ["CurveOfGrowth", "choose_radii", "curve_of_growth"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CurveOfGrowth:
    """Median enclosed-flux fraction ``fraction`` at ``radii_px`` (relative to ``r_total_px``)."""

    radii_px: npt.NDArray[np.float64]
    fraction: npt.NDArray[np.float64]
    r_total_px: float
    n_stars: int

    @property
    def ok(self) -> bool:
        """True when at least 3 stars built the curve."""
        return self.n_stars >= 3

    def correction_mag(self, radius_px: float) -> float:
        """Return ``2.5 log10 c(r)`` (<= 0 mag), 0 beyond ``r_total``, NaN if not ``ok``."""
        if not self.ok:
            return math.nan
        if radius_px >= self.r_total_px:
            return 0.0
        frac = float(np.interp(radius_px, self.radii_px, self.fraction))
        if frac <= 0:
            return math.nan
        return 2.5 * math.log10(min(frac, 1.0))

    def merged(self, other: CurveOfGrowth) -> CurveOfGrowth:
        """Return this curve with ``other``'s radii added (same stars and ``r_total``)."""
        if not other.ok:
            return self
        radii = np.concatenate([self.radii_px, other.radii_px])
        frac = np.concatenate([self.fraction, other.fraction])
        radii, first = np.unique(radii, return_index=True)
        frac = np.maximum.accumulate(frac[first])
        return CurveOfGrowth(
            radii_px=radii, fraction=frac, r_total_px=self.r_total_px, n_stars=self.n_stars
        )

    def optimal_radius(self, min_px: float, max_px: float) -> float:
        """Radius in [min_px, max_px] maximising the S/N of a faint star: ``c(r) / r``.

        For a background-limited source S/N is proportional to c(r) / sqrt(pi r^2).
        """
        grid = np.arange(min_px, max_px + 1e-9, 0.1)
        frac = np.interp(grid, self.radii_px, self.fraction)
        return float(grid[int(np.argmax(frac / grid))])


def curve_of_growth(
    data_sub_e: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    *,
    radii_px: npt.NDArray[np.float64],
    r_total_px: float,
    subpix: int,
    segmap: npt.NDArray[np.int32] | None = None,
    seg_id: npt.NDArray[np.int64] | None = None,
    pixel_rms_e: float = 0.0,
    min_snr: float = 50.0,
    sky_offset_e: float = 0.0,
) -> CurveOfGrowth:
    """Return the curve of growth of the stars at 0-based ``x, y``.

    Stars whose apertures touch masked pixels or the edge at ``r_total_px``, or
    whose total flux is not positive, are left out. With ``segmap`` and ``seg_id``
    (sep's segmentation map and the stars' ids) pixels of other detected objects
    are left out of each star's sums, so neighbours do not inflate the total.
    Only stars whose total flux has S/N >= ``min_snr`` (noise from ``pixel_rms_e``
    and Poisson) are used (20 if fewer than 3 pass); stars whose curve departs
    from the median curve by more than 5 robust sigma inside ``r_total / 2`` are
    dropped; the curve is the **flux-weighted** ratio ``sum F_i(r) / sum
    F_i(r_total)``, so the noise of faint stars does not dominate it. ``sky_offset_e``
    (per pixel) is subtracted from every sum.
    """
    grid = np.unique(np.concatenate([np.asarray(radii_px, np.float64), [r_total_px]]))
    grid = grid[(grid > 0) & (grid <= r_total_px)]
    n = len(x)
    empty = CurveOfGrowth(
        radii_px=grid, fraction=np.ones_like(grid), r_total_px=r_total_px, n_stars=0
    )
    if n == 0:
        return empty
    xs = np.tile(x, len(grid))
    ys = np.tile(y, len(grid))
    rs = np.repeat(grid, n)
    any_mask = mask if mask.any() else None
    seg: dict[str, object] = {}
    if segmap is not None and seg_id is not None:
        seg = {"segmap": segmap, "seg_id": np.tile(np.asarray(seg_id, np.int32), len(grid))}
    _, _, edge_flag = sep_wrapper.sum_circle(data_sub_e, x, y, r_total_px, mask=any_mask, subpix=1)
    flux, _, _ = sep_wrapper.sum_circle(data_sub_e, xs, ys, rs, mask=any_mask, subpix=subpix, **seg)
    flux = flux.reshape(len(grid), n) - sky_offset_e * np.pi * grid[:, None] ** 2
    total = flux[-1]
    noise = np.sqrt(np.pi * r_total_px**2 * pixel_rms_e**2 + np.clip(total, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(noise > 0, total / noise, np.inf)
    usable = (total > 0) & (edge_flag == 0)
    good = usable & (snr >= min_snr)
    if good.sum() < 3:
        good = usable & (snr >= min(min_snr, 20.0))
    if good.sum() == 0:
        return empty
    frac = flux[:, good] / total[good]
    median = np.median(frac, axis=1, keepdims=True)
    mad = mad_std(frac, axis=1)[:, None]
    inner = grid <= 0.5 * r_total_px
    outlier = np.any((np.abs(frac - median) > 5.0 * np.maximum(mad, 1e-4))[inner], axis=0)
    keep = np.flatnonzero(good)
    if (~outlier).sum() >= 3:
        keep = keep[~outlier]
    curve = flux[:, keep].sum(axis=1) / total[keep].sum()
    curve = np.maximum.accumulate(np.clip(curve, 1e-6, None))
    curve /= curve[-1]
    return CurveOfGrowth(radii_px=grid, fraction=curve, r_total_px=r_total_px, n_stars=len(keep))


def choose_radii(
    config: PhotometryConfig, fwhm_px: float, cog: CurveOfGrowth | None
) -> tuple[tuple[float, ...], int, str]:
    """Return (radii in px, index of the calibration radius, note) for the aperture mode.

    ``fwhm_scaled`` falls back to ``fixed_radius_px`` without a FWHM, and
    ``optimal`` falls back to ``fwhm_scaled`` without a curve of growth; the note
    says so. In ``multi`` mode the calibration radius is the one nearest the
    optimal radius (or the middle one without a curve of growth).
    """
    lo, hi = config.min_radius_px, config.max_radius_px
    note = ""
    scaled: float | None = None
    if math.isfinite(fwhm_px) and fwhm_px > 0:
        scaled = min(max(config.fwhm_factor * fwhm_px, lo), hi)
    mode = config.aperture_mode
    if mode == "fixed":
        return (config.fixed_radius_px,), 0, note
    if mode == "multi":
        radii = tuple(float(r) for r in config.radii_px)
        if cog is not None and cog.ok:
            best = cog.optimal_radius(lo, hi)
            idx = int(np.argmin([abs(r - best) for r in radii]))
        else:
            idx = len(radii) // 2
        return radii, idx, note
    if mode == "optimal":
        if cog is not None and cog.ok:
            return (round(cog.optimal_radius(lo, hi), 2),), 0, note
        note = "optimal aperture: no curve of growth (too few stars); using fwhm_scaled"
    if scaled is not None:
        return (round(scaled, 3),), 0, note
    return (
        (config.fixed_radius_px,),
        0,
        (f"no FWHM measured; using photometry.fixed_radius_px = {config.fixed_radius_px} px"),
    )
