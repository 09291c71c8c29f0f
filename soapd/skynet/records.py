"""Skynet JSON records -> soapd values: :class:`Exposure` and timezone-aware UTC times.

The Skynet API v2 sends camelCase JSON with *naive* ISO-8601 timestamps that
are UTC (``skynet_api.md`` §1). Every time that leaves this module is a
timezone-aware UTC ``datetime``, which prevents comparing naive and aware times
(skynetsoap bug B1). The filter name is kept as Skynet spells it (``rprime``);
the pipeline normalises header and API names the same way.

This module does no I/O.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from soapd.errors import SkynetError
from soapd.models import ExposureMeta
from soapd.timeutil import iso_utc, parse_utc

__all__ = [
    "EXPOSURE_FIELDS",
    "MAX_ID",
    "Exposure",
    "exposure_from_json",
    "format_api_time",
    "parse_api_time",
    "with_extra",
]

logger = logging.getLogger(__name__)

#: Largest id soapd accepts: ids are stored as SQLite INTEGER, a signed 64-bit number.
MAX_ID = 2**63 - 1

#: The exposure fields asked for with ``include=`` (skynet_api.md §4.1 and §7).
EXPOSURE_FIELDS: tuple[str, ...] = (
    "id",
    "obsId",
    "expNum",
    "state",
    "type",
    "expLength",
    "expLengthUsed",
    "timeTaken",
    "centerTime",
    "timeArchived",
    "filterName",
    "filterUsed",
    "filterRequested",
    "telescope",
    "camera",
    "gain",
    "readNoise",
    "blankLevel",
    "binningUsed",
    "wcsState",
    "wcsSolution",
    "imageId",
    "remoteFilename",
    "isCompressed",
)


def parse_api_time(value: str | None) -> datetime | None:
    """Given an API timestamp (naive ISO-8601, UTC by convention), return an aware UTC datetime.

    ``None`` and the empty string give ``None``. A timestamp that carries an
    offset (or ``Z``) is converted to UTC. Raise ValueError if the text is not
    an ISO-8601 date-time, TypeError if it is not a string.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"timestamp must be a string, got {type(value).__name__}")
    text = value.strip()
    return parse_utc(text) if text else None


def format_api_time(when: datetime) -> str:
    """Return ``when`` as the API writes times: naive ISO-8601 in UTC (``2025-01-12T03:04:05``).

    Raise ValueError if ``when`` is naive: soapd never guesses a time zone.
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("format_api_time needs a timezone-aware datetime")
    return iso_utc(when)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exposure:
    """One archive exposure as soapd sees it, whatever the archive.

    ``meta`` holds what the pipeline uses (telescope, filter, exposure time,
    mid-exposure time, gain, read noise) plus JSON-safe extras; ``state`` is the
    archive's state (``archived`` means the file can be downloaded).
    """

    exp_id: int
    obs_id: int | None
    state: str
    meta: ExposureMeta
    time_taken_utc: datetime | None = None
    time_archived_utc: datetime | None = None
    wcs_state: str | None = None
    remote_filename: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def image_id(self) -> str:
        """Return the download id of the raw exposure (``r<exp_id>``)."""
        return f"r{self.exp_id}"

    @property
    def is_archived(self) -> bool:
        """Return True when the archive holds the file (state ``archived``)."""
        return self.state == "archived"


def _time_field(rec: Mapping[str, Any], key: str, exp_id: int) -> datetime | None:
    """Parse ``rec[key]`` as an API time; a malformed value gives None and a warning."""
    try:
        return parse_api_time(rec.get(key))
    except (ValueError, TypeError):
        logger.warning("exposure %s: ignoring unreadable %s %r", exp_id, key, rec.get(key))
        return None


def _number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    """Return ``value`` as an int when it is an integer (or integral string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _id(rec: Mapping[str, Any], key: str, *, required: bool) -> int | None:
    """Return ``rec[key]`` as an id: an integer in [1, 2**63 - 1] (a SQLite INTEGER).

    A missing (or null) optional id gives None. Raise SkynetError naming the
    field when a required id is missing, or any id is not such an integer (an
    id of 2**64 would overflow the ledger's column).
    """
    value = rec.get(key)
    if value is None and not required:
        return None
    number = _int(value)
    if number is None:
        raise SkynetError(f"Skynet sent an exposure record without an integer {key}: {rec!r:.200}")
    if not 1 <= number <= MAX_ID:
        raise SkynetError(
            f"Skynet sent an exposure record whose {key} {number} is outside 1..2**63-1: "
            f"{rec!r:.200}"
        )
    return number


def _name(value: Any) -> str | None:
    """Return the ``name`` of a nested ``{id, name}`` object (or a bare string)."""
    if isinstance(value, Mapping):
        value = value.get("name")
    return value.strip() or None if isinstance(value, str) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _extras(rec: Mapping[str, Any], exptime_req: float | None) -> dict[str, Any]:
    """Return the JSON-safe extra fields worth keeping (Skynet's own quality numbers too)."""
    extra: dict[str, Any] = {
        "exp_num": _int(rec.get("expNum")),
        "exp_type": rec.get("type") if isinstance(rec.get("type"), str) else None,
        "exptime_requested_s": exptime_req,
        "filter_requested": _name(rec.get("filterRequested")),
        "binning": _int(rec.get("binningUsed")),
        "blank_level_adu": _number(rec.get("blankLevel")),
        "camera": _name(rec.get("camera")),
        "is_compressed": rec.get("isCompressed")
        if isinstance(rec.get("isCompressed"), bool)
        else None,
    }
    telescope = rec.get("telescope")
    if isinstance(telescope, Mapping):
        site = telescope.get("site")
        if isinstance(site, Mapping):
            extra["site_lat_deg"] = _number(site.get("latDegs"))
            extra["site_lon_deg"] = _number(site.get("lngDegs"))
        extra["site"] = _name(site) or (
            telescope.get("siteName") if isinstance(telescope.get("siteName"), str) else None
        )
    wcs = rec.get("wcsSolution")
    if isinstance(wcs, Mapping):
        for src, dst in (
            ("fwhm", "skynet_fwhm"),
            ("zeroPoint", "skynet_zero_point"),
            ("limitingMag", "skynet_limiting_mag"),
            ("pixelScale", "skynet_pixel_scale"),
        ):
            extra[dst] = _number(wcs.get(src))
    return {k: v for k, v in extra.items() if v is not None}


def exposure_from_json(rec: Mapping[str, Any]) -> Exposure:
    """Given one Skynet exposure record (camelCase JSON), return an :class:`Exposure`.

    Fields other than ``id`` are optional: a missing or malformed one becomes
    None (a malformed time is logged). The mid-exposure time is ``centerTime``;
    when it is absent but ``timeTaken`` (the start) and the exposure length are
    known it is their sum with half the length, and ``meta.extra`` says so.
    Gain and read noise come from the record or its ``camera``. Raise
    SkynetError if ``id`` is missing or not an integer in [1, 2**63 - 1], or
    ``obsId`` is present but not such an integer.
    """
    exp_id = _id(rec, "id", required=True)
    obs_id = _id(rec, "obsId", required=False)
    assert exp_id is not None
    camera = rec.get("camera") if isinstance(rec.get("camera"), Mapping) else {}
    assert isinstance(camera, Mapping)
    exptime_used = _positive(rec.get("expLengthUsed"))
    exptime_req = _positive(rec.get("expLength"))
    exptime_s = exptime_used if exptime_used is not None else exptime_req
    taken = _time_field(rec, "timeTaken", exp_id)
    centre = _time_field(rec, "centerTime", exp_id)
    extra = _extras(rec, exptime_req)
    if centre is not None:
        extra["mid_time_source"] = "centerTime"
    elif taken is not None and exptime_s is not None:
        centre = taken + timedelta(seconds=exptime_s / 2)
        extra["mid_time_source"] = "timeTaken+exptime/2"
    gain = _positive(rec.get("gain"))
    read_noise = _number(rec.get("readNoise"))
    meta = ExposureMeta(
        exp_id=exp_id,
        obs_id=obs_id,
        telescope=_name(rec.get("telescope")),
        filter=_name(rec.get("filterName")) or _name(rec.get("filterUsed")),
        exptime_s=exptime_s,
        mid_time_utc=centre,
        gain_e_per_adu=gain if gain is not None else _positive(camera.get("gain")),
        read_noise_e=read_noise if read_noise is not None else _number(camera.get("readNoise")),
        extra=extra,
    )
    state = rec.get("state")
    wcs_state = rec.get("wcsState")
    remote = rec.get("remoteFilename")
    return Exposure(
        exp_id=exp_id,
        obs_id=meta.obs_id,
        state=state if isinstance(state, str) else "unknown",
        meta=meta,
        time_taken_utc=taken,
        time_archived_utc=_time_field(rec, "timeArchived", exp_id),
        wcs_state=wcs_state if isinstance(wcs_state, str) else None,
        remote_filename=remote if isinstance(remote, str) else None,
        raw=dict(rec),
    )


def with_extra(meta: ExposureMeta, **values: Any) -> ExposureMeta:
    """Return a copy of ``meta`` whose ``extra`` also holds ``values`` (JSON-safe scalars)."""
    return replace(meta, extra={**meta.extra, **values})
