"""Stage ``photometry``: aperture sums, the one CCD error model (electrons) and per-row flags.

Every detection and every measurable forced position is measured at every radius
of the ``apertures`` stage; the results are (n_radii, n_positions) arrays
(:class:`~soapd.pipeline.context.Blocks`), detections first.

Error model, in electrons, for an aperture of area ``A`` px holding source
flux ``F``::

    sigma_F^2 = max(F, 0)                      Poisson noise of the source
              + sum_aperture sigma_pix^2       sky + read noise per pixel
              + A^2 sigma_pix^2 / N_sky        error of the sky estimate

``sigma_pix`` is the local background RMS from sep's RMS map, which measures
sky Poisson noise and read noise together (for a CCD, ``sigma_pix^2 = sky_e +
RN_e^2``; the SAAO regression test checks this on a real frame). ``N_sky`` is
the number of pixels behind the sky estimate: the local annulus when one is
used, else the background mesh (``back_size_px^2 / (pi/2)``, the effective size
of a median). The same ``sigma_F`` gives S/N, ``ins_mag_err`` and the
analytic limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from soapd.flags import Flag
from soapd.pipeline import sep_wrapper
from soapd.pipeline.contamination import contamination_e, enclosed_profile
from soapd.pipeline.context import Blocks, Context, need
from soapd.pipeline.morphology import cosmic_ray_dominated

__all__ = [
    "MAG_PER_REL_FLUX",
    "ApertureSums",
    "edge_distance_px",
    "measure_apertures",
    "sky_sample_size",
    "stage_photometry",
]

F64 = npt.NDArray[np.float64]

#: 2.5 / ln(10): converts a relative flux error into a magnitude error.
MAG_PER_REL_FLUX = 2.5 / math.log(10.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApertureSums:
    """Per-position aperture results (electrons) at one radius."""

    flux_e: npt.NDArray[np.float64]
    flux_err_e: npt.NDArray[np.float64]
    flag: npt.NDArray[np.int64]
    pixel_var_e2: npt.NDArray[np.float64]
    n_sky_px: npt.NDArray[np.float64]


def sky_sample_size(back_size_px: int) -> float:
    """Return the effective pixel count of a mesh-median sky estimate (``bw^2 / (pi/2)``)."""
    return float(back_size_px) ** 2 / (math.pi / 2.0)


def edge_distance_px(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], shape: tuple[int, int]
) -> npt.NDArray[np.float64]:
    """Return each 0-based position's distance (px) to the nearest image edge.

    The edges are the outer borders of the first and last pixels (-0.5 and n - 0.5);
    the distance is negative for positions off the image.
    """
    ny, nx = shape
    return np.asarray(np.minimum.reduce([x + 0.5, y + 0.5, nx - 0.5 - x, ny - 0.5 - y]), np.float64)


def _local_sky(
    data_sub_e: npt.NDArray[np.float64],
    exclude: npt.NDArray[np.bool_],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    annulus_px: tuple[float, float],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return (mean residual sky per pixel, usable annulus pixels) around each position."""
    rin, rout = annulus_px
    ones = np.ones_like(data_sub_e)
    total, _, _ = sep_wrapper.sum_circann(data_sub_e, x, y, rin, rout, mask=exclude, subpix=1)
    area, _, _ = sep_wrapper.sum_circann(ones, x, y, rin, rout, mask=exclude, subpix=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sky = np.where(area >= 10.0, total / area, 0.0)
    return np.asarray(sky, np.float64), np.asarray(area, np.float64)


def measure_apertures(  # noqa: PLR0917 - the image planes and positions are the data
    data_sub_e: npt.NDArray[np.float64],
    rms_e: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    saturated: npt.NDArray[np.bool_],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    radius_px: float,
    *,
    subpix: int,
    mesh_sky_px: float,
    annulus_px: tuple[float, float] | None = None,
    sources: npt.NDArray[np.bool_] | None = None,
    sky_offset_e: float = 0.0,
    rms_scale: float = 1.0,
) -> ApertureSums:
    """Measure circular apertures of ``radius_px`` at 0-based ``x, y`` (electrons, sky removed).

    Errors follow the model of this module. Masked pixels are left out of the sums
    (flag APER_HASMASKED); a saturated pixel inside the aperture sets SATURATED.
    With ``annulus_px = (r_in, r_out)`` the mean residual sky of the annulus, with
    ``sources`` pixels excluded, is subtracted and its error uses the annulus size.
    Without an annulus, ``sky_offset_e`` (per pixel) is subtracted; ``rms_scale``
    multiplies ``rms_e`` (the blank-sky corrections of the background).
    Raise ExtractionError if sep fails.
    """
    n = len(x)
    if n == 0:
        z = np.zeros(0)
        return ApertureSums(
            flux_e=z, flux_err_e=z, flag=np.zeros(0, np.int64), pixel_var_e2=z, n_sky_px=z
        )
    ny, nx = data_sub_e.shape
    any_mask = bool(mask.any())
    flux, err, flag = sep_wrapper.sum_circle(
        data_sub_e,
        x,
        y,
        radius_px,
        err=rms_e,
        mask=mask if any_mask else None,
        gain=1.0,
        subpix=subpix,
    )
    flag = flag.astype(np.int64)
    # saturated pixels are masked, so only apertures holding masked pixels can hold them
    some = np.flatnonzero(flag & int(Flag.APER_HASMASKED))
    if len(some) and saturated.any():
        _, _, sat = sep_wrapper.sum_circle(
            data_sub_e, x[some], y[some], radius_px, mask=saturated, subpix=1
        )
        flag[some] |= np.where(sat & int(Flag.APER_HASMASKED), int(Flag.SATURATED), 0)
    ix = np.clip(np.round(x).astype(np.int64), 0, nx - 1)
    iy = np.clip(np.round(y).astype(np.int64), 0, ny - 1)
    pixel_var = (rms_scale * rms_e[iy, ix]) ** 2
    area = math.pi * radius_px**2
    if annulus_px is not None:
        exclude = mask if sources is None else (mask | sources)
        sky, n_sky = _local_sky(data_sub_e, exclude, x, y, annulus_px)
        flux = flux - sky * area
    else:
        flux = flux - sky_offset_e * area
        n_sky = np.full(n, mesh_sky_px)
    if rms_scale != 1.0:
        poisson = np.clip(flux, 0.0, None)
        err = np.sqrt(np.clip(err**2 - poisson, 0.0, None) * rms_scale**2 + poisson)
    with np.errstate(divide="ignore", invalid="ignore"):
        sky_term = np.where(n_sky > 0, area**2 * pixel_var / n_sky, np.inf)
    flux_err = np.sqrt(err**2 + sky_term)
    return ApertureSums(
        flux_e=np.asarray(flux, np.float64),
        flux_err_e=np.asarray(flux_err, np.float64),
        flag=flag,
        pixel_var_e2=np.asarray(pixel_var, np.float64),
        n_sky_px=np.asarray(n_sky, np.float64),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Positions:
    """Where to measure: detections then forced positions (0-based px, deg), with base flags."""

    x_px: F64
    y_px: F64
    ra_deg: F64
    dec_deg: F64
    is_forced: npt.NDArray[np.bool_]
    names: npt.NDArray[np.str_]
    measurable: npt.NDArray[np.bool_]
    base_flag: npt.NDArray[np.int64]
    #: Distance (px) to the nearest other detection (crowding).
    nn_px: F64


def _positions(ctx: Context) -> _Positions:
    """Return every position to measure, its sky coordinates and its radius-free flags."""
    frame = need(ctx.frame, "frame")
    det = need(ctx.detections, "detections")
    obj = det.objects
    forced = need(ctx.forced, "forced")
    n_det = len(obj)
    x = np.concatenate([obj["x"].astype(np.float64), forced.x_px])
    y = np.concatenate([obj["y"].astype(np.float64), forced.y_px])
    if frame.wcs is not None and n_det:
        ra_d, dec_d = frame.wcs.all_pix2world(obj["x"], obj["y"], 0)
        ra_d = np.asarray(ra_d) % 360.0
    else:
        ra_d = dec_d = np.full(n_det, np.nan)
    measurable = np.concatenate([np.ones(n_det, bool), forced.measurable])
    morph = need(ctx.morphology, "morphology").flag
    base_flag = np.concatenate([obj["flag"].astype(np.int64) | morph, forced.flag])
    edge = edge_distance_px(x, y, frame.shape)
    near = measurable & (edge < ctx.config.photometry.edge_margin_px)
    base_flag |= np.where(near, int(Flag.NEAR_EDGE), 0)
    det_xy = np.column_stack([obj["x"], obj["y"]]) if n_det else np.zeros((0, 2))
    return _Positions(
        x_px=x,
        y_px=y,
        ra_deg=np.concatenate([np.asarray(ra_d, np.float64), forced.ra_deg]),
        dec_deg=np.concatenate([np.asarray(dec_d, np.float64), forced.dec_deg]),
        is_forced=np.concatenate([np.zeros(n_det, bool), np.ones(len(forced.names), bool)]),
        names=np.array([""] * n_det + list(forced.names), dtype=str),
        measurable=measurable,
        base_flag=base_flag,
        nn_px=_nearest_other(det_xy, np.column_stack([x, y]), det.nn_px),
    )


def _nearest_other(det_xy: F64, xy: F64, det_nn_px: F64) -> F64:
    """Distance from each position to the nearest detection other than itself.

    The first ``len(det_nn_px)`` positions are the detections, whose distances are
    given; forced positions skip a detection within 1.5 px (the target itself).
    """
    n, n_det = len(xy), len(det_nn_px)
    out = np.full(n, np.inf)
    out[:n_det] = det_nn_px
    if len(det_xy) == 0 or n == n_det:
        return out
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


def _forced_flags(ctx: Context, pos: _Positions, flux: F64, err: F64) -> npt.NDArray[np.int64]:
    """Return COSMIC_RAY / CONTAMINATED bits of the forced positions, shape (n_radii, n_forced).

    COSMIC_RAY: :func:`~soapd.pipeline.morphology.cosmic_ray_dominated`; CONTAMINATED:
    the neighbours' light (:func:`~soapd.pipeline.contamination.contamination_e`) exceeds
    ``photometry.contamination_max_sigma`` times the flux error.
    """
    aps = need(ctx.apertures, "apertures")
    obj = need(ctx.detections, "detections").objects
    morph = need(ctx.morphology, "morphology")
    ph = ctx.config.photometry
    n_det = len(obj)
    forced = np.flatnonzero(pos.is_forced)
    out = np.zeros((len(aps.radii_px), len(forced)), np.int64)
    if len(forced) == 0 or n_det == 0:
        return out
    is_cr = (morph.flag & int(Flag.COSMIC_RAY)) != 0
    profile = enclosed_profile(aps.cog, need(ctx.fwhm, "fwhm").fwhm_px)
    r_cal = aps.radii_px[aps.cal_index]
    total = flux[aps.cal_index, :n_det] / max(profile.enclosed(r_cal), 1e-3)
    xy = np.column_stack([obj["x"], obj["y"]]).astype(np.float64)
    fx, fy = pos.x_px[forced], pos.y_px[forced]
    for i, r in enumerate(aps.radii_px):
        f, e = flux[i, forced], err[i, forced]
        dominated = cosmic_ray_dominated(
            fx, fy, f, e, r, xy[is_cr, 0], xy[is_cr, 1], morph.core_flux_e[is_cr],
            snr_threshold=ph.forced_snr_threshold,
        )  # fmt: skip
        light = contamination_e(fx, fy, r, xy[~is_cr], total[~is_cr], profile=profile)
        with np.errstate(invalid="ignore"):
            contaminated = light > ph.contamination_max_sigma * e
        out[i] = np.where(dominated, int(Flag.COSMIC_RAY), 0)
        out[i] |= np.where(contaminated, int(Flag.CONTAMINATED), 0)
    return out


def stage_photometry(ctx: Context) -> Context:
    """Measure every detection and every measurable forced position at every radius.

    Rows get the sep and position flags, the detections' morphology flags, BLENDED
    when another detection lies within the radius plus one FWHM, and forced rows
    COSMIC_RAY / CONTAMINATED (:func:`_forced_flags`).
    """
    frame = need(ctx.frame, "frame")
    bkg = need(ctx.background, "background")
    aps = need(ctx.apertures, "apertures")
    fwhm = need(ctx.fwhm, "fwhm").fwhm_px
    ph = ctx.config.photometry
    pos = _positions(ctx)
    data_sub = need(ctx.data_sub_e, "data")
    sources = need(ctx.detections, "detections").segmap > 0 if ph.local_sky else None
    annulus = (ph.annulus_inner_px, ph.annulus_outer_px) if ph.local_sky else None
    mesh = sky_sample_size(ctx.config.extraction.back_size_px)
    idx = np.flatnonzero(pos.measurable)
    shape2 = (len(aps.radii_px), len(pos.x_px))
    flux, err, pvar, nsky = (np.full(shape2, np.nan) for _ in range(4))
    flag = np.zeros(shape2, np.int64)
    blend_radius_extra = fwhm if math.isfinite(fwhm) else 0.0
    for i, r in enumerate(aps.radii_px):
        sums = measure_apertures(
            data_sub,
            bkg.rms_e,
            frame.mask,
            frame.saturated,
            pos.x_px[idx],
            pos.y_px[idx],
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
        flag[i] |= pos.base_flag
        flag[i] |= np.where(pos.nn_px < r + blend_radius_extra, int(Flag.BLENDED), 0)
    flag[:, pos.is_forced] |= _forced_flags(ctx, pos, flux, err)
    blocks = Blocks(
        x_px=pos.x_px,
        y_px=pos.y_px,
        ra_deg=pos.ra_deg,
        dec_deg=pos.dec_deg,
        is_forced=pos.is_forced,
        target_name=pos.names,
        flux_e=flux,
        flux_err_e=err,
        flag=flag,
        pixel_var_e2=pvar,
        n_sky_px=nsky,
    )
    return replace(ctx, blocks=blocks)
