"""Load a FITS frame into a :class:`Frame`: pixels in electrons, mask, metadata, WCS.

Everything header-related happens here and only here: HDU choice, gain and
read noise (with where they came from), saturation level, exposure time, the one
canonical mid-exposure UTC time, the filter band, the WCS (SIP included, CRVAL1
wrapped into [0, 360)), overscan subtraction and trimming. astropy's header and
WCS warnings are caught locally and turned into notes.

Conventions: the returned pixels are float64, native-endian, in **electrons**
(``ADU x gain``, after overscan subtraction when configured); ``mask`` is True
for unusable pixels (NaN/inf or at/above the saturation threshold), whose
values are set to 0. Pixel coordinates are 0-based.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning

from soapd.config import FrameConfig
from soapd.errors import FrameRejected, FrameUnreadable
from soapd.filters import normalise_filter
from soapd.models import ExposureMeta

__all__ = ["Frame", "load_frame", "parse_section"]

_GAIN_KEYS = ("GAIN", "EGAIN", "EPERADU", "CCDGAIN")
_RN_KEYS = ("RDNOISE", "READNOIS", "RON", "READNOISE", "RDNOIS")
_EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "ITIME", "EXP_TIME")
_FILTER_KEYS = ("FILTER", "FILTNAME", "FILTER1", "FILT")
_TIME_KEYS = ("TIME-OBS", "UTSTART", "UT-START", "UT", "UTC-OBS", "TIME_OBS")


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
        return float(Time(self.mid_time_utc, scale="utc").mjd)


def parse_section(text: str, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Return numpy (row, column) slices of a FITS section ``[x1:x2,y1:y2]`` (1-based, inclusive).

    ``*`` or an empty range means the whole axis. Raise ValueError on anything else.

    >>> parse_section("[4:13,1:520]", (520, 536))
    (slice(0, 520, None), slice(3, 13, None))
    """
    m = re.fullmatch(r"\s*\[([^,\]]*),([^\]]*)\]\s*", text)
    if not m:
        raise ValueError(f"not a FITS section: {text!r}")
    out: list[slice] = []
    for raw_part, size in ((m.group(1), shape[1]), (m.group(2), shape[0])):
        part = raw_part.strip()
        if part in ("", "*", ":"):
            out.append(slice(0, size))
            continue
        r = re.fullmatch(r"(\d+)\s*:\s*(\d+)", part)
        if not r:
            raise ValueError(f"not a FITS section: {text!r}")
        lo, hi = sorted((int(r.group(1)), int(r.group(2))))
        if lo < 1 or hi > size:
            raise ValueError(f"section {text!r} lies outside the {shape[1]}x{shape[0]} image")
        out.append(slice(lo - 1, hi))
    return out[1], out[0]


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


def _number(header: fits.Header, keys: tuple[str, ...]) -> tuple[float, str] | None:
    for key in keys:
        value = header.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number) and number > 0:
            return number, key
    return None


def _parse_date_obs(text: str) -> datetime | None:
    """Parse DATE-OBS: ISO (date or date-time) or the pre-2000 ``dd/mm/yy`` form."""
    text = text.strip()
    old = re.fullmatch(r"(\d{2})/(\d{2})/(\d{2})", text)
    if old:
        day, month, year = (int(g) for g in old.groups())
        return datetime(1900 + year, month, day, tzinfo=UTC)
    try:
        t = Time(text.replace(" ", "T"), format="isot", scale="utc")
    except ValueError:
        try:
            t = Time(text, format="iso", scale="utc")
        except ValueError:
            return None
    when: datetime = t.to_datetime(timezone=UTC)
    return when


def _time_of_day(text: str) -> timedelta | None:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2}):(\d{2}(?:\.\d*)?)\s*", text)
    if not m:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2)), float(m.group(3))
    return timedelta(hours=h, minutes=mi, seconds=s)


def _mid_time(
    header: fits.Header, exptime_s: float, meta: ExposureMeta | None, path: Path
) -> tuple[datetime, str]:
    """Return the canonical mid-exposure UTC time and where it came from.

    Order: DATE-AVG / MJD-AVG (mid-exposure by the FITS standard); DATE-OBS
    (+ TIME-OBS/UT when DATE-OBS is a date only) + EXPTIME/2; MJD-OBS + EXPTIME/2;
    the archive's mid time (``meta.mid_time_utc``); JD (taken as the start, as
    MaxIm DL writes it) + EXPTIME/2. DATE-OBS/MJD-OBS/JD are exposure **starts**.
    """
    half = timedelta(seconds=exptime_s / 2.0)
    avg = header.get("DATE-AVG")
    if isinstance(avg, str) and (when := _parse_date_obs(avg)) is not None:
        return when, "header:DATE-AVG"
    mjd_avg = _number(header, ("MJD-AVG",))
    if mjd_avg is not None:
        return Time(mjd_avg[0], format="mjd", scale="utc").to_datetime(timezone=UTC), (
            "header:MJD-AVG"
        )
    date_obs = header.get("DATE-OBS")
    if isinstance(date_obs, str) and (start := _parse_date_obs(date_obs)) is not None:
        has_time = "T" in date_obs or " " in date_obs.strip()
        if has_time:
            return start + half, "header:DATE-OBS+EXPTIME/2"
        for key in _TIME_KEYS:
            value = header.get(key)
            if isinstance(value, str) and (tod := _time_of_day(value)) is not None:
                return start + tod + half, f"header:DATE-OBS+{key}+EXPTIME/2"
    mjd_obs = _number(header, ("MJD-OBS",))
    if mjd_obs is not None and mjd_obs[0] % 1.0 != 0.0:
        start = Time(mjd_obs[0], format="mjd", scale="utc").to_datetime(timezone=UTC)
        return start + half, "header:MJD-OBS+EXPTIME/2"
    if meta is not None and meta.mid_time_utc is not None:
        return meta.mid_time_utc.astimezone(UTC), "archive:mid_time_utc"
    jd = _number(header, ("JD", "JD-OBS"))
    if jd is not None:
        start = Time(jd[0], format="jd", scale="utc").to_datetime(timezone=UTC)
        return start + half, f"header:{jd[1]}(start)+EXPTIME/2"
    raise FrameRejected(
        f"{path}: no observation time: the header has no DATE-OBS with a time of day, "
        "MJD-OBS, DATE-AVG or JD, and no archive metadata was given"
    )


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
    found = _number(header, ("SATURATE", "SATLEVEL", "MAXLIN"))
    if found is not None:
        return found[0], f"header:{found[1]}"
    if telescope in config.saturation_by_telescope_adu:
        return config.saturation_by_telescope_adu[telescope], "config:saturation_by_telescope_adu"
    if config.saturation_adu > 0:
        return config.saturation_adu, "config:saturation_adu"
    return _histogram_saturation(raw), "histogram"


def _load_wcs(header: fits.Header, notes: list[str]) -> WCS | None:
    ctype1 = str(header.get("CTYPE1", "")).strip()
    ctype2 = str(header.get("CTYPE2", "")).strip()
    if not ctype1 or not ctype2:
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FITSFixedWarning)
            warnings.simplefilter("always", AstropyWarning)
            wcs = WCS(header, naxis=2, relax=True)
    except (ValueError, KeyError, MemoryError) as exc:
        notes.append(f"WCS unusable ({exc}); sky positions unavailable")
        return None
    notes.extend(
        f"WCS: {w.message}" for w in caught if not issubclass(w.category, FITSFixedWarning)
    )
    if not wcs.has_celestial:
        notes.append(f"WCS is not celestial (CTYPE {ctype1}, {ctype2})")
        return None
    wcs.wcs.crval[0] = wcs.wcs.crval[0] % 360.0
    return wcs


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
    notes: list[str] = []
    finite = np.isfinite(raw)
    if not finite.any():
        raise FrameRejected(f"{path}: every pixel is NaN or infinite")
    top, bottom = float(np.nanmax(raw)), float(np.nanmin(raw))
    if top == bottom:
        raise FrameRejected(f"{path}: the image is constant ({top:g}); no sky, no stars")

    telescope = str(header.get("TELESCOP") or (meta.telescope if meta else None) or "unknown")
    telescope = telescope.strip() or "unknown"
    sat_adu, sat_source = _saturation(header, raw, telescope, config)

    overscan_adu = 0.0
    if config.overscan:
        raw, overscan_adu = _overscan(raw, header, notes)
        if overscan_adu:
            notes.append(f"overscan {overscan_adu:.1f} ADU subtracted, trimmed to TRIMSEC")
        finite = np.isfinite(raw)
    threshold_adu = sat_adu * config.saturation_fraction - overscan_adu
    if math.isfinite(threshold_adu):
        with np.errstate(invalid="ignore"):
            saturated = raw >= threshold_adu
    else:
        saturated = np.zeros(raw.shape, dtype=bool)
    mask = ~finite | saturated

    gain = _number(header, _GAIN_KEYS)
    if gain is not None:
        gain_e, gain_source = gain[0], f"header:{gain[1]}"
    elif meta is not None and meta.gain_e_per_adu:
        gain_e, gain_source = meta.gain_e_per_adu, "archive"
    else:
        gain_e, gain_source = config.gain_e_per_adu, "config:gain_e_per_adu"
        notes.append(f"no GAIN in the header: using frame.gain_e_per_adu = {gain_e:g} e-/ADU")
    rn = _number(header, _RN_KEYS)
    if rn is not None:
        rn_e, rn_source = rn[0], f"header:{rn[1]}"
    elif meta is not None and meta.read_noise_e is not None:
        rn_e, rn_source = meta.read_noise_e, "archive"
    else:
        rn_e, rn_source = config.read_noise_e, "config:read_noise_e"

    exp = _number(header, _EXPTIME_KEYS)
    if exp is not None:
        exptime_s = exp[0]
    elif meta is not None and meta.exptime_s:
        exptime_s = meta.exptime_s
    else:
        raise FrameRejected(
            f"{path}: no exposure time: the header has no positive EXPTIME or EXPOSURE and "
            "no archive metadata was given; magnitudes per second cannot be computed"
        )
    mid, time_source = _mid_time(header, exptime_s, meta, path)

    filter_raw = ""
    for key in _FILTER_KEYS:
        value = header.get(key)
        if isinstance(value, str) and value.strip():
            filter_raw = value.strip()
            break
    if not filter_raw and meta is not None and meta.filter:
        filter_raw = meta.filter
    band = normalise_filter(filter_raw or None)

    wcs = _load_wcs(header, notes)
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
        band=band,
        telescope=telescope,
        overscan_adu=overscan_adu,
        notes=tuple(notes),
    )
