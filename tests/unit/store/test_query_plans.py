"""The store's reads by observation, state and target use an index, never a full-table scan.

Each read is run with a trace callback that captures the SQL it sends, and SQLite's
``EXPLAIN QUERY PLAN`` of each statement must not scan ``frames`` or ``measurements``
(issue 11: cost per frame must not grow with what soapd has already seen).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soapd.models import ExposureMeta, Target
from soapd.store import Store


def _statements(store: Store, read: Callable[[], Any]) -> list[str]:
    """Return the SELECT statements ``read`` sends (the trace shows them with their values)."""
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    try:
        read()
    finally:
        store.db.conn.set_trace_callback(None)
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")]


def _plan(store: Store, sql: str) -> list[str]:
    rows = store.db.conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    return [str(r[-1]) for r in rows]


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "soapd.sqlite")
    store.upsert_target(Target(name="T", ra_deg=1.0, dec_deg=2.0))
    for k in range(3):
        path = tmp_path / f"f{k}.fits"
        path.write_bytes(b"x")
        store.record_local(path, f"{k:064x}", 1, meta=ExposureMeta(obs_id=5))
    return store


READS: dict[str, Callable[[Store], Any]] = {
    "frames_of(obs_id)": lambda s: s.frames_of(obs_id=5),
    "frames_of(obs_id, states)": lambda s: s.frames_of(obs_id=5, states=["processed"]),
    "frames_of(states)": lambda s: s.frames_of(states=["downloaded"]),
    "frame_state_counts": lambda s: s.frame_state_counts(5),
    "frames_in_state": lambda s: s.frames_in_state("downloaded", 10),
    "pending_frames": lambda s: s.pending_frames(10),
    "lightcurve": lambda s: s.lightcurve("T"),
    "rule_history": lambda s: s.rule_history("T"),
    "pruned_files(frame)": lambda s: s.pruned_files(1),
}


@pytest.mark.parametrize("name", sorted(READS))
def test_read_uses_an_index(store: Store, name: str) -> None:
    statements = _statements(store, lambda: READS[name](store))
    assert statements, f"{name} sent no SELECT"
    for sql in statements:
        plan = _plan(store, sql)
        assert any(line.startswith("SEARCH ") for line in plan), f"{name}: {sql}\n{plan}"
        # a SCAN is allowed only of a subquery's own rows (its CO-ROUTINE searched an index)
        subqueries = {line.split()[-1] for line in plan if line.startswith("CO-ROUTINE ")}
        scans = [line for line in plan if line.startswith("SCAN ")]
        assert not [line for line in scans if line.split()[1] not in subqueries], (
            f"{name}: {sql}\n{plan}"
        )
