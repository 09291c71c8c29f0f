"""GCN circular drafts against the layout and rounding of real Skynet circulars.

Reference: tests/data/gcn/gcn_circulars_structured.json (transcriptions of GCN
9916 and 9989, Skynet/PROMPT and DSO-14): 10 columns, 5 stacked heading lines
whose last holds the units ((h), (# x s), (mag)); times to 0.1 h, limits to
0.1 mag, calibration uncertainties to 0.001 mag; 'N x S' exposures and
'<count> <catalog>' calibration stars.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table, vstack

from soapd.alerts.gcn import circular, epochs, gcn_json
from soapd.models import Target
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result
from soapd.timeutil import mjd_of

DATA = Path(__file__).parents[2] / "data" / "gcn" / "gcn_circulars_structured.json"
TRIGGER = datetime(2009, 9, 2, 11, 5, 8, tzinfo=UTC)  # GRB 090902B (Fermi trigger time)


def _circ(number: int) -> dict:
    doc = json.loads(DATA.read_text())
    return next(c for c in doc["circulars"] if c["circular"] == number)


def _frames_for_row(row: list, t_mid_h: float, filter_raw: str) -> Table:
    """N frames of S s whose combined 3-sigma limit is the circular's limit.

    Individual limits are lim - 1.25 log10(N) (N equal noise levels add in
    inverse quadrature); zero-point errors are stat * sqrt(N) so that their
    combination sqrt(N e^2)/N gives back the circular's statistical uncertainty.
    """
    _t_h, scope, n, exp_s, band, limit, ncal, catalog, sys_unc, stat_unc = row
    each = limit - 1.25 * math.log10(n)
    start = TRIGGER + timedelta(hours=t_mid_h) - timedelta(seconds=(n - 1) * 45)
    parts = []
    for k in range(n):
        mid = start + timedelta(seconds=90 * k)
        res = target_result(
            {"GRB": None},
            mid_time_utc=mid,
            band=band,
            filter_raw=filter_raw,
            telescope=scope,
            exptime_s=exp_s,
            lim_mag=each,
            n_sigma=3.0,
            n_cal_stars=ncal,
            cal_catalog=catalog,
            zp_scatter_mag=sys_unc,
            zp_err_mag=stat_unc * math.sqrt(n),
            image_file=f"{scope}-{band}-{k}.fits",
        )
        t = res.table
        t["mjd"] = mjd_of(mid)
        t["frame_id"] = len(parts) + 1000 * "BVRI".index(band)
        t["zeropoint_scatter"] = sys_unc
        t["cal_catalog"] = catalog
        t["limiting_nsigma"] = 3.0
        parts.append(t)
    return vstack(parts)


def test_circular_reproduces_gcn_9916_rows_and_layout() -> None:
    """GCN 9916: e.g. '14.4  PROMPT-4  18 x 80  R  > 19.8  240 USNO B1  0.185  0.001'.

    Tolerance: exact text of each cell after rounding (the draft must round as the
    circular does). Raw filter names (Rc, Ic, Bj, V) must come out normalised.
    """
    circ = _circ(9916)
    raw = {"R": "Rc", "B": "Bj", "I": "Ic", "V": "V"}
    lc = vstack([_frames_for_row(r, r[0], raw[r[4]]) for r in circ["rows"]])
    text = circular(lc, target_name="GRB 090902B", trigger_time_utc=TRIGGER)
    lines = text.splitlines()
    dash = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    header = lines[dash - 5 : dash]
    assert header[0].split()[0] == "mean"
    assert header[-1].split()[0] == "(h)"
    assert "(# x s)" in header[-1]
    assert header[-1].count("(mag)") == 3
    assert "3-sigma" in " ".join(header)
    body = lines[dash + 1 : dash + 1 + len(circ["rows"])]
    for expected in circ["rows"]:
        t_h, scope, n, exp_s, band, limit, ncal, catalog, sys_unc, stat_unc = expected
        line = next(b for b in body if f" {scope} " in b)
        cells = [c for c in line.split("  ") if c.strip()]
        cells = [c.strip() for c in cells]
        assert cells == [
            f"{t_h:.1f}",
            scope,
            f"{n} x {exp_s}",
            band,
            f"> {limit:.1f}",
            f"{ncal} {catalog}",
            f"{sys_unc:.3f}",
            f"{stat_unc:.3f}",
        ]
    assert "Vega" in text
    assert "No source is detected" in text
    assert "mid-exposure" in text


def test_circular_reproduces_gcn_9989_rounding() -> None:
    """GCN 9989 (DSO-14, SDSS 7): limits 19.6/19.5/19.8/19.3 at 21.0 h, unc. 0.000-0.087."""
    circ = _circ(9989)
    lc = vstack([_frames_for_row(r, r[0], r[4]) for r in circ["rows"]])
    rows = epochs(lc, trigger_time_utc=TRIGGER)
    assert len(rows) == 4
    for expected in circ["rows"]:
        got = next(r for r in rows if r["filter"] == expected[4])
        assert round(got["t_mean_h"], 1) == expected[0]
        assert got["n_exp"] == expected[2]
        assert round(got["lim_mag"], 1) == expected[5]
        assert f"{got['cal_stat_unc_mag']:.3f}" == f"{expected[9]:.3f}"


def test_synthetic_afterglow_draft_from_store(tmp_path: Path) -> None:
    """A power-law afterglow (alpha = 1.2, R = 16 at 0.1 h) observed with 60 s frames.

    Injected magnitudes are known, fluxes noiseless; epochs must combine frames
    within 10 % of their time since trigger, detections print as 'mag +/- err' at
    0.01 mag, the last (faint) epoch, two frames at 30 h, as '> limit' at 0.1 mag. Tolerance: the
    combined magnitude equals the flux-weighted mean of the injected fluxes to 0.01 mag.
    """
    trigger = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    store = Store(tmp_path / "s.db")
    store.upsert_target(
        Target(name="GRB 261124A", ra_deg=10, dec_deg=-20, trigger_time_utc=trigger)
    )
    times_h = [0.1, 0.102, 0.104, 1.0, 1.03, 1.06, 30.0, 30.5]
    truth = []
    for i, th in enumerate(times_h):
        mag = 16.0 + 2.5 * 1.2 * math.log10(th / 0.1)
        truth.append(mag)
        mid = trigger + timedelta(hours=th)
        fid = register_frame(store, f"a{i}", mid_time_utc=mid)
        res = target_result(
            {"GRB 261124A": mag},
            mid_time_utc=mid,
            band="r",
            filter_raw="rprime",
            exptime_s=60.0,
            lim_mag=19.0,
            telescope="PROMPT-8",
        )
        store.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)
    lc = store.lightcurve("GRB 261124A")
    text = circular(lc, target_name="GRB 261124A", trigger_time_utc=trigger)
    doc = gcn_json(lc, target_name="GRB 261124A", trigger_time_utc=trigger)
    store.close()
    rows = doc["rows"]
    assert [r["n_exp"] for r in rows] == [3, 3, 2]
    first_flux = np.mean([10 ** (-0.4 * m) for m in truth[:3]])
    assert rows[0]["mag"] == pytest.approx(-2.5 * math.log10(first_flux), abs=0.01)
    assert rows[0]["t_mean_h"] == pytest.approx(np.mean(times_h[:3]), abs=1e-6)
    assert rows[2]["is_detection"] is False
    assert rows[2]["mag"] is None
    # Two equal 5-sigma limits combine to lim + 1.25 log10(2).
    assert rows[2]["lim_mag"] == pytest.approx(19.0 + 1.25 * math.log10(2), abs=1e-9)
    assert "0.1  " in text
    assert f"{rows[0]['mag']:.2f} +/- {rows[0]['mag_err']:.2f}" in text
    assert "3 x 60" in text
    assert "> 19.4" in text
    assert "AB (r)" in text
    assert "the first detection is r =" in text
    json.dumps(doc, allow_nan=False)


def test_circular_without_trigger_uses_mjd_and_one_row_per_frame() -> None:
    res = target_result({"X": 17.0}, mid_time_utc=datetime(2026, 1, 1, tzinfo=UTC))
    t = res.table
    t["mjd"] = 61041.0
    t["frame_id"] = 1
    text = circular(t, target_name="X")
    assert "(MJD)" in text
    assert "61041.0000" in text
    assert "1 x 80" in text


def test_circular_of_empty_lightcurve_says_so() -> None:
    assert "no Skynet observations" in circular(Table(), target_name="X")


def _epoch(band: str, *, calibrated: bool, ap_corr: float = 0.0, mags: bool = True) -> Table:
    parts = []
    for k in range(3):
        mid = TRIGGER + timedelta(hours=10, minutes=2 * k)
        t = target_result({"X": 17.0}, mid_time_utc=mid, band=band, lim_mag=20.0).table
        t["mjd"] = mjd_of(mid)
        t["frame_id"] = k
        if not calibrated:
            t["flux_ujy"] = np.nan
            t["flux_ujy_err"] = np.nan
        # A frame's aperture correction makes the stored mag brighter than flux/t says.
        t["ap_corr_mag"] = ap_corr
        t["calibrated_mag"] = t["calibrated_mag"] + ap_corr if mags else np.nan
        parts.append(t)
    return vstack(parts)


@pytest.mark.parametrize("band", ["R", "r", "V"])
def test_epoch_combination_keeps_the_band_system(band: str) -> None:
    """Three noiseless frames of mag 17.0 combine to 17.00 (Vega bands go through AB)."""
    row = epochs(_epoch(band, calibrated=True), trigger_time_utc=TRIGGER)[0]
    assert row["n_exp"] == 3
    assert row["mag"] == pytest.approx(17.0, abs=1e-6)
    # Three equal 5-sigma limits: 20 + 1.25 log10(3).
    assert row["lim_mag"] == pytest.approx(20.0 + 1.25 * math.log10(3), abs=1e-9)


@pytest.mark.parametrize("mags", [True, False])
def test_epoch_combination_uncalibrated_uses_zero_point_and_aperture_correction(mags) -> None:
    """Without flux_ujy: mag = -2.5 log10(flux/t) + zp + ap_corr_mag (here 17.0 - 0.1).

    The offset is read from each row's own magnitude, or from zeropoint + ap_corr_mag
    when the row has none.
    """
    lc = _epoch("R", calibrated=False, ap_corr=-0.1, mags=mags)
    row = epochs(lc, trigger_time_utc=TRIGGER)[0]
    assert row["mag"] == pytest.approx(16.9, abs=1e-6)
