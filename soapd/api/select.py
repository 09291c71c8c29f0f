"""Row selection for result tables: times, bands and sky positions (``extract_target``).

Pure functions over astropy Tables with the columns of
:data:`soapd.columns.RESULT_COLUMNS`; :class:`soapd.api.results.PhotometryResult`
wraps them as methods. Times are mid-exposure UTC (the ``mjd`` column); naive
datetimes and ISO strings are read as UTC (skynetsoap B1). No I/O.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from astropy.table import Table

from soapd.columns import column_or
from soapd.filters import normalise_filter
from soapd.lightcurves import extract_target, row_mjd
from soapd.timeutil import TimeLike, to_mjd

# TimeLike and to_mjd live in soapd.timeutil; re-exported here for soapd.api callers.
__all__ = ["TimeLike", "date_bounds", "extract_target", "row_bands", "row_mjd", "to_mjd"]


def date_bounds(
    *,
    after: TimeLike | None = None,
    before: TimeLike | None = None,
    days_ago: float | None = None,
    now: datetime | None = None,
) -> tuple[float, float]:
    """Return the (lower, upper) MJD bounds of a date selection (``-inf``/``inf`` if open).

    ``days_ago`` keeps times after ``now - days_ago`` (``now`` defaults to the current
    UTC time); with ``after`` as well, the later of the two lower bounds applies.
    """
    lower, upper = -math.inf, math.inf
    if after is not None:
        lower = to_mjd(after)
    if before is not None:
        upper = to_mjd(before)
    if days_ago is not None:
        if isinstance(days_ago, bool) or not math.isfinite(float(days_ago)) or days_ago < 0:
            raise ValueError(f"days_ago must be a non-negative number of days, got {days_ago!r}")
        ref = datetime.now(UTC) if now is None else now
        lower = max(lower, to_mjd(ref - timedelta(days=float(days_ago))))
    return lower, upper


def row_bands(table: Table) -> npt.NDArray[np.str_]:
    """Return every row's canonical band (from ``filter``, normalised again to be safe)."""
    raw = column_or(table, "filter", "").astype(str)
    if raw.size == 0:
        return np.zeros(0, dtype=str)
    names, inverse = np.unique(raw, return_inverse=True)
    bands = np.array([normalise_filter(str(n)) for n in names], dtype=str)
    out: npt.NDArray[np.str_] = bands[inverse.reshape(-1)]
    return out
