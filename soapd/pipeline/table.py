"""Build the result table from whole columns (never row by row; skynetsoap bug B20)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.table import Column, Table

from soapd.columns import COLUMN_DESCRIPTIONS, COLUMN_UNITS, RESULT_COLUMNS

__all__ = ["COLUMN_DTYPES", "build_table", "empty_table"]

#: numpy dtype of each result column.
COLUMN_DTYPES: dict[str, str] = {
    **dict.fromkeys(RESULT_COLUMNS, "f8"),
    "image_file": "U",
    "telescope": "U",
    "filter": "U",
    "cal_mag_system": "U",
    "target_name": "U",
    "band": "U",
    "mid_time_utc": "U",
    "aperture_id": "i4",
    "n_cal_stars": "i4",
    "flag": "i8",
    "is_forced": "?",
    "is_detection": "?",
}


def build_table(columns: Mapping[str, Any], n_rows: int, meta: Mapping[str, Any]) -> Table:
    """Return a Table with every RESULT_COLUMNS column, in order, with units and descriptions.

    ``columns`` maps names to arrays of length ``n_rows`` or to scalars (broadcast);
    missing numeric columns are NaN, missing text columns empty. Unknown names
    raise KeyError.
    """
    unknown = set(columns) - set(RESULT_COLUMNS)
    if unknown:
        raise KeyError(f"not result columns: {sorted(unknown)}")
    cols = []
    for name in RESULT_COLUMNS:
        kind = COLUMN_DTYPES[name]
        value = columns.get(name, np.nan if kind == "f8" else ("" if kind == "U" else 0))
        array = np.asarray(value)
        if array.ndim == 0:
            array = np.full(n_rows, array.item() if kind != "U" else str(value))
        array = array.astype(str) if kind == "U" else array.astype(kind)
        cols.append(
            Column(
                array,
                name=name,
                unit=COLUMN_UNITS.get(name),
                description=COLUMN_DESCRIPTIONS.get(name),
            )
        )
    return Table(cols, meta=dict(meta))


def empty_table() -> Table:
    """Return a result table with no rows (the right columns and units)."""
    return build_table({}, 0, {})
