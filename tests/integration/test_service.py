"""The whole service in-process: scheduler, inbox watcher, process pool, fake Skynet with faults.

The service runs in a background thread exactly as ``soapd run`` runs it (minus
signal handlers, which only the main thread may install) and is stopped with
``Service.stop()``, the SIGTERM path. The archive is FakeSkynet on 127.0.0.1
serving the deterministic demo field; calibration uses its bundled catalog file.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import pytest

from soapd.config import Config, ServiceConfig, Token, parse_config
from soapd.daemon.service import Service
from soapd.skynet.client import SkynetClient
from soapd.store import Store
from soapd.testing.demo_field import DemoField, load_into
from soapd.testing.fake_skynet import NOT_FITS_BYTES, FakeSkynet

pytestmark = pytest.mark.timeout(120)


def service_config(tmp_path: Path, demo: DemoField, api_url: str, **overrides: Any) -> Config:
    """Return a fast config for the demo field against ``api_url``.

    ``overrides`` are keys of [paths] or [service] (e.g. ``inbox_dir``, ``workers``).
    """
    service_keys = {f.name for f in dataclasses.fields(ServiceConfig)}
    service = {k: v for k, v in overrides.items() if k in service_keys}
    paths = {k: v for k, v in overrides.items() if k not in service_keys}
    data = {
        "skynet": {
            "api_url": api_url,
            "observations": [demo.obs_id],
            "poll_interval_s": 5.0,
            "backoff_s": 0.05,
            "max_attempts": 3,
            "read_timeout_s": 2.0,
            "auth_retry_interval_s": 10.0,
            # A page or an unreadable body counts a try at once here (the frame that is
            # not FITS must fail within the test); test_download_faults.py tests the budget.
            "download_budget_s": 0.0,
        },
        "paths": {
            "state_dir": str(tmp_path / "state"),
            "cache_dir": str(tmp_path / "cache"),
            **paths,
        },
        "service": {
            "workers": 2,
            "process_interval_s": 1.0,
            "inbox_interval_s": 1.0,
            "alerts_interval_s": 1.0,
            **service,
        },
        "calibration": {"online": False, "catalog_files": [str(demo.catalog_path)]},
        "alerts": {"batch_window_s": 0.0},
        "notifiers": [{"kind": "file", "directory": str(tmp_path / "alerts")}],
        "targets": [
            {"name": t.name, "ra_deg": t.ra_deg, "dec_deg": t.dec_deg} for t in demo.targets
        ],
    }
    return parse_config(data, base=tmp_path)


class Running:
    """A Service running in a thread, with a token the test can change."""

    def __init__(self, cfg: Config, token: str) -> None:
        self.token = token
        self.service = Service(
            cfg,
            source_factory=lambda tok: SkynetClient.from_config(cfg.skynet, tok),
            read_token=lambda: Token(self.token),
            env={},
        )
        self.thread = threading.Thread(target=self.service.run, name="soapd-under-test")
        self.db = cfg.paths.db_path

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the service did not stop"

    def backlog(self) -> dict[str, int]:
        if not self.db.exists():
            return {}
        with Store(self.db, migrate=False) as store:
            return store.backlog()

    def status(self) -> dict[str, str | None]:
        with Store(self.db, migrate=False) as store:
            return store.status_values()

    def wait(self, what: str, cond: Callable[[], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.thread.is_alive(), "the service stopped by itself"
            try:
                if cond():
                    return
            except Exception:  # the schema may not exist yet
                pass
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; backlog {self.backlog()}")


@pytest.fixture(name="fake")
def fixture_fake() -> Iterator[FakeSkynet]:
    """A running FakeSkynet."""
    with FakeSkynet(seed=3) as fake:
        yield fake


def _consistency(db: Path) -> dict[str, Any]:
    """Return ledger/store facts every test checks: no duplicate, no half-written frame."""
    with Store(db, migrate=False) as store:
        q = store.db.execute
        dup_exp = q(
            "SELECT exp_id FROM frames WHERE exp_id IS NOT NULL GROUP BY exp_id HAVING COUNT(*) > 1"
        ).fetchall()
        orphans = q(
            "SELECT DISTINCT m.frame_id FROM measurements m JOIN frames f USING (frame_id) WHERE f.state != 'processed'"
        ).fetchall()
        missing = q(
            "SELECT frame_id FROM frames WHERE state = 'processed' AND frame_id NOT IN (SELECT frame_id FROM measurements)"
        ).fetchall()
        superseded = q("SELECT COUNT(*) FROM measurements WHERE superseded = 1").fetchone()[0]
        tables_missing = [
            r[0]
            for r in q("SELECT catalog_path FROM frames WHERE state = 'processed'").fetchall()
            if not (r[0] and Path(r[0]).is_file())
        ]
    assert dup_exp == [], "one exposure recorded twice"
    assert orphans == [], "measurements of a frame that is not processed (half-written)"
    assert missing == [], "a processed frame without its measurements"
    assert tables_missing == [], "a processed frame without its field-wide table"
    return {"superseded": superseded}


def test_service_processes_every_good_frame_once_under_faults(
    tmp_path: Path, fake: FakeSkynet, demo_field: DemoField, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    exp_ids = load_into(fake, demo_field, archived=False)
    first = exp_ids[:4]
    for _ in first:
        fake.release_next()
    bad_id = fake.add_exposure(
        demo_field.obs_id, NOT_FITS_BYTES, center_time_utc=datetime.now(UTC), archived=True
    )
    fake.set_fail_rate(0.2)
    fake.slow_next(3.0)
    fake.truncate_next_download(1)
    old_token = fake.token
    cfg = service_config(tmp_path, demo_field, fake.url)
    with Running(cfg, fake.token) as run:
        run.wait(
            "the first frames",
            lambda: run.backlog()["processed"] == len(first) and run.backlog()["failed"] == 1,
        )
        # The token changes on the server: soapd must say so, keep running, not hammer.
        fake.rotate_token("rotated-token-value")
        fake.release_all()
        run.wait("the auth error", lambda: bool(run.status().get("auth_error")))
        n_bad = sum(1 for r in fake.requests if r.auth == "bad")
        time.sleep(6.0)  # more than one poll interval, less than auth_retry_interval_s
        assert sum(1 for r in fake.requests if r.auth == "bad") == n_bad
        run.token = "rotated-token-value"  # the operator fixes the credential
        run.wait(
            "the later frames",
            lambda: run.backlog()["processed"] == len(exp_ids),
            timeout_s=40.0,
        )
        assert run.thread.is_alive()
    with Store(cfg.paths.db_path, migrate=False) as store:
        good = [store.find_frame(exp_id=e) for e in exp_ids]
        bad = store.find_frame(exp_id=bad_id)
        alerts = store.list_alerts()
    assert all(f is not None and f.state == "processed" and f.tries == 1 for f in good)
    assert bad is not None
    assert bad.state == "failed"
    assert "FITS" in (bad.last_error or "")
    assert _consistency(cfg.paths.db_path)["superseded"] == 0
    assert len({a["dedupe_key"] for a in alerts}) == len(alerts) > 0
    log = fake.requests
    assert any(r.status == 503 for r in log), "the random 503s did not happen"
    downloads = [r for r in log if r.path.endswith("/download/fits") and r.status == 200]
    assert len(downloads) > len(exp_ids) + 1, "no download was retried (truncation)"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("refused the API token" in m for m in errors)
    assert old_token not in caplog.text
    assert "rotated-token-value" not in caplog.text
    for stored in cfg.paths.state_dir.rglob("*"):  # the database, WAL, tables, frames
        if stored.is_file():
            blob = stored.read_bytes()
            assert old_token.encode() not in blob, f"the token is stored in {stored}"
            assert b"rotated-token-value" not in blob, f"the token is stored in {stored}"
    assert sum("processed in" in r.getMessage() for r in caplog.records) == len(exp_ids)


def test_service_same_file_twice_in_inbox_and_once_via_api_is_processed_once(
    tmp_path: Path, fake: FakeSkynet, demo_field: DemoField
) -> None:
    frame = demo_field.frames[0]
    fake.add_observation(demo_field.obs_id)
    exp_id = fake.add_exposure(
        demo_field.obs_id,
        frame.path.read_bytes(),
        center_time_utc=frame.mid_time_utc,
        exptime_s=frame.exptime_s,
        filter_name=frame.filter_name,
        archived=True,
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(frame.path, inbox / "early.fits")  # waiting before soapd starts: start-up scan
    cfg = service_config(tmp_path, demo_field, fake.url, inbox_dir=str(inbox))
    with Running(cfg, fake.token) as run:
        run.wait("the first copy", lambda: run.backlog()["processed"] == 1)
        shutil.copy(frame.path, inbox / "again.fits")  # closed after writing: the watcher
        part = inbox / ".third.part"
        shutil.copy(frame.path, part)
        part.rename(inbox / "third.fits")  # moved in
        run.wait("the API poll", lambda: bool(run.status().get("last_poll_ok_utc")))
        time.sleep(3.0)  # drain and process intervals pass
    with Store(cfg.paths.db_path, migrate=False) as store:
        rows = store.db.execute("SELECT frame_id, exp_id, state, tries FROM frames").fetchall()
    assert len(rows) == 1
    assert rows[0][1] == exp_id
    assert rows[0][2] == "processed"
    assert rows[0][3] == 1
    _consistency(cfg.paths.db_path)
    assert len(list(cfg.paths.frames_dir.glob("*.fits"))) == 1


def test_service_stop_puts_back_frames_not_started(
    tmp_path: Path, fake: FakeSkynet, demo_field: DemoField
) -> None:
    load_into(fake, demo_field, archived=True)
    cfg = service_config(tmp_path, demo_field, fake.url, workers=1)
    with Running(cfg, fake.token) as run:
        run.wait("some work in flight", lambda: run.backlog()["processing"] >= 1, timeout_s=40)
    backlog = Running(cfg, fake.token).backlog()
    assert backlog["processing"] == 0
    assert backlog["processed"] + backlog["downloaded"] + backlog["seen"] == len(demo_field.frames)
    _consistency(cfg.paths.db_path)
    with Store(cfg.paths.db_path, migrate=False) as store:
        assert store.status_values()["stopped_utc"]
        waiting = store.frames_in_state("downloaded")
    assert all(f.tries == 0 for f in waiting)


class _HangingNotifier:
    """A notifier whose delivery hangs until released (a webhook that never answers)."""

    key = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.sent: list[tuple[int, ...]] = []

    def send(self, message: Any) -> None:
        self.entered.set()
        self.release.wait(timeout=60)
        self.sent.append(message.alert_ids)


def test_service_hanging_notifier_does_not_delay_frames(
    tmp_path: Path, fake: FakeSkynet, demo_field: DemoField
) -> None:
    """The outbox sender runs on its own thread: frames are stored while a notifier hangs,
    and the alerts go out once it answers."""
    load_into(fake, demo_field, archived=True)
    cfg = service_config(tmp_path, demo_field, fake.url)
    notifier = _HangingNotifier()
    service = Service(
        cfg,
        source_factory=lambda tok: SkynetClient.from_config(cfg.skynet, tok),
        read_token=lambda: Token(fake.token),
        notifiers=[notifier],
        env={},
    )
    thread = threading.Thread(target=service.run, name="soapd-under-test")
    thread.start()
    try:
        assert notifier.entered.wait(timeout=60), "no alert reached the notifier"
        deadline = time.monotonic() + 60
        processed = 0
        while time.monotonic() < deadline:
            with Store(cfg.paths.db_path, migrate=False) as store:
                processed = store.backlog()["processed"]
            if processed == len(demo_field.frames):
                break
            time.sleep(0.2)
        assert processed == len(demo_field.frames), "frames waited for the hanging notifier"
        assert notifier.sent == []
        notifier.release.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with Store(cfg.paths.db_path, migrate=False) as store:
                if not store.unsent_alerts(store.now()) and notifier.sent:
                    break
            time.sleep(0.2)
    finally:
        notifier.release.set()
        service.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    ids = [i for batch in notifier.sent for i in batch]
    assert ids, "the alerts never went out"
    assert len(ids) == len(set(ids)), "an alert was sent twice"
    _consistency(cfg.paths.db_path)
