"""Files on record and what retention deleted: the ``pruned_files`` table (issue 11).

:meth:`Pruning.files_on_record` lists every frame file and field-wide table the
ledger knows, with what retention planning (:mod:`soapd.retention`) needs to
decide; :meth:`Pruning.record_pruned` clears a deleted file's path on its frame
and adds a ``pruned_files`` row, in one transaction, and only for frames still
finished (processed, rejected or failed) whose path is still the one planned:
a frame requeued or being processed meanwhile is left alone. Measurements are
never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from soapd.models import FrameRow
from soapd.store.base import Repository
from soapd.store.frame_rows import FRAME_COLUMNS, row_to_frame
from soapd.store.ledger import Ledger

__all__ = ["FINISHED_STATES", "FileOnRecord", "PrunedFile", "Pruning"]

#: Frame states after which soapd no longer needs a frame's file to do its work.
FINISHED_STATES: tuple[str, ...] = ("processed", "rejected", "failed")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileOnRecord:
    """A file the ledger points at: a frame's FITS file (``kind`` 'frame') or field table ('table').

    ``finished_at`` is when the frame reached its state (ISO-8601 UTC: processed
    time for processed frames, else the last update); ``size_bytes`` the ledger's
    size of a frame file (None for tables, and when unknown).
    """

    frame_id: int
    kind: str
    path: Path
    size_bytes: int | None
    source: str
    state: str
    obs_id: int | None
    telescope: str | None
    band: str | None
    mid_time_utc: str | None
    finished_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PrunedFile:
    """One deleted (or to be deleted) file: its frame, kind, path, size in bytes and why."""

    frame_id: int
    kind: str
    path: Path
    size_bytes: int
    reason: str


class Pruning(Repository):
    """The files the ledger points at, and the record of those retention deleted."""

    def files_on_record(self) -> list[FileOnRecord]:
        """Return every frame file and field table on record, frames first, by frame id."""
        rows = self.db.execute(
            "SELECT frame_id, path, catalog_path, size_bytes, source, state, obs_id, telescope,"
            " COALESCE(band, filter), mid_time_utc,"
            " CASE WHEN state = 'processed' THEN COALESCE(processed_at, updated_at)"
            " ELSE updated_at END"
            " FROM frames WHERE path IS NOT NULL OR catalog_path IS NOT NULL ORDER BY frame_id"
        ).fetchall()
        frames: list[FileOnRecord] = []
        tables: list[FileOnRecord] = []
        for fid, path, table, size, source, state, obs, tel, band, mid, done in rows:
            common: dict[str, Any] = {
                "frame_id": int(fid),
                "source": source,
                "state": state,
                "obs_id": obs,
                "telescope": tel,
                "band": band,
                "mid_time_utc": mid,
                "finished_at": done,
            }
            if path is not None:
                frames.append(
                    FileOnRecord(kind="frame", path=Path(path), size_bytes=size, **common)
                )
            if table is not None:
                tables.append(
                    FileOnRecord(kind="table", path=Path(table), size_bytes=None, **common)
                )
        return frames + tables

    def record_pruned(self, files: Sequence[PrunedFile]) -> list[PrunedFile]:
        """Record that ``files`` are being deleted; return those recorded (delete only these).

        A frame file's path, checksum and size are cleared (the frame keeps its
        state, so ``soapd reprocess`` downloads it again), a table's
        ``catalog_path`` is cleared. Only frames still in a finished state whose
        path is unchanged are recorded.
        """
        now = self.now()
        done: list[PrunedFile] = []
        finished = ",".join(f"'{s}'" for s in FINISHED_STATES)
        with self.db.atomic():
            for f in files:
                if f.kind == "frame":
                    sql = (
                        "UPDATE frames SET path = NULL, sha256 = NULL, size_bytes = NULL,"
                        f" updated_at = ? WHERE frame_id = ? AND state IN ({finished})"
                        " AND path = ?"
                    )
                else:
                    sql = (
                        "UPDATE frames SET catalog_path = NULL, updated_at = ?"
                        f" WHERE frame_id = ? AND state IN ({finished}) AND catalog_path = ?"
                    )
                cur = self.db.execute(sql, [now, f.frame_id, str(f.path)])
                if cur.rowcount != 1:
                    continue
                self.db.execute(
                    "INSERT INTO pruned_files (frame_id, kind, path, size_bytes, reason,"
                    " pruned_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [f.frame_id, f.kind, str(f.path), f.size_bytes, f.reason, now],
                )
                done.append(f)
        return done

    def pruned_files(self, frame_id: int | None = None) -> list[dict[str, Any]]:
        """Return the ``pruned_files`` rows (of one frame, if given), oldest first."""
        where, params = ("WHERE frame_id = ?", [frame_id]) if frame_id is not None else ("", [])
        return list(
            self.db.query(
                "SELECT prune_id, frame_id, kind, path, size_bytes, reason, pruned_at"
                f" FROM pruned_files {where} ORDER BY prune_id",
                params,
            )
        )

    def frames_selected(
        self,
        *,
        frame_ids: Sequence[int] | None = None,
        obs_id: int | None = None,
        since_utc: datetime | None = None,
        until_utc: datetime | None = None,
        states: Sequence[str] = FINISHED_STATES,
    ) -> list[FrameRow]:
        """Return the frames :meth:`Ledger.requeue` would select with the same filters."""
        # the same WHERE clause as requeue's, so the two select the same frames
        where, params = Ledger._requeue_where(frame_ids, obs_id, since_utc, until_utc, states)
        sql = f"SELECT {FRAME_COLUMNS} FROM frames WHERE {where} ORDER BY frame_id"
        return [row_to_frame(r) for r in self.db.query(sql, params)]
