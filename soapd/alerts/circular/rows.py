"""The rows of a circular: one stacked epoch (or frames-combined epoch, or frame) each."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["CircularRow", "rows_from_lightcurve"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CircularRow:
    """One table row: a stacked epoch (or a single frame) of one telescope and filter.

    Times are aware UTC datetimes (``mid_time_utc`` is the weighted mean mid-exposure
    time); magnitudes in mag on ``mag_system``; ``lim_mag`` is ``lim_nsigma``-sigma.
    """

    telescope: str
    band: str
    mid_time_utc: datetime
    start_utc: datetime
    stop_utc: datetime
    n_exp: int
    exptime_s: float
    total_exptime_s: float
    is_detection: bool
    mag: float = math.nan
    mag_err: float = math.nan
    lim_mag: float = math.nan
    lim_nsigma: float = 5.0
    n_cal_stars: int = 0
    cal_catalog: str = ""
    cal_sys_unc_mag: float = math.nan
    cal_stat_unc_mag: float = math.nan
    mag_system: str = "none"
    frame_ids: tuple[int, ...] = ()

    @classmethod
    def from_stack(cls, stack: Any) -> CircularRow:
        """Return the row of a :class:`soapd.stacks.StackResult` (or a record with its fields)."""
        return cls(
            telescope=stack.telescope,
            band=stack.band,
            mid_time_utc=stack.mid_time_utc,
            start_utc=stack.start_utc,
            stop_utc=stack.stop_utc,
            n_exp=len(stack.members),
            exptime_s=stack.exptime_s,
            total_exptime_s=stack.total_exptime_s,
            is_detection=bool(stack.is_detection),
            mag=stack.mag,
            mag_err=stack.mag_err,
            lim_mag=stack.lim_mag,
            lim_nsigma=stack.lim_nsigma,
            n_cal_stars=stack.n_cal_stars,
            cal_catalog=stack.cal_catalog,
            cal_sys_unc_mag=stack.zp_scatter_mag,
            cal_stat_unc_mag=stack.zp_err_mag,
            mag_system=stack.mag_system,
            frame_ids=tuple(stack.members),
        )

    @classmethod
    def from_epoch(cls, epoch: Mapping[str, Any]) -> CircularRow:
        """Return the row of a frames-combined epoch (:func:`soapd.alerts.gcn.epochs`)."""
        from soapd.timeutil import datetime_from_mjd

        exp = float(epoch["exp_s"])
        half = timedelta(seconds=exp / 2.0) if math.isfinite(exp) else timedelta(0)
        n = int(epoch["n_exp"])
        ncal = epoch.get("n_cal_stars")
        return cls(
            telescope=str(epoch["telescope"]),
            band=str(epoch["filter"]),
            mid_time_utc=datetime_from_mjd(float(epoch["mjd_mean"])),
            start_utc=datetime_from_mjd(float(epoch["mjd_first"])) - half,
            stop_utc=datetime_from_mjd(float(epoch["mjd_last"])) + half,
            n_exp=n,
            exptime_s=exp,
            total_exptime_s=n * exp,
            is_detection=bool(epoch["is_detection"]),
            mag=float(epoch["mag"]),
            mag_err=float(epoch["mag_err"]),
            lim_mag=float(epoch["lim_mag"]),
            lim_nsigma=float(epoch["lim_nsigma"]),
            n_cal_stars=int(ncal) if ncal is not None else 0,
            cal_catalog=str(epoch["cal_catalog"] or ""),
            cal_sys_unc_mag=float(epoch["cal_sys_unc_mag"]),
            cal_stat_unc_mag=float(epoch["cal_stat_unc_mag"]),
            mag_system=str(epoch["mag_system"] or "none"),
        )

    @property
    def shows_detection(self) -> bool:
        """True when the row prints a magnitude (a detection with a finite magnitude)."""
        return self.is_detection and math.isfinite(self.mag)


def rows_from_lightcurve(
    lightcurve: Any, *, trigger_time_utc: datetime | None = None, single_frames: bool = False
) -> list[CircularRow]:
    """Return circular rows from a single-frame lightcurve table (``Store.lightcurve``).

    ``single_frames``: one row per frame; else frames of one telescope, band and
    exposure time combined into epochs in flux (:func:`soapd.alerts.gcn.epochs`,
    epochs spanning at most 10 % of the time since trigger). For stored targets the
    stacked epochs (:meth:`CircularRow.from_stack`) are the better rows.
    """
    from soapd.alerts.gcn import epochs

    frac = 0.0 if single_frames else 0.1
    return [
        CircularRow.from_epoch(e)
        for e in epochs(lightcurve, trigger_time_utc=trigger_time_utc, epoch_frac=frac)
    ]
