"""Stage ``detect``: sep source extraction on the background-subtracted image.

The threshold means what SExtractor's ``DETECT_THRESH`` means: the image is
convolved with the (unit-sum) filter kernel and a pixel belongs to a source when
its filtered value exceeds ``thresh_sigma`` times the *unfiltered* per-pixel
background RMS (the RMS map, or the global RMS). sep is asked for this with
``filter_type="conv"``; its default, the matched filter, would compare the filtered
image with the *filtered* noise, which for SExtractor's 3x3 default kernel is 0.375
of the pixel noise, so that a threshold of 3 would behave like ``DETECT_THRESH``
1.1 (50 spurious sources on a pure-noise 2k frame). Conversion: a matched-filter
significance ``nu`` equals ``thresh_sigma / sqrt(sum K^2)`` for a unit-sum kernel
``K`` (``thresh_sigma`` 1.5 = 4.0 filtered sigma for the default kernel).
The "internal pixel buffer full" overflow is retried once with twice the pixel
stack. Pixel values are in electrons and coordinates are 0-based (sep's
convention: the centre of the first pixel is 0.0). sep is called through
:mod:`soapd.pipeline.sep_wrapper`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from soapd.config import ExtractionConfig
from soapd.errors import ExtractionError
from soapd.pipeline import sep_wrapper
from soapd.pipeline.background import Background
from soapd.pipeline.context import Context, need
from soapd.pipeline.sep_wrapper import PixelBufferFull

__all__ = [
    "GAUSS_FWHM_PER_SIGMA",
    "Detections",
    "extract_sources",
    "nearest_neighbour_px",
    "stage_detect",
]

#: FWHM of a Gaussian in units of its sigma: 2 sqrt(2 ln 2).
GAUSS_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Detections:
    """sep's object catalogue (structured array) and the segmentation map.

    ``nn_px`` is each object's distance (px) to its nearest other object (inf when
    alone), computed once here for the FWHM, curve-of-growth and crowding tests.
    """

    objects: npt.NDArray[np.void]
    segmap: npt.NDArray[np.int32]
    pixstack: int
    nn_px: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.objects)


def _kernel(config: ExtractionConfig) -> npt.NDArray[np.float64] | str | None:
    if config.filter_kernel == "none":
        return None
    if config.filter_kernel == "default":
        return "default"
    sigma = config.filter_fwhm_px / GAUSS_FWHM_PER_SIGMA
    half = max(1, math.ceil(2.0 * sigma))
    ax = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (ax[:, None] ** 2 + ax[None, :] ** 2) / sigma**2)
    return np.asarray(k / k.sum(), np.float64)


def extract_sources(
    data_sub_e: npt.NDArray[np.float64],
    background: Background,
    mask: npt.NDArray[np.bool_],
    *,
    config: ExtractionConfig,
) -> Detections:
    """Run ``sep.extract`` on the background-subtracted image (electrons).

    A pixel of the filtered image is above threshold when it exceeds ``thresh_sigma``
    times the per-pixel RMS map (or the global RMS when ``config.noise == "global"``):
    SExtractor's ``DETECT_THRESH`` (module docstring). Masked pixels are ignored. The pixel
    stack is set from config; on "internal pixel buffer full" it is doubled and
    extraction retried once. Raise ExtractionError on any sep failure.
    """
    err: npt.NDArray[np.float64] | float = (
        background.rms_e if config.noise == "map" else background.global_rms_e
    )
    kernel = _kernel(config)
    kwargs: dict[str, object] = {
        "err": err,
        "mask": mask if mask.any() else None,
        "minarea": config.minarea_px,
        "deblend_nthresh": config.deblend_nthresh,
        "deblend_cont": config.deblend_cont,
        "clean": config.clean,
        "clean_param": config.clean_param,
        "segmentation_map": True,
        "filter_type": "conv",
    }
    if kernel is None:
        kwargs["filter_kernel"] = None
    elif not isinstance(kernel, str):
        kwargs["filter_kernel"] = kernel
    pixstack = config.pixstack
    try:
        objects, segmap = sep_wrapper.extract(
            data_sub_e, config.thresh_sigma, pixstack=pixstack, **kwargs
        )
    except PixelBufferFull:
        pixstack *= 2
        try:
            objects, segmap = sep_wrapper.extract(
                data_sub_e, config.thresh_sigma, pixstack=pixstack, **kwargs
            )
        except PixelBufferFull as exc:
            raise ExtractionError(
                f"sep: internal pixel buffer full even with pixstack = {pixstack}; "
                "raise extraction.pixstack or extraction.thresh_sigma"
            ) from exc
    return Detections(
        objects=objects,
        segmap=segmap,
        pixstack=pixstack,
        nn_px=nearest_neighbour_px(objects["x"], objects["y"]),
    )


def nearest_neighbour_px(x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return each point's distance (px) to its nearest other point (inf if alone)."""
    pts = np.column_stack([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    if len(pts) < 2:
        return np.full(len(pts), np.inf)
    dist, _ = cKDTree(pts).query(pts, k=2)
    return np.asarray(dist[:, 1], dtype=np.float64)


def stage_detect(ctx: Context) -> Context:
    """Extract sources against the per-pixel noise; note a pixel-stack retry or no sources."""
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
