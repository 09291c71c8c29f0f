"""Synthetic time series of frames of one field, for stacking tests, benchmarks and demos.

:func:`write_series` writes ``n`` FITS frames of the same sky (field stars fixed in
RA/Dec, each frame dithered by up to ``dither_arcsec``) with a source at the target
position whose magnitude is given per frame (constant, fading, or absent), and a
zero point per frame (clouds: a lower zero point). Frames follow each other every
``cadence_s`` seconds from ``start_utc`` (DATE-OBS = exposure start). All
randomness comes from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.table import Table

from soapd.testing.synth import (
    DEFAULT_DATE_OBS,
    make_frame,
    make_header,
    mid_exposure,
    random_stars,
    wcs_of,
    write_frame,
)

__all__ = ["SeriesFrame", "field_stars", "write_catalog", "write_series"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesFrame:
    """One written frame: file, mid-exposure time, zero point and the source's true magnitude."""

    path: Path
    mid_time_utc: datetime
    zeropoint_mag: float
    source_mag: float | None


def field_stars(
    n: int,
    *,
    ra_deg: float,
    dec_deg: float,
    shape: tuple[int, int],
    pixscale_arcsec: float,
    rng: np.random.Generator,
    mag_range: tuple[float, float] = (13.0, 19.5),
    keep_clear_px: float = 20.0,
) -> Table:
    """Return ``n`` random stars (ra, dec, mag) around (ra, dec), none within ``keep_clear_px``."""
    header = make_header(
        shape, center_ra_deg=ra_deg, center_dec_deg=dec_deg, pixscale_arcsec=pixscale_arcsec
    )
    w = wcs_of(header)
    stars = random_stars(n, shape, rng=rng, mag_range=mag_range, border_px=5.0)
    tx, ty = w.all_world2pix([ra_deg], [dec_deg], 0)
    far = np.hypot(np.asarray(stars["x"]) - tx[0], np.asarray(stars["y"]) - ty[0]) > keep_clear_px
    ra, dec = w.all_pix2world(np.asarray(stars["x"])[far], np.asarray(stars["y"])[far], 0)
    return Table({"ra": np.asarray(ra) % 360.0, "dec": dec, "mag": np.asarray(stars["mag"])[far]})


def write_series(
    directory: Path,
    *,
    n: int,
    ra_deg: float = 150.0,
    dec_deg: float = 20.0,
    source_mag: float | Sequence[float | None] | Callable[[datetime], float | None] | None,
    zeropoint_mag: float | Sequence[float] = 23.0,
    start_utc: datetime = DEFAULT_DATE_OBS,
    cadence_s: float = 70.0,
    exptime_s: float = 60.0,
    shape: tuple[int, int] = (512, 512),
    n_stars: int = 60,
    pixscale_arcsec: float = 1.0,
    dither_arcsec: float = 6.0,
    fwhm_px: float = 3.5,
    sky_e: float = 300.0,
    telescope: str = "PROMPT-SYNTH",
    filter_name: str = "V",
    seed: int = 0,
    stem: str = "frame",
    stars: Table | None = None,
) -> list[SeriesFrame]:
    """Write ``n`` frames into ``directory`` and return them in time order (see the module).

    ``source_mag`` is one magnitude for every frame, one per frame, or a function of
    the mid-exposure time; None means no source. ``zeropoint_mag`` is one value or
    one per frame. ``stars`` overrides the random field (columns ra, dec, mag).
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    if stars is None:
        stars = field_stars(
            n_stars,
            ra_deg=ra_deg,
            dec_deg=dec_deg,
            shape=shape,
            pixscale_arcsec=pixscale_arcsec,
            rng=rng,
        )
    zps = (
        [float(zeropoint_mag)] * n
        if isinstance(zeropoint_mag, int | float)
        else list(zeropoint_mag)
    )
    out: list[SeriesFrame] = []
    for i in range(n):
        start = start_utc.astimezone(UTC) + timedelta(seconds=i * cadence_s)
        mid = mid_exposure(start, exptime_s)
        if callable(source_mag):
            mag = source_mag(mid)
        elif source_mag is None or isinstance(source_mag, int | float):
            mag = source_mag
        else:
            mag = source_mag[i]
        s = stars.copy()
        if mag is not None:
            s.add_row({"ra": ra_deg, "dec": dec_deg, "mag": mag})
        d = dither_arcsec / 3600.0
        frame = make_frame(
            shape,
            stars=s,
            center_ra_deg=ra_deg + rng.uniform(-d, d) / math.cos(math.radians(dec_deg)),
            center_dec_deg=dec_deg + rng.uniform(-d, d),
            pixscale_arcsec=pixscale_arcsec,
            zeropoint_mag=zps[i],
            exptime_s=exptime_s,
            fwhm_px=fwhm_px,
            sky_e=sky_e,
            date_obs=start,
            telescope=telescope,
            filter_name=filter_name,
            rng=rng,
        )
        path = write_frame(directory / f"{stem}{i:03d}.fits", frame.data_adu, frame.header)
        out.append(SeriesFrame(path=path, mid_time_utc=mid, zeropoint_mag=zps[i], source_mag=mag))
    return out


def write_catalog(
    stars: Table,
    path: Path,
    *,
    rng: np.random.Generator,
    mag_max: float = 17.0,
    b_minus_v: float = 0.6,
    scatter_mag: float = 0.02,
) -> Path:
    """Write the field's bright stars as an APASS DR9-like ECSV (VizieR names); return the path.

    ``stars`` hold true V magnitudes (``mag``); every star has ``B - V = b_minus_v``
    (frames in B should be drawn with ``mag + b_minus_v``). Catalog magnitudes
    scatter around the truth by ``scatter_mag``; for ``calibration.catalog_files``.
    """
    bright = stars[np.asarray(stars["mag"]) <= mag_max]
    n = len(bright)
    v = np.asarray(bright["mag"], np.float64) + rng.normal(0.0, scatter_mag, n)
    cat = Table(meta={"ID": "II/336/apass9", "name": "II/336/apass9"})
    cat["RAJ2000"] = np.asarray(bright["ra"], np.float64)
    cat["DEJ2000"] = np.asarray(bright["dec"], np.float64)
    for name, offset in (("Vmag", 0.0), ("Bmag", b_minus_v)):
        cat[name] = v + offset
        cat[f"e_{name}"] = np.full(n, scatter_mag)
    cat["B-V"] = np.full(n, b_minus_v)
    cat["e_B-V"] = np.full(n, scatter_mag * 1.4)
    cat["nobs"] = np.full(n, 10, dtype=np.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    cat.write(path, overwrite=True)
    return path
