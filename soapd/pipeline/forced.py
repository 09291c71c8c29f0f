"""Stage ``forced``: place the requested targets on the frame, flag them, optionally re-centre.

Positions are 0-based px. A frame without WCS cannot place them: each target then
gets a NO_WCS | OFF_FRAME row with no flux. The photometry itself is done with the
detections by the ``photometry`` stage.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import numpy.typing as npt
from astropy.coordinates import angular_separation
from astropy.wcs import WCS

from soapd.flags import Flag
from soapd.pipeline import sep_wrapper
from soapd.pipeline.context import Context, Forced, need
from soapd.pipeline.detect import GAUSS_FWHM_PER_SIGMA
from soapd.pipeline.photometry import edge_distance_px, measure_apertures, sky_sample_size

__all__ = ["frame_footprint", "stage_forced"]

F64 = npt.NDArray[np.float64]


def frame_footprint(wcs: WCS, shape: tuple[int, int]) -> tuple[float, float, float]:
    """Return (centre RA, centre Dec, radius to the farthest corner), all in degrees."""
    ny, nx = shape
    xs = np.array([(nx - 1) / 2.0, 0, nx - 1, 0, nx - 1], np.float64)
    ys = np.array([(ny - 1) / 2.0, 0, 0, ny - 1, ny - 1], np.float64)
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    corners_rad = angular_separation(ra_r[0], dec_r[0], ra_r[1:], dec_r[1:])
    radius = float(np.degrees(corners_rad).max())
    return float(ra[0] % 360.0), float(dec[0]), radius


def _place(wcs: WCS, shape: tuple[int, int], ra_deg: F64, dec_deg: F64) -> tuple[F64, F64]:
    """Return 0-based (x, y) px of the sky positions; NaN for those far outside the frame.

    Far: more than 1.5 x the footprint radius from the frame centre, where a distorted
    WCS may wrongly map a position onto the frame.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = wcs.all_world2pix(ra_deg, dec_deg, 0, quiet=True)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    c_ra, c_dec, radius = frame_footprint(wcs, shape)
    sep_rad = angular_separation(
        math.radians(c_ra), math.radians(c_dec), np.radians(ra_deg), np.radians(dec_deg)
    )
    far = np.degrees(sep_rad) > 1.5 * radius + 1e-3
    x[far] = np.nan
    y[far] = np.nan
    return x, y


def _edge_flags(
    x: F64, y: F64, shape: tuple[int, int], margin_px: float
) -> tuple[npt.NDArray[np.int64], int]:
    """Return OFF_FRAME / NEAR_EDGE (within ``margin_px``) flags and how many got one."""
    dist = edge_distance_px(x, y, shape)
    off = ~np.isfinite(dist) | (dist < 0)
    near = ~off & (dist < margin_px)
    flag = np.where(off, int(Flag.OFF_FRAME), 0) | np.where(near, int(Flag.NEAR_EDGE), 0)
    return flag.astype(np.int64), int((off | near).sum())


def stage_forced(ctx: Context) -> Context:
    """Place the targets on the frame; flag off-frame and near-edge positions.

    A frame without WCS cannot place them: every target gets a NO_WCS | OFF_FRAME
    row with no flux, and a note says so (the field photometry still runs).
    """
    frame = need(ctx.frame, "frame")
    aps = need(ctx.apertures, "apertures")
    ph = ctx.config.photometry
    n = len(ctx.targets)
    ra = np.array([t.ra_deg % 360.0 for t in ctx.targets], np.float64)
    dec = np.array([t.dec_deg for t in ctx.targets], np.float64)
    flag = np.zeros(n, np.int64)
    notes = ctx.notes
    if n == 0:
        x = y = np.zeros(0)
    elif frame.wcs is None:
        x = y = np.full(n, np.nan)
        flag |= int(Flag.NO_WCS | Flag.OFF_FRAME)
        notes += (
            (
                f"frame has no WCS: forced photometry at {n} target(s) is impossible "
                "(plate-solve the frame first)"
            ),
        )
    else:
        x, y = _place(frame.wcs, frame.shape, ra, dec)
        margin = max(*aps.radii_px, ph.edge_margin_px)
        edge_flag, n_bad = _edge_flags(x, y, frame.shape, margin)
        flag |= edge_flag
        if n_bad:
            notes += (f"{n_bad} target(s) off the frame or within {margin:g} px of its edge",)
    measurable = (flag & int(Flag.OFF_FRAME | Flag.NEAR_EDGE | Flag.NO_WCS)) == 0
    forced = Forced(
        names=tuple(t.name for t in ctx.targets),
        ra_deg=ra,
        dec_deg=dec,
        x_px=x,
        y_px=y,
        measurable=np.asarray(measurable, bool),
        flag=flag,
    )
    if ph.recenter and measurable.any():
        forced = _recenter(ctx, forced)
    return replace(ctx, forced=forced, notes=notes)


def _recenter(ctx: Context, forced: Forced) -> Forced:
    """Move measurable forced positions to the windowed centroid when it is near and significant.

    A shift is kept only when it is at most ``recenter_radius_px`` and the source at
    the new position has S/N >= ``forced_snr_threshold`` (so noise is not chased).
    """
    frame = need(ctx.frame, "frame")
    bkg = need(ctx.background, "background")
    data_sub = need(ctx.data_sub_e, "data")
    fwhm = need(ctx.fwhm, "fwhm").fwhm_px
    ph = ctx.config.photometry
    sig = (fwhm if math.isfinite(fwhm) else 3.0) / GAUSS_FWHM_PER_SIGMA
    idx = np.flatnonzero(forced.measurable)
    x0, y0 = forced.x_px[idx], forced.y_px[idx]
    xw, yw, wflag = sep_wrapper.winpos(data_sub, x0, y0, sig, mask=frame.mask)
    shift = np.hypot(xw - x0, yw - y0)
    r = need(ctx.apertures, "apertures").radii_px[0]
    sums = measure_apertures(
        data_sub,
        bkg.rms_e,
        frame.mask,
        frame.saturated,
        xw,
        yw,
        r,
        subpix=ph.subpix,
        mesh_sky_px=sky_sample_size(ctx.config.extraction.back_size_px),
        sky_offset_e=bkg.offset_e,
        rms_scale=bkg.rms_scale,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = sums.flux_e / sums.flux_err_e
    dist = edge_distance_px(xw, yw, frame.shape)
    ok = (
        (wflag == 0)
        & np.isfinite(shift)
        & (shift <= ph.recenter_radius_px)
        & (snr >= ph.forced_snr_threshold)
        & (dist >= max(r, ph.edge_margin_px))
    )
    x = forced.x_px.copy()
    y = forced.y_px.copy()
    flag = forced.flag.copy()
    x[idx[ok]] = xw[ok]
    y[idx[ok]] = yw[ok]
    flag[idx[ok]] |= int(Flag.RECENTERED)
    return replace(forced, x_px=x, y_px=y, flag=flag)
