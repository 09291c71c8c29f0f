"""Tests of soapd.daemon.jobs against the fake Skynet server and a real store (no pixel work).

The archive side uses the real SkynetClient talking HTTP to FakeSkynet on
127.0.0.1; the processing side is exercised through ``finish`` with worker
outcomes, so no process pool is started here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from soapd.config import Config, Token
from soapd.daemon.health import Health, Waker
from soapd.daemon.jobs import (
    JobContext,
    download_frames,
    drain_inbox,
    finish,
    heartbeat,
    poll_skynet,
)
from soapd.daemon.pool import WorkerPool
from soapd.frames import TaskOutcome
from soapd.ingest.retry import Backoff
from soapd.skynet.client import SkynetClient
from soapd.skynet.fetcher import Fetcher
from soapd.store import Store
from soapd.testing.fake_skynet import NOT_FITS_BYTES, FakeSkynet
from soapd.testing.synth import make_frame, write_frame

OBS = 4242
#: Seconds a test lets download_frames wait for its download threads (never reached).
WAIT_S = 60.0


@pytest.fixture(name="fits_bytes")
def fixture_fits_bytes(tmp_path: Path) -> Callable[[int], bytes]:
    """Factory: a small, valid FITS frame as bytes (different bytes per seed)."""

    def make(seed: int) -> bytes:
        frame = make_frame((64, 64), stars=5, seed=seed)
        path = write_frame(tmp_path / f"src{seed}.fits", frame.data_adu, frame.header)
        return path.read_bytes()

    return make


@pytest.fixture(name="fake")
def fixture_fake() -> Iterator[FakeSkynet]:
    """A running FakeSkynet with one observation."""
    with FakeSkynet(seed=1) as fake:
        fake.add_observation(OBS)
        yield fake


@pytest.fixture(name="ctx")
def fixture_ctx(
    fake: FakeSkynet, config: Callable[..., Config], tmp_path: Path
) -> Iterator[JobContext]:
    """A JobContext over a fresh store, with a client for ``fake`` and a recorded wake log."""
    cfg = config(
        skynet={"api_url": fake.url, "backoff_s": 0.0, "max_attempts": 2},
        paths={"inbox_dir": str(tmp_path / "inbox")},
        service={"workers": 2},
    )
    store = Store(cfg.paths.db_path)
    store.follow_observation(OBS)
    token = {"value": fake.token}
    woken: list[str] = []

    def factory(tok: Token) -> SkynetClient:
        return SkynetClient.from_config(cfg.skynet, tok, sleep=lambda _s: None)

    ctx = JobContext(
        config=cfg,
        store=store,
        pool=WorkerPool(cfg),
        wake=woken.append,
        source_factory=factory,
        read_token=lambda: Token(token["value"]) if token["value"] else None,
    )
    ctx.token = token  # type: ignore[attr-defined]
    ctx.woken = woken  # type: ignore[attr-defined]
    yield ctx
    if ctx.source is not None:
        ctx.source.close()
    if ctx.fetcher is not None:
        ctx.fetcher.close()
    store.close()


def _add(fake: FakeSkynet, fits_bytes: Callable[[int], bytes], n: int, **kw: object) -> list[int]:
    from datetime import UTC, datetime, timedelta

    t0 = datetime.now(UTC) - timedelta(hours=1)
    return [
        fake.add_exposure(OBS, fits_bytes(i), center_time_utc=t0 + timedelta(minutes=i), **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_poll_records_only_archived_new_exposures(
    ctx: JobContext, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    ids = _add(fake, fits_bytes, 3)
    fake.release_next()
    assert poll_skynet(ctx) == 1
    assert poll_skynet(ctx) == 0
    fake.release_all()
    assert poll_skynet(ctx) == 2
    assert ctx.store.known_exp_ids(ids) == set(ids)
    assert "download_frames" in ctx.woken  # type: ignore[attr-defined]
    assert ctx.store.status_values()["last_poll_ok_utc"]


def test_download_frames_stores_files_and_wakes_processing(
    ctx: JobContext, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    _add(fake, fits_bytes, 3, archived=True)
    poll_skynet(ctx)
    assert download_frames(ctx, limit=10, wait_s=WAIT_S) == 3
    rows = ctx.store.pending_frames(10)
    assert len(rows) == 3
    assert all(r.path is not None and r.path.is_file() for r in rows)
    assert "process_pending" in ctx.woken  # type: ignore[attr-defined]
    assert "download_frames" in ctx.woken  # type: ignore[attr-defined]  # by the threads
    assert download_frames(ctx, wait_s=WAIT_S) == 0


def test_truncated_download_is_retried_then_succeeds(
    ctx: JobContext, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    _add(fake, fits_bytes, 1, archived=True)
    poll_skynet(ctx)
    fake.truncate_next_download(2)
    download_frames(ctx, limit=1, wait_s=WAIT_S)
    row = ctx.store.frames_to_download(1)[0]
    # #15: truncated on every attempt is a transient fault: noted, no try counted.
    assert row.tries == 0
    assert "truncat" in (row.last_error or "").lower()
    assert (row.last_error or "").startswith("download postponed: ")
    assert download_frames(ctx, wait_s=WAIT_S) == 1
    (done,) = ctx.store.pending_frames(10)
    assert done.tries == 0


def test_non_fits_frame_fails_with_the_reason_after_max_tries(
    ctx: JobContext, fake: FakeSkynet
) -> None:
    from datetime import UTC, datetime

    fake.add_exposure(OBS, NOT_FITS_BYTES, center_time_utc=datetime.now(UTC), archived=True)
    poll_skynet(ctx)
    # skynet.download_budget_s = 0: such answers count a try at once (see
    # test_download_faults.py for the budget itself).
    ctx.fetcher = Fetcher(2, backoff=Backoff(base_s=0.0, cap_s=0.0, budget_s=0.0))
    for _ in range(5):
        download_frames(ctx, limit=1, wait_s=WAIT_S)
    assert ctx.store.frames_to_download(10) == []
    (row,) = ctx.store.frames_in_state("failed")
    assert row.tries == 3
    assert "fits" in (row.last_error or "").lower()
    assert list(ctx.config.paths.frames_dir.glob("*.fits")) == []


def test_refused_token_says_so_plainly_and_waits(
    ctx: JobContext,
    fake: FakeSkynet,
    fits_bytes: Callable[[int], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _add(fake, fits_bytes, 2, archived=True)
    old = fake.token
    fake.rotate_token("the-new-token")
    with caplog.at_level(logging.INFO):
        assert poll_skynet(ctx) == 0
        n_requests = len(fake.requests)
        for _ in range(5):
            poll_skynet(ctx)
            download_frames(ctx)
    assert len(fake.requests) == n_requests, "polled again before auth_retry_interval_s"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "refused the API token" in errors[0].getMessage()
    assert "next try in 900 s" in errors[0].getMessage()
    assert old not in caplog.text
    assert "the-new-token" not in caplog.text
    assert ctx.store.status_values()["auth_error"]
    ctx.token["value"] = "the-new-token"  # type: ignore[attr-defined]
    ctx.auth_blocked_until = 0.0  # the retry interval has passed
    assert poll_skynet(ctx) == 2
    assert ctx.store.status_values()["auth_error"] is None


def test_missing_token_pauses_polling(ctx: JobContext, caplog: pytest.LogCaptureFixture) -> None:
    ctx.token["value"] = ""  # type: ignore[attr-defined]
    assert poll_skynet(ctx) == 0
    assert "no Skynet API token" in caplog.text
    assert ctx.source is None


def test_drain_inbox_same_file_twice_and_via_api_is_one_frame(
    ctx: JobContext, fake: FakeSkynet, fits_bytes: Callable[[int], bytes], tmp_path: Path
) -> None:
    data = fits_bytes(7)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.fits", "b.fits"):
        (inbox / name).write_bytes(data)
        ctx.inbox.put(inbox / name)
    assert drain_inbox(ctx) == 1
    from datetime import UTC, datetime

    fake.add_exposure(OBS, data, center_time_utc=datetime.now(UTC), archived=True)
    poll_skynet(ctx)
    assert download_frames(ctx, wait_s=WAIT_S) == 0
    assert sum(ctx.store.backlog().values()) == 1
    (row,) = ctx.store.pending_frames(10)
    assert row.exp_id is not None
    assert len(list(ctx.config.paths.frames_dir.iterdir())) == 1


def test_drain_inbox_bad_file_is_logged_and_skipped(
    ctx: JobContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.fits"
    bad.write_bytes(NOT_FITS_BYTES)
    ctx.inbox.put(bad)
    assert drain_inbox(ctx) == 0
    assert "bad.fits not registered" in caplog.text
    assert bad.exists()


@pytest.mark.parametrize(
    ("outcome", "state"),
    [("rejected", "rejected"), ("failed", "failed"), ("retry", "downloaded")],
)
def test_finish_maps_worker_outcomes_to_states(ctx: JobContext, outcome: str, state: str) -> None:
    rec = ctx.store.record_local(Path("/x.fits"), "abc", 10)
    ctx.store.start_attempt(rec.frame_id)
    finish(ctx, TaskOutcome(frame_id=rec.frame_id, outcome=outcome, error=f"why: {outcome}"))  # type: ignore[arg-type]
    row = ctx.store.frame(rec.frame_id)
    assert row is not None
    assert row.state == state
    assert row.last_error == f"why: {outcome}"


def test_heartbeat_line_counts_states(ctx: JobContext) -> None:
    ctx.store.record_local(Path("/x.fits"), "abc", 10)
    line = heartbeat(ctx)
    assert "downloaded=1" in line
    assert ctx.store.status_values()["heartbeat_utc"]


def test_health_reports_stuck_job_and_frame() -> None:
    health = Health(stall_s=30.0)
    assert health.problem() is None
    health.started("process_pending")
    health._running["process_pending"] -= 60
    assert "process_pending" in (health.problem() or "")
    health.finished("process_pending")
    assert health.problem() is None
    assert "frame" in (health.problem(oldest_frame_s=31.0) or "")
    health.last_finished -= 60
    assert "no job has run" in (health.problem() or "")


def test_waker_without_scheduler_is_a_noop() -> None:
    Waker().wake("process_pending")


def test_reconcile_lists_the_window_and_requeues_failed_with_tries_left(
    ctx: JobContext, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    from datetime import UTC, datetime, timedelta

    from soapd.daemon.jobs import reconcile

    old = fake.add_exposure(
        OBS, fits_bytes(1), center_time_utc=datetime.now(UTC) - timedelta(days=5), archived=True
    )
    recent = _add(fake, fits_bytes, 2, archived=True)
    assert reconcile(ctx) == 2
    assert ctx.store.find_frame(exp_id=old) is None, "outside reconcile_window_h"
    download_frames(ctx, limit=10, wait_s=WAIT_S)
    a, b = (ctx.store.find_frame(exp_id=e) for e in recent)
    assert a is not None
    assert b is not None
    ctx.store.start_attempt(a.frame_id)
    ctx.store.mark_failed(a.frame_id, "transient: disk full")
    for _ in range(3):
        ctx.store.start_attempt(b.frame_id)
        ctx.store.mark_retry(b.frame_id, "always fails", max_tries=3)
    assert reconcile(ctx) == 1
    assert ctx.store.frame(a.frame_id).state == "downloaded"  # type: ignore[union-attr]
    assert ctx.store.frame(b.frame_id).state == "failed"  # type: ignore[union-attr]
    assert poll_skynet(ctx) == 1  # the regular poll has no window


def test_unavailable_archive_postpones_downloads_without_counting_tries(
    ctx: JobContext, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    _add(fake, fits_bytes, 2, archived=True)
    poll_skynet(ctx)
    fake.set_fail_rate(0.99)
    for _ in range(4):
        assert download_frames(ctx, wait_s=WAIT_S) == 0
    rows = ctx.store.frames_to_download(10)
    assert len(rows) == 2
    assert all(r.tries == 0 for r in rows)
    assert "download postponed" in (rows[0].last_error or "")
    fake.set_fail_rate(0.0)
    assert download_frames(ctx, limit=10, wait_s=WAIT_S) == 2


def test_poll_with_nothing_followed_needs_no_token(
    ctx: JobContext, caplog: pytest.LogCaptureFixture
) -> None:
    ctx.store.unfollow_observation(OBS)
    ctx.token["value"] = ""  # type: ignore[attr-defined]
    assert poll_skynet(ctx) == 0
    assert "token" not in caplog.text


class _DonePool:
    """A stand-in for WorkerPool that hands out fixed starts and outcomes, and takes nothing."""

    capacity = 0
    inflight: dict[int, object] = {}  # noqa: RUF012 - read only
    stacks_inflight: dict[tuple[str, str], object] = {}  # noqa: RUF012 - read only

    def __init__(self, started: list[int], outcomes: list[TaskOutcome]) -> None:
        self.started, self.outcomes = started, outcomes

    def collect(self, *, timeout_s: float = 0.0) -> list[TaskOutcome]:
        out, self.outcomes = self.outcomes, []
        return out

    def take_started(self) -> list[int]:
        out, self.started = self.started, []
        return out

    def collect_stacks(self, *, timeout_s: float = 0.0) -> list[object]:
        return []


def test_outcomes_collected_while_the_database_is_locked_are_kept_and_stored_later(
    ctx: JobContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A try is counted at the worker's start; a write lock held elsewhere loses nothing."""
    import sqlite3

    from soapd.daemon.jobs import process_pending

    ids = [ctx.store.record_local(Path(f"/x{i}.fits"), f"s{i}", 10).frame_id for i in range(2)]
    for fid in ids:
        ctx.store.claim_frame(fid)
    assert [ctx.store.frame(f).tries for f in ids] == [0, 0]  # type: ignore[union-attr]
    outs = [TaskOutcome(frame_id=f, outcome="rejected", error="no stars") for f in ids]
    ctx.pool = _DonePool(ids, outs)  # type: ignore[assignment]
    busy = Store(ctx.config.paths.db_path, migrate=False, busy_timeout_ms=50)
    ctx.store, real = busy, ctx.store
    other = sqlite3.connect(ctx.config.paths.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        assert process_pending(ctx) == 0
        assert list(ctx.started) == ids
        assert [o.frame_id for o in ctx.unapplied] == ids
        assert "locked by another process" in caplog.text
        assert [real.frame(f).state for f in ids] == ["processing"] * 2  # type: ignore[union-attr]
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert process_pending(ctx) == 2
    assert not ctx.started
    assert not ctx.unapplied
    rows = [real.frame(f) for f in ids]
    assert [(r.state, r.tries) for r in rows if r] == [("rejected", 1), ("rejected", 1)]
    busy.close()
    ctx.store = real


def test_an_outcome_for_a_frame_no_longer_processing_is_dropped_with_a_warning(
    ctx: JobContext, caplog: pytest.LogCaptureFixture
) -> None:
    rec = ctx.store.record_local(Path("/x.fits"), "abc", 10)
    finish(ctx, TaskOutcome(frame_id=rec.frame_id, outcome="failed", error="late"))
    assert "dropped" in caplog.text
    assert ctx.store.frame(rec.frame_id).state == "downloaded"  # type: ignore[union-attr]


def test_prune_job_applies_retention_only_when_a_limit_is_set(
    ctx: JobContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's daily ``prune`` job: nothing without [retention]; a logged line with it."""
    import dataclasses
    import logging

    from soapd.daemon.jobs import prune

    frames = ctx.config.paths.frames_dir
    frames.mkdir(parents=True, exist_ok=True)
    old = frames / "old.fits"
    old.write_bytes(b"x" * 2880)
    fid = ctx.store.record_local(old, "old-sha", 2880, source="skynet").frame_id
    ctx.store.start_attempt(fid)
    ctx.store.mark_rejected(fid, "no stars")  # finished: prunable once old enough
    assert prune(ctx) == ""  # every limit off by default: keep everything
    assert old.is_file()
    ctx.config = ctx.config.replace(
        retention=dataclasses.replace(ctx.config.retention, frames_max_gb=1e-9)
    )
    with caplog.at_level(logging.INFO, logger="soapd.daemon.jobs"):
        line = prune(ctx)
    assert line.startswith("retention: ")
    assert line in caplog.text
    assert "1 frame file(s)" in line
    assert not old.exists()
    assert [p["frame_id"] for p in ctx.store.pruned_files()] == [fid]
