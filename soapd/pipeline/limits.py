"""Limiting magnitudes: analytic (local noise) and robust (blank-sky apertures).

Both give the flux ``f_lim`` (electrons, in the row's aperture) that a source
needs to be detected at ``n_sigma``, and turn it into a total-flux magnitude on
the calibrated scale: ``m_lim = zp - 2.5 log10(f_lim / t) + ap_corr_mag``.

* **analytic**: ``f_lim = n sqrt(A sigma_pix^2 (1 + A / N_sky))`` with the
  local pixel RMS (the zero-flux limit of the error model in
  :mod:`soapd.pipeline.photometry`);
* **robust**: ``f_lim = n sigma_ap`` where ``sigma_ap`` is the scatter
  (1.4826 MAD, or std) of sums in random apertures on blank sky. The exclusion
  mask (bad pixels, source segments, source ellipses grown by ``mask_dilate_px``,
  a border of ``edge_buffer_px``) is built **once per frame**, the random centres are drawn
  once with a fixed seed and reused at every radius. It includes correlated
  noise and faint undetected sources, which the analytic limit misses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soapd.pipeline import sep_wrapper

__all__ = ["BlankSky", "analytic_limit_flux", "blank_sky", "exclusion_mask", "flux_to_mag"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlankSky:
    """Blank-sky aperture scatter (electrons) per radius and the sampling diagnostics."""

    sigma_e: dict[float, float]
    n_used: int
    masked_fraction: float


def analytic_limit_flux(
    pixel_var_e2: npt.NDArray[np.float64],
    radius_px: float | npt.NDArray[np.float64],
    n_sky_px: npt.NDArray[np.float64],
    n_sigma: float,
) -> npt.NDArray[np.float64]:
    """Return the ``n_sigma`` limiting aperture flux (electrons) from the local noise."""
    area = np.pi * np.asarray(radius_px, np.float64) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        var = area * pixel_var_e2 * (1.0 + area / n_sky_px)
    return np.asarray(n_sigma * np.sqrt(var), np.float64)


def flux_to_mag(
    flux_e: npt.NDArray[np.float64] | float,
    exptime_s: float,
    zeropoint_mag: float,
    ap_corr_mag: npt.NDArray[np.float64] | float = 0.0,
) -> npt.NDArray[np.float64]:
    """Return ``zp - 2.5 log10(flux / t) + ap_corr`` (NaN where flux <= 0 or zp is NaN)."""
    f = np.asarray(flux_e, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = zeropoint_mag - 2.5 * np.log10(np.where(f > 0, f, np.nan) / exptime_s) + ap_corr_mag
    return np.asarray(m, np.float64)


def exclusion_mask(
    bad: npt.NDArray[np.bool_],
    segmap: npt.NDArray[np.int32],
    objects: npt.NDArray[np.void],
    *,
    dilate_px: int,
) -> npt.NDArray[np.bool_]:
    """Return bad pixels, source segments, and each source's ellipse grown by ``dilate_px``.

    The grown ellipse has semi-axes ``3 a + dilate_px`` and ``3 b + dilate_px`` (sep's
    second-moment axes): it covers a source's faint wings beyond its segment. Drawing
    ellipses costs time in proportion to their area, not to the image size, unlike a
    morphological dilation of the whole segmentation map.
    """
    exclude = bad | (segmap > 0)
    if len(objects) and dilate_px >= 0:
        a = 3.0 * objects["a"] + dilate_px
        b = 3.0 * objects["b"] + dilate_px
        sep_wrapper.mask_ellipse(
            exclude, objects["x"], objects["y"], a=a, b=b, theta=objects["theta"], r=1.0
        )
    return np.asarray(exclude)


def blank_sky(
    data_sub_e: npt.NDArray[np.float64],
    exclude: npt.NDArray[np.bool_],
    radii_px: Sequence[float],
    *,
    n_samples: int,
    edge_buffer_px: int,
    seed: int,
    estimator: str,
    subpix: int,
) -> BlankSky:
    """Return the scatter of blank-sky aperture sums for each radius (electrons).

    Centres are drawn uniformly (``numpy.random.default_rng(seed)``) at least
    ``edge_buffer_px + r_max`` from the edges, on unmasked pixels; apertures of
    the largest radius touching ``exclude`` are dropped, and the survivors are
    measured at every radius. Up to 20 x ``n_samples`` draws are made. Radii with
    fewer than 20 usable apertures get NaN.
    """
    ny, nx = data_sub_e.shape
    r_max = max(radii_px)
    lo = edge_buffer_px + r_max
    nan_result = BlankSky(
        sigma_e=dict.fromkeys(radii_px, math.nan),
        n_used=0,
        masked_fraction=float(exclude.mean()),
    )
    if nx - 1 - 2 * lo <= 0 or ny - 1 - 2 * lo <= 0:
        return nan_result
    rng = np.random.default_rng(seed)
    xs: list[npt.NDArray[np.float64]] = []
    ys: list[npt.NDArray[np.float64]] = []
    kept = 0
    drawn = 0
    while kept < n_samples and drawn < 20 * n_samples:
        batch = max(2 * (n_samples - kept), 64)
        drawn += batch
        x = rng.uniform(lo, nx - 1 - lo, batch)
        y = rng.uniform(lo, ny - 1 - lo, batch)
        centre_ok = ~exclude[np.round(y).astype(np.int64), np.round(x).astype(np.int64)]
        x, y = x[centre_ok], y[centre_ok]
        if len(x) == 0:
            continue
        _, _, flag = sep_wrapper.sum_circle(data_sub_e, x, y, r_max, mask=exclude, subpix=1)
        ok = flag == 0
        xs.append(x[ok])
        ys.append(y[ok])
        kept += int(ok.sum())
    if kept == 0:
        return nan_result
    x = np.concatenate(xs)[:n_samples]
    y = np.concatenate(ys)[:n_samples]
    sigma: dict[float, float] = {}
    for r in radii_px:
        sums, _, _ = sep_wrapper.sum_circle(data_sub_e, x, y, r, subpix=subpix)
        sums = sums[np.isfinite(sums)]
        if len(sums) < 20:
            sigma[r] = math.nan
        elif estimator == "std":
            sigma[r] = float(np.std(sums, ddof=1))
        else:
            sigma[r] = 1.4826 * float(np.median(np.abs(sums - np.median(sums))))
    return BlankSky(sigma_e=sigma, n_used=len(x), masked_fraction=float(exclude.mean()))
