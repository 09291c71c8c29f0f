"""A try means an attempt; one writer per state folder; writes wait for the write lock.

* tries: ``claim_frame`` counts nothing, ``mark_started`` counts once; the crash
  sweep puts never-started frames back untouched and charges started ones once;
* the state lock: a second holder fails at once naming the first one's pid;
  :func:`lock_holder` sees it without taking it; the kernel drops it on close;
* transactions begin with ``BEGIN IMMEDIATE``; ``read_only`` opens with ``mode=ro``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from soapd.errors import StoreError
from soapd.store import Store, is_busy
from soapd.store.lock import StateLock, StateLocked, lock_holder


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "soapd.db")
    yield s
    s.close()


def _downloaded(store: Store, n: int) -> list[int]:
    return [store.record_local(Path(f"/f{i}.fits"), f"sha{i}", 10).frame_id for i in range(n)]


def test_claiming_counts_no_try_each_start_counts_one(store: Store) -> None:
    (fid,) = _downloaded(store, 1)
    row = store.claim_frame(fid)
    assert (row.state, row.tries) == ("processing", 0)
    assert store.mark_started(fid) is True
    row = store.frame(fid)
    assert row is not None
    assert (row.state, row.tries) == ("processing", 1)
    assert store.mark_started(fid) is True  # started again by the pool after a worker died
    assert store.frame(fid).tries == 2  # type: ignore[union-attr]
    store.mark_rejected(fid, "no stars")
    assert store.mark_started(fid) is False  # not in 'processing'
    assert store.frame(fid).tries == 2  # type: ignore[union-attr]


def test_crash_sweep_puts_unstarted_frames_back_untouched_and_charges_started_once(
    store: Store,
) -> None:
    queued, started, exhausted = _downloaded(store, 3)
    store.claim_frame(queued)
    store.claim_frame(started)
    store.mark_started(started)
    for _ in range(2):
        store.start_attempt(exhausted)
        if store.frame(exhausted).tries < 2:  # type: ignore[union-attr]
            store.mark_retry(exhausted, "boom", max_tries=5)
    assert store.reset_stuck_processing(max_tries=2) == 3
    q, s, e = (store.frame(f) for f in (queued, started, exhausted))
    assert q is not None
    assert s is not None
    assert e is not None
    assert (q.state, q.tries, q.last_error) == ("downloaded", 0, None)
    assert (s.state, s.tries) == ("downloaded", 1)
    assert "interrupted" in (s.last_error or "")
    assert (e.state, e.tries) == ("failed", 2)
    # Started again after the restart: the next start is the second try, not the third.
    store.claim_frame(started)
    store.mark_started(started)
    assert store.frame(started).tries == 2  # type: ignore[union-attr]


def test_abandon_gives_back_only_a_counted_try(store: Store) -> None:
    a, b = _downloaded(store, 2)
    store.claim_frame(a)
    store.start_attempt(b)
    store.abandon_attempt(a)
    store.abandon_attempt(b)
    assert [store.frame(f).tries for f in (a, b)] == [0, 0]  # type: ignore[union-attr]
    assert [store.frame(f).state for f in (a, b)] == ["downloaded"] * 2  # type: ignore[union-attr]


def test_second_lock_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    first = StateLock(tmp_path, owner="soapd run")
    first.acquire()
    try:
        holder = lock_holder(tmp_path)
        assert holder is not None
        assert (holder.pid, holder.owner) == (os.getpid(), "soapd run")
        with pytest.raises(StateLocked, match=rf"soapd run \(pid {os.getpid()}\)") as info:
            StateLock(tmp_path, owner="Soap").acquire()
        assert info.value.holder.pid == os.getpid()
        assert isinstance(info.value, StoreError)
    finally:
        first.release()
    assert lock_holder(tmp_path) is None
    with StateLock(tmp_path, owner="Soap") as again:
        assert again.held


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    """The kernel drops a flock when its holder dies: no stale lock after kill -9."""
    code = (
        "import os, sys; from soapd.store.lock import StateLock; "
        f"StateLock({str(tmp_path)!r}, owner='soapd run').acquire(); "
        "print(os.getpid(), flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    holder = lock_holder(tmp_path)
    assert holder is not None
    assert holder.pid == pid
    proc.kill()
    proc.wait(timeout=10)
    assert proc.stdin is not None
    proc.stdin.close()
    proc.stdout.close()
    assert lock_holder(tmp_path) is None
    with StateLock(tmp_path, owner="soapd run"):
        pass


def test_writes_begin_immediate_and_wait_for_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "soapd.db"
    with Store(db) as store:
        (fid,) = _downloaded(store, 1)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with Store(db, migrate=False, busy_timeout_ms=100) as store:
            with pytest.raises(sqlite3.OperationalError) as info:
                store.claim_frame(fid)  # fails at BEGIN: nothing half-done
            assert is_busy(info.value)
            assert store.frame(fid).state == "downloaded"  # type: ignore[union-attr]
            other.execute("COMMIT")
            assert store.claim_frame(fid).state == "processing"
    finally:
        other.close()


def test_read_only_store_reads_and_cannot_write(tmp_path: Path) -> None:
    db = tmp_path / "soapd.db"
    with Store(db) as store:
        (fid,) = _downloaded(store, 1)
    with Store(db, read_only=True) as ro:
        assert ro.frame(fid) is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.claim_frame(fid)
    with pytest.raises(StoreError, match="no soapd database"):
        Store(tmp_path / "missing.db", read_only=True)
