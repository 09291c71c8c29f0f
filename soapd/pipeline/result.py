"""What ``process_frame`` returns: a frame summary plus the full source table.

The table holds one row per (source or forced position) x aperture, with
skynetsoap's column names (see ``RESULT_COLUMNS``) plus ``target_name``,
``is_detection``, ``band``, ``mid_time_utc``, ``flux_ujy``/``flux_ujy_err`` and
``ap_corr_mag``. Conventions: pixels 0-based; ``flux``/``flux_err`` in electrons;
``ins_mag = -2.5 log10(flux / exptime)`` (electrons per second, aperture-corrected
to total flux when aperture correction is on); ``calibrated_mag = ins_mag +
zeropoint``; ``mjd``/``jd``/``mid_time_utc`` are mid-exposure UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["RESULT_COLUMNS", "FrameResult", "FrameSummary"]

#: Columns of the result table, in order (skynetsoap's first, soapd's additions after).
RESULT_COLUMNS: tuple[str, ...] = (
    "image_file",
    "telescope",
    "filter",
    "exptime",
    "mjd",
    "jd",
    "x_pix",
    "y_pix",
    "ra",
    "dec",
    "flux",
    "flux_err",
    "snr",
    "ins_mag",
    "ins_mag_err",
    "calibrated_mag",
    "calibrated_mag_err",
    "cal_mag_system",
    "zeropoint",
    "zeropoint_err",
    "aperture_id",
    "aperture_radius",
    "fwhm",
    "n_cal_stars",
    "limiting_mag_analytic",
    "limiting_mag_robust",
    "limiting_mag",
    "is_forced",
    "flag",
    "target_name",
    "is_detection",
    "band",
    "mid_time_utc",
    "flux_ujy",
    "flux_ujy_err",
    "ap_corr_mag",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameSummary:
    """Frame-level results: one row of the ledger's ``frames`` table.

    Magnitudes are calibrated when ``zp_mag`` is finite, else instrumental. The
    zero point is per second of exposure in electrons: ``m = -2.5 log10(F_e / t_s) + zp``.
    """

    image_file: str
    telescope: str
    filter_raw: str
    band: str
    exptime_s: float
    mid_time_utc: datetime
    gain_e_per_adu: float
    read_noise_e: float
    saturation_adu: float
    fwhm_px: float
    n_fwhm_stars: int
    n_sources: int
    aperture_radii_px: tuple[float, ...]
    zp_mag: float
    zp_err_mag: float
    zp_scatter_mag: float
    n_cal_stars: int
    cal_catalog: str | None
    cal_mag_system: str
    lim_mag: float
    lim_mag_robust: float
    sky_rms_e: float
    has_wcs: bool
    center_ra_deg: float
    center_dec_deg: float
    flags: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameResult:
    """A processed frame: its summary, its full source table and its stage timings."""

    summary: FrameSummary
    table: Table
    timings_s: dict[str, float] = field(default_factory=dict)
