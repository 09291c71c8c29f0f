"""Stage ``morphology``: cosmic rays and extended sources, judged against the frame's stars.

Two cheap numbers per detection, both relative to the stars of the stellar locus
(:mod:`soapd.pipeline.fwhm`), in the spirit of SExtractor's FLUX_RADIUS / CLASS_STAR:

* **sharpness** ``s = peak / F(FWHM)``: the brightest pixel over the flux within one
  FWHM. A star's ``s`` is fixed by the PSF (0.07 for a 3.5 px Gaussian); a cosmic ray
  puts its light in 1-6 pixels, so ``s`` is 0.2-1. A detection is a ``COSMIC_RAY``
  when ``s > CR_SHARPNESS s_star`` **and** ``s - s_star`` exceeds ``CR_NSIGMA`` times
  the error of ``s`` (from the noise of the peak pixel and of the flux), so that noisy
  faint stars are not taken for cosmic rays. Without a measured FWHM ``s_star`` is
  that of the sharpest possible star (a Gaussian of ``extraction.min_star_fwhm_px``).
* **concentration** ``c = F(FWHM) / F(2 FWHM)``: a star's is fixed by the PSF (0.94
  for a Gaussian); a galaxy's is lower. ``EXTENDED`` when ``c < EXT_CONCENTRATION
  c_star`` and ``c_star - c`` exceeds ``EXT_NSIGMA`` of its error, at S/N >= 10 (within
  one FWHM and within two). Only with a measured FWHM (the reference must come from
  stars); a cosmic ray is never also EXTENDED.

Detections whose FWHM aperture holds a masked (saturated or bad) pixel are not
judged. Flagged detections are never FWHM stars, never curve-of-growth stars (those
come from the locus) and never calibrators (any flag disqualifies one). The
photometry stage ORs these bits into the detection rows and, with
:func:`cosmic_ray_dominated`, flags forced rows whose flux a cosmic ray makes.
Fluxes are in electrons, positions 0-based px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from soapd.flags import Flag
from soapd.pipeline import sep_wrapper
from soapd.pipeline.context import Context, need
from soapd.pipeline.fwhm import MIN_LOCUS_STARS, gaussian_peak_fraction

__all__ = [
    "CR_NSIGMA",
    "CR_SHARPNESS",
    "EXT_CONCENTRATION",
    "EXT_NSIGMA",
    "Morphology",
    "classify",
    "cosmic_ray_dominated",
    "stage_morphology",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: A cosmic ray is at least this many times sharper than the stars ...
CR_SHARPNESS = 1.5
#: ... by at least this many standard errors of its sharpness.
CR_NSIGMA = 5.0
#: An extended source is at most this fraction of the stars' concentration ...
EXT_CONCENTRATION = 0.9
#: ... by at least this many standard errors, ...
EXT_NSIGMA = 5.0
#: ... at an S/N (flux within 2 FWHM) of at least this.
EXT_MIN_SNR = 10.0
#: Concentration F(FWHM) / F(2 FWHM) of a Gaussian.
GAUSS_CONCENTRATION = (1.0 - 2.0**-4) / (1.0 - 2.0**-16)


@dataclass(frozen=True, slots=True, kw_only=True)
class Morphology:
    """Per-detection morphology (module docstring) and the stars' reference values."""

    #: COSMIC_RAY / EXTENDED bits per detection.
    flag: I64
    #: Peak pixel over the flux within one FWHM.
    sharpness: F64
    #: Flux within one FWHM over the flux within two.
    concentration: F64
    #: Flux within one FWHM (electrons).
    core_flux_e: F64
    #: The stars' median sharpness and concentration (model values without stars).
    star_sharpness: float
    star_concentration: float


def _sharpness(peak_e: F64, peak_var_e2: F64, core_e: F64, core_var_e2: F64) -> tuple[F64, F64]:
    """Return ``peak / core`` and its error (NaN where ``core <= 0``).

    The peak pixel is part of the core sum; treating them as independent overstates
    the error a little, which only makes the cosmic-ray test more cautious.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(core_e > 0, peak_e / core_e, np.nan)
        err = np.sqrt(peak_var_e2 + ratio**2 * core_var_e2) / core_e
    return np.asarray(ratio, np.float64), np.asarray(err, np.float64)


def _concentration(
    core_e: F64, core_var_e2: F64, outer_e: F64, outer_var_e2: F64
) -> tuple[F64, F64]:
    """Return ``c = core / (core + ring)`` and its error; ``outer`` is the sum within 2 FWHM.

    ``ring = outer - core`` is independent of ``core``: ``var(c) = (ring^2 var(core) +
    core^2 var(ring)) / outer^4``.
    """
    ring_var = np.clip(outer_var_e2 - core_var_e2, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        conc = np.where(outer_e > 0, core_e / outer_e, np.nan)
        ring = outer_e - core_e
        err = np.sqrt(ring**2 * core_var_e2 + core_e**2 * ring_var) / outer_e**2
    return np.asarray(conc, np.float64), np.asarray(err, np.float64)


def _extended(  # noqa: PLR0917 - the image, positions and their inner sums
    data_sub_e: F64,
    x: F64,
    y: F64,
    mask: npt.NDArray[np.bool_] | None,
    core_e: F64,
    core_var_e2: F64,
    pixel_var_e2: F64,
    star_rows: I64,
    *,
    fwhm_px: float,
) -> tuple[F64, npt.NDArray[np.bool_], float]:
    """Return the concentration and EXTENDED state of these detections, and the stars'.

    The detections are the bright, judged, not-cosmic-ray ones (and the stars, at
    ``star_rows`` among them); the concentration is ``core_e`` (within one FWHM) over
    the flux within two FWHM.
    """
    outer, _, _ = sep_wrapper.sum_circle(data_sub_e, x, y, 2.0 * fwhm_px, mask=mask, subpix=1)
    outer_var = 4.0 * math.pi * fwhm_px**2 * pixel_var_e2 + np.clip(outer, 0, None)
    conc, conc_err = _concentration(core_e, core_var_e2, outer, outer_var)
    c_star = float(np.nanmedian(conc[star_rows]))
    with np.errstate(invalid="ignore"):
        ext = (outer >= EXT_MIN_SNR * np.sqrt(outer_var)) & (conc < EXT_CONCENTRATION * c_star)
        ext &= c_star - conc > EXT_NSIGMA * conc_err
    return conc, np.asarray(ext, bool), c_star


def classify(
    data_sub_e: F64,
    rms_e: F64,
    mask: npt.NDArray[np.bool_],
    objects: npt.NDArray[np.void],
    *,
    fwhm_px: float,
    star_index: I64,
    min_star_fwhm_px: float,
) -> Morphology:
    """Return COSMIC_RAY / EXTENDED flags of sep ``objects`` (module docstring).

    ``star_index`` are the stellar-locus detections that give the reference values.
    With fewer than :data:`~soapd.pipeline.fwhm.MIN_LOCUS_STARS` (``fwhm_px`` is then
    the configured fallback) the reference is the sharpest star there can be, a
    centred Gaussian of ``min_star_fwhm_px``, and nothing is flagged EXTENDED.
    """
    n = len(objects)
    if n == 0:
        z = np.zeros(0)
        return Morphology(
            flag=np.zeros(0, np.int64),
            sharpness=z,
            concentration=z,
            core_flux_e=z,
            star_sharpness=math.nan,
            star_concentration=math.nan,
        )
    x, y = objects["x"], objects["y"]
    any_mask = mask if mask.any() else None
    f1, _, flag1 = sep_wrapper.sum_circle(data_sub_e, x, y, fwhm_px, mask=any_mask, subpix=1)
    ny, nx = data_sub_e.shape
    centre = (np.clip(np.round(y).astype(np.int64), 0, ny - 1),
              np.clip(np.round(x).astype(np.int64), 0, nx - 1))  # fmt: skip
    pixel_var = rms_e[centre] ** 2
    var1 = math.pi * fwhm_px**2 * pixel_var + np.clip(f1, 0, None)
    peak = objects["peak"].astype(np.float64)
    ip = (np.clip(objects["ypeak"], 0, ny - 1), np.clip(objects["xpeak"], 0, nx - 1))
    sharp, sharp_err = _sharpness(peak, rms_e[ip] ** 2 + np.clip(peak, 0, None), f1, var1)
    judged = (flag1 & int(Flag.APER_HASMASKED | Flag.APER_ALLMASKED)) == 0
    judged &= np.isfinite(sharp)
    stars = star_index[judged[star_index]] if len(star_index) >= MIN_LOCUS_STARS else star_index[:0]
    if len(stars):
        s_star = float(np.median(sharp[stars]))
    else:
        s_star = float(gaussian_peak_fraction(min_star_fwhm_px / 2.0, fwhm_px))
    with np.errstate(invalid="ignore"):
        cr = judged & (sharp > CR_SHARPNESS * s_star) & (sharp - s_star > CR_NSIGMA * sharp_err)
    conc = np.full(n, np.nan)
    ext = np.zeros(n, bool)
    c_star = GAUSS_CONCENTRATION
    if len(stars):
        with np.errstate(invalid="ignore"):
            bright = np.flatnonzero(judged & ~cr & (f1 >= EXT_MIN_SNR * np.sqrt(var1)))
        bright = np.union1d(bright, stars)
        conc[bright], ext[bright], c_star = _extended(
            data_sub_e, x[bright], y[bright], any_mask, f1[bright], var1[bright],
            pixel_var[bright], np.searchsorted(bright, stars), fwhm_px=fwhm_px,
        )  # fmt: skip
    flag = np.zeros(n, np.int64)
    flag[cr] |= int(Flag.COSMIC_RAY)
    flag[ext & ~cr] |= int(Flag.EXTENDED)
    return Morphology(
        flag=flag,
        sharpness=sharp,
        concentration=conc,
        core_flux_e=np.asarray(f1, np.float64),
        star_sharpness=s_star,
        star_concentration=c_star,
    )


def cosmic_ray_dominated(  # noqa: PLR0917 - positions, fluxes and the radius
    x_px: F64,
    y_px: F64,
    flux_e: F64,
    flux_err_e: F64,
    radius_px: float,
    cr_x_px: F64,
    cr_y_px: F64,
    cr_flux_e: F64,
    *,
    snr_threshold: float,
) -> npt.NDArray[np.bool_]:
    """Return True for apertures whose measurement a cosmic ray makes.

    Cosmic rays (detections flagged COSMIC_RAY, with their flux within one FWHM) whose
    centre lies within ``radius_px + 1.5`` px of an aperture's centre count in full;
    the aperture is dominated when they hold at least half of ``flux_e``, or when
    ``flux_e`` minus their flux falls below ``snr_threshold`` times ``flux_err_e``
    while ``flux_e`` itself is above it (the cosmic ray makes the detection).
    """
    n = len(x_px)
    out = np.zeros(n, bool)
    if n == 0 or len(cr_x_px) == 0:
        return out
    d = np.hypot(x_px[:, None] - cr_x_px[None, :], y_px[:, None] - cr_y_px[None, :])
    inside = np.where(d <= radius_px + 1.5, np.clip(cr_flux_e, 0, None)[None, :], 0.0)
    cr = inside.sum(axis=1)
    with np.errstate(invalid="ignore"):
        half = (cr > 0) & (cr >= 0.5 * flux_e)
        makes = (flux_e >= snr_threshold * flux_err_e) & (flux_e - cr < snr_threshold * flux_err_e)
    return np.asarray((cr > 0) & (half | makes), bool)


def stage_morphology(ctx: Context) -> Context:
    """Flag cosmic rays and extended sources among the detections; note how many."""
    det = need(ctx.detections, "detections")
    fwhm = need(ctx.fwhm, "fwhm")
    morph = classify(
        need(ctx.data_sub_e, "data"),
        need(ctx.background, "background").rms_e,
        need(ctx.frame, "frame").mask,
        det.objects,
        fwhm_px=fwhm.fwhm_px,
        star_index=fwhm.index,
        min_star_fwhm_px=ctx.config.extraction.min_star_fwhm_px,
    )
    notes = ctx.notes
    n_cr = int(np.count_nonzero(morph.flag & int(Flag.COSMIC_RAY)))
    n_ext = int(np.count_nonzero(morph.flag & int(Flag.EXTENDED)))
    if n_cr or n_ext:
        notes += (f"morphology: {n_cr} cosmic ray(s), {n_ext} extended source(s) flagged",)
    return replace(ctx, morphology=morph, notes=notes)
