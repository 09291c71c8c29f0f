"""Load a FITS frame into a :class:`Frame`: pixels in electrons, mask, metadata, WCS.

Everything about reading a frame happens here and in :mod:`soapd.pipeline.header`
(and only there): HDU choice, gain and read noise (with where they came from),
saturation level, exposure time, the one canonical mid-exposure UTC time, the
filter band, the WCS (SIP included, CRVAL1 wrapped into [0, 360)), overscan
subtraction and trimming. astropy's header and WCS warnings are caught locally and
turned into notes.

Conventions: the returned pixels are float64, native-endian, in **electrons**
(``ADU x gain``, after overscan subtraction when configured); ``mask`` is True
for unusable pixels (NaN/inf or at/above the saturation threshold), whose
values are set to 0. Pixel coordinates are 0-based.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from soapd.config import FrameConfig
from soapd.errors import FrameRejected, FrameUnreadable
from soapd.filters import normalise_filter
from soapd.models import ExposureMeta
from soapd.pipeline.header import (
    exposure_time,
    filter_name,
    gain,
    load_wcs,
    mid_time,
    number,
    parse_section,
    read_noise,
)
from soapd.timeutil import mjd_of

__all__ = ["Frame", "load_frame", "parse_section"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One loaded frame. ``data_e`` is in electrons; ``mask`` marks unusable pixels."""

    path: Path
    data_e: npt.NDArray[np.float64]
    mask: npt.NDArray[np.bool_]
    saturated: npt.NDArray[np.bool_]
    header: fits.Header
    wcs: WCS | None
    gain_e_per_adu: float
    gain_source: str
    read_noise_e: float
    read_noise_source: str
    saturation_adu: float
    saturation_source: str
    exptime_s: float
    mid_time_utc: datetime
    time_source: str
    filter_raw: str
    band: str
    telescope: str
    overscan_adu: float
    notes: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) in px."""
        return (int(self.data_e.shape[0]), int(self.data_e.shape[1]))

    @property
    def mjd(self) -> float:
        """Mid-exposure MJD (UTC)."""
        return mjd_of(self.mid_time_utc)


def _choose_hdu(hdul: fits.HDUList, index: int, path: Path) -> Any:
    if index >= 0:
        if index >= len(hdul):
            raise FrameUnreadable(
                f"{path}: frame.hdu = {index} but the file has only {len(hdul)} HDU(s)"
            )
        hdu = hdul[index]
        if not hdu.is_image or hdu.data is None or hdu.data.ndim != 2:
            raise FrameUnreadable(f"{path}: HDU {index} holds no 2-D image")
        return hdu
    for hdu in hdul:
        if hdu.is_image and hdu.header.get("NAXIS", 0) == 2 and hdu.data is not None:
            return hdu
    raise FrameUnreadable(f"{path}: no HDU holds a 2-D image (an empty or table-only FITS file?)")


def _histogram_saturation(raw: npt.NDArray[np.float64]) -> float:
    """Estimate the saturation level (ADU) from a pile-up at the top of the histogram.

    A clipped detector puts many pixels at (or within 0.1 % of) the maximum value;
    unsaturated frames do not. Return the maximum when at least 5 pixels sit there,
    else +inf (no saturation seen).
    """
    top = float(np.nanmax(raw))
    if not math.isfinite(top):
        return math.inf
    level = top - 1e-3 * abs(top)
    with np.errstate(invalid="ignore"):
        if np.count_nonzero(raw >= level) >= 5:
            return top
    return math.inf


def _saturation(
    header: fits.Header, raw: npt.NDArray[np.float64], telescope: str, config: FrameConfig
) -> tuple[float, str]:
    found = number(header, ("SATURATE", "SATLEVEL", "MAXLIN"))
    if found is not None:
        return found[0], f"header:{found[1]}"
    if telescope in config.saturation_by_telescope_adu:
        return config.saturation_by_telescope_adu[telescope], "config:saturation_by_telescope_adu"
    if config.saturation_adu > 0:
        return config.saturation_adu, "config:saturation_adu"
    return _histogram_saturation(raw), "histogram"


def _overscan(
    raw: npt.NDArray[np.float64], header: fits.Header, notes: list[str]
) -> tuple[npt.NDArray[np.float64], float]:
    """Subtract the median of BIASSEC and cut to TRIMSEC; return (pixels, overscan in ADU)."""
    biassec, trimsec = header.get("BIASSEC"), header.get("TRIMSEC")
    if not isinstance(biassec, str) or not isinstance(trimsec, str):
        notes.append("overscan asked for but the header lacks BIASSEC/TRIMSEC; not applied")
        return raw, 0.0
    try:
        bias = parse_section(biassec, raw.shape)
        trim = parse_section(trimsec, raw.shape)
    except ValueError as exc:
        notes.append(f"overscan not applied: {exc}")
        return raw, 0.0
    level = float(np.nanmedian(raw[bias]))
    return np.ascontiguousarray(raw[trim] - level), level


def _read_pixels(path: Path, config: FrameConfig) -> tuple[npt.NDArray[np.float64], fits.Header]:
    if not path.is_file():
        raise FrameUnreadable(f"{path}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                hdu = _choose_hdu(hdul, config.hdu, path)
                raw = np.array(hdu.data, dtype=np.float64)
                header = hdu.header.copy()
    except FrameUnreadable:
        raise
    except (OSError, ValueError, TypeError, EOFError, IndexError) as exc:
        raise FrameUnreadable(
            f"{path}: not a readable FITS file ({exc.__class__.__name__}: {exc}); "
            "it may be truncated or not FITS at all"
        ) from None
    for w in caught:
        if "truncated" in str(w.message).lower():
            raise FrameUnreadable(f"{path}: the FITS file is truncated; download it again")
    if raw.ndim != 2 or raw.size == 0:
        raise FrameUnreadable(f"{path}: the image is empty")
    return raw, header


def _finite_not_blank(raw: npt.NDArray[np.float64], path: Path) -> npt.NDArray[np.bool_]:
    """Return the finite pixels; raise FrameRejected when none is or the image is constant."""
    finite = np.isfinite(raw)
    if not finite.any():
        raise FrameRejected(f"{path}: every pixel is NaN or infinite")
    top, bottom = float(np.nanmax(raw)), float(np.nanmin(raw))
    if top == bottom:
        raise FrameRejected(f"{path}: the image is constant ({top:g}); no sky, no stars")
    return finite


def _masks(
    raw: npt.NDArray[np.float64], finite: npt.NDArray[np.bool_], threshold_adu: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Return (unusable pixels: non-finite or saturated, saturated: at/above ``threshold_adu``)."""
    if math.isfinite(threshold_adu):
        with np.errstate(invalid="ignore"):
            saturated = raw >= threshold_adu
    else:
        saturated = np.zeros(raw.shape, dtype=bool)
    return ~finite | saturated, saturated


def load_frame(path: str | Path, *, config: FrameConfig, meta: ExposureMeta | None = None) -> Frame:
    """Read the FITS file at ``path`` and return a :class:`Frame` (pixels in electrons).

    astropy's warnings about the header (non-standard cards, fixed WCS keys) are
    caught here and summarised as a note; see :func:`_load_frame` for the rules.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = _load_frame(Path(path), config=config, meta=meta)
    kinds = sorted(
        {
            w.category.__name__
            for w in caught
            if not issubclass(w.category, FITSFixedWarning | RuntimeWarning)
        }
    )
    if kinds:
        note = f"header: astropy warned ({', '.join(kinds)}); non-standard cards were ignored"
        frame = replace(frame, notes=(*frame.notes, note))
    return frame


def _load_frame(path: Path, *, config: FrameConfig, meta: ExposureMeta | None) -> Frame:
    """Read the FITS file at ``path`` and return a :class:`Frame` (pixels in electrons).

    Gain/read noise come from the header (GAIN/EGAIN/EPERADU, RDNOISE/READNOIS),
    else ``meta``, else ``config``; the source of each is recorded. Saturation comes
    from SATURATE, else the per-telescope config, else ``config.saturation_adu``,
    else a histogram estimate; pixels at or above ``saturation_fraction`` of it are
    masked. Raise FrameUnreadable for a file that is not a usable FITS image and
    FrameRejected for an image that cannot be measured (all NaN, no exposure time,
    no observation time).
    """
    raw, header = _read_pixels(path, config)
    finite = _finite_not_blank(raw, path)
    notes: list[str] = []
    telescope = str(header.get("TELESCOP") or (meta.telescope if meta else None) or "unknown")
    telescope = telescope.strip() or "unknown"
    sat_adu, sat_source = _saturation(header, raw, telescope, config)
    overscan_adu = 0.0
    if config.overscan:
        raw, overscan_adu = _overscan(raw, header, notes)
        if overscan_adu:
            notes.append(f"overscan {overscan_adu:.1f} ADU subtracted, trimmed to TRIMSEC")
        finite = np.isfinite(raw)
    mask, saturated = _masks(raw, finite, sat_adu * config.saturation_fraction - overscan_adu)
    gain_e, gain_source = gain(header, meta, config, notes)
    rn_e, rn_source = read_noise(header, meta, config)
    exptime_s = exposure_time(header, meta, path)
    mid, time_source = mid_time(header, exptime_s, meta, path)
    filter_raw = filter_name(header, meta)
    wcs = load_wcs(header, notes)
    data = raw  # owned here: convert to electrons in place (saves a 16M-pixel copy at 4k)
    data *= gain_e
    data[mask] = 0.0
    return Frame(
        path=path,
        data_e=data,
        mask=mask,
        saturated=saturated,
        header=header,
        wcs=wcs,
        gain_e_per_adu=gain_e,
        gain_source=gain_source,
        read_noise_e=rn_e,
        read_noise_source=rn_source,
        saturation_adu=sat_adu,
        saturation_source=sat_source,
        exptime_s=exptime_s,
        mid_time_utc=mid,
        time_source=time_source,
        filter_raw=filter_raw or "none",
        band=normalise_filter(filter_raw or None),
        telescope=telescope,
        overscan_adu=overscan_adu,
        notes=tuple(notes),
    )
