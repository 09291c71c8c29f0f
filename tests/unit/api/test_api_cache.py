"""Soap.cache_info / clear_cache / prune_cache: sizes, budgets, and a ledger kept true."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soapd.api.soap import Soap
from soapd.config import Config
from soapd.testing.demo_field import load_into
from soapd.testing.fake_skynet import FakeSkynet
from soapd.testing.synth import make_frame, write_frame

OBS_OLD, OBS_NEW = 5001, 5002


@pytest.fixture(name="fake")
def fixture_fake(tmp_path: Path) -> Iterator[FakeSkynet]:
    """A fake Skynet with two observations of two small frames each."""
    with FakeSkynet() as fake:
        now = datetime.now(UTC)
        for k, obs in enumerate((OBS_OLD, OBS_NEW)):
            for i in range(2):
                frame = make_frame((64, 64), stars=3, seed=10 * k + i)
                data = write_frame(tmp_path / f"s{obs}_{i}.fits", frame.data_adu, frame.header)
                fake.add_exposure(
                    obs,
                    data.read_bytes(),
                    center_time_utc=now - timedelta(hours=3 - i),
                    archived=True,
                )
        yield fake


@pytest.fixture(name="cfg")
def fixture_cfg(fake: FakeSkynet, config: Callable[..., Config]) -> Config:
    """Config pointing at the fake server."""
    return config(skynet={"api_url": fake.url, "max_attempts": 1, "backoff_s": 0.0})


def _age(paths: list[Path], days: float) -> None:
    past = time.time() - days * 86400
    for p in paths:
        os.utime(p, (past, past))


def test_cache_info_counts_frames_per_observation(fake: FakeSkynet, cfg: Config) -> None:
    with Soap(OBS_OLD, config=cfg, token=fake.token) as soap:
        paths = soap.download()
        info = soap.cache_info()
    assert info["frames"]["files"] == 2
    assert info["frames"]["size_mb"] == pytest.approx(sum(p.stat().st_size for p in paths) / 2**20)
    assert info["observation"]["files"] == 2
    assert info["observation"]["states"] == {"downloaded": 2}
    assert info["total_size_mb"] >= info["frames"]["size_mb"]


def test_prune_cache_deletes_oldest_observation_and_keeps_the_ledger_true(
    fake: FakeSkynet, cfg: Config
) -> None:
    with (
        Soap(OBS_OLD, config=cfg, token=fake.token) as old,
        Soap(OBS_NEW, config=cfg, token=fake.token) as new,
    ):
        old_paths = old.download()
        new_paths = new.download()
        _age(old_paths, days=10)
        old_ids = [
            r.frame_id for r in old.store.frames_in_state("downloaded") if r.obs_id == OBS_OLD
        ]
        assert len(old_ids) == 2
        stats = new.prune_cached(max_total_size_mb=0.0, keep_recent=1)
        assert stats["deleted_observations"] == [OBS_OLD]
        assert stats["kept_observations"] == [OBS_NEW]
        assert stats["over_budget"] is True
        assert stats["deleted_files"] == 2
        assert not any(p.exists() for p in old_paths)
        assert all(p.exists() for p in new_paths)
        for frame_id in old_ids:
            row = old.store.frame(frame_id)
            assert row is not None
            assert row.state == "seen"
            assert row.path is None
        before = fake.count("/download/fits")
        assert len(old.download()) == 2  # fetched again when needed
        assert fake.count("/download/fits") - before == 2
        under = new.prune_cached(max_total_size_mb=1000.0)
        assert under["deleted_files"] == 0
        assert under["over_budget"] is False


def test_remove_cached_is_a_dry_run_unless_asked_and_never_prompts(
    fake: FakeSkynet, cfg: Config
) -> None:
    """soapd's safe spelling (``clear_cache`` now has skynetsoap's ``confirm``, see tests/compat)."""
    with Soap(OBS_NEW, config=cfg, token=fake.token) as soap:
        paths = soap.download()
        dry = soap.remove_cached()
        assert dry == {
            "confirmed": False,
            "files": 2,
            "size_mb": pytest.approx(dry["size_mb"]),
            "images": 2,
            "results": 0,
        }
        assert all(p.exists() for p in paths)
        done = soap.remove_cached(dry_run=False)
        assert done["deleted_files"] == 2
        assert not any(p.exists() for p in paths)
        assert soap.cache_info()["observation"]["states"] == {"seen": 2}


def test_prune_then_run_downloads_and_processes_pruned_frames_again(
    demo: Any, config: Callable[..., Config]
) -> None:
    with FakeSkynet() as fake:
        load_into(fake, demo, archived=True)
        cfg = config(
            skynet={"api_url": fake.url, "max_attempts": 1, "backoff_s": 0.0},
            calibration={"catalog_files": [str(demo.catalog_path)], "online": False},
        )
        with Soap(demo.obs_id, config=cfg, token=fake.token) as soap:
            first = soap.run(before=demo.frames[1].mid_time_utc)
            assert len(soap.last_run.processed) == 2
            stats = soap.prune_cached(max_total_size_mb=0.0, keep_recent=0)
            assert stats["deleted_files"] == 4  # 2 frames + 2 field-wide tables
            assert soap.cache_info()["observation"]["states"] == {"processed": 2}
            before = fake.count("/download/fits")
            again = soap.run(before=demo.frames[1].mid_time_utc)
            assert fake.count("/download/fits") - before == 2
            assert len(soap.last_run.processed) == 2
    assert len(again) == len(first)
