"""PhotometryResult exports, GCN draft and plot; ``import soapd`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from api_tables import TARGET_DEC, TARGET_RA
from astropy.coordinates import SkyCoord
from astropy.table import Table

from soapd.api.results import PhotometryResult, TargetLightcurve
from soapd.flags import Flag
from soapd.output.export import read_table

TARGET = SkyCoord(TARGET_RA, TARGET_DEC, unit="deg")


def _lightcurve(field: Table) -> TargetLightcurve:
    return PhotometryResult(field).extract_target(
        TARGET, forced_photometry=True, name="GRB 240705A", trigger_time_utc="2024-07-05T02:00:00"
    )


@pytest.mark.parametrize("fmt", ["csv", "ecsv", "parquet", "json"])
def test_exports_round_trip_keep_values_units_and_limits(
    field: Table, tmp_path: Path, fmt: str
) -> None:
    lc = _lightcurve(field)
    path = getattr(lc, f"to_{fmt}")(tmp_path / "sub" / f"lc.{fmt}")
    assert path.is_file()
    back = read_table(path)
    assert list(back["is_detection"]) == [True, False, False]
    assert list((np.asarray(back["flag"]) & Flag.UPPER_LIMIT) != 0) == [False, True, True]
    assert np.allclose(back["calibrated_mag"], lc.table["calibrated_mag"], equal_nan=True)
    assert np.allclose(back["limiting_mag"], lc.table["limiting_mag"])
    assert np.allclose(back["mjd"], lc.table["mjd"], rtol=0, atol=1e-9)
    assert back["calibrated_mag"].unit == "mag"
    assert back["mjd"].unit == "d"
    assert list(back["target_name"]) == ["GRB 240705A"] * 3


def test_field_wide_export_round_trips_every_row(field: Table, tmp_path: Path) -> None:
    res = PhotometryResult(field)
    back = read_table(res.to_parquet(tmp_path / "all.parquet"))
    assert len(back) == len(field)
    assert back.colnames[: len(field.colnames)] == field.colnames


def test_to_gcn_b17_mid_exposure_limits_and_normalised_filter(field: Table, tmp_path: Path) -> None:
    """skynetsoap B17: start times truncated, no '> limit', raw filter names.

    f2 was taken through "rprime" at 04:48 UTC mid-exposure: 2.8 h after a trigger
    at 02:00; its forced S/N of 2 makes it a limit written "> 19.9".
    """
    lc = _lightcurve(field)
    lc.table.remove_column("band")  # only the raw header name "rprime" is left
    out = tmp_path / "gcn.txt"
    text = lc.to_gcn(out)
    assert out.read_text() == text
    rows = [line.split() for line in text.splitlines() if line[:1].isdigit()]
    assert [r[0] for r in rows] == ["0.4", "2.8", "29.2"]
    assert [r[5] for r in rows] == ["r", "r", "V"]  # "rprime" normalised
    assert rows[1][6:8] == [">", "19.9"]
    assert "rprime" not in text
    sidecar = json.loads((tmp_path / "gcn.txt.json").read_text())
    # GCN schema (boom/alert): detections carry "mag", upper limits only "limiting_mag".
    assert ["mag" in p for p in sidecar["data"]["photometry"]] == [True, False, False]
    assert (tmp_path / "gcn.txt.url").read_text().startswith("https://gcn.nasa.gov/circulars/new?")


def test_to_gcn_and_plot_refuse_field_wide_results(field: Table, tmp_path: Path) -> None:
    res = PhotometryResult(field)
    with pytest.raises(ValueError, match="extract_target"):
        res.to_gcn()
    with pytest.raises(ValueError, match="extract_target"):
        res.plot(tmp_path / "x.png")


@pytest.mark.parametrize("units", ["calibrated_mag", "ins_mag", "flux"])
def test_plot_writes_a_png(field: Table, tmp_path: Path, units: str) -> None:
    png = _lightcurve(field).plot(tmp_path / f"{units}.png", units=units)  # type: ignore[arg-type]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="units"):
        _lightcurve(field).plot(tmp_path / "bad.png", units="counts")  # type: ignore[arg-type]


def test_import_soapd_is_light_and_soap_loads_lazily() -> None:
    code = (
        "import sys, soapd\n"
        "heavy = [m for m in ('numpy', 'astropy', 'matplotlib', 'sep', 'httpx', 'sqlite_utils')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert soapd.__version__\n"
        "from soapd import Soap, PhotometryResult\n"
        "assert Soap.__module__ == 'soapd.api.soap'\n"
        "assert 'matplotlib' not in sys.modules\n"
        "assert 'Soap' in dir(soapd)\n"
        "try:\n"
        "    soapd.NoSuchThing\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
