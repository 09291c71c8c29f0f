"""soapd.output.export: csv/ecsv/parquet/json round trips keep values, units and the limit flag."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soapd.columns import COLUMN_UNITS, RESULT_COLUMNS
from soapd.errors import SoapdError
from soapd.flags import Flag
from soapd.models import Target
from soapd.output.export import format_for, read_table, write_table
from soapd.pipeline import process_frame


@pytest.fixture(name="result_table")
def fixture_result_table(fits_file, config):
    """A real result table: field rows plus a detected and an undetected forced target."""
    path, truth = fits_file(shape=(256, 256), stars=25, seed=4)
    bright = truth[np.argmin(truth["mag"])]
    targets = [
        Target(name="bright", ra_deg=bright["ra"], dec_deg=bright["dec"]),
        Target(name="blank", ra_deg=150.0, dec_deg=20.0 + 0.02),
    ]
    return process_frame(path, config=config(), targets=targets, zeropoint=23.0).table


@pytest.mark.parametrize("suffix", [".csv", ".ecsv", ".parquet", ".json"])
def test_round_trip_keeps_values_units_and_detection_flag(tmp_path, result_table, suffix) -> None:
    out = write_table(result_table, tmp_path / f"rows{suffix}")
    back = read_table(out)
    assert back.colnames == list(RESULT_COLUMNS)
    assert len(back) == len(result_table)
    for name in RESULT_COLUMNS:
        a, b = np.asarray(result_table[name]), np.asarray(back[name])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=1e-12, equal_nan=True, err_msg=name)
        else:
            assert list(a) == list(b), name
        if COLUMN_UNITS.get(name):
            assert str(back[name].unit) == str(result_table[name].unit), name
    assert back["is_detection"].dtype == bool
    limits = ~np.asarray(back["is_detection"])
    assert limits.any()
    assert np.all(np.asarray(back["flag"])[limits] & Flag.UPPER_LIMIT)


def test_ecsv_and_parquet_keep_table_meta(tmp_path, result_table) -> None:
    for suffix in (".ecsv", ".parquet", ".json"):
        back = read_table(write_table(result_table, tmp_path / f"m{suffix}"))
        assert back.meta["gain_source"] == result_table.meta["gain_source"]


def test_json_is_plain_json_with_nulls(tmp_path, result_table) -> None:
    out = write_table(result_table, tmp_path / "rows.json")
    doc = json.loads(out.read_text())
    assert {c["name"] for c in doc["columns"]} == set(RESULT_COLUMNS)
    assert len(doc["rows"]) == len(result_table)
    assert any(row["calibrated_mag"] is None for row in doc["rows"])


def test_format_from_suffix_or_argument_and_errors(tmp_path) -> None:
    assert format_for("a.PQ") == "parquet"
    assert format_for("a.txt", "csv") == "csv"
    with pytest.raises(SoapdError, match=r"\.csv, \.ecsv"):
        format_for("a.txt")
    with pytest.raises(SoapdError, match="unknown table format"):
        format_for("a.csv", "xlsx")
    with pytest.raises(SoapdError, match="cannot read"):
        read_table(tmp_path / "missing.ecsv")
