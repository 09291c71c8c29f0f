"""The service keeps the ledger's promises (issue 15), in-process against FakeSkynet.

* every scheduled job runs when the scheduler starts and then at its interval;
  alerts pending at start-up go out within one ``alerts_interval_s``; a failed
  frame with tries left is requeued by the reconcile sweep and processed;
* one writer: a second service and a writing ``Soap`` on the same state folder
  refuse naming the first one's pid; ``Soap(read_only=True)`` reads beside it;
* a database file deleted under the running service stops it (exit code 1);
* ``soapd status`` shows job-level errors and who holds the state folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from soapd.api.soap import Soap
from soapd.cli.daemon import format_status, status_info
from soapd.daemon.jobs import JOB_NAMES
from soapd.daemon.service import Service
from soapd.errors import SoapdError
from soapd.models import AlertDraft, ExposureMeta
from soapd.store import Store
from soapd.store.lock import StateLocked
from soapd.testing.demo_field import DemoField, load_into
from soapd.testing.fake_skynet import FakeSkynet

from .test_service import Running, service_config

pytestmark = pytest.mark.timeout(120)


def _wait(what: str, cond: object, timeout_s: float) -> float:
    """Wait for ``cond()``; return the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():  # type: ignore[operator]
            return time.monotonic() - t0
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def test_every_job_runs_on_schedule_pending_alerts_go_out_failed_frames_come_back(
    tmp_path: Path, demo_field: DemoField
) -> None:
    alerts_every_s = 30.0
    with FakeSkynet(seed=4) as fake:
        fake.add_observation(demo_field.obs_id)
        cfg = service_config(
            tmp_path,
            demo_field,
            fake.url,
            alerts_interval_s=alerts_every_s,
            heartbeat_interval_s=5.0,
        )
        cfg = cfg.replace(skynet=dataclasses.replace(cfg.skynet, reconcile_window_h=24 * 365))
        # Left by an earlier run: an unsent alert, and a frame that failed with tries left.
        frame = demo_field.frames[0]
        cfg.paths.frames_dir.mkdir(parents=True)
        path = Path(shutil.copy(frame.path, cfg.paths.frames_dir / frame.path.name))
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        with Store(cfg.paths.db_path) as store:
            store.sync_config_targets(cfg.targets)
            name = cfg.targets[0].name
            store.add_alerts(
                None, [AlertDraft(target_name=name, rule="new_source", dedupe_key="k1",
                                  batch_key="b1", message="left over")]
            )  # fmt: skip
            meta = ExposureMeta(
                mid_time_utc=frame.mid_time_utc, exptime_s=frame.exptime_s, filter="V",
                gain_e_per_adu=demo_field.gain_e_per_adu, read_noise_e=demo_field.read_noise_e,
            )  # fmt: skip
            fid = store.record_local(path, sha, path.stat().st_size, meta=meta).frame_id
            store.start_attempt(fid)
            store.mark_failed(fid, "OSError: disk full (transient)")
        with Running(cfg, fake.token) as run:
            t0 = time.monotonic()
            health = run.service.health
            _wait("every job to run once", lambda: set(JOB_NAMES) <= set(health.runs), 20)
            jobs = {j.id: j for j in run.service.scheduler.get_jobs()}
            assert set(JOB_NAMES) <= set(jobs)
            assert all(j.next_run_time is not None for j in jobs.values()), "a paused job"
            _wait("the leftover alert", lambda: not _unsent(cfg.paths.db_path), alerts_every_s)
            alert_s = time.monotonic() - t0
            _wait("the requeued frame", lambda: run.backlog()["processed"] == 1, 30)
            _wait("a second heartbeat", lambda: health.runs["heartbeat"] >= 2, 10)
            assert run.status()["heartbeat_utc"]
    assert alert_s < alerts_every_s, f"pending alert sent after {alert_s:.1f} s"
    assert any((tmp_path / "alerts").iterdir()), "the file notifier wrote nothing"
    with Store(cfg.paths.db_path, read_only=True) as store:
        row = store.frame(fid)
    assert row is not None
    assert (row.state, row.tries) == ("processed", 2)


def _unsent(db: Path) -> list[object]:
    with Store(db, read_only=True) as store:
        return list(store.unsent_alerts(store.now()))


def test_one_writer_second_service_and_soap_refuse_read_only_soap_reads(
    tmp_path: Path, demo_field: DemoField
) -> None:
    with FakeSkynet(seed=6) as fake:
        load_into(fake, demo_field, archived=True)
        cfg = service_config(tmp_path, demo_field, fake.url)
        with Running(cfg, fake.token) as run:
            run.wait("all frames", lambda: run.backlog()["processed"] == len(demo_field.frames))
            before = run.backlog()
            with pytest.raises(StateLocked, match=rf"soapd run \(pid {os.getpid()}\)"):
                Service(cfg, env={}, read_token=lambda: None).run_until_idle()
            soap = Soap(demo_field.obs_id, config=cfg, source=None)
            with pytest.raises(StateLocked, match="read_only=True") as info:
                soap.run(download=False)
            assert info.value.holder.pid == os.getpid()
            soap.close()
            with Soap(demo_field.obs_id, config=cfg, read_only=True) as reader:
                result = reader.run()
                assert len(reader.last_run.reused) == len(demo_field.frames)
                assert len(result) > 0
                with pytest.raises(SoapdError, match="read_only"):
                    reader.download()
            assert run.backlog() == before
        # The daemon stopped: the same Soap may write now.
        with Soap(demo_field.obs_id, config=cfg) as soap:
            soap.run(download=False)
            assert len(soap.last_run.reused) == len(demo_field.frames)


def test_deleted_database_stops_the_service_with_a_clear_error(
    tmp_path: Path, demo_field: DemoField, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeSkynet(seed=7) as fake:
        fake.add_observation(demo_field.obs_id)
        cfg = service_config(tmp_path, demo_field, fake.url)
        service = Service(cfg, env={}, read_token=lambda: None)
        thread = threading.Thread(target=service.run, name="soapd-under-test")
        thread.start()
        try:
            _wait("the service", lambda: bool(service.ctx) and service.scheduler is not None, 30)
            for suffix in ("", "-wal", "-shm"):
                Path(str(cfg.paths.db_path) + suffix).unlink(missing_ok=True)
            thread.join(timeout=30)
            assert not thread.is_alive(), "the service did not notice its database was deleted"
        finally:
            service.stop()
            thread.join(timeout=30)
    assert service.exit_code == 1
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    assert "was deleted while soapd was running" in critical[0]


def test_status_shows_job_errors_and_the_lock_holder(tmp_path: Path) -> None:
    from soapd.config import parse_config
    from soapd.store.lock import StateLock

    cfg = parse_config({"paths": {"state_dir": str(tmp_path / "s"), "cache_dir": str(tmp_path)}})
    with Store(cfg.paths.db_path) as store:
        store.set_status(
            job_errors='{"drain_inbox": "job drain_inbox failed: OSError: disk full '
            '(41x since 2026-12-01T00:00:00Z)"}'
        )
        with StateLock(cfg.paths.state_dir, owner="Soap (Python API)"):
            info = status_info(store, cfg)
    text = format_status(info)
    assert "job error     job drain_inbox failed: OSError: disk full (41x since" in text
    assert f"in use by     Soap (Python API) (pid {os.getpid()})" in text
    assert info["daemon"] == "not running"
