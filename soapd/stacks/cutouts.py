"""Cutouts around the target, their background, and their alignment onto the stack's grid.

Only a box around the target is stacked, never the whole frame. The stack's grid
is the ``size_px`` x ``size_px`` box of the reference (deepest) frame whose centre
pixel holds the target; every other frame's box is just large enough to cover
that grid (its corners mapped through the two WCSs, plus a margin).

Each cutout is background-subtracted on its own pixels (sep, as single frames:
:func:`soapd.pipeline.background.measure_background`), then aligned onto the grid
(:mod:`soapd.stacks.align`). Masked pixels (NaN, saturated, off the frame) are 0
in ``data_e`` and True in ``mask``. Pixel coordinates are 0-based.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
from astropy.nddata import Cutout2D
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS

from soapd.config import FrameConfig
from soapd.errors import SoapdError
from soapd.models import ExposureMeta
from soapd.pipeline.background import measure_background
from soapd.pipeline.frame import load_frame
from soapd.pipeline.photometry import edge_distance_px

__all__ = [
    "Cutout",
    "Pixels",
    "cut_frame",
    "grid_box",
    "grid_points",
    "load_cutout",
    "map_points",
    "subtract_background",
]

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

#: Extra px around the box that covers the stack's grid.
_MARGIN_PX = 3


class Pixels(Protocol):
    """What can be cut: a loaded frame (:class:`~soapd.pipeline.frame.Frame`) or a cutout."""

    @property
    def data_e(self) -> F64:
        """Pixels in electrons."""
        ...

    @property
    def mask(self) -> B:
        """Unusable pixels."""
        ...

    @property
    def saturated(self) -> B:
        """Saturated pixels."""
        ...

    @property
    def wcs(self) -> WCS | None:
        """Celestial WCS (None: no sky positions)."""
        ...

    @property
    def exptime_s(self) -> float:
        """Exposure time in s."""
        ...

    @property
    def mid_time_utc(self) -> datetime:
        """Mid-exposure time (UTC)."""
        ...

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) in px."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Cutout:
    """A box of one frame around the target, in that frame's own pixel grid.

    ``data_e`` is in electrons (masked pixels 0; background still in unless
    ``background_subtracted``); ``mask`` marks unusable pixels (NaN, saturated,
    beyond the frame's edge); ``x_px, y_px`` is the target's 0-based position in
    the box; ``sky_rms_e`` is the background RMS (electrons per pixel) once measured.
    """

    frame_id: int
    data_e: F64
    mask: B
    saturated: B
    wcs: WCS
    x_px: float
    y_px: float
    exptime_s: float
    mid_time_utc: datetime
    background_subtracted: bool = False
    sky_rms_e: float = math.nan

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) in px."""
        return (int(self.data_e.shape[0]), int(self.data_e.shape[1]))


def _pixel(wcs: WCS, ra_deg: float, dec_deg: float) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        x, y = wcs.all_world2pix(np.array([ra_deg]), np.array([dec_deg]), 0, quiet=True)
    return float(x[0]), float(y[0])


def grid_points(shape: tuple[int, int], n: int = 5) -> tuple[F64, F64]:
    """Return an n x n lattice of 0-based pixel positions spanning a box (edges included)."""
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, n), np.linspace(-0.5, ny - 0.5, n))
    return gx.ravel(), gy.ravel()


def map_points(src: WCS, dst: WCS, x: F64, y: F64) -> tuple[F64, F64]:
    """Map 0-based pixels of ``src`` to 0-based pixels of ``dst`` through the sky."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        ra, dec = src.all_pix2world(x, y, 0)
        xo, yo = dst.all_world2pix(ra, dec, 0, quiet=True)
    return np.asarray(xo, np.float64), np.asarray(yo, np.float64)


def cut_frame(
    frame: Pixels,
    ra_deg: float,
    dec_deg: float,
    *,
    frame_id: int,
    size_px: int,
    grid: tuple[WCS, tuple[int, int]] | None = None,
    saturation_radius_px: float = 0.0,
) -> Cutout | str:
    """Return the box of ``frame`` (or of a larger cutout) around (ra, dec), or why not.

    Without ``grid`` the box is ``size_px`` square with the target in its centre
    pixel (this is how the stack's grid is made from the reference frame). With
    ``grid = (wcs, shape)`` the box covers that grid's footprint on this frame (see
    :func:`grid_box`).
    Reasons: "not covered (...)" when the frame has no WCS or the target is off it
    or on a masked pixel; "saturated at target" when a saturated pixel lies within
    ``saturation_radius_px`` of the target.
    """
    wcs = frame.wcs
    if wcs is None:
        return "not covered (NO_WCS)"
    x, y = _pixel(wcs, ra_deg, dec_deg)
    edge = edge_distance_px(np.array([x]), np.array([y]), frame.shape)[0]
    if not (math.isfinite(x) and math.isfinite(y)) or edge < 0:
        return "not covered (OFF_FRAME)"
    iy = min(max(round(y), 0), frame.shape[0] - 1)
    ix = min(max(round(x), 0), frame.shape[1] - 1)
    if frame.mask[iy, ix] and not frame.saturated[iy, ix]:
        return "not covered (masked pixel at target)"
    if saturation_radius_px > 0:
        r = saturation_radius_px
        y0, y1 = max(0, math.floor(y - r)), min(frame.shape[0], math.ceil(y + r) + 1)
        x0, x1 = max(0, math.floor(x - r)), min(frame.shape[1], math.ceil(x + r) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        near = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        if np.any(frame.saturated[y0:y1, x0:x1] & near):
            return "saturated at target"
    if grid is None:
        centre = (float(ix), float(iy))
        size = (size_px, size_px)
    else:
        bounds = grid_box(wcs, grid)
        if bounds is None:
            return "not covered (the stack's grid does not map onto the frame)"
        (y_lo, x_lo), (y_hi, x_hi) = bounds
        size = (y_hi - y_lo + 1, x_hi - x_lo + 1)
        centre = ((x_lo + x_hi) / 2.0, (y_lo + y_hi) / 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        box = Cutout2D(
            frame.data_e, centre, size, wcs=wcs, mode="partial", fill_value=0.0, copy=True
        )
    shape = box.data.shape
    mask = np.ones(shape, bool)
    mask[box.slices_cutout] = frame.mask[box.slices_original]
    saturated = np.zeros(shape, bool)
    saturated[box.slices_cutout] = frame.saturated[box.slices_original]
    data = np.ascontiguousarray(box.data, np.float64)
    data[mask] = 0.0
    bx, by = box.to_cutout_position((x, y))
    return Cutout(
        frame_id=frame_id,
        data_e=data,
        mask=mask,
        saturated=saturated,
        wcs=box.wcs,
        x_px=float(bx),
        y_px=float(by),
        exptime_s=frame.exptime_s,
        mid_time_utc=frame.mid_time_utc,
    )


def grid_box(
    wcs: WCS, grid: tuple[WCS, tuple[int, int]]
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Return ((y_lo, x_lo), (y_hi, x_hi)), inclusive 0-based pixels of ``wcs`` covering ``grid``.

    The grid's edges are mapped through the sky onto ``wcs``; a margin of a few px
    is added. None when the grid does not map onto ``wcs`` (not finite).
    """
    gwcs, gshape = grid
    xs, ys = map_points(gwcs, wcs, *grid_points(gshape))
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        return None
    x_lo, x_hi = math.floor(xs.min()) - _MARGIN_PX, math.ceil(xs.max()) + _MARGIN_PX
    y_lo, y_hi = math.floor(ys.min()) - _MARGIN_PX, math.ceil(ys.max()) + _MARGIN_PX
    return (y_lo, x_lo), (y_hi, x_hi)


def load_cutout(
    path: Path,
    ra_deg: float,
    dec_deg: float,
    *,
    frame_id: int,
    size_px: int,
    frame_config: FrameConfig,
    meta: ExposureMeta | None = None,
    grid: tuple[WCS, tuple[int, int]] | None = None,
    saturation_radius_px: float = 0.0,
) -> Cutout | str:
    """Read the frame at ``path`` as single frames are read, and cut it (see :func:`cut_frame`).

    The frame is read by :func:`soapd.pipeline.frame.load_frame` (same gain, mask,
    saturation level, overscan and mid-exposure time as its single-frame
    measurement). A frame that cannot be read gives the reason "unreadable: ...".
    """
    try:
        frame = load_frame(path, config=frame_config, meta=meta)
    except SoapdError as exc:
        return f"unreadable: {exc}"
    return cut_frame(
        frame,
        ra_deg,
        dec_deg,
        frame_id=frame_id,
        size_px=size_px,
        grid=grid,
        saturation_radius_px=saturation_radius_px,
    )


def subtract_background(cutout: Cutout, *, back_size_px: int, back_filter_size: int) -> Cutout:
    """Return ``cutout`` minus its sep background (masked pixels 0), with ``sky_rms_e`` set.

    The mesh is shrunk to a quarter of the box when the box is smaller than four
    meshes, so that sep always has a few meshes to interpolate.
    """
    ny, nx = cutout.shape
    mesh = max(8, min(back_size_px, min(ny, nx) // 4))
    bkg = measure_background(
        cutout.data_e, cutout.mask, back_size_px=mesh, back_filter_size=back_filter_size
    )
    data = bkg.subtracted(cutout.data_e)
    data[cutout.mask] = 0.0
    good = ~cutout.mask
    rms = float(np.median(bkg.rms_e[good])) if good.any() else bkg.global_rms_e
    return Cutout(
        frame_id=cutout.frame_id,
        data_e=data,
        mask=cutout.mask,
        saturated=cutout.saturated,
        wcs=cutout.wcs,
        x_px=cutout.x_px,
        y_px=cutout.y_px,
        exptime_s=cutout.exptime_s,
        mid_time_utc=cutout.mid_time_utc,
        background_subtracted=True,
        sky_rms_e=rms,
    )
