"""What a FITS header says: detector values, exposure, mid-exposure time, filter, WCS.

Each lookup returns the value and where it came from (``header:KEY``, ``archive``
or ``config:...``) so the result table can record provenance. The order of the
fallbacks is documented on each function. FITS sections are 1-based and inclusive;
the slices returned are numpy's (0-based, half-open).
"""

from __future__ import annotations

import math
import re
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

from astropy.io import fits
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning

from soapd.config import FrameConfig
from soapd.errors import FrameRejected
from soapd.models import ExposureMeta

__all__ = [
    "exposure_time",
    "filter_name",
    "gain",
    "load_wcs",
    "mid_time",
    "number",
    "parse_section",
    "read_noise",
]

_GAIN_KEYS = ("GAIN", "EGAIN", "EPERADU", "CCDGAIN")
_RN_KEYS = ("RDNOISE", "READNOIS", "RON", "READNOISE", "RDNOIS")
_EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "ITIME", "EXP_TIME")
_FILTER_KEYS = ("FILTER", "FILTNAME", "FILTER1", "FILT")
_TIME_KEYS = ("TIME-OBS", "UTSTART", "UT-START", "UT", "UTC-OBS", "TIME_OBS")


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


def number(header: fits.Header, keys: tuple[str, ...]) -> tuple[float, str] | None:
    """Return (value, key) of the first of ``keys`` holding a finite positive number, or None."""
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


def mid_time(
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
    mjd_avg = number(header, ("MJD-AVG",))
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
    mjd_obs = number(header, ("MJD-OBS",))
    if mjd_obs is not None and mjd_obs[0] % 1.0 != 0.0:
        start = Time(mjd_obs[0], format="mjd", scale="utc").to_datetime(timezone=UTC)
        return start + half, "header:MJD-OBS+EXPTIME/2"
    if meta is not None and meta.mid_time_utc is not None:
        return meta.mid_time_utc.astimezone(UTC), "archive:mid_time_utc"
    jd = number(header, ("JD", "JD-OBS"))
    if jd is not None:
        start = Time(jd[0], format="jd", scale="utc").to_datetime(timezone=UTC)
        return start + half, f"header:{jd[1]}(start)+EXPTIME/2"
    raise FrameRejected(
        f"{path}: no observation time: the header has no DATE-OBS with a time of day, "
        "MJD-OBS, DATE-AVG or JD, and no archive metadata was given"
    )


def load_wcs(header: fits.Header, notes: list[str]) -> WCS | None:
    """Return the celestial WCS (CRVAL1 wrapped into [0, 360)), or None with a note why not."""
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


def gain(
    header: fits.Header, meta: ExposureMeta | None, config: FrameConfig, notes: list[str]
) -> tuple[float, str]:
    """Return (gain in e-/ADU, source): the header, else the archive, else the config (noted).

    A value the user gave (``meta.from_user``) comes first.
    """
    if meta is not None and meta.from_user and meta.gain_e_per_adu:
        return meta.gain_e_per_adu, "user"
    found = number(header, _GAIN_KEYS)
    if found is not None:
        return found[0], f"header:{found[1]}"
    if meta is not None and meta.gain_e_per_adu:
        return meta.gain_e_per_adu, "archive"
    gain_e = config.gain_e_per_adu
    notes.append(f"no GAIN in the header: using frame.gain_e_per_adu = {gain_e:g} e-/ADU")
    return gain_e, "config:gain_e_per_adu"


def read_noise(
    header: fits.Header, meta: ExposureMeta | None, config: FrameConfig
) -> tuple[float, str]:
    """Return (read noise in e-, source): the user's, the header, the archive, the config."""
    if meta is not None and meta.from_user and meta.read_noise_e is not None:
        return meta.read_noise_e, "user"
    found = number(header, _RN_KEYS)
    if found is not None:
        return found[0], f"header:{found[1]}"
    if meta is not None and meta.read_noise_e is not None:
        return meta.read_noise_e, "archive"
    return config.read_noise_e, "config:read_noise_e"


def exposure_time(header: fits.Header, meta: ExposureMeta | None, path: Path) -> float:
    """Return the exposure time (s): the user's, the header, the archive; else FrameRejected."""
    if meta is not None and meta.from_user and meta.exptime_s:
        return meta.exptime_s
    found = number(header, _EXPTIME_KEYS)
    if found is not None:
        return found[0]
    if meta is not None and meta.exptime_s:
        return meta.exptime_s
    raise FrameRejected(
        f"{path}: no exposure time: the header has no positive EXPTIME or EXPOSURE, "
        "no archive metadata was given and no --exptime; magnitudes per second cannot be "
        "computed (give it: soapd process --exptime SECONDS)"
    )


def filter_name(header: fits.Header, meta: ExposureMeta | None) -> str:
    """Return the raw filter name: the user's, a non-empty FILTER-like card, the archive's."""
    if meta is not None and meta.from_user and meta.filter:
        return meta.filter
    for key in _FILTER_KEYS:
        value = header.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    if meta is not None and meta.filter:
        return meta.filter
    return ""
