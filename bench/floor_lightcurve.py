"""Floor for ``soapd lightcurve NAME``: a plain sqlite3 script that prints the same points.

Reads the ``lightcurve`` view (the one operators query) for one target, with the
order soapd uses, and prints one text line per point (time, mjd, telescope, band,
exposure, magnitude or limit, snr, flag): what a user would write instead of
soapd's command. No numpy, astropy or soapd import.

Usage: ``python bench/floor_lightcurve.py DB NAME``
"""

from __future__ import annotations

import math
import sqlite3
import sys


def main() -> None:
    """Print the target's points; see the module doc."""
    db, name = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT mid_time_utc, mjd, telescope, band, exptime_s, is_detection, mag, mag_err,"
        " lim_mag, snr, flags FROM lightcurve WHERE target_name = ? AND superseded = 0"
        " ORDER BY mjd, frame_id, aperture_id, config_hash",
        [name],
    ).fetchall()
    out = ["mid_time_utc  mjd  telescope  band  exp(s)  mag  snr  flag"]
    for mid, mjd, tel, band, exp, det, mag, err, lim, snr, flags in rows:
        shown = (
            f"{mag:.3f} +/- {err:.3f}" if det and mag is not None else f"> {lim or math.nan:.2f}"
        )
        out.append(
            f"{mid}  {mjd:.5f}  {tel}  {band}  {exp:g}  {shown}  {snr or math.nan:.1f}  {flags}"
        )
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
