"""PhotometryResult and extract_target on hand-built tables with known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from api_tables import TARGET_DEC, TARGET_RA, make_table, result_row
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

from soapd.api.results import (
    PhotometryResult,
    PhotometryTarget,
    TargetLightcurve,
    extract_target,
    to_mjd,
)
from soapd.flags import Flag

TARGET = SkyCoord(TARGET_RA, TARGET_DEC, unit="deg")


# -- times -------------------------------------------------------------------------------


def test_to_mjd_naive_aware_iso_and_numbers_agree() -> None:
    ref = Time("2024-07-05T02:24:00", scale="utc").mjd
    assert to_mjd("2024-07-05T02:24:00") == pytest.approx(ref, abs=1e-9)
    assert to_mjd("2024-07-05T02:24:00Z") == pytest.approx(ref, abs=1e-9)
    assert to_mjd("2024-07-05T04:24:00+02:00") == pytest.approx(ref, abs=1e-9)
    assert to_mjd(datetime(2024, 7, 5, 2, 24)) == pytest.approx(ref, abs=1e-9)
    east = timezone(timedelta(hours=-5))
    assert to_mjd(datetime(2024, 7, 4, 21, 24, tzinfo=east)) == pytest.approx(ref, abs=1e-9)
    assert to_mjd(Time(ref, format="mjd")) == pytest.approx(ref)
    assert to_mjd(str(ref)) == pytest.approx(ref)
    assert to_mjd(ref) == ref


def test_to_mjd_jd_or_garbage_raises_specific_error() -> None:
    with pytest.raises(ValueError, match="looks like a JD"):
        to_mjd(2460500.5)
    with pytest.raises(ValueError, match="ISO-8601"):
        to_mjd("yesterday")
    with pytest.raises(TypeError):
        to_mjd(True)  # type: ignore[arg-type]


def test_filter_by_date_b1_naive_and_aware_bounds_do_not_raise(field: Table) -> None:
    """skynetsoap B1: days_ago (aware) against naive times raised TypeError."""
    res = PhotometryResult(field)
    now = datetime(2024, 7, 6, 12, 0, tzinfo=UTC)
    last_day = res.filter_by_date(days_ago=1.0, now=now)
    assert set(last_day.table["image_file"]) == {"f3.fits"}
    naive_now = datetime(2024, 7, 6, 12, 0)  # naive: taken as UTC
    assert len(res.filter_by_date(days_ago=1.0, now=naive_now)) == len(last_day)
    after = res.filter_by_date(after="2024-07-05T03:00:00")  # naive ISO text
    assert set(after.table["image_file"]) == {"f2.fits", "f3.fits"}
    aware = res.filter_by_date(
        after=datetime(2024, 7, 5, 5, 0, tzinfo=timezone(timedelta(hours=2)))
    )
    assert set(aware.table["image_file"]) == {"f2.fits", "f3.fits"}
    both = res.filter_by_date(after=Time("2024-07-05T03:00:00").mjd, before="2024-07-06")
    assert set(both.table["image_file"]) == {"f2.fits"}


def test_filter_by_date_compares_mid_exposure_not_start(row: object) -> None:
    """A 600 s exposure starting at 00:00 has its mid-time at 00:05 (the ``mjd`` column)."""
    mid = Time("2024-07-05T00:05:00", scale="utc").mjd
    res = PhotometryResult(make_table([result_row(mjd=mid, exptime=600.0)]))
    assert len(res.filter_by_date(after="2024-07-05T00:04:00")) == 1
    assert len(res.filter_by_date(after="2024-07-05T00:06:00")) == 0


def test_filter_by_date_negative_days_ago_raises(field: Table) -> None:
    with pytest.raises(ValueError, match="days_ago"):
        PhotometryResult(field).filter_by_date(days_ago=-1)


# -- selections --------------------------------------------------------------------------


def test_filter_by_band_matches_aliases(field: Table) -> None:
    res = PhotometryResult(field)
    for alias in ("r", "rprime", "r'", "SDSS r"):
        assert set(res.filter_by_band(alias).table["image_file"]) == {"f1.fits", "f2.fits"}
    assert set(res.filter_by_band("V").table["image_file"]) == {"f3.fits"}
    assert len(res.filter_by_band("Halpha")) == 0


def test_filter_by_aperture_keeps_one_radius(field: Table) -> None:
    one = PhotometryResult(field).filter_by_aperture(1)
    assert len(one) > 0
    assert set(one.table["aperture_radius"]) == {5.0}


def test_sort_by_time_orders_mjd() -> None:
    t = make_table([result_row(mjd=m, image_file=f"{m}") for m in (3.0, 1.0, 2.0)])
    assert list(PhotometryResult(t).sort_by_time().table["mjd"]) == [1.0, 2.0, 3.0]


def test_get_best_aperture_picks_highest_snr_or_flux_per_source(field: Table) -> None:
    res = PhotometryResult(field).filter_by_band("r").filter_by_date(before="2024-07-05T03:00:00")
    best = res.get_best_aperture("snr")
    # f1: target (2 apertures), neighbour (2), far star (2), forced (1) -> 4 sources.
    assert len(best) == 4
    by_x = {(bool(r["is_forced"]), float(r["x_pix"])): r for r in best.table}
    assert by_x[(False, 100.0)]["aperture_id"] == 1  # target: S/N 60 at ap 1 beats 50
    assert by_x[(False, 96.4)]["aperture_id"] == 0  # neighbour: S/N 80 at ap 0 beats 66.7
    by_flux = {
        (bool(r["is_forced"]), float(r["x_pix"])): r for r in res.get_best_aperture("flux").table
    }
    assert by_flux[(False, 96.4)]["aperture_id"] == 1
    with pytest.raises(ValueError, match="criterion"):
        res.get_best_aperture("mag")  # type: ignore[arg-type]


# -- extract_target ----------------------------------------------------------------------


def test_extract_target_detections_only_nearest_per_frame(field: Table) -> None:
    lc = PhotometryResult(field).extract_target(TARGET, radius_arcsec=3.0)
    assert isinstance(lc, TargetLightcurve)
    assert PhotometryTarget is TargetLightcurve
    t = lc.table
    assert list(t["image_file"]) == ["f1.fits", "f2.fits"]  # f3: the target is not extracted
    assert np.all(t["separation_arcsec"] < 0.3)  # the target, never the 3.6" neighbour
    assert list(t["aperture_id"]) == [1, 1]  # equal distance: the highest S/N aperture
    assert not np.any(t["is_forced"])
    assert np.all(t["is_detection"])


def test_extract_target_wider_radius_takes_neighbour_only_where_target_missing(
    field: Table,
) -> None:
    t = PhotometryResult(field).extract_target(TARGET, radius_arcsec=4.0).table
    assert list(t["image_file"]) == ["f1.fits", "f2.fits", "f3.fits"]
    assert [round(float(s), 1) for s in t["separation_arcsec"]] == [0.2, 0.2, 3.6]


def test_extract_target_forced_rows_below_threshold_become_limits(field: Table) -> None:
    """skynetsoap dropped forced rows below S/N 3 (or gave them magnitudes): now limits."""
    lc = PhotometryResult(field).extract_target(TARGET, forced_photometry=True, snr_threshold=3.0)
    t = lc.table
    assert list(t["image_file"]) == ["f1.fits", "f2.fits", "f3.fits"]
    assert np.all(t["is_forced"])  # distance 0 beats the 0.2" detection
    assert list(t["is_detection"]) == [True, False, False]
    assert t["calibrated_mag"][0] == 18.0
    assert np.all(np.isnan(t["calibrated_mag"][1:]))
    assert np.all(np.isnan(t["calibrated_mag_err"][1:]))
    assert np.all(np.isfinite(t["limiting_mag"]))
    flags = np.asarray(t["flag"])
    assert list((flags & Flag.UPPER_LIMIT) != 0) == [False, True, True]
    assert set(t["target_name"]) == {f"{TARGET_RA:.6f} {TARGET_DEC:+.6f}"}
    assert len(lc.detections) == 1
    assert len(lc.upper_limits) == 2
    assert t["calibrated_mag"].unit == "mag"


def test_extract_target_lower_threshold_turns_limit_into_detection(field: Table) -> None:
    t = PhotometryResult(field).extract_target(TARGET, forced_photometry=True, snr_threshold=1.5)
    assert list(t.table["is_detection"]) == [True, True, False]
    assert t.table["calibrated_mag"][1] == 19.0
    assert (int(t.table["flag"][1]) & Flag.UPPER_LIMIT) == 0


def test_extract_target_skips_off_frame_rows() -> None:
    """Off-frame rows are never a measurement: without forced photometry they are left out;
    a position asked for explicitly (forced) gets one row per frame saying "not covered",
    with a NaN limit and no UPPER_LIMIT (issues 10 and 14)."""
    t = make_table([result_row(is_forced=True, flag=int(Flag.OFF_FRAME), snr=np.nan, x_pix=np.nan)])
    assert len(extract_target(t, TARGET_RA, TARGET_DEC)) == 0
    lc = extract_target(t, TARGET_RA, TARGET_DEC, forced_photometry=True)
    assert len(lc) == 1
    flag = int(lc["flag"][0])
    assert flag & Flag.NOT_COVERED
    assert not flag & Flag.UPPER_LIMIT
    assert not lc["is_detection"][0]
    assert np.isnan(lc["limiting_mag"][0])
    assert np.isnan(lc["calibrated_mag"][0])


def test_extract_target_plain_function_names_target_and_handles_ra_wrap() -> None:
    t = make_table(
        [
            result_row(ra=359.99995, dec=0.0, image_file="a.fits", mjd=1.0),
            result_row(ra=0.00005, dec=0.0, image_file="b.fits", mjd=2.0),
        ]
    )
    lc = extract_target(t, 0.0, 0.0, radius_arcsec=1.0, target_name="GRB X")
    assert list(lc["image_file"]) == ["a.fits", "b.fits"]
    assert set(lc["target_name"]) == {"GRB X"}
    assert np.allclose(lc["separation_arcsec"], 0.18, atol=1e-3)
    with pytest.raises(ValueError, match="radius_arcsec"):
        extract_target(t, 0.0, 0.0, radius_arcsec=0.0)
    with pytest.raises(KeyError, match="'ra'"):
        extract_target(Table({"x": [1]}), 0.0, 0.0)


def test_extract_target_empty_table_gives_empty_lightcurve(field: Table) -> None:
    far = SkyCoord(10.0, -40.0, unit="deg")
    lc = PhotometryResult(field).extract_target(far)
    assert len(lc) == 0
    assert "separation_arcsec" in lc.table.colnames


# -- magnitude systems -------------------------------------------------------------------


def test_convert_calibrated_mag_system_shifts_by_ab_minus_vega(field: Table) -> None:
    res = PhotometryResult(field)
    ab = res.convert_calibrated_mag_system("AB")
    v_rows = ab.table[ab.table["filter"] == "V"]
    orig_v = field[field["filter"] == "V"]
    assert np.allclose(v_rows["calibrated_mag"], orig_v["calibrated_mag"] + 0.02, equal_nan=True)
    assert np.allclose(v_rows["zeropoint"], orig_v["zeropoint"] + 0.02)
    assert set(ab.table["cal_mag_system"]) == {"AB"}
    r_rows = ab.table[ab.table["filter"] != "V"]
    assert np.allclose(
        r_rows["calibrated_mag"], field[field["filter"] != "V"]["calibrated_mag"], equal_nan=True
    )
    back = ab.convert_calibrated_mag_system("Vega")
    assert np.allclose(
        back.table["calibrated_mag"],
        field["calibrated_mag"] - np.where(field["filter"] == "V", 0.0, 0.16),
        equal_nan=True,
    )
    assert field["cal_mag_system"][0] == "AB"  # the original is untouched


def test_convert_calibrated_mag_system_leaves_unknown_band_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = make_table([result_row(filter="Halpha", cal_mag_system="none", calibrated_mag=15.0)])
    out = PhotometryResult(t).convert_calibrated_mag_system("AB")
    assert out.table["calibrated_mag"][0] == 15.0
    assert "no AB/Vega system" in caplog.text
    with pytest.raises(ValueError, match="system"):
        PhotometryResult(t).convert_calibrated_mag_system("ST")  # type: ignore[arg-type]


def test_from_tables_stacks_and_sorts() -> None:
    a = make_table([result_row(mjd=2.0)])
    b = make_table([result_row(mjd=1.0, image_file="f0.fits")])
    res = PhotometryResult.from_tables([a, Table(), b])
    assert list(res.table["mjd"]) == [1.0, 2.0]
    assert len(PhotometryResult.from_tables([])) == 0
    assert "2 rows" in repr(res)
