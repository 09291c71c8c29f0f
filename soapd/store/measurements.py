"""Measurements: target rows of processed frames, and the lightcurve reads.

One row per frame x target x aperture x processing (``config_hash``); rows of an
older processing are kept with ``superseded = 1``. Processing a frame again
updates its rows instead of adding new ones. ``Store.save_result`` writes them in
the same transaction as the frame summary and the alerts they raised.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from soapd.models import Target
from soapd.store.base import Repository, mjd_of, utc_iso
from soapd.store.lctable import INT_FILL, LIGHTCURVE_COLUMNS, PACKED_FIELDS, lightcurve_table
from soapd.store.targets import parse_utc

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["Measurements", "mjd_of"]

_INT_FILL = INT_FILL

#: measurements column -> result-table column, for the float columns.
_FLOAT_SOURCES = {
    "x_px": "x_pix",
    "y_px": "y_pix",
    "ra_deg": "ra",
    "dec_deg": "dec",
    "flux_e": "flux",
    "flux_err_e": "flux_err",
    "flux_ujy": "flux_ujy",
    "flux_ujy_err": "flux_ujy_err",
    "snr": "snr",
    "ins_mag": "ins_mag",
    "ins_mag_err": "ins_mag_err",
    "mag": "calibrated_mag",
    "mag_err": "calibrated_mag_err",
    "lim_mag": "limiting_mag",
    "zp_mag": "zeropoint",
    "zp_err_mag": "zeropoint_err",
}
_NUMERIC_COLUMNS = (
    "frame_id",
    "target_id",
    "aperture_mpx",
    "mjd",
    "aperture_id",
    "aperture_px",
    "lim_nsigma",
    "is_detection",
    "is_forced",
    "flags",
    "n_cal_stars",
    *_FLOAT_SOURCES,
)


def _floats(table: Table, name: str, n: int) -> np.ndarray:
    if name not in table.colnames:
        return np.full(n, np.nan)
    col = table[name]
    data = getattr(col, "value", col)
    return np.ma.filled(np.ma.asarray(data, dtype=float), np.nan)


def _ints(table: Table, name: str, n: int, fill: int = 0) -> np.ndarray:
    if name not in table.colnames:
        return np.full(n, fill, dtype=np.int64)
    return np.ma.filled(np.ma.asarray(table[name]), fill).astype(np.int64)


def _strs(table: Table, name: str, n: int) -> list[str]:
    if name not in table.colnames:
        return [""] * n
    return [str(v) for v in np.ma.filled(np.ma.asarray(table[name]).astype(str), "")]


def _nan_none(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else v for v in values.tolist()]


class Measurements(Repository):
    """Queries on ``measurements`` (and the lightcurve reads that join frames)."""

    def upsert(
        self,
        frame_id: int,
        table: Table,
        ids: dict[str, int],
        *,
        config_hash: str,
        mjd: float,
        lim_nsigma: float | None,
    ) -> int:
        """Store the rows of ``table`` whose ``target_name`` is in ``ids``; return how many.

        Inside the caller's transaction. Rows of this frame from another
        ``config_hash`` of the same targets become superseded.
        """
        n = len(table)
        if n == 0 or "target_name" not in table.colnames:
            return 0
        names = _strs(table, "target_name", n)
        keep = np.array([nm in ids for nm in names], dtype=bool)
        if not keep.any():
            return 0
        idx = np.flatnonzero(keep)
        tids = [ids[names[i]] for i in idx]
        radius = _floats(table, "aperture_radius", n)[idx]
        ap_key = np.where(np.isfinite(radius), np.round(radius * 1000.0), _INT_FILL)
        nsig = lim_nsigma if lim_nsigma is not None else table.meta.get("lim_nsigma")
        k = len(idx)
        num: dict[str, np.ndarray] = {
            "frame_id": np.full(k, frame_id, dtype=np.int64),
            "target_id": np.array(tids, dtype=np.int64),
            "aperture_mpx": ap_key.astype(np.int64),
            "mjd": np.full(k, mjd),
            "aperture_id": _ints(table, "aperture_id", n)[idx],
            "aperture_px": radius,
            "lim_nsigma": np.full(k, np.nan if nsig is None else float(nsig)),
            "is_detection": _ints(table, "is_detection", n)[idx].astype(bool).astype(np.int64),
            "is_forced": _ints(table, "is_forced", n, fill=1)[idx].astype(bool).astype(np.int64),
            "flags": _ints(table, "flag", n)[idx],
            "n_cal_stars": _ints(table, "n_cal_stars", n)[idx],
        }
        for column, source in _FLOAT_SOURCES.items():
            num[column] = _floats(table, source, n)[idx]
        packed = np.column_stack([num[f] for f in PACKED_FIELDS]).astype("<f8")
        now = self.now()
        systems = _strs(table, "cal_mag_system", n)
        # Float NaN binds as SQL NULL (SQLite stores no NaN), so no conversion is needed.
        cols: list[list[Any]] = [num[c].tolist() for c in _NUMERIC_COLUMNS]
        cols.append([config_hash] * k)
        cols.append([systems[i] for i in idx])
        cols.append([row.tobytes() for row in packed])
        cols.append([now] * k)
        cols.append([now] * k)
        names_sql = [*_NUMERIC_COLUMNS, "config_hash", "mag_system", "packed", "created_at"]
        names_sql.append("updated_at")
        # A frame stored for the first time has no older processing to supersede.
        fresh = not self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM measurements WHERE frame_id = ?)", [frame_id]
        ).fetchone()[0]
        key = {"frame_id", "target_id", "aperture_mpx", "config_hash", "created_at"}
        updates = ", ".join(f"{c} = excluded.{c}" for c in names_sql if c not in key)
        self.db.conn.executemany(
            f"INSERT INTO measurements ({', '.join(names_sql)}) "
            f"VALUES ({', '.join('?' * len(names_sql))}) "
            "ON CONFLICT (frame_id, target_id, aperture_mpx, config_hash) DO UPDATE SET "
            f"superseded = 0, {updates}",
            list(zip(*cols, strict=True)),
        )
        if fresh:
            return len(idx)
        touched = sorted(set(tids))
        marks = ",".join("?" * len(touched))
        self.db.execute(
            # Unary + keeps the planner on the unique index (frame_id first: this frame's
            # rows only); on measurements_lc it would scan the targets' whole histories.
            "UPDATE measurements SET superseded = 1 WHERE frame_id = ? AND +config_hash != ? "
            f"AND +superseded = 0 AND +target_id IN ({marks})",
            [frame_id, config_hash, *touched],
        )
        return len(idx)

    def lightcurve(
        self,
        target: Target,
        *,
        band: str | None = None,
        since_utc: datetime | str | None = None,
        include_superseded: bool = False,
    ) -> Table:
        """Return the lightcurve of a stored ``target`` (see ``Store.lightcurve``)."""
        where = ["target_id = ?"]
        params: list[Any] = [target.target_id]
        if not include_superseded:
            where.append("superseded = 0")
        if band is not None:
            where.append("frame_id IN (SELECT frame_id FROM frames WHERE band = ?)")
            params.append(band)
        since = parse_utc(since_utc, what="since") if since_utc is not None else None
        if since is not None:
            where.append("mjd >= ?")
            params.append(mjd_of(since))
        cond = " AND ".join(where)
        f_cols = [c for c in LIGHTCURVE_COLUMNS if c[1] == "f"]
        order = "ORDER BY mjd, frame_id, aperture_id, config_hash"
        if include_superseded:
            rows = self.db.execute(
                f"SELECT packed, superseded FROM measurements WHERE {cond} {order}", params
            ).fetchall()
            blobs = [r[0] for r in rows]
            superseded = np.array([r[1] for r in rows], dtype=bool)
        else:
            blobs = [
                r[0]
                for r in self.db.execute(
                    f"SELECT packed FROM measurements WHERE {cond} {order}", params
                )
            ]
            superseded = np.zeros(len(blobs), dtype=bool)
        packed = np.frombuffer(b"".join(blobs), dtype="<f8").reshape(-1, len(PACKED_FIELDS))
        f_rows = self.db.execute(
            f"SELECT frame_id, {', '.join(c[2] for c in f_cols)} FROM frames WHERE frame_id IN "
            f"(SELECT DISTINCT frame_id FROM measurements WHERE {cond}) ORDER BY frame_id",
            params,
        ).fetchall()
        table = lightcurve_table(packed, superseded, f_rows, target.name)
        if not include_superseded:
            table.remove_column("superseded")
        table.meta.update(
            {
                "target_name": target.name,
                "ra_deg": target.ra_deg,
                "dec_deg": target.dec_deg,
                "trigger_time_utc": (
                    utc_iso(target.trigger_time_utc) if target.trigger_time_utc else ""
                ),
            }
        )
        return table

    def rule_history(self, target_name: str) -> dict[str, np.ndarray]:
        """Return what the alert rules read of a target's current lightcurve, by time.

        Arrays (lightcurve column names): frame_id, mjd, aperture_id, band,
        cal_mag_system, is_detection, snr, calibrated_mag, calibrated_mag_err,
        limiting_mag; a lighter read than :meth:`lightcurve`. Empty for an unknown target.
        """
        rows = self.db.execute(
            "SELECT m.packed, f.band, f.mag_system FROM measurements AS m "
            "JOIN frames AS f ON f.frame_id = m.frame_id JOIN targets AS t "
            "ON t.target_id = m.target_id WHERE t.name = ? AND m.superseded = 0 "
            "ORDER BY m.mjd, m.frame_id, m.aperture_id",
            [target_name],
        ).fetchall()
        packed = np.frombuffer(b"".join(r[0] for r in rows), dtype="<f8").reshape(
            -1, len(PACKED_FIELDS)
        )
        out: dict[str, np.ndarray] = {}
        for name, field, dtype in (
            ("frame_id", "frame_id", np.int64),
            ("mjd", "mjd", float),
            ("aperture_id", "aperture_id", np.int64),
            ("is_detection", "is_detection", bool),
            ("snr", "snr", float),
            ("calibrated_mag", "mag", float),
            ("calibrated_mag_err", "mag_err", float),
            ("limiting_mag", "lim_mag", float),
        ):
            values = packed[:, PACKED_FIELDS.index(field)]
            if dtype is float:
                out[name] = values.copy()
            elif dtype is bool:
                out[name] = np.nan_to_num(values) != 0
            else:
                out[name] = np.nan_to_num(values, nan=_INT_FILL).astype(np.int64)
        out["band"] = np.array([r[1] or "" for r in rows], dtype=str) if rows else np.zeros(0, str)
        out["cal_mag_system"] = (
            np.array([r[2] or "" for r in rows], dtype=str) if rows else np.zeros(0, str)
        )
        return out
