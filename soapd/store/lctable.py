"""Lightcurve tables: where each column is read, and how the table is built.

What ``Store.lightcurve`` returns and what export, plots and GCN drafts consume:
the columns :data:`soapd.columns.LIGHTCURVE_COLUMNS` with the unit and description
the registry gives them. Each column is the ``lightcurve`` view column its registry
entry names (``db``); the view definition (:mod:`soapd.store.views`) says where that
is stored, which decides how it is read:

* ``packed``: a value of the measurement row, decoded from ``measurements.packed``
  (one float64 blob per row: reading 100,000 rows column by column would create
  millions of Python objects); text as a code (:data:`PACKED_CODES`);
* ``row``: another measurement column (text, or ``superseded``), read per row;
* ``frame``: a ``frames`` column, fetched once per frame;
* ``target``: the target's name; ``jd`` is ``mjd + 2400000.5``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from soapd.columns import LIGHTCURVE_COLUMNS as LIGHTCURVE_NAMES
from soapd.columns import spec
from soapd.store.views import sql_of
from soapd.timeutil import jd_from_mjd

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = [
    "INT_FILL",
    "LIGHTCURVE",
    "PACKED_CODES",
    "PACKED_FIELDS",
    "LcColumn",
    "lightcurve_arrays",
    "lightcurve_table",
    "pack_codes",
    "reads",
]

#: Integer columns hold this where the value is unknown (e.g. obs_id of a local file).
INT_FILL = -1

#: Measurement columns copied, in this order, into ``measurements.packed`` (float64 LE).
#: Stored rows hold this layout (migration m006 re-packed every row with the same
#: literals, codes included, and m007 appended the instrumental values): changing it
#: needs a migration that re-packs every row.
PACKED_FIELDS: tuple[str, ...] = (
    "mjd",
    "flux_e",
    "flux_err_e",
    "flux_ujy",
    "flux_ujy_err",
    "snr",
    "mag",
    "mag_err",
    "lim_mag",
    "lim_nsigma",
    "is_detection",
    "aperture_id",
    "aperture_px",
    "flags",
    "is_forced",
    "ra_deg",
    "dec_deg",
    "frame_id",
    "zp_mag",
    "zp_err_mag",
    "n_cal_stars",
    "mag_system",
    "ins_mag",
    "ins_mag_err",
    "lim_ins_mag",
)

#: Text fields packed as codes: field -> its values, the code being the index. A row
#: whose value is not listed is packed as NaN and read from its column instead.
PACKED_CODES: dict[str, tuple[str, ...]] = {"mag_system": ("", "AB", "Vega", "none")}

#: Lightcurve dtype of each result-table dtype (integers are int64, -1 when unknown).
_LC_DTYPE = {"f8": "f8", "i4": "i8", "i8": "i8", "?": "bool", "U": "str"}


@dataclass(frozen=True, slots=True)
class LcColumn:
    """One lightcurve column: registry entry plus how it is read (see the module doc)."""

    name: str
    dtype: str
    unit: str | None
    description: str
    source: str
    field: str


def _column(name: str) -> LcColumn:
    entry = spec(name)
    dtype = _LC_DTYPE[entry.dtype]
    if entry.db is None:
        if name != "jd":
            raise AssertionError(f"lightcurve column {name} is not stored")
        return LcColumn(name, dtype, entry.unit, entry.description, "jd", "mjd")
    table, field = sql_of(entry.db).split(".", 1)
    if table == "t":
        source = "target"
    elif table == "f":
        source = "frame"
    else:
        source = "packed" if field in PACKED_FIELDS else "row"
    return LcColumn(name, dtype, entry.unit, entry.description, source, field)


#: Every lightcurve column, in order.
LIGHTCURVE: tuple[LcColumn, ...] = tuple(_column(n) for n in LIGHTCURVE_NAMES)


def reads(names: Iterable[str], packed: np.ndarray | None = None) -> tuple[list[str], list[str]]:
    """Return the measurement columns read per row and the frames columns read per frame.

    Given the ``packed`` rows, the per-row columns also include the packed text
    fields that hold a value without a code (NaN) in some row.
    """
    wanted = [c for c in LIGHTCURVE if c.name in set(names)]
    row = [c.field for c in wanted if c.source == "row"]
    if packed is not None:
        row += [
            c.field
            for c in wanted
            if c.field in PACKED_CODES and np.isnan(packed[:, PACKED_FIELDS.index(c.field)]).any()
        ]
    frame = [c.field for c in wanted if c.source == "frame"]
    return list(dict.fromkeys(row)), list(dict.fromkeys(frame))


def pack_codes(field: str, values: Sequence[str]) -> np.ndarray:
    """Return the codes of a text field's ``values`` (NaN for a value without a code)."""
    codes = {v: float(i) for i, v in enumerate(PACKED_CODES[field])}
    # map() in C; a value without a code maps to None, which float arrays hold as NaN
    return np.array(list(map(codes.get, values)), dtype=float)


def _array(values: Sequence[Any], dtype: str) -> np.ndarray:
    if dtype == "f8":
        return np.array(values, dtype=float)  # None -> NaN
    if dtype == "i8":
        return np.array([INT_FILL if v is None else v for v in values], dtype=np.int64)
    if dtype == "bool":
        return np.array(values, dtype=bool)
    data = np.array(["" if v is None else v for v in values], dtype=str)
    return data if data.dtype.itemsize else data.astype("U1")


def lightcurve_arrays(
    names: Iterable[str],
    packed: np.ndarray,
    rows: Mapping[str, Sequence[Any]],
    frames: Sequence[Sequence[Any]],
    target_name: str,
) -> dict[str, np.ndarray]:
    """Return the lightcurve columns ``names`` as arrays, one value per measurement row.

    ``packed`` is the (n, len(PACKED_FIELDS)) array of the rows; ``rows`` maps the
    per-row measurement columns of :func:`reads` (given ``packed``) to their n
    values; ``frames`` holds ``frame_id`` then the per-frame columns of
    :func:`reads`, sorted by frame_id.
    """
    wanted = set(names)
    n = packed.shape[0]
    _, frame_fields = reads(wanted)
    by_frame = list(zip(*frames, strict=True)) if frames else [()] * (len(frame_fields) + 1)
    frame_values = dict(zip(frame_fields, by_frame[1:], strict=True))
    frame_ids = np.array(by_frame[0], dtype=np.int64)
    frame_id = packed[:, PACKED_FIELDS.index("frame_id")].astype(np.int64)
    where = np.searchsorted(frame_ids, frame_id) if n else np.zeros(0, np.int64)
    out: dict[str, np.ndarray] = {}
    for c in LIGHTCURVE:
        if c.name not in wanted:
            continue
        if c.field in rows:
            out[c.name] = _array(rows[c.field], c.dtype)
        elif c.source in ("packed", "jd"):
            values = packed[:, PACKED_FIELDS.index(c.field)]
            if c.field in PACKED_CODES:
                out[c.name] = np.array(PACKED_CODES[c.field])[values.astype(np.int64)]
            elif c.dtype == "f8":
                out[c.name] = jd_from_mjd(values) if c.source == "jd" else values.copy()
            elif c.dtype == "i8":
                out[c.name] = np.nan_to_num(values, nan=INT_FILL).astype(np.int64)
            else:
                out[c.name] = np.nan_to_num(values) != 0
        elif c.source == "frame":
            out[c.name] = _array(frame_values[c.field], c.dtype)[where]
        else:
            out[c.name] = np.full(n, target_name, dtype=f"U{max(len(target_name), 1)}")
    return out


def lightcurve_table(arrays: Mapping[str, np.ndarray]) -> Table:
    """Return a Table of the lightcurve ``arrays``, in column order, with units and descriptions."""
    from astropy.table import Column, Table  # astropy only when a lightcurve is built

    return Table(
        [
            Column(arrays[c.name], name=c.name, unit=c.unit, description=c.description)
            for c in LIGHTCURVE
            if c.name in arrays
        ],
        copy=False,
    )
