"""Turn a catalog's raw VizieR rows into soapd's star table for one band.

The star table (documented in :mod:`soapd.catalogs.service`) has ra_deg,
dec_deg, mag, mag_err, color, color_err and variable; see :func:`normalise`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.table import Table

from soapd.catalogs.registry import CatalogSpec
from soapd.catalogs.transforms import Photometry
from soapd.columns import column_or, filled
from soapd.errors import CatalogError
from soapd.filters import mag_system

__all__ = ["column_or", "filled", "normalise"]

FloatArray = npt.NDArray[np.float64]


def _variable(col: Any, s: CatalogSpec) -> npt.NDArray[np.bool_]:
    """Return True where the catalog's variability column marks a known variable."""
    mask = np.ma.getmaskarray(col)
    data = np.ma.getdata(col)
    if s.variable_mask is not None and data.dtype.kind in "iu":
        values = (data.astype(np.int64) & s.variable_mask).astype(str)
    else:
        values = np.char.strip(data.astype(str))
    return np.asarray(~mask & np.isin(values, s.variable_is))


def normalise(raw: Table, s: CatalogSpec, band: str, *, missing_err_mag: float) -> Table:
    """Return the documented star table for ``band`` from catalog ``s``'s raw rows.

    Applies the registry's quality cuts, marks variables, fills missing or
    flagged (``u_e_``) errors with ``missing_err_mag`` and derives ``band`` and
    its colour through :mod:`soapd.catalogs.transforms`. Raise CatalogError
    when the band cannot be had.
    """
    keep = np.ones(len(raw), dtype=bool)
    for cut in s.cuts:
        if cut.column not in raw.colnames:
            continue
        v = filled(raw, cut.column)
        ok = (v >= cut.lo) & (v <= cut.hi)
        keep &= ok | (np.isnan(v) & (not cut.required))
    raw = raw[keep]
    mags: dict[str, FloatArray] = {}
    errs: dict[str, FloatArray] = {}
    for b, cols in s.bands.items():
        if cols.mag not in raw.colnames:
            continue
        m = filled(raw, cols.mag)
        e = (
            filled(raw, cols.err)
            if cols.err and cols.err in raw.colnames
            else np.full_like(m, np.nan)
        )
        bad = ~np.isfinite(e) | (e <= 0)
        if cols.err_flag and cols.err_flag in raw.colnames:
            flag = filled(raw, cols.err_flag)
            bad |= np.isfinite(flag) & (flag != 0)
        e = np.where(bad, np.fmax(np.nan_to_num(e, nan=0.0), missing_err_mag), e)
        mags[b], errs[b] = m, e
    phot = Photometry(mags, errs, family=s.ugriz_family)
    derived = phot.derive(band)
    if derived is None:
        have = ", ".join(sorted(mags)) or "none"
        raise CatalogError(f"{s.name} cannot provide band {band!r} (its bands here: {have})")
    mag = derived.mag
    color, color_name = phot.color(band)
    n = len(raw)
    out = Table()
    out["ra_deg"] = filled(raw, s.ra_col)
    out["dec_deg"] = filled(raw, s.dec_col)
    out["mag"] = mag
    out["mag_err"] = phot.error(derived)
    out["color"] = color.mag if color is not None else np.full(n, np.nan)
    out["color_err"] = phot.error(color) if color is not None else np.full(n, np.nan)
    variable = np.zeros(n, dtype=bool)
    if s.variable_col and s.variable_col in raw.colnames:
        variable = _variable(raw[s.variable_col], s)
    out["variable"] = variable
    out.meta.update(
        {
            "catalog": s.name,
            "band": band,
            "system": mag_system(band),
            "how": derived.how,
            "color_name": color_name if color is not None else "",
        }
    )
    return out
