"""The frame ledger: the ``frames`` table and its state machine.

Every frame moves ``seen -> downloaded -> processing -> processed | rejected | failed``
and every transition is one method here (``Store.save_result`` writes
``processed`` with :meth:`Ledger.record_processed` in the same transaction as the
measurements). A frame's identity
is its Skynet ``exp_id`` and the ``sha256`` of its bytes, both UNIQUE, so a file
that arrives by the API and by the inbox is one row and is processed once.

``tries`` counts attempts at the current step: download attempts while ``seen``,
processing attempts once ``downloaded`` (it is reset when the file arrives). A
processing attempt counts when a worker starts the frame (``started_at``), not
when the frame is handed to the worker pool (:meth:`Ledger.claim_frame`).
This module must not import skynet, pipeline or service code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soapd.errors import StoreError
from soapd.models import FRAME_STATES, ExposureMeta, FrameRow, FrameSummary
from soapd.store.base import utc_iso
from soapd.store.connection import in_chunks
from soapd.store.frame_rows import (
    ExposureLike,
    FrameReads,
    Recorded,
    footprint_json,
    meta_columns,
    meta_from_json,
    meta_to_json,
)
from soapd.timeutil import mjd_of

__all__ = [
    "ExposureLike",
    "Ledger",
    "Recorded",
    "meta_from_json",
    "meta_to_json",
]


class Ledger(FrameReads):
    """The frame state machine: the daemon's work queue (issue 5); reads in :class:`FrameReads`."""

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
            for marks, chunk in in_chunks(list(frame_ids)):
                cur = self.db.execute(
                    f"UPDATE frames SET {', '.join(sets)}, updated_at = ?"
                    f" WHERE state != 'processing' AND frame_id IN ({marks})",
                    [self.now(), *chunk],
                )
                changed += int(cur.rowcount)
        return changed

    # ------------------------------------------------------------- processing
    def claim_frame(self, frame_id: int) -> FrameRow:
        """Move a 'downloaded' frame to 'processing' for a worker; no try is counted yet.

        The try is counted by :meth:`mark_started` when a worker starts it. Return the row.
        """
        with self.db.atomic():
            self._require(frame_id, "downloaded")
            self.db.execute(
                "UPDATE frames SET state = 'processing', started_at = NULL, updated_at = ?"
                " WHERE frame_id = ?",
                [self.now(), frame_id],
            )
            row = self.frame(frame_id)
        assert row is not None
        return row

    def mark_started(self, frame_id: int) -> bool:
        """Count the try of a frame in 'processing' that a worker has just started.

        Each start counts (a frame retried by the worker pool after its worker
        died starts, and counts, again). Return False when the frame is not in
        'processing'.
        """
        now = self.now()
        cur = self.db.execute(
            "UPDATE frames SET tries = tries + 1, started_at = ?, updated_at = ?"
            " WHERE frame_id = ? AND state = 'processing'",
            [now, now, frame_id],
        )
        return int(cur.rowcount) == 1

    def start_attempt(self, frame_id: int) -> FrameRow:
        """Move a 'downloaded' frame to 'processing' and count the attempt now. Return the row.

        (:meth:`claim_frame` then :meth:`mark_started`, in one transaction: for
        callers that run the frame themselves right away.)
        """
        with self.db.atomic():
            self.claim_frame(frame_id)
            self.mark_started(frame_id)
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
        """Put a 'processing' frame back to 'downloaded', giving back its try if it had started.

        For frames that never reached a worker (shutdown) or were interrupted by the user.
        """
        with self.db.atomic():
            self._require(frame_id, "processing")
            self.db.execute(
                "UPDATE frames SET state = 'downloaded',"
                " tries = CASE WHEN started_at IS NULL THEN tries ELSE MAX(tries - 1, 0) END,"
                " started_at = NULL, updated_at = ? WHERE frame_id = ?",
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

        A frame no worker had started (``started_at`` NULL) goes back untouched:
        no try was counted and none is. A frame that had started was counted
        once, when it started; it goes back with the error noted, or is marked
        failed when it has used ``max_tries`` attempts (it may be what crashes soapd;
        the daemon passes ``service.max_crash_starts``).
        """
        now = self.now()
        with self.db.atomic():
            queued = self.db.execute(
                "UPDATE frames SET state = 'downloaded', updated_at = ?"
                " WHERE state = 'processing' AND started_at IS NULL",
                [now],
            ).rowcount
            started = self.db.execute(
                "UPDATE frames SET state = CASE WHEN tries >= ? THEN 'failed' ELSE 'downloaded'"
                " END, last_error = 'interrupted while processing (soapd stopped or crashed)',"
                " started_at = NULL, updated_at = ? WHERE state = 'processing'",
                [max_tries, now],
            ).rowcount
        return int(queued) + int(started)

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

    def record_processed(
        self,
        frame_id: int,
        summary: FrameSummary,
        *,
        config_hash: str,
        soapd_version: str,
        table_path: str | None,
    ) -> float:
        """Write a processed frame's summary and move it to 'processed'; return its MJD.

        The frame's metadata columns take what processing established (telescope,
        filter, exposure time, mid-exposure time), and ``footprint_json`` its
        footprint (:func:`soapd.store.frame_rows.footprint_json`). Raise StoreError if
        the frame is not in the ledger. Call it inside the caller's transaction.
        """
        s = summary
        mid = s.mid_time_utc if s.mid_time_utc.tzinfo else s.mid_time_utc.replace(tzinfo=UTC)
        mjd = mjd_of(mid)
        now = self.now()
        cur = self.db.execute(
            """
            UPDATE frames SET state = 'processed', processed_at = ?, updated_at = ?,
                started_at = NULL,
                fwhm_px = ?, zp_mag = ?, zp_err_mag = ?, zp_scatter_mag = ?, n_calib = ?,
                cal_catalog = ?, mag_system = ?, lim_mag = ?, flags = ?, band = ?,
                mid_time_utc = ?, mjd = ?, exptime_s = ?, telescope = ?, filter = ?,
                soapd_version = ?, config_hash = ?, catalog_path = ?, image_file = ?,
                footprint_json = ?
            WHERE frame_id = ?
            """,
            [
                now,
                now,
                *(_finite_or_none(v) for v in (s.fwhm_px, s.zp_mag, s.zp_err_mag)),
                _finite_or_none(s.zp_scatter_mag),
                int(s.n_cal_stars),
                s.cal_catalog,
                s.cal_mag_system,
                _finite_or_none(s.lim_mag),
                int(s.flags),
                s.band,
                utc_iso(mid),
                mjd,
                float(s.exptime_s),
                s.telescope,
                s.filter_raw,
                soapd_version,
                config_hash,
                table_path,
                s.image_file,
                footprint_json(s),
                frame_id,
            ],
        )
        if cur.rowcount != 1:
            raise StoreError(f"frame_id {frame_id} is not in the ledger; register the frame first")
        return mjd

    def _require(self, frame_id: int, state: str) -> FrameRow:
        row = self.frame(frame_id)
        if row is None:
            raise StoreError(f"frame {frame_id} is not in the ledger")
        if row.state != state:
            raise StoreError(f"frame {frame_id} is '{row.state}', expected '{state}'")
        return row

    def _transition(self, frame_id: int, state: str, now: str, *, last_error: str | None) -> None:
        cur = self.db.execute(
            "UPDATE frames SET state = ?, last_error = ?, started_at = NULL, updated_at = ?"
            " WHERE frame_id = ?",
            [state, last_error, now, frame_id],
        )
        if cur.rowcount != 1:
            raise StoreError(f"frame {frame_id} is not in the ledger")


def _finite_or_none(value: float) -> float | None:
    """Return ``value`` as a float, or None (SQL NULL) when it is NaN or infinite."""
    value = float(value)
    return value if math.isfinite(value) else None
