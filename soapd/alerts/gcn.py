"""GCN circular drafts in the Skynet house layout, and a JSON sidecar with the same numbers.

The table follows the Skynet circulars (e.g. GCN 9916, 9989): five stacked
heading lines, the last holding the units; columns mean time since trigger
(h, 0.1 h), telescope, exposures as ``N x S``, normalised filter, magnitude
(``17.42 +/- 0.05``) or limit (``> 19.8``, 0.1 mag), calibration stars as
``<count> <catalog>``, and the systematic and statistical calibration
uncertainties (0.001 mag). Times are mid-exposure.

Frames of one telescope, band and exposure time are combined into one row
("epoch") while the epoch spans at most ``epoch_frac`` of the time since
trigger of its first frame (logarithmic binning; 0 keeps one row per frame).
Combination is in flux: ``flux_ujy`` (total flux density, AB) when the frames
are calibrated, else ``(flux_e / exptime_s) 10**(-0.4 (zp + ap_corr_mag))``;
the inverse-variance weighted mean gives the magnitude (converted back to the
band's own system), and the n-sigma limits added in inverse quadrature
(``sigma = 10**(-0.4 lim) / n``) give the limit: the forced-photometry
equivalent of stacking the frames. A combined row is a detection when the mean
flux is at least n sigma.

Only covered rows count: a frame that did not measure the position (flag
NOT_COVERED, or OFF_FRAME in old tables) is in no row, no sentence and not among the
telescopes "observed with". Quality flags of an epoch's frames are named in words
next to its number (``12.55 +/- 0.01 (saturated)``; :func:`soapd.flags.flag_words`).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np
from astropy.table import Table

from soapd.alerts.texttable import stacked_table
from soapd.columns import column_or, covered_mask
from soapd.filters import AB_MINUS_VEGA, normalise_filter
from soapd.flags import flag_words
from soapd.timeutil import datetime_from_mjd, mjd_of

__all__ = ["circular", "covered_rows", "epochs", "gcn_json", "one_per_frame"]


def covered_rows(table: Table) -> Table:
    """Return the rows of frames that measured the position (:func:`soapd.columns.covered_mask`)."""
    keep = covered_mask(table)
    return table if keep.all() else table[keep]


def one_per_frame(table: Table) -> Table:
    """Keep each frame's lowest aperture_id (frame: ``frame_id`` or ``image_file`` + mjd)."""
    if len(table) == 0:
        return table
    if "frame_id" in table.colnames:
        frame = [str(v) for v in column_or(table, "frame_id", -1)]
    else:
        frame = [
            f"{a}|{b}"
            for a, b in zip(
                column_or(table, "image_file", ""), column_or(table, "mjd", 0), strict=True
            )
        ]
    ap = column_or(table, "aperture_id", 0).astype(np.int64)
    order = np.lexsort((ap, column_or(table, "mjd", np.nan).astype(float)))
    seen: set[str] = set()
    keep = []
    for i in order:
        if frame[i] not in seen:
            seen.add(frame[i])
            keep.append(int(i))
    return table[np.array(keep, dtype=np.int64)]


def _epoch_fluxes(rows: Table) -> tuple[np.ndarray, np.ndarray, float]:
    """Return (flux, error, shift) with ``mag = -2.5 log10(flux) - shift`` for each frame.

    Calibrated frames use ``flux_ujy`` (total flux density, AB): flux in units of
    the AB zero point (3631 Jy) and shift = AB - band system (returned as NaN, set by
    the caller). Otherwise the frames' own scale: ``flux / exptime`` times
    ``10**(-0.4 offset)``, offset = ``calibrated_mag + 2.5 log10(flux / exptime)``
    where the row has a magnitude, else ``zeropoint + ap_corr_mag``; shift 0.
    """
    fu = column_or(rows, "flux_ujy", np.nan).astype(float)
    eu = column_or(rows, "flux_ujy_err", np.nan).astype(float)
    if np.isfinite(fu).all() and np.isfinite(eu).all():
        to_ab = 10 ** (-0.4 * 23.9)
        return fu * to_ab, eu * to_ab, math.nan
    zp = np.nan_to_num(column_or(rows, "zeropoint", np.nan).astype(float), nan=0.0)
    ap = np.nan_to_num(column_or(rows, "ap_corr_mag", 0.0).astype(float), nan=0.0)
    t = column_or(rows, "exptime", np.nan).astype(float)
    raw = column_or(rows, "flux", np.nan).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Where a frame has a magnitude, its own offset (zp + aperture correction).
        seen = column_or(rows, "calibrated_mag", np.nan).astype(float) + 2.5 * np.log10(raw / t)
    offset = np.where(np.isfinite(seen), seen, zp + ap)
    scale = 10 ** (-0.4 * offset) / t
    flux = raw * scale
    return flux, column_or(rows, "flux_err", np.nan).astype(float) * scale, 0.0


def _combine(rows: Table, n_sigma: float) -> dict[str, Any]:
    """Return one epoch's numbers from its frames (see the module docstring)."""
    n = len(rows)
    mjd = column_or(rows, "mjd", np.nan).astype(float)
    band = normalise_filter(str(column_or(rows, "band", column_or(rows, "filter", ""))[0]) or None)
    systems = [str(s) for s in column_or(rows, "cal_mag_system", "") if str(s)]
    system = Counter(systems).most_common(1)[0][0] if systems else ""
    flux, err, shift = _epoch_fluxes(rows)
    if not np.isfinite(shift):
        shift = AB_MINUS_VEGA.get(band, 0.0) if system == "Vega" else 0.0
    lim = column_or(rows, "limiting_mag", np.nan).astype(float)
    det = column_or(rows, "is_detection", default=False).astype(bool)
    mag = column_or(rows, "calibrated_mag", np.nan).astype(float)
    mag_err = column_or(rows, "calibrated_mag_err", np.nan).astype(float)
    ok = np.isfinite(lim)
    lim_c = math.nan
    if ok.any():
        sig = 10 ** (-0.4 * lim[ok]) / n_sigma
        lim_c = float(-2.5 * np.log10(n_sigma / np.sqrt(np.sum(1.0 / sig**2))))
    if n == 1:
        is_det, m, m_err = bool(det[0]), float(mag[0]), float(mag_err[0])
    else:
        good = np.isfinite(flux) & np.isfinite(err) & (err > 0)
        is_det, m, m_err = False, math.nan, math.nan
        if good.any():
            w = 1.0 / err[good] ** 2
            f = float(np.sum(w * flux[good]) / np.sum(w))
            e = float(1.0 / np.sqrt(np.sum(w)))
            if f > 0 and f / e >= n_sigma:
                is_det, m = True, -2.5 * math.log10(f) - shift
                m_err = 2.5 / math.log(10) * e / f
    cats = [str(c) for c in column_or(rows, "cal_catalog", "") if str(c)]
    flags = 0
    for value in column_or(rows, "flag", 0).astype(np.int64).tolist():
        flags |= int(value)
    ncal = column_or(rows, "n_cal_stars", -1).astype(float)
    ncal = ncal[ncal >= 0]
    zp_err = column_or(rows, "zeropoint_err", np.nan).astype(float)
    scat = column_or(rows, "zeropoint_scatter", np.nan).astype(float)
    fu = column_or(rows, "flux_ujy", np.nan).astype(float)
    eu = column_or(rows, "flux_ujy_err", np.nan).astype(float)
    okf = np.isfinite(fu) & np.isfinite(eu) & (eu > 0)
    wu = 1.0 / eu[okf] ** 2 if okf.any() else np.zeros(0)
    return {
        "flux_ujy": float(np.sum(wu * fu[okf]) / np.sum(wu)) if okf.any() else math.nan,
        "flux_ujy_err": float(1.0 / np.sqrt(np.sum(wu))) if okf.any() else math.nan,
        "mjd_mean": float(np.mean(mjd)),
        "mjd_first": float(np.min(mjd)),
        "mjd_last": float(np.max(mjd)),
        "telescope": str(column_or(rows, "telescope", "")[0]),
        "filter": band,
        "n_exp": n,
        "exp_s": float(column_or(rows, "exptime", np.nan)[0]),
        "is_detection": is_det,
        "mag": m if is_det else math.nan,
        "mag_err": m_err if is_det else math.nan,
        "lim_mag": lim_c,
        "lim_nsigma": n_sigma,
        "n_cal_stars": int(np.median(ncal)) if ncal.size else None,
        "cal_catalog": Counter(cats).most_common(1)[0][0] if cats else "",
        "cal_sys_unc_mag": float(np.nanmean(scat)) if np.isfinite(scat).any() else math.nan,
        "cal_stat_unc_mag": (
            float(np.sqrt(np.nansum(zp_err**2)) / n) if np.isfinite(zp_err).any() else math.nan
        ),
        "mag_system": system,
        "flags": flags,
        "notes": ", ".join(flag_words(flags)),
    }


def epochs(
    lightcurve: Table, *, trigger_time_utc: datetime | None = None, epoch_frac: float = 0.1
) -> list[dict[str, Any]]:
    """Return the circular's rows: frames combined into epochs, in time order.

    Each row has ``t_mean_h`` (mean mid-exposure time since trigger, hours; NaN
    without a trigger), ``mjd_mean``, telescope, filter, ``n_exp``, ``exp_s``,
    ``is_detection``, ``mag``/``mag_err`` or ``lim_mag`` (n-sigma), calibration
    stars, catalog, systematic and statistical calibration uncertainty (mag), and
    ``flags`` (the OR of its frames' flags) with ``notes``, those flags in words.
    Rows of frames that did not cover the position are left out.
    """
    table = one_per_frame(covered_rows(lightcurve))
    if len(table) == 0:
        return []
    nsig_col = column_or(table, "limiting_nsigma", np.nan).astype(float)
    n_sigma = float(np.nanmedian(nsig_col)) if np.isfinite(nsig_col).any() else 5.0
    t0 = mjd_of(trigger_time_utc) if trigger_time_utc is not None else None
    mjd = column_or(table, "mjd", np.nan).astype(float)
    tel = [str(v) for v in column_or(table, "telescope", "")]
    band = [str(v) for v in column_or(table, "band", column_or(table, "filter", ""))]
    exp = column_or(table, "exptime", np.nan).astype(float)
    groups: dict[tuple[str, str, float], list[list[int]]] = {}
    for i in np.argsort(mjd, kind="stable"):
        key = (tel[i], band[i], round(float(exp[i]), 3))
        runs = groups.setdefault(key, [])
        if runs and t0 is not None and epoch_frac > 0:
            first = mjd[runs[-1][0]]
            if mjd[i] - first <= epoch_frac * max(first - t0, 0.0):
                runs[-1].append(int(i))
                continue
        runs.append([int(i)])
    rows = [_combine(table[np.array(r)], n_sigma) for runs in groups.values() for r in runs]
    for row in rows:
        row["t_mean_h"] = (row["mjd_mean"] - t0) * 24.0 if t0 is not None else math.nan
    rows.sort(key=lambda r: (r["mjd_mean"], r["telescope"], r["filter"]))
    return rows


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _cells(row: dict[str, Any], has_trigger: bool) -> list[str]:
    if row["is_detection"] and math.isfinite(row["mag"]):
        mag = f"{row['mag']:.2f} +/- {_fmt(row['mag_err'], 2)}"
    else:
        mag = f"> {_fmt(row['lim_mag'], 1)}"
    if row.get("notes"):
        mag += f" ({row['notes']})"
    stars = " ".join(
        s for s in (str(row["n_cal_stars"] or ""), row["cal_catalog"]) if s and s != "None"
    )
    return [
        f"{row['t_mean_h']:.1f}" if has_trigger else f"{row['mjd_mean']:.4f}",
        row["telescope"] or "-",
        f"{row['n_exp']} x {row['exp_s']:g}",
        row["filter"],
        mag,
        stars or "-",
        _fmt(row["cal_sys_unc_mag"], 3),
        _fmt(row["cal_stat_unc_mag"], 3),
    ]


def _table_text(rows: list[dict[str, Any]], has_trigger: bool, n_sigma: float) -> str:
    heads = [
        ["mean", "time", "since", "trig.", "(h)"] if has_trigger else ["mean", "time", "(MJD)"],
        ["telescope"],
        ["exp.", "(# x s)"],
        ["filter"],
        ["mag. or", f"{n_sigma:g}-sigma", "limit", "(mag)"],
        ["cal.", "stars"],
        ["cal.", "sys.", "unc.", "(mag)"],
        ["cal.", "stat.", "unc.", "(mag)"],
    ]
    body = [_cells(r, has_trigger) for r in rows]
    return "\n".join(stacked_table(heads, body))


def _systems_text(rows: list[dict[str, Any]]) -> str:
    systems = sorted({r["mag_system"] for r in rows if r["mag_system"] in ("AB", "Vega")})
    if not systems:
        return "Magnitudes are instrumental (no photometric calibration was possible)."
    by = {s: sorted({r["filter"] for r in rows if r["mag_system"] == s}) for s in systems}
    parts = [f"{s} ({', '.join(by[s])})" for s in systems]
    return (
        f"Magnitudes are in the {' and '.join(parts)} system"
        f"{'s' if len(parts) > 1 else ''} and are not corrected for Galactic extinction."
    )


def circular(
    lightcurve: Table,
    *,
    target_name: str,
    trigger_time_utc: datetime | None = None,
    epoch_frac: float = 0.1,
    team: str = "Skynet",
) -> str:
    """Return a plain-text GCN circular draft for one target's lightcurve, ready to paste."""
    rows = epochs(lightcurve, trigger_time_utc=trigger_time_utc, epoch_frac=epoch_frac)
    if not rows:
        return f"{target_name}: no {team} observations of this position are stored yet.\n"
    has_trigger = trigger_time_utc is not None
    n_sigma = float(rows[0]["lim_nsigma"])
    scopes = sorted({r["telescope"] for r in rows if r["telescope"]})
    first = min(rows, key=lambda r: r["mjd_first"])
    start = datetime_from_mjd(first["mjd_first"]).strftime("%Y-%m-%d %H:%M UT")
    when = f"starting {start}"
    if has_trigger and trigger_time_utc is not None:
        hours = (first["mjd_first"] - mjd_of(trigger_time_utc)) * 24.0
        when += f" ({hours:.1f} h after the trigger)"
    dets = [r for r in rows if r["is_detection"] and math.isfinite(r["mag"])]
    if dets:
        d = dets[0]
        at = f" at {d['t_mean_h']:.1f} h" if has_trigger else f" at MJD {d['mjd_mean']:.4f}"
        note = f" ({d['notes']})" if d.get("notes") else ""
        seen = (
            f"We detect a source at the position of {target_name}: the first detection is "
            f"{d['filter']} = {d['mag']:.2f} +/- {_fmt(d['mag_err'], 2)}{note}{at}."
        )
    else:
        seen = (
            f"No source is detected at the position of {target_name}; "
            f"we give {n_sigma:g}-sigma limiting magnitudes."
        )
    bands = sorted({r["filter"] for r in rows})
    cats = sorted({r["cal_catalog"] for r in rows if r["cal_catalog"]})
    lines = [
        f"SUBJECT: {target_name}: {team} optical observations",
        "",
        (
            f"We observed {target_name} with {', '.join(scopes) or 'the telescope'} of the "
            f"{team} robotic telescope network in {', '.join(bands)}, {when}."
        ),
        seen,
        "",
        _table_text(rows, has_trigger, n_sigma),
        "",
        (
            "Times are mean mid-exposure times since the trigger."
            if has_trigger
            else "Times are mean mid-exposure times (MJD, UTC)."
        ),
        _systems_text(rows) + (f" Calibration stars are from {', '.join(cats)}." if cats else ""),
    ]
    return "\n".join(lines) + "\n"


def _num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def gcn_json(
    lightcurve: Table,
    *,
    target_name: str,
    trigger_time_utc: datetime | None = None,
    epoch_frac: float = 0.1,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
) -> dict[str, Any]:
    """Return the circular's numbers for machines (NaN as null; magnitudes in mag)."""
    rows = epochs(lightcurve, trigger_time_utc=trigger_time_utc, epoch_frac=epoch_frac)
    return {
        "target": target_name,
        "ra_deg": ra_deg,
        "dec_deg": dec_deg,
        "trigger_time_utc": trigger_time_utc.isoformat() if trigger_time_utc else None,
        "time_convention": "mean mid-exposure time; t_mean_h in hours since trigger",
        "rows": [{k: _num(v) for k, v in r.items()} for r in rows],
    }
