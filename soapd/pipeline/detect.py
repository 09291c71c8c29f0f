"""Background (sep, with its RMS map), source extraction and the frame FWHM.

sep is called through :mod:`soapd.pipeline.sep_wrapper` (its C errors become
:class:`~soapd.errors.ExtractionError`); the "internal pixel buffer full"
overflow is retried once with twice the pixel stack. Pixel values are in
electrons and coordinates are 0-based (sep's convention: the centre of the first
pixel is 0.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from soapd.config import ExtractionConfig
from soapd.errors import ExtractionError
from soapd.flags import Flag
from soapd.pipeline import sep_wrapper
from soapd.pipeline.sep_wrapper import PixelBufferFull

__all__ = [
    "Background",
    "Detections",
    "FwhmEstimate",
    "blank_sky_residual",
    "extract_sources",
    "measure_background",
    "measure_fwhm",
    "nearest_neighbour_px",
]

GAUSS_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Background:
    """sep background: maps in electrons per pixel, scalars in electrons.

    ``back_e`` (made on demand from ``sep_background``) and ``rms_e`` are sep's maps;
    :meth:`subtracted` returns an image minus the background without building
    ``back_e``. ``offset_e`` (added to the sky) and
    ``rms_scale`` (multiplying the RMS) are the blank-sky corrections of
    :func:`blank_sky_residual`; they are applied where fluxes and errors are
    computed rather than to the maps, which saves two passes over the image.
    ``global_back_e`` and ``global_rms_e`` include them.
    """

    sep_background: Any
    rms_e: npt.NDArray[np.float64]
    global_back_e: float
    global_rms_e: float
    offset_e: float = 0.0
    rms_scale: float = 1.0

    @property
    def back_e(self) -> npt.NDArray[np.float64]:
        """The background map in electrons per pixel (sep's, without ``offset_e``)."""
        return sep_wrapper.background_map(self.sep_background)

    def subtracted(self, data_e: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Return a copy of ``data_e`` minus sep's background map."""
        out = np.array(data_e, dtype=np.float64, copy=True)
        sep_wrapper.subtract_background(self.sep_background, out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Detections:
    """sep's object catalogue (structured array) and the segmentation map."""

    objects: npt.NDArray[np.void]
    segmap: npt.NDArray[np.int32]
    pixstack: int

    def __len__(self) -> int:
        return len(self.objects)


@dataclass(frozen=True, slots=True, kw_only=True)
class FwhmEstimate:
    """The frame FWHM (px) of a Gaussian and how many stars gave it."""

    fwhm_px: float
    n_stars: int
    index: npt.NDArray[np.int64]


def measure_background(
    data_e: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    *,
    back_size_px: int,
    back_filter_size: int,
) -> Background:
    """Return the sep background and RMS maps of ``data_e`` (electrons), ignoring ``mask``.

    Raise ExtractionError when sep fails (e.g. the image is smaller than one mesh
    in a way sep cannot handle) or the frame has no noise.
    """
    bkg, rms, global_back, global_rms = sep_wrapper.background(
        data_e,
        mask=mask if mask.any() else None,
        mesh_px=back_size_px,
        filter_size=back_filter_size,
    )
    if not np.isfinite(global_rms) or global_rms <= 0:
        raise ExtractionError(
            "the background RMS is zero or undefined: the frame has no noise (a constant "
            "or synthetic image without noise?)"
        )
    return Background(
        sep_background=bkg,
        rms_e=rms,
        global_back_e=global_back,
        global_rms_e=global_rms,
    )


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

    The threshold is ``thresh_sigma`` times the per-pixel RMS map (or the global
    RMS when ``config.noise == "global"``). Masked pixels are ignored. The pixel
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
    return Detections(objects=objects, segmap=segmap, pixstack=pixstack)


def nearest_neighbour_px(x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return each point's distance (px) to its nearest other point (inf if alone)."""
    pts = np.column_stack([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    if len(pts) < 2:
        return np.full(len(pts), np.inf)
    dist, _ = cKDTree(pts).query(pts, k=2)
    return np.asarray(dist[:, 1], dtype=np.float64)


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
        mad = 1.4826 * float(np.median(np.abs(fwhm[keep] - med)))
        new = np.abs(fwhm - med) <= 3.0 * max(mad, 1e-6 * med)
        if np.array_equal(new, keep):
            break
        keep = new
    return FwhmEstimate(
        fwhm_px=float(np.median(fwhm[keep])), n_stars=int(keep.sum()), index=sel[keep]
    )


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
