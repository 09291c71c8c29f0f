"""Stacked epochs: every version of each target's epoch stacks, and what stacking reads.

A stack is stored as one ``stacks`` row (an epoch's co-add, see
:class:`~soapd.models.StackRecord`) and its ``stack_members`` (frames and weights).
Building an epoch again adds the next ``version`` and supersedes the older ones,
as reprocessing does for measurements. ``Store.save_stack`` writes a stack with
the alerts it raised in one transaction.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from soapd.models import StackRecord
from soapd.store.base import Repository, utc_iso
from soapd.store.connection import in_chunks
from soapd.timeutil import mjd_of, parse_utc

__all__ = ["StackCandidateRow", "Stacks"]

#: What :meth:`Stacks.stack_candidates` returns per frame (a plain mapping).
StackCandidateRow = dict[str, Any]

_NUMBERS = (
    "exptime_s",
    "total_exptime_s",
    "mag",
    "mag_err",
    "lim_mag",
    "lim_nsigma",
    "snr",
    "flux_e",
    "flux_err_e",
    "flux_ujy",
    "flux_ujy_err",
    "zp_mag",
    "zp_err_mag",
    "zp_scatter_mag",
    "predicted_lim_mag",
    "best_single_lim_mag",
    "fwhm_px",
    "aperture_px",
)
_TIMES = (
    "bin_start_utc",
    "bin_end_utc",
    "mid_time_utc",
    "mean_mid_time_utc",
    "start_utc",
    "stop_utc",
)
_COLUMNS = (
    "stack_id",
    "epoch_key",
    "version",
    "superseded",
    "telescope",
    "band",
    *_TIMES,
    *_NUMBERS,
    "is_detection",
    "flags",
    "n_cal_stars",
    "cal_catalog",
    "mag_system",
    "single_detections",
    "alignment",
    "considered",
    "excluded_json",
    "config_hash",
)


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


class Stacks(Repository):
    """Queries on ``stacks`` and ``stack_members``."""

    def insert_stack(self, target_id: int, record: StackRecord) -> tuple[int, int]:
        """Store ``record`` as the next version of its epoch (inside the caller's transaction).

        Older versions of the epoch become superseded. Return (stack_id, version).
        """
        row = self.db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM stacks WHERE target_id = ? AND epoch_key = ?",
            [target_id, record.epoch_key],
        ).fetchone()
        version = int(row[0]) + 1
        self.db.execute(
            "UPDATE stacks SET superseded = 1 WHERE target_id = ? AND epoch_key = ? "
            "AND superseded = 0",
            [target_id, record.epoch_key],
        )
        values: dict[str, Any] = {
            "target_id": target_id,
            "epoch_key": record.epoch_key,
            "version": version,
            "superseded": 0,
            "telescope": record.telescope,
            "band": record.band,
            **{k: utc_iso(getattr(record, k)) for k in _TIMES},
            "mjd": mjd_of(record.mid_time_utc),
            "n_frames": record.n_frames,
            **{k: _num(float(getattr(record, k))) for k in _NUMBERS},
            "is_detection": int(bool(record.is_detection)),
            "flags": int(record.flags),
            "n_cal_stars": int(record.n_cal_stars),
            "cal_catalog": record.cal_catalog,
            "mag_system": record.mag_system,
            "single_detections": int(record.single_detections),
            "alignment": record.alignment,
            "considered": json.dumps(sorted(int(f) for f in record.considered)),
            "excluded_json": json.dumps([[int(f), str(r)] for f, r in record.excluded]),
            "config_hash": record.config_hash,
            "created_at": self.now(),
        }
        names = list(values)
        cur = self.db.execute(
            f"INSERT INTO stacks ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [values[n] for n in names],
        )
        stack_id = int(cur.lastrowid or 0)
        self.db.conn.executemany(
            "INSERT INTO stack_members (stack_id, frame_id, weight) VALUES (?, ?, ?)",
            [
                (stack_id, int(f), float(w))
                for f, w in zip(record.members, record.weights, strict=True)
            ],
        )
        return stack_id, version

    def stacks_of(
        self, target_id: int, target_name: str, *, include_superseded: bool = False
    ) -> list[StackRecord]:
        """Return a target's stacks (current versions only, unless asked) by mid-time."""
        where = "target_id = ?" + ("" if include_superseded else " AND superseded = 0")
        rows = self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM stacks WHERE {where} "
            "ORDER BY mjd, epoch_key, version",
            [target_id],
        ).fetchall()
        ids = [int(r[0]) for r in rows]
        members: dict[int, list[tuple[int, float]]] = {i: [] for i in ids}
        for marks, chunk in in_chunks(ids):
            for sid, fid, weight in self.db.execute(
                "SELECT stack_id, frame_id, weight FROM stack_members "
                f"WHERE stack_id IN ({marks}) ORDER BY stack_id, frame_id",
                chunk,
            ).fetchall():
                members[int(sid)].append((int(fid), float(weight)))
        out = []
        for r in rows:
            v = dict(zip(_COLUMNS, r, strict=True))
            mem = members[int(v["stack_id"])]
            values: dict[str, Any] = {k: parse_utc(v[k]) for k in _TIMES}
            values |= {k: _nan(v[k]) for k in _NUMBERS}
            out.append(
                StackRecord(
                    target_name=target_name,
                    epoch_key=v["epoch_key"],
                    telescope=v["telescope"],
                    band=v["band"],
                    **values,
                    members=tuple(f for f, _ in mem),
                    weights=tuple(w for _, w in mem),
                    considered=tuple(json.loads(v["considered"])),
                    excluded=tuple((int(f), str(r)) for f, r in json.loads(v["excluded_json"])),
                    is_detection=bool(v["is_detection"]),
                    flags=int(v["flags"]),
                    n_cal_stars=int(v["n_cal_stars"] or 0),
                    cal_catalog=v["cal_catalog"] or "",
                    mag_system=v["mag_system"] or "none",
                    single_detections=int(v["single_detections"]),
                    alignment=v["alignment"] or "",
                    config_hash=v["config_hash"],
                    stack_id=int(v["stack_id"]),
                    version=int(v["version"]),
                    superseded=bool(v["superseded"]),
                )
            )
        return out

    def stack_inputs(self, target_id: int) -> dict[str, tuple[frozenset[int], str]]:
        """Return, per epoch key, the frames its newest stack considered and its config hash."""
        rows = self.db.execute(
            "SELECT epoch_key, considered, config_hash FROM stacks "
            "WHERE target_id = ? AND superseded = 0",
            [target_id],
        ).fetchall()
        return {key: (frozenset(json.loads(c)), h) for key, c, h in rows}

    def stack_candidates(self, target_id: int) -> list[StackCandidateRow]:
        """Return the processed frames that measured the target, with what stacking needs.

        One mapping per frame (its current measurement at the smallest aperture id), by
        mid-exposure time: frame_id, path, telescope, band, exptime_s, mid_time_utc,
        obs_id, zp_mag, zp_err_mag, n_cal_stars, mag_system (the row's calibration),
        zp_scatter_mag, cal_catalog, frame_flags, row_flags, lim_mag, lim_nsigma,
        is_detection.
        """
        rows = self.db.execute(
            """
            SELECT f.frame_id, f.path, f.telescope, f.band, f.exptime_s, f.mid_time_utc,
                   f.obs_id, m.zp_mag, m.zp_err_mag, m.n_cal_stars, m.mag_system,
                   f.zp_scatter_mag, f.cal_catalog, f.flags, m.flags, m.lim_mag,
                   m.lim_nsigma, m.is_detection
            FROM measurements AS m JOIN frames AS f ON f.frame_id = m.frame_id
            WHERE m.target_id = ? AND m.superseded = 0 AND f.state = 'processed'
              AND m.aperture_id = (
                  SELECT MIN(m2.aperture_id) FROM measurements AS m2
                  WHERE m2.frame_id = m.frame_id AND m2.target_id = m.target_id
                    AND m2.superseded = 0)
            ORDER BY f.mid_time_utc, f.frame_id
            """,
            [target_id],
        ).fetchall()
        keys = [
            "frame_id",
            "path",
            "telescope",
            "band",
            "exptime_s",
            "mid_time_utc",
            "obs_id",
            "zp_mag",
            "zp_err_mag",
            "n_cal_stars",
            "mag_system",
            "zp_scatter_mag",
            "cal_catalog",
            "frame_flags",
            "row_flags",
            "lim_mag",
            "lim_nsigma",
            "is_detection",
        ]
        out: list[StackCandidateRow] = []
        for r in rows:
            v = dict(zip(keys, r, strict=True))
            if v["path"] is None or v["mid_time_utc"] is None or v["exptime_s"] is None:
                continue
            v["path"] = Path(v["path"])
            v["mid_time_utc"] = parse_utc(v["mid_time_utc"])
            for k in ("zp_mag", "zp_err_mag", "zp_scatter_mag", "lim_mag", "lim_nsigma"):
                v[k] = _nan(v[k])
            out.append(v)
        return out
