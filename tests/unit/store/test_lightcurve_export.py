"""A stored lightcurve survives export to every format with units and detection/limit intact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from soapd.flags import Flag
from soapd.models import Target
from soapd.output.export import read_table, write_table
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)

#: The lightcurve columns of the team contract that carry a unit.
UNITS = {
    "mjd": "d",
    "jd": "d",
    "exptime": "s",
    "flux": "electron",
    "flux_err": "electron",
    "flux_ujy": "uJy",
    "flux_ujy_err": "uJy",
    "calibrated_mag": "mag",
    "calibrated_mag_err": "mag",
    "limiting_mag": "mag",
    "zeropoint": "mag",
    "zeropoint_err": "mag",
    "aperture_radius": "pix",
    "ra": "deg",
    "dec": "deg",
}


@pytest.fixture(name="lightcurve")
def fixture_lightcurve(tmp_path: Path):
    with Store(tmp_path / "s.db") as store:
        store.upsert_target(Target(name="GRB A", ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=T0))
        for i, (band, mag) in enumerate([("R", None), ("R", 17.2), ("V", 17.8), ("V", None)]):
            mid = T0 + timedelta(minutes=5 * (i + 1))
            fid = register_frame(store, f"f{i}", mid_time_utc=mid)
            res = target_result({"GRB A": mag}, mid_time_utc=mid, band=band, lim_mag=19.4 + 0.1 * i)
            store.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)
        return store.lightcurve("GRB A")


@pytest.mark.parametrize("fmt", ["csv", "ecsv", "parquet", "json"])
def test_lightcurve_export_round_trip_keeps_values_units_and_limits(
    lightcurve, tmp_path: Path, fmt: str
) -> None:
    path = write_table(lightcurve, tmp_path / f"lc.{fmt}")
    back = read_table(path)
    assert len(back) == len(lightcurve) == 4
    assert back["is_detection"].dtype == bool
    assert back["is_detection"].tolist() == [False, True, True, False]
    flags = np.asarray(back["flag"], dtype=np.int64)
    assert ((flags & Flag.UPPER_LIMIT) != 0).tolist() == [True, False, False, True]
    for name, unit in UNITS.items():
        assert back[name].unit is not None, (fmt, name)
        assert back[name].unit.to_string() == unit or str(back[name].unit) == unit, (fmt, name)
        assert np.allclose(
            np.asarray(back[name], float), np.asarray(lightcurve[name], float), equal_nan=True
        ), (fmt, name)
    assert [str(v) for v in back["band"]] == ["R", "R", "V", "V"]
    assert [str(v) for v in back["mid_time_utc"]] == [str(v) for v in lightcurve["mid_time_utc"]]
    # Limits stay limits: no magnitude, a finite limiting magnitude.
    lim = ~np.asarray(back["is_detection"], bool)
    assert np.isnan(np.asarray(back["calibrated_mag"], float)[lim]).all()
    assert np.isfinite(np.asarray(back["limiting_mag"], float)[lim]).all()
