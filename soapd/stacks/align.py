"""Alignment of a cutout onto the stack's grid, flux-conserving (see :mod:`soapd.stacks.cutouts`).

* **shift** (``method = "auto"``, when the frame's grid differs from the stack's by
  a translation within ``shift_tolerance_px`` over the whole box): each output
  pixel is the overlap-area-weighted mean of the (up to four) input pixels it
  covers. For a translation these weights are exactly the bilinear ones, so the
  result equals ``reproject_exact``'s and conserves flux, at a fraction of its cost;
* **exact**: ``reproject.reproject_exact`` (spherical-polygon overlaps; it returns
  surface brightness, so the result is multiplied by the ratio of pixel areas);
* **adaptive**: ``reproject.reproject_adaptive(conserve_flux=True)`` (any other
  geometry under ``"auto"``: rotation, scale, distortion).

Masked input pixels are 0 (the sky, after background subtraction); an output pixel
touched by one is masked.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area

from soapd.errors import SoapdError
from soapd.stacks.cutouts import Cutout, grid_points, map_points

__all__ = ["Aligned", "align", "translation_px"]

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class Aligned:
    """A cutout on the stack's grid: electrons (background removed), mask, saturated, method."""

    data_e: F64
    mask: B
    saturated: B
    method: str


def translation_px(src: WCS, dst: WCS, shape: tuple[int, int]) -> tuple[float, float, float]:
    """Return (dx, dy, departure): ``dst`` pixel = grid pixel of ``src`` + (dx, dy).

    The offsets are taken at the box centre; ``departure`` (px) is the largest
    difference from that translation over an 5 x 5 lattice spanning the box, i.e. how
    far the mapping is from a pure shift (rotation, scale, distortion).
    """
    gx, gy = grid_points(shape)
    xo, yo = map_points(src, dst, gx, gy)
    ny, nx = shape
    cx, cy = map_points(src, dst, np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0]))
    dx, dy = float(cx[0] - (nx - 1) / 2.0), float(cy[0] - (ny - 1) / 2.0)
    departure = float(np.max(np.hypot(xo - gx - dx, yo - gy - dy)))
    return dx, dy, departure


def _window(
    array: npt.NDArray[np.generic], corner: tuple[int, int], shape: tuple[int, int], fill: object
) -> npt.NDArray[np.generic]:
    """Return ``array[y0:y0+ny, x0:x0+nx]``, padded with ``fill`` where it leaves the array."""
    (y0, x0), (ny, nx) = corner, shape
    out = np.full((ny, nx), fill, dtype=array.dtype)
    ay0, ax0 = max(y0, 0), max(x0, 0)
    ay1, ax1 = min(y0 + ny, array.shape[0]), min(x0 + nx, array.shape[1])
    if ay1 > ay0 and ax1 > ax0:
        out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = array[ay0:ay1, ax0:ax1]
    return out


def _shift(cutout: Cutout, dx: float, dy: float, shape: tuple[int, int]) -> Aligned:
    """Resample by a pure translation with exact pixel-overlap (bilinear) weights."""
    ny, nx = shape
    ix, iy = math.floor(dx), math.floor(dy)
    fx, fy = dx - ix, dy - iy
    box = (ny + 1, nx + 1)
    data = _window(cutout.data_e, (iy, ix), box, 0.0).astype(np.float64)
    mask = _window(cutout.mask, (iy, ix), box, fill=True).astype(bool)
    sat = _window(cutout.saturated, (iy, ix), box, fill=False).astype(bool)
    out = np.zeros(shape, np.float64)
    out_mask = np.zeros(shape, bool)
    out_sat = np.zeros(shape, bool)
    for oy, wy in ((0, 1.0 - fy), (1, fy)):
        for ox, wx in ((0, 1.0 - fx), (1, fx)):
            w = wy * wx
            if w <= 1e-12:
                continue
            sl = (slice(oy, oy + ny), slice(ox, ox + nx))
            out += w * data[sl]
            out_mask |= mask[sl]
            out_sat |= sat[sl]
    out[out_mask] = 0.0
    return Aligned(data_e=out, mask=out_mask, saturated=out_sat, method="shift")


def _nearest_input(
    cutout: Cutout, grid: WCS, shape: tuple[int, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], B]:
    """Return the nearest input pixel (iy, ix) of each grid pixel's centre, and if it is inside."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    xi, yi = map_points(
        grid, cutout.wcs, xx.ravel().astype(np.float64), yy.ravel().astype(np.float64)
    )
    ix = np.round(np.nan_to_num(xi, nan=-1.0)).astype(np.int64)
    iy = np.round(np.nan_to_num(yi, nan=-1.0)).astype(np.int64)
    h, w = cutout.shape
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    return iy, ix, inside


def _touched(
    plane: B, nearest: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], B], reach_px: int
) -> npt.NDArray[np.bool_]:
    """Return (flat) which grid pixels land within ``reach_px`` input px of a True pixel."""
    from scipy.ndimage import binary_dilation

    iy, ix, inside = nearest
    out = np.zeros(ix.shape, bool)
    if plane.any():
        grown = binary_dilation(plane, np.ones((2 * reach_px + 1,) * 2, bool))
        out[inside] = grown[iy[inside], ix[inside]]
    return out


def _reproject(cutout: Cutout, grid: WCS, shape: tuple[int, int], method: str) -> Aligned:
    """Resample with ``reproject`` (flux-conserving); masks follow by nearest-pixel mapping.

    Only the pixels go through reproject; an output pixel is masked (saturated) when
    a masked (saturated) input pixel lies within the reach of its footprint, i.e.
    ``ceil(scale / 2 + 0.5)`` input px of where its centre lands (``scale``: output
    over input pixel size), or when it falls outside the input.
    """
    from reproject import reproject_adaptive, reproject_exact

    data_in = np.where(cutout.mask, 0.0, cutout.data_e)
    area = proj_plane_pixel_area(grid.celestial) / proj_plane_pixel_area(cutout.wcs.celestial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        if method == "exact":
            out, footprint = reproject_exact((data_in, cutout.wcs), grid, shape_out=shape)
            # reproject_exact returns surface brightness: back to electrons per pixel.
            out = out * area
        else:
            out, footprint = reproject_adaptive(
                (data_in, cutout.wcs), grid, shape_out=shape, conserve_flux=True
            )
    reach = math.ceil(math.sqrt(area) / 2.0 + 0.5)
    nearest = _nearest_input(cutout, grid, shape)
    mask = (_touched(cutout.mask, nearest, reach) | ~nearest[2]).reshape(shape)
    mask |= ~np.isfinite(out) | (np.asarray(footprint, np.float64) <= 0)
    saturated = _touched(cutout.saturated, nearest, reach).reshape(shape)
    data = np.where(mask, 0.0, np.nan_to_num(np.asarray(out, np.float64), nan=0.0))
    return Aligned(data_e=data, mask=mask, saturated=saturated, method=method)


def align(
    cutout: Cutout,
    grid: WCS,
    shape: tuple[int, int],
    *,
    method: str,
    shift_tolerance_px: float,
) -> Aligned:
    """Return ``cutout`` resampled onto ``grid`` of ``shape`` (see the module docstring).

    ``method``: "auto", "exact" or "adaptive". Raise SoapdError when reproject fails.
    """
    if method == "auto":
        dx, dy, departure = translation_px(grid, cutout.wcs, shape)
        if departure <= shift_tolerance_px:
            return _shift(cutout, dx, dy, shape)
        method = "adaptive"
    try:
        return _reproject(cutout, grid, shape, method)
    except (ValueError, RuntimeError) as exc:
        raise SoapdError(f"reproject ({method}) failed on frame {cutout.frame_id}: {exc}") from exc
