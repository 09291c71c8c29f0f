"""The daemon's operator commands: status, observations, reprocess, migrate (in-process)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soapd.cli import main
from soapd.models import ExposureMeta
from soapd.store import Store


@pytest.fixture(name="cfg_file")
def fixture_cfg_file(tmp_path: Path) -> Path:
    """A config file whose state folder is in tmp_path, following observation 77."""
    path = tmp_path / "soapd.toml"
    path.write_text(
        f'[skynet]\nobservations = [77]\n[paths]\nstate_dir = "{tmp_path / "state"}"\n'
        f'cache_dir = "{tmp_path / "cache"}"\n'
    )
    return path


def _store(cfg_file: Path) -> Store:
    return Store(cfg_file.parent / "state" / "soapd.db")


def test_status_without_database_says_where_it_looked(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(cfg_file)]) == 2
    assert "no soapd database at" in capsys.readouterr().err


def test_migrate_then_status_text_and_json(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--config", str(cfg_file)]) == 0
    assert "m001_frames" in capsys.readouterr().out
    with _store(cfg_file) as store:
        rec = store.record_local(Path("/f.fits"), "abc", 1)
        store.start_attempt(rec.frame_id)
        store.mark_retry(rec.frame_id, "ExtractionError: sep failed", max_tries=1)
        store.set_status(last_poll_utc="2026-11-24T03:00:00Z", pid=os.getpid())
    assert main(["status", "--config", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert "daemon        running" in out  # this process's pid and no stopped_utc
    assert "failed 1" in out
    assert "ExtractionError: sep failed" in out
    assert main(["status", "--config", str(cfg_file), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backlog"]["failed"] == 1
    assert info["recent_errors"][0]["tries"] == 1


def test_status_reports_a_dead_daemon_as_not_running(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _store(cfg_file) as store:
        store.set_status(pid=2**22 + 12345)
    assert main(["status", "--config", str(cfg_file)]) == 0
    assert "daemon        not running" in capsys.readouterr().out


def test_observations_add_remove_list(cfg_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["observations", "add", "5", "6", "--config", str(cfg_file)]) == 0
    assert main(["observations", "add", "5", "--config", str(cfg_file)]) == 0
    assert "already followed" in capsys.readouterr().out
    assert main(["observations", "remove", "6", "--config", str(cfg_file)]) == 0
    assert main(["observations", "remove", "77", "--config", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert "no longer followed" in out
    assert "77 is listed in skynet.observations" in out
    assert main(["observations", "list", "--config", str(cfg_file)]) == 0
    listed = capsys.readouterr().out
    assert "         5" in listed
    assert "         6" not in listed
    assert main(["observations", "list", "--all", "--config", str(cfg_file)]) == 0
    assert "(removed)" in capsys.readouterr().out


def test_reprocess_requeues_by_state_and_time(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _store(cfg_file) as store:
        ids = []
        for i, hour in enumerate((1, 5)):
            meta = ExposureMeta(mid_time_utc=datetime(2026, 11, 24, hour, tzinfo=UTC))
            rec = store.record_local(Path(f"/f{i}.fits"), f"s{i}", 1, meta=meta)
            store.start_attempt(rec.frame_id)
            store.mark_rejected(rec.frame_id, "no stars")
            ids.append(rec.frame_id)
    args = ["reprocess", "--config", str(cfg_file), "--state", "rejected"]
    assert main([*args, "--since", "2026-11-24T03:00:00"]) == 0
    assert "1 frame(s) queued" in capsys.readouterr().out
    with _store(cfg_file) as store:
        assert store.frame(ids[1]).state == "downloaded"  # type: ignore[union-attr]
        assert store.frame(ids[0]).state == "rejected"  # type: ignore[union-attr]
    assert main([*args, "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err


def test_run_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in (["run"], ["status"], ["reprocess"], ["observations", "add"], ["migrate"]):
        with pytest.raises(SystemExit):
            main([*cmd, "--help"])
        text = capsys.readouterr().out
        assert "--config" in text
        assert "default" in text


def test_reprocess_warns_about_a_local_frame_whose_file_is_missing(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _store(cfg_file) as store:
        rec = store.record_local(Path("/nowhere/f.fits"), "s9", 1)
        store.start_attempt(rec.frame_id)
        store.mark_rejected(rec.frame_id, "no stars")
    assert main(["reprocess", "--config", str(cfg_file), "--state", "rejected"]) == 0
    out = capsys.readouterr().out
    assert "1 frame(s) queued" in out
    assert f"warning: frame {rec.frame_id}'s file /nowhere/f.fits is missing" in out


def test_migrate_builds_the_missing_alert_rule_states(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import timedelta

    from soapd.config import Config
    from soapd.frames import record_result
    from soapd.models import Target
    from soapd.testing.lightcurves import register_frame, target_result

    t0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    with _store(cfg_file) as store:
        for name in ("GRB A", "GRB B"):
            store.upsert_target(Target(name=name, ra_deg=150.0, dec_deg=-30.0))
        for k in range(3):
            mid = t0 + timedelta(minutes=k)
            fid = register_frame(store, f"m{k}", mid_time_utc=mid)
            res = target_result({"GRB A": 17.0, "GRB B": None}, mid_time_utc=mid)
            record_result(store, fid, res, config=Config(), table_path=None)
        ids = store.target_ids()
        with store.db.atomic():
            store.rule_states.invalidate(ids.values())
    assert main(["migrate", "--config", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert "built the alert rule state of 2 target(s) from their history" in out
    with _store(cfg_file) as store:
        assert set(store.rule_states_of(ids.values())) == set(ids.values())
    assert main(["migrate", "--config", str(cfg_file)]) == 0
    assert "built the alert rule state" not in capsys.readouterr().out
