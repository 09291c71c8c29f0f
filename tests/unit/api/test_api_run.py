"""Soap.run on the demo field served by the fake Skynet: processing, reuse, forced limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from soapd.api.soap import Soap
from soapd.config import Config
from soapd.errors import SkynetError
from soapd.frames import FrameTask, TaskOutcome, run_task
from soapd.testing.demo_field import load_into
from soapd.testing.fake_skynet import FakeSkynet


class CountingProcessor:
    """Runs the real ``run_task`` and counts the frames it processes."""

    def __init__(self) -> None:
        self.frames: list[int] = []

    def __call__(self, task: FrameTask, config: Config, catalogs: Any) -> TaskOutcome:
        self.frames.append(task.frame_id)
        return run_task(task, config, catalogs)


@pytest.fixture(name="served")
def fixture_served(demo: Any) -> Iterator[FakeSkynet]:
    """The fake Skynet serving the demo observation, every exposure archived."""
    with FakeSkynet() as fake:
        load_into(fake, demo, archived=True)
        yield fake


@pytest.fixture(name="demo_config")
def fixture_demo_config(
    served: FakeSkynet, demo: Any, config: Callable[..., Config]
) -> Callable[..., Config]:
    """Factory: a config for the demo (fake server, offline catalog), with overrides."""

    def make(**photometry: Any) -> Config:
        return config(
            skynet={"api_url": served.url, "max_attempts": 1, "backoff_s": 0.0},
            calibration={"catalog_files": [str(demo.catalog_path)], "online": False},
            photometry=photometry,
        )

    return make


def _coord(target: Any) -> SkyCoord:
    return SkyCoord(target.ra_deg, target.dec_deg, unit="deg")


def test_soap_run_second_run_reuses_stored_tables(
    served: FakeSkynet, demo: Any, demo_config: Callable[..., Config]
) -> None:
    cfg = demo_config()
    riser = _coord(demo.targets[1])
    counter = CountingProcessor()
    with Soap(demo.obs_id, config=cfg, token=served.token, processor=counter) as soap:
        first = soap.run(forced_positions=[riser])
        assert len(counter.frames) == len(demo.frames)
        assert len(soap.last_run.processed) == len(demo.frames)
        assert soap.last_run.reused == ()
        frames = soap.store.frames_with_tables()
        assert {f["config_hash"] for f in frames} == {cfg.fingerprint()}
        assert all(Path(f["catalog_path"]).is_file() for f in frames)
        second = soap.run(forced_positions=[riser])
        assert len(counter.frames) == len(demo.frames)  # nothing processed again
        assert len(soap.last_run.reused) == len(demo.frames)
    assert len(second) == len(first)
    assert np.allclose(second.table["flux"], first.table["flux"], equal_nan=True)
    # Another Soap on the same state (another session, or the daemon's store) reuses too.
    with Soap(demo.obs_id, config=cfg, processor=counter, token=served.token) as again:
        again.run(forced_positions=[riser], download=False)
    assert len(counter.frames) == len(demo.frames)


def test_soap_run_new_position_or_new_config_processes_again(
    served: FakeSkynet, demo: Any, demo_config: Callable[..., Config]
) -> None:
    counter = CountingProcessor()
    n = len(demo.frames)
    with Soap(demo.obs_id, config=demo_config(), token=served.token, processor=counter) as soap:
        soap.run()
        assert len(counter.frames) == n
        soap.run(forced_positions=[_coord(demo.targets[0])])  # not in the stored tables
        assert len(counter.frames) == 2 * n
        soap.run(forced_positions=[_coord(demo.targets[0])])
        assert len(counter.frames) == 2 * n
    changed = demo_config(aperture_mode="fixed", fixed_radius_px=6.0)
    with Soap(demo.obs_id, config=changed, token=served.token, processor=counter) as soap:
        soap.run(forced_positions=[_coord(demo.targets[0])])
        assert len(counter.frames) == 3 * n  # another fingerprint: processed again


def test_soap_run_b13_date_range_selects_frames(
    served: FakeSkynet, demo: Any, demo_config: Callable[..., Config]
) -> None:
    """skynetsoap B13: run(after=, before=) accepted the dates and ignored them."""
    counter = CountingProcessor()
    cut = demo.frames[2].mid_time_utc
    with Soap(demo.obs_id, config=demo_config(), token=served.token, processor=counter) as soap:
        res = soap.run(after=cut.replace(tzinfo=None).isoformat())  # naive ISO: UTC
    assert len(counter.frames) == len(demo.frames) - 2
    # Downloads are named r<exp_id>.fits (#15); load_into gave frame i the id obs*100+i+1.
    indexes = {
        int(str(n).removeprefix("r").split(".")[0]) % 100 - 1 for n in res.table["image_file"]
    }
    assert {demo.frames[i].path.name for i in indexes} == {f.path.name for f in demo.frames[2:]}


def test_soap_run_forced_target_absent_then_present_gives_limits_then_detections(
    served: FakeSkynet, demo: Any, demo_config: Callable[..., Config]
) -> None:
    """DEMO-RISER is absent from frames 1-2 and V = 15.5 in frames 3-4 (demo_field truth).

    Expected: two upper limits (no magnitude) then two detections within 0.1 mag of
    15.5 (the zero point is fitted against the demo's APASS-like catalog; 0.1 mag
    covers its error and the photometric noise of a 15.5 mag star in 30 s).
    """
    riser = demo.targets[1]
    with Soap(demo.obs_id, config=demo_config(), token=served.token) as soap:
        res = soap.run(forced_positions=[_coord(riser)])
    lc = res.extract_target(_coord(riser), forced_photometry=True, snr_threshold=3.0).table
    assert len(lc) == len(demo.frames)
    truth = [m is not None for m in riser.mags]
    assert list(lc["is_detection"]) == truth
    assert np.all(np.isnan(lc["calibrated_mag"][~np.array(truth)]))
    assert np.all(np.isfinite(lc["limiting_mag"]))
    assert np.allclose(lc["calibrated_mag"][np.array(truth)], 15.5, atol=0.1)


def test_soap_run_offline_uses_downloaded_frames_only(
    served: FakeSkynet, demo: Any, demo_config: Callable[..., Config]
) -> None:
    cfg = demo_config()
    with Soap(demo.obs_id, config=cfg, token=served.token) as soap:
        soap.download(before=demo.frames[1].mid_time_utc)
    before = served.count()
    counter = CountingProcessor()
    with Soap(demo.obs_id, config=cfg, processor=counter) as soap:
        res = soap.run(download=False)
    assert served.count() == before  # no request at all
    assert len(counter.frames) == 2
    assert len(set(res.table["image_file"])) == 2


def test_soap_run_processor_failure_leaves_frame_for_retry_not_stuck(
    served: FakeSkynet, demo: Any, demo_config: Callable[..., Config]
) -> None:
    def broken(task: FrameTask, config: Config, catalogs: Any) -> TaskOutcome:
        raise RuntimeError("worker exploded")

    cfg = demo_config()
    with Soap(demo.obs_id, config=cfg, token=served.token, processor=broken) as soap:
        res = soap.run(before=demo.frames[0].mid_time_utc)
        assert len(res) == 0
        assert len(soap.last_run.skipped) == 1
        frame_id, why = soap.last_run.skipped[0]
        assert "worker exploded" in why
        row = soap.store.frame(frame_id)
        assert row is not None
        assert row.state == "downloaded"  # back in the queue, not stuck in 'processing'
    counter = CountingProcessor()
    with Soap(demo.obs_id, config=cfg, processor=counter) as soap:
        assert len(soap.run(before=demo.frames[0].mid_time_utc, download=False)) > 0
    assert counter.frames == [frame_id]


def test_soap_run_falls_back_to_local_frames_when_skynet_is_down(
    demo: Any, config: Callable[..., Config]
) -> None:
    with FakeSkynet() as fake:
        load_into(fake, demo, archived=True)
        url = fake.url
        cfg = config(
            skynet={"api_url": url, "max_attempts": 1, "backoff_s": 0.0},
            calibration={"catalog_files": [str(demo.catalog_path)], "online": False},
        )
        with Soap(demo.obs_id, config=cfg, token=fake.token) as soap:
            first = soap.run(before=demo.frames[1].mid_time_utc)
    # The server is gone now: auto mode warns and reuses; download=True raises.
    with Soap(demo.obs_id, config=cfg, token="t") as soap:
        again = soap.run(before=demo.frames[1].mid_time_utc)
        assert len(soap.last_run.reused) == 2
        with pytest.raises(SkynetError):
            soap.run(download=True)
    assert len(again) == len(first)
