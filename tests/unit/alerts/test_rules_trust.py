"""The rules compare like with like and believe only clean, covered points (issue 10)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from soapd.alerts.history import draft_alerts, reference_points
from soapd.alerts.rules import (
    INSTRUMENTAL,
    Point,
    RuleParams,
    brightening_or_fading,
    deeper_limit,
    evaluate,
    faded_below_limit,
    new_detection,
)
from soapd.config import Config
from soapd.flags import Flag
from soapd.frames import record_result, without_off_footprint_rows
from soapd.models import FrameResult, Target
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

P = RuleParams()
T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)

#: Bits that must silence new-detection and brightening alerts; those of the science
#: branch (COSMIC_RAY, CONTAMINATED) are tested when this version has them.
SUSPECT_NAMES = ("SATURATED", "BLENDED", "COSMIC_RAY", "CONTAMINATED", "NOT_COVERED")
SUSPECT_BITS = [int(Flag[n]) for n in SUSPECT_NAMES if n in Flag.__members__]


def det(i: int, mag: float, *, tel="P5", band="R", system="Vega", flags=0, err=0.05) -> Point:
    return Point(
        frame_id=i,
        mjd=60000.0 + i,
        band=band,
        telescope=tel,
        mag_system=system,
        is_detection=True,
        snr=30.0,
        mag=mag,
        mag_err=err,
        lim_mag=20.0 if system != INSTRUMENTAL else -3.0,
        flags=flags,
    )


def lim(i: int, limit: float, *, tel="P5", band="R", system="Vega") -> Point:
    return Point(
        frame_id=i,
        mjd=60000.0 + i,
        band=band,
        telescope=tel,
        mag_system=system,
        is_detection=False,
        snr=1.0,
        mag=math.nan,
        mag_err=math.nan,
        lim_mag=limit,
        flags=int(Flag.UPPER_LIMIT),
    )


def test_changes_are_measured_only_against_the_same_telescope_band_and_system() -> None:
    assert brightening_or_fading([det(0, 18.0)], det(1, 17.0), P) is not None
    assert brightening_or_fading([det(0, 18.0, tel="P4")], det(1, 17.0), P) is None
    assert brightening_or_fading([det(0, 18.0, band="V")], det(1, 17.0), P) is None
    assert brightening_or_fading([det(0, 18.0, system="AB")], det(1, 17.0), P) is None
    # an instrumental -5 is never "brighter" than a calibrated 18
    assert brightening_or_fading([det(0, 18.0)], det(1, -5.0, system=INSTRUMENTAL), P) is None
    assert faded_below_limit([det(0, -6.0, system=INSTRUMENTAL)], lim(1, 19.0), P) is None
    assert deeper_limit([lim(0, -3.0, system=INSTRUMENTAL)], lim(1, 19.0), P) is None


def test_instrumental_points_are_compared_with_each_other_and_say_so() -> None:
    hit = brightening_or_fading(
        [det(0, -6.0, system=INSTRUMENTAL)], det(1, -7.0, system=INSTRUMENTAL), P
    )
    assert hit is not None
    assert hit.rule == "brightening"
    assert "instrumental on P5" in hit.message
    hit = faded_below_limit(
        [det(0, -6.0, system=INSTRUMENTAL)], lim(1, -5.0, system=INSTRUMENTAL), P
    )
    assert hit is not None
    assert "instrumental" in hit.message
    hit = new_detection([lim(0, -4.0, system=INSTRUMENTAL)], det(1, -6.0, system=INSTRUMENTAL), P)
    assert hit is not None
    assert "(instrumental on P5)" in hit.message
    assert "after 1 limit(s)" in hit.message


@pytest.mark.parametrize("bit", SUSPECT_BITS)
def test_flagged_points_raise_no_new_detection_and_no_brightening(bit: int) -> None:
    flagged = det(1, 16.0, flags=bit)
    assert new_detection([lim(0, 19.0)], flagged, P) is None
    assert brightening_or_fading([det(0, 18.0)], flagged, P) is None
    assert [h.rule for h in evaluate([det(0, 18.0)], flagged, P)] == []
    # nor is a flagged detection the reference a change is measured from
    assert brightening_or_fading([det(0, 14.0, flags=bit)], det(1, 16.0), P) is None


def test_spurious_detections_do_not_hide_the_first_real_one() -> None:
    spurious = [
        int(Flag[n]) for n in ("COSMIC_RAY", "CONTAMINATED", "NOT_COVERED") if n in Flag.__members__
    ]
    for bit in spurious:
        hit = new_detection([det(0, 16.0, flags=bit)], det(1, 17.0), P)
        assert hit is not None, bit
    # a saturated earlier detection is a real source: no second "new detection"
    assert new_detection([det(0, 11.0, flags=int(Flag.SATURATED))], det(1, 17.0), P) is None


def _table_points(rows: list[dict]) -> list[Point]:
    cols = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return reference_points(cols)


def test_reference_points_choose_the_calibrated_or_the_instrumental_scale() -> None:
    base = {
        "aperture_id": 0,
        "telescope": "P5",
        "band": "R",
        "is_detection": True,
        "snr": 20.0,
        "ins_mag": -6.0,
        "ins_mag_err": 0.05,
        "limiting_ins_mag": -3.5,
        "flag": 0,
    }
    rows = [
        base
        | {"frame_id": 1, "mjd": 1.0, "cal_mag_system": "Vega", "calibrated_mag": 16.0}
        | {"calibrated_mag_err": 0.06, "limiting_mag": 19.5},
        base
        | {"frame_id": 2, "mjd": 2.0, "cal_mag_system": "none", "calibrated_mag": np.nan}
        | {"calibrated_mag_err": np.nan, "limiting_mag": np.nan},
        base
        | {"frame_id": 3, "mjd": 3.0, "cal_mag_system": "none", "calibrated_mag": np.nan}
        | {"calibrated_mag_err": np.nan, "limiting_mag": np.nan}
        | {"is_detection": False, "flag": int(Flag.NOT_COVERED | Flag.NEAR_EDGE)},
    ]
    points = _table_points(rows)
    assert [p.frame_id for p in points] == [1, 2]  # the not-covered row makes no point
    cal, ins = points
    assert (cal.mag_system, cal.mag, cal.lim_mag) == ("Vega", 16.0, 19.5)
    assert (ins.mag_system, ins.mag, ins.mag_err, ins.lim_mag) == (INSTRUMENTAL, -6.0, 0.05, -3.5)
    assert ins.telescope == "P5"


# ----------------------------------------------------------------- through the store


def _frame(store: Store, i: int, result: FrameResult) -> list[int]:
    mid = T0 + timedelta(minutes=10 * (i + 1))
    fid = register_frame(store, f"f{i}.fits", mid_time_utc=mid, obs_id=5)
    return record_result(store, fid, result, config=Config(), table_path=None)


def _res(i: int, mags: dict, **kw) -> FrameResult:
    mid = T0 + timedelta(minutes=10 * (i + 1))
    return target_result(mags, mid_time_utc=mid, image_file=f"f{i}.fits", **kw)


def _not_covered(result: FrameResult, bits: Flag) -> FrameResult:
    t = result.table.copy()
    for col in ("flux", "flux_err", "snr", "ins_mag", "calibrated_mag", "limiting_mag"):
        t[col] = np.nan
    t["is_detection"] = False
    t["flag"] = int(Flag.NOT_COVERED | bits)
    return replace(result, table=t)


def _uncalibrated(result: FrameResult) -> FrameResult:
    t = result.table.copy()
    for col in ("calibrated_mag", "calibrated_mag_err", "limiting_mag", "zeropoint"):
        t[col] = np.nan
    t["cal_mag_system"] = "none"
    t["limiting_ins_mag"] = -2.5
    t["flag"] = np.asarray(t["flag"]) | int(Flag.NO_CALIBRATION)
    return replace(result, table=t)


def test_after_a_detection_unmeasured_frames_raise_nothing_and_store_no_limit(
    tmp_path: Path,
) -> None:
    """Detected at 17.0, then off the frame, in the edge buffer and under NaN pixels:
    before issue 10 each gave 'faded below the limit' at the frame's limit."""
    with Store(tmp_path / "s.db") as store:
        store.upsert_target(Target(name="GRB", ra_deg=150.0, dec_deg=-30.0))
        assert len(_frame(store, 0, _res(0, {"GRB": 17.0}))) == 1  # new detection
        off = _not_covered(_res(1, {"GRB": None}, lim_mag=20.3), Flag.OFF_FRAME)
        assert _frame(store, 1, off) == []
        edge = _not_covered(_res(2, {"GRB": None}, lim_mag=20.3), Flag.NEAR_EDGE)
        assert _frame(store, 2, edge) == []
        nan = _not_covered(_res(3, {"GRB": None}, lim_mag=20.3), Flag.MASKED_APERTURE)
        assert _frame(store, 3, nan) == []
        no_wcs = _not_covered(_res(4, {"GRB": None}), Flag.NO_WCS | Flag.OFF_FRAME)
        assert _frame(store, 4, no_wcs) == []
        stored = store.db.execute(
            "SELECT frame_id, flags, lim_mag FROM measurements ORDER BY frame_id"
        ).fetchall()
        # off the frame and no WCS: no row at all; edge and NaN: a not-covered row, no limit
        assert [r[0] for r in stored] == [1, 3, 4]
        assert all(r[1] & Flag.NOT_COVERED and r[2] is None for r in stored[1:])
        assert [a["rule"] for a in store.list_alerts()] == ["new_detection"]
        assert store.lightcurve("GRB")["frame_id"].tolist() == [1]


def test_uncalibrated_frames_compare_instrumental_with_instrumental_only(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.upsert_target(Target(name="V", ra_deg=150.0, dec_deg=-30.0))
        assert len(_frame(store, 0, _res(0, {"V": 16.0}))) == 1  # new detection, calibrated
        # uncalibrated, 1 mag brighter: nothing to compare with on its scale yet
        assert _frame(store, 1, _uncalibrated(_res(1, {"V": 15.0}))) == []
        # uncalibrated again, 1 mag brighter still: instrumental brightening
        ids = _frame(store, 2, _uncalibrated(_res(2, {"V": 14.0})))
        alerts = store.list_alerts()[::-1]  # oldest first
        assert [a["rule"] for a in alerts] == ["new_detection", "brightening"]
        assert len(ids) == 1
        assert "instrumental" in alerts[1]["payload"]
        # a calibrated frame compares with the calibrated one only (16.0 -> 16.05: nothing)
        assert _frame(store, 3, _res(3, {"V": 16.05})) == []


def test_instrumental_limits_come_from_the_limiting_ins_mag_column(tmp_path: Path) -> None:
    """faded_below_limit on an uncalibrated frame: its instrumental limit against the last
    instrumental detection of the same telescope."""
    with Store(tmp_path / "s.db") as store:
        store.upsert_target(Target(name="V", ra_deg=150.0, dec_deg=-30.0))
        _frame(store, 0, _uncalibrated(_res(0, {"V": 16.0})))  # ins -6.0 + ... detected
        ins_mag = float(store.lightcurve("V")["ins_mag"][0])
        gone = _uncalibrated(_res(1, {"V": None}))
        gone.table["limiting_ins_mag"] = ins_mag + 1.0
        _frame(store, 1, gone)
        rules = [a["rule"] for a in store.list_alerts()[::-1]]
        assert rules == ["new_detection", "faded_below_limit"]


def test_without_off_footprint_rows_drops_only_off_frame_not_covered_rows() -> None:
    res = _res(0, {"A": 16.0, "B": None, "C": None})
    t = res.table.copy()
    names = list(t["target_name"])
    flags = np.asarray(t["flag"]).copy()
    flags[names.index("B")] = int(Flag.NOT_COVERED | Flag.OFF_FRAME)
    flags[names.index("C")] = int(Flag.NOT_COVERED | Flag.NEAR_EDGE)
    t["flag"] = flags
    kept = without_off_footprint_rows(replace(res, table=t)).table
    assert sorted(kept["target_name"]) == ["A", "C"]
    untouched = _res(0, {"A": 16.0})
    assert without_off_footprint_rows(untouched) is untouched


def test_draft_alerts_skip_not_covered_rows_of_the_new_frame(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.upsert_target(Target(name="X", ra_deg=1.0, dec_deg=1.0))
        fid = register_frame(store, "a.fits", mid_time_utc=T0)
        res = _not_covered(_res(0, {"X": 15.0}), Flag.MASKED_APERTURE)
        assert draft_alerts(store, fid, res, config=Config()) == []
