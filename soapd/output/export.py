"""Write and read result and lightcurve tables as CSV, ECSV, Parquet or JSON.

The format is chosen from the file suffix (``.csv``, ``.ecsv``, ``.parquet``/
``.pq``, ``.json``) unless ``fmt`` is given. What survives a round trip:

* **ECSV**: everything (types, units, descriptions, table meta), via astropy.
* **Parquet**: types and masks natively; units, descriptions and table meta
  in the schema metadata (key ``soapd``), written with pyarrow directly (astropy's
  Parquet reader needs pandas, which soapd does not use).
* **JSON**: ``{"columns": [{"name", "unit", "dtype", "description"}], "meta": {...},
  "rows": [{column: value}, ...]}``; NaN and masked values are ``null``.
* **CSV**: values only (a plain header line, readable by any spreadsheet). On
  reading, units of the known soapd columns (:data:`~soapd.columns.COLUMN_UNITS`)
  are put back and ``True``/``False`` text columns become booleans.

In every format the detection/limit distinction (the ``is_detection`` boolean and
the ``UPPER_LIMIT`` bit of ``flag``) is kept.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import MaskedColumn, Table

from soapd.columns import COLUMN_UNITS
from soapd.errors import SoapdError

__all__ = ["FORMATS", "format_for", "read_table", "write_table"]

#: Suffix -> format name.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".ecsv": "ecsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
}

_META_KEY = b"soapd"


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """Return the table format of ``path`` (``fmt`` wins); raise SoapdError if unknown."""
    if fmt is not None:
        if fmt not in set(FORMATS.values()):
            raise SoapdError(f"unknown table format {fmt!r}; use csv, ecsv, parquet or json")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SoapdError(
            f"{path}: cannot tell the table format from the suffix {suffix!r}; "
            "use .csv, .ecsv, .parquet or .json"
        )
    return FORMATS[suffix]


def _unit(table: Table, name: str) -> str | None:
    unit = table[name].unit
    return None if unit is None else unit.to_string()


def _jsonable(value: Any) -> Any:
    """Return ``value`` as JSON data: numpy scalars unwrapped, NaN/inf -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _column_values(table: Table, name: str) -> list[Any]:
    col = table[name]
    mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), dtype=bool)
    values = np.asarray(col).tolist()
    return [
        None if m else _jsonable(v)
        for v, m in zip(values, np.broadcast_to(mask, len(col)), strict=True)
    ]


def _write_json(table: Table, path: Path) -> None:
    path.write_text(_json_text(table), encoding="utf-8")


def _json_text(table: Table) -> str:
    columns = [
        {
            "name": name,
            "unit": _unit(table, name),
            "dtype": table[name].dtype.str,
            "description": table[name].description,
        }
        for name in table.colnames
    ]
    data = {name: _column_values(table, name) for name in table.colnames}
    rows = [{name: data[name][i] for name in table.colnames} for i in range(len(table))]
    doc = {"columns": columns, "meta": _jsonable(dict(table.meta)), "rows": rows}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def _read_json(path: Path) -> Table:
    doc = json.loads(path.read_text(encoding="utf-8"))
    table = Table(meta=doc.get("meta") or {})
    rows = doc.get("rows", [])
    for spec in doc["columns"]:
        name = spec["name"]
        dtype = np.dtype(spec["dtype"])
        raw = [row.get(name) for row in rows]
        missing = np.array([v is None for v in raw], dtype=bool)
        if dtype.kind == "f":
            col: Any = np.array([np.nan if v is None else v for v in raw], dtype=dtype)
        elif missing.any():
            fill = "" if dtype.kind in "US" else 0
            col = MaskedColumn(
                np.array([fill if v is None else v for v in raw]).astype(dtype), mask=missing
            )
        else:
            col = np.array(raw, dtype=dtype) if raw else np.zeros(0, dtype=dtype)
        table[name] = col
        if spec.get("unit"):
            table[name].unit = spec["unit"]
        if spec.get("description"):
            table[name].description = spec["description"]
    return table


def _write_parquet(table: Table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for name in table.colnames:
        col = table[name]
        values = np.asarray(col)
        if values.dtype.kind in "US":
            values = values.astype(str).astype(object)
        mask = getattr(col, "mask", None)
        arrays.append(pa.array(values, mask=None if mask is None else np.asarray(mask, dtype=bool)))
    extra = {
        "units": {n: _unit(table, n) for n in table.colnames},
        "descriptions": {n: table[n].description for n in table.colnames},
        "meta": _jsonable(dict(table.meta)),
    }
    schema_meta = {_META_KEY: json.dumps(extra).encode()}
    pq.write_table(
        pa.table(arrays, names=table.colnames).replace_schema_metadata(schema_meta), path
    )


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    arrow = pq.read_table(path)
    extra = json.loads((arrow.schema.metadata or {}).get(_META_KEY, b"{}"))
    table = Table(meta=extra.get("meta") or {})
    for name in arrow.column_names:
        chunk = arrow.column(name)
        values = chunk.to_numpy(zero_copy_only=False)
        if chunk.null_count:
            mask = chunk.is_null().to_numpy(zero_copy_only=False)
            if values.dtype.kind == "O":
                values = np.array(["" if v is None else v for v in values])
            table[name] = MaskedColumn(values, mask=mask)
        else:
            table[name] = values.astype(str) if values.dtype.kind == "O" else values
        unit = extra.get("units", {}).get(name)
        if unit:
            table[name].unit = unit
        desc = extra.get("descriptions", {}).get(name)
        if desc:
            table[name].description = desc
    return table


def _read_csv(path: Path) -> Table:
    table = Table.read(path, format="ascii.csv")
    for name in table.colnames:
        col = table[name]
        if col.dtype.kind == "U":
            text = set(np.unique(np.asarray(col)).tolist())
            if text and text <= {"True", "False"}:
                table[name] = np.asarray(col) == "True"
        if COLUMN_UNITS.get(name):
            table[name].unit = COLUMN_UNITS[name]
    return table


def write_table(table: Table, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``table`` to ``path`` (format from ``fmt`` or the suffix); return the path.

    Creates missing parent folders and overwrites an existing file. Raise
    SoapdError for an unknown format or when the file cannot be written.
    """
    out = Path(path)
    kind = format_for(out, fmt)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == "ecsv":
            table.write(out, format="ascii.ecsv", overwrite=True)
        elif kind == "csv":
            table.write(out, format="ascii.csv", overwrite=True)
        elif kind == "parquet":
            _write_parquet(table, out)
        else:
            _write_json(table, out)
    except OSError as exc:
        raise SoapdError(f"{out}: cannot write the table: {exc.strerror or exc}") from None
    return out


def table_text(table: Table, fmt: str) -> str:
    """Return ``table`` as text in a text format (csv, ecsv or json), for standard output.

    Raise SoapdError for parquet (binary: it needs a file) or an unknown format.
    """
    if fmt == "json":
        return _json_text(table)
    if fmt in ("csv", "ecsv"):
        buf = io.StringIO()
        table.write(buf, format=f"ascii.{fmt}")
        return buf.getvalue()
    raise SoapdError(f"--format {fmt} cannot go to standard output; give --out FILE")


def read_table(path: str | Path, fmt: str | None = None) -> Table:
    """Read a table written by :func:`write_table`; raise SoapdError if it cannot be read.

    Text columns come back unmasked, with empty strings where the file had none.
    """
    src = Path(path)
    kind = format_for(src, fmt)
    try:
        if kind == "ecsv":
            table = Table.read(src, format="ascii.ecsv")
        elif kind == "csv":
            table = _read_csv(src)
        elif kind == "parquet":
            table = _read_parquet(src)
        else:
            table = _read_json(src)
    except (OSError, ValueError, KeyError) as exc:
        raise SoapdError(f"{src}: cannot read the {kind} table: {exc}") from None
    for name in table.colnames:
        col = table[name]
        if isinstance(col, MaskedColumn) and col.dtype.kind in "US":
            unit, desc = col.unit, col.description
            table[name] = np.asarray(col.filled(""), dtype=str)
            table[name].unit, table[name].description = unit, desc
    return table
