"""soapd.store.readonly: the read-only connection and the overview queries of the web pages."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from soapd.errors import StoreError
from soapd.models import Target
from soapd.store import Store
from soapd.store import readonly as ro
from soapd.store.readonly import ReadOnlyStore, open_readonly
from soapd.testing.web_state import GRB, XSS, build_state


@pytest.fixture(name="db")
def fixture_db(tmp_path: Path) -> Path:
    """A database file holding the web tests' state."""
    path = tmp_path / "state" / "soapd.db"
    with Store(path) as store:
        build_state(store)
    return path


def test_open_readonly_never_creates_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "soapd.db"
    with pytest.raises(StoreError, match="no soapd database at"):
        open_readonly(missing)
    assert not missing.parent.exists()


def test_open_readonly_refuses_another_programs_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA application_id = 42")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="another program"):
        open_readonly(other)
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot open the soapd database read-only"):
        open_readonly(tmp_path / "junk.db")


def test_read_only_store_reads_and_refuses_every_write(db: Path) -> None:
    before = db.read_bytes()
    with ReadOnlyStore(db) as store:
        assert store.get_target(GRB) is not None
        assert len(store.lightcurve(GRB)) == 4
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
            store.upsert_target(Target(name="NEW", ra_deg=1.0, dec_deg=1.0))
        with pytest.raises(sqlite3.OperationalError):
            store.set_status(pid=1)
    assert db.read_bytes() == before
    with Store(db, migrate=False) as store:
        assert store.get_target("NEW") is None


def test_read_only_store_sees_the_writers_new_rows(db: Path) -> None:
    with ReadOnlyStore(db) as reader, Store(db) as writer:
        assert reader.get_target("LATE") is None
        writer.upsert_target(Target(name="LATE", ra_deg=2.0, dec_deg=2.0))
        assert reader.get_target("LATE") is not None


def test_immutable_fallback_when_wal_files_cannot_be_made(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only file system without the -shm file: read the file as immutable."""
    real = ro._connect
    uris: list[str] = []

    class NoWal:
        def execute(self, *_: object) -> None:
            raise sqlite3.OperationalError("attempt to write a readonly database")

        def close(self) -> None:
            pass

    def fake(uri: str) -> object:
        uris.append(uri)
        return real(uri) if "immutable=1" in uri else NoWal()

    monkeypatch.setattr(ro, "_connect", fake)
    with ReadOnlyStore(db) as store:
        assert len(store.list_targets()) == 3
    assert uris[0].endswith("?mode=ro")
    assert uris[1].endswith("?mode=ro&immutable=1")


def test_overview_queries(db: Path) -> None:
    with ReadOnlyStore(db) as store:
        assert store.pending_migrations() == []
        (obs,) = store.observation_activity()
        assert (obs["obs_id"], obs["source"], obs["n_frames"], obs["n_bad"]) == (77, "config", 5, 1)
        failed = store.problem_frames("failed")
        assert [f["last_error"] for f in failed] == ["FrameUnreadable: not a FITS file"]
        assert store.problem_frames("rejected", source="skynet") == []
        assert len(store.problem_frames("rejected", source="inbox")) == 1
        counts = store.notifier_alert_counts(["file:/x"])
        assert counts == {
            "file:/x": {"delivered": 0, "pending": 0, "failed": 0},
            "log": {"delivered": 1, "pending": 0, "failed": 0},
        }
        rows = {r["name"]: r for r in store.target_overview()}
        assert rows[GRB]["n_points"] == 4
        assert rows[GRB]["last"]["mag"] == pytest.approx(17.0, abs=1e-6)
        assert rows[GRB]["last"]["band"] == "R"
        assert rows[XSS]["last"]["flags"] == 1024
        assert rows["NO-DATA"]["last"] is None
        frame = store.frame_details(1)
        assert frame is not None
        assert frame["state"] == "processed"
        assert store.frame_details(999) is None
        names = [m["target_name"] for m in store.frame_measurements(1)]
        assert names == sorted([GRB, XSS])


def test_observation_known_only_from_frames_is_listed(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from soapd.testing.lightcurves import register_frame

    path = tmp_path / "soapd.db"
    with Store(path) as store:
        register_frame(store, "a.fits", mid_time_utc=datetime(2026, 1, 1, tzinfo=UTC), obs_id=5)
    with ReadOnlyStore(path) as store:
        (obs,) = store.observation_activity()
        assert (obs["obs_id"], obs["source"], obs["active"], obs["n_frames"]) == (5, None, 0, 1)
