"""A fading afterglow through the daemon: stacked epochs, circular, link, JSON, alerts once.

Two telescopes watch "GRB 261124A" (trigger T0) from 4.0 h to 4.6 h after it, one
60 s frame every 70 s each: PROMPT-5 in V and PROMPT-3 in B (384 x 384 px,
zero point 23.0, dithered). The afterglow fades as F ~ 1/t: in V it sits 0.9 mag
below the single-frame 5-sigma limit (20.3) at 4.3 h (S/N ~ 2.2), so no single
frame detects it but the stacks of 10 and 20 frames do (S/N ~ 7 and 10); in B it is
4 mag fainter still, so B gives limits only. Frames arrive through the inbox; the service runs until idle (``soapd run
--until-idle``), then again (a restart), then again after two late frames joined
an epoch. Detections are at S/N >= 5 (``forced_snr_threshold``, the limits' sigma);
the deeper-stacked-limit margin is 0.6 mag (the two epochs of B differ by 0.43 mag
in depth, ``1.25 log10(22 / 10)``; each is 1.25 mag and more deeper than a frame).
"""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from soapd.alerts.circular import draft_for_target, validate_sidecar
from soapd.config import Config, parse_config
from soapd.daemon.service import Service
from soapd.stacks.epochs import epoch_bin
from soapd.store import Store
from soapd.testing.series import SeriesFrame, field_stars, write_catalog, write_series

pytestmark = pytest.mark.timeout(600)

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
NAME = "GRB 261124A"
RA, DEC = 150.0, 20.0
SHAPE = (384, 384)
N_FRAMES = 32
LATE = (20, 21)  # held back from the first runs: they join epoch log58 later
T_START_S = 4.0 * 3600.0


def _afterglow(mag_at_ref: float, t_ref_s: float):
    def mag(mid: datetime) -> float:
        return mag_at_ref + 2.5 * math.log10((mid - T0).total_seconds() / t_ref_s)

    return mag


def _config(tmp: Path, catalog: Path) -> Config:
    return parse_config(
        {
            "paths": {
                "state_dir": str(tmp / "state"),
                "cache_dir": str(tmp / "cache"),
                "inbox_dir": str(tmp / "inbox"),
            },
            "service": {"workers": 2, "process_interval_s": 0.5},
            "calibration": {"online": False, "catalog_files": [str(catalog)]},
            "photometry": {"forced_snr_threshold": 5.0},
            "alerts": {"batch_window_s": 0.0, "stack_deeper_limit_margin_mag": 0.6},
            "notifiers": [{"kind": "file", "directory": str(tmp / "alerts")}],
            "targets": [
                {"name": NAME, "ra_deg": RA, "dec_deg": DEC, "trigger_time": T0.isoformat()}
            ],
            "logging": {"level": "WARNING"},
        },
        base=tmp,
    )


@pytest.fixture(scope="module", name="night")
def fixture_night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("afterglow")
    rng = np.random.default_rng(20261124)
    stars = field_stars(40, ra_deg=RA, dec_deg=DEC, shape=SHAPE, pixscale_arcsec=1.0, rng=rng)
    catalog = write_catalog(stars, tmp / "apass.ecsv", rng=rng)
    b_stars = stars.copy()
    b_stars["mag"] = np.asarray(stars["mag"]) + 0.6
    start = T0 + timedelta(seconds=T_START_S)
    t_ref = 4.3 * 3600.0
    common = {"n": N_FRAMES, "ra_deg": RA, "dec_deg": DEC, "shape": SHAPE, "start_utc": start}
    v = write_series(
        tmp / "made",
        source_mag=_afterglow(21.2, t_ref),
        stars=stars,
        telescope="PROMPT-5",
        filter_name="V",
        seed=1,
        stem="v",
        **common,
    )
    b = write_series(
        tmp / "made",
        source_mag=_afterglow(25.2, t_ref),
        stars=b_stars,
        telescope="PROMPT-3",
        filter_name="B",
        seed=2,
        stem="b",
        **common,
    )
    inbox = tmp / "inbox"
    inbox.mkdir()
    late: list[SeriesFrame] = []
    for series in (v, b):
        for i, f in enumerate(series):
            if i in LATE:
                late.append(f)
            else:
                shutil.copy(f.path, inbox / f.path.name)
    cfg = _config(tmp, catalog)
    Service(cfg, env={}).run_until_idle(poll=False)
    return {"tmp": tmp, "config": cfg, "late": late, "db": cfg.paths.db_path}


def _alerts(db: Path) -> list[tuple[str, str]]:
    with Store(db, migrate=False) as store:
        return sorted((a["rule"], a["dedupe_key"]) for a in store.list_alerts())


def test_epochs_follow_the_log_bins(night: dict[str, Any]) -> None:
    cfg = night["config"].stacks
    with Store(night["db"], migrate=False) as store:
        stacks = store.stacked(NAME)
        mids = {f.frame_id: f.meta.mid_time_utc for f in store.frames_in_state("processed", 10**6)}
    assert {(s.telescope, s.band) for s in stacks} == {("PROMPT-5", "V"), ("PROMPT-3", "B")}
    assert sorted({s.epoch_key.rsplit("|", 1)[1] for s in stacks}) == ["log57", "log58"]
    for s in stacks:
        start_s = (s.bin_start_utc - T0).total_seconds()
        width_s = (s.bin_end_utc - s.bin_start_utc).total_seconds()
        assert width_s == pytest.approx(cfg.log_bin_factor * start_s, abs=1e-3)
        for fid in s.considered:
            mid = mids[fid]
            assert mid is not None
            assert s.bin_start_utc <= mid < s.bin_end_utc
            b = epoch_bin(
                mid,
                trigger_time_utc=T0,
                log_bin_factor=cfg.log_bin_factor,
                first_bin_s=cfg.first_bin_s,
                fixed_bin_s=cfg.fixed_bin_s,
            )
            assert s.epoch_key.endswith(b.label)
        assert s.n_frames == len(s.members) == len(s.weights)
        assert s.total_exptime_s == 60.0 * s.n_frames
        assert s.bin_start_utc <= s.mid_time_utc < s.bin_end_utc


def test_v_is_detected_only_in_stacks_and_b_gives_deeper_limits(night: dict[str, Any]) -> None:
    with Store(night["db"], migrate=False) as store:
        stacks = store.stacked(NAME)
        lc = store.lightcurve(NAME)
    singles_v = lc[np.asarray(lc["band"]) == "V"]
    assert not np.asarray(singles_v["is_detection"]).any()
    v = [s for s in stacks if s.band == "V"]
    assert any(s.is_detection for s in v)
    assert all(not s.is_detection for s in stacks if s.band == "B")
    for s in stacks:
        assert s.lim_mag > s.best_single_lim_mag + 1.0


def test_circular_matches_the_stored_stacks_cell_for_cell(night: dict[str, Any]) -> None:
    with Store(night["db"], migrate=False) as store:
        stacks = store.stacked(NAME)
        draft = draft_for_target(store, NAME, config=night["config"].circular)
    c = draft.circular
    assert draft.stacked
    assert c.subject == f"{NAME}: Skynet/PROMPT optical detection"
    lines = c.body.splitlines()
    assert len(lines) < 60
    dash = next(i for i, line in enumerate(lines) if line and set(line.replace(" ", "")) == {"-"})
    body = lines[dash + 1 : dash + 1 + len(stacks)]
    ordered = sorted(stacks, key=lambda s: (s.mid_time_utc, s.telescope, s.band))
    for line, s in zip(body, ordered, strict=True):
        cells = [x.strip() for x in line.split("  ") if x.strip()]
        hours = (s.mid_time_utc - T0).total_seconds() / 3600.0
        shown = f"{s.mag:.2f} +/- {s.mag_err:.2f}" if s.is_detection else f"> {s.lim_mag:.1f}"
        assert cells == [
            f"{hours:.1f}",
            s.telescope,
            f"{s.n_frames} x 60",
            s.band,
            shown,
            f"{s.n_cal_stars} {s.cal_catalog}",
            f"{s.zp_scatter_mag:.3f}",
            f"{s.zp_err_mag:.3f}",
        ]
    query = parse_qs(urlsplit(c.url).query, strict_parsing=True)
    assert query["subject"] == [c.subject]
    assert query["body"] == [c.body]
    validate_sidecar(draft.sidecar)
    phot = draft.sidecar["data"]["photometry"]
    assert len(phot) == len(stacks)
    assert [("mag" in p) for p in phot] == [s.is_detection for s in ordered]


def test_stack_alerts_fire_exactly_once_across_restart_and_late_frames(
    night: dict[str, Any],
) -> None:
    db, cfg = night["db"], night["config"]
    first = _alerts(db)
    rules = [r for r, _ in first if r.startswith("stack_")]
    assert rules.count("stack_detection") == 1
    assert rules.count("stack_deeper_limit") == 1
    assert ("stack_detection", f"{NAME}|stack_detection|V") in first
    deeper = next(k for r, k in first if r == "stack_deeper_limit")
    assert deeper.startswith(f"{NAME}|stack_deeper_limit|PROMPT-3|B|log")
    with Store(db, migrate=False) as store:
        before = {s.epoch_key: s for s in store.stacked(NAME)}
    # A restart with nothing new rebuilds nothing and raises nothing.
    Service(cfg, env={}).run_until_idle(poll=False)
    assert _alerts(db) == first
    with Store(db, migrate=False) as store:
        assert {s.epoch_key: s.stack_id for s in store.stacked(NAME)} == {
            k: s.stack_id for k, s in before.items()
        }
    # Two late frames join the open epoch log58 of each telescope: rebuilt, newer versions.
    for f in night["late"]:
        shutil.copy(f.path, cfg.paths.inbox_dir / f.path.name)
    Service(cfg, env={}).run_until_idle(poll=False)
    assert _alerts(db) == first
    with Store(db, migrate=False) as store:
        after = {s.epoch_key: s for s in store.stacked(NAME)}
        history = store.stacked(NAME, include_superseded=True)
    for key, s in after.items():
        if key.endswith("log58"):
            assert s.version > before[key].version
            assert len(s.considered) == len(before[key].considered) + len(LATE)
        else:
            assert s.stack_id == before[key].stack_id
    assert sum(not s.superseded for s in history) == len(after)
    # The alert messages carried the circular and its submission link.
    texts = [p.read_text() for p in (night["tmp"] / "alerts").glob("*.txt")]
    assert any("https://gcn.nasa.gov/circulars/new?" in t for t in texts)
