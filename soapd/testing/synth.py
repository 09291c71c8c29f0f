"""Synthetic CCD frames with known truth, for tests, the fake server and the demo.

A frame is sky + stars (pixel-integrated circular Gaussians, the ``erf``
approach of STDPipe) in electrons, drawn with Poisson noise, plus Gaussian read
noise, converted to ADU with the gain, offset by an optional bias pedestal and
clipped at the saturation level. The header carries a TAN WCS and the keys a
Skynet frame has (GAIN, RDNOISE, EXPTIME, DATE-OBS, FILTER, TELESCOP, SATURATE).

Conventions: pixel coordinates are 0-based (sep/numpy); ``flux_e`` is the total
number of electrons a star deposits during the exposure (before saturation);
magnitudes follow soapd's convention ``mag = zeropoint_mag - 2.5 log10(flux_e /
exptime_s)`` with a zero point per second of exposure in electrons; DATE-OBS is
the exposure **start** (UTC), so the canonical mid-exposure time is DATE-OBS +
EXPTIME/2.

>>> frame = make_frame((64, 64), stars=3, seed=1)
>>> frame.data_adu.shape, len(frame.truth)
((64, 64), 3)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from scipy.special import erf

from soapd.testing.synth_files import wcs_of, write_frame

__all__ = [
    "SynthFrame",
    "inject_stars",
    "make_frame",
    "make_header",
    "mid_exposure",
    "random_stars",
    "render_stars",
    "wcs_of",
    "write_frame",
    "write_synthetic",
]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Default start of the exposure (UTC).
DEFAULT_DATE_OBS = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)


class SynthFrame(NamedTuple):
    """A synthetic frame: pixels in ADU, its FITS header and the true star list."""

    #: Image in ADU (float32, as a reduced frame would be stored), shape (ny, nx).
    data_adu: npt.NDArray[np.float32]
    #: FITS header with WCS (unless disabled) and the exposure keys.
    header: fits.Header
    #: One row per star: x, y (0-based px), ra, dec (deg), flux_e, mag, peak_adu, saturated.
    truth: Table


def make_header(
    shape: tuple[int, int],
    *,
    center_ra_deg: float = 150.0,
    center_dec_deg: float = 20.0,
    pixscale_arcsec: float = 1.0,
    rotation_deg: float = 0.0,
    with_wcs: bool = True,
    gain_e_per_adu: float | None = 1.5,
    read_noise_e: float | None = 6.0,
    exptime_s: float | None = 60.0,
    saturation_adu: float | None = 60000.0,
    date_obs: datetime | None = DEFAULT_DATE_OBS,
    filter_name: str | None = "V",
    telescope: str | None = "PROMPT-SYNTH",
    extra: dict[str, Any] | None = None,
) -> fits.Header:
    """Return a FITS header for an image of ``shape`` = (ny, nx).

    Keys given as None are left out (to build headers that lack GAIN, EXPTIME,
    ...). The WCS is a plain TAN projection centred on the image centre, north
    up and east left when ``rotation_deg`` is 0. ``date_obs`` is the exposure
    start in UTC (written without a time zone, as FITS requires).
    """
    ny, nx = shape
    hdr = fits.Header()
    if with_wcs:
        scale_deg = pixscale_arcsec / 3600.0
        rot = math.radians(rotation_deg)
        hdr["CTYPE1"] = "RA---TAN"
        hdr["CTYPE2"] = "DEC--TAN"
        hdr["CRVAL1"] = center_ra_deg % 360.0
        hdr["CRVAL2"] = center_dec_deg
        hdr["CRPIX1"] = (nx + 1) / 2.0
        hdr["CRPIX2"] = (ny + 1) / 2.0
        hdr["CD1_1"] = -scale_deg * math.cos(rot)
        hdr["CD1_2"] = scale_deg * math.sin(rot)
        hdr["CD2_1"] = scale_deg * math.sin(rot)
        hdr["CD2_2"] = scale_deg * math.cos(rot)
        hdr["CUNIT1"] = "deg"
        hdr["CUNIT2"] = "deg"
        hdr["RADESYS"] = "ICRS"
        hdr["EQUINOX"] = 2000.0
    values: dict[str, tuple[Any, str]] = {
        "GAIN": (gain_e_per_adu, "[e-/ADU] detector gain"),
        "RDNOISE": (read_noise_e, "[e-] read noise"),
        "EXPTIME": (exptime_s, "[s] exposure time"),
        "SATURATE": (saturation_adu, "[ADU] saturation level"),
        "FILTER": (filter_name, "filter name"),
        "TELESCOP": (telescope, "telescope"),
    }
    if date_obs is not None:
        start = date_obs.astimezone(UTC).replace(tzinfo=None)
        values["DATE-OBS"] = (start.isoformat(timespec="milliseconds"), "UTC exposure start")
    for key, (value, comment) in values.items():
        if value is not None:
            hdr[key] = (value, comment)
    hdr["OBJECT"] = ("synthetic", "soapd.testing.synth")
    for key, value in (extra or {}).items():
        hdr[key] = value
    return hdr


def random_stars(
    n: int,
    shape: tuple[int, int],
    *,
    rng: np.random.Generator,
    mag_range: tuple[float, float] = (13.0, 20.0),
    border_px: float = 10.0,
    min_sep_px: float = 0.0,
) -> Table:
    """Return ``n`` stars at uniform random 0-based positions with magnitudes.

    Magnitudes follow a power law rising towards faint stars (d log N / dm = 0.3,
    a typical field); ``border_px`` keeps centres away from the edges and
    ``min_sep_px`` (if > 0) rejects stars closer than that to an earlier one.
    Columns: ``x``, ``y`` (px), ``mag``.
    """
    ny, nx = shape
    lo, hi = mag_range
    xs: list[float] = []
    ys: list[float] = []
    tries = 0
    while len(xs) < n and tries < 50 * max(n, 1):
        tries += 1
        x = rng.uniform(border_px, nx - 1 - border_px)
        y = rng.uniform(border_px, ny - 1 - border_px)
        if min_sep_px > 0 and xs:
            d2 = (np.asarray(xs) - x) ** 2 + (np.asarray(ys) - y) ** 2
            if np.min(d2) < min_sep_px**2:
                continue
        xs.append(x)
        ys.append(y)
    k = 0.3 * math.log(10.0)
    u = rng.uniform(0.0, 1.0, len(xs))
    # inverse CDF of p(m) ~ exp(k m) on [lo, hi]
    mags = np.log(np.exp(k * lo) + u * (np.exp(k * hi) - np.exp(k * lo))) / k
    return Table({"x": np.asarray(xs), "y": np.asarray(ys), "mag": mags})


def render_stars(
    shape: tuple[int, int],
    x_px: npt.ArrayLike,
    y_px: npt.ArrayLike,
    flux_e: npt.ArrayLike,
    *,
    fwhm_px: float,
) -> npt.NDArray[np.float64]:
    """Return a noiseless image (electrons) of circular Gaussian stars.

    Each pixel holds the integral of the Gaussian over the pixel's area (pixel
    ``i`` spans ``[i - 0.5, i + 0.5]``), computed as a product of ``erf``
    differences, so the sum over all pixels equals ``flux_e`` up to the part
    that falls off the image. Stars are drawn in a box of +-(5 sigma + 2) px,
    vectorised over stars.
    """
    ny, nx = shape
    x = np.atleast_1d(np.asarray(x_px, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y_px, dtype=np.float64))
    f = np.atleast_1d(np.asarray(flux_e, dtype=np.float64))
    image = np.zeros(shape, dtype=np.float64)
    if x.size == 0:
        return image
    sigma = fwhm_px / _FWHM_PER_SIGMA
    half = math.ceil(5.0 * sigma) + 2
    offsets = np.arange(-half, half + 1)
    ix0 = np.round(x).astype(np.int64)
    iy0 = np.round(y).astype(np.int64)
    px = ix0[:, None] + offsets[None, :]
    py = iy0[:, None] + offsets[None, :]
    s2 = sigma * math.sqrt(2.0)
    ex = 0.5 * (erf((px + 0.5 - x[:, None]) / s2) - erf((px - 0.5 - x[:, None]) / s2))
    ey = 0.5 * (erf((py + 0.5 - y[:, None]) / s2) - erf((py - 0.5 - y[:, None]) / s2))
    stamps = f[:, None, None] * ey[:, :, None] * ex[:, None, :]
    yy = np.broadcast_to(py[:, :, None], stamps.shape)
    xx = np.broadcast_to(px[:, None, :], stamps.shape)
    inside = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
    np.add.at(image, (yy[inside], xx[inside]), stamps[inside])
    return image


def _star_table(
    stars: Table | int | None,
    shape: tuple[int, int],
    wcs: WCS | None,
    *,
    rng: np.random.Generator,
    zeropoint_mag: float,
    exptime_s: float,
) -> Table:
    """Normalise the ``stars`` argument into a table with x, y, ra, dec, flux_e, mag."""
    if stars is None:
        stars = 0
    if isinstance(stars, int):
        stars = random_stars(stars, shape, rng=rng)
    tab = Table(stars, copy=True)
    n = len(tab)
    if "x" in tab.colnames and "y" in tab.colnames:
        x = np.asarray(tab["x"], dtype=np.float64)
        y = np.asarray(tab["y"], dtype=np.float64)
    elif "ra" in tab.colnames and "dec" in tab.colnames:
        if wcs is None:
            raise ValueError("stars given by ra/dec need a frame with a WCS")
        x, y = wcs.all_world2pix(np.asarray(tab["ra"]), np.asarray(tab["dec"]), 0)
    else:
        raise ValueError("stars need columns x, y (0-based px) or ra, dec (deg)")
    if "flux_e" in tab.colnames:
        flux = np.asarray(tab["flux_e"], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = zeropoint_mag - 2.5 * np.log10(flux / exptime_s)
    elif "mag" in tab.colnames:
        mag = np.asarray(tab["mag"], dtype=np.float64)
        flux = exptime_s * 10.0 ** (-0.4 * (mag - zeropoint_mag))
    else:
        raise ValueError("stars need a column flux_e (electrons) or mag (with zeropoint_mag)")
    out = Table()
    out["x"] = np.asarray(x, dtype=np.float64).reshape(n)
    out["y"] = np.asarray(y, dtype=np.float64).reshape(n)
    if wcs is not None:
        ra, dec = wcs.all_pix2world(out["x"], out["y"], 0)
        out["ra"] = np.asarray(ra) % 360.0
        out["dec"] = np.asarray(dec)
    else:
        out["ra"] = np.full(n, np.nan)
        out["dec"] = np.full(n, np.nan)
    out["flux_e"] = flux
    out["mag"] = mag
    for name in tab.colnames:
        if name not in out.colnames:
            out[name] = tab[name]
    return out


def make_frame(
    shape: tuple[int, int] = (512, 512),
    *,
    stars: Table | int | None = 50,
    sky_e: float = 300.0,
    read_noise_e: float = 6.0,
    gain_e_per_adu: float = 1.5,
    bias_adu: float = 0.0,
    fwhm_px: float = 3.5,
    exptime_s: float = 60.0,
    zeropoint_mag: float = 23.0,
    saturation_adu: float | None = 60000.0,
    nan_fraction: float = 0.0,
    center_ra_deg: float = 150.0,
    center_dec_deg: float = 20.0,
    pixscale_arcsec: float = 1.0,
    rotation_deg: float = 0.0,
    with_wcs: bool = True,
    date_obs: datetime | None = DEFAULT_DATE_OBS,
    filter_name: str | None = "V",
    telescope: str | None = "PROMPT-SYNTH",
    omit_keys: Sequence[str] = (),
    extra_header: dict[str, Any] | None = None,
    noise: bool = True,
    seed: int | None = 0,
    rng: np.random.Generator | None = None,
) -> SynthFrame:
    """Return a synthetic frame of ``shape`` = (ny, nx) with known stars.

    Parameters
    ----------
    stars
        An int (that many random stars, magnitudes 13-20), None (no stars), or a
        Table with ``x``/``y`` (0-based px) or ``ra``/``dec`` (deg) and ``flux_e``
        (total electrons in the exposure) or ``mag`` (on ``zeropoint_mag``).
        Extra columns (e.g. catalog magnitudes) are carried into ``truth``.
    sky_e
        Sky level in electrons per pixel over the exposure.
    read_noise_e, gain_e_per_adu, bias_adu
        Detector: read noise (e-), gain (e-/ADU) and a constant pedestal (ADU).
    fwhm_px
        FWHM of the circular Gaussian PSF in px.
    exptime_s, zeropoint_mag
        Exposure (s) and zero point per second in electrons: ``mag = zp -
        2.5 log10(flux_e / exptime_s)``.
    saturation_adu
        Pixels are clipped at this level (written as SATURATE); None: no clip, no key.
    nan_fraction
        Fraction of pixels set to NaN (bad pixels), at random.
    omit_keys
        Header keys to delete (e.g. ``("GAIN", "EXPTIME")``) to test fallbacks.
    noise
        Draw Poisson and read noise (False: the exact expectation, for analytic tests).
    seed, rng
        Randomness: ``rng`` if given, else ``numpy.random.default_rng(seed)``.

    Returns
    -------
    SynthFrame
        ``(data_adu, header, truth)``; ``truth`` has x, y, ra, dec, flux_e, mag,
        peak_adu (noiseless peak incl. sky and bias) and saturated.
    """
    gen = rng if rng is not None else np.random.default_rng(seed)
    header = make_header(
        shape,
        center_ra_deg=center_ra_deg,
        center_dec_deg=center_dec_deg,
        pixscale_arcsec=pixscale_arcsec,
        rotation_deg=rotation_deg,
        with_wcs=with_wcs,
        gain_e_per_adu=gain_e_per_adu,
        read_noise_e=read_noise_e,
        exptime_s=exptime_s,
        saturation_adu=saturation_adu,
        date_obs=date_obs,
        filter_name=filter_name,
        telescope=telescope,
        extra=extra_header,
    )
    wcs = None
    if with_wcs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
    truth = _star_table(
        stars, shape, wcs, rng=gen, zeropoint_mag=zeropoint_mag, exptime_s=exptime_s
    )
    model_e = render_stars(shape, truth["x"], truth["y"], truth["flux_e"], fwhm_px=fwhm_px)
    model_e += sky_e
    if noise:
        electrons = gen.poisson(model_e).astype(np.float64)
        electrons += gen.normal(0.0, read_noise_e, shape)
    else:
        electrons = model_e
    adu = electrons / gain_e_per_adu + bias_adu
    ix = np.clip(np.round(np.asarray(truth["x"])).astype(np.int64), 0, shape[1] - 1)
    iy = np.clip(np.round(np.asarray(truth["y"])).astype(np.int64), 0, shape[0] - 1)
    peak = model_e[iy, ix] / gain_e_per_adu + bias_adu
    truth["peak_adu"] = peak
    if saturation_adu is not None:
        adu = np.minimum(adu, saturation_adu)
        truth["saturated"] = peak >= saturation_adu
    else:
        truth["saturated"] = np.zeros(len(truth), dtype=bool)
    data = adu.astype(np.float32)
    if nan_fraction > 0:
        bad = gen.uniform(size=shape) < nan_fraction
        data[bad] = np.nan
    for key in omit_keys:
        header.remove(key, ignore_missing=True)
    truth.meta.update(
        {
            "fwhm_px": fwhm_px,
            "sky_e": sky_e,
            "gain_e_per_adu": gain_e_per_adu,
            "read_noise_e": read_noise_e,
            "exptime_s": exptime_s,
            "zeropoint_mag": zeropoint_mag,
            "bias_adu": bias_adu,
        }
    )
    return SynthFrame(data, header, truth)


def write_synthetic(path: str | Path, **kwargs: Any) -> tuple[Path, Table]:
    """Make a frame with :func:`make_frame` (same keywords), write it; return (path, truth)."""
    frame = make_frame(**kwargs)
    return write_frame(path, frame.data_adu, frame.header), frame.truth


def mid_exposure(date_obs: datetime, exptime_s: float) -> datetime:
    """Return the mid-exposure UTC time of an exposure starting at ``date_obs``."""
    return date_obs.astimezone(UTC) + timedelta(seconds=exptime_s / 2.0)


def inject_stars(
    data_adu: npt.ArrayLike,
    x_px: npt.ArrayLike,
    y_px: npt.ArrayLike,
    flux_e: npt.ArrayLike,
    *,
    fwhm_px: float,
    gain_e_per_adu: float,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Return ``data_adu`` plus Gaussian stars of known flux, with their Poisson noise.

    For injection-recovery tests on real frames: each star deposits ``flux_e``
    electrons (pixel-integrated, see :func:`render_stars`), drawn from a Poisson
    distribution per pixel and converted to ADU with ``gain_e_per_adu``.
    """
    base = np.asarray(data_adu, dtype=np.float64)
    model_e = render_stars(base.shape, x_px, y_px, flux_e, fwhm_px=fwhm_px)
    return base + rng.poisson(model_e).astype(np.float64) / gain_e_per_adu
