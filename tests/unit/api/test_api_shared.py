"""The daemon and the Python API share one store: what one processed, the other reuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from astropy.coordinates import SkyCoord

from soapd.api.soap import Soap
from soapd.config import Config, Token, parse_config
from soapd.daemon.service import Service
from soapd.frames import FrameTask, TaskOutcome
from soapd.testing.demo_field import load_into
from soapd.testing.fake_skynet import FakeSkynet


class MustNotProcess:
    """A processor that fails the test if the API tries to process a frame."""

    def __call__(self, task: FrameTask, config: Config, catalogs: Any) -> TaskOutcome:
        pytest.fail(f"frame {task.frame_id} was processed again")


@pytest.mark.timeout(180)
def test_daemon_processed_frames_are_reused_by_soap_and_vice_versa(
    demo: Any, tmp_path: Path
) -> None:
    riser = demo.targets[1]
    with FakeSkynet() as fake:
        load_into(fake, demo, archived=True)
        cfg = parse_config(
            {
                "skynet": {"api_url": fake.url, "observations": [demo.obs_id], "backoff_s": 0.0},
                "paths": {"state_dir": "state", "cache_dir": "cache"},
                "service": {"workers": 1},
                "calibration": {"catalog_files": [str(demo.catalog_path)], "online": False},
                "targets": [{"name": riser.name, "ra_deg": riser.ra_deg, "dec_deg": riser.dec_deg}],
            },
            base=tmp_path,
        )
        daemon = Service(cfg, read_token=lambda: Token(fake.token), env={})
        assert daemon.run_until_idle() == 0
        downloads = fake.count("/download/fits")
        coord = SkyCoord(riser.ra_deg, riser.dec_deg, unit="deg")
        with Soap(demo.obs_id, config=cfg, token=fake.token, processor=MustNotProcess()) as soap:
            res = soap.run(forced_positions=[coord])
            assert len(soap.last_run.reused) == len(demo.frames)
            hashes = {f["frame_id"]: f["config_hash"] for f in soap.store.frames_with_tables()}
        assert fake.count("/download/fits") == downloads  # nothing downloaded again
        lc = res.extract_target(coord, forced_photometry=True)
        assert list(lc.table["is_detection"]) == [m is not None for m in riser.mags]
        # ... and the daemon, run again, finds nothing to do.
        again = Service(cfg, read_token=lambda: Token(fake.token), env={})
        assert again.run_until_idle() == 0
        with Soap(demo.obs_id, config=cfg, processor=MustNotProcess()) as soap:
            assert {
                f["frame_id"]: f["config_hash"] for f in soap.store.frames_with_tables()
            } == hashes
            assert soap.store.backlog().get("processed") == len(demo.frames)
