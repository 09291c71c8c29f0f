"""The pipeline stages: each takes the :class:`Context` and returns a new one.

Each stage is a thin adapter around the pure science functions of the sibling
modules; none mutates its input.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from astropy.table import Table

from soapd.errors import FrameRejected
from soapd.flags import Flag
from soapd.pipeline.apcorr import CurveOfGrowth, choose_radii, curve_of_growth
from soapd.pipeline.context import Apertures, Blocks, Context, Limits
from soapd.pipeline.detect import (
    blank_sky_residual,
    extract_sources,
    measure_background,
    measure_fwhm,
    nearest_neighbour_px,
)
from soapd.pipeline.frame import load_frame
from soapd.pipeline.limits import analytic_limit_flux, blank_sky, exclusion_mask
from soapd.pipeline.photometry import (
    MAG_PER_REL_FLUX,
    edge_distance_px,
    measure_apertures,
    sky_sample_size,
)

__all__ = [
    "calibration_sources",
    "check_has_pixels",
    "need",
    "stage_apertures",
    "stage_background",
    "stage_detect",
    "stage_fwhm",
    "stage_limits",
    "stage_load",
    "stage_photometry",
    "stage_skymask",
]

F64 = npt.NDArray[np.float64]


T = TypeVar("T")

#: Bright isolated stars used for the curve of growth, at most (a few dozen suffice).
_COG_MAX_STARS = 50


def need(value: T | None, what: str) -> T:
    """Return ``value``; raise RuntimeError when an earlier stage has not produced it."""
    if value is None:  # pragma: no cover - a programming error in STAGES
        raise RuntimeError(f"stage order: {what} is not available yet")
    return value


def stage_load(ctx: Context) -> Context:
    """Read the FITS file (see :func:`soapd.pipeline.frame.load_frame`)."""
    frame = load_frame(ctx.path, config=ctx.config.frame, meta=ctx.meta)
    return replace(ctx, frame=frame, notes=ctx.notes + frame.notes)


def stage_background(ctx: Context) -> Context:
    """Measure the sep background and subtract it."""
    frame = need(ctx.frame, "frame")
    ex = ctx.config.extraction
    bkg = measure_background(
        frame.data_e, frame.mask, back_size_px=ex.back_size_px, back_filter_size=ex.back_filter_size
    )
    data_sub = bkg.subtracted(frame.data_e)
    data_sub[frame.mask] = 0.0
    return replace(ctx, background=bkg, data_sub_e=data_sub)


def stage_detect(ctx: Context) -> Context:
    """Extract sources against the per-pixel noise."""
    frame = need(ctx.frame, "frame")
    det = extract_sources(
        need(ctx.data_sub_e, "data"),
        need(ctx.background, "background"),
        frame.mask,
        config=ctx.config.extraction,
    )
    notes = ctx.notes
    if det.pixstack != ctx.config.extraction.pixstack:
        notes += (f"sep pixel buffer full: retried with pixstack = {det.pixstack}",)
    if len(det) == 0:
        notes += ("no sources detected",)
    return replace(ctx, detections=det, notes=notes)


def stage_skymask(ctx: Context) -> Context:
    """Build the blank-sky mask once; correct the background to the mean blank sky.

    The mask (bad pixels + source segments dilated by ``limits.mask_dilate_px``)
    serves the background correction here and the robust limits later.
    """
    frame = need(ctx.frame, "frame")
    det = need(ctx.detections, "detections")
    bkg = need(ctx.background, "background")
    exclude = exclusion_mask(
        frame.mask, det.segmap, det.objects, dilate_px=ctx.config.limits.mask_dilate_px
    )
    if not ctx.config.extraction.blank_sky_correction:
        return replace(ctx, exclude=exclude)
    offset, scale = blank_sky_residual(need(ctx.data_sub_e, "data"), bkg.rms_e, exclude)
    bkg = replace(
        bkg,
        global_back_e=bkg.global_back_e + offset,
        global_rms_e=bkg.global_rms_e * scale,
        offset_e=offset,
        rms_scale=scale,
    )
    return replace(ctx, exclude=exclude, background=bkg)


def stage_fwhm(ctx: Context) -> Context:
    """Measure the Gaussian FWHM on isolated, unsaturated, unflagged, bright stars."""
    frame = need(ctx.frame, "frame")
    est = measure_fwhm(
        need(ctx.data_sub_e, "data"),
        need(ctx.detections, "detections"),
        need(ctx.background, "background"),
        frame.mask,
        min_snr=ctx.config.extraction.fwhm_min_snr,
    )
    notes = ctx.notes
    if est.n_stars == 0:
        notes += ("FWHM: no isolated unsaturated star bright enough to measure it",)
    return replace(ctx, fwhm=est, notes=notes)


def stage_apertures(ctx: Context) -> Context:
    """Build the curve of growth, choose the radii and their aperture corrections."""
    frame = need(ctx.frame, "frame")
    det = need(ctx.detections, "detections")
    fwhm = need(ctx.fwhm, "fwhm")
    bkg = need(ctx.background, "background")
    ph = ctx.config.photometry
    data_sub = need(ctx.data_sub_e, "data")
    notes = ctx.notes
    cog: CurveOfGrowth | None = None
    need_cog = ph.aperture_correction or ph.aperture_mode in ("optimal", "multi")
    if need_cog and fwhm.n_stars > 0:
        r_total = max(ph.max_radius_px, 4.0 * fwhm.fwhm_px)
        r_total = min(r_total, 0.25 * min(frame.shape))
        idx = fwhm.index
        obj = det.objects
        nn = nearest_neighbour_px(obj["x"], obj["y"])[idx]
        isolated = idx[nn > r_total]
        if len(isolated) >= 5:
            idx = isolated
        idx = idx[:_COG_MAX_STARS]
        lo = min(ph.min_radius_px, ph.fixed_radius_px, *ph.radii_px)
        grid = np.arange(lo, r_total, ph.radius_step_px)
        scaled = min(max(ph.fwhm_factor * fwhm.fwhm_px, ph.min_radius_px), ph.max_radius_px)
        extra = [ph.fixed_radius_px, *ph.radii_px, round(scaled, 3)]
        grid = np.concatenate([grid, np.asarray(extra, np.float64)])
        x, y = obj["x"][idx], obj["y"][idx]
        cog = curve_of_growth(
            data_sub,
            frame.mask,
            x,
            y,
            radii_px=grid,
            r_total_px=r_total,
            subpix=ph.subpix,
            segmap=det.segmap,
            seg_id=idx + 1,
            pixel_rms_e=bkg.global_rms_e,
            sky_offset_e=bkg.offset_e,
        )
        radii, cal_index, note = choose_radii(ph, fwhm.fwhm_px, cog)
        missing = [r for r in radii if r not in set(cog.radii_px.tolist())]
        if missing and cog.ok:
            extra_cog = curve_of_growth(
                data_sub,
                frame.mask,
                x,
                y,
                radii_px=np.asarray(missing, np.float64),
                r_total_px=r_total,
                subpix=ph.subpix,
                segmap=det.segmap,
                seg_id=idx + 1,
                pixel_rms_e=bkg.global_rms_e,
                sky_offset_e=bkg.offset_e,
            )
            cog = cog.merged(extra_cog)
    else:
        radii, cal_index, note = choose_radii(ph, fwhm.fwhm_px, None)
    if note:
        notes += (note,)
    corrected = bool(ph.aperture_correction and cog is not None and cog.ok)
    if ph.aperture_correction and not corrected:
        notes += (
            (
                "aperture correction unavailable (too few isolated bright stars); "
                "magnitudes are aperture magnitudes"
            ),
        )
    ap_corr = tuple(
        (cog.correction_mag(r) if corrected and cog is not None else 0.0) for r in radii
    )
    aps = Apertures(
        radii_px=radii, cal_index=cal_index, ap_corr_mag=ap_corr, corrected=corrected, cog=cog
    )
    return replace(ctx, apertures=aps, notes=notes)


def stage_photometry(ctx: Context) -> Context:
    """Measure every detection and every measurable forced position at every radius."""
    frame = need(ctx.frame, "frame")
    bkg = need(ctx.background, "background")
    det = need(ctx.detections, "detections")
    aps = need(ctx.apertures, "apertures")
    forced = need(ctx.forced, "forced")
    data_sub = need(ctx.data_sub_e, "data")
    fwhm = need(ctx.fwhm, "fwhm").fwhm_px
    ph = ctx.config.photometry
    obj = det.objects
    n_det = len(obj)
    x = np.concatenate([obj["x"].astype(np.float64), forced.x_px])
    y = np.concatenate([obj["y"].astype(np.float64), forced.y_px])
    if frame.wcs is not None and n_det:
        ra_d, dec_d = frame.wcs.all_pix2world(obj["x"], obj["y"], 0)
        ra_d = np.asarray(ra_d) % 360.0
    else:
        ra_d = dec_d = np.full(n_det, np.nan)
    ra = np.concatenate([np.asarray(ra_d, np.float64), forced.ra_deg])
    dec = np.concatenate([np.asarray(dec_d, np.float64), forced.dec_deg])
    is_forced = np.concatenate([np.zeros(n_det, bool), np.ones(len(forced.names), bool)])
    names = np.array([""] * n_det + list(forced.names), dtype=str)
    measurable = np.concatenate([np.ones(n_det, bool), forced.measurable])
    base_flag = np.concatenate([obj["flag"].astype(np.int64), forced.flag])
    edge = edge_distance_px(x, y, frame.shape)
    base_flag |= np.where(measurable & (edge < ph.edge_margin_px), int(Flag.NEAR_EDGE), 0)
    # Crowding: distance to the nearest *other* detection.
    det_xy = np.column_stack([obj["x"], obj["y"]]) if n_det else np.zeros((0, 2))
    nn = _nearest_other(det_xy, np.column_stack([x, y]), n_det)
    sources = det.segmap > 0 if ph.local_sky else None
    annulus = (ph.annulus_inner_px, ph.annulus_outer_px) if ph.local_sky else None
    mesh = sky_sample_size(ctx.config.extraction.back_size_px)
    shape2 = (len(aps.radii_px), len(x))
    flux = np.full(shape2, np.nan)
    err = np.full(shape2, np.nan)
    flag = np.zeros(shape2, np.int64)
    pvar = np.full(shape2, np.nan)
    nsky = np.full(shape2, np.nan)
    idx = np.flatnonzero(measurable)
    blend_radius_extra = fwhm if math.isfinite(fwhm) else 0.0
    for i, r in enumerate(aps.radii_px):
        sums = measure_apertures(
            data_sub,
            bkg.rms_e,
            frame.mask,
            frame.saturated,
            x[idx],
            y[idx],
            r,
            subpix=ph.subpix,
            mesh_sky_px=mesh,
            annulus_px=annulus,
            sources=sources,
            sky_offset_e=bkg.offset_e,
            rms_scale=bkg.rms_scale,
        )
        flux[i, idx] = sums.flux_e
        err[i, idx] = sums.flux_err_e
        flag[i, idx] = sums.flag
        pvar[i, idx] = sums.pixel_var_e2
        nsky[i, idx] = sums.n_sky_px
        flag[i] |= base_flag
        flag[i] |= np.where(nn < r + blend_radius_extra, int(Flag.BLENDED), 0)
    blocks = Blocks(
        x_px=x,
        y_px=y,
        ra_deg=ra,
        dec_deg=dec,
        is_forced=is_forced,
        target_name=names,
        flux_e=flux,
        flux_err_e=err,
        flag=flag,
        pixel_var_e2=pvar,
        n_sky_px=nsky,
    )
    return replace(ctx, blocks=blocks)


def _nearest_other(det_xy: F64, xy: F64, n_det: int) -> F64:
    """Distance from each position to the nearest detection other than itself.

    Detections (the first ``n_det`` positions) skip themselves; forced positions
    skip a detection within 1.5 px (the target itself).
    """
    n = len(xy)
    out = np.full(n, np.inf)
    if len(det_xy) == 0 or n == 0:
        return out
    if n_det:
        out[:n_det] = nearest_neighbour_px(det_xy[:, 0], det_xy[:, 1])
    if n > n_det:
        from scipy.spatial import cKDTree

        tree = cKDTree(det_xy)
        pts = xy[n_det:]
        ok = np.all(np.isfinite(pts), axis=1)
        k = min(2, len(det_xy))
        dist, _ = tree.query(pts[ok], k=k)
        dist = dist.reshape(len(pts[ok]), k)
        first = dist[:, 0]
        second = dist[:, 1] if k == 2 else np.full(len(first), np.inf)
        out_forced = np.full(len(pts), np.inf)
        out_forced[ok] = np.where(first <= 1.5, second, first)
        out[n_det:] = out_forced
    return out


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
    bkg = need(ctx.background, "background")
    lim = ctx.config.limits
    radii = np.asarray(aps.radii_px, np.float64)[:, None]
    analytic = analytic_limit_flux(blocks.pixel_var_e2, radii, blocks.n_sky_px, lim.n_sigma)
    exclude = need(ctx.exclude, "sky mask")
    blank = blank_sky(
        need(ctx.data_sub_e, "data"),
        exclude,
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
    mesh = sky_sample_size(ctx.config.extraction.back_size_px)
    beta = np.ones(len(aps.radii_px))
    for i, r in enumerate(aps.radii_px):
        area = math.pi * r**2
        white = math.sqrt(area * (1.0 + area / mesh)) * bkg.global_rms_e
        ratio = blank.sigma_e[r] / white if white > 0 else math.nan
        if math.isfinite(ratio):
            beta[i] = min(max(ratio, 1.0), 5.0)
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


def calibration_sources(ctx: Context, radius_index: int) -> Table:
    """Return the detections at one radius as the table ``calibrate_sources`` takes.

    Columns: ra, dec (deg), ins_mag (aperture-corrected, e-/s), ins_mag_err, flag, snr.
    """
    frame = need(ctx.frame, "frame")
    blocks = need(ctx.blocks, "blocks")
    aps = need(ctx.apertures, "apertures")
    det = ~blocks.is_forced
    flux = blocks.flux_e[radius_index, det]
    err = blocks.flux_err_e[radius_index, det]
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = np.where(flux > 0, flux, np.nan)
        ins = -2.5 * np.log10(positive / frame.exptime_s) + aps.ap_corr_mag[radius_index]
        ins_err = MAG_PER_REL_FLUX * err / positive
        snr = flux / err
    return Table(
        {
            "ra": blocks.ra_deg[det],
            "dec": blocks.dec_deg[det],
            "ins_mag": ins,
            "ins_mag_err": ins_err,
            "flag": blocks.flag[radius_index, det],
            "snr": snr,
        }
    )


def check_has_pixels(ctx: Context) -> None:
    """Raise FrameRejected when fewer than 1 % of the pixels are usable."""
    frame = need(ctx.frame, "frame")
    if (~frame.mask).mean() < 0.01:
        raise FrameRejected(f"{frame.path}: fewer than 1 % of the pixels are usable")
