"""Plain records of the frame ledger: :class:`FrameRow`, :class:`Recorded`, metadata as JSON.

No SQL here; :mod:`soapd.store.ledger` turns rows into these values.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from soapd.models import ExposureMeta, FrameRow
from soapd.store.base import utc_iso

__all__ = [
    "FRAME_COLUMNS",
    "ExposureLike",
    "FrameRow",
    "Recorded",
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


def meta_to_json(meta: ExposureMeta) -> str:
    """Return ``meta`` as JSON text (datetimes as ISO-8601 UTC)."""
    data = asdict(meta)
    if meta.mid_time_utc is not None:
        data["mid_time_utc"] = utc_iso(meta.mid_time_utc)
    return json.dumps(data, sort_keys=True, default=str)


def meta_from_json(text: str | None) -> ExposureMeta:
    """Return the ExposureMeta stored by :func:`meta_to_json` (empty meta for None)."""
    if not text:
        return ExposureMeta()
    data: dict[str, Any] = json.loads(text)
    if data.get("mid_time_utc"):
        data["mid_time_utc"] = datetime.fromisoformat(data["mid_time_utc"])
    return ExposureMeta(**data)


def row_to_frame(r: dict[str, Any]) -> FrameRow:
    meta = meta_from_json(r["meta_json"])
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
    return {
        "telescope": meta.telescope,
        "filter": meta.filter,
        "exptime_s": meta.exptime_s,
        "mid_time_utc": utc_iso(meta.mid_time_utc) if meta.mid_time_utc else None,
        "meta_json": meta_to_json(meta),
    }
