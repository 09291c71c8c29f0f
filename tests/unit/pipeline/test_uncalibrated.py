"""Frames without a credible zero point stay useful, and say why (issue #10).

Before #10 an uncalibrated frame had NaN magnitudes *and* NaN limits (``soapd process``
printed ``> nan`` for a blank-sky target), and an absurd zero point was stored as
calibrated. Truth: soapd.testing.synth (zero point 23.0 per second, electrons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from astropy.table import Table

from soapd.flags import Flag
from soapd.models import Target
from soapd.pipeline import process_frame
from soapd.testing.synth import make_frame, random_stars, wcs_of, write_frame


def _frame(tmp_path):
    rng = np.random.default_rng(12)
    stars = random_stars(60, (512, 512), rng=rng, mag_range=(14.0, 18.0), border_px=30)
    frame = make_frame((512, 512), stars=stars, seed=13)
    path = write_frame(tmp_path / "f.fits", frame.data_adu, frame.header)
    ra, dec = wcs_of(frame.header).all_pix2world([400.0], [100.0], 0)
    star = frame.truth[int(np.argmin(frame.truth["mag"]))]
    targets = [
        Target(name="blank", ra_deg=float(ra[0]), dec_deg=float(dec[0])),
        Target(name="star", ra_deg=float(star["ra"]), dec_deg=float(star["dec"])),
    ]
    return path, frame.truth, targets


def test_instrumental_limits_without_a_zero_point(tmp_path, config) -> None:
    """No zero point: calibrated magnitudes and limits NaN, flagged NO_CALIBRATION; the
    instrumental magnitude and the instrumental limit (limiting_ins_mag, summary
    lim_ins_mag) are there. With a zero point the calibrated limit is exactly
    limiting_ins_mag + zp. Reference: the zero point given (23.0)."""
    path, _, targets = _frame(tmp_path)
    bare = process_frame(path, config=config(), targets=targets)
    t = bare.table
    forced = {row["target_name"]: row for row in t[t["is_forced"]]}
    assert np.all(np.isnan(t["calibrated_mag"]))
    assert np.all(np.isnan(t["limiting_mag"]))
    assert np.all(np.asarray(t["flag"]) & Flag.NO_CALIBRATION)
    assert np.all(np.isfinite(t["limiting_ins_mag"]))
    assert not forced["blank"]["is_detection"]
    assert math.isfinite(forced["blank"]["limiting_ins_mag"])
    assert math.isfinite(forced["star"]["ins_mag"])
    s = bare.summary
    assert math.isnan(s.lim_mag)
    assert math.isfinite(s.lim_ins_mag)
    assert math.isfinite(s.lim_ins_mag_robust)
    assert s.cal_reason == "no reference catalogs given"
    calibrated = process_frame(path, config=config(), targets=targets, zeropoint=23.0)
    c = calibrated.table
    np.testing.assert_allclose(c["limiting_mag"], c["limiting_ins_mag"] + 23.0)
    np.testing.assert_allclose(c["limiting_ins_mag"], t["limiting_ins_mag"])
    assert calibrated.summary.lim_mag_robust == pytest.approx(s.lim_ins_mag_robust + 23.0)
    assert calibrated.summary.cal_reason == ""


@dataclass
class _Scattered:
    """A reference catalog of 5 of the frame's stars, magnitudes off by -1.5..+1.5 mag."""

    truth: Table

    def chain(self, band: str) -> list[str]:
        return ["scattered"]

    def stars(self, name, *, ra_deg, dec_deg, radius_deg, band):
        bright = self.truth[(self.truth["mag"] < 16.0) & ~self.truth["saturated"]][:5]
        return Table(
            {
                "ra_deg": bright["ra"],
                "dec_deg": bright["dec"],
                "mag": bright["mag"] + np.array([-1.5, -0.75, 0.0, 0.75, 1.5]),
                "mag_err": np.full(len(bright), 0.02),
            },
            meta={"system": "Vega"},
        )


def test_absurd_zero_point_leaves_the_frame_uncalibrated_with_the_reason(
    tmp_path, config, caplog
) -> None:
    """A fit whose error exceeds calibration.max_zp_err_mag (0.2): no zero point, no
    calibrated magnitude or limit, NO_CALIBRATION, the reason in the summary, the notes
    and the log; the instrumental columns are unaffected."""
    path, truth, targets = _frame(tmp_path)
    with caplog.at_level("INFO"):
        result = process_frame(path, config=config(), targets=targets, catalogs=_Scattered(truth))
    s, t = result.summary, result.table
    assert math.isnan(s.zp_mag)
    assert s.flags & Flag.NO_CALIBRATION
    assert "max_zp_err_mag" in s.cal_reason
    assert any("max_zp_err_mag" in n for n in s.notes)
    assert "max_zp_err_mag" in caplog.text
    assert np.all(np.isnan(t["calibrated_mag"]))
    assert np.all(np.isnan(t["limiting_mag"]))
    assert np.all(t["cal_mag_system"] == "none")
    assert np.all(np.isfinite(t["limiting_ins_mag"]))


def test_a_limit_from_a_broken_noise_estimate_is_never_reported(tmp_path, config) -> None:
    """Limiting fluxes that are negative, zero, NaN or infinite (a broken noise estimate)
    give NaN in every limit column, calibrated or instrumental, never a number."""
    from dataclasses import replace

    from soapd.pipeline import STAGES, run_frame
    from soapd.pipeline.context import Context
    from soapd.pipeline.limits import stage_limits

    bad = np.array([-5.0, 0.0, np.nan, np.inf])

    def broken_limits(ctx: Context) -> Context:
        ctx = stage_limits(ctx)
        assert ctx.limits is not None
        shape = ctx.limits.analytic_flux_e.shape
        fluxes = np.resize(bad, shape)
        return replace(
            ctx, limits=replace(ctx.limits, analytic_flux_e=fluxes, robust_flux_e=fluxes.copy())
        )

    stages = tuple((n, broken_limits if n == "limits" else s) for n, s in STAGES)
    path, _, targets = _frame(tmp_path)
    ctx, _ = run_frame(
        Context(path=path, config=config(), targets=tuple(targets), zeropoint=23.0), stages
    )
    assert ctx.result is not None
    t = ctx.result.table
    for name in (
        "limiting_mag",
        "limiting_mag_analytic",
        "limiting_mag_robust",
        "limiting_ins_mag",
    ):
        assert np.all(np.isnan(t[name])), name
