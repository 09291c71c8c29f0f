"""Stacks in the store, their planning, alert rules, table, plot and CLI (no pixels needed).

Frames are ledger rows with target measurements from ``target_result`` (known
magnitudes, no files); stacks are :class:`StackRecord` values written directly,
as ``record_stack`` writes them.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from soapd.alerts.rules import Point, RuleParams
from soapd.alerts.stack_rules import stack_alerts
from soapd.cli import main
from soapd.config import Config
from soapd.models import StackRecord, Target
from soapd.output.export import read_table
from soapd.output.plots import lightcurve_figure
from soapd.stacks.plan import candidates_for, dirty_tasks, stacks_fingerprint
from soapd.stacks.table import STACK_COLUMNS, stack_table
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
NAME = "GRB 261124A"


def _record(epoch: str, hours: float, members: tuple[int, ...], **kw) -> StackRecord:
    mid = T0 + timedelta(hours=hours)
    base = {
        "target_name": NAME,
        "epoch_key": f"PROMPT-5|R|{epoch}",
        "telescope": "PROMPT-5",
        "band": "R",
        "bin_start_utc": mid - timedelta(minutes=5),
        "bin_end_utc": mid + timedelta(minutes=5),
        "mid_time_utc": mid,
        "mean_mid_time_utc": mid,
        "start_utc": mid - timedelta(minutes=4),
        "stop_utc": mid + timedelta(minutes=4),
        "exptime_s": 80.0,
        "total_exptime_s": 80.0 * len(members),
        "members": members,
        "weights": tuple(1.0 / len(members) for _ in members),
        "considered": members,
        "lim_mag": 20.5,
        "n_cal_stars": 40,
        "cal_catalog": "APASS DR9",
        "zp_mag": 22.0,
        "zp_err_mag": 0.004,
        "zp_scatter_mag": 0.05,
        "mag_system": "Vega",
        "best_single_lim_mag": 19.5,
        "config_hash": "h",
    }
    base.update(kw)
    return StackRecord(**base)


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "soapd.db")
    store.upsert_target(Target(name=NAME, ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=T0))
    for i in range(6):
        mid = T0 + timedelta(hours=1, minutes=2 * i)
        fid = register_frame(store, f"f{i}.fits", mid_time_utc=mid)
        res = target_result({NAME: None}, mid_time_utc=mid, lim_mag=19.5 + 0.01 * i)
        store.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)
    return store


def test_stack_versions_supersede_and_read_back(store: Store) -> None:
    first, _ = store.save_stack(_record("log42", 1.05, (1, 2, 3)))
    second, _ = store.save_stack(
        _record("log42", 1.06, (1, 2, 3, 4), excluded=((5, "clouds (zero point ...)"),))
    )
    other, _ = store.save_stack(_record("log43", 1.2, (6,)))
    now = store.stacked(NAME)
    assert [s.stack_id for s in now] == [second, other]
    assert now[0].version == 2
    assert now[0].members == (1, 2, 3, 4)
    assert now[0].weights == pytest.approx((0.25,) * 4)
    assert now[0].excluded == ((5, "clouds (zero point ...)"),)
    assert now[0].mid_time_utc == T0 + timedelta(hours=1.06)
    assert math.isnan(now[0].mag)
    every = store.stacked(NAME, include_superseded=True)
    assert [(s.stack_id, s.superseded) for s in every] == [
        (first, True),
        (second, False),
        (other, False),
    ]
    tid = store.get_target(NAME).target_id
    assert store.stack_inputs(tid) == {
        "PROMPT-5|R|log42": (frozenset({1, 2, 3, 4}), "h"),
        "PROMPT-5|R|log43": (frozenset({6}), "h"),
    }


def test_candidates_and_dirty_epochs(store: Store) -> None:
    config = Config()
    target = store.get_target(NAME)
    cands, obs = candidates_for(store, target)
    assert [c.frame_id for c in cands] == [1, 2, 3, 4, 5, 6]
    assert [c.lim_mag for c in cands] == pytest.approx([19.5 + 0.01 * i for i in range(6)])
    assert all(c.zp_mag == 22.0 and c.mag_system == "Vega" for c in cands)
    assert set(obs) == {1, 2, 3, 4, 5, 6}
    tasks = dirty_tasks(store, target, config)
    # 3600, 3720, ... 4200 s after T0; log bins 60 * 1.1**k s: k = 42 (3285.8-3614.3 s),
    # 43 (3614.3-3975.8 s), 44 (3975.8-4373.3 s).
    assert [sorted(t.considered) for t in tasks] == [[1], [2, 3, 4], [5, 6]]
    assert [t.epoch.key.rsplit("|", 1)[1] for t in tasks] == ["log42", "log43", "log44"]
    fp = stacks_fingerprint(config)
    store.save_stack(_record("log43", 1.1, (2, 3, 4), epoch_key=tasks[1].epoch.key, config_hash=fp))
    assert [t.epoch.key for t in dirty_tasks(store, target, config)] == [
        tasks[0].epoch.key,
        tasks[2].epoch.key,
    ]
    assert dirty_tasks(store, target, config, frame_ids=[3]) == []
    assert [t.epoch.key for t in dirty_tasks(store, target, config, frame_ids=[5])] == [
        tasks[2].epoch.key
    ]
    # Another stacking config makes every epoch out of date.
    other = config.replace(stacks=type(config.stacks)(min_gain_mag=0.01))
    assert len(dirty_tasks(store, target, other)) == 3
    assert (
        dirty_tasks(store, target, config.replace(stacks=type(config.stacks)(enabled=False))) == []
    )


def _point(band: str, *, det: bool = False, lim: float = 19.5) -> Point:
    return Point(
        frame_id=1,
        mjd=0.0,
        band=band,
        is_detection=det,
        snr=6.0 if det else 1.0,
        mag=18.0 if det else math.nan,
        mag_err=0.1 if det else math.nan,
        lim_mag=lim,
    )


def test_stack_rules() -> None:
    params = RuleParams(stack_deeper_limit_margin_mag=0.5)
    limit = _record("log42", 1.0, (1, 2, 3, 4), lim_mag=20.4)
    hits = stack_alerts(limit, history=[_point("R")], other_stacks=[], params=params, obs_id=7)
    assert [h.rule for h in hits] == ["stack_deeper_limit"]
    assert hits[0].dedupe_key == f"{NAME}|stack_deeper_limit|PROMPT-5|R|log42"
    assert hits[0].batch_key == f"{NAME}|obs:7"
    assert hits[0].payload["previous_lim_mag"] == 19.5
    # Not deeper by the margin than another epoch's stack; or the band has a detection.
    other = _record("log41", 0.9, (9, 10), lim_mag=20.0)
    assert stack_alerts(limit, history=[_point("R")], other_stacks=[other], params=params) == []
    assert (
        stack_alerts(limit, history=[_point("R", det=True)], other_stacks=[], params=params) == []
    )
    assert stack_alerts(_record("log42", 1.0, (1,), lim_mag=25.0), history=[_point("R")],
                        other_stacks=[], params=params) == []  # fmt: skip
    det = _record("log42", 1.0, (1, 2, 3), is_detection=True, snr=7.0, mag=20.1, mag_err=0.15)
    hits = stack_alerts(det, history=[_point("R")], other_stacks=[], params=params)
    assert [h.rule for h in hits] == ["stack_detection"]
    assert hits[0].dedupe_key == f"{NAME}|stack_detection|R"
    assert "limits only" in hits[0].message
    # Single frames of the band detected it already, or a member did, or S/N too low.
    assert stack_alerts(det, history=[_point("R", det=True)], other_stacks=[], params=params) == []
    own = _record("log42", 1.0, (1, 2), is_detection=True, snr=7.0, single_detections=1)
    assert stack_alerts(own, history=[], other_stacks=[], params=params) == []
    weak = _record("log42", 1.0, (1, 2), is_detection=True, snr=4.0)
    assert stack_alerts(weak, history=[], other_stacks=[], params=params) == []
    off = RuleParams(rules_off=frozenset({"stack_detection"}))
    assert stack_alerts(det, history=[], other_stacks=[], params=off) == []


def test_stack_table_and_plot_marker(store: Store) -> None:
    store.save_stack(_record("log42", 1.05, (1, 2, 3)))
    store.save_stack(
        _record("log43", 1.2, (4, 5), is_detection=True, mag=19.9, mag_err=0.1, snr=11.0)
    )
    table = stack_table(store.stacked(NAME), trigger_time_utc=T0)
    assert table.colnames == list(STACK_COLUMNS)
    assert list(table["n_frames"]) == [3, 2]
    assert list(table["frame_ids"]) == ["1,2,3", "4,5"]
    assert table["t_since_trigger_h"][0] == pytest.approx(1.05)
    assert table["calibrated_mag"].unit == "mag"
    fig = lightcurve_figure(store.lightcurve(NAME), trigger_time_utc=T0, stacks=table)
    gids = {line.get_gid() for line in fig.axes[0].lines}
    assert {"stack-limits:R", "stack-detections:R"} <= gids
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "R stack" in labels
    assert "R stack limit" in labels
    assert "R limit" in labels


def test_cli_stacks_export_and_gcn_from_stored_stacks(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    store.save_stack(_record("log42", 1.05, (1, 2, 3)))
    store.save_stack(_record("log43", 1.2, (4, 5, 6), lim_mag=20.8))
    db = Path(store.path)
    store.close()
    cfg = tmp_path / "soapd.toml"
    cfg.write_text(f'[paths]\nstate_dir = "{db.parent}"\ncache_dir = "{tmp_path / "c"}"\n')
    monkeypatch.setenv("SOAPD_CONFIG", str(cfg))
    out = tmp_path / "stacks.ecsv"
    assert main(["lightcurve", NAME, "--stacks", "--out", str(out)]) == 0
    back = read_table(out)
    assert list(back["n_frames"]) == [3, 3]
    assert list(back["limiting_mag"]) == [20.5, 20.8]
    capsys.readouterr()
    assert main(["lightcurve", NAME, "--format", "gcn", "--out", str(tmp_path / "X.gcn")]) == 0
    err = capsys.readouterr().err
    text = (tmp_path / "X.gcn").read_text()
    assert text.startswith(f"SUBJECT: {NAME}: Skynet/PROMPT-5 optical upper limits\n")
    assert "3 x 80" in text
    assert "> 20.8" in text
    assert "Stacking only images that increase the limiting magnitude" in text
    assert (
        "submit (review it first; soapd never submits): https://gcn.nasa.gov/circulars/new?" in err
    )
    doc = json.loads((tmp_path / "X.gcn.json").read_text())
    assert [p["limiting_mag"] for p in doc["data"]["photometry"]] == [20.5, 20.8]
    # --frames: the single frames instead, combined per epoch as the text says.
    assert main(["lightcurve", NAME, "--format", "gcn", "--frames"]) == 0
    single = capsys.readouterr().out
    assert "forced photometry of the single images" in single.replace("\n", " ")
    assert "1 x 80" in single
    assert np.isfinite(back["mjd"]).all()


def test_open_epochs_wait_for_rebuild_growth_closed_ones_get_every_frame(store: Store) -> None:
    """``stacks.rebuild_growth``: a dense cadence does not rebuild an open epoch at every frame."""
    from soapd.config import StacksConfig

    config = Config().replace(stacks=StacksConfig(rebuild_growth=0.6))
    assert stacks_fingerprint(config) == stacks_fingerprint(Config())  # not a pixel setting
    target = store.get_target(NAME)
    key = dirty_tasks(store, target, config)[1].epoch.key  # log43: frames 2, 3, 4
    fp = stacks_fingerprint(config)
    store.save_stack(_record("log43", 1.1, (2, 3), epoch_key=key, config_hash=fp))
    # The stored stack considered frames 2 and 3 only.
    store.db.execute("UPDATE stacks SET considered = '[2, 3]' WHERE epoch_key = ?", [key])
    open_now = T0 + timedelta(seconds=3700)  # inside log43 (3614-3976 s after T0)
    closed_now = T0 + timedelta(days=1)

    def planned(now: datetime | None, cfg: Config = config) -> list[str]:
        return [t.epoch.key for t in dirty_tasks(store, target, cfg, now_utc=now)]

    # 3 frames < (1 + 0.6) x 2: the open epoch waits; once its bin is over it is rebuilt.
    assert key not in planned(open_now)
    assert key in planned(closed_now)
    assert key in planned(None)  # one-shot builds: every out-of-date epoch
    every = Config().replace(stacks=StacksConfig(rebuild_growth=0.4))  # 3 >= 1.4 x 2
    assert key in planned(open_now, every)
