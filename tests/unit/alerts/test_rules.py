"""Tests of the pure alert rules."""

from __future__ import annotations

import math

import pytest

from soapd.alerts.rules import (
    Point,
    RuleParams,
    brightening_or_fading,
    deeper_limit,
    evaluate,
    faded_below_limit,
    new_detection,
    validate_overrides,
)
from soapd.config import AlertsConfig
from soapd.errors import ConfigError

P = RuleParams()


def det(i: int, mag: float, err: float = 0.05, snr: float = 20.0, band: str = "R") -> Point:
    return Point(
        frame_id=i,
        mjd=60000 + i,
        band=band,
        is_detection=True,
        snr=snr,
        mag=mag,
        mag_err=err,
        lim_mag=20.0,
    )


def lim(i: int, limit: float, band: str = "R") -> Point:
    return Point(
        frame_id=i,
        mjd=60000 + i,
        band=band,
        is_detection=False,
        snr=1.0,
        mag=math.nan,
        mag_err=math.nan,
        lim_mag=limit,
    )


def test_new_detection_after_limits_fires_once() -> None:
    assert new_detection([lim(0, 19.5)], det(1, 18.0), P).rule == "new_detection"
    assert new_detection([], det(0, 18.0), P) is not None
    assert new_detection([det(0, 18.0)], det(1, 18.0), P) is None


def test_new_detection_below_snr_threshold_does_not_fire() -> None:
    assert new_detection([], det(0, 18.0, snr=4.9), P) is None
    assert new_detection([det(0, 18.0, snr=4.0)], det(1, 18.0, snr=6.0), P) is not None


def test_deeper_limit_needs_margin_and_no_detection() -> None:
    hist = [lim(0, 19.0), lim(1, 19.2)]
    assert deeper_limit(hist, lim(2, 19.69), P) is None
    hit = deeper_limit(hist, lim(2, 19.7), P)
    assert hit is not None
    assert hit.values["previous_lim_mag"] == 19.2
    assert deeper_limit([], lim(0, 21.0), P) is None
    assert deeper_limit([det(0, 18.0), *hist], lim(3, 21.0), P) is None
    assert deeper_limit([lim(0, 19.0, band="V")], lim(1, 21.0), P) is None


def test_brightening_and_fading_need_size_and_significance() -> None:
    assert brightening_or_fading([det(0, 18.0)], det(1, 17.5), P).rule == "brightening"
    assert brightening_or_fading([det(0, 18.0)], det(1, 18.5), P).rule == "fading"
    assert brightening_or_fading([det(0, 18.0)], det(1, 17.8), P) is None  # < 0.3 mag
    noisy = det(1, 17.5, err=0.2)  # 0.5 mag at 0.5/hypot(0.2,0.05)=2.4 sigma
    assert brightening_or_fading([det(0, 18.0)], noisy, P) is None
    assert brightening_or_fading([det(0, 18.0, band="V")], det(1, 17.0), P) is None
    # Compared with the latest detection, not the first.
    assert brightening_or_fading([det(0, 18.0), det(1, 17.0)], det(2, 17.0), P) is None


def test_faded_below_limit_fires_on_first_deeper_limit_only() -> None:
    hist = [det(0, 18.0)]
    assert faded_below_limit(hist, lim(1, 17.5), P) is None
    assert faded_below_limit(hist, lim(1, 18.5), P).rule == "faded_below_limit"
    assert faded_below_limit([*hist, lim(1, 18.5)], lim(2, 18.7), P) is None
    assert faded_below_limit([], lim(0, 18.5), P) is None


def test_params_from_config_apply_target_overrides() -> None:
    p = RuleParams.from_config(AlertsConfig(change_min_mag=0.3), {"change_min_mag": 1.0})
    assert p.change_min_mag == 1.0
    assert brightening_or_fading([det(0, 18.0)], det(1, 17.5), p) is None
    off = RuleParams.from_config(AlertsConfig(), {"new_detection": 0})
    assert evaluate([], det(0, 18.0), off) == []
    disabled = RuleParams.from_config(AlertsConfig(), {"enabled": 0})
    assert evaluate([lim(0, 19.0)], det(1, 15.0), disabled) == []
    assert evaluate([], det(0, 18.0), RuleParams.from_config(AlertsConfig(enabled=False))) == []


def test_validate_overrides_rejects_unknown_and_negative() -> None:
    with pytest.raises(ConfigError, match="unknown alert rule key"):
        validate_overrides({"chnage_min_mag": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        validate_overrides({"change_min_mag": -1.0})


def test_evaluate_is_deterministic_and_lists_every_hit() -> None:
    hist = [lim(0, 19.0), det(1, 18.0, snr=4.0)]
    hits = evaluate(hist, det(2, 17.0), P)
    assert [h.rule for h in hits] == ["new_detection", "brightening"]
    assert evaluate(hist, det(2, 17.0), P) == hits


def test_bad_target_rule_key_falls_back_to_defaults(tmp_path, caplog) -> None:
    """A misspelt rule key in [[targets]] is logged; the frame is still stored and alerts."""
    from datetime import UTC, datetime

    from soapd.config import Config
    from soapd.frames import record_result
    from soapd.models import Target
    from soapd.store import Store
    from soapd.testing.lightcurves import register_frame, target_result

    t = datetime(2026, 11, 24, 3, tzinfo=UTC)
    with Store(tmp_path / "s.db") as store:
        store.upsert_target(Target(name="X", ra_deg=1.0, dec_deg=1.0, rules={"chnage": 1.0}))
        fid = register_frame(store, "f", mid_time_utc=t)
        ids = record_result(
            store, fid, target_result({"X": 15.0}, mid_time_utc=t), config=Config(), table_path=None
        )
        assert len(ids) == 1
        assert store.frame(fid).state == "processed"
    assert "unknown alert rule key" in caplog.text
