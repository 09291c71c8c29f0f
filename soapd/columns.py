"""The one column registry: every column of soapd's result and lightcurve tables.

Each :class:`ColumnSpec` gives a column's name, numpy dtype, unit, one-line
description, the column of the ``lightcurve`` SQL view that stores it (None when
it is not stored), and its format in human-readable text. Everything else is
derived from :data:`COLUMNS`: :data:`RESULT_COLUMNS` (what ``process_frame``
returns), :data:`COLUMN_UNITS`, :data:`COLUMN_DESCRIPTIONS`, :data:`COLUMN_DTYPES`,
and the lightcurve tables of ``Store.lightcurve`` (:data:`LIGHTCURVE_COLUMNS`
orders them).

Conventions: pixels 0-based; ``flux``/``flux_err`` in electrons;
``ins_mag = -2.5 log10(flux / exptime)`` (electrons per second, aperture-corrected
to total flux when aperture correction is on); ``calibrated_mag = ins_mag +
zeropoint`` for detections. A frame without a zero point (``zeropoint`` NaN) has
NaN calibrated magnitudes, limits and ``flux_ujy``: its instrumental magnitude is
in ``ins_mag`` and its instrumental limit in ``limiting_ins_mag`` (the two columns
that are never calibrated, so never to be compared with calibrated ones).
``mjd``/``jd``/``mid_time_utc`` are mid-exposure UTC.

Coverage: a forced row is a detection, an upper limit, or *not covered*
(``coverage`` other than "covered", flag NOT_COVERED): no flux, no magnitude, no
limit. Stored not-covered rows never appear in lightcurves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from soapd.flags import UNMEASURED

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = [
    "COLUMNS",
    "COLUMN_DESCRIPTIONS",
    "COLUMN_DTYPES",
    "COLUMN_UNITS",
    "LIGHTCURVE_COLUMNS",
    "RESULT_COLUMNS",
    "ColumnSpec",
    "column_or",
    "covered_mask",
    "filled",
    "spec",
    "text_cell",
]


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One table column.

    Attributes
    ----------
    name
        Column name (skynetsoap's names for the columns it had).
    dtype
        numpy dtype in the result table: ``f8``, ``i4``, ``i8``, ``?`` or ``U``.
        Lightcurve tables hold integers as ``i8`` (-1 where unknown).
    unit
        astropy unit string; None for dimensionless or text columns.
    description
        One line, written into ECSV/Parquet/JSON headers.
    db
        The column of the ``lightcurve`` SQL view (stored measurement or frame
        data) holding the value, or None when it is not stored.
    text
        Format spec for human-readable text (``format(value, text)``); ``""`` is ``str``.
    result
        True when the column is part of the result table (:data:`RESULT_COLUMNS`).
    """

    name: str
    dtype: str
    unit: str | None
    description: str
    db: str | None
    text: str = ""
    result: bool = True


_MAG = "mag"

#: Every column, the result table's first and in its order (skynetsoap's columns,
#: then soapd's additions), then the columns only lightcurve tables have.
COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("image_file", "U", None, "FITS file name", "image_file"),
    ColumnSpec("telescope", "U", None, "TELESCOP of the frame", "telescope"),
    ColumnSpec("filter", "U", None, "normalised band of the frame's filter", "band"),
    ColumnSpec("exptime", "f8", "s", "exposure time", "exptime_s", "g"),
    ColumnSpec("mjd", "f8", "d", "mid-exposure MJD (UTC)", "mjd", ".5f"),
    ColumnSpec("jd", "f8", "d", "mid-exposure JD (UTC): mjd + 2400000.5", None, ".5f"),
    ColumnSpec("x_pix", "f8", "pix", "0-based x of the aperture centre", "x_px", ".2f"),
    ColumnSpec("y_pix", "f8", "pix", "0-based y of the aperture centre", "y_px", ".2f"),
    ColumnSpec(
        "ra",
        "f8",
        "deg",
        "right ascension (ICRS); the requested position for forced rows",
        "ra_deg",
        ".6f",
    ),
    ColumnSpec(
        "dec",
        "f8",
        "deg",
        "declination (ICRS); the requested position for forced rows",
        "dec_deg",
        ".6f",
    ),
    ColumnSpec(
        "flux",
        "f8",
        "electron",
        "background-subtracted aperture sum (not aperture-corrected)",
        "flux_e",
        ".1f",
    ),
    ColumnSpec(
        "flux_err",
        "f8",
        "electron",
        "1-sigma error of flux (CCD model: Poisson, sky, read noise, sky estimate)",
        "flux_err_e",
        ".1f",
    ),
    ColumnSpec("snr", "f8", None, "flux / flux_err", "snr", ".1f"),
    ColumnSpec(
        "ins_mag",
        "f8",
        _MAG,
        "-2.5 log10(flux / exptime) + ap_corr_mag (total flux, e-/s); NaN when flux <= 0",
        "ins_mag",
        ".3f",
    ),
    ColumnSpec("ins_mag_err", "f8", _MAG, "1.0857 flux_err / flux", "ins_mag_err", ".3f"),
    ColumnSpec(
        "calibrated_mag",
        "f8",
        _MAG,
        "ins_mag + zeropoint for detections; NaN for upper limits and when the frame "
        "has no zero point (the instrumental magnitude is in ins_mag)",
        "mag",
        ".3f",
    ),
    ColumnSpec(
        "calibrated_mag_err",
        "f8",
        _MAG,
        "ins_mag_err and zeropoint_err in quadrature; NaN where calibrated_mag is",
        "mag_err",
        ".3f",
    ),
    ColumnSpec(
        "cal_mag_system", "U", None, "AB, Vega, or none when there is no zero point", "mag_system"
    ),
    ColumnSpec(
        "zeropoint",
        "f8",
        _MAG,
        "zero point per second of exposure in electrons; NaN when the frame has none",
        "zp_mag",
        ".3f",
    ),
    ColumnSpec("zeropoint_err", "f8", _MAG, "error of the zero point", "zp_err_mag", ".3f"),
    ColumnSpec(
        "aperture_id", "i4", None, "index of the radius in the frame's list of radii", "aperture_id"
    ),
    ColumnSpec("aperture_radius", "f8", "pix", "aperture radius", "aperture_px", ".2f"),
    ColumnSpec(
        "fwhm",
        "f8",
        "pix",
        "frame FWHM (Gaussian core) of stellar-locus stars, or photometry.fallback_fwhm_px",
        None,
        ".2f",
    ),
    ColumnSpec(
        "n_cal_stars", "i4", None, "stars used in the zero-point fit (-1: unknown)", "n_cal_stars"
    ),
    ColumnSpec(
        "limiting_mag_analytic",
        "f8",
        _MAG,
        "n-sigma limit from the local noise; NaN without a zero point",
        None,
        ".2f",
    ),
    ColumnSpec(
        "limiting_mag_robust",
        "f8",
        _MAG,
        "n-sigma limit from blank-sky apertures; NaN without a zero point",
        None,
        ".2f",
    ),
    ColumnSpec(
        "limiting_mag",
        "f8",
        _MAG,
        "n-sigma limit of the configured method (limits.method); NaN without a zero point",
        "lim_mag",
        ".2f",
    ),
    ColumnSpec("is_forced", "?", None, "row measured at a requested position", "is_forced"),
    ColumnSpec("flag", "i8", None, "soapd.flags.Flag bits", "flags", "d"),
    ColumnSpec("target_name", "U", None, "target name of forced rows", "target_name"),
    ColumnSpec(
        "is_detection",
        "?",
        None,
        "S/N >= photometry.forced_snr_threshold; else an upper limit",
        "is_detection",
    ),
    ColumnSpec("band", "U", None, "normalised band (same as filter)", "band"),
    ColumnSpec("mid_time_utc", "U", None, "mid-exposure time, ISO 8601 UTC", "mid_time_utc"),
    ColumnSpec(
        "flux_ujy",
        "f8",
        "uJy",
        "total flux density on the AB scale; NaN when the frame has no zero point",
        "flux_ujy",
        ".4g",
    ),
    ColumnSpec(
        "flux_ujy_err",
        "f8",
        "uJy",
        "error of flux_ujy (zero-point error included)",
        "flux_ujy_err",
        ".4g",
    ),
    ColumnSpec("ap_corr_mag", "f8", _MAG, "aperture correction to total flux (<= 0)", None, ".3f"),
    ColumnSpec(
        "limiting_ins_mag",
        "f8",
        _MAG,
        "INSTRUMENTAL n-sigma limit (limits.method) on the ins_mag scale (-2.5 log10 e-/s), "
        "defined with or without a zero point; NaN when the noise is not measurable",
        "lim_ins_mag",
        ".2f",
    ),
    ColumnSpec(
        "coverage",
        "U",
        None,
        "covered (a detection or an upper limit), or why the position was not measured: "
        "no_wcs, off_frame, edge, masked (then no flux, no magnitude, no limit)",
        None,
    ),
    # --- lightcurve tables only
    ColumnSpec(
        "filter_raw",
        "U",
        None,
        "filter name as written in the header (or given by the archive)",
        "filter_raw",
        result=False,
    ),
    ColumnSpec(
        "limiting_nsigma",
        "f8",
        None,
        "significance of limiting_mag in sigma",
        "lim_nsigma",
        "g",
        result=False,
    ),
    ColumnSpec(
        "zeropoint_scatter",
        "f8",
        _MAG,
        "scatter of the calibration stars about the zero point",
        "zp_scatter_mag",
        ".3f",
        result=False,
    ),
    ColumnSpec("cal_catalog", "U", None, "calibration catalog", "cal_catalog", result=False),
    ColumnSpec(
        "frame_id", "i8", None, "frame id in the soapd store", "frame_id", "d", result=False
    ),
    ColumnSpec(
        "obs_id", "i8", None, "Skynet observation id (-1: none)", "obs_id", "d", result=False
    ),
    ColumnSpec(
        "superseded",
        "?",
        None,
        "row of an older processing (another config_hash)",
        "superseded",
        result=False,
    ),
)

_BY_NAME = {c.name: c for c in COLUMNS}

#: Columns of the result table, in order (skynetsoap's first, soapd's additions after).
RESULT_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.result)

#: Columns of ``Store.lightcurve`` tables, in order (``superseded`` only with
#: ``include_superseded``). Every name is in :data:`COLUMNS` and stored (``db``), but ``jd``.
LIGHTCURVE_COLUMNS: tuple[str, ...] = (
    "target_name",
    "mjd",
    "jd",
    "mid_time_utc",
    "telescope",
    "filter",
    "band",
    "filter_raw",
    "exptime",
    "flux",
    "flux_err",
    "flux_ujy",
    "flux_ujy_err",
    "snr",
    "calibrated_mag",
    "calibrated_mag_err",
    "limiting_mag",
    "limiting_nsigma",
    "ins_mag",
    "ins_mag_err",
    "limiting_ins_mag",
    "is_detection",
    "cal_mag_system",
    "zeropoint",
    "zeropoint_err",
    "zeropoint_scatter",
    "n_cal_stars",
    "cal_catalog",
    "aperture_id",
    "aperture_radius",
    "flag",
    "image_file",
    "is_forced",
    "ra",
    "dec",
    "frame_id",
    "obs_id",
    "superseded",
)

#: Unit of each column that has one (astropy unit strings).
COLUMN_UNITS: dict[str, str | None] = {c.name: c.unit for c in COLUMNS if c.unit is not None}

#: One-line meaning of each column (written into ECSV/Parquet/JSON headers).
COLUMN_DESCRIPTIONS: dict[str, str] = {c.name: c.description for c in COLUMNS}

#: numpy dtype of each result-table column.
COLUMN_DTYPES: dict[str, str] = {c.name: c.dtype for c in COLUMNS if c.result}


def spec(name: str) -> ColumnSpec:
    """Return the registry entry of column ``name``; raise KeyError if there is none."""
    return _BY_NAME[name]


def text_cell(name: str, value: object) -> str:
    """Return ``value`` of column ``name`` as human-readable text (``-`` for NaN/None)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    fmt = _BY_NAME[name].text if name in _BY_NAME else ""
    return format(value, fmt) if fmt else str(value)


# -- reading columns of astropy tables -------------------------------------------------


def filled(table: Table, col: str) -> npt.NDArray[np.float64]:
    """Return column ``col`` as plain float64 values (unit dropped), masked values NaN.

    The one masked-column-to-float conversion of soapd (catalogs, pipeline, store,
    API, output, alerts). Raise KeyError when ``table`` has no column ``col``.
    """
    data = table[col]
    values: np.ma.MaskedArray[Any, np.dtype[np.float64]] = np.ma.asarray(
        getattr(data, "value", data), dtype=float
    )
    return np.asarray(np.ma.filled(values, np.nan), dtype=float)


def column_or(table: Table, name: str, default: Any) -> npt.NDArray[Any]:
    """Return column ``name`` as a plain array (unit dropped), masked values ``default``.

    A table without the column gives ``len(table)`` copies of ``default``. The
    column keeps its dtype, so ``default`` must fit it (NaN does not fit an
    integer column: use :func:`filled` for floats).
    """
    if name not in table.colnames:
        return np.full(len(table), default)
    data = table[name]
    return np.asarray(np.ma.filled(np.ma.asarray(getattr(data, "value", data)), default))


def covered_mask(table: Table) -> npt.NDArray[np.bool_]:
    """Return True for the rows of frames that measured their position (detections, limits).

    False where the ``flag`` column has NOT_COVERED, or OFF_FRAME (tables written before
    coverage was a state); all True without a ``flag`` column.
    """
    flags = column_or(table, "flag", 0).astype(np.int64)
    return np.asarray((flags & UNMEASURED) == 0, dtype=bool)
