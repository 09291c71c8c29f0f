"""Tests of the frame ledger and service status: states, identity, requeue, status."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soapd.errors import StoreError
from soapd.models import ExposureMeta
from soapd.store import Store
from soapd.store.ledger import meta_from_json, meta_to_json

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Exp:
    exp_id: int
    obs_id: int | None = 7
    meta: ExposureMeta = field(default_factory=ExposureMeta)


def exp(exp_id: int, *, minutes: int = 0, obs_id: int = 7) -> Exp:
    meta = ExposureMeta(
        exp_id=exp_id,
        obs_id=obs_id,
        telescope="Prompt5",
        filter="rprime",
        exptime_s=60.0,
        mid_time_utc=T0 + timedelta(minutes=minutes),
        gain_e_per_adu=1.5,
        extra={"camera": "x"},
    )
    return Exp(exp_id, obs_id, meta)


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Store:
    """A fresh Store in tmp_path with migrations applied."""
    s = Store(tmp_path / "soapd.db")
    yield s
    s.close()


def _download(store: Store, frame_id: int, tmp_path: Path, sha: str) -> None:
    store.mark_downloaded(frame_id, tmp_path / f"{sha}.fits", sha, 100)


def test_record_seen_ignores_known_exp_ids(store: Store) -> None:
    first = store.record_seen([exp(1), exp(2)])
    again = store.record_seen([exp(2), exp(3), exp(3)])
    assert len(first) == 2
    assert len(again) == 1
    assert store.backlog()["seen"] == 3
    row = store.find_frame(exp_id=3)
    assert row is not None
    assert row.meta.telescope == "Prompt5"
    assert row.meta.mid_time_utc == T0


def test_frame_states_follow_the_happy_path(store: Store, tmp_path: Path) -> None:
    (fid,) = store.record_seen([exp(1)])
    assert [r.frame_id for r in store.frames_to_download(10)] == [fid]
    rec = store.mark_downloaded(fid, tmp_path / "a.fits", "aa", 10)
    assert rec.created
    assert rec.frame_id == fid
    assert [r.frame_id for r in store.pending_frames(10)] == [fid]
    row = store.start_attempt(fid)
    assert row.state == "processing"
    assert row.tries == 1
    assert store.pending_frames(10) == []
    with pytest.raises(StoreError, match="expected 'downloaded'"):
        store.start_attempt(fid)


def test_mark_retry_returns_to_downloaded_then_fails_at_max_tries(
    store: Store, tmp_path: Path
) -> None:
    (fid,) = store.record_seen([exp(1)])
    _download(store, fid, tmp_path, "aa")
    states = []
    for _ in range(3):
        store.start_attempt(fid)
        states.append(store.mark_retry(fid, "boom", max_tries=3))
    assert states == ["downloaded", "downloaded", "failed"]
    row = store.frame(fid)
    assert row is not None
    assert row.tries == 3
    assert row.last_error == "boom"


def test_mark_download_failed_counts_tries_then_fails(store: Store) -> None:
    (fid,) = store.record_seen([exp(1)])
    assert store.mark_download_failed(fid, "503", max_tries=2) == "seen"
    assert store.mark_download_failed(fid, "truncated", max_tries=2) == "failed"
    assert store.frames_to_download(10) == []
    assert store.recent_errors()[0]["last_error"] == "truncated"


def test_mark_downloaded_resets_tries_for_processing(store: Store, tmp_path: Path) -> None:
    (fid,) = store.record_seen([exp(1)])
    store.mark_download_failed(fid, "503", max_tries=3)
    _download(store, fid, tmp_path, "aa")
    row = store.frame(fid)
    assert row is not None
    assert row.tries == 0
    assert row.last_error is None


def test_record_local_same_checksum_twice_is_one_frame(store: Store, tmp_path: Path) -> None:
    a = store.record_local(tmp_path / "x.fits", "abc", 10)
    b = store.record_local(tmp_path / "y.fits", "abc", 10)
    assert a.created
    assert not b.created
    assert a.frame_id == b.frame_id
    assert store.backlog()["downloaded"] == 1


def test_api_download_after_inbox_file_merges_into_one_frame(store: Store, tmp_path: Path) -> None:
    local = store.record_local(tmp_path / "in.fits", "abc", 10)
    (fid,) = store.record_seen([exp(5)])
    rec = store.mark_downloaded(fid, tmp_path / "r5.fits", "abc", 10)
    assert not rec.created
    assert rec.frame_id == local.frame_id
    merged = store.frame(local.frame_id)
    assert merged is not None
    assert merged.exp_id == 5
    assert merged.obs_id == 7
    assert store.frame(fid) is None
    assert store.record_seen([exp(5)]) == []
    assert sum(store.backlog().values()) == 1


def test_inbox_file_after_api_download_is_not_new_work(store: Store, tmp_path: Path) -> None:
    (fid,) = store.record_seen([exp(5)])
    _download(store, fid, tmp_path, "abc")
    rec = store.record_local(tmp_path / "copy.fits", "abc", 10)
    assert not rec.created
    assert rec.frame_id == fid


def test_record_local_with_seen_exp_id_becomes_its_download(store: Store, tmp_path: Path) -> None:
    (fid,) = store.record_seen([exp(5)])
    rec = store.record_local(tmp_path / "r5.fits", "zzz", 10, meta=exp(5).meta)
    assert rec.created
    assert rec.frame_id == fid
    row = store.frame(fid)
    assert row is not None
    assert row.state == "downloaded"
    assert row.source == "skynet"
    other = store.record_local(tmp_path / "r5b.fits", "yyy", 10, meta=exp(5).meta)
    assert not other.created
    assert other.reason == "same exposure id"


def test_same_bytes_for_two_exposures_rejects_the_second(store: Store, tmp_path: Path) -> None:
    a, b = store.record_seen([exp(1), exp(2)])
    _download(store, a, tmp_path, "same")
    rec = store.mark_downloaded(b, tmp_path / "b.fits", "same", 10)
    assert not rec.created
    row = store.frame(b)
    assert row is not None
    assert row.state == "rejected"
    assert "duplicate" in (row.last_error or "")


def test_reset_stuck_processing_requeues_and_fails_exhausted(store: Store, tmp_path: Path) -> None:
    a, b = store.record_seen([exp(1), exp(2)])
    _download(store, a, tmp_path, "a")
    _download(store, b, tmp_path, "b")
    store.start_attempt(a)
    for _ in range(2):
        store.start_attempt(b)
        if store.frame(b).tries < 2:  # type: ignore[union-attr]
            store.mark_retry(b, "x", max_tries=5)
    assert store.reset_stuck_processing(max_tries=2) == 2
    assert store.frame(a).state == "downloaded"  # type: ignore[union-attr]
    assert store.frame(b).state == "failed"  # type: ignore[union-attr]
    assert store.reset_stuck_processing(max_tries=2) == 0


def test_abandon_attempt_gives_the_try_back(store: Store, tmp_path: Path) -> None:
    (fid,) = store.record_seen([exp(1)])
    _download(store, fid, tmp_path, "a")
    store.start_attempt(fid)
    store.abandon_attempt(fid)
    row = store.frame(fid)
    assert row is not None
    assert row.state == "downloaded"
    assert row.tries == 0


def test_requeue_filters_by_obs_time_and_state(store: Store, tmp_path: Path) -> None:
    ids = store.record_seen([exp(1, minutes=0), exp(2, minutes=10), exp(3, minutes=20, obs_id=8)])
    for i, fid in enumerate(ids):
        _download(store, fid, tmp_path, f"s{i}")
        store.start_attempt(fid)
    store.mark_rejected(ids[0], "no stars")
    store.mark_failed(ids[1], "bad")
    store.mark_failed(ids[2], "bad")
    n = store.requeue(obs_id=7, since_utc=T0 + timedelta(minutes=5), states=("failed",))
    assert n == 1
    assert store.frame(ids[1]).state == "downloaded"  # type: ignore[union-attr]
    assert store.frame(ids[1]).tries == 0  # type: ignore[union-attr]
    assert store.frame(ids[0]).state == "rejected"  # type: ignore[union-attr]
    assert store.requeue(until_utc=T0 + timedelta(minutes=1)) == 1
    assert store.requeue(frame_ids=[ids[2]]) == 1


def test_requeue_without_file_goes_back_to_seen(store: Store) -> None:
    (fid,) = store.record_seen([exp(1)])
    store.mark_download_failed(fid, "503", max_tries=1)
    assert store.requeue(states=("failed",), max_tries_below=1) == 0
    assert store.requeue(states=("failed",)) == 1
    assert store.frame(fid).state == "seen"  # type: ignore[union-attr]


def test_requeue_refuses_processing_frames(store: Store) -> None:
    with pytest.raises(StoreError, match="processing"):
        store.requeue(states=("processing",))


def test_transition_on_unknown_frame_raises(store: Store) -> None:
    with pytest.raises(StoreError, match="not in the ledger"):
        store.mark_failed(999, "x")
    with pytest.raises(StoreError, match="not in the ledger"):
        store.start_attempt(999)


def test_observations_follow_unfollow_and_config_sync(store: Store) -> None:
    assert store.follow_observation(10)
    assert not store.follow_observation(10)
    store.sync_config_observations([11, 10])
    assert store.followed_observations() == [10, 11]
    assert store.unfollow_observation(10)
    assert not store.unfollow_observation(10)
    assert store.followed_observations() == [11]
    rows = {r["obs_id"]: r for r in store.observation_rows()}
    assert rows[10]["active"] == 0
    assert rows[11]["source"] == "config"
    assert store.follow_observation(10)


def test_status_values_backlog_and_errors(store: Store, tmp_path: Path) -> None:
    store.set_status(last_poll_utc="t1", pid=42)
    store.set_status(last_poll_utc="t2", auth_error=None)
    values = store.status_values()
    assert values["last_poll_utc"] == "t2"
    assert values["pid"] == "42"
    assert values["auth_error"] is None
    (fid,) = store.record_seen([exp(1)])
    _download(store, fid, tmp_path, "a")
    backlog = store.backlog()
    assert backlog["downloaded"] == 1
    assert backlog["processed"] == 0
    assert store.last_processed_utc() is None
    assert store.recent_errors() == []


@settings(max_examples=50, deadline=None)
@given(
    exptime=st.one_of(st.none(), st.floats(0.1, 1e4)),
    minutes=st.integers(-10_000, 10_000),
    telescope=st.one_of(st.none(), st.text(max_size=20)),
)
def test_meta_json_round_trips(exptime: float | None, minutes: int, telescope: str | None) -> None:
    meta = ExposureMeta(
        exp_id=1,
        telescope=telescope,
        exptime_s=exptime,
        mid_time_utc=T0 + timedelta(minutes=minutes, microseconds=123),
        extra={"k": [1, 2]},
    )
    assert meta_from_json(meta_to_json(meta)) == meta
