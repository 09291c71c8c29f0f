"""WAL checkpoints run on the checkpointer's thread, not inside the writer's commit.

The database file itself (read with ``immutable=1``, which ignores the WAL) shows
what has been checkpointed: a committed transaction is in the WAL at once and in the
file only after a checkpoint.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from soapd.store import Store, checkpoint
from soapd.store.checkpoint import WAL_AUTOCHECKPOINT_PAGES, WalCheckpointer

#: Rows of 4 KiB: each takes a page of its own, so this many dirty more pages than
#: SQLite's default autocheckpoint (1,000) and fewer than soapd's backstop.
N_ROWS = 1_500


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "soapd.db")
    s.db.execute("CREATE TABLE scratch (b BLOB)")
    # the empty table into the file (busy while the checkpointer runs one itself)
    assert _wait(lambda: s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0)
    yield s
    s.close()


def _in_file(path: Path) -> int:
    """Return the scratch rows in the database file, ignoring the WAL (-1: mid-checkpoint).

    While a checkpoint copies pages in, the file alone is inconsistent ("malformed").
    """
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM scratch").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


def _write_big(store: Store) -> None:
    with store.db.atomic():
        store.db.conn.executemany(
            "INSERT INTO scratch VALUES (?)", ([bytes(4000)] for _ in range(N_ROWS))
        )


def _wait(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_a_commit_leaves_the_checkpoint_to_the_checkpointer(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert N_ROWS < WAL_AUTOCHECKPOINT_PAGES
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_AUTOCHECKPOINT_PAGES
    path = Path(str(store.path))
    asked: list[int] = []
    checkpointer = store._checkpointer
    assert checkpointer is not None
    monkeypatch.setattr(store.db, "after_commit", lambda: asked.append(1))
    _write_big(store)
    # committed (every connection sees it) but only in the WAL: the commit did not checkpoint
    assert store.db.execute("SELECT count(*) FROM scratch").fetchone()[0] == N_ROWS
    assert asked == [1]
    assert _in_file(path) == 0
    monkeypatch.undo()
    checkpointer.request()
    assert _wait(lambda: _in_file(path) == N_ROWS)
    assert checkpointer.checkpoints >= 1


def test_the_store_asks_after_each_transaction_it_commits(store: Store) -> None:
    path = Path(str(store.path))
    checkpointer = store._checkpointer
    assert checkpointer is not None
    asked: list[str] = []

    def request() -> None:
        asked.append("asked")
        checkpointer.request()

    store.db.after_commit = request
    _write_big(store)
    assert asked == ["asked"]
    assert _wait(lambda: _in_file(path) == N_ROWS)

    def fail() -> None:
        with store.db.atomic():
            store.db.execute("INSERT INTO scratch VALUES (x'00')")
            with store.db.atomic():  # a nested block commits nothing by itself
                store.db.execute("INSERT INTO scratch VALUES (x'00')")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        fail()
    assert asked == ["asked"]  # nothing committed, nothing asked
    _write_big(store)
    assert asked == ["asked", "asked"]
    assert _wait(lambda: _in_file(path) == 2 * N_ROWS)


def test_the_thread_ends_when_idle_and_starts_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "soapd.db")
    try:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.idle_s = 0.05

        def running() -> bool:
            return any(t.name == "soapd-wal-checkpoint" for t in threading.enumerate())

        store.db.execute("CREATE TABLE scratch (b BLOB)")
        _write_big(store)
        assert _wait(lambda: checkpointer.checkpoints >= 1)
        assert _wait(lambda: not running())
        before = checkpointer.checkpoints
        _write_big(store)
        assert _wait(lambda: checkpointer.checkpoints > before)
    finally:
        store.close()


def test_stores_on_one_file_share_one_checkpointer_until_the_last_closes(tmp_path: Path) -> None:
    a = Store(tmp_path / "soapd.db")
    b = Store(tmp_path / "soapd.db", migrate=False)
    other = Store(tmp_path / "other.db")
    try:
        assert a._checkpointer is b._checkpointer
        assert a._checkpointer is not other._checkpointer
        shared = a._checkpointer
        a.close()
        assert checkpoint.acquire(tmp_path / "soapd.db") is shared
        checkpoint.release(shared)  # type: ignore[arg-type]
        b.close()
        fresh = checkpoint.acquire(tmp_path / "soapd.db")
        assert fresh is not shared
        checkpoint.release(fresh)
    finally:
        for s in (a, b, other):
            s.close()


def test_read_only_and_memory_stores_have_none(tmp_path: Path) -> None:
    Store(tmp_path / "soapd.db").close()
    for store in (Store(tmp_path / "soapd.db", read_only=True), Store(":memory:")):
        with store:
            assert store._checkpointer is None


def test_a_failing_checkpoint_is_logged_once_and_the_thread_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "not-a-database"
    bad.write_bytes(b"this is not SQLite" * 100)
    checkpointer = WalCheckpointer(bad, idle_s=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="soapd.store.checkpoint"):
            checkpointer.request()
            assert _wait(lambda: len(caplog.records) >= 1)
            checkpointer.request()
            time.sleep(0.3)
        assert len(caplog.records) == 1
        assert "WAL checkpoint of" in caplog.text
        assert "failed" in caplog.text
        assert checkpointer.checkpoints == 0
    finally:
        checkpointer.close()
