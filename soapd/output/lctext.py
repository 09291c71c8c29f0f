"""The text table of ``soapd lightcurve``: one aligned line per point, limits as ``> lim``.

:func:`text_table` formats a lightcurve (or stacked-epoch) Table, or the same
columns as plain arrays by name: ``soapd lightcurve NAME`` prints a target's
frames from arrays read without astropy, and every other path formats its Table,
with the same function. :func:`first_aperture_rows` is the selection of
:func:`soapd.alerts.gcn.one_per_frame` on arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from soapd.flags import flag_text, is_covered
from soapd.timeutil import mjd_of

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["TEXT_COLUMNS", "first_aperture_rows", "text_table"]

#: Columns :func:`text_table` reads (those present in the table).
TEXT_COLUMNS = (
    "mid_time_utc",
    "mjd",
    "telescope",
    "band",
    "exptime",
    "flag",
    "is_detection",
    "calibrated_mag",
    "calibrated_mag_err",
    "ins_mag",
    "ins_mag_err",
    "limiting_mag",
    "limiting_ins_mag",
    "snr",
)

_HEAD_END = ["telescope", "band", "exp(s)", "mag", "snr", "flag", "notes"]


def _cell(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


#: One point for :func:`_shown`: flag, is_detection, calibrated_mag, its error, ins_mag,
#: its error, limiting_mag, limiting_ins_mag (magnitudes in mag, NaN: none).
_Point = tuple[int, bool, float, float, float, float, float, float]


def _shown(point: _Point) -> str:
    """Return a point as text: ``mag +/- err`` or ``> lim``, instrumental ones labelled."""
    flag, det, mag, mag_err, ins, ins_err, lim, ins_lim = point
    if not is_covered(flag):
        return "not measured"
    if det and math.isfinite(mag):
        return f"{mag:.3f} +/- {_cell(mag_err, 3)}"
    if det and math.isfinite(ins):
        return f"{ins:.3f} +/- {_cell(ins_err, 3)} (instrumental)"
    if not math.isfinite(lim) and math.isfinite(ins_lim):
        return f"> {ins_lim:.2f} (instrumental)"
    return f"> {_cell(lim, 2)}"


def text_table(table: Table | Mapping[str, np.ndarray], trigger: datetime | None) -> str:
    """Return a human-readable table: one line per point, limits as ``> lim``.

    ``table``: a Table, or its columns as arrays by name; the columns of
    :data:`TEXT_COLUMNS` present are read (``ins_mag``, ``ins_mag_err``,
    ``limiting_ins_mag`` and ``mid_time_utc`` may be missing). Times as MJD, or
    with a ``trigger`` time as hours since it. The ``notes`` column names the
    point's quality flags in words ("saturated", "blended", "cosmic ray", "not
    covered (off frame)"; :func:`soapd.flags.flag_words`). Each column is read
    once as a Python list and formatted as a whole; the words of each distinct
    flag value are worked out once.
    """
    head = ["mid_time_utc", "t-trig(h)" if trigger else "mjd", *_HEAD_END]
    present = set(table.colnames if hasattr(table, "colnames") else table)
    cols: dict[str, list[Any]] = {c: table[c].tolist() for c in TEXT_COLUMNS if c in present}
    n = len(next(iter(cols.values()), []))
    if n == 0:
        return "  ".join(head)

    def floats(name: str) -> list[float]:
        if name not in cols:
            return [math.nan] * n
        values = cols[name]
        if None in values:  # a masked value: none
            return [math.nan if v is None else float(v) for v in values]
        return list(map(float, values))

    isfinite = math.isfinite

    flags = list(map(int, cols["flag"]))
    words = {f: flag_text(f) or "-" for f in set(flags)}
    mjd = floats("mjd")
    t0 = mjd_of(trigger) if trigger else None
    points = zip(
        flags,
        [bool(v) for v in cols["is_detection"]],
        floats("calibrated_mag"),
        floats("calibrated_mag_err"),
        floats("ins_mag"),
        floats("ins_mag_err"),
        floats("limiting_mag"),
        floats("limiting_ins_mag"),
        strict=True,
    )
    columns = [
        list(map(str, cols["mid_time_utc"])) if "mid_time_utc" in cols else [""] * n,
        [f"{(m - t0) * 24:.3f}" for m in mjd] if t0 is not None else [f"{m:.5f}" for m in mjd],
        list(map(str, cols["telescope"])),
        list(map(str, cols["band"])),
        [f"{float(v):g}" for v in cols["exptime"]],
        list(map(_shown, points)),
        [f"{v:.1f}" if isfinite(v) else "-" for v in floats("snr")],  # _cell(v, 1)
        list(map(str, flags)),
        list(map(words.__getitem__, flags)),
    ]
    widths = [max(len(h), *map(len, c)) for h, c in zip(head, columns, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths).format  # "<w": str.ljust(w)
    return "\n".join(line(*r).rstrip() for r in [head, *zip(*columns, strict=True)])


def first_aperture_rows(
    frame_id: np.ndarray, aperture_id: np.ndarray, mjd_d: np.ndarray
) -> np.ndarray:
    """Return the row indices :func:`soapd.alerts.gcn.one_per_frame` keeps, in its order.

    Each frame's lowest ``aperture_id`` (the first in row order among equal ones),
    rows in (mjd, aperture_id) order, stably: one_per_frame's selection of a
    lightcurve Table, for the same columns as arrays (``mjd_d``: MJD, days).
    """
    order = np.lexsort((aperture_id.astype(np.int64), mjd_d.astype(float)))
    _, first = np.unique(frame_id.astype(np.int64)[order], return_index=True)
    return order[np.sort(first)]
