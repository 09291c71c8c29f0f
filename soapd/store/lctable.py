"""The lightcurve table: how it is built from stored rows.

What ``Store.lightcurve`` returns and what export, plots and GCN drafts consume:
the columns :data:`soapd.columns.LIGHTCURVE_COLUMNS`, with the dtype, unit and
description the registry gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from soapd.columns import LIGHTCURVE_COLUMNS as LIGHTCURVE_NAMES
from soapd.columns import spec

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["INT_FILL", "LIGHTCURVE_COLUMNS", "PACKED_FIELDS", "lightcurve_table"]

#: Measurement columns copied, in this order, into ``measurements.packed`` (float64 LE).
#: Stored rows hold this layout (migration m004 wrote it with the same literal):
#: changing it needs a migration that re-packs every row.
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
)

#: Integer columns hold this where the value is unknown (e.g. obs_id of a local file).
INT_FILL = -1

#: Where each lightcurve column is read (the rest of its definition is in
#: :data:`soapd.columns.COLUMNS`): source "m" a measurements column (read from
#: ``measurements.packed`` except ``superseded``), "f" a frames column (fetched once
#: per frame), "t" the target name, "d" derived from another column.
_SOURCES: dict[str, tuple[str, str]] = {
    "target_name": ("t", ""),
    "mjd": ("m", "mjd"),
    "jd": ("d", "mjd"),
    "mid_time_utc": ("f", "mid_time_utc"),
    "telescope": ("f", "telescope"),
    "filter": ("f", "band"),
    "band": ("d", "filter"),
    "filter_raw": ("f", "filter"),
    "exptime": ("f", "exptime_s"),
    "flux": ("m", "flux_e"),
    "flux_err": ("m", "flux_err_e"),
    "flux_ujy": ("m", "flux_ujy"),
    "flux_ujy_err": ("m", "flux_ujy_err"),
    "snr": ("m", "snr"),
    "calibrated_mag": ("m", "mag"),
    "calibrated_mag_err": ("m", "mag_err"),
    "limiting_mag": ("m", "lim_mag"),
    "limiting_nsigma": ("m", "lim_nsigma"),
    "is_detection": ("m", "is_detection"),
    "cal_mag_system": ("f", "mag_system"),
    "zeropoint": ("f", "zp_mag"),
    "zeropoint_err": ("f", "zp_err_mag"),
    "zeropoint_scatter": ("f", "zp_scatter_mag"),
    "n_cal_stars": ("f", "coalesce(n_calib, -1)"),
    "cal_catalog": ("f", "cal_catalog"),
    "aperture_id": ("m", "aperture_id"),
    "aperture_radius": ("m", "aperture_px"),
    "flag": ("m", "flags"),
    "image_file": ("f", "image_file"),
    "is_forced": ("m", "is_forced"),
    "ra": ("m", "ra_deg"),
    "dec": ("m", "dec_deg"),
    "frame_id": ("m", "frame_id"),
    "obs_id": ("f", "coalesce(obs_id, -1)"),
    "superseded": ("m", "superseded"),
}

_LC_DTYPE = {"f8": "f8", "i4": "i8", "i8": "i8", "?": "bool", "U": "str"}

#: Lightcurve table columns: (name, source, SQL expression, dtype, unit, description),
#: from :data:`soapd.columns.LIGHTCURVE_COLUMNS` and the registry.
LIGHTCURVE_COLUMNS: tuple[tuple[str, str, str, str, str | None, str], ...] = tuple(
    (
        name,
        *_SOURCES[name],
        _LC_DTYPE[spec(name).dtype],
        spec(name).unit,
        spec(name).description,
    )
    for name in LIGHTCURVE_NAMES
)


def _array(values: Sequence[Any], dtype: str) -> np.ndarray:
    if dtype == "f8":
        return np.array(values, dtype=float)  # None -> NaN
    if dtype == "i8":
        return np.array(values, dtype=np.int64)
    if dtype == "bool":
        return np.array(values, dtype=bool)
    data = np.array(["" if v is None else v for v in values], dtype=str)
    return data if data.dtype.itemsize else data.astype("U1")


def lightcurve_table(
    packed: np.ndarray,
    superseded: np.ndarray,
    f_rows: Sequence[Sequence[Any]],
    target_name: str,
) -> Table:
    """Build the lightcurve Table (units in the columns) from measurement and frame data.

    ``packed`` is the (n, len(PACKED_FIELDS)) array of the measurement rows;
    ``f_rows`` hold ``frame_id`` then the "f" columns, sorted by frame_id.
    """
    f_cols = [c for c in LIGHTCURVE_COLUMNS if c[1] == "f"]
    n = packed.shape[0]
    data: dict[str, np.ndarray] = {"superseded": superseded}
    for name, source, sql, dtype, _, _ in LIGHTCURVE_COLUMNS:
        if source != "m" or name == "superseded":
            continue
        values = packed[:, PACKED_FIELDS.index(sql)]
        if dtype == "f8":
            data[name] = values.copy()
        elif dtype == "i8":
            data[name] = np.nan_to_num(values, nan=INT_FILL).astype(np.int64)
        else:
            data[name] = np.nan_to_num(values) != 0
    f_data = list(zip(*f_rows, strict=True)) if f_rows else [()] * (len(f_cols) + 1)
    frame_ids = np.array(f_data[0], dtype=np.int64)
    where = np.searchsorted(frame_ids, data["frame_id"]) if n else np.zeros(0, np.int64)
    for c, v in zip(f_cols, f_data[1:], strict=True):
        data[c[0]] = _array(v, c[3])[where] if n else _array((), c[3])
    data["jd"] = data["mjd"] + 2400000.5
    data["band"] = data["filter"].copy()
    data["target_name"] = np.full(n, target_name, dtype=f"U{max(len(target_name), 1)}")
    from astropy.table import Column, Table  # astropy only when a lightcurve is built

    return Table(
        [
            Column(data[name], name=name, unit=unit, description=desc)
            for name, _, _, _, unit, desc in LIGHTCURVE_COLUMNS
        ],
        copy=False,
    )
