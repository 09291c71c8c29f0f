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

# transition: import from soapd.models (these re-exports go once every importer has moved).
from soapd.models import FrameResult, FrameSummary

__all__ = [
    "COLUMN_DESCRIPTIONS",
    "COLUMN_UNITS",
    "RESULT_COLUMNS",
    "FrameResult",
    "FrameSummary",
]

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


#: Unit of each result column (astropy unit strings; None: dimensionless or text).
COLUMN_UNITS: dict[str, str | None] = {
    "exptime": "s",
    "mjd": "d",
    "jd": "d",
    "x_pix": "pix",
    "y_pix": "pix",
    "ra": "deg",
    "dec": "deg",
    "flux": "electron",
    "flux_err": "electron",
    "ins_mag": "mag",
    "ins_mag_err": "mag",
    "calibrated_mag": "mag",
    "calibrated_mag_err": "mag",
    "zeropoint": "mag",
    "zeropoint_err": "mag",
    "aperture_radius": "pix",
    "fwhm": "pix",
    "limiting_mag_analytic": "mag",
    "limiting_mag_robust": "mag",
    "limiting_mag": "mag",
    "flux_ujy": "uJy",
    "flux_ujy_err": "uJy",
    "ap_corr_mag": "mag",
}

#: One-line meaning of each result column (written into ECSV/Parquet/JSON headers).
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "image_file": "FITS file name",
    "telescope": "TELESCOP of the frame",
    "filter": "normalised band of the frame's filter",
    "exptime": "exposure time",
    "mjd": "mid-exposure MJD (UTC)",
    "jd": "mid-exposure JD (UTC)",
    "x_pix": "0-based x of the aperture centre",
    "y_pix": "0-based y of the aperture centre",
    "ra": "right ascension (ICRS); the requested position for forced rows",
    "dec": "declination (ICRS); the requested position for forced rows",
    "flux": "background-subtracted aperture sum (not aperture-corrected)",
    "flux_err": "1-sigma error of flux (CCD model: Poisson, sky, read noise, sky estimate)",
    "snr": "flux / flux_err",
    "ins_mag": "-2.5 log10(flux / exptime) + ap_corr_mag (total flux, e-/s)",
    "ins_mag_err": "1.0857 flux_err / flux",
    "calibrated_mag": "ins_mag + zeropoint",
    "calibrated_mag_err": "ins_mag_err and zeropoint_err in quadrature",
    "cal_mag_system": "AB, Vega or none",
    "zeropoint": "zero point per second of exposure in electrons",
    "zeropoint_err": "error of the zero point",
    "aperture_id": "index of the radius in the frame's list of radii",
    "aperture_radius": "aperture radius",
    "fwhm": "frame FWHM (Gaussian) of isolated stars",
    "n_cal_stars": "stars used in the zero-point fit",
    "limiting_mag_analytic": "n-sigma limit from the local noise",
    "limiting_mag_robust": "n-sigma limit from blank-sky apertures",
    "limiting_mag": "the limit of the configured method",
    "is_forced": "row measured at a requested position",
    "flag": "soapd.flags.Flag bits",
    "target_name": "target name of forced rows",
    "is_detection": "S/N >= photometry.forced_snr_threshold; else an upper limit",
    "band": "normalised band (same as filter)",
    "mid_time_utc": "mid-exposure time, ISO 8601 UTC",
    "flux_ujy": "total flux density on the AB scale when calibrated",
    "flux_ujy_err": "error of flux_ujy (zero-point error included)",
    "ap_corr_mag": "aperture correction to total flux (<= 0)",
}
