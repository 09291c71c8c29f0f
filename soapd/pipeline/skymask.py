"""Stage ``skymask``: the blank-sky mask, built once per frame, and the background correction.

The mask (bad pixels, source segments and each source's ellipse grown by
``limits.mask_dilate_px``) serves the mean-sky correction here and the robust
limits later (:mod:`soapd.pipeline.limits`). Pixel values are in electrons.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from soapd.pipeline import sep_wrapper
from soapd.pipeline.context import Context, need

__all__ = [
    "MAX_RMS_SCALE",
    "MIN_RMS_SCALE",
    "blank_sky_residual",
    "exclusion_mask",
    "stage_skymask",
]

#: Blank-sky over sep RMS outside this range means sep's RMS map is broken, not biased.
MIN_RMS_SCALE = 0.2
MAX_RMS_SCALE = 5.0


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


def blank_sky_residual(
    data_sub_e: npt.NDArray[np.float64],
    rms_e: npt.NDArray[np.float64],
    exclude: npt.NDArray[np.bool_],
    *,
    max_pixels: int = 250_000,
) -> tuple[float, float]:
    """Return (mean residual in e-, RMS scale factor) of blank-sky pixels after sep's background.

    sep (like SExtractor) estimates the sky with a mode (``2.5 median - 1.5 mean``),
    which lies below the mean sky for skewed (Poisson) noise, and its clipped RMS
    lies below the true scatter. Aperture photometry needs the *mean* sky and the
    true scatter: the offset is the 5-sigma-clipped mean of ``data_sub_e`` over
    pixels not in ``exclude``, and the scale is the clipped std of ``data_sub_e /
    rms_e`` there. A regular subsample of at most ``max_pixels`` is used. Returns
    (0, 1) when fewer than 1000 pixels are blank.
    """
    step = max(1, math.ceil(math.sqrt(data_sub_e.size / max_pixels)))
    noise = rms_e[::step, ::step]
    keep = ~exclude[::step, ::step] & (noise > 0)
    values = data_sub_e[::step, ::step][keep]
    noise = noise[keep]
    if values.size < 1000:
        return 0.0, 1.0
    z = values / noise
    good = np.isfinite(z)
    for _ in range(3):
        mean, std = float(z[good].mean()), float(z[good].std())
        new = np.isfinite(z) & (np.abs(z - mean) < 5.0 * std)
        if np.array_equal(new, good):
            break
        good = new
    offset = float(values[good].mean())
    scale = float(((values[good] - offset) / noise[good]).std())
    if not (math.isfinite(scale) and scale > 0):
        scale = 1.0
    return offset, scale


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
    notes = ctx.notes
    if not MIN_RMS_SCALE <= scale <= MAX_RMS_SCALE:
        # sep's RMS map is broken (e.g. an 8-bit frame whose sky is one constant value:
        # near-zero and negative RMS): a correction by this factor would be nonsense
        bounds = f"[{MIN_RMS_SCALE}, {MAX_RMS_SCALE}]"
        notes += (f"blank-sky RMS correction x{scale:.3g} out of {bounds}: not applied",)
        offset, scale = 0.0, 1.0
    bkg = replace(
        bkg,
        global_back_e=bkg.global_back_e + offset,
        global_rms_e=bkg.global_rms_e * scale,
        offset_e=offset,
        rms_scale=scale,
    )
    return replace(ctx, exclude=exclude, background=bkg, notes=notes)
