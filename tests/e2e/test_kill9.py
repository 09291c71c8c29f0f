"""kill -9 in the middle of processing, then restart: nothing missed, duplicated or half-written.

The daemon runs as a real ``python -m soapd run`` subprocess against FakeSkynet
on 127.0.0.1. It is killed with SIGKILL (no chance to clean up) while frames
are being processed, then restarted with ``--until-idle``. The resulting
ledger, lightcurves and alerts must equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from soapd.cli.demo import write_demo_config
from soapd.store import Store
from soapd.testing.demo_field import DemoField, load_into
from soapd.testing.fake_skynet import FakeSkynet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _daemon(cfg: Path, token: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SOAPD_SKYNET_TOKEN=token, SOAPD_CONFIG="")
    env.pop("CREDENTIALS_DIRECTORY", None)
    return subprocess.Popen(
        [sys.executable, "-m", "soapd", "run", "--config", str(cfg), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _backlog(db: Path) -> dict[str, int]:
    try:
        with Store(db, migrate=False) as store:
            return store.backlog()
    except Exception:  # not created yet
        return {}


def _summary(db: Path, demo: DemoField) -> dict[str, Any]:
    """Return what must not depend on a crash: frames, lightcurves, alerts (by exposure id).

    Alerts on stacked epochs are left out: a stack is judged on the version built,
    and which frames an epoch held when it was built depends on when frames
    arrived (each is still sent at most once: its dedupe key names the epoch).
    """
    with Store(db, migrate=False) as store:
        q = store.db.execute
        frames = q("SELECT exp_id, state FROM frames ORDER BY exp_id").fetchall()
        orphans = q(
            "SELECT COUNT(*) FROM measurements m JOIN frames f USING (frame_id)"
            " WHERE f.state != 'processed'"
        ).fetchone()[0]
        dups = q(
            "SELECT COUNT(*) FROM (SELECT 1 FROM measurements WHERE superseded = 0"
            " GROUP BY frame_id, target_id, aperture_mpx HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        curves = {}
        for t in demo.targets:
            lc = store.lightcurve(t.name)
            curves[t.name] = [
                (round(float(m), 6), bool(d))
                for m, d in zip(lc["mjd"], lc["is_detection"], strict=True)
            ]
        alerts = sorted(
            q(
                "SELECT t.name, a.rule, f.exp_id FROM alerts a JOIN targets t USING (target_id)"
                " JOIN frames f USING (frame_id)"
            ).fetchall()
        )
        mags = q(
            "SELECT f.exp_id, m.target_id, ROUND(m.mag, 6) FROM measurements m"
            " JOIN frames f USING (frame_id) WHERE m.superseded = 0 ORDER BY 1, 2"
        ).fetchall()
    return {
        "frames": frames,
        "orphans": orphans,
        "dups": dups,
        "curves": curves,
        "alerts": alerts,
        "mags": mags,
    }


def test_kill9_during_processing_then_restart_is_consistent(
    tmp_path: Path, demo_field_e2e: DemoField
) -> None:
    demo = demo_field_e2e
    with FakeSkynet(seed=5) as fake:
        load_into(fake, demo, archived=True)
        killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
        cfgs = {}
        for d in (killed_dir, clean_dir):
            d.mkdir()
            cfgs[d] = write_demo_config(d / "soapd.toml", demo, api_url=fake.url, state_dir=d)
        db = killed_dir / "soapd.db"

        proc = _daemon(cfgs[killed_dir], fake.token)
        seen_mid_run: dict[str, int] = {}
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                b = _backlog(db)
                if b and b["processing"] >= 1 and 1 <= b["processed"] < len(demo.frames) - 1:
                    seen_mid_run = b
                    break
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the orphaned worker processes too
            if proc.stderr is not None:
                proc.stderr.close()
        assert seen_mid_run, "never caught the daemon in the middle of processing"
        assert proc.returncode == -signal.SIGKILL

        after_kill = _summary(db, demo)
        assert after_kill["orphans"] == 0, "half-written frame after kill -9"
        assert any(state == "processing" for _, state in after_kill["frames"])

        for d in (killed_dir, clean_dir):
            rerun = _daemon(cfgs[d], fake.token, "--until-idle")
            _, err = rerun.communicate(timeout=90)
            assert rerun.returncode == 0, err.decode()[-2000:]
            if d is killed_dir:
                assert b"interrupted while processing were put back" in err

    killed, clean = _summary(db, demo), _summary(clean_dir / "soapd.db", demo)
    assert [s for _, s in killed["frames"]] == ["processed"] * len(demo.frames)
    assert killed["frames"] == clean["frames"]
    assert killed["orphans"] == killed["dups"] == 0
    assert killed["mags"] == clean["mags"]
    assert killed["curves"] == clean["curves"]
    # Results are stored in ledger order, so alert decisions repeat exactly.
    assert killed["alerts"] == clean["alerts"]
    assert len(killed["alerts"]) == len(set(killed["alerts"])) > 0
