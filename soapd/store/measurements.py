"""Measurements: target rows of processed frames, and the lightcurve reads.

One row per frame x target x aperture x processing (``config_hash``); rows of an
older processing are kept with ``superseded = 1``. Not-covered rows (flag
NOT_COVERED) are stored for the record but read only on request: lightcurves and
the alert rules' history see covered rows, as the ``lightcurve`` view does. Processing a frame again
updates its rows instead of adding new ones. ``Store.save_result`` writes them in
the same transaction as the frame summary and the alerts they raised.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from soapd.columns import COLUMNS, column_or, filled
from soapd.models import Target
from soapd.store.base import Repository, utc_iso
from soapd.store.connection import in_chunks
from soapd.store.lctable import (
    INT_FILL,
    LIGHTCURVE,
    PACKED_FIELDS,
    lightcurve_arrays,
    lightcurve_table,
    pack_codes,
    reads,
)
from soapd.store.targets import parse_utc
from soapd.store.views import COVERED_WHERE, LIGHTCURVE_ORDER, sql_of
from soapd.timeutil import mjd_of

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["RULE_HISTORY_COLUMNS", "Measurements"]

_INT_FILL = INT_FILL

#: measurements column -> result-table column, for the float columns stored per row
#: (from the registry; ``mjd`` is the frame's, written by the caller).
_FLOAT_SOURCES = {
    sql_of(c.db).removeprefix("m."): c.name
    for c in COLUMNS
    if c.result and c.dtype == "f8" and c.db and sql_of(c.db).startswith("m.") and c.name != "mjd"
}
_NUMERIC_COLUMNS = (
    "frame_id",
    "target_id",
    "aperture_mpx",
    "mjd",
    "aperture_id",
    "lim_nsigma",
    "is_detection",
    "is_forced",
    "flags",
    "n_cal_stars",
    *_FLOAT_SOURCES,
)

#: The lightcurve columns :meth:`Measurements.rule_history` returns.
RULE_HISTORY_COLUMNS = (
    "frame_id",
    "mjd",
    "aperture_id",
    "telescope",
    "band",
    "cal_mag_system",
    "is_detection",
    "snr",
    "calibrated_mag",
    "calibrated_mag_err",
    "limiting_mag",
    "ins_mag",
    "ins_mag_err",
    "limiting_ins_mag",
    "flag",
)


def _floats(table: Table, name: str, n: int) -> np.ndarray:
    return filled(table, name) if name in table.colnames else np.full(n, np.nan)


def _ints(table: Table, name: str, fill: int = 0) -> np.ndarray:
    return column_or(table, name, fill).astype(np.int64)


def _strs(table: Table, name: str, n: int) -> list[str]:
    if name not in table.colnames:
        return [""] * n
    values = column_or(table, name, "")
    if values.dtype.kind == "U":  # already text: one C-level conversion, not n str() calls
        return list(values.tolist())
    return [str(v) for v in values]


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
        # In target order: the per-target index then takes the rows in its own order, each
        # leaf page once (6,000 rows of targets whose ids are not in name order: best of 10
        # 57 ms against 63-64 ms in name order; a shuffled order took ~1.5x as long).
        ids_of_rows = np.array([ids[names[i]] for i in idx], dtype=np.int64)
        order = np.argsort(ids_of_rows, kind="stable")
        idx = idx[order]
        tids = ids_of_rows[order]
        radius = _floats(table, "aperture_radius", n)[idx]
        ap_key = np.where(np.isfinite(radius), np.round(radius * 1000.0), _INT_FILL)
        nsig = lim_nsigma if lim_nsigma is not None else table.meta.get("lim_nsigma")
        k = len(idx)
        num: dict[str, np.ndarray] = {
            "frame_id": np.full(k, frame_id, dtype=np.int64),
            "target_id": tids,
            "aperture_mpx": ap_key.astype(np.int64),
            "mjd": np.full(k, mjd),
            "aperture_id": _ints(table, "aperture_id")[idx],
            "lim_nsigma": np.full(k, np.nan if nsig is None else float(nsig)),
            "is_detection": _ints(table, "is_detection")[idx].astype(bool).astype(np.int64),
            "is_forced": _ints(table, "is_forced", fill=1)[idx].astype(bool).astype(np.int64),
            "flags": _ints(table, "flag")[idx],
            "n_cal_stars": _ints(table, "n_cal_stars")[idx],
        }
        for column, source in _FLOAT_SOURCES.items():
            num[column] = _floats(table, source, n)[idx]
        all_systems = _strs(table, "cal_mag_system", n)
        systems = [all_systems[i] for i in idx]
        num["mag_system"] = pack_codes("mag_system", systems)
        packed = np.column_stack([num[f] for f in PACKED_FIELDS]).astype("<f8")
        now = self.now()
        # Float NaN binds as SQL NULL (SQLite stores no NaN), so no conversion is needed.
        cols: list[list[Any]] = [num[c].tolist() for c in _NUMERIC_COLUMNS]
        cols.append([config_hash] * k)
        cols.append(systems)
        blob, width = np.ascontiguousarray(packed).tobytes(), packed.shape[1] * 8
        cols.append([blob[i * width : (i + 1) * width] for i in range(k)])
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
            zip(*cols, strict=True),
        )
        if fresh:
            return len(idx)
        for marks, touched in in_chunks(_distinct(tids).tolist()):
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
        include_not_covered: bool = False,
    ) -> Table:
        """Return the lightcurve of a stored ``target`` (see ``Store.lightcurve``).

        The arrays of :func:`read_lightcurve` (every column) as a Table, with units,
        descriptions and the target in ``meta``.
        """
        arrays = read_lightcurve(
            self.db.conn,
            target,
            band=band,
            since_utc=since_utc,
            include_superseded=include_superseded,
            include_not_covered=include_not_covered,
        )
        table = lightcurve_table(arrays)
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

        The arrays of :data:`RULE_HISTORY_COLUMNS` (lightcurve column names), read
        like :meth:`lightcurve` (covered rows only) but without building a Table.
        Empty for an unknown target.
        """
        row = self.db.execute(
            "SELECT target_id FROM targets WHERE name = ?", [target_name]
        ).fetchone()
        tid = None if row is None else int(row[0])
        target = Target(name=target_name, ra_deg=0.0, dec_deg=0.0, target_id=tid)
        return self._read(target, RULE_HISTORY_COLUMNS)

    def _read(
        self,
        target: Target,
        names: Sequence[str],
        *,
        band: str | None = None,
        since_mjd: float | None = None,
        include_superseded: bool = False,
        include_not_covered: bool = False,
    ) -> dict[str, np.ndarray]:
        """Read the lightcurve columns ``names`` of ``target`` (see :func:`_read_columns`)."""
        return _read_columns(
            self.db.conn,
            target,
            names,
            band=band,
            since_mjd=since_mjd,
            include_superseded=include_superseded,
            include_not_covered=include_not_covered,
        )


def read_lightcurve(
    conn: sqlite3.Connection,
    target: Target,
    names: Iterable[str] | None = None,
    *,
    band: str | None = None,
    since_utc: datetime | str | None = None,
    include_superseded: bool = False,
    include_not_covered: bool = False,
) -> dict[str, np.ndarray]:
    """Return lightcurve columns of a stored ``target`` as plain arrays, in column order.

    The one lightcurve read: ``Store.lightcurve`` wraps it in a Table, and readers
    that need no astropy (``soapd lightcurve`` printing text, on a plain read-only
    connection: :class:`soapd.store.readonly.LightcurveReader`) use the arrays.
    ``names``: only these lightcurve columns (others are ignored; default every
    column, without ``superseded`` unless ``include_superseded``).
    """
    every = [c.name for c in LIGHTCURVE]
    if not include_superseded:
        every.remove("superseded")
    wanted = every if names is None else [c for c in every if c in set(names)]
    since = parse_utc(since_utc, what="since") if since_utc is not None else None
    return _read_columns(
        conn,
        target,
        wanted,
        band=band,
        since_mjd=None if since is None else mjd_of(since),
        include_superseded=include_superseded,
        include_not_covered=include_not_covered,
    )


def _distinct(values: np.ndarray) -> np.ndarray:
    """Return the distinct ``values``, sorted (``np.unique`` without its numpy.ma import)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


#: Columns of ``packed`` holding the lightcurve order's numeric keys (config_hash,
#: the last key, only separates superseded rows).
_ORDER_KEYS = [PACKED_FIELDS.index(f) for f in ("mjd", "frame_id", "aperture_id")]


def _strictly_ordered(packed: np.ndarray) -> bool:
    """Return whether the rows of ``packed`` strictly increase in (mjd, frame_id, aperture_id).

    False for any tie or NaN key, where the order would need the SQL sort.
    """
    if len(packed) < 2:
        return True
    a, b = packed[:-1][:, _ORDER_KEYS], packed[1:][:, _ORDER_KEYS]
    later = b[:, 2] > a[:, 2]
    for k in (1, 0):
        later = (b[:, k] > a[:, k]) | ((b[:, k] == a[:, k]) & later)
    return bool(later.all())


def _packed_in_one_value(conn: sqlite3.Connection, query: str, params: list[Any]) -> Any:
    """Return the ``packed`` rows of ``query`` fetched as one concatenated value, or None.

    100,000 rows fetched one by one cost ~100 ms of Python objects; SQLite's
    ``group_concat`` joins the blobs in C (one value, about half the time). Its order
    is SQLite's choice (3.40 has no ORDER BY inside an aggregate): the result is used
    only when every row has a packed value and the rows are strictly in the query's
    order, checked on the keys; otherwise None, and the caller reads row by row.
    """
    blob, n = conn.execute(
        f"SELECT CAST(group_concat(lc.packed, '') AS BLOB), count(*) "
        f"FROM (SELECT m.packed {query}) AS lc",
        params,
    ).fetchone()
    width = len(PACKED_FIELDS)
    if len(blob or b"") != n * width * 8:
        return None
    packed = np.frombuffer(blob or b"", dtype="<f8").reshape(-1, width)
    return packed if _strictly_ordered(packed) else None


def _read_columns(
    conn: sqlite3.Connection,
    target: Target,
    names: Sequence[str],
    *,
    band: str | None = None,
    since_mjd: float | None = None,
    include_superseded: bool = False,
    include_not_covered: bool = False,
) -> dict[str, np.ndarray]:
    """Read the lightcurve columns ``names`` of ``target``, ordered as the view sorts them.

    Every column, filter and sort key is the ``lightcurve`` view's (see
    :mod:`soapd.store.views`); a target without id has no rows. Not-covered rows
    only with ``include_not_covered``.
    """
    where = [f"{sql_of('target_id')} = ?"]
    params: list[Any] = [target.target_id]
    if not include_not_covered:
        where.append(COVERED_WHERE)
    if not include_superseded:
        where.append(f"{sql_of('superseded')} = 0")
    if band is not None:
        where.append(
            f"m.frame_id IN (SELECT f.frame_id FROM frames AS f WHERE {sql_of('band')} = ?)"
        )
        params.append(band)
    if since_mjd is not None:
        where.append(f"{sql_of('mjd')} >= ?")
        params.append(since_mjd)
    cond = " AND ".join(where)
    order = ", ".join(sql_of(c) for c in LIGHTCURVE_ORDER)
    query = f"FROM measurements AS m WHERE {cond} ORDER BY {order}"
    row_fields, frame_fields = reads(names)
    packed = None if row_fields or include_superseded else _packed_in_one_value(conn, query, params)
    per_row: dict[str, list[Any]] = {}
    if packed is None:
        rows = conn.execute(
            f"SELECT m.packed{''.join(f', m.{f}' for f in row_fields)} {query}", params
        ).fetchall()
        packed = np.frombuffer(b"".join([r[0] for r in rows]), dtype="<f8").reshape(
            -1, len(PACKED_FIELDS)
        )
        per_row = {f: [r[i] for r in rows] for i, f in enumerate(row_fields, start=1)}
    # text without a packed code (a value outside PACKED_CODES): read its column
    uncoded = [f for f in reads(names, packed)[0] if f not in per_row]
    if uncoded:
        rows = conn.execute(
            f"SELECT {', '.join(f'm.{f}' for f in uncoded)} {query}", params
        ).fetchall()
        per_row |= {f: [r[i] for r in rows] for i, f in enumerate(uncoded)}
    frame_ids = _distinct(packed[:, PACKED_FIELDS.index("frame_id")]).astype(np.int64)
    frames: list[Any] = []
    select = "".join(f", f.{f}" for f in frame_fields)
    for marks, chunk in in_chunks(frame_ids.tolist()):
        frames += conn.execute(
            f"SELECT f.frame_id{select} FROM frames AS f "
            f"WHERE f.frame_id IN ({marks}) ORDER BY f.frame_id",
            chunk,
        ).fetchall()
    return lightcurve_arrays(names, packed, per_row, frames, target.name)
