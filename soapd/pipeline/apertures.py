"""Stage ``apertures``: the curve of growth, the aperture radii and their corrections.

The science (curve of growth, radius choice per ``photometry.aperture_mode``) is in
:mod:`soapd.pipeline.apcorr`; this stage picks the stars, the radius grid and turns
the curve into an aperture correction per radius (mag, <= 0).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from soapd.config import PhotometryConfig
from soapd.pipeline.apcorr import CurveOfGrowth, choose_radii, curve_of_growth
from soapd.pipeline.context import Apertures, Context, need

__all__ = ["stage_apertures"]

#: Bright isolated stars used for the curve of growth, at most (a few dozen suffice).
_COG_MAX_STARS = 50

_NO_CORRECTION_NOTE = (
    "aperture correction unavailable (too few isolated bright stars); "
    "magnitudes are aperture magnitudes"
)


def _cog_stars(ctx: Context, r_total_px: float) -> npt.NDArray[np.int64]:
    """Return the detections for the curve of growth: the FWHM stars, isolated if 5 or more are.

    Isolated: no other detection within ``r_total_px``. At most ``_COG_MAX_STARS``.
    """
    idx = need(ctx.fwhm, "fwhm").index
    nn = need(ctx.detections, "detections").nn_px[idx]
    isolated = idx[nn > r_total_px]
    if len(isolated) >= 5:
        idx = isolated
    return idx[:_COG_MAX_STARS]


def _cog_grid(ph: PhotometryConfig, fwhm_px: float, r_total_px: float) -> npt.NDArray[np.float64]:
    """Return the radii (px) to measure: a regular grid plus every radius a mode may use."""
    lo = min(ph.min_radius_px, ph.fixed_radius_px, *ph.radii_px)
    grid = np.arange(lo, r_total_px, ph.radius_step_px)
    scaled = min(max(ph.fwhm_factor * fwhm_px, ph.min_radius_px), ph.max_radius_px)
    extra = [ph.fixed_radius_px, *ph.radii_px, round(scaled, 3)]
    return np.concatenate([grid, np.asarray(extra, np.float64)])


def _measure_cog(
    ctx: Context, idx: npt.NDArray[np.int64], radii_px: npt.NDArray[np.float64], r_total_px: float
) -> CurveOfGrowth:
    """Return the curve of growth of detections ``idx`` at ``radii_px``."""
    frame = need(ctx.frame, "frame")
    det = need(ctx.detections, "detections")
    bkg = need(ctx.background, "background")
    return curve_of_growth(
        need(ctx.data_sub_e, "data"),
        frame.mask,
        det.objects["x"][idx],
        det.objects["y"][idx],
        radii_px=radii_px,
        r_total_px=r_total_px,
        subpix=ctx.config.photometry.subpix,
        segmap=det.segmap,
        seg_id=idx + 1,
        pixel_rms_e=bkg.global_rms_e,
        sky_offset_e=bkg.offset_e,
    )


def _radii_with_cog(ctx: Context) -> tuple[tuple[float, ...], int, str, CurveOfGrowth]:
    """Build the curve of growth, choose the radii, and add any chosen radius it lacks."""
    ph = ctx.config.photometry
    fwhm_px = need(ctx.fwhm, "fwhm").fwhm_px
    r_total = max(ph.max_radius_px, 4.0 * fwhm_px)
    r_total = min(r_total, 0.25 * min(need(ctx.frame, "frame").shape))
    idx = _cog_stars(ctx, r_total)
    cog = _measure_cog(ctx, idx, _cog_grid(ph, fwhm_px, r_total), r_total)
    radii, cal_index, note = choose_radii(ph, fwhm_px, cog)
    missing = [r for r in radii if r not in set(cog.radii_px.tolist())]
    if missing and cog.ok:
        cog = cog.merged(_measure_cog(ctx, idx, np.asarray(missing, np.float64), r_total))
    return radii, cal_index, note, cog


def stage_apertures(ctx: Context) -> Context:
    """Build the curve of growth, choose the radii and their aperture corrections."""
    fwhm = need(ctx.fwhm, "fwhm")
    ph = ctx.config.photometry
    notes = ctx.notes
    cog: CurveOfGrowth | None = None
    need_cog = ph.aperture_correction or ph.aperture_mode in ("optimal", "multi")
    if need_cog and fwhm.n_stars > 0:
        radii, cal_index, note, cog = _radii_with_cog(ctx)
    else:
        radii, cal_index, note = choose_radii(ph, fwhm.fwhm_px, None)
    if note:
        notes += (note,)
    corrected = bool(ph.aperture_correction and cog is not None and cog.ok)
    if ph.aperture_correction and not corrected:
        notes += (_NO_CORRECTION_NOTE,)
    ap_corr = tuple(
        (cog.correction_mag(r) if corrected and cog is not None else 0.0) for r in radii
    )
    aps = Apertures(
        radii_px=radii, cal_index=cal_index, ap_corr_mag=ap_corr, corrected=corrected, cog=cog
    )
    return replace(ctx, apertures=aps, notes=notes)
