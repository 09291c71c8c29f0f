"""Epoch grouping (log bins after a trigger, fixed bins otherwise) and frame selection."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soapd.flags import Flag
from soapd.stacks import Candidate, epoch_bin, group_epochs, predicted_limit, select_frames

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
BINS = {"log_bin_factor": 0.1, "first_bin_s": 60.0, "fixed_bin_s": 3600.0}


def _cand(fid: int, t_s: float, **kw) -> Candidate:
    base = {
        "frame_id": fid,
        "path": Path(f"f{fid}.fits"),
        "telescope": "PROMPT-5",
        "band": "R",
        "exptime_s": 60.0,
        "mid_time_utc": T0 + timedelta(seconds=t_s),
        "zp_mag": 22.0,
        "zp_err_mag": 0.02,
        "zp_scatter_mag": 0.05,
        "n_cal_stars": 30,
        "cal_catalog": "APASS DR9",
        "mag_system": "Vega",
        "lim_mag": 19.0,
    }
    base.update(kw)
    return Candidate(**base)


@pytest.mark.parametrize("t_s", [60.0, 61.0, 300.0, 3599.0, 3600.0, 86400.0, 10 * 86400.0])
def test_log_bins_span_at_most_factor_times_t(t_s: float) -> None:
    b = epoch_bin(T0 + timedelta(seconds=t_s), trigger_time_utc=T0, **BINS)
    start = (b.start_utc - T0).total_seconds()
    end = (b.end_utc - T0).total_seconds()
    assert b.kind == "log"
    assert start <= t_s < end
    # Delta t <= 0.1 t for every frame of the bin (the widest gap is end - start);
    # edges are datetimes, rounded to 1 microsecond.
    assert end - start <= 0.1 * start + 2e-6
    assert end - start == pytest.approx(0.1 * start, abs=2e-6)


def test_log_bins_are_contiguous_and_fixed_in_advance() -> None:
    a = epoch_bin(T0 + timedelta(seconds=1000), trigger_time_utc=T0, **BINS)
    b = epoch_bin(a.end_utc, trigger_time_utc=T0, **BINS)
    assert b.index == a.index + 1
    assert b.start_utc == a.end_utc
    # An exact edge belongs to the later bin.
    assert epoch_bin(a.start_utc, trigger_time_utc=T0, **BINS).index == a.index


def test_early_pre_trigger_and_untriggered_bins() -> None:
    early = epoch_bin(T0 + timedelta(seconds=20), trigger_time_utc=T0, **BINS)
    assert (early.kind, early.index) == ("log", -1)
    pre = epoch_bin(T0 - timedelta(seconds=10), trigger_time_utc=T0, **BINS)
    assert pre.kind == "pre"
    assert pre.end_utc == T0
    fixed = epoch_bin(T0 + timedelta(minutes=30), trigger_time_utc=None, **BINS)
    assert fixed.kind == "fixed"
    assert (fixed.end_utc - fixed.start_utc).total_seconds() == 3600.0
    assert fixed.start_utc.minute == 0
    assert fixed.is_open(T0 + timedelta(minutes=31))
    assert not fixed.is_open(fixed.end_utc)


def test_group_epochs_by_telescope_band_and_bin() -> None:
    # Log bin 30 spans 60 * 1.1**30 = 1046.8 s to 1151.5 s after the trigger.
    frames = [
        _cand(1, 1060),
        _cand(2, 1100),
        _cand(3, 1060, band="V"),
        _cand(4, 1070, telescope="PROMPT-8"),
        _cand(5, 5000),
        _cand(6, 1140),
    ]
    epochs = group_epochs(frames, trigger_time_utc=T0, **BINS)
    keys = {e.key: [c.frame_id for c in e.frames] for e in epochs}
    assert sorted(keys.values()) == [[1, 2, 6], [3], [4], [5]]
    assert all(e.key.startswith(f"{e.telescope}|{e.band}|log") for e in epochs)
    # Time order of epochs, and of frames inside an epoch.
    starts = [e.bin.start_utc for e in epochs]
    assert starts == sorted(starts)
    # A frame arriving later joins the same epoch: same key, the others unchanged.
    again = group_epochs([*frames, _cand(7, 1150)], trigger_time_utc=T0, **BINS)
    grown = {e.key: [c.frame_id for c in e.frames] for e in again}
    first_key = next(k for k, v in keys.items() if v == [1, 2, 6])
    assert grown[first_key] == [1, 2, 6, 7]
    assert {k: v for k, v in grown.items() if k != first_key} == {
        k: v for k, v in keys.items() if k != first_key
    }


def test_predicted_limit() -> None:
    assert predicted_limit([20.0] * 16, weighting="inverse_variance") == pytest.approx(
        20.0 + 2.5 * math.log10(4)
    )
    assert predicted_limit([20.0] * 4, weighting="equal") == pytest.approx(20.0 + 2.5 * 0.30103)
    assert math.isnan(predicted_limit([], weighting="equal"))


def test_selection_reasons_for_unusable_frames() -> None:
    frames = [
        _cand(1, 100),
        _cand(2, 110, flags=int(Flag.OFF_FRAME)),
        _cand(3, 120, flags=int(Flag.NO_WCS | Flag.UPPER_LIMIT)),
        _cand(4, 130, flags=int(Flag.SATURATED)),
        _cand(5, 140, flags=int(Flag.NO_CALIBRATION)),
        _cand(6, 150, zp_mag=math.nan),
        _cand(7, 160, zp_mag=21.0),
        _cand(8, 170, lim_mag=math.nan),
        _cand(9, 180, flags=int(Flag.BLENDED | Flag.UPPER_LIMIT)),
    ]
    sel = select_frames(
        frames, weighting="inverse_variance", min_gain_mag=0.001, cloud_margin_mag=0.5
    )
    reasons = {c.frame_id: r for c, r in sel.excluded}
    assert [c.frame_id for c in sel.included] == [1, 9]
    assert reasons[2] == "not covered (OFF_FRAME)"
    assert reasons[3] == "not covered (NO_WCS)"
    assert reasons[4] == "saturated at target"
    assert reasons[5] == reasons[6] == "no calibration"
    assert reasons[7].startswith("clouds (zero point 21.00 mag, 1.00 mag below")
    assert reasons[8] == "no limit"
    assert sel.reference_zp_mag == 22.0


def test_selection_adds_deepest_first_while_the_limit_improves() -> None:
    """Equal weights: a frame 2 mag shallower than two good ones would make the mean worse."""
    frames = [_cand(1, 100, lim_mag=19.0), _cand(2, 110, lim_mag=17.0), _cand(3, 120, lim_mag=19.2)]
    sel = select_frames(frames, weighting="equal", min_gain_mag=0.0, cloud_margin_mag=9.0)
    assert [c.frame_id for c in sel.included] == [3, 1]
    assert {c.frame_id: r for c, r in sel.excluded} == {2: "does not deepen the limit"}
    assert sel.predicted_lim_mag == pytest.approx(predicted_limit([19.2, 19.0], weighting="equal"))
    # Inverse-variance weights never make it worse; the shallow frame then gains 0.006 mag.
    iv = select_frames(frames, weighting="inverse_variance", min_gain_mag=0.001, cloud_margin_mag=9)
    assert [c.frame_id for c in iv.included] == [3, 1, 2]
    strict = select_frames(
        frames, weighting="inverse_variance", min_gain_mag=0.01, cloud_margin_mag=9
    )
    assert [c.frame_id for c in strict.included] == [3, 1]


def test_reference_zero_point_from_caller() -> None:
    frames = [_cand(1, 100, zp_mag=21.0), _cand(2, 110, zp_mag=21.1)]
    sel = select_frames(
        frames,
        weighting="inverse_variance",
        min_gain_mag=0.0,
        cloud_margin_mag=0.5,
        reference_zp_mag=22.0,
    )
    assert sel.included == ()
    assert all(r.startswith("clouds") for _, r in sel.excluded)


def test_max_frames_keeps_the_deepest_and_says_why_for_the_rest() -> None:
    from soapd.stacks.select import select_frames

    cands = [_cand(i, 60.0 * i, lim_mag=19.0 + 0.1 * i) for i in range(6)]
    sel = select_frames(
        cands, weighting="inverse_variance", min_gain_mag=0.0, cloud_margin_mag=0.5, max_frames=4
    )
    assert [c.frame_id for c in sel.included] == [5, 4, 3, 2]
    assert {c.frame_id: r for c, r in sel.excluded} == dict.fromkeys(
        (0, 1), "beyond stacks.max_frames = 4 (the deepest frames are stacked)"
    )
