"""Catalog slices shipped with a frame to a dask worker: the same stars without cache or network."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

from astropy.table import Table

from soapd.catalogs import CatalogService
from soapd.config import Config
from soapd.daemon.dask_remote import CatalogSlice, catalog_slice
from soapd.frames import FrameTask
from soapd.models import ExposureMeta
from soapd.testing.synth import make_frame, write_frame

EY = {"ra_deg": 135.5509, "dec_deg": 49.8429}


def _task(tmp_path: Path) -> FrameTask:
    f = make_frame(
        (256, 256), stars=5, seed=1, center_ra_deg=EY["ra_deg"], center_dec_deg=EY["dec_deg"]
    )
    path = tmp_path / "frame.fits"
    write_frame(path, f.data_adu, f.header)
    return FrameTask(frame_id=1, path=path, meta=ExposureMeta(filter="V"), targets=())


def test_slice_carries_the_cached_tiles_so_the_worker_needs_no_cache(
    recorded, fake_fetcher, cal_config, tmp_path
) -> None:
    cache = tmp_path / "cache"
    fetcher = fake_fetcher({"apass": recorded("all_apass_ey_uma.ecsv")})
    svc = CatalogService(cal_config(online=True, chains={"V": ["apass"]}), cache, fetcher=fetcher)
    svc.prefetch("apass", radius_deg=0.5, **EY)  # the driver's cache holds the field's tiles
    fresh = CatalogService(cal_config(online=True, chains={"V": ["apass"]}), cache, fetcher=fetcher)
    ref: Table = fresh.stars("apass", band="V", radius_deg=0.05, **EY)
    calls = fetcher.calls

    shipped = catalog_slice(fresh, _task(tmp_path), Config())
    assert isinstance(shipped, CatalogSlice)
    assert shipped.tiles, "the tiles around the frame go with the task"
    assert {name for name, _ in shipped.tiles} == {"apass"}
    on_worker = pickle.loads(pickle.dumps(shipped)).service_on_worker()
    shutil.rmtree(cache)  # the worker has no cache (another host)
    got = on_worker.stars("apass", band="V", radius_deg=0.05, **EY)
    assert on_worker.network_calls == calls, "no VizieR query on the worker"
    assert got.colnames == ref.colnames
    assert len(got) == len(ref) > 0
    for name in ref.colnames:
        assert got[name].tolist() == ref[name].tolist()


def test_slice_without_cached_tiles_ships_only_the_local_files(
    data_dir, cal_config, tmp_path
) -> None:
    local = tmp_path / "elsewhere" / "apass.ecsv"
    local.parent.mkdir()
    shutil.copy(data_dir / "feder_ey_uma" / "all_apass_ey_uma.ecsv", local)
    svc = CatalogService(cal_config(catalog_files=[local]), tmp_path / "cache")
    ref = svc.stars("apass", band="V", radius_deg=0.05, **EY)
    shipped = catalog_slice(svc, _task(tmp_path), Config())
    assert isinstance(shipped, CatalogSlice)
    assert shipped.tiles == {}
    on_worker = pickle.loads(pickle.dumps(shipped)).service_on_worker()
    shutil.rmtree(local.parent)  # the worker cannot read the driver's catalog files
    got = on_worker.stars("apass", band="V", radius_deg=0.05, **EY)
    assert got.meta["source"] == "local"
    assert got["mag"].tolist() == ref["mag"].tolist()


def test_other_providers_go_as_they_are(tmp_path) -> None:
    marker = object()
    assert catalog_slice(marker, _task(tmp_path), Config()) is marker  # type: ignore[arg-type]
    assert catalog_slice(None, _task(tmp_path), Config()) is None
