"""The lightcurve table: its columns, units, and how it is built from stored rows.

What ``Store.lightcurve`` returns and what export, plots and GCN drafts consume:
the column names of the result table (see ``soapd.columns``) with astropy
units in each column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

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

#: Lightcurve table columns: (name, source, SQL expression, dtype, unit, description).
#: Source "m": a measurements column (read from ``measurements.packed`` except
#: ``superseded``); "f": a frames column (fetched once per frame);
#: "t": the target name; "d": derived from another column.
LIGHTCURVE_COLUMNS: tuple[tuple[str, str, str, str, str | None, str], ...] = (
    ("target_name", "t", "", "str", None, "Target name"),
    ("mjd", "m", "mjd", "f8", "d", "MJD (UTC) at mid-exposure"),
    ("jd", "d", "mjd", "f8", "d", "JD (UTC) at mid-exposure"),
    ("mid_time_utc", "f", "mid_time_utc", "str", None, "Mid-exposure time, ISO-8601 UTC"),
    ("telescope", "f", "telescope", "str", None, "Telescope"),
    ("filter", "f", "band", "str", None, "Normalised filter (band)"),
    ("band", "d", "filter", "str", None, "Normalised filter (band)"),
    ("filter_raw", "f", "filter", "str", None, "Filter name as written in the header"),
    ("exptime", "f", "exptime_s", "f8", "s", "Exposure time"),
    ("flux", "m", "flux_e", "f8", "electron", "Aperture flux in electrons"),
    ("flux_err", "m", "flux_err_e", "f8", "electron", "1-sigma flux error in electrons"),
    ("flux_ujy", "m", "flux_ujy", "f8", "uJy", "Flux density (AB scale) when calibrated"),
    ("flux_ujy_err", "m", "flux_ujy_err", "f8", "uJy", "1-sigma flux density error"),
    ("snr", "m", "snr", "f8", None, "Signal-to-noise ratio flux/flux_err"),
    ("calibrated_mag", "m", "mag", "f8", "mag", "Magnitude (instrumental if uncalibrated)"),
    ("calibrated_mag_err", "m", "mag_err", "f8", "mag", "1-sigma magnitude error"),
    ("limiting_mag", "m", "lim_mag", "f8", "mag", "n-sigma limiting magnitude at the position"),
    ("limiting_nsigma", "m", "lim_nsigma", "f8", None, "Significance of limiting_mag in sigma"),
    ("is_detection", "m", "is_detection", "bool", None, "True: detection; False: upper limit"),
    ("cal_mag_system", "f", "mag_system", "str", None, "AB, Vega or none"),
    ("zeropoint", "f", "zp_mag", "f8", "mag", "Zero point (per second, electrons)"),
    ("zeropoint_err", "f", "zp_err_mag", "f8", "mag", "Statistical zero-point error"),
    ("zeropoint_scatter", "f", "zp_scatter_mag", "f8", "mag", "Scatter of calibration stars"),
    ("n_cal_stars", "f", "coalesce(n_calib, -1)", "i8", None, "Calibration stars used"),
    ("cal_catalog", "f", "cal_catalog", "str", None, "Calibration catalog"),
    ("aperture_id", "m", "aperture_id", "i8", None, "Aperture radius index"),
    ("aperture_radius", "m", "aperture_px", "f8", "pix", "Aperture radius in pixels"),
    ("flag", "m", "flags", "i8", None, "soapd.flags.Flag bits"),
    ("image_file", "f", "image_file", "str", None, "Frame file name"),
    ("is_forced", "m", "is_forced", "bool", None, "Measured at the requested position"),
    ("ra", "m", "ra_deg", "f8", "deg", "Right ascension (ICRS)"),
    ("dec", "m", "dec_deg", "f8", "deg", "Declination (ICRS)"),
    ("frame_id", "m", "frame_id", "i8", None, "Frame id in the soapd store"),
    ("obs_id", "f", "coalesce(obs_id, -1)", "i8", None, "Skynet observation id (-1: none)"),
    ("superseded", "m", "superseded", "bool", None, "Row of an older processing"),
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
