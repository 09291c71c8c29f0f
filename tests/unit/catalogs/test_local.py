"""Local catalog files: identification by meta ID or columns, formats, Landolt reader."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from soapd.catalogs import CatalogService
from soapd.catalogs.local import read_landolt_dat, read_local
from soapd.errors import CatalogError


def test_read_local_recorded_apass_ecsv_identified_by_meta_id(data_dir):
    s, t = read_local(data_dir / "feder_ey_uma" / "all_apass_ey_uma.ecsv")
    assert s.name == "apass"
    assert len(t) == 54


def test_read_local_votable_and_fits_round_trips(data_dir, tmp_path):
    t = Table.read(data_dir / "feder_ey_uma" / "all_refcat2_ey_uma.ecsv")
    t.write(tmp_path / "refcat2.xml", format="votable")
    s, back = read_local(tmp_path / "refcat2.xml")
    assert s.name == "refcat2"
    assert len(back) == 187
    plain = Table(t, meta={})  # no ID in meta: identified by its columns
    plain.write(tmp_path / "refcat2.fits")
    s, back = read_local(tmp_path / "refcat2.fits")
    assert s.name == "refcat2"
    assert len(back) == 187


def test_read_local_unidentifiable_file_says_what_to_do(tmp_path):
    Table({"ra": [1.0], "dec": [2.0], "mag": [15.0]}).write(tmp_path / "x.ecsv")
    with pytest.raises(CatalogError, match="meta ID"):
        read_local(tmp_path / "x.ecsv")


def test_read_local_missing_and_garbage_files(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        read_local(tmp_path / "nope.ecsv")
    (tmp_path / "bad.fits").write_bytes(b"not a fits file at all")
    with pytest.raises(CatalogError, match="cannot read"):
        read_local(tmp_path / "bad.fits")


def test_read_landolt_dat_526_stars_with_derived_bands(data_dir):
    """Landolt 1992 (IRAF nlandolt.dat): 112_275 V=9.905, V-R=0.647 -> R=9.258 (data README)."""
    t = read_landolt_dat(data_dir / "catalogs" / "landolt1992_iraf_nlandolt.dat")
    assert len(t) == 526
    row = t[t["Star"] == "112_275"][0]
    assert row["Vmag"] == pytest.approx(9.905)
    assert row["Rmag"] == pytest.approx(9.258, abs=1e-9)
    assert row["Bmag"] == pytest.approx(row["Vmag"] + row["B-V"])
    assert row["Imag"] == pytest.approx(row["Vmag"] - row["V-I"])
    assert row["e_Rmag"] == pytest.approx(np.hypot(row["e_Vmag"], row["e_V-R"]))
    assert 310.0 < row["RAJ2000"] < 311.0


def test_read_landolt_dat_rejects_other_text(tmp_path):
    (tmp_path / "x.dat").write_text("hello\nworld\n")
    with pytest.raises(CatalogError, match="no Landolt lines"):
        read_local(tmp_path / "x.dat")


def test_demo_style_synthetic_apass_ecsv_serves_every_apass_band(tmp_path, cal_config, rng):
    """The daemon demo's synthetic APASS-like ECSV (meta ID II_336_apass9) works offline."""
    n = 40
    t = Table()
    t["RAJ2000"] = 150.0 + rng.uniform(-0.1, 0.1, n)
    t["DEJ2000"] = 20.0 + rng.uniform(-0.1, 0.1, n)
    V = rng.uniform(11, 16, n)
    bv = rng.uniform(0.3, 1.2, n)
    for name, val in (
        ("Vmag", V),
        ("Bmag", V + bv),
        ("g'mag", V + 0.5 * bv),
        ("r'mag", V - 0.3 * bv),
        ("i'mag", V - 0.5 * bv),
        ("B-V", bv),
    ):
        t[name] = val
        t[f"e_{name}"] = np.full(n, 0.02)
    t.meta["ID"] = "II_336_apass9"
    path = tmp_path / "demo_apass.ecsv"
    t.write(path)
    svc = CatalogService(cal_config(catalog_files=[path]), tmp_path / "cache")
    for band in ("B", "V", "g", "r", "i", "R", "I"):
        stars = svc.stars("apass", ra_deg=150.0, dec_deg=20.0, radius_deg=0.3, band=band)
        assert len(stars) == n, band
        assert np.isfinite(stars["mag"]).all(), band
        assert stars.meta["source"] == "local"
    assert svc.network_calls == 0
    with pytest.raises(CatalogError, match="cannot provide band 'z'"):
        svc.stars("apass", ra_deg=150.0, dec_deg=20.0, radius_deg=0.3, band="z")
