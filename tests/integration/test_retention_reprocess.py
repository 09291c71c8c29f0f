"""Retention end to end: ``soapd prune`` deletes processed frames, ``soapd reprocess`` gets them back.

The archive is FakeSkynet on 127.0.0.1 serving the demo field; the daemon runs
with ``run_until_idle`` (as ``soapd run --until-idle``), the operator commands
through ``soapd.cli.main`` on the same config file.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soapd.cli import main
from soapd.config import Token, load_config
from soapd.daemon.service import Service
from soapd.retention import prune
from soapd.store import Store
from soapd.testing.demo_field import DemoField, load_into
from soapd.testing.fake_skynet import FakeSkynet

pytestmark = pytest.mark.timeout(300)


def _config_file(tmp_path: Path, demo: DemoField, api_url: str, retention: str) -> Path:
    path = tmp_path / "soapd.toml"
    targets = "".join(
        f"[[targets]]\nname = {json.dumps(t.name)}\nra_deg = {t.ra_deg}\ndec_deg = {t.dec_deg}\n"
        for t in demo.targets
    )
    path.write_text(
        f"""
[skynet]
api_url = "{api_url}"
observations = [{demo.obs_id}]
backoff_s = 0.0
[paths]
state_dir = "state"
cache_dir = "cache"
[service]
workers = 1
[calibration]
online = false
catalog_files = ["{demo.catalog_path}"]
[retention]
{retention}
{targets}"""
    )
    return path


def _measurements(db: Path) -> int:
    with Store(db, migrate=False) as store:
        return int(store.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])


def test_prune_then_reprocess_downloads_the_pruned_frames_again(
    tmp_path: Path, demo_field: DemoField, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeSkynet() as fake:
        load_into(fake, demo_field, archived=True)
        cfg_file = _config_file(
            tmp_path, demo_field, fake.url, "frames_keep_days = 1.0\ncutouts_keep_days = 1.0"
        )
        cfg = load_config(cfg_file)
        db = cfg.paths.db_path
        assert Service(cfg, read_token=lambda: Token(fake.token), env={}).run_until_idle() == 0
        n_frames = len(demo_field.frames)
        assert fake.count("/download/fits") == n_frames
        with Store(db, migrate=False) as store:
            files = {r.frame_id: r for r in store.frames_in_state("processed", 100)}
        assert len(files) == n_frames
        sizes = {i: r.path.stat().st_size for i, r in files.items() if r.path is not None}
        digests = {i: hashlib.sha256(r.path.read_bytes()).hexdigest() for i, r in files.items()}
        measured = _measurements(db)
        assert measured > 0

        # Nothing is old enough yet (frames finished seconds ago): prune deletes nothing.
        assert main(["prune", "--config", str(cfg_file)]) == 0
        assert "freed 0 frame file(s), 0.0 MB" in capsys.readouterr().out
        assert all(r.path is not None and r.path.is_file() for r in files.values())

        # Two days later every processed frame is past frames_keep_days = 1.
        later = datetime.now(UTC) + timedelta(days=2)
        with Store(db, migrate=False) as store:
            planned = prune(store, cfg, dry_run=True, now_utc=later)
            assert {f.frame_id for f in planned.plan.delete} == set(files)
            assert all(r.path is not None and r.path.is_file() for r in files.values())
            cutouts = set((cfg.paths.cache_dir / "cutouts").glob("*.npz"))
            assert cutouts, "the stacks cached no cutout: nothing to check below"
            done = prune(store, cfg, now_utc=later)
            assert {f.frame_id for f in done.deleted} == set(files)
            # no target has a trigger time: fixed bins, all closed two days later
            assert set(done.cutouts) == cutouts
            assert not any(p.exists() for p in cutouts)
            assert done.freed_bytes["frame"] == sum(sizes.values())
            pruned = store.pruned_files()
            rows = {i: store.frame(i) for i in files}
        assert not any(r.path.exists() for r in files.values() if r.path is not None)
        assert sorted(p["frame_id"] for p in pruned) == sorted(files)
        assert {p["reason"] for p in pruned} == {"older than 1 days"}
        assert all(
            r is not None and r.state == "processed" and r.path is None for r in rows.values()
        )
        assert _measurements(db) == measured  # measurements are never deleted

        # reprocess: the pruned frames go back to 'seen' and are downloaded again.
        assert main(["reprocess", "--config", str(cfg_file)]) == 0
        out = capsys.readouterr().out
        assert f"{n_frames} frame(s) queued for processing again" in out
        assert f"{n_frames} of them will be downloaded again from Skynet" in out
        with Store(db, migrate=False) as store:
            assert store.backlog().get("seen") == n_frames
        assert Service(cfg, read_token=lambda: Token(fake.token), env={}).run_until_idle() == 0
        assert fake.count("/download/fits") == 2 * n_frames
    with Store(db, migrate=False) as store:
        again = {r.frame_id: r for r in store.frames_in_state("processed", 100)}
    assert set(again) == set(files)
    for i, r in again.items():
        assert r.path is not None
        assert hashlib.sha256(r.path.read_bytes()).hexdigest() == digests[i]


def test_reprocess_names_an_inbox_frame_whose_file_is_gone(
    tmp_path: Path, demo_field: DemoField, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_file = _config_file(
        tmp_path,
        demo_field,
        "http://127.0.0.1:9",
        "frames_keep_days = 1.0\nprune_local_frames = true",
    )
    cfg = load_config(cfg_file)
    frames_dir = cfg.paths.frames_dir
    frames_dir.mkdir(parents=True)
    with Store(cfg.paths.db_path) as store:
        ids = []
        for k in range(2):
            path = frames_dir / f"local_{k}.fits"
            path.write_bytes(b"x" * (1000 + k))
            rec = store.record_local(path, f"{k:064x}", 1000 + k, source="inbox")
            store.mark_rejected(rec.frame_id, "test: unusable")
            ids.append(rec.frame_id)
        done = prune(store, cfg, now_utc=datetime.now(UTC) + timedelta(days=2))
        assert sorted(f.frame_id for f in done.deleted) == ids
    assert main(["reprocess", "--config", str(cfg_file), "--state", "rejected"]) == 0
    out = capsys.readouterr().out
    assert "0 frame(s) queued for processing again" in out
    for k, i in enumerate(ids):
        assert f"frame {i} ({frames_dir / f'local_{k}.fits'}) not queued" in out
    assert "came from the inbox, not from Skynet" in out
    with Store(cfg.paths.db_path, migrate=False) as store:
        assert [store.frame(i).state for i in ids] == ["rejected", "rejected"]  # type: ignore[union-attr]
