"""Tests of the lightcurve plot: arrows for limits, band colours, time since trigger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.table import vstack
from matplotlib.colors import to_rgb
from matplotlib.image import imread
from matplotlib.text import Annotation

from soapd.alerts.gcn import one_per_frame
from soapd.output.plots import BAND_COLOURS, lightcurve_figure, plot_lightcurve
from soapd.testing.lightcurves import target_result
from soapd.timeutil import mjd_of

TRIGGER = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def _lc():
    """R: 2 limits then 3 detections; V: 2 detections then 1 limit (two apertures each)."""
    spec = [
        ("R", None),
        ("R", None),
        ("R", 17.0),
        ("R", 17.3),
        ("R", 17.6),
        ("V", 17.5),
        ("V", 17.9),
        ("V", None),
    ]
    parts = []
    for i, (band, mag) in enumerate(spec):
        mid = TRIGGER + timedelta(hours=0.5 * (i + 1))
        t = target_result(
            {"T": mag},
            mid_time_utc=mid,
            band=band,
            lim_mag=19.0 + 0.1 * i,
            aperture_radii_px=(3.0, 5.0),
        ).table
        t["mjd"] = mjd_of(mid)
        t["frame_id"] = i
        parts.append(t)
    return vstack(parts)


def _limit_arrows(fig) -> list[Annotation]:
    ax = fig.axes[0]
    return [
        c
        for c in ax.get_children()
        if isinstance(c, Annotation) and str(c.get_gid()).startswith("limit:")
    ]


def test_plot_limits_are_downward_arrows_one_per_frame() -> None:
    fig = lightcurve_figure(_lc(), trigger_time_utc=TRIGGER)
    arrows = _limit_arrows(fig)
    assert sorted(a.get_gid() for a in arrows) == ["limit:R", "limit:R", "limit:V"]
    ax = fig.axes[0]
    fig.canvas.draw()
    for a in arrows:
        head = ax.transData.transform(a.xy)
        tail = ax.transData.transform(a.xyann)
        assert head[1] < tail[1]  # points down on the page (towards fainter)
        assert head[0] == pytest.approx(tail[0])
    assert ax.yaxis_inverted()
    assert ax.get_xlabel() == "Time since trigger (h)"


def test_plot_detections_coloured_by_band_with_error_bars() -> None:
    fig = lightcurve_figure(_lc(), trigger_time_utc=TRIGGER)
    ax = fig.axes[0]
    lines = {ln.get_gid(): ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("det")}
    assert set(lines) == {"detections:R", "detections:V"}
    for band in ("R", "V"):
        assert to_rgb(lines[f"detections:{band}"].get_color()) == to_rgb(BAND_COLOURS[band])
    xs = lines["detections:R"].get_xdata()
    assert np.allclose(xs, [1.5, 2.0, 2.5])  # one point per frame, hours since trigger
    assert len(ax.containers) == 2  # one errorbar container per band


def test_plot_png_has_band_colours_in_pixels(tmp_path: Path) -> None:
    out = plot_lightcurve(_lc(), tmp_path / "lc.png", trigger_time_utc=TRIGGER, title="T")
    img = imread(out)[..., :3]
    assert img.shape[0] > 300
    assert img.shape[1] > 500
    for band in ("R", "V"):
        dist = np.abs(img - np.array(to_rgb(BAND_COLOURS[band]))).sum(axis=-1)
        assert (dist < 0.05).sum() > 50, band


def test_plot_flux_units_arrows_point_to_lower_flux(tmp_path: Path) -> None:
    fig = lightcurve_figure(_lc(), units="flux")
    ax = fig.axes[0]
    assert not ax.yaxis_inverted()
    assert ax.get_xlabel().startswith("MJD")
    for a in _limit_arrows(fig):
        assert a.xy[1] < a.xyann[1]
    plot_lightcurve(_lc(), tmp_path / "f.png", units="flux")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_plot_bad_units_raise() -> None:
    with pytest.raises(ValueError, match="units"):
        lightcurve_figure(_lc(), units="jy")


def test_plot_empty_lightcurve_still_writes(tmp_path: Path) -> None:
    out = plot_lightcurve(_lc()[:0], tmp_path / "e.png")
    assert out.exists()


def test_plot_log_time_axis_leaves_out_points_before_the_trigger_and_says_so() -> None:
    lc = _lc()
    early = lc[lc["frame_id"] == 0]
    early["mjd"] = mjd_of(TRIGGER - timedelta(hours=1))  # one frame before T0
    early["frame_id"] = 99
    fig = lightcurve_figure(vstack([lc, early]), trigger_time_utc=TRIGGER, log_time=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert "1 point(s) at or before T0 not drawn" in ax.get_title()
    arrows = _limit_arrows(fig)
    assert len(arrows) == 3  # the frame before T0 is not drawn
    lo, hi = ax.get_xlim()
    assert 0 < lo < 0.5  # frames at 0.5 ... 4.0 h after T0
    assert hi > 4.0
    with pytest.raises(ValueError, match="trigger time"):
        lightcurve_figure(lc, log_time=True)


def test_plot_uncalibrated_lightcurve_draws_instrumental_magnitudes_labelled() -> None:
    lc = _lc()
    lc["limiting_ins_mag"] = lc["limiting_mag"] - 22.0  # as the pipeline's tables have it
    for col in ("calibrated_mag", "calibrated_mag_err", "limiting_mag"):
        lc[col] = np.nan
    fig = lightcurve_figure(lc, trigger_time_utc=TRIGGER)
    ax = fig.axes[0]
    assert ax.get_ylabel().startswith("Instrumental magnitude")
    det: dict[str, object] = {}
    for ln in ax.get_lines():  # the data line comes first; its error-bar caps share its gid
        det.setdefault(str(ln.get_gid()), ln)
    drawn = one_per_frame(lc)  # the plot's own row choice: each frame's first aperture
    r = drawn[(drawn["band"] == "R") & drawn["is_detection"]]
    assert len(r) == 3
    assert np.allclose(det["detections:R"].get_ydata(), r["ins_mag"])
    tails = sorted(a.xyann[1] for a in _limit_arrows(fig))
    lims = drawn["limiting_ins_mag"][~drawn["is_detection"]]
    assert np.allclose(tails, sorted(lims))  # arrows start at the instrumental limits


def test_plot_mixed_calibration_draws_calibrated_rows_and_counts_the_rest() -> None:
    lc = _lc()
    off = lc["frame_id"] == 2
    for col in ("calibrated_mag", "calibrated_mag_err", "limiting_mag"):
        lc[col][off] = np.nan
    fig = lightcurve_figure(lc, trigger_time_utc=TRIGGER)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Magnitude"
    assert "1 uncalibrated frame(s) not drawn" in ax.get_title()
    det: dict[str, object] = {}
    for ln in ax.get_lines():  # the data line comes first; its error-bar caps share its gid
        det.setdefault(str(ln.get_gid()), ln)
    assert np.allclose(det["detections:R"].get_xdata(), [2.0, 2.5])
