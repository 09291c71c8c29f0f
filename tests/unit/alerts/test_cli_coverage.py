"""`soapd lightcurve` shows covered frames only; --include-not-covered adds the rest, in words."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from soapd.cli import main
from soapd.flags import Flag
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def test_lightcurve_cli_hides_not_covered_frames_unless_asked(env_db: Path, capsys) -> None:
    assert main(["targets", "add", "GRB", "150", "-30"]) == 0
    with Store(env_db) as store:
        for i, mag in enumerate([17.0, None]):
            mid = T0 + timedelta(hours=i + 1)
            fid = register_frame(store, f"f{i}", mid_time_utc=mid)
            res = target_result({"GRB": mag}, mid_time_utc=mid, lim_mag=20.3)
            if i == 1:  # the target fell in the edge buffer of this frame
                t = res.table.copy()
                for col in ("flux", "snr", "calibrated_mag", "limiting_mag"):
                    t[col] = np.nan
                t["is_detection"] = False
                t["flag"] = int(Flag.NOT_COVERED | Flag.NEAR_EDGE)
                res = replace(res, table=t)
            store.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)
    capsys.readouterr()
    assert main(["lightcurve", "GRB"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 2  # the heading and frame 1
    assert "17.000 +/-" in out
    assert "20.3" not in out
    assert main(["lightcurve", "GRB", "--include-not-covered"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert "not measured" in out[2]
    assert out[2].endswith("not covered (edge of frame)")
    assert "20.3" not in out[2]
