"""The plain records of stacking: a candidate frame, and a built stack.

Both pickle (they cross the worker-pool boundary). Times are aware UTC
datetimes, magnitudes are calibrated magnitudes on the frames' zero points
(per second of exposure, electrons), exposure times are seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from soapd.flags import Flag
from soapd.models import FrameResult

__all__ = ["Candidate", "StackResult", "candidate_from_result"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A processed frame that may join a target's stack, with what its single measurement showed.

    ``lim_mag`` is the frame's own ``lim_nsigma`` limiting magnitude at the target
    (calibrated); ``flags`` is the target row's flag word OR the frame's (see
    :class:`soapd.flags.Flag`). ``single_detection`` says whether the frame alone
    detected the target.
    """

    frame_id: int
    path: Path
    telescope: str
    band: str
    exptime_s: float
    mid_time_utc: datetime
    zp_mag: float
    zp_err_mag: float = math.nan
    zp_scatter_mag: float = math.nan
    n_cal_stars: int = 0
    cal_catalog: str = ""
    mag_system: str = "none"
    lim_mag: float = math.nan
    lim_nsigma: float = 5.0
    flags: int = 0
    single_detection: bool = False

    @property
    def start_utc(self) -> datetime:
        """Exposure start (UTC)."""
        return self.mid_time_utc - timedelta(seconds=self.exptime_s / 2.0)

    @property
    def stop_utc(self) -> datetime:
        """Exposure end (UTC)."""
        return self.mid_time_utc + timedelta(seconds=self.exptime_s / 2.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class StackResult:
    """One built stack of one target: members, the co-add's measurement, and what was left out.

    ``members`` are frame ids in the order they joined (deepest first), with their
    normalised co-add ``weights`` (summing to 1: the stacked flux is the weighted
    mean of the members' fluxes on the common scale, so ``mid_time_utc`` is the
    same weighted mean of their mid-exposure times). ``excluded`` pairs each left-out
    candidate with the reason. The photometry row (at the calibration radius) is
    copied into ``mag``, ``mag_err`` (statistical, with the zero-point error),
    ``lim_mag`` (``lim_nsigma``, same method as single frames), ``snr``,
    ``is_detection`` and ``flags``; ``result`` keeps the full table of the cutout
    (target rows at every radius and the field sources).
    """

    target_name: str
    epoch_key: str
    telescope: str
    band: str
    bin_start_utc: datetime
    bin_end_utc: datetime
    members: tuple[int, ...]
    weights: tuple[float, ...]
    excluded: tuple[tuple[int, str], ...]
    exptime_s: float
    total_exptime_s: float
    mid_time_utc: datetime | None
    mean_mid_time_utc: datetime | None
    start_utc: datetime | None
    stop_utc: datetime | None
    zp_mag: float
    zp_err_mag: float
    zp_scatter_mag: float
    n_cal_stars: int
    cal_catalog: str
    mag_system: str
    predicted_lim_mag: float
    mag: float = math.nan
    mag_err: float = math.nan
    lim_mag: float = math.nan
    lim_nsigma: float = 5.0
    snr: float = math.nan
    flux_e: float = math.nan
    flux_err_e: float = math.nan
    flux_ujy: float = math.nan
    flux_ujy_err: float = math.nan
    fwhm_px: float = math.nan
    aperture_px: float = math.nan
    is_detection: bool = False
    flags: int = 0
    single_detections: int = 0
    best_single_lim_mag: float = math.nan
    alignment: tuple[str, ...] = ()
    result: FrameResult | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames in the stack."""
        return len(self.members)

    @property
    def ok(self) -> bool:
        """True when at least one frame was stacked and measured."""
        return bool(self.members) and self.result is not None


def candidate_from_result(
    frame_id: int, path: Path, result: FrameResult, target_name: str, *, lim_nsigma: float = 5.0
) -> Candidate:
    """Return the stacking candidate of one processed frame for one target.

    The target's row at its smallest aperture id gives the depth (``limiting_mag``),
    the flags and whether the frame alone detected it; the frame summary gives the
    calibration. A frame without a row for the target (it did not cover it) gets
    ``OFF_FRAME``.
    """
    s = result.summary
    table = result.table
    flags = int(s.flags)
    lim = math.nan
    detected = False
    if len(table) and "target_name" in table.colnames:
        pick = (np.asarray(table["target_name"]) == target_name) & np.asarray(table["is_forced"])
        rows = table[pick]
        if len(rows):
            row = rows[int(np.argmin(np.asarray(rows["aperture_id"])))]
            flags |= int(row["flag"])
            lim = float(row["limiting_mag"])
            detected = bool(row["is_detection"])
        else:
            flags |= int(Flag.OFF_FRAME)
    else:
        flags |= int(Flag.OFF_FRAME)
    return Candidate(
        frame_id=frame_id,
        path=path,
        telescope=s.telescope,
        band=s.band,
        exptime_s=s.exptime_s,
        mid_time_utc=s.mid_time_utc,
        zp_mag=s.zp_mag,
        zp_err_mag=s.zp_err_mag,
        zp_scatter_mag=s.zp_scatter_mag,
        n_cal_stars=s.n_cal_stars,
        cal_catalog=s.cal_catalog or "",
        mag_system=s.cal_mag_system,
        lim_mag=lim,
        lim_nsigma=lim_nsigma,
        flags=flags,
        single_detection=detected,
    )
