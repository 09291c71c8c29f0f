"""Alert rules: pure functions of a target's earlier lightcurve and its new point.

Each rule takes ``history`` (the target's earlier points, oldest first, one per
frame), the new ``point`` and the rule parameters, and returns a
:class:`RuleHit` or None. Magnitudes and limits are calibrated: a frame without
a zero point has NaN magnitudes and limits (its instrumental magnitude is only in
``ins_mag``), so only ``new_detection``, which goes by S/N, can fire on it. Nothing
here reads the store or the clock, so the same inputs always give the same alerts.

Rules
-----
new_detection
    The point is a detection with S/N >= ``detection_snr`` and no earlier point
    (any band) was.
deeper_limit
    The point is an upper limit, the band has no detection yet, and its limit is
    fainter than the deepest earlier limit in the band by >= ``deeper_limit_margin_mag``.
brightening / fading
    The point and the previous detection in the same band differ by
    >= ``change_min_mag`` at >= ``change_min_sigma`` (errors added in quadrature).
faded_below_limit
    The point is an upper limit fainter than the last detection in the band, and no
    limit since that detection already was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from soapd.config import AlertsConfig
from soapd.errors import ConfigError

__all__ = [
    "PARAM_NAMES",
    "RULES",
    "STACK_RULES",
    "Point",
    "RuleHit",
    "RuleParams",
    "brightening_or_fading",
    "deeper_limit",
    "evaluate",
    "faded_below_limit",
    "new_detection",
    "validate_overrides",
]

#: Numeric rule parameters a target may override (names of AlertsConfig fields).
PARAM_NAMES = (
    "detection_snr",
    "deeper_limit_margin_mag",
    "change_min_mag",
    "change_min_sigma",
    "stack_deeper_limit_margin_mag",
)

#: Rules on stacked epochs (:mod:`soapd.alerts.stack_rules`); a target may switch them off.
STACK_RULES = ("stack_detection", "stack_deeper_limit")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleParams:
    """Parameters of the rules for one target (AlertsConfig defaults + overrides).

    ``enabled`` switches all of a target's alerts; ``rules_off`` names rules switched off.
    """

    enabled: bool = True
    detection_snr: float = 5.0
    deeper_limit_margin_mag: float = 0.5
    change_min_mag: float = 0.3
    change_min_sigma: float = 3.0
    stack_deeper_limit_margin_mag: float = 0.5
    rules_off: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(
        cls, alerts: AlertsConfig, overrides: Mapping[str, float] | None = None
    ) -> RuleParams:
        """Return the defaults of ``alerts`` with a target's ``overrides`` applied."""
        base = cls(
            enabled=alerts.enabled,
            detection_snr=float(alerts.detection_snr),
            deeper_limit_margin_mag=float(alerts.deeper_limit_margin_mag),
            change_min_mag=float(alerts.change_min_mag),
            change_min_sigma=float(alerts.change_min_sigma),
            stack_deeper_limit_margin_mag=float(alerts.stack_deeper_limit_margin_mag),
        )
        return base.with_overrides(overrides or {})

    def with_overrides(self, overrides: Mapping[str, float]) -> RuleParams:
        """Return a copy with ``overrides`` (validated by :func:`validate_overrides`)."""
        validate_overrides(overrides)
        changes: dict[str, Any] = {k: float(v) for k, v in overrides.items() if k in PARAM_NAMES}
        if "enabled" in overrides:
            changes["enabled"] = bool(overrides["enabled"]) and self.enabled
        off = {k for k, v in overrides.items() if (k in RULES or k in STACK_RULES) and not v}
        return replace(self, **changes, rules_off=self.rules_off | off)


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One lightcurve point as the rules see it (mag in mag, time in MJD UTC)."""

    frame_id: int
    mjd: float
    band: str
    is_detection: bool
    snr: float
    mag: float
    mag_err: float
    lim_mag: float
    mag_system: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleHit:
    """A rule that fired: its name, a one-line description and the numbers behind it."""

    rule: str
    message: str
    values: dict[str, float | str] = field(default_factory=dict)


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _det(p: Point, snr_min: float | None = None) -> bool:
    return p.is_detection and (snr_min is None or (math.isfinite(p.snr) and p.snr >= snr_min))


def new_detection(history: Sequence[Point], point: Point, params: RuleParams) -> RuleHit | None:
    """First detection at S/N >= detection_snr after only limits or nothing."""
    if not _det(point, params.detection_snr):
        return None
    if any(_det(h, params.detection_snr) for h in history):
        return None
    prior = [h.lim_mag for h in history if h.band == point.band and math.isfinite(h.lim_mag)]
    text = f"new detection in {point.band}"
    if _finite(point.mag, point.mag_err):
        text += f": {point.mag:.2f} +/- {point.mag_err:.2f} mag"
    text += f" (S/N {point.snr:.1f})"
    if prior:
        text += f" after {len(prior)} limit(s), deepest {max(prior):.2f}"
    return RuleHit(
        rule="new_detection",
        message=text,
        values={"mag": point.mag, "mag_err": point.mag_err, "snr": point.snr},
    )


def deeper_limit(history: Sequence[Point], point: Point, params: RuleParams) -> RuleHit | None:
    """Fire on an upper limit deeper than the deepest earlier one (same band, no detection)."""
    if point.is_detection or not math.isfinite(point.lim_mag):
        return None
    same = [h for h in history if h.band == point.band]
    if any(h.is_detection for h in same):
        return None
    limits = [h.lim_mag for h in same if math.isfinite(h.lim_mag)]
    if not limits:
        return None
    best = max(limits)
    if point.lim_mag < best + params.deeper_limit_margin_mag:
        return None
    return RuleHit(
        rule="deeper_limit",
        message=f"deeper limit in {point.band}: > {point.lim_mag:.2f} (previous > {best:.2f})",
        values={"lim_mag": point.lim_mag, "previous_lim_mag": best},
    )


def brightening_or_fading(
    history: Sequence[Point], point: Point, params: RuleParams
) -> RuleHit | None:
    """Fire on a significant change against the previous detection in the same band."""
    if not point.is_detection or not _finite(point.mag, point.mag_err):
        return None
    prev = [h for h in history if h.band == point.band and h.is_detection]
    prev = [h for h in prev if _finite(h.mag, h.mag_err)]
    if not prev:
        return None
    last = prev[-1]
    delta = point.mag - last.mag
    sigma = math.hypot(point.mag_err, last.mag_err)
    signif = abs(delta) / sigma if sigma > 0 else math.inf
    if abs(delta) < params.change_min_mag or signif < params.change_min_sigma:
        return None
    rule = "brightening" if delta < 0 else "fading"
    return RuleHit(
        rule=rule,
        message=(
            f"{rule} in {point.band}: {last.mag:.2f} -> {point.mag:.2f} mag "
            f"({delta:+.2f} mag, {signif:.1f} sigma)"
        ),
        values={"mag": point.mag, "previous_mag": last.mag, "delta_mag": delta, "sigma": signif},
    )


def faded_below_limit(history: Sequence[Point], point: Point, params: RuleParams) -> RuleHit | None:
    """Fire on the first upper limit fainter than the last detection in the band."""
    del params
    if point.is_detection or not math.isfinite(point.lim_mag):
        return None
    same = [h for h in history if h.band == point.band]
    dets = [i for i, h in enumerate(same) if h.is_detection and math.isfinite(h.mag)]
    if not dets:
        return None
    last = same[dets[-1]]
    if point.lim_mag <= last.mag:
        return None
    after = same[dets[-1] + 1 :]
    if any(not h.is_detection and h.lim_mag > last.mag for h in after):
        return None
    return RuleHit(
        rule="faded_below_limit",
        message=(
            f"faded below the limit in {point.band}: > {point.lim_mag:.2f}, "
            f"last detected at {last.mag:.2f} mag"
        ),
        values={"lim_mag": point.lim_mag, "last_mag": last.mag},
    )


#: Rule name -> function (brightening and fading share one function).
RULES = {
    "new_detection": new_detection,
    "deeper_limit": deeper_limit,
    "brightening": brightening_or_fading,
    "fading": brightening_or_fading,
    "faded_below_limit": faded_below_limit,
}


def validate_overrides(overrides: Mapping[str, float]) -> None:
    """Raise ConfigError for an unknown rule key or a negative value."""
    known = set(PARAM_NAMES) | set(RULES) | set(STACK_RULES) | {"enabled"}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown alert rule key {key!r}; known: {', '.join(sorted(known))}")
        if not math.isfinite(float(value)) or float(value) < 0:
            raise ConfigError(f"alert rule {key} must be a finite number >= 0, got {value}")


def evaluate(history: Sequence[Point], point: Point, params: RuleParams) -> list[RuleHit]:
    """Return every rule that fires for ``point`` after ``history`` (oldest first)."""
    if not params.enabled:
        return []
    hits: list[RuleHit] = []
    for fn in (new_detection, deeper_limit, brightening_or_fading, faded_below_limit):
        hit = fn(history, point, params)
        if hit is not None and hit.rule not in params.rules_off:
            hits.append(hit)
    return hits
