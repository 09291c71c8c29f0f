"""CatalogService: source order, bad catalog replies, outages, pickling, network counts."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from soapd.catalogs import CatalogService
from soapd.errors import CatalogError

EY = {"ra_deg": 135.5509, "dec_deg": 49.8429, "radius_deg": 0.15}


def test_stars_columns_meta_and_transformed_band(recorded, fake_fetcher, cal_config, tmp_path):
    f = fake_fetcher({"refcat2": recorded("all_refcat2_ey_uma.ecsv")})
    svc = CatalogService(cal_config(online=True), tmp_path, fetcher=f)
    t = svc.stars("refcat2", band="r", **EY)
    assert {"ra_deg", "dec_deg", "mag", "mag_err", "color", "color_err", "variable"} <= set(
        t.colnames
    )
    assert t.meta["system"] == "AB"
    assert t.meta["color_name"] == "g-r"
    assert "Tonry2012" in t.meta["how"]
    assert t.meta["source"] == "vizier"
    # dupvar = variability (0/1/2) + 4 x duplicate: 1 and 5 mean "variable"
    raw = svc.raw("refcat2", **EY)
    dupvar = np.asarray(raw["dupvar"]).astype(int)
    assert t["variable"].tolist() == ((dupvar & 3) == 1).tolist()
    assert np.isin(dupvar, [1, 5]).sum() == t["variable"].sum()
    R = svc.stars("refcat2", band="R", **EY)
    assert R.meta["system"] == "Vega"
    assert "Jordi2006" in R.meta["how"]


def test_stars_u_e_flag_inflates_error(fake_fetcher, cal_config, tmp_path):
    t = Table()
    t["RAJ2000"] = [10.0, 10.01, 10.02]
    t["DEJ2000"] = [0.0, 0.0, 0.0]
    t["r'mag"] = [14.0, 14.5, 15.0]
    t["e_r'mag"] = [0.01, 0.01, 0.0]
    t["u_e_r'mag"] = [0, 1, 0]
    svc = CatalogService(
        cal_config(online=True, missing_err_mag=0.07), tmp_path, fetcher=fake_fetcher({"apass": t})
    )
    s = svc.stars("apass", ra_deg=10.0, dec_deg=0.0, radius_deg=0.1, band="r")
    np.testing.assert_allclose(s["mag_err"], [0.01, 0.07, 0.07])


def test_stars_every_magnitude_masked_raises(fake_fetcher, cal_config, tmp_path):
    t = Table()
    t["RAJ2000"] = [10.0, 10.01]
    t["DEJ2000"] = [0.0, 0.0]
    for c in ("Vmag", "Bmag", "g'mag", "r'mag", "i'mag"):
        t[c] = MaskedColumn([0.0, 0.0], mask=[True, True])
    svc = CatalogService(cal_config(online=True), tmp_path, fetcher=fake_fetcher({"apass": t}))
    with pytest.raises(CatalogError, match="every r magnitude in the field is masked"):
        svc.stars("apass", ra_deg=10.0, dec_deg=0.0, radius_deg=0.1, band="r")


def test_stars_empty_cone_raises_and_empty_reply_is_cached(fake_fetcher, cal_config, tmp_path):
    f = fake_fetcher({})
    svc = CatalogService(cal_config(online=True), tmp_path, fetcher=f)
    with pytest.raises(CatalogError, match="no stars within"):
        svc.stars("skymapper", band="r", **EY)
    calls = f.calls
    svc2 = CatalogService(cal_config(online=True), tmp_path, fetcher=f)
    with pytest.raises(CatalogError, match="no stars within"):
        svc2.stars("skymapper", band="r", **EY)
    assert f.calls == calls  # the footprint edge is not re-queried


def test_stars_band_missing_raises(recorded, fake_fetcher, cal_config, tmp_path):
    svc = CatalogService(
        cal_config(online=True),
        tmp_path,
        fetcher=fake_fetcher({"apass": recorded("all_apass_ey_uma.ecsv")}),
    )
    with pytest.raises(CatalogError, match="cannot provide band 'U'"):
        svc.stars("apass", band="U", **EY)


def test_stars_offline_and_uncached_raises_without_network(fake_fetcher, cal_config, tmp_path):
    f = fake_fetcher({})
    svc = CatalogService(cal_config(online=False), tmp_path, fetcher=f)
    with pytest.raises(CatalogError, match="online is false"):
        svc.stars("ps1", band="r", **EY)
    assert f.calls == 0


def test_stars_failed_catalog_is_left_alone_for_retry_after(fake_fetcher, cal_config, tmp_path):
    f = fake_fetcher({}, fail={"ps1", "refcat2"})
    svc = CatalogService(cal_config(online=True, retry_after_s=600), tmp_path, fetcher=f)
    with pytest.raises(CatalogError, match="simulated outage"):
        svc.stars("ps1", band="r", **EY)
    assert f.calls == 1
    with pytest.raises(CatalogError, match="simulated outage"):
        svc.stars("refcat2", band="r", **EY)  # another catalog is still tried
    assert f.calls == 2
    with pytest.raises(CatalogError, match="VizieR skipped"):
        svc.stars("ps1", band="r", **EY)  # the failed one is not, for retry_after_s
    assert f.calls == 2


def test_stars_local_landolt_only_catalog_without_file_raises(cal_config, tmp_path):
    svc = CatalogService(cal_config(online=True), tmp_path)
    with pytest.raises(CatalogError, match="no local file"):
        svc.stars("landolt", band="V", **EY)
    assert svc.network_calls == 0


def test_service_pickles_without_tables(data_dir, cal_config, tmp_path):
    """The service goes to worker processes: it pickles (with its VizieR fetcher) and works."""
    cfg = cal_config(
        online=True, catalog_files=[data_dir / "feder_ey_uma" / "all_apass_ey_uma.ecsv"]
    )
    svc = CatalogService(cfg, tmp_path)
    first = svc.stars("apass", band="V", **EY)
    clone = pickle.loads(pickle.dumps(svc))
    assert clone._tiles == {}
    assert clone._local is None
    again = clone.stars("apass", band="V", **EY)
    assert again.meta["source"] == "local"
    assert len(again) == len(first)
    assert clone.network_calls == svc.network_calls == 0


def test_chain_config_override_and_unknown_names(cal_config, tmp_path, caplog):
    svc = CatalogService(cal_config(chains={"r": ["apass", "sdss_dr99"]}), tmp_path)
    with caplog.at_level(logging.WARNING):
        assert svc.chain("r") == ["apass"]
    assert "sdss_dr99" in caplog.text
    assert svc.chain("g")[0] == "refcat2"


def test_night_on_one_field_costs_one_call_per_tile(
    recorded, fake_fetcher, cal_config, tmp_path, rng
):
    """100 frames dithered by up to 1 arcmin: the network is hit once per (catalog, tile)."""
    f = fake_fetcher({"apass": recorded("all_apass_ey_uma.ecsv")})
    svc = CatalogService(cal_config(online=True), tmp_path, fetcher=f)
    for _ in range(100):
        svc.stars(
            "apass",
            ra_deg=EY["ra_deg"] + rng.uniform(-1, 1) / 60,
            dec_deg=EY["dec_deg"] + rng.uniform(-1, 1) / 60,
            radius_deg=0.15,
            band="r",
        )
    n_tiles = len(list(tmp_path.rglob("*.npz")))
    assert f.calls == n_tiles
    assert n_tiles <= 4


def test_prefetch_then_offline_frame_uses_cache(recorded, fake_fetcher, cal_config, tmp_path):
    f = fake_fetcher({"apass": recorded("all_apass_ey_uma.ecsv")})
    svc = CatalogService(cal_config(online=True), tmp_path, fetcher=f)
    n_tiles, fetched, rows = svc.prefetch("apass", **EY)
    assert fetched == n_tiles == f.calls
    assert rows >= 40
    offline = CatalogService(cal_config(online=False), tmp_path, fetcher=f)
    t = offline.stars("apass", band="V", **EY)
    assert len(t) > 0
    assert f.calls == n_tiles


def test_unwritable_cache_still_serves_fetched_stars(
    recorded, fake_fetcher, cal_config, tmp_path, caplog
):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    f = fake_fetcher({"apass": recorded("all_apass_ey_uma.ecsv")})
    svc = CatalogService(cal_config(online=True), blocker, fetcher=f)
    with caplog.at_level(logging.WARNING):
        t = svc.stars("apass", band="V", **EY)
    assert len(t) > 0
    assert "cache not updated" in caplog.text


def test_from_config_is_the_one_way_to_build_from_settings(config, tmp_path):
    cfg = config(calibration={"online": False, "cache_ttl_days": 3.0})
    svc = CatalogService.from_config(cfg)
    assert svc.config == cfg.calibration
    assert svc.cache.root == cfg.paths.catalog_cache_dir
    assert svc.cache.ttl_days == 3.0
    assert svc.fetcher.calls == 0
    assert CatalogService.if_enabled(cfg) is not None
    assert CatalogService.if_enabled(config(calibration={"enabled": False})) is None


def test_from_config_passes_a_fetcher(config, fake_fetcher, recorded):
    f = fake_fetcher({"refcat2": recorded("all_refcat2_ey_uma.ecsv")})
    svc = CatalogService.from_config(config(calibration={"online": True}), fetcher=f)
    assert svc.fetcher is f
    assert len(svc.stars("refcat2", band="r", **EY)) > 0
    assert f.calls > 0  # one query per sky tile of the cone, all through the given fetcher
