"""Stage ``background``: sep's background and RMS maps, and the background-subtracted image.

Pixel values are in electrons. sep is called through :mod:`soapd.pipeline.sep_wrapper`.
The blank-sky corrections (``offset_e``, ``rms_scale``) are measured later, by the
``skymask`` stage (:mod:`soapd.pipeline.skymask`), once the sources are known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from soapd.errors import ExtractionError
from soapd.pipeline import sep_wrapper
from soapd.pipeline.context import Context, need

__all__ = ["Background", "measure_background", "stage_background"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Background:
    """sep background: maps in electrons per pixel, scalars in electrons.

    ``back_e`` (made on demand from ``sep_background``) and ``rms_e`` are sep's maps;
    :meth:`subtracted` returns an image minus the background without building
    ``back_e``. ``offset_e`` (added to the sky) and
    ``rms_scale`` (multiplying the RMS) are the blank-sky corrections of
    :func:`soapd.pipeline.skymask.blank_sky_residual`; they are applied where fluxes
    and errors are computed rather than to the maps, which saves two passes over the
    image. ``global_back_e`` and ``global_rms_e`` include them.
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


def stage_background(ctx: Context) -> Context:
    """Measure the sep background and subtract it (masked pixels set to 0)."""
    frame = need(ctx.frame, "frame")
    ex = ctx.config.extraction
    bkg = measure_background(
        frame.data_e, frame.mask, back_size_px=ex.back_size_px, back_filter_size=ex.back_filter_size
    )
    data_sub = bkg.subtracted(frame.data_e)
    data_sub[frame.mask] = 0.0
    return replace(ctx, background=bkg, data_sub_e=data_sub)
