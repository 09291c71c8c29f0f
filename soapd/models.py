"""Shared frozen records passed between soapd's layers.

Only plain values live here: no I/O, no SQL, no pixels. Times are timezone-aware
UTC ``datetime`` objects; angles are degrees (ICRS); exposure times are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["AlertDraft", "ExposureMeta", "Target"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A watched sky position.

    ``rules`` holds per-target overrides of the alert-rule parameters of
    :class:`soapd.config.AlertsConfig` (field name -> value).
    """

    name: str
    ra_deg: float
    dec_deg: float
    trigger_time_utc: datetime | None = None
    active: bool = True
    rules: dict[str, float] = field(default_factory=dict)
    target_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExposureMeta:
    """What the archive (Skynet's JSON) knows about one exposure.

    Any field may be None when unknown; the frame loader prefers these values
    over the FITS header only where the header lacks them (gain, read noise,
    filter, telescope) and always for the canonical mid-exposure time when the
    header has none.
    """

    exp_id: int | None = None
    obs_id: int | None = None
    telescope: str | None = None
    filter: str | None = None
    exptime_s: float | None = None
    mid_time_utc: datetime | None = None
    gain_e_per_adu: float | None = None
    read_noise_e: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertDraft:
    """An alert raised by a rule, not yet stored (see :mod:`soapd.alerts.rules`).

    ``dedupe_key`` is unique in the store: saving the same draft twice (for example
    when a frame is processed again) stores and sends it once. ``batch_key`` groups
    alerts of one target from one observation into one message. ``payload`` holds
    JSON-serialisable values only (magnitudes in mag, times ISO-8601 UTC).
    """

    target_name: str
    rule: str
    dedupe_key: str
    batch_key: str
    message: str
    payload: dict[str, Any] = field(default_factory=dict)
