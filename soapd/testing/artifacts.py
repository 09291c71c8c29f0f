"""Things on a synthetic frame that are not stars: cosmic rays and galaxies, with their truth.

For the morphology tests of the pipeline (cosmic-ray and extended-source flags, FWHM
from stars only). Conventions as in :mod:`soapd.testing.synth`: 0-based pixels, images
in ADU (cosmic rays) or electrons (galaxies).

>>> import numpy as np
>>> data, crs = add_cosmic_rays(np.zeros((64, 64)), 3, rng=np.random.default_rng(1))
>>> len(crs), bool((data > 0).sum() >= 3)
(3, True)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from astropy.table import Table
from scipy.ndimage import gaussian_filter

__all__ = ["add_cosmic_rays", "render_galaxies"]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: The eight steps between neighbouring pixels (dy, dx).
_STEPS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def _track(length: int, start: tuple[int, int], rng: np.random.Generator) -> list[tuple[int, int]]:
    """Return ``length`` 8-connected pixels from ``start``: a straight step, now and then bent."""
    direction = int(rng.integers(8))
    pixels = [start]
    while len(pixels) < length:
        if rng.uniform() < 0.25:  # a bend of 45 degrees
            direction = (direction + int(rng.choice([-1, 1]))) % 8
        dy, dx = _STEPS[direction]
        y, x = pixels[-1]
        pixels.append((y + dy, x + dx))
    return pixels


def add_cosmic_rays(
    data_adu: npt.ArrayLike,
    n: int,
    *,
    rng: np.random.Generator,
    length_px: tuple[int, int] = (1, 6),
    amplitude_adu: tuple[float, float] = (500.0, 15000.0),
    avoid_xy: npt.ArrayLike | None = None,
    avoid_px: float = 0.0,
    border_px: int = 20,
) -> tuple[npt.NDArray[np.float64], Table]:
    """Return ``data_adu`` plus ``n`` cosmic-ray hits, and their truth table.

    Each hit is a track of ``length_px[0]``-``length_px[1]`` 8-connected pixels
    (uniform), mostly straight; every pixel of it gets a deposit drawn uniformly from
    ``amplitude_adu`` (ADU, added on top of the image, no PSF). Tracks start at least
    ``border_px`` from the edges and, when ``avoid_xy`` (N x 2, 0-based x, y) is given,
    at least ``avoid_px`` from each of those points.

    Returns
    -------
    data, truth
        The image (float64 ADU) and one row per hit: ``x``, ``y`` (flux-weighted
        centroid, px), ``n_px``, ``total_adu``, ``peak_adu``.
    """
    out = np.array(data_adu, dtype=np.float64, copy=True)
    ny, nx = out.shape
    avoid = (
        np.zeros((0, 2)) if avoid_xy is None else np.asarray(avoid_xy, np.float64).reshape(-1, 2)
    )
    rows: list[tuple[float, float, int, float, float]] = []
    tries = 0
    while len(rows) < n and tries < 100 * max(n, 1):
        tries += 1
        x0 = int(rng.integers(border_px, nx - border_px))
        y0 = int(rng.integers(border_px, ny - border_px))
        if (
            len(avoid)
            and avoid_px > 0
            and np.min(np.hypot(avoid[:, 0] - x0, avoid[:, 1] - y0)) < avoid_px
        ):
            continue
        length = int(rng.integers(length_px[0], length_px[1] + 1))
        pixels = _track(length, (y0, x0), rng)
        ys = np.array([p[0] for p in pixels])
        xs = np.array([p[1] for p in pixels])
        if ys.min() < 0 or xs.min() < 0 or ys.max() >= ny or xs.max() >= nx:
            continue
        amp = rng.uniform(amplitude_adu[0], amplitude_adu[1], length)
        np.add.at(out, (ys, xs), amp)
        total = float(amp.sum())
        rows.append(
            (
                float((xs * amp).sum() / total),
                float((ys * amp).sum() / total),
                length,
                total,
                float(amp.max()),
            )
        )
    names = ("x", "y", "n_px", "total_adu", "peak_adu")
    return out, Table(rows=rows, names=names) if rows else Table(names=names)


def render_galaxies(
    shape: tuple[int, int],
    x_px: npt.ArrayLike,
    y_px: npt.ArrayLike,
    flux_e: npt.ArrayLike,
    *,
    r_eff_px: npt.ArrayLike,
    axis_ratio: npt.ArrayLike,
    theta_rad: npt.ArrayLike,
    fwhm_px: float,
    oversample: int = 4,
) -> npt.NDArray[np.float64]:
    """Return a noiseless image (electrons) of exponential discs seen through a Gaussian PSF.

    Each galaxy is an exponential profile ``I ~ exp(-1.678 r / r_eff)`` (``r_eff_px``
    the half-light radius along the major axis), flattened to ``axis_ratio`` (b/a) at
    position angle ``theta_rad`` (from +x), sampled ``oversample`` times per pixel in a
    stamp of +-(5 r_eff + 3 sigma_psf) px, binned, convolved with the PSF and scaled
    so that the stamp holds ``flux_e``.
    """
    image = np.zeros(shape, np.float64)
    ny, nx = shape
    sigma_psf = fwhm_px / _FWHM_PER_SIGMA
    params = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, np.float64)) for v in (x_px, y_px, flux_e)),
        *(np.atleast_1d(np.asarray(v, np.float64)) for v in (r_eff_px, axis_ratio, theta_rad)),
    )
    for x, y, flux, r_eff, q, theta in zip(*params, strict=True):
        half = math.ceil(5.0 * r_eff + 3.0 * sigma_psf) + 1
        ix, iy = round(x), round(y)
        sub = (np.arange(-half * oversample, (half + 1) * oversample) + 0.5) / oversample - 0.5
        gx = ix + sub - x
        gy = iy + sub - y
        dx, dy = np.meshgrid(gx, gy)
        u = dx * math.cos(theta) + dy * math.sin(theta)
        v = -dx * math.sin(theta) + dy * math.cos(theta)
        r = np.hypot(u, v / q)
        fine = np.exp(-1.678 * r / r_eff)
        n = 2 * half + 1
        stamp = fine.reshape(n, oversample, n, oversample).sum(axis=(1, 3))
        stamp = gaussian_filter(stamp, sigma_psf, mode="constant")
        stamp *= flux / stamp.sum()
        y0, x0 = iy - half, ix - half
        ys = slice(max(y0, 0), min(y0 + n, ny))
        xs = slice(max(x0, 0), min(x0 + n, nx))
        image[ys, xs] += stamp[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return image
