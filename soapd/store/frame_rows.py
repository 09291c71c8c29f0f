"""Reading the frame ledger: :class:`FrameReads`, rows as :class:`~soapd.models.FrameRow`.

Also the ledger's small records (:class:`Recorded`, :class:`ExposureLike`) and the
frame metadata's JSON form. The writes (the state machine) are in
:mod:`soapd.store.ledger`, whose ``Ledger`` builds on :class:`FrameReads`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from soapd.models import ExposureMeta, FrameRow, FrameSummary
from soapd.store.base import Repository, utc_iso
from soapd.store.connection import in_chunks
from soapd.timeutil import parse_utc

__all__ = [
    "FRAME_COLUMNS",
    "ExposureLike",
    "FrameReads",
    "Recorded",
    "footprint_from_json",
    "footprint_json",
    "meta_from_json",
    "meta_to_json",
]

FRAME_COLUMNS = (
    "frame_id, source, exp_id, obs_id, telescope, filter, mid_time_utc, exptime_s, path, "
    "sha256, size_bytes, state, tries, last_error, seen_at, updated_at, meta_json"
)


class ExposureLike(Protocol):
    """What ``record_seen`` needs of an archive exposure (``soapd.skynet.Exposure``)."""

    @property
    def exp_id(self) -> int:
        """The archive's exposure id."""
        ...

    @property
    def obs_id(self) -> int | None:
        """The observation the exposure belongs to."""
        ...

    @property
    def meta(self) -> ExposureMeta:
        """The archive's metadata."""
        ...


class Recorded(NamedTuple):
    """Outcome of recording a file: the frame that owns it and whether it is new work."""

    frame_id: int
    created: bool
    reason: str = ""


#: ExposureMeta fields kept in ``frames`` columns of the same name; ``meta_json``
#: holds only the others (gain, read noise, extras), so each value is stored once.
COLUMN_FIELDS = ("exp_id", "obs_id", "telescope", "filter", "exptime_s", "mid_time_utc")


def meta_to_json(meta: ExposureMeta, *, omit: Sequence[str] = ()) -> str:
    """Return ``meta`` as JSON text (datetimes as ISO-8601 UTC), without the fields ``omit``."""
    data = asdict(meta)
    del data["from_user"]  # a flag of one ``soapd process`` run, not archive metadata
    if meta.mid_time_utc is not None:
        data["mid_time_utc"] = utc_iso(meta.mid_time_utc)
    for name in omit:
        del data[name]
    return json.dumps(data, sort_keys=True, default=str)


def meta_from_json(text: str | None, **fields: Any) -> ExposureMeta:
    """Return the ExposureMeta stored by :func:`meta_to_json` (empty meta for None).

    ``fields`` (e.g. the frame's columns) take precedence over the JSON's values.
    """
    data: dict[str, Any] = json.loads(text) if text else {}
    data.update(fields)
    if isinstance(data.get("mid_time_utc"), str):
        data["mid_time_utc"] = parse_utc(data["mid_time_utc"])
    return ExposureMeta(**data)


Corners = tuple[tuple[float, float], ...]


def footprint_json(summary: FrameSummary) -> str | None:
    """Return a processed frame's footprint as ``frames.footprint_json`` text (None: no WCS).

    ``{"corners": [[ra, dec], ...], "covered": [[ra, dec], ...]}`` in degrees: the
    sky corners of the pixel grid and of the part inside the edge buffer.
    """
    if not summary.footprint_deg:
        return None
    return json.dumps(
        {
            "corners": [list(c) for c in summary.footprint_deg],
            "covered": [list(c) for c in summary.covered_footprint_deg],
        }
    )


def footprint_from_json(text: str | None) -> tuple[Corners, Corners] | None:
    """Return (corners, covered corners) stored by :func:`footprint_json`; None for NULL."""
    if not text:
        return None
    data = json.loads(text)

    def corners(key: str) -> Corners:
        return tuple((float(ra), float(dec)) for ra, dec in data.get(key) or ())

    return corners("corners"), corners("covered")


def row_to_frame(r: dict[str, Any]) -> FrameRow:
    """Return a ``frames`` row (:data:`FRAME_COLUMNS`) as a FrameRow."""
    meta = meta_from_json(r["meta_json"], **{name: r[name] for name in COLUMN_FIELDS})
    return FrameRow(
        frame_id=r["frame_id"],
        source=r["source"],
        exp_id=r["exp_id"],
        obs_id=r["obs_id"],
        path=Path(r["path"]) if r["path"] else None,
        sha256=r["sha256"],
        size_bytes=r["size_bytes"],
        state=r["state"],
        tries=r["tries"],
        last_error=r["last_error"],
        seen_at=r["seen_at"],
        updated_at=r["updated_at"],
        meta=meta,
    )


def meta_columns(meta: ExposureMeta) -> dict[str, Any]:
    """Return the ``frames`` values that store ``meta`` (but exp_id and obs_id: the caller's)."""
    return {
        "telescope": meta.telescope,
        "filter": meta.filter,
        "exptime_s": meta.exptime_s,
        "mid_time_utc": utc_iso(meta.mid_time_utc) if meta.mid_time_utc else None,
        "meta_json": meta_to_json(meta, omit=COLUMN_FIELDS),
    }


class FrameReads(Repository):
    """Queries that read the ``frames`` table."""

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

    def frames_of(
        self, *, obs_id: int | None = None, states: Sequence[str] | None = None
    ) -> list[FrameRow]:
        """Return the frames of observation ``obs_id`` in ``states`` (None: any), oldest first.

        One indexed query (``frames_obs``, ``frames_state``) instead of a scan per state.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if obs_id is not None:
            clauses.append("obs_id = ?")
            params.append(obs_id)
        if states is not None:
            clauses.append(f"state IN ({','.join('?' * len(states)) or 'NULL'})")
            params.extend(states)
        where = " AND ".join(clauses) or "1"
        sql = f"SELECT {FRAME_COLUMNS} FROM frames WHERE {where} ORDER BY frame_id"
        return [row_to_frame(r) for r in self.db.query(sql, params)]

    def frame_state_counts(self, obs_id: int) -> dict[str, int]:
        """Return how many frames of observation ``obs_id`` are in each state (states held only)."""
        rows = self.db.execute(
            "SELECT state, COUNT(*) FROM frames WHERE obs_id = ? GROUP BY state", [obs_id]
        ).fetchall()
        return {str(state): int(n) for state, n in rows}

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
        for marks, chunk in in_chunks(ids):
            sql = f"SELECT exp_id FROM frames WHERE exp_id IN ({marks})"
            known.update(r[0] for r in self.db.execute(sql, chunk).fetchall())
        return known

    def _frames(self, where: str, params: Sequence[Any], *, limit: int = 1000) -> list[FrameRow]:
        sql = f"SELECT {FRAME_COLUMNS} FROM frames WHERE {where} ORDER BY frame_id LIMIT ?"
        return [row_to_frame(r) for r in self.db.query(sql, [*params, limit])]

    def frames_with_tables(self) -> list[dict[str, Any]]:
        """Return processed frames that kept a field-wide table, by mid-exposure time.

        Each row also has ``flags`` (the frame's) and ``footprint``: (corners, covered
        corners) as :func:`footprint_from_json` returns them, or None when unknown
        (no WCS, or processed before footprints were stored).
        """
        rows = self.db.query(
            "SELECT frame_id, catalog_path, mid_time_utc, mjd, band, filter, telescope, "
            "exptime_s, lim_mag, zp_mag, zp_err_mag, zp_scatter_mag, n_calib, cal_catalog, "
            "mag_system, image_file, config_hash, obs_id, flags, footprint_json FROM frames "
            "WHERE state = 'processed' AND catalog_path IS NOT NULL ORDER BY mjd, frame_id"
        )
        out = []
        for row in rows:
            row["footprint"] = footprint_from_json(row.pop("footprint_json"))
            out.append(row)
        return out

    def frame_obs_id(self, frame_id: int) -> int | None:
        """Return the Skynet observation id of a frame (None if unknown or local)."""
        row = self.db.execute("SELECT obs_id FROM frames WHERE frame_id = ?", [frame_id]).fetchone()
        return None if row is None or row[0] is None else int(row[0])
