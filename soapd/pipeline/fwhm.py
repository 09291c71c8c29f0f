"""Stage ``fwhm``: the frame's FWHM from stars only, found on the stellar locus.

Candidates are detections with no sep flag, no masked (saturated/bad) pixel at their
centre, away from the edge, isolated and bright (S/N >= ``extraction.fwhm_min_snr``,
relaxed to 10 when fewer than 3 pass). For each, ``sep.flux_radius`` gives the
half-light radius ``r50`` (through :mod:`soapd.pipeline.sep_wrapper`). Then:

* **not cosmic rays**: ``r50`` below ``extraction.min_star_fwhm_px / 2``, a peak
  pixel holding more than twice the share of the light a Gaussian of that ``r50``
  puts there (:func:`gaussian_peak_fraction`), or no wings (the light within one
  FWHM is more than 2 % and 3 sigma above a Gaussian's 15/16 of the light within two:
  a 3-6 px cosmic-ray blob has r50 ~ 0.8-1 px like an undersampled star, but nothing
  around it) is no star; a locus star whose core fit is narrower than
  ``min_star_fwhm_px`` does not count either;
* **the stellar locus**: stars share one size while galaxies spread over many, so
  the locus is the densest window of +-15 % in ``r50`` (most members, then the
  highest summed S/N), re-centred on its median twice;
* **the FWHM** is the median over the (at most 15 brightest) locus stars of a
  circular Gaussian fitted to each star's core (:func:`core_fwhm`, the pixels within
  one FWHM). Real PSFs have wings that a half-light radius feels and a FWHM does not:
  on the NTT frame of sep's SExtractor set, ``2 r50`` gives 2.6-3.0 px for stars whose
  fitted FWHM is 2.2-2.3 px. For a Gaussian both agree (``FWHM = 2 r50``), which is
  the fallback when no core fit succeeds.

With fewer than :data:`MIN_LOCUS_STARS` on the locus the FWHM is not measured: the
stage then uses ``photometry.fallback_fwhm_px`` (``source = "configured"``) and says
so in a note, rather than inventing one. Pixel values are in electrons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy.special import erf

from soapd.flags import Flag
from soapd.pipeline import sep_wrapper
from soapd.pipeline.background import Background
from soapd.pipeline.context import Context, need
from soapd.pipeline.detect import GAUSS_FWHM_PER_SIGMA, Detections

__all__ = [
    "MIN_LOCUS_STARS",
    "FwhmEstimate",
    "core_fwhm",
    "gaussian_peak_fraction",
    "measure_fwhm",
    "stage_fwhm",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Fewest stars on the stellar locus for a measured FWHM.
MIN_LOCUS_STARS = 2
#: Half-width of the stellar locus in ln(r50) (+-15 %).
LOCUS_HALF_WIDTH = 0.15
#: A candidate whose peak share exceeds this many times a Gaussian's of its r50 is no star.
MAX_SHARPNESS = 2.0
#: Light of a Gaussian within one FWHM over that within two.
_GAUSS_CORE = (1.0 - 2.0**-4) / (1.0 - 2.0**-16)
#: The FWHM is the median core fit of at most this many of the brightest locus stars.
MAX_CORE_FITS = 15


@dataclass(frozen=True, slots=True, kw_only=True)
class FwhmEstimate:
    """The FWHM (px, Gaussian) used for the frame and where it came from.

    ``source`` is "stars" (``n_stars`` locus stars, detections ``index`` brightest
    first, median half-light radius ``r50_px``) or "configured"
    (``photometry.fallback_fwhm_px``; ``n_stars`` 0). :func:`measure_fwhm` returns NaN
    and source "none" when too few stars qualify; the stage replaces that by the
    configured value.
    """

    fwhm_px: float
    n_stars: int
    index: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    source: str = "stars"
    r50_px: float = math.nan


def gaussian_peak_fraction(r50_px: npt.ArrayLike, radius_px: npt.ArrayLike | None = None) -> F64:
    """Return a centred, pixel-integrated Gaussian's peak pixel over its flux within a radius.

    For half-light radius ``r50`` (px): ``sigma = r50 / sqrt(2 ln 2)``, peak pixel share
    ``erf(1 / (2 sqrt(2) sigma))^2``, flux within ``radius_px`` (default: one FWHM,
    ``2 r50``, which holds 15/16 of it) ``1 - exp(-radius^2 / (2 sigma^2))``.
    """
    r50 = np.asarray(r50_px, np.float64)
    sigma = r50 / math.sqrt(2.0 * math.log(2.0))
    radius = 2.0 * r50 if radius_px is None else np.asarray(radius_px, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = erf(1.0 / (2.0 * math.sqrt(2.0) * sigma)) ** 2
        enclosed = 1.0 - np.exp(-0.5 * (radius / sigma) ** 2)
        return np.asarray(share / enclosed, np.float64)


def core_fwhm(data_sub_e: F64, x: F64, y: F64, r50_px: float) -> F64:
    """Return each star's FWHM (px) from a circular Gaussian fitted to its core; NaN if none.

    The pixels within ``max(2 r50_px, 2)`` px of (x, y) (about one FWHM: the core, not
    the wings) are fitted with ``A exp(-rho^2 / (2 sigma^2))`` on the background-subtracted
    image, by least squares with ``A`` solved exactly for each ``sigma`` of a grid
    (0.4-2.5 times the ``r50_px`` Gaussian's, 2 % steps) and the best ``sigma`` refined
    by a parabola. The pixels are chosen by radius only, never by value, so that noise
    does not widen faint stars. The model is sampled at pixel centres, so the FWHM
    includes the pixel (``sigma^2 + 1/12`` px^2), as a fit with astropy's Gaussian2D does.
    """
    ny, nx = data_sub_e.shape
    radius = max(2.0 * r50_px, 2.0)
    half = math.ceil(radius) + 1
    sigma0 = r50_px / math.sqrt(2.0 * math.log(2.0))
    sigmas = sigma0 * np.exp(np.arange(math.log(0.4), math.log(2.5), 0.02))
    out = np.full(len(x), math.nan)
    for k, (xk, yk) in enumerate(zip(x, y, strict=True)):
        ix, iy = round(float(xk)), round(float(yk))
        ys = slice(max(iy - half, 0), min(iy + half + 1, ny))
        xs = slice(max(ix - half, 0), min(ix + half + 1, nx))
        yy, xx = np.mgrid[ys, xs]
        rho2 = ((xx - xk) ** 2 + (yy - yk) ** 2).ravel()
        use = rho2 <= radius**2
        if use.sum() < 5:
            continue
        v = data_sub_e[ys, xs].ravel()[use]
        model = np.exp(-0.5 * rho2[use][None, :] / sigmas[:, None] ** 2)
        amp = (model @ v) / np.einsum("ij,ij->i", model, model)
        chi2 = ((v[None, :] - amp[:, None] * model) ** 2).sum(axis=1)
        best = int(np.argmin(chi2))
        if best in (0, len(sigmas) - 1) or amp[best] <= 0:
            continue
        c0, c1, c2 = chi2[best - 1 : best + 2]
        shift = 0.5 * (c0 - c2) / (c0 - 2.0 * c1 + c2) if c0 - 2.0 * c1 + c2 > 0 else 0.0
        out[k] = GAUSS_FWHM_PER_SIGMA * sigmas[best] * math.exp(0.02 * shift)
    return out


def _candidates(
    detections: Detections, mask: npt.NDArray[np.bool_], snr: F64, min_snr: float
) -> I64:
    """Return detections that may be stars: clean, isolated, unmasked, inside, bright."""
    obj = detections.objects
    ny, nx = mask.shape
    x, y, a, b = obj["x"], obj["y"], obj["a"], obj["b"]
    size = 4.0 * (a + b)
    ix = np.clip(np.round(x).astype(np.int64), 0, nx - 1)
    iy = np.clip(np.round(y).astype(np.int64), 0, ny - 1)
    margin = np.maximum(size, 5.0)
    ok = (
        (obj["flag"] == 0)
        & (detections.nn_px > size)
        & ~mask[iy, ix]
        & (x > margin)
        & (y > margin)
        & (x < nx - 1 - margin)
        & (y < ny - 1 - margin)
        & (a > 0)
        & (b > 0)
        & np.isfinite(obj["peak"])
    )
    sel = np.flatnonzero(ok & (snr >= min_snr))
    if len(sel) < 3:
        sel = np.flatnonzero(ok & (snr >= min(min_snr, 10.0)))
    return sel


def _locus(r50_px: F64, weight: F64) -> I64:
    """Return the members of the densest +-LOCUS_HALF_WIDTH window in ln(r50).

    Each point opens a window; the best holds the most points, ties going to the
    highest summed ``weight``. The window is then re-centred on its members' median.
    """
    if len(r50_px) == 0:
        return np.zeros(0, np.int64)
    ln_r = np.log(r50_px)
    near = np.abs(ln_r[:, None] - ln_r[None, :]) <= LOCUS_HALF_WIDTH
    count = near.sum(axis=1)
    score = near @ weight
    best = max(range(len(ln_r)), key=lambda i: (count[i], score[i]))
    members = np.flatnonzero(near[best])
    for _ in range(2):
        centre = float(np.median(ln_r[members]))
        members = np.flatnonzero(np.abs(ln_r - centre) <= LOCUS_HALF_WIDTH)
    return members


def measure_fwhm(
    data_sub_e: F64,
    detections: Detections,
    background: Background,
    mask: npt.NDArray[np.bool_],
    *,
    min_snr: float,
    min_star_fwhm_px: float,
    max_stars: int = 40,
) -> FwhmEstimate:
    """Return the FWHM (px, Gaussian) of the frame's stars (module docstring).

    Returns NaN, ``n_stars`` 0 and source "none" when fewer than
    :data:`MIN_LOCUS_STARS` stars lie on the locus.
    """
    obj = detections.objects
    none = FwhmEstimate(fwhm_px=math.nan, n_stars=0, source="none")
    if len(obj) == 0:
        return none
    noise2 = obj["npix"] * background.global_rms_e**2 + np.clip(obj["flux"], 0, None)
    snr = obj["flux"] / np.sqrt(np.maximum(noise2, 1e-30))
    sel = _candidates(detections, mask, snr, min_snr)
    sel = sel[np.argsort(-snr[sel])][:max_stars]
    if len(sel) == 0:
        return none
    x, y = obj["x"][sel], obj["y"][sel]
    rmax = np.maximum(4.0 * GAUSS_FWHM_PER_SIGMA * np.sqrt(obj["a"][sel] * obj["b"][sel]), 3.0)
    r50, rflag = sep_wrapper.flux_radius(data_sub_e, x, y, rmax, 0.5, mask=mask, subpix=2)
    r_core = np.maximum(2.0 * np.nan_to_num(r50), 0.5)
    core, _, _ = sep_wrapper.sum_circle(data_sub_e, x, y, r_core, mask=mask, subpix=2)
    outer, _, _ = sep_wrapper.sum_circle(data_sub_e, x, y, 2.0 * r_core, mask=mask, subpix=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharp = (obj["peak"][sel] / core) / gaussian_peak_fraction(r50)
        ring_err = np.sqrt(3.0 * math.pi * r_core**2) * background.global_rms_e
        wingless = core / outer - _GAUSS_CORE > np.maximum(3.0 * ring_err / outer, 0.02)
    good = ((rflag & ~int(Flag.APER_TRUNC)) == 0) & np.isfinite(r50) & (core > 0)
    good &= (r50 >= 0.5 * min_star_fwhm_px) & (sharp <= MAX_SHARPNESS) & ~wingless
    sel, r50 = sel[good], r50[good]
    members = _locus(r50, snr[sel])
    if len(members) < MIN_LOCUS_STARS:
        return replace(none, n_stars=len(members))
    r50_star = float(np.median(r50[members]))
    index = sel[members]  # sel is sorted by S/N: brightest first
    best = index[:MAX_CORE_FITS]
    fits = core_fwhm(data_sub_e, obj["x"][best], obj["y"][best], r50_star)
    fits = fits[np.isfinite(fits)]
    if np.count_nonzero(fits >= min_star_fwhm_px) < min(MIN_LOCUS_STARS, len(fits)):
        return replace(none, n_stars=int(np.count_nonzero(fits >= min_star_fwhm_px)))
    fits = fits[fits >= min_star_fwhm_px]
    return FwhmEstimate(
        fwhm_px=float(np.median(fits)) if len(fits) else 2.0 * r50_star,
        n_stars=len(members),
        index=index,
        source="stars",
        r50_px=r50_star,
    )


def stage_fwhm(ctx: Context) -> Context:
    """Measure the FWHM on the stellar locus; fall back to the configured one when too few."""
    frame = need(ctx.frame, "frame")
    ex = ctx.config.extraction
    est = measure_fwhm(
        need(ctx.data_sub_e, "data"),
        need(ctx.detections, "detections"),
        need(ctx.background, "background"),
        frame.mask,
        min_snr=ex.fwhm_min_snr,
        min_star_fwhm_px=ex.min_star_fwhm_px,
    )
    notes = ctx.notes
    if est.source != "stars":
        fallback = ctx.config.photometry.fallback_fwhm_px
        why = f"{est.n_stars} star(s) on the stellar locus (need {MIN_LOCUS_STARS})"
        notes += (f"FWHM not measured: {why}; using photometry.fallback_fwhm_px = {fallback:g} px",)
        est = FwhmEstimate(fwhm_px=fallback, n_stars=0, source="configured")
    return replace(ctx, fwhm=est, notes=notes)
