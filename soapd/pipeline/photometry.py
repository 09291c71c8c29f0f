"""Aperture sums, the one CCD error model (electrons) and per-row flags.

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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soapd.flags import Flag
from soapd.pipeline import sep_wrapper

__all__ = ["ApertureSums", "edge_distance_px", "measure_apertures", "sky_sample_size"]

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
    if any_mask and saturated.any():
        _, _, sat = sep_wrapper.sum_circle(data_sub_e, x, y, radius_px, mask=saturated, subpix=1)
        flag |= np.where(sat & int(Flag.APER_HASMASKED), int(Flag.SATURATED), 0)
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
