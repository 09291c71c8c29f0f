"""Hand-built result tables with known answers, for the Python API tests."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from astropy.table import Table

from soapd.flags import Flag
from soapd.timeutil import jd_from_mjd, to_mjd

#: The target position used by the hand-built tables (deg, ICRS).
TARGET_RA, TARGET_DEC = 150.0, 2.0


def result_row(**over: Any) -> dict[str, Any]:
    """Return one result row with sensible values; ``over`` replaces fields."""
    row: dict[str, Any] = {
        "image_file": "f1.fits",
        "telescope": "Prompt5",
        "filter": "r",
        "exptime": 60.0,
        "mjd": to_mjd("2024-07-05T02:24:00"),
        "jd": jd_from_mjd(to_mjd("2024-07-05T02:24:00")),
        "x_pix": 100.0,
        "y_pix": 100.0,
        "ra": TARGET_RA,
        "dec": TARGET_DEC,
        "flux": 10000.0,
        "flux_err": 100.0,
        "snr": 100.0,
        "ins_mag": -5.0,
        "ins_mag_err": 0.011,
        "calibrated_mag": 17.0,
        "calibrated_mag_err": 0.02,
        "cal_mag_system": "AB",
        "zeropoint": 22.0,
        "zeropoint_err": 0.01,
        "aperture_id": 0,
        "aperture_radius": 4.0,
        "fwhm": 3.0,
        "n_cal_stars": 20,
        "limiting_mag_analytic": 20.0,
        "limiting_mag_robust": 19.9,
        "limiting_mag": 19.9,
        "is_forced": False,
        "flag": 0,
        "target_name": "",
        "is_detection": True,
        "band": "r",
        "mid_time_utc": "2024-07-05T02:24:00",
        "flux_ujy": 580.0,
        "flux_ujy_err": 5.8,
        "ap_corr_mag": 0.0,
    }
    row.update(over)
    return row


def make_table(rows: list[dict[str, Any]]) -> Table:
    """Return a result Table (with units) from row dicts."""
    t = Table(rows=rows)
    for name, unit in {
        "exptime": "s",
        "mjd": "d",
        "jd": "d",
        "ra": "deg",
        "dec": "deg",
        "calibrated_mag": "mag",
        "limiting_mag": "mag",
        "aperture_radius": "pix",
    }.items():
        t[name].unit = unit
    return t


def field_table() -> Table:
    """Three frames (r, r', V) x (target, a neighbour 3.6" east, a far star) x 2 apertures.

    The target's forced rows have S/N 10, 2 and 0.5 (frames 1-3); frame 3 also has a
    forced row off the frame.
    """
    rows = []
    frames = [
        ("f1.fits", to_mjd("2024-07-05T02:24:00"), "r", "2024-07-05T02:24:00"),
        ("f2.fits", to_mjd("2024-07-05T04:48:00"), "rprime", "2024-07-05T04:48:00"),
        ("f3.fits", to_mjd("2024-07-06T07:12:00"), "V", "2024-07-06T07:12:00"),
    ]
    forced_snr = [10.0, 2.0, 0.5]
    cos_dec = math.cos(math.radians(TARGET_DEC))
    for k, (img, mjd, filt, iso) in enumerate(frames):
        base = {"image_file": img, "mjd": mjd, "jd": mjd + 2400000.5, "filter": filt}
        base["mid_time_utc"] = iso
        base["band"] = "V" if filt == "V" else "r"
        base["cal_mag_system"] = "Vega" if filt == "V" else "AB"
        for ap, radius in enumerate((3.0, 5.0)):
            snr_scale = 1.0 if ap == 0 else 1.2
            if k < 2:  # the target is extracted in frames 1 and 2 only
                rows.append(
                    result_row(
                        **base,
                        aperture_id=ap,
                        aperture_radius=radius,
                        ra=TARGET_RA + 0.2 / 3600 / cos_dec,
                        snr=50.0 * snr_scale,
                        x_pix=100.0,
                        y_pix=100.0,
                        flux=5000.0 * (1 + ap),
                    )
                )
            rows.append(
                result_row(
                    **base,
                    aperture_id=ap,
                    aperture_radius=radius,
                    ra=TARGET_RA + 3.6 / 3600 / cos_dec,
                    x_pix=96.4,
                    y_pix=100.0,
                    snr=80.0 / snr_scale,
                    flux=9000.0 * (1 + ap),
                )
            )
            rows.append(
                result_row(
                    **base,
                    aperture_id=ap,
                    aperture_radius=radius,
                    ra=TARGET_RA + 0.1,
                    x_pix=400.0,
                    y_pix=10.0,
                    snr=30.0,
                )
            )
        rows.append(
            result_row(
                **base,
                is_forced=True,
                target_name="T",
                ra=TARGET_RA,
                dec=TARGET_DEC,
                x_pix=100.0,
                y_pix=100.0,
                snr=forced_snr[k],
                flux=forced_snr[k] * 100.0,
                aperture_radius=5.0,
                is_detection=forced_snr[k] >= 3.0,
                calibrated_mag=18.0 + k,
            )
        )
    rows.append(
        result_row(
            image_file="f3.fits",
            mjd=frames[2][1],
            filter="V",
            cal_mag_system="Vega",
            is_forced=True,
            target_name="OFF",
            ra=TARGET_RA,
            dec=TARGET_DEC,
            x_pix=np.nan,
            y_pix=np.nan,
            snr=np.nan,
            flux=np.nan,
            flag=int(Flag.OFF_FRAME),
            calibrated_mag=np.nan,
            limiting_mag=np.nan,
        )
    )
    return make_table(rows)
