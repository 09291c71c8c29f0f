"""Stacked epochs as a table: what ``soapd lightcurve --stacks``, exports and plots read.

:func:`stack_table` turns stored stacks (:class:`~soapd.models.StackRecord`) into an
astropy Table whose columns share the names of the single-frame lightcurve where
they mean the same thing (``mjd``, ``band``, ``telescope``, ``calibrated_mag``,
``limiting_mag``, ``is_detection``, ``snr``, ``flag``, ``exptime``...), plus the
stack's own (``n_frames``, ``total_exptime``, ``frame_ids``, ``excluded``...).
Times are the weighted mean mid-exposure times.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from soapd.timeutil import mjd_of

if TYPE_CHECKING:
    from astropy.table import Table

    from soapd.models import StackRecord

__all__ = ["STACK_COLUMNS", "stack_table"]

#: Column -> (unit, description) of :func:`stack_table`.
STACK_COLUMNS: dict[str, tuple[str, str]] = {
    "target_name": ("", "target name"),
    "epoch_key": ("", "epoch: telescope|band|time bin"),
    "version": ("", "build number of this epoch's stack (older ones are superseded)"),
    "telescope": ("", "telescope"),
    "band": ("", "normalised band"),
    "mid_time_utc": ("", "weighted mean mid-exposure time, ISO 8601 UTC"),
    "mjd": ("d", "weighted mean mid-exposure MJD (UTC)"),
    "t_since_trigger_h": ("h", "weighted mean mid-exposure time since trigger"),
    "start_utc": ("", "first exposure start, ISO 8601 UTC"),
    "stop_utc": ("", "last exposure end, ISO 8601 UTC"),
    "n_frames": ("", "frames co-added"),
    "exptime": ("s", "single exposure time (NaN when they differ)"),
    "total_exptime": ("s", "total exposure of the co-added frames"),
    "calibrated_mag": ("mag", "calibrated magnitude (detections)"),
    "calibrated_mag_err": ("mag", "its error (statistical, zero point included)"),
    "limiting_mag": ("mag", "limiting magnitude of the stack (lim_nsigma)"),
    "lim_nsigma": ("", "significance of limiting_mag (sigma)"),
    "predicted_lim_mag": ("mag", "limit predicted from the members' single-frame limits"),
    "best_single_lim_mag": ("mag", "deepest single-frame limit among the members"),
    "snr": ("", "signal-to-noise ratio"),
    "is_detection": ("", "True for a detection, False for an upper limit"),
    "flag": ("", "soapd flag bits of the stacked measurement"),
    "flux_ujy": ("uJy", "total flux density (AB)"),
    "flux_ujy_err": ("uJy", "its error"),
    "zeropoint": ("mag", "common zero point the members were scaled to"),
    "zeropoint_err": ("mag", "statistical calibration uncertainty"),
    "zeropoint_scatter": ("mag", "systematic calibration uncertainty (calibrator scatter)"),
    "n_cal_stars": ("", "calibration stars (median of the members)"),
    "cal_catalog": ("", "calibration catalog"),
    "cal_mag_system": ("", "AB or Vega"),
    "single_detections": ("", "members that detected the target on their own"),
    "frame_ids": ("", "member frame ids (comma-separated)"),
    "excluded": ("", "left-out frames: 'id: reason' separated by '; '"),
    "is_stack": ("", "True: a stacked epoch"),
}


def stack_table(
    records: Sequence[StackRecord], *, trigger_time_utc: datetime | None = None
) -> Table:
    """Return the stacks as a Table (see the module docstring), in time order."""
    from astropy.table import Table  # astropy only when the stacks are tabled

    recs = sorted(records, key=lambda r: (r.mid_time_utc, r.telescope, r.band))
    t0 = mjd_of(trigger_time_utc) if trigger_time_utc is not None else None
    mjd = np.array([mjd_of(r.mid_time_utc) for r in recs], dtype=float)
    cols: dict[str, object] = {
        "target_name": [r.target_name for r in recs],
        "epoch_key": [r.epoch_key for r in recs],
        "version": np.array([r.version for r in recs], dtype=np.int64),
        "telescope": [r.telescope for r in recs],
        "band": [r.band for r in recs],
        "mid_time_utc": [r.mid_time_utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] for r in recs],
        "mjd": mjd,
        "t_since_trigger_h": (mjd - t0) * 24.0 if t0 is not None else np.full(len(recs), np.nan),
        "start_utc": [r.start_utc.strftime("%Y-%m-%dT%H:%M:%S") for r in recs],
        "stop_utc": [r.stop_utc.strftime("%Y-%m-%dT%H:%M:%S") for r in recs],
        "n_frames": np.array([r.n_frames for r in recs], dtype=np.int64),
        "exptime": np.array([r.exptime_s for r in recs], dtype=float),
        "total_exptime": np.array([r.total_exptime_s for r in recs], dtype=float),
        "calibrated_mag": np.array([r.mag for r in recs], dtype=float),
        "calibrated_mag_err": np.array([r.mag_err for r in recs], dtype=float),
        "limiting_mag": np.array([r.lim_mag for r in recs], dtype=float),
        "lim_nsigma": np.array([r.lim_nsigma for r in recs], dtype=float),
        "predicted_lim_mag": np.array([r.predicted_lim_mag for r in recs], dtype=float),
        "best_single_lim_mag": np.array([r.best_single_lim_mag for r in recs], dtype=float),
        "snr": np.array([r.snr for r in recs], dtype=float),
        "is_detection": np.array([r.is_detection for r in recs], dtype=bool),
        "flag": np.array([r.flags for r in recs], dtype=np.int64),
        "flux_ujy": np.array([r.flux_ujy for r in recs], dtype=float),
        "flux_ujy_err": np.array([r.flux_ujy_err for r in recs], dtype=float),
        "zeropoint": np.array([r.zp_mag for r in recs], dtype=float),
        "zeropoint_err": np.array([r.zp_err_mag for r in recs], dtype=float),
        "zeropoint_scatter": np.array([r.zp_scatter_mag for r in recs], dtype=float),
        "n_cal_stars": np.array([r.n_cal_stars for r in recs], dtype=np.int64),
        "cal_catalog": [r.cal_catalog for r in recs],
        "cal_mag_system": [r.mag_system for r in recs],
        "single_detections": np.array([r.single_detections for r in recs], dtype=np.int64),
        "frame_ids": [",".join(str(f) for f in r.members) for r in recs],
        "excluded": ["; ".join(f"{f}: {why}" for f, why in r.excluded) for r in recs],
        "is_stack": np.ones(len(recs), dtype=bool),
    }
    table = Table()
    for name, (unit, description) in STACK_COLUMNS.items():
        values = cols[name]
        if isinstance(values, list) and not values:
            values = np.zeros(0, dtype=str)
        table[name] = values
        if unit:
            table[name].unit = unit
        table[name].description = description
    return table
