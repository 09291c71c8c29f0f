"""The SQL texts the daemon's per-frame reads prepare do not change with every history length.

Each distinct text is one prepared statement in the connection's cache (128 per
connection); a text per length meant a new statement for every frame and the
daemon's memory growing with that churn (bench/README.md, "Where the daemon's
memory goes").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soapd.models import ExposureMeta, Target
from soapd.store import Store
from soapd.store.connection import IN_CHUNK, in_chunks
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "soapd.db")
    s.upsert_target(Target(name="GRB A", ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=T0))
    yield s
    s.close()


def _shape(sql: str) -> str:
    """Return ``sql`` (expanded by the trace callback) with its literal values as ``?``."""
    return re.sub(r"'[^']*'|-?\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\b", "?", sql)


def test_in_chunks_pads_to_powers_of_two_and_covers_every_value() -> None:
    assert list(in_chunks([])) == []
    assert list(in_chunks([7])) == [("?", [7])]
    assert list(in_chunks([1, 2, 3])) == [("?,?,?,?", [1, 2, 3, 3])]
    values = list(range(1, 1300))
    chunks = list(in_chunks(values))
    assert [len(p) for _, p in chunks] == [IN_CHUNK, IN_CHUNK, 512]
    assert [m.count("?") for m, _ in chunks] == [len(p) for _, p in chunks]
    assert [v for _, p in chunks for v in dict.fromkeys(p)] == values
    lengths = {len(p) for n in range(1, 2 * IN_CHUNK + 1) for _, p in in_chunks(values[:n])}
    assert lengths == {2**k for k in range(10)}
    with pytest.raises(ValueError, match="power of two"):
        list(in_chunks(values, size=500))


def test_rule_history_reads_use_a_few_sql_texts_as_the_history_grows(store: Store) -> None:
    texts: list[str] = []
    store.db.conn.set_trace_callback(texts.append)
    frame_ids = []
    for i in range(40):
        t = T0 + timedelta(minutes=10 * (i + 1))
        fid = register_frame(store, f"f{i}.fits", mid_time_utc=t, obs_id=7)
        res = target_result({"GRB A": 17.0 + 0.01 * i}, mid_time_utc=t, image_file=f"f{i}.fits")
        store.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)
        frame_ids.append(fid)
        hist = store.rule_history("GRB A")
        assert sorted(set(hist["frame_id"].tolist())) == frame_ids
    store.db.conn.set_trace_callback(None)
    frame_reads = {_shape(s) for s in texts if s.startswith("SELECT f.frame_id")}
    # 40 history lengths read through at most 7 padded list lengths (1, 2, 4, ..., 64);
    # before, one SQL text per length (40)
    assert 1 < len(frame_reads) <= 7


@dataclass(frozen=True)
class _Exp:
    """The part of a Skynet exposure record that ``record_seen`` reads."""

    exp_id: int
    obs_id: int | None = 7
    meta: ExposureMeta = field(default_factory=ExposureMeta)


def test_known_exp_ids_use_a_few_sql_texts_for_any_listing_length(store: Store) -> None:
    store.record_seen(
        [_Exp(e, 7, ExposureMeta(exp_id=e, obs_id=7, mid_time_utc=T0)) for e in (1000, 1001, 1002)]
    )
    texts: list[str] = []
    store.db.conn.set_trace_callback(texts.append)
    for n in range(1, 700, 3):
        listing = list(range(1000 - n, 1000 + 3))
        assert store.known_exp_ids(listing) == {1000, 1001, 1002}
    store.db.conn.set_trace_callback(None)
    shapes = {_shape(s) for s in texts if "exp_id IN" in s}
    assert len(shapes) <= IN_CHUNK.bit_length()  # before: one per listing length (234)


def _insert_then_fail(store: Store, x: int) -> None:
    with store.db.atomic():
        store.db.execute("INSERT INTO scratch VALUES (?)", [x])
        raise ZeroDivisionError


def test_nested_atomic_blocks_share_one_savepoint_name_and_roll_back_alone(store: Store) -> None:
    db = store.db
    db.execute("CREATE TABLE scratch (x INTEGER)")
    texts: list[str] = []
    db.conn.set_trace_callback(texts.append)
    with db.atomic():
        for i in range(5):
            with db.atomic():
                db.execute("INSERT INTO scratch VALUES (?)", [i])
                with pytest.raises(ZeroDivisionError):
                    _insert_then_fail(store, 100 + i)
    db.conn.set_trace_callback(None)
    assert [r[0] for r in db.execute("SELECT x FROM scratch ORDER BY x")] == [0, 1, 2, 3, 4]
    # before: two new texts per nested block (sqlite_utils' random savepoint names)
    assert {s for s in texts if "SAVEPOINT" in s} == {
        "SAVEPOINT soapd_savepoint",
        "RELEASE SAVEPOINT soapd_savepoint",
        "ROLLBACK TO SAVEPOINT soapd_savepoint",
    }


def test_frames_with_varying_target_counts_use_a_few_sql_texts(store: Store) -> None:
    """Rule states read and invalidated, rows superseded: per-frame target lists are padded."""
    names = [f"T{k:02d}" for k in range(24)]
    for k, name in enumerate(names):
        store.upsert_target(Target(name=name, ra_deg=150.0 + k * 1e-3, dec_deg=-30.0))
    texts: list[str] = []
    store.db.conn.set_trace_callback(texts.append)
    for i in range(1, len(names) + 1):
        t = T0 + timedelta(minutes=10 * i)
        fid = register_frame(store, f"v{i}.fits", mid_time_utc=t, obs_id=7)
        mags = dict.fromkeys(names[:i], 17.0)
        for config_hash in ("h1", "h2"):  # processed again: the first rows are superseded
            res = target_result(mags, mid_time_utc=t, image_file=f"v{i}.fits")
            store.save_result(fid, res, config_hash=config_hash, soapd_version="t", table_path=None)
    store.db.conn.set_trace_callback(None)
    n_lists = len(names)  # 24 list lengths; padded: 1, 2, 4, 8, 16, 32
    for marker in ("FROM rule_state WHERE target_id IN", "SET superseded = 1"):
        shapes = {_shape(s) for s in texts if marker in s}
        assert 1 < len(shapes) <= 6 < n_lists, marker
    superseded = store.db.execute(
        "SELECT COUNT(*) FROM measurements WHERE superseded = 1 AND config_hash = 'h1'"
    ).fetchone()[0]
    assert superseded == sum(range(1, len(names) + 1))  # every first row, once
