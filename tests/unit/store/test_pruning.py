"""The store's record of pruned files (``pruned_files``, migration m011_retention)."""

from __future__ import annotations

from pathlib import Path

from soapd.store import Store
from soapd.store.pruning import PrunedFile


def _frame(store: Store, folder: Path, k: int) -> tuple[int, Path]:
    path = folder / f"f{k}.fits"
    path.write_bytes(b"x" * 100)
    rec = store.record_local(path, f"{k:064x}", 100, source="inbox")
    return rec.frame_id, path


def test_record_pruned_clears_the_path_and_keeps_a_row(tmp_path: Path) -> None:
    with Store(tmp_path / "soapd.sqlite") as store:
        done_id, done_path = _frame(store, tmp_path, 1)
        busy_id, busy_path = _frame(store, tmp_path, 2)
        store.mark_rejected(done_id, "unusable")
        store.start_attempt(busy_id)  # 'processing': its file is needed
        files = store.files_on_record()
        assert [(f.frame_id, f.kind, f.state) for f in files] == [
            (done_id, "frame", "rejected"),
            (busy_id, "frame", "processing"),
        ]
        wanted = [
            PrunedFile(frame_id=i, kind="frame", path=p, size_bytes=100, reason="test")
            for i, p in ((done_id, done_path), (busy_id, busy_path))
        ]
        recorded = store.record_pruned(wanted)
        assert [f.frame_id for f in recorded] == [done_id]
        done, busy = store.frame(done_id), store.frame(busy_id)
        assert done is not None
        assert done.path is None
        assert done.sha256 is None
        assert done.state == "rejected"
        assert busy is not None
        assert busy.path == busy_path
        assert busy.state == "processing"
        rows = store.pruned_files()
        assert [
            (r["frame_id"], r["kind"], r["path"], r["size_bytes"], r["reason"]) for r in rows
        ] == [(done_id, "frame", str(done_path), 100, "test")]
        # the same file again (already cleared) is not recorded twice
        assert store.record_pruned(wanted[:1]) == []
        assert len(store.pruned_files(done_id)) == 1


def test_frames_of_an_observation_by_state_in_one_query(tmp_path: Path) -> None:
    from soapd.models import ExposureMeta

    with Store(tmp_path / "soapd.sqlite") as store:
        ids = {}
        for k, obs in enumerate((7, 7, 8)):
            path = tmp_path / f"o{k}.fits"
            path.write_bytes(b"x")
            meta = ExposureMeta(obs_id=obs)
            ids[k] = store.record_local(path, f"{k + 100:064x}", 1, meta=meta).frame_id
        store.mark_rejected(ids[1], "unusable")
        assert [r.frame_id for r in store.frames_of(obs_id=7)] == [ids[0], ids[1]]
        assert [r.frame_id for r in store.frames_of(obs_id=7, states=["rejected"])] == [ids[1]]
        assert [r.frame_id for r in store.frames_of()] == [ids[0], ids[1], ids[2]]
        assert store.frames_of(states=[]) == []
        assert store.frame_state_counts(7) == {"downloaded": 1, "rejected": 1}
        assert store.frame_state_counts(9) == {}
