"""Real pixels -> process_frame -> record_result: injected sources raise the right alerts.

Five synthetic 256 x 256 frames (soapd.testing.synth, 60 s, zero point 23.0 per
second in electrons, given to the pipeline so magnitudes are calibrated without
a catalog). Target "TRANSIENT" has no source in frames 0-1 and an injected star
of R = 17.0 from frame 2 on; target "STAR" is a field star of R = 16.0 that is
injected at R = 15.0 from frame 3 on. Expected alerts, once each: STAR
new_detection (frame 0), TRANSIENT new_detection (frame 2), STAR brightening
(frame 3). Reference magnitudes: the injected ones; tolerance 0.1 mag (finite
aperture and noise), checked against the stored lightcurve.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from soapd.config import Config
from soapd.frames import record_result
from soapd.models import ExposureMeta, Target
from soapd.pipeline import process_frame
from soapd.store import Store
from soapd.testing.lightcurves import register_frame
from soapd.testing.synth import make_frame, write_frame

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
TRANSIENT = (150.0, 20.0)  # frame centre
STAR = (150.0 + 40 / 3600 / np.cos(np.radians(20.0)), 20.0 + 30 / 3600)


@pytest.mark.timeout(120)
def test_injected_transient_and_brightening_star_raise_expected_alerts(tmp_path: Path) -> None:
    cfg = Config()
    store = Store(tmp_path / "soapd.db")
    store.upsert_target(
        Target(name="TRANSIENT", ra_deg=TRANSIENT[0], dec_deg=TRANSIENT[1], trigger_time_utc=T0)
    )
    store.upsert_target(Target(name="STAR", ra_deg=STAR[0], dec_deg=STAR[1]))
    targets = store.active_targets()
    for i in range(5):
        date_obs = T0 + timedelta(minutes=5 * i)
        stars = Table(
            {
                "ra": [STAR[0], 150.02, 149.98, 150.015],
                "dec": [STAR[1], 20.01, 19.99, 19.985],
                "mag": [15.0 if i >= 3 else 16.0, 15.5, 16.5, 17.5],
            }
        )
        if i >= 2:
            stars.add_row({"ra": TRANSIENT[0], "dec": TRANSIENT[1], "mag": 17.0})
        frame = make_frame(
            (256, 256),
            stars=stars,
            date_obs=date_obs,
            filter_name="R",
            exptime_s=60.0,
            zeropoint_mag=23.0,
            seed=i,
        )
        path = tmp_path / f"f{i}.fits"
        write_frame(path, frame.data_adu, frame.header)
        mid = date_obs + timedelta(seconds=30)
        fid = register_frame(store, f"f{i}.fits", mid_time_utc=mid, obs_id=1, filter_raw="R")
        result = process_frame(
            path, targets=targets, zeropoint=23.0, config=cfg, meta=ExposureMeta(obs_id=1)
        )
        record_result(store, fid, result, config=cfg, table_path=None)
        # Processing the same frame again raises nothing new.
        assert record_result(store, fid, result, config=cfg, table_path=None) == []
    raised = sorted((a["target_name"], a["rule"], a["frame_id"]) for a in store.list_alerts())
    assert raised == sorted(
        [
            ("STAR", "new_detection", 1),
            ("TRANSIENT", "new_detection", 3),
            ("STAR", "brightening", 4),
        ]
    )
    lc = store.lightcurve("TRANSIENT")
    first = lc[lc["aperture_id"] == lc["aperture_id"].min()]
    assert first["is_detection"].tolist() == [False, False, True, True, True]
    assert np.all(np.abs(first["calibrated_mag"][2:] - 17.0) < 0.1)
    assert np.all(np.isfinite(first["limiting_mag"]))
    star = store.lightcurve("STAR")
    star = star[star["aperture_id"] == star["aperture_id"].min()]
    assert np.all(np.abs(star["calibrated_mag"] - [16, 16, 16, 15, 15]) < 0.1)
    store.close()
