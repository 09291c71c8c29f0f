"""Stage ``limits``: limiting magnitudes, analytic (local noise) and robust (blank-sky apertures).

Both give the flux ``f_lim`` (electrons, in the row's aperture) that a source
needs to be detected at ``n_sigma``, and turn it into a total-flux magnitude on
the calibrated scale: ``m_lim = zp - 2.5 log10(f_lim / t) + ap_corr_mag``.

* **analytic**: ``f_lim = n sqrt(A sigma_pix^2 (1 + A / N_sky))`` with the
  local pixel RMS (the zero-flux limit of the error model in
  :mod:`soapd.pipeline.photometry`);
* **robust**: ``f_lim = n sigma_ap`` where ``sigma_ap`` is the scatter
  (1.4826 MAD, or std) of sums in random apertures on blank sky. The exclusion
  mask (bad pixels, source segments, source ellipses grown by ``mask_dilate_px``)
  is built **once per frame** by the ``skymask`` stage
  (:mod:`soapd.pipeline.skymask`); the random centres, at least ``edge_buffer_px``
  from the edges, are drawn once with a fixed seed and reused at every radius. It
  includes correlated noise and faint undetected sources, which the analytic
  limit misses.

The same blank-sky scatter, compared with the white-noise prediction, scales the
sky part of the flux errors when ``photometry.correlated_noise`` is on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from astropy.stats import mad_std

from soapd.pipeline import sep_wrapper
from soapd.pipeline.context import Context, Limits, need
from soapd.pipeline.photometry import sky_sample_size

__all__ = ["BlankSky", "analytic_limit_flux", "blank_sky", "flux_to_mag", "stage_limits"]


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
            sigma[r] = float(mad_std(sums))
    return BlankSky(sigma_e=sigma, n_used=len(x), masked_fraction=float(exclude.mean()))


def _noise_beta(
    blank: BlankSky, radii_px: tuple[float, ...], *, mesh_sky_px: float, rms_e: float
) -> npt.NDArray[np.float64]:
    """Return ``beta(r) = sigma_blank(r) / sigma_white(r)``, clipped to [1, 5] (1 where unknown).

    ``sigma_white(r) = sqrt(A (1 + A / N_sky)) * rms`` is the white-noise scatter of an
    aperture of area ``A`` with the mesh sky estimate of ``N_sky`` pixels.
    """
    beta = np.ones(len(radii_px))
    for i, r in enumerate(radii_px):
        area = math.pi * r**2
        white = math.sqrt(area * (1.0 + area / mesh_sky_px)) * rms_e
        ratio = blank.sigma_e[r] / white if white > 0 else math.nan
        if math.isfinite(ratio):
            beta[i] = min(max(ratio, 1.0), 5.0)
    return beta


def stage_limits(ctx: Context) -> Context:
    """Blank-sky scatter per radius (mask built once), analytic limits, correlated noise.

    With ``photometry.correlated_noise`` the sky part of every flux error is scaled by
    ``beta(r)^2``, where ``beta(r) = sigma_blank(r) / sigma_white(r) >= 1`` compares the
    scatter of blank-sky aperture sums with the white-noise prediction ``sqrt(A
    (1 + A / N_sky)) * rms``: correlated pixel noise and faint unresolved sources then
    count in the errors. The analytic limit stays the white-noise one.
    """
    blocks = need(ctx.blocks, "blocks")
    aps = need(ctx.apertures, "apertures")
    lim = ctx.config.limits
    radii = np.asarray(aps.radii_px, np.float64)[:, None]
    analytic = analytic_limit_flux(blocks.pixel_var_e2, radii, blocks.n_sky_px, lim.n_sigma)
    blank = blank_sky(
        need(ctx.data_sub_e, "data"),
        need(ctx.exclude, "sky mask"),
        aps.radii_px,
        n_samples=lim.n_samples,
        edge_buffer_px=lim.edge_buffer_px,
        seed=lim.random_seed,
        estimator=lim.sigma_estimator,
        subpix=ctx.config.photometry.subpix,
    )
    robust_per_radius = np.array([lim.n_sigma * blank.sigma_e[r] for r in aps.radii_px])
    robust = np.broadcast_to(robust_per_radius[:, None], analytic.shape).copy()
    notes = ctx.notes
    if blank.n_used < 20:
        notes += ("robust limit: too little blank sky; limiting_mag falls back to analytic",)
    beta = _noise_beta(
        blank,
        aps.radii_px,
        mesh_sky_px=sky_sample_size(ctx.config.extraction.back_size_px),
        rms_e=need(ctx.background, "background").global_rms_e,
    )
    if ctx.config.photometry.correlated_noise and np.any(beta > 1.0):
        areas = np.pi * radii**2
        with np.errstate(invalid="ignore", divide="ignore"):
            sky_var = blocks.pixel_var_e2 * areas * (1.0 + areas / blocks.n_sky_px)
        err = np.sqrt(blocks.flux_err_e**2 + (beta[:, None] ** 2 - 1.0) * sky_var)
        blocks = replace(blocks, flux_err_e=err)
    limits = Limits(
        analytic_flux_e=analytic, robust_flux_e=robust, blank=blank, beta=tuple(beta.tolist())
    )
    return replace(ctx, limits=limits, blocks=blocks, notes=notes)
