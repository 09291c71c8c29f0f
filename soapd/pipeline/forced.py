"""Stage ``forced``: place the targets on the frame, decide their coverage, maybe re-centre.

Positions are 0-based px. Coverage is a state, decided here from the frame's WCS,
its shape and its valid-pixel mask (finite, not bad; saturated pixels are valid:
a saturated star is covered, and flagged SATURATED by the photometry). Each target
is either *covered* (measured: a detection or an upper limit) or NOT_COVERED with
one reason bit, checked in this order:

``NO_WCS``            the frame has no WCS (OFF_FRAME is set too, as before);
``OFF_FRAME``         the position is off the pixel grid: outside the frame's footprint;
``NEAR_EDGE``         it is within the edge buffer, ``max(radii, photometry.edge_margin_px)``;
``MASKED_APERTURE``   fewer than :data:`MIN_VALID_APERTURE_FRACTION` of the largest
                      aperture's pixels are valid (or, with ``photometry.local_sky``,
                      fewer than :data:`MIN_VALID_ANNULUS_FRACTION` of the annulus');
                      pixels count by their centres, off-frame ones as not valid.

Not-covered rows get no flux and no limit (the ``table`` stage blanks them). The
photometry itself is done with the detections by the ``photometry`` stage.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.coordinates import angular_separation
from astropy.wcs import WCS

from soapd.flags import Flag, coverage_of
from soapd.pipeline import sep_wrapper
from soapd.pipeline.context import Context, Forced, need
from soapd.pipeline.detect import GAUSS_FWHM_PER_SIGMA
from soapd.pipeline.photometry import edge_distance_px, measure_apertures, sky_sample_size

__all__ = [
    "MIN_VALID_ANNULUS_FRACTION",
    "MIN_VALID_APERTURE_FRACTION",
    "apply_coverage",
    "coverage_flags",
    "footprint_corners",
    "frame_footprint",
    "stage_forced",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Smallest fraction of the largest aperture's area that must be valid pixels (finite, not
#: bad) for a forced position to be measured: a few hot pixels are tolerated (flagged
#: APER_HASMASKED), a NaN block over the target is not.
MIN_VALID_APERTURE_FRACTION = 0.95
#: Smallest valid fraction of the sky annulus (only with ``photometry.local_sky``).
MIN_VALID_ANNULUS_FRACTION = 0.5


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


def footprint_corners(
    wcs: WCS, shape: tuple[int, int], inset_px: float = 0.0
) -> tuple[tuple[float, float], ...]:
    """Return the sky corners (RA, Dec in degrees) of the frame's pixel grid, in order.

    The corners are the outer borders of the corner pixels (0-based -0.5 and n - 0.5),
    moved ``inset_px`` inwards (the edge buffer), going (0, 0), (nx, 0), (nx, ny), (0, ny).
    """
    ny, nx = shape
    lo_x, hi_x = -0.5 + inset_px, nx - 0.5 - inset_px
    lo_y, hi_y = -0.5 + inset_px, ny - 0.5 - inset_px
    xs = np.array([lo_x, hi_x, hi_x, lo_x], np.float64)
    ys = np.array([lo_y, lo_y, hi_y, hi_y], np.float64)
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    return tuple(
        (round(float(r) % 360.0, 7), round(float(d), 7))
        for r, d in zip(np.asarray(ra), np.asarray(dec), strict=True)
    )


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


def _valid_fraction(
    mask: npt.NDArray[np.bool_],
    saturated: npt.NDArray[np.bool_] | None,
    x: F64,
    y: F64,
    radii_px: tuple[float, float],
) -> F64:
    """Return the valid fraction of the circle (``r_in`` 0) or annulus at each position.

    Pixels whose centres lie in the circle or annulus are counted; a pixel is valid
    when it is on the frame and not in ``mask`` (saturated pixels are valid). Only
    the pixels around the positions are read. ``radii_px`` = (r_in, r_out), r_in 0
    for a circle.
    """
    r_in, r_out = radii_px
    ny, nx = mask.shape
    half = math.ceil(r_out) + 1
    step = np.arange(-half, half + 1)
    dx, dy = (g.ravel() for g in np.meshgrid(step, step))
    px = np.round(x)[:, None] + dx[None, :]
    py = np.round(y)[:, None] + dy[None, :]
    rr = (px - x[:, None]) ** 2 + (py - y[:, None]) ** 2
    inside = rr <= r_out**2
    if r_in > 0:
        inside &= rr >= r_in**2
    on = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    ix = np.clip(px, 0, nx - 1).astype(np.intp)
    iy = np.clip(py, 0, ny - 1).astype(np.intp)
    bad = mask[iy, ix]
    if saturated is not None:
        bad &= ~saturated[iy, ix]
    valid = inside & on & ~bad
    return np.asarray(valid.sum(axis=1) / np.maximum(inside.sum(axis=1), 1), np.float64)


def coverage_flags(
    x: F64,
    y: F64,
    mask: npt.NDArray[np.bool_],
    *,
    margin_px: float,
    radius_px: float,
    saturated: npt.NDArray[np.bool_] | None = None,
    annulus_px: tuple[float, float] | None = None,
) -> I64:
    """Return NOT_COVERED plus its reason bit for the positions that cannot be measured.

    ``x, y`` are 0-based px (NaN: not placed); ``mask`` marks unusable pixels (the
    frame's mask), ``saturated`` those of them that are only saturated (valid for
    coverage); ``margin_px`` is the edge buffer, ``radius_px`` the largest aperture,
    ``annulus_px`` the sky annulus (None: the background map is the sky). Covered
    positions get 0. See the module docstring for the order of reasons.
    """
    dist = edge_distance_px(x, y, mask.shape)
    off = ~np.isfinite(dist) | (dist < 0)
    edge = ~off & (dist < margin_px)
    masked = np.zeros(len(x), bool)
    inside = np.flatnonzero(~off & ~edge)
    if inside.size:
        xi, yi = x[inside], y[inside]
        frac = _valid_fraction(mask, saturated, xi, yi, (0.0, radius_px))
        bad = frac < MIN_VALID_APERTURE_FRACTION
        if annulus_px is not None:
            sky = _valid_fraction(mask, saturated, xi, yi, annulus_px)
            bad |= sky < MIN_VALID_ANNULUS_FRACTION
        masked[inside] = bad
    flag = np.zeros(len(x), np.int64)
    flag |= np.where(off, int(Flag.OFF_FRAME), 0)
    flag |= np.where(edge, int(Flag.NEAR_EDGE), 0)
    flag |= np.where(masked, int(Flag.MASKED_APERTURE), 0)
    flag |= np.where(off | edge | masked, int(Flag.NOT_COVERED), 0)
    return flag


def stage_forced(ctx: Context) -> Context:
    """Place the targets on the frame and decide which ones it covers.

    A frame without WCS cannot place them: every target gets a not-covered
    NO_WCS | OFF_FRAME row, and a note says so (the field photometry still runs).
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
        flag |= int(Flag.NO_WCS | Flag.OFF_FRAME | Flag.NOT_COVERED)
        notes += (
            (
                f"frame has no WCS: forced photometry at {n} target(s) is impossible "
                "(plate-solve the frame first)"
            ),
        )
    else:
        x, y = _place(frame.wcs, frame.shape, ra, dec)
        flag |= coverage_flags(
            x,
            y,
            frame.mask,
            saturated=frame.saturated,
            margin_px=edge_margin(ctx),
            radius_px=max(aps.radii_px),
            annulus_px=(ph.annulus_inner_px, ph.annulus_outer_px) if ph.local_sky else None,
        )
        notes += _coverage_notes(flag, edge_margin(ctx))
    measurable = (flag & int(Flag.NOT_COVERED)) == 0
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


def edge_margin(ctx: Context) -> float:
    """Return the edge buffer of forced positions (px): the largest radius or the margin."""
    aps = need(ctx.apertures, "apertures")
    return float(max(*aps.radii_px, ctx.config.photometry.edge_margin_px))


def _coverage_notes(flag: I64, margin_px: float) -> tuple[str, ...]:
    """Return the summary notes counting the targets not covered, by reason."""
    parts = []
    gone = (flag & int(Flag.NOT_COVERED)) != 0
    for bit, what in (
        (Flag.OFF_FRAME, "off the frame"),
        (Flag.NEAR_EDGE, f"within {margin_px:g} px of its edge"),
        (Flag.MASKED_APERTURE, "under masked (NaN or bad) pixels"),
    ):
        n = int(np.count_nonzero(gone & ((flag & int(bit)) != 0)))
        if n:
            parts.append(f"{n} {what}")
    if not parts:
        return ()
    return (f"target(s) not covered, so not measured: {'; '.join(parts)}",)


#: Columns that hold a measurement, blanked (NaN) on not-covered rows; so is every
#: ``limiting_*`` column.
_MEASURED = (
    "flux",
    "flux_err",
    "snr",
    "ins_mag",
    "ins_mag_err",
    "calibrated_mag",
    "calibrated_mag_err",
    "flux_ujy",
    "flux_ujy_err",
)
#: Bits a not-covered row keeps: coverage, and the frame's calibration state.
_KEPT_WHEN_NOT_COVERED = int(
    Flag.NOT_COVERED
    | Flag.NO_WCS
    | Flag.OFF_FRAME
    | Flag.NEAR_EDGE
    | Flag.MASKED_APERTURE
    | Flag.NO_CALIBRATION
    | Flag.CAL_UNFILTERED
)


def apply_coverage(cols: dict[str, Any]) -> dict[str, Any]:
    """Return result-table columns with not-covered rows blanked and a ``coverage`` column.

    ``cols`` maps column names to row arrays (the ``table`` stage's). Not-covered rows
    get NaN measurements and limits, ``is_detection`` False and only the coverage and
    calibration-state bits (:data:`_KEPT_WHEN_NOT_COVERED`).
    """
    flag = np.asarray(cols["flag"], np.int64)
    gone = (flag & int(Flag.NOT_COVERED)) != 0
    out = dict(cols)
    if gone.any():
        for name, value in cols.items():
            if name in _MEASURED or name.startswith("limiting_"):
                out[name] = np.where(gone, np.nan, np.asarray(value, np.float64))
        out["is_detection"] = np.asarray(cols["is_detection"], bool) & ~gone
        out["flag"] = np.where(gone, flag & _KEPT_WHEN_NOT_COVERED, flag)
    # a handful of distinct flag words: name each once
    words, where = np.unique(np.asarray(out["flag"], np.int64), return_inverse=True)
    out["coverage"] = np.array([coverage_of(int(v)) for v in words], dtype=str)[where]
    return out


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
