"""Lightcurve plots (matplotlib, Agg backend; no display needed).

Detections are points with error bars; upper limits are downward arrows
(towards fainter magnitudes, or lower flux) starting at the limit. Each band
has a fixed colour (:data:`BAND_COLOURS`). The x axis is hours since trigger
when a trigger time is given, else MJD (mid-exposure, UTC). Stacked epochs
(``stacks``, a :func:`soapd.stacks.table.stack_table`) are drawn over the single
frames with their own marker: large diamonds with a black edge, and limits as
thick bars with a hollow triangle, at their weighted mid-exposure time.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from soapd.alerts.gcn import covered_rows, one_per_frame
from soapd.columns import filled
from soapd.filters import AB_MINUS_VEGA
from soapd.timeutil import mjd_of

__all__ = [
    "BAND_COLOURS",
    "band_colour",
    "lightcurve_figure",
    "plot_lightcurve",
    "show_figure",
]

#: Fixed colours per canonical band (see soapd.filters); others cycle through _EXTRA.
BAND_COLOURS: dict[str, str] = {
    "U": "#7b2cbf",
    "u": "#9d4edd",
    "B": "#1f4e99",
    "g": "#2a9d8f",
    "V": "#3a8d2f",
    "r": "#e76f51",
    "R": "#d62828",
    "i": "#8d5524",
    "I": "#6d2e0f",
    "z": "#4a4a4a",
    "y": "#222222",
    "G": "#b08900",
    "Open": "#808080",
}
_EXTRA = ("#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#8c564b")
#: Arrow length of an upper limit in magnitudes (flux plots: 8 % of the largest flux).
ARROW_MAG = 0.3


def band_colour(band: str, index: int = 0) -> str:
    """Return the plot colour of a band (a fixed one for known bands)."""
    return BAND_COLOURS.get(band, _EXTRA[index % len(_EXTRA)])


def plot_lightcurve(
    table: Table,
    path: str | Path,
    *,
    units: str = "mag",
    trigger_time_utc: datetime | None = None,
    title: str = "",
    stacks: Table | None = None,
    log_time: bool = False,
    show: bool = False,
) -> Path:
    """Plot a lightcurve table to ``path`` (PNG, PDF or SVG by suffix); return the path.

    See :func:`lightcurve_figure` for the parameters; ``show`` also shows the
    figure (:func:`show_figure`).
    """
    out = Path(path)
    fig = lightcurve_figure(
        table,
        units=units,
        trigger_time_utc=trigger_time_utc,
        title=title,
        stacks=stacks,
        log_time=log_time,
    )
    fig.savefig(out)
    if show:
        show_figure(fig)
    return out


def show_figure(fig: Any) -> None:
    """Show a finished matplotlib Figure with ``plt.show()`` (blocks on an interactive backend).

    The figure is handed to pyplot for the call and closed afterwards. On a
    non-interactive backend (Agg) matplotlib warns that it cannot show it.
    """
    import matplotlib.pyplot as plt

    def _same(*_args: Any, **_kwargs: Any) -> Any:
        return fig

    managed = plt.figure(FigureClass=_same)  # type: ignore[arg-type]  # a factory of ``fig``
    try:
        plt.show()
    finally:
        plt.close(managed)


def lightcurve_figure(
    table: Table,
    *,
    units: str = "mag",
    trigger_time_utc: datetime | None = None,
    title: str = "",
    stacks: Table | None = None,
    log_time: bool = False,
) -> Any:
    """Return the matplotlib Figure of a lightcurve (Agg; nothing is shown).

    Parameters
    ----------
    table
        A lightcurve table (``Store.lightcurve``): ``mjd``, ``band`` (or ``filter``),
        ``is_detection``, ``calibrated_mag``/``_err`` and ``limiting_mag``, or for
        ``units="flux"`` ``flux_ujy``/``_err``. Only each frame's lowest ``aperture_id``
        is drawn (select another aperture beforehand to plot it); rows of frames
        that did not cover the position (NOT_COVERED) are not drawn.
    units
        ``"mag"`` (y inverted) or ``"flux"`` (microjansky, AB). When no frame is
        calibrated, ``"mag"`` draws the instrumental magnitudes and limits
        (``ins_mag``, ``limiting_ins_mag``: -2.5 log10 of e-/s) and says so on the axis;
        when some are, the uncalibrated frames are left out and counted in the title.
    trigger_time_utc
        If given, x is hours since this time; else MJD.
    stacks
        Stacked epochs to draw over the frames (same columns, one row per epoch).
    log_time
        With ``trigger_time_utc``: a logarithmic time axis (afterglows). Points at
        or before the trigger cannot be placed on it; their number is in the title.
    """
    from matplotlib.figure import Figure

    if units not in ("mag", "flux"):
        raise ValueError(f"units must be 'mag' or 'flux', got {units!r}")
    if log_time and trigger_time_utc is None:
        raise ValueError("a logarithmic time axis needs the trigger time (t - T0)")
    table = one_per_frame(covered_rows(table))
    notes: list[str] = []
    instrumental = False
    if units == "mag" and len(table):
        table, instrumental, left_out = _magnitude_rows(table)
        if left_out:
            notes.append(f"{left_out} uncalibrated frame(s) not drawn")
    fig = Figure(figsize=(8.0, 5.0), dpi=120)
    ax = fig.add_subplot()
    mjd = filled(table, "mjd") if len(table) else np.zeros(0)
    if trigger_time_utc is not None:
        t0 = mjd_of(trigger_time_utc)
        x = (mjd - t0) * 24.0
        ax.set_xlabel("Time since trigger (h)")
        if log_time:
            before = int(np.count_nonzero(x <= 0))
            if before:
                notes.append(f"{before} point(s) at or before T0 not drawn")
            x = np.where(x > 0, x, np.nan)
    else:
        x = mjd
        ax.set_xlabel("MJD (UTC, mid-exposure)")
    bandcol = "band" if "band" in table.colnames else "filter"
    bands = np.asarray(table[bandcol]).astype(str) if len(table) else np.zeros(0, str)
    det = np.asarray(table["is_detection"], dtype=bool) if len(table) else np.zeros(0, bool)
    if units == "mag":
        names = (
            ("ins_mag", "ins_mag_err", "limiting_ins_mag")
            if instrumental
            else ("calibrated_mag", "calibrated_mag_err", "limiting_mag")
        )
        # A table from before the instrumental limit was kept has no such column.
        y, yerr, lim = (
            filled(table, c) if c in table.colnames else np.full(len(table), np.nan) for c in names
        )
        ax.set_ylabel(
            "Instrumental magnitude (-2.5 log10 e-/s; not calibrated)"
            if instrumental
            else "Magnitude"
        )
        ax.invert_yaxis()
        arrow_end = lim + ARROW_MAG
    else:
        y, yerr = filled(table, "flux_ujy"), filled(table, "flux_ujy_err")
        vega = (
            np.asarray(table["cal_mag_system"]).astype(str) == "Vega"
            if "cal_mag_system" in table.colnames and len(table)
            else np.zeros(len(table), bool)
        )
        shift = np.array([AB_MINUS_VEGA.get(str(b), 0.0) for b in bands]) * vega
        lim = 10 ** (-0.4 * (filled(table, "limiting_mag") + shift - 23.9))
        ax.set_ylabel("Flux density (µJy, AB)")
        top = np.concatenate([y + np.nan_to_num(yerr), lim])
        top = top[np.isfinite(top)]
        arrow_end = lim - 0.08 * (float(top.max()) if top.size else 0.0)
    extra = 0
    for band in sorted(set(bands.tolist())):
        if band not in BAND_COLOURS:
            extra += 1
        colour = band_colour(band, extra)
        sel = (bands == band) & det & np.isfinite(y) & np.isfinite(x)
        if sel.any():
            ax.errorbar(
                x[sel],
                y[sel],
                yerr=np.nan_to_num(yerr[sel]),
                fmt="o",
                color=colour,
                ms=5,
                capsize=2,
                label=f"{band}",
                gid=f"detections:{band}",
            )
        lims = np.flatnonzero((bands == band) & ~det & np.isfinite(lim) & np.isfinite(x))
        for j, i in enumerate(lims):
            ax.annotate(
                "",
                xy=(x[i], arrow_end[i]),
                xytext=(x[i], lim[i]),
                arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.2},
                gid=f"limit:{band}",
            )
            ax.plot(
                [x[i]],
                [lim[i]],
                marker="_",
                ms=9,
                color=colour,
                label=f"{band} limit" if j == 0 else None,
            )
    if stacks is not None and len(stacks):
        sx, sy, slim = _draw_stacks(ax, stacks, units=units, trigger_time_utc=trigger_time_utc)
        if log_time:
            sx = np.where(sx > 0, sx, np.nan)
        x = np.concatenate([x, sx])
        y = np.concatenate([y, sy])
        det = np.concatenate([det, np.isfinite(sy)])
        lim = np.concatenate([lim, slim])
        arrow_end = np.concatenate([arrow_end, slim])
    if log_time:
        ax.set_xscale("log")
        if np.isfinite(x).any():
            ax.set_xlim(float(np.nanmin(x)) / 1.3, float(np.nanmax(x)) * 1.3)
    else:
        ax.ticklabel_format(axis="x", useOffset=False)
        if len(x) and np.isfinite(x).any():
            span = float(np.nanmax(x) - np.nanmin(x)) or 1.0
            ax.set_xlim(float(np.nanmin(x)) - 0.05 * span, float(np.nanmax(x)) + 0.05 * span)
    shown = np.isfinite(x)
    ys = np.concatenate(
        [
            y[det & np.isfinite(y) & shown],
            lim[~det & np.isfinite(lim) & shown],
            arrow_end[~det & shown],
        ]
    )
    ys = ys[np.isfinite(ys)]
    if ys.size:
        lo, hi = float(ys.min()), float(ys.max())
        pad = 0.1 * (hi - lo) if hi > lo else (0.5 if units == "mag" else abs(hi) * 0.2 + 1)
        if units == "mag":
            ax.set_ylim(hi + pad, lo - pad)
        else:
            ax.set_ylim(min(0.0, lo - pad), hi + pad)
    if len(table) or (stacks is not None and len(stacks)):
        ax.legend(loc="best", fontsize="small")
    ax.grid(visible=True, alpha=0.3)
    heading = title or (str(table.meta.get("target_name", "")) if table.meta else "")
    if notes:
        heading = f"{heading} ({'; '.join(notes)})" if heading else "; ".join(notes)
    ax.set_title(heading)
    fig.tight_layout()
    return fig


def _magnitude_rows(table: Table) -> tuple[Table, bool, int]:
    """Return the rows to draw in magnitudes, whether they are instrumental, and rows left out.

    Calibrated rows when any frame is calibrated (the uncalibrated ones are left
    out: the two scales differ by the zero point); otherwise every row, drawn in
    instrumental magnitudes when the table has them.
    """
    cal = np.isfinite(filled(table, "calibrated_mag")) | np.isfinite(filled(table, "limiting_mag"))
    if cal.any():
        return table[cal], False, int(np.count_nonzero(~cal))
    return table, "ins_mag" in table.colnames, 0


def _draw_stacks(
    ax: Any, stacks: Table, *, units: str, trigger_time_utc: datetime | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw stacked epochs; return their x, y (NaN for limits) and limits (NaN for detections)."""
    mjd = filled(stacks, "mjd")
    x = (mjd - mjd_of(trigger_time_utc)) * 24.0 if trigger_time_utc is not None else mjd
    bands = np.asarray(stacks["band"]).astype(str)
    det = np.asarray(stacks["is_detection"], dtype=bool)
    if units == "mag":
        y, yerr = filled(stacks, "calibrated_mag"), filled(stacks, "calibrated_mag_err")
        lim = filled(stacks, "limiting_mag")
    else:
        y, yerr = filled(stacks, "flux_ujy"), filled(stacks, "flux_ujy_err")
        vega = np.asarray(stacks["cal_mag_system"]).astype(str) == "Vega"
        shift = np.array([AB_MINUS_VEGA.get(str(b), 0.0) for b in bands]) * vega
        lim = 10 ** (-0.4 * (filled(stacks, "limiting_mag") + shift - 23.9))
    y = np.where(det, y, np.nan)
    lim = np.where(det, np.nan, lim)
    extra = 0
    for band in sorted(set(bands.tolist())):
        if band not in BAND_COLOURS:
            extra += 1
        colour = band_colour(band, extra)
        sel = (bands == band) & np.isfinite(y)
        if sel.any():
            ax.errorbar(
                x[sel],
                y[sel],
                yerr=np.nan_to_num(yerr[sel]),
                fmt="D",
                color=colour,
                mec="black",
                ms=9,
                capsize=3,
                elinewidth=2,
                label=f"{band} stack",
                gid=f"stack-detections:{band}",
                zorder=3,
            )
        sel = (bands == band) & np.isfinite(lim)
        if sel.any():
            ax.plot(
                x[sel],
                lim[sel],
                marker="v",
                ls="none",
                ms=10,
                mfc="none",
                mec=colour,
                mew=2,
                label=f"{band} stack limit",
                gid=f"stack-limits:{band}",
                zorder=3,
            )
    return x, y, lim
