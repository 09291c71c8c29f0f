"""Alert rules: pure functions of a target's earlier lightcurve and its new point.

Each rule takes ``history`` (the target's earlier points, oldest first, one per
frame), the new ``point`` and the rule parameters, and returns a
:class:`RuleHit` or None. Nothing here reads the store or the clock, so the same
inputs always give the same alerts.

Like with like. Each point is on one magnitude system: ``AB`` or ``Vega``
(calibrated), or ``instrumental`` (a frame without a zero point: ``ins_mag`` and the
instrumental limit, -2.5 log10 e-/s). Magnitudes and limits are compared only
between points of the same *kind*: the same telescope, band and system
(:meth:`Point.kind`), so an instrumental number is never compared with a
calibrated one, nor one telescope's instrumental scale with another's.

Trust. Only covered points reach the rules (lightcurves hold no not-covered rows).
A point with a suspect bit (:data:`soapd.flags.SUSPECT`: saturated, blended, cosmic
ray, contaminated, not covered) raises no new detection and no brightening or
fading, and is not the detection a change is measured from. A "detection" with a
spurious bit (:data:`soapd.flags.SPURIOUS`: cosmic ray, contaminated, not covered)
does not count as an earlier detection at all.

Rules
-----
new_detection
    The point is a clean detection with S/N >= ``detection_snr`` and no earlier point
    (any band, telescope or system) was a real detection at that S/N.
deeper_limit
    The point is an upper limit, its kind has no real detection yet, and its limit is
    fainter than the deepest earlier limit of its kind by >= ``deeper_limit_margin_mag``.
brightening / fading
    The clean point and the previous clean detection of its kind differ by
    >= ``change_min_mag`` at >= ``change_min_sigma`` (errors added in quadrature).
faded_below_limit
    The point is an upper limit fainter than the last real detection of its kind, and
    no limit of its kind since that detection already was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from soapd.config import AlertsConfig
from soapd.errors import ConfigError
from soapd.flags import SPURIOUS, SUSPECT, has_any

__all__ = [
    "INSTRUMENTAL",
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

#: The magnitude system of points from frames without a zero point.
INSTRUMENTAL = "instrumental"

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
    """One lightcurve point as the rules see it (mag in mag, time in MJD UTC).

    ``mag``/``mag_err``/``lim_mag`` are on ``mag_system``: "AB" or "Vega"
    (calibrated) or :data:`INSTRUMENTAL`; ``flags`` is the row's flag word.
    """

    frame_id: int
    mjd: float
    band: str
    is_detection: bool
    snr: float
    mag: float
    mag_err: float
    lim_mag: float
    mag_system: str = ""
    telescope: str = ""
    flags: int = 0

    def kind(self) -> tuple[str, str, str]:
        """Return what makes two points comparable: (telescope, band, system)."""
        return (self.telescope, self.band, self.mag_system)

    @property
    def clean(self) -> bool:
        """True when no suspect bit is set (:data:`soapd.flags.SUSPECT`)."""
        return not has_any(self.flags, SUSPECT)

    @property
    def real(self) -> bool:
        """True for a detection without a spurious bit (:data:`soapd.flags.SPURIOUS`)."""
        return self.is_detection and not has_any(self.flags, SPURIOUS)

    def where(self) -> str:
        """Return the band, with the system and telescope when the scale is instrumental."""
        if self.mag_system == INSTRUMENTAL:
            on = f" on {self.telescope}" if self.telescope else ""
            return f"{self.band} (instrumental{on})"
        return self.band


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleHit:
    """A rule that fired: its name, a one-line description and the numbers behind it."""

    rule: str
    message: str
    values: dict[str, float | str] = field(default_factory=dict)


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _det(p: Point, snr_min: float | None = None) -> bool:
    """Return True for a real detection (at S/N >= ``snr_min`` when given)."""
    return p.real and (snr_min is None or (math.isfinite(p.snr) and p.snr >= snr_min))


def _same(history: Sequence[Point], point: Point) -> list[Point]:
    """Return the earlier points of the same kind as ``point`` (telescope, band, system)."""
    kind = point.kind()
    return [h for h in history if h.kind() == kind]


def new_detection(history: Sequence[Point], point: Point, params: RuleParams) -> RuleHit | None:
    """First clean detection at S/N >= detection_snr after only limits or nothing."""
    if not point.clean or not _det(point, params.detection_snr):
        return None
    if any(_det(h, params.detection_snr) for h in history):
        return None
    prior = [h.lim_mag for h in _same(history, point) if math.isfinite(h.lim_mag)]
    text = f"new detection in {point.where()}"
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
    same = _same(history, point)
    if any(h.real for h in same):
        return None
    limits = [h.lim_mag for h in same if not h.is_detection and math.isfinite(h.lim_mag)]
    if not limits:
        return None
    best = max(limits)
    if point.lim_mag < best + params.deeper_limit_margin_mag:
        return None
    return RuleHit(
        rule="deeper_limit",
        message=(f"deeper limit in {point.where()}: > {point.lim_mag:.2f} (previous > {best:.2f})"),
        values={"lim_mag": point.lim_mag, "previous_lim_mag": best},
    )


def brightening_or_fading(
    history: Sequence[Point], point: Point, params: RuleParams
) -> RuleHit | None:
    """Fire on a significant change against the previous clean detection of the same kind."""
    if not point.is_detection or not point.clean or not _finite(point.mag, point.mag_err):
        return None
    prev = [h for h in _same(history, point) if h.real and h.clean]
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
            f"{rule} in {point.where()}: {last.mag:.2f} -> {point.mag:.2f} mag "
            f"({delta:+.2f} mag, {signif:.1f} sigma)"
        ),
        values={"mag": point.mag, "previous_mag": last.mag, "delta_mag": delta, "sigma": signif},
    )


def faded_below_limit(history: Sequence[Point], point: Point, params: RuleParams) -> RuleHit | None:
    """Fire on the first upper limit fainter than the last real detection of the same kind."""
    del params
    if point.is_detection or not math.isfinite(point.lim_mag):
        return None
    same = _same(history, point)
    dets = [i for i, h in enumerate(same) if h.real and math.isfinite(h.mag)]
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
            f"faded below the limit in {point.where()}: > {point.lim_mag:.2f}, "
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
