"""The frame ledger: frames and their state machine, followed observations, service status.

Every frame moves ``seen -> downloaded -> processing -> processed | rejected | failed``
and every transition is one method here (``processed`` is written by
``ResultsMixin`` in the same transaction as the measurements). A frame's identity
is its Skynet ``exp_id`` and the ``sha256`` of its bytes, both UNIQUE, so a file
that arrives by the API and by the inbox is one row and is processed once.

``tries`` counts attempts at the current step: download attempts while ``seen``,
processing attempts once ``downloaded`` (it is reset when the file arrives).
This module must not import skynet, pipeline or service code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from soapd.errors import StoreError
from soapd.models import FRAME_STATES, ExposureMeta
from soapd.store.base import utc_iso
from soapd.store.frame_rows import (
    FRAME_COLUMNS,
    ExposureLike,
    FrameRow,
    Recorded,
    meta_columns,
    meta_from_json,
    meta_to_json,
    row_to_frame,
)
from soapd.store.status import StatusMixin

__all__ = [
    "ExposureLike",
    "FrameRow",
    "LedgerMixin",
    "Recorded",
    "meta_from_json",
    "meta_to_json",
]


class LedgerMixin(StatusMixin):
    """Frame-ledger queries: the daemon's work queue (issue 5)."""

    # ------------------------------------------------------------------ reads
    def frame(self, frame_id: int) -> FrameRow | None:
        """Return the frame ``frame_id``, or None."""
        rows = self._frames("frame_id = ?", [frame_id])
        return rows[0] if rows else None

    def find_frame(
        self, *, exp_id: int | None = None, sha256: str | None = None
    ) -> FrameRow | None:
        """Return the frame with this exposure id or this checksum, or None."""
        if exp_id is not None:
            rows = self._frames("exp_id = ?", [exp_id])
            if rows:
                return rows[0]
        if sha256 is not None:
            rows = self._frames("sha256 = ?", [sha256])
            if rows:
                return rows[0]
        return None

    def frames_in_state(self, state: str, limit: int = 1000) -> list[FrameRow]:
        """Return up to ``limit`` frames in ``state``, oldest first."""
        return self._frames("state = ?", [state], limit=limit)

    def pending_frames(self, limit: int) -> list[FrameRow]:
        """Return up to ``limit`` frames waiting for processing ('downloaded'), oldest first."""
        return self.frames_in_state("downloaded", limit)

    def frames_to_download(self, limit: int) -> list[FrameRow]:
        """Return up to ``limit`` archive frames seen but not yet downloaded, oldest first."""
        return self._frames("state = 'seen' AND source = 'skynet'", [], limit=limit)

    def known_exp_ids(self, exp_ids: Iterable[int]) -> set[int]:
        """Return the subset of ``exp_ids`` already in the ledger."""
        ids = list(dict.fromkeys(exp_ids))
        known: set[int] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT exp_id FROM frames WHERE exp_id IN ({marks})"
            known.update(r[0] for r in self.db.execute(sql, chunk).fetchall())
        return known

    def _frames(self, where: str, params: Sequence[Any], *, limit: int = 1000) -> list[FrameRow]:
        sql = f"SELECT {FRAME_COLUMNS} FROM frames WHERE {where} ORDER BY frame_id LIMIT ?"
        return [row_to_frame(r) for r in self.db.query(sql, [*params, limit])]

    # ----------------------------------------------------------------- intake
    def record_seen(self, exposures: Iterable[ExposureLike]) -> list[int]:
        """Given archive exposures, insert those with a new exp_id. Return the new frame ids."""
        exposures = list(exposures)
        known = self.known_exp_ids(e.exp_id for e in exposures)
        now = self.now()
        new_ids: list[int] = []
        with self.db.atomic():
            for exp in exposures:
                if exp.exp_id in known:
                    continue
                known.add(exp.exp_id)
                cur = self.db.execute(
                    "INSERT INTO frames (source, exp_id, obs_id, telescope, filter, mid_time_utc,"
                    " exptime_s, meta_json, state, seen_at, updated_at)"
                    " VALUES ('skynet', :exp_id, :obs_id, :telescope, :filter, :mid_time_utc,"
                    " :exptime_s, :meta_json, 'seen', :now, :now)",
                    {"exp_id": exp.exp_id, "obs_id": exp.obs_id, "now": now}
                    | meta_columns(exp.meta),
                )
                new_ids.append(int(cur.lastrowid or 0))
        return new_ids

    def record_local(
        self,
        path: Path,
        sha256: str,
        size_bytes: int,
        *,
        source: str = "inbox",
        meta: ExposureMeta | None = None,
    ) -> Recorded:
        """Given a local file already copied into soapd's frames folder, add it as 'downloaded'.

        A file whose checksum is known, or whose ``meta.exp_id`` is already a
        downloaded frame, is not new work: return that frame with ``created``
        False. When ``meta.exp_id`` names an exposure only seen so far, the file
        becomes that frame's download. Return the owning frame and whether work was added.
        """
        meta = meta or ExposureMeta()
        now = self.now()
        with self.db.atomic():
            same = self.find_frame(sha256=sha256)
            if same is not None:
                return Recorded(same.frame_id, created=False, reason="same checksum")
            if meta.exp_id is not None:
                by_exp = self.find_frame(exp_id=meta.exp_id)
                if by_exp is not None and by_exp.state != "seen":
                    return Recorded(by_exp.frame_id, created=False, reason="same exposure id")
                if by_exp is not None:
                    self._set_file(by_exp.frame_id, path, sha256, size_bytes, now)
                    return Recorded(by_exp.frame_id, created=True)
            cur = self.db.execute(
                "INSERT INTO frames (source, exp_id, obs_id, telescope, filter, mid_time_utc,"
                " exptime_s, meta_json, path, sha256, size_bytes, state, seen_at, updated_at)"
                " VALUES (:source, :exp_id, :obs_id, :telescope, :filter, :mid_time_utc,"
                " :exptime_s, :meta_json, :path, :sha256, :size, 'downloaded', :now, :now)",
                {
                    "source": source,
                    "exp_id": meta.exp_id,
                    "obs_id": meta.obs_id,
                    "path": str(path),
                    "sha256": sha256,
                    "size": size_bytes,
                    "now": now,
                }
                | meta_columns(meta),
            )
            return Recorded(int(cur.lastrowid or 0), created=True)

    def mark_downloaded(self, frame_id: int, path: Path, sha256: str, size_bytes: int) -> Recorded:
        """Given a 'seen' frame's downloaded file, move the frame to 'downloaded'.

        If the same bytes already belong to another frame (the file came in by
        the inbox first), the two rows are merged: the older frame takes this
        exposure id when it had none and this row is deleted; otherwise this row is
        rejected as a duplicate. Return the frame that owns the bytes and whether
        this call added work (when False the caller should delete ``path``).
        """
        now = self.now()
        with self.db.atomic():
            this = self._require(frame_id, "seen")
            twin = self.find_frame(sha256=sha256)
            if twin is None:
                self._set_file(frame_id, path, sha256, size_bytes, now)
                return Recorded(frame_id, created=True)
            if twin.exp_id is None:
                self.db.execute("DELETE FROM frames WHERE frame_id = ?", [frame_id])
                self.db.execute(
                    "UPDATE frames SET exp_id = ?, obs_id = COALESCE(obs_id, ?), updated_at = ?"
                    " WHERE frame_id = ?",
                    [this.exp_id, this.obs_id, now, twin.frame_id],
                )
                return Recorded(twin.frame_id, created=False, reason="merged with local file")
            reason = f"duplicate: same bytes as frame {twin.frame_id} (exp {twin.exp_id})"
            self._transition(frame_id, "rejected", now, last_error=reason)
            return Recorded(twin.frame_id, created=False, reason=reason)

    def mark_download_failed(self, frame_id: int, error: str, *, max_tries: int) -> str:
        """Count a failed download; at ``max_tries`` mark the frame failed. Return the new state."""
        now = self.now()
        with self.db.atomic():
            row = self._require(frame_id, "seen")
            state = "failed" if row.tries + 1 >= max_tries else "seen"
            self.db.execute(
                "UPDATE frames SET tries = tries + 1, state = ?, last_error = ?, updated_at = ?"
                " WHERE frame_id = ?",
                [state, error, now, frame_id],
            )
        return state

    def note_error(self, frame_id: int, error: str) -> None:
        """Record ``error`` on a frame without changing its state or tries (transient trouble)."""
        self.db.execute(
            "UPDATE frames SET last_error = ?, updated_at = ? WHERE frame_id = ?",
            [error, self.now(), frame_id],
        )

    def _set_file(self, frame_id: int, path: Path, sha256: str, size: int, now: str) -> None:
        self.db.execute(
            "UPDATE frames SET path = ?, sha256 = ?, size_bytes = ?, state = 'downloaded',"
            " tries = 0, last_error = NULL, updated_at = ? WHERE frame_id = ?",
            [str(path), sha256, size, now, frame_id],
        )

    def forget_files(self, frame_ids: Sequence[int], *, frame_file: bool, table_file: bool) -> int:
        """Record that cache pruning deleted these frames' files. Return the rows changed.

        (Added for the Python API's ``Soap.prune_cache``/``clear_cache``.) With
        ``frame_file`` the path, checksum and size are cleared and a frame waiting for
        processing ('downloaded') goes back to 'seen', so it is downloaded again;
        processed frames stay processed (their measurements are kept). With
        ``table_file`` the field-wide table path (``catalog_path``) is cleared.
        Frames in 'processing' are left alone.
        """
        sets = []
        if frame_file:
            sets += [
                "path = NULL",
                "sha256 = NULL",
                "size_bytes = NULL",
                "state = CASE WHEN state = 'downloaded' THEN 'seen' ELSE state END",
            ]
        if table_file:
            sets.append("catalog_path = NULL")
        if not sets or not frame_ids:
            return 0
        changed = 0
        with self.db.atomic():
            for i in range(0, len(frame_ids), 500):
                chunk = list(frame_ids[i : i + 500])
                cur = self.db.execute(
                    f"UPDATE frames SET {', '.join(sets)}, updated_at = ?"
                    f" WHERE state != 'processing' AND frame_id IN ({','.join('?' * len(chunk))})",
                    [self.now(), *chunk],
                )
                changed += int(cur.rowcount)
        return changed

    # ------------------------------------------------------------- processing
    def start_attempt(self, frame_id: int) -> FrameRow:
        """Move a 'downloaded' frame to 'processing' and count the attempt. Return the row."""
        now = self.now()
        with self.db.atomic():
            self._require(frame_id, "downloaded")
            self.db.execute(
                "UPDATE frames SET state = 'processing', tries = tries + 1, updated_at = ?"
                " WHERE frame_id = ?",
                [now, frame_id],
            )
            row = self.frame(frame_id)
        assert row is not None
        return row

    def mark_retry(self, frame_id: int, error: str, *, max_tries: int) -> str:
        """After a failed attempt, put the frame back to 'downloaded', or 'failed' at ``max_tries``.

        Return the new state.
        """
        now = self.now()
        with self.db.atomic():
            row = self._require(frame_id, "processing")
            state = "failed" if row.tries >= max_tries else "downloaded"
            self._transition(frame_id, state, now, last_error=error)
        return state

    def abandon_attempt(self, frame_id: int) -> None:
        """Undo :meth:`start_attempt` for a frame that never reached a worker (shutdown)."""
        with self.db.atomic():
            self._require(frame_id, "processing")
            self.db.execute(
                "UPDATE frames SET state = 'downloaded', tries = MAX(tries - 1, 0),"
                " updated_at = ? WHERE frame_id = ?",
                [self.now(), frame_id],
            )

    def mark_failed(self, frame_id: int, error: str) -> None:
        """Mark a frame failed for good with ``error`` (e.g. the file is not FITS)."""
        self._transition(frame_id, "failed", self.now(), last_error=error)

    def mark_rejected(self, frame_id: int, reason: str) -> None:
        """Mark a frame rejected: readable but unusable; it is not retried."""
        self._transition(frame_id, "rejected", self.now(), last_error=reason)

    def reset_stuck_processing(self, *, max_tries: int) -> int:
        """Put frames left in 'processing' by a crash back to 'downloaded'. Return how many.

        A frame that has already used ``max_tries`` attempts (it may be what
        crashes soapd) is marked failed instead.
        """
        now = self.now()
        with self.db.atomic():
            cur = self.db.execute(
                "UPDATE frames SET state = CASE WHEN tries >= ? THEN 'failed' ELSE 'downloaded'"
                " END, last_error = 'interrupted while processing (soapd stopped or crashed)',"
                " updated_at = ? WHERE state = 'processing'",
                [max_tries, now],
            )
        return int(cur.rowcount)

    def requeue(
        self,
        *,
        frame_ids: Sequence[int] | None = None,
        obs_id: int | None = None,
        since_utc: datetime | None = None,
        until_utc: datetime | None = None,
        states: Sequence[str] = ("processed", "rejected", "failed"),
        max_tries_below: int | None = None,
    ) -> int:
        """Send matching frames back for work: to 'downloaded' when their file is kept, else 'seen'.

        Filters combine with AND; times compare with the frame's mid-exposure time.
        ``max_tries_below`` keeps only frames with fewer tries (reconciliation).
        Tries and last error are reset unless ``max_tries_below`` is given. A
        reprocessed frame's results are superseded, not duplicated, by the
        store's upsert when it is processed again. Return the number of frames requeued.
        """
        bad = set(states) - set(FRAME_STATES) | ({"processing"} & set(states))
        if bad:
            raise StoreError(f"cannot requeue frames in state(s) {sorted(bad)}")
        where, params = self._requeue_where(frame_ids, obs_id, since_utc, until_utc, states)
        if max_tries_below is not None:
            where += " AND tries < ?"
            params.append(max_tries_below)
        reset = "" if max_tries_below is not None else ", tries = 0, last_error = NULL"
        cur = self.db.execute(
            "UPDATE frames SET state = CASE WHEN path IS NOT NULL AND sha256 IS NOT NULL"
            f" THEN 'downloaded' ELSE 'seen' END{reset}, updated_at = ? WHERE {where}",
            [self.now(), *params],
        )
        return int(cur.rowcount)

    @staticmethod
    def _requeue_where(
        frame_ids: Sequence[int] | None,
        obs_id: int | None,
        since_utc: datetime | None,
        until_utc: datetime | None,
        states: Sequence[str],
    ) -> tuple[str, list[Any]]:
        clauses = [f"state IN ({','.join('?' * len(states))})"]
        params: list[Any] = list(states)
        if frame_ids is not None:
            clauses.append(f"frame_id IN ({','.join('?' * len(frame_ids)) or 'NULL'})")
            params.extend(frame_ids)
        if obs_id is not None:
            clauses.append("obs_id = ?")
            params.append(obs_id)
        if since_utc is not None:
            clauses.append("mid_time_utc >= ?")
            params.append(utc_iso(since_utc))
        if until_utc is not None:
            clauses.append("mid_time_utc < ?")
            params.append(utc_iso(until_utc))
        return " AND ".join(clauses), params

    def _require(self, frame_id: int, state: str) -> FrameRow:
        row = self.frame(frame_id)
        if row is None:
            raise StoreError(f"frame {frame_id} is not in the ledger")
        if row.state != state:
            raise StoreError(f"frame {frame_id} is '{row.state}', expected '{state}'")
        return row

    def _transition(self, frame_id: int, state: str, now: str, *, last_error: str | None) -> None:
        cur = self.db.execute(
            "UPDATE frames SET state = ?, last_error = ?, updated_at = ? WHERE frame_id = ?",
            [state, last_error, now, frame_id],
        )
        if cur.rowcount != 1:
            raise StoreError(f"frame {frame_id} is not in the ledger")
