"""Stage ``fwhm``: the frame's FWHM from isolated, unsaturated, bright stars.

Each star's half-light radius comes from ``sep.flux_radius`` (through
:mod:`soapd.pipeline.sep_wrapper`); a Gaussian has FWHM = 2 r50 exactly. Pixel
values are in electrons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from astropy.stats import mad_std

from soapd.flags import Flag
from soapd.pipeline import sep_wrapper
from soapd.pipeline.background import Background
from soapd.pipeline.context import Context, need
from soapd.pipeline.detect import GAUSS_FWHM_PER_SIGMA, Detections, nearest_neighbour_px

__all__ = ["FwhmEstimate", "measure_fwhm", "stage_fwhm"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FwhmEstimate:
    """The frame FWHM (px) of a Gaussian and how many stars gave it."""

    fwhm_px: float
    n_stars: int
    index: npt.NDArray[np.int64]


def measure_fwhm(
    data_sub_e: npt.NDArray[np.float64],
    detections: Detections,
    background: Background,
    mask: npt.NDArray[np.bool_],
    *,
    min_snr: float,
    max_stars: int = 60,
) -> FwhmEstimate:
    """Return the FWHM (px) of the frame's stars, as a Gaussian's FWHM.

    Stars are detections with no sep flag, no masked (saturated/bad) pixel, not
    touching the edge, isolated (nearest neighbour further than 4 x their
    ``a + b``) and with isophotal S/N >= ``min_snr`` (the brightest ``max_stars``
    of them). Each star's half-light radius r50 comes from ``sep.flux_radius``
    within 4 first-guess FWHMs; a Gaussian has FWHM = 2 r50 exactly. The frame
    value is the 3-sigma-clipped median. If fewer than 3 stars pass, the S/N cut
    is relaxed to 10; with none, the FWHM is NaN and ``n_stars`` is 0.
    """
    obj = detections.objects
    empty = FwhmEstimate(fwhm_px=math.nan, n_stars=0, index=np.zeros(0, np.int64))
    if len(obj) == 0:
        return empty
    ny, nx = data_sub_e.shape
    x, y = obj["x"], obj["y"]
    a, b = obj["a"], obj["b"]
    noise2 = obj["npix"] * background.global_rms_e**2 + np.clip(obj["flux"], 0, None)
    snr = obj["flux"] / np.sqrt(np.maximum(noise2, 1e-30))
    nn = nearest_neighbour_px(x, y)
    size = 4.0 * (a + b)
    ix = np.clip(np.round(x).astype(np.int64), 0, nx - 1)
    iy = np.clip(np.round(y).astype(np.int64), 0, ny - 1)
    margin = np.maximum(size, 5.0)
    ok = (
        (obj["flag"] == 0)
        & (nn > size)
        & ~mask[iy, ix]
        & (x > margin)
        & (y > margin)
        & (x < nx - 1 - margin)
        & (y < ny - 1 - margin)
        & (a > 0)
        & (b > 0)
    )
    if detections.objects.dtype.names and "peak" in detections.objects.dtype.names:
        ok &= np.isfinite(obj["peak"])
    for threshold in (min_snr, min(min_snr, 10.0)):
        sel = np.flatnonzero(ok & (snr >= threshold))
        if len(sel) >= 3:
            break
    if len(sel) == 0:
        return empty
    sel = sel[np.argsort(-snr[sel])][:max_stars]
    guess = GAUSS_FWHM_PER_SIGMA * float(np.median(np.sqrt(a[sel] * b[sel])))
    rmax = np.full(len(sel), max(4.0 * guess, 3.0))
    r50, rflag = sep_wrapper.flux_radius(data_sub_e, x[sel], y[sel], rmax, 0.5, mask=mask, subpix=5)
    good = (rflag & ~int(Flag.APER_TRUNC)) == 0
    good &= np.isfinite(r50) & (r50 > 0)
    fwhm = 2.0 * r50[good]
    sel = sel[good]
    if len(fwhm) == 0:
        return empty
    keep = np.ones(len(fwhm), dtype=bool)
    for _ in range(5):
        med = float(np.median(fwhm[keep]))
        mad = float(mad_std(fwhm[keep]))
        new = np.abs(fwhm - med) <= 3.0 * max(mad, 1e-6 * med)
        if np.array_equal(new, keep):
            break
        keep = new
    return FwhmEstimate(
        fwhm_px=float(np.median(fwhm[keep])), n_stars=int(keep.sum()), index=sel[keep]
    )


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
