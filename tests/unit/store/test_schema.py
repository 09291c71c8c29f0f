"""Schema tests: migrations are frozen, and a fresh database has the committed schema.

``schema.sql`` beside this file is the schema (``sqlite_master``) of a database
freshly opened by ``Store``; it was first written by the code before the
migrations were frozen, so equality shows that freezing changed nothing. After an
intended schema change, regenerate it and review the diff::

    PYTHONPATH=. python tests/unit/store/test_schema.py > tests/unit/store/schema.sql
"""

from __future__ import annotations

import inspect
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from soapd.models import FRAME_STATES
from soapd.store import Store
from soapd.store.connection import open_database
from soapd.store.migrations import migrations

SNAPSHOT = Path(__file__).with_name("schema.sql")


def schema_text(conn: sqlite3.Connection) -> str:
    """Return every schema object but sqlite-utils' own bookkeeping, sorted, as text."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE tbl_name != '_sqlite_migrations' ORDER BY type, name"
    ).fetchall()
    return "".join(
        f"-- {kind} {name} ON {table}\n{sql or '(automatic)'};\n\n"
        for kind, name, table, sql in rows
    )


def test_fresh_database_has_the_committed_schema(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        assert schema_text(store.db.conn) == SNAPSHOT.read_text()


def test_migrations_read_no_module_or_runtime_state() -> None:
    """Each migration uses only its own literals (and builtins and its own imports)."""
    fns = [m.fn for m in migrations._migrations]
    assert len(fns) >= 4
    for fn in fns:
        refs = inspect.getclosurevars(fn)
        assert refs.globals == {}, (fn.__name__, sorted(refs.globals))
        assert refs.nonlocals == {}, fn.__name__


def test_editing_runtime_constants_leaves_the_migrations_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release that edits FRAME_STATES or PACKED_FIELDS still builds the old schema."""
    monkeypatch.setattr("soapd.models.FRAME_STATES", ("seen", "archived"))
    monkeypatch.setattr("soapd.store.lctable.PACKED_FIELDS", ("mjd",))
    db = open_database(tmp_path / "edited.db")
    migrations.apply(db)
    plain = open_database(tmp_path / "plain.db")
    monkeypatch.undo()
    migrations.apply(plain)
    assert schema_text(db.conn) == schema_text(plain.conn)
    assert "'processing', 'processed', 'rejected', 'failed'" in schema_text(db.conn)


def test_frame_state_check_accepts_exactly_the_runtime_states(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        for i, state in enumerate((*FRAME_STATES, "bogus")):
            insert = (
                "INSERT INTO frames (source, sha256, state, seen_at, updated_at) "
                "VALUES ('cli', ?, ?, 'x', 'x')"
            )
            if state == "bogus":
                with pytest.raises(sqlite3.IntegrityError):
                    store.db.execute(insert, [str(i), state])
            else:
                store.db.execute(insert, [str(i), state])
        assert store.backlog() == dict.fromkeys(FRAME_STATES, 1)


def test_packed_rows_hold_the_runtime_layout_after_every_migration(tmp_path: Path) -> None:
    """Rows written before packing existed are re-packed in PACKED_FIELDS' order and codes.

    Fails when PACKED_FIELDS or PACKED_CODES is edited without a migration that
    re-packs stored rows.
    """
    from soapd.store.lctable import PACKED_CODES, PACKED_FIELDS

    db = open_database(tmp_path / "old.db")
    migrations.apply(db, stop_before="m004_measurements_packed")
    db.execute(
        "INSERT INTO frames (source, state, seen_at, updated_at) VALUES ('cli', 'seen', 'x', 'x')"
    )
    db.execute(
        "INSERT INTO targets (name, ra_deg, dec_deg, added_at, updated_at) "
        "VALUES ('T', 1, 2, 'x', 'x')"
    )
    #: packed fields whose column came later than m003 (m007): NaN in rows stored before
    later = ("lim_ins_mag",)
    numeric = [
        c for c in PACKED_FIELDS if c != "frame_id" and c not in PACKED_CODES and c not in later
    ]
    texts = (None, "", "AB", "Vega", "none", "ST")
    for k, text in enumerate(texts):
        values = {c: 10.0 * k + i for i, c in enumerate(numeric)} | dict.fromkeys(
            PACKED_CODES, text
        )
        db.execute(
            f"INSERT INTO measurements (frame_id, target_id, aperture_mpx, config_hash, "
            f"created_at, updated_at, {', '.join(values)}) VALUES (1, 1, ?, 'h', 'x', 'x', "
            f"{', '.join('?' * len(values))})",
            [k, *values.values()],
        )
    migrations.apply(db)
    rows = db.execute("SELECT packed FROM measurements ORDER BY aperture_mpx").fetchall()
    assert len(rows) == len(texts)
    for k, (text, (blob,)) in enumerate(zip(texts, rows, strict=True)):
        packed = dict(zip(PACKED_FIELDS, np.frombuffer(blob, dtype="<f8").tolist(), strict=True))
        assert {c: packed[c] for c in numeric} == {c: 10.0 * k + i for i, c in enumerate(numeric)}
        assert packed["frame_id"] == 1.0
        assert all(np.isnan(packed[c]) for c in later)
        for field, codes in PACKED_CODES.items():
            value = text or ""
            if value in codes:
                assert packed[field] == codes.index(value), (field, text)
            else:
                assert np.isnan(packed[field]), (field, text)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db") as s:
        sys.stdout.write(schema_text(s.db.conn))
