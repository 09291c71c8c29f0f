"""The column registry: one definition per column, and its descriptions tell the truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from soapd.columns import (
    COLUMN_DESCRIPTIONS,
    COLUMN_DTYPES,
    COLUMN_UNITS,
    COLUMNS,
    LIGHTCURVE_COLUMNS,
    RESULT_COLUMNS,
    spec,
    text_cell,
)
from soapd.models import Target
from soapd.pipeline import process_frame
from soapd.store import Store
from soapd.testing.synth import make_frame, random_stars, write_frame

#: The result table's columns as skynetsoap and soapd 0.1 wrote them (order matters).
HISTORICAL_RESULT_COLUMNS = (
    "image_file telescope filter exptime mjd jd x_pix y_pix ra dec flux flux_err snr ins_mag "
    "ins_mag_err calibrated_mag calibrated_mag_err cal_mag_system zeropoint zeropoint_err "
    "aperture_id aperture_radius fwhm n_cal_stars limiting_mag_analytic limiting_mag_robust "
    "limiting_mag is_forced flag target_name is_detection band mid_time_utc flux_ujy "
    "flux_ujy_err ap_corr_mag"
).split()


#: Result columns added since, at the end (issue #10: the instrumental limit).
ADDED_RESULT_COLUMNS = ("limiting_ins_mag",)


def test_result_columns_keep_their_names_and_order() -> None:
    assert list(RESULT_COLUMNS) == [*HISTORICAL_RESULT_COLUMNS, *ADDED_RESULT_COLUMNS]


def test_every_column_is_defined_once_and_used() -> None:
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    assert set(names) == set(RESULT_COLUMNS) | set(LIGHTCURVE_COLUMNS)
    assert len(LIGHTCURVE_COLUMNS) == len(set(LIGHTCURVE_COLUMNS))
    # every lightcurve column is stored, but jd (mjd + 2400000.5)
    assert [n for n in LIGHTCURVE_COLUMNS if spec(n).db is None] == ["jd"]
    assert set(COLUMN_DESCRIPTIONS) == set(names)
    assert all(COLUMN_DESCRIPTIONS.values())
    assert {n for n in names if spec(n).unit} == set(COLUMN_UNITS)


def test_pipeline_table_dtypes_agree_with_the_registry() -> None:
    from soapd.pipeline import table

    assert table.COLUMN_DTYPES is COLUMN_DTYPES  # the pipeline builds tables from the registry
    assert set(COLUMN_DTYPES) == set(RESULT_COLUMNS)


def test_text_cell_formats_by_column_and_dashes_missing_values() -> None:
    assert text_cell("calibrated_mag", 17.12345) == "17.123"
    assert text_cell("limiting_mag", 19.0) == "19.00"
    assert text_cell("snr", np.float64(12.345)) == "12.3"
    assert text_cell("mjd", 61368.1234567) == "61368.12346"
    assert text_cell("flag", 3) == "3"
    assert text_cell("telescope", "PROMPT-5") == "PROMPT-5"
    assert text_cell("calibrated_mag", math.nan) == "-"
    assert text_cell("not_a_column", 1.5) == "1.5"


def test_uncalibrated_frame_has_nan_magnitudes_in_result_and_lightcurve(
    tmp_path: Path, config
) -> None:
    """What the descriptions say: no zero point -> NaN magnitudes, instrumental in ins_mag."""
    rng = np.random.default_rng(3)
    stars = random_stars(12, (256, 256), rng=rng, mag_range=(14.0, 16.0), border_px=30)
    frame = make_frame((256, 256), stars=stars, seed=5, fwhm_px=3.5, sky_e=300.0, exptime_s=60.0)
    path = write_frame(tmp_path / "f.fits", frame.data_adu, frame.header)
    target = Target(
        name="S0", ra_deg=float(frame.truth["ra"][0]), dec_deg=float(frame.truth["dec"][0])
    )
    result = process_frame(path, config=config(), targets=[target])  # no zero point
    row = result.table[np.asarray(result.table["target_name"]) == "S0"][0]
    assert bool(row["is_detection"])
    assert math.isfinite(row["ins_mag"])
    assert math.isnan(row["calibrated_mag"])
    assert math.isnan(row["limiting_mag"])
    assert row["cal_mag_system"] == "none"
    with Store(tmp_path / "s.db") as store:
        store.upsert_target(target)
        fid = store.record_local(path, "sha", 1, source="cli").frame_id
        store.save_result(fid, result, config_hash="h", soapd_version="t", table_path=None)
        lc = store.lightcurve("S0")
    assert len(lc) == len(result.summary.aperture_radii_px)
    assert np.all(np.isnan(lc["calibrated_mag"]))
    assert np.all(np.isnan(lc["limiting_mag"]))
    assert "NaN" in lc["calibrated_mag"].description
    assert "ins_mag" in lc["calibrated_mag"].description
