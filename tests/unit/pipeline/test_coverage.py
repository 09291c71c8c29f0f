"""Coverage is a state, not a limit (issue 10): every forced row is a detection, an upper
limit, or not covered with a reason, decided from the WCS, the shape and the valid pixels.

The frames are synthetic (soapd.testing.synth, 256 x 256 px at 1"/px, FWHM 3.5 px, zero
point 23.0 given to the pipeline), so where each target lands is known exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from soapd.flags import COVERAGE_REASONS, Flag, coverage_of, flag_text, flag_words
from soapd.models import Target
from soapd.pipeline import process_frame
from soapd.pipeline.forced import (
    MIN_VALID_ANNULUS_FRACTION,
    MIN_VALID_APERTURE_FRACTION,
    coverage_flags,
    footprint_corners,
)
from soapd.testing.synth import make_frame, wcs_of, write_frame

SHAPE = (256, 256)
NOT_COVERED_BITS = Flag.NOT_COVERED | Flag.OFF_FRAME | Flag.NEAR_EDGE | Flag.MASKED_APERTURE


def _sky(header, x: float, y: float) -> tuple[float, float]:
    ra, dec = wcs_of(header).all_pix2world([x], [y], 0)
    return float(ra[0]), float(dec[0])


def _frame(tmp_path: Path, name: str, *, nan_box=None, with_wcs=True, stars=None):
    """Write a frame with a bright star at (60, 60) and a faint one at (200, 60)."""
    if stars is None:
        stars = Table({"x": [60.0, 200.0, 128.0], "y": [60.0, 60.0, 200.0], "mag": [15, 17, 16]})
    synth = make_frame(SHAPE, stars=stars, seed=4, with_wcs=with_wcs, zeropoint_mag=23.0)
    data = synth.data_adu.copy()
    if nan_box is not None:
        x0, x1, y0, y1 = nan_box
        data[y0:y1, x0:x1] = np.nan
    path = write_frame(tmp_path / name, data, synth.header)
    return path, synth.header


def _rows(result) -> dict[str, Table.Row]:
    t = result.table
    return {str(r["target_name"]): r for r in t[t["is_forced"]]}


def _assert_not_covered(row, reason: str) -> None:
    assert row["coverage"] == reason
    assert int(row["flag"]) & Flag.NOT_COVERED
    assert not int(row["flag"]) & Flag.UPPER_LIMIT
    assert not row["is_detection"]
    for col in ("flux", "flux_err", "snr", "ins_mag", "calibrated_mag", "flux_ujy"):
        assert math.isnan(row[col]), col
    for col in ("limiting_mag", "limiting_mag_analytic", "limiting_mag_robust"):
        assert math.isnan(row[col]), col


def test_each_target_row_is_exactly_one_coverage_state(tmp_path, config) -> None:
    """Detection, limit, off frame, edge buffer (3 px), NaN block: each gets its state."""
    path, header = _frame(tmp_path, "f.fits", nan_box=(120, 140, 120, 140))
    targets = [
        Target(name="star", ra_deg=_sky(header, 60, 60)[0], dec_deg=_sky(header, 60, 60)[1]),
        Target(name="blank", ra_deg=_sky(header, 60, 200)[0], dec_deg=_sky(header, 60, 200)[1]),
        Target(name="off", ra_deg=_sky(header, -40, 100)[0], dec_deg=_sky(header, -40, 100)[1]),
        # 3 px from the left edge: the edge is at x = -0.5
        Target(name="edge", ra_deg=_sky(header, 2.5, 100)[0], dec_deg=_sky(header, 2.5, 100)[1]),
        Target(name="nan", ra_deg=_sky(header, 130, 130)[0], dec_deg=_sky(header, 130, 130)[1]),
    ]
    result = process_frame(path, targets=targets, zeropoint=23.0, config=config())
    rows = _rows(result)
    star, blank = rows["star"], rows["blank"]
    assert star["coverage"] == "covered"
    assert star["is_detection"]
    assert abs(star["calibrated_mag"] - 15.0) < 0.05
    assert not int(star["flag"]) & (Flag.NOT_COVERED | Flag.UPPER_LIMIT)
    assert blank["coverage"] == "covered"
    assert not blank["is_detection"]
    assert int(blank["flag"]) & Flag.UPPER_LIMIT
    assert np.isfinite(blank["limiting_mag"])
    _assert_not_covered(rows["off"], "off_frame")
    assert int(rows["off"]["flag"]) & Flag.OFF_FRAME
    _assert_not_covered(rows["edge"], "edge")
    assert int(rows["edge"]["flag"]) & Flag.NEAR_EDGE
    _assert_not_covered(rows["nan"], "masked")
    assert int(rows["nan"]["flag"]) & Flag.MASKED_APERTURE
    # the positions are kept (the requested sky position, where it falls)
    assert rows["edge"]["x_pix"] == pytest.approx(2.5, abs=0.01)
    assert rows["edge"]["ra"] == pytest.approx(targets[3].ra_deg)
    # every source row is covered
    src = result.table[~result.table["is_forced"]]
    assert set(src["coverage"]) == {"covered"}
    notes = " ".join(result.summary.notes)
    assert "1 off the frame" in notes
    assert "1 within" in notes
    assert "1 under masked" in notes


def test_frame_without_wcs_gives_not_covered_rows_with_no_wcs_reason(tmp_path, config) -> None:
    path, _ = _frame(tmp_path, "nowcs.fits", with_wcs=False)
    result = process_frame(path, targets=[Target(name="T", ra_deg=1, dec_deg=2)], config=config())
    row = _rows(result)["T"]
    _assert_not_covered(row, "no_wcs")
    assert int(row["flag"]) & Flag.NO_WCS
    assert result.summary.footprint_deg == ()
    assert result.summary.covered_footprint_deg == ()


def test_a_few_bad_pixels_keep_the_target_covered_a_block_does_not(tmp_path, config) -> None:
    """One NaN pixel in a ~4.4 px aperture (~1.6 % of it) is tolerated (APER_HASMASKED); a
    3 x 3 NaN block on the centre (~15 %) is not."""
    one, header = _frame(tmp_path, "one.fits", nan_box=(61, 62, 60, 61))
    block, _ = _frame(tmp_path, "block.fits", nan_box=(59, 62, 59, 62))
    target = Target(name="star", ra_deg=_sky(header, 60, 60)[0], dec_deg=_sky(header, 60, 60)[1])
    row = _rows(process_frame(one, targets=[target], zeropoint=23.0, config=config()))["star"]
    assert row["coverage"] == "covered"
    assert row["is_detection"]
    assert int(row["flag"]) & Flag.APER_HASMASKED
    row = _rows(process_frame(block, targets=[target], zeropoint=23.0, config=config()))["star"]
    _assert_not_covered(row, "masked")


def test_saturated_star_is_covered_and_flagged_saturated(tmp_path, config) -> None:
    stars = Table({"x": [100.0], "y": [100.0], "mag": [9.0]})
    path, header = _frame(tmp_path, "sat.fits", stars=stars)
    ra, dec = _sky(header, 100, 100)
    row = _rows(
        process_frame(
            path,
            targets=[Target(name="S", ra_deg=ra, dec_deg=dec)],
            zeropoint=23.0,
            config=config(),
        )
    )["S"]
    assert row["coverage"] == "covered"
    assert int(row["flag"]) & Flag.SATURATED
    assert "saturated" in flag_words(int(row["flag"]))


def test_summary_footprint_is_the_wcs_corners_and_the_covered_part_is_inset(
    tmp_path, config
) -> None:
    """Reference: astropy's all_pix2world of the pixel-grid corners (-0.5, n - 0.5) and of
    the corners moved in by the edge buffer max(radii, edge_margin_px)."""
    path, header = _frame(tmp_path, "fp.fits")
    result = process_frame(path, zeropoint=23.0, config=config())
    s = result.summary
    w = wcs_of(header)
    ra, dec = w.all_pix2world([-0.5, 255.5, 255.5, -0.5], [-0.5, -0.5, 255.5, 255.5], 0)
    assert np.allclose(np.array(s.footprint_deg), np.column_stack([ra, dec]), atol=1e-6)
    margin = max(*s.aperture_radii_px, config().photometry.edge_margin_px)
    lo, hi = -0.5 + margin, 255.5 - margin
    ra, dec = w.all_pix2world([lo, hi, hi, lo], [lo, lo, hi, hi], 0)
    assert np.allclose(np.array(s.covered_footprint_deg), np.column_stack([ra, dec]), atol=1e-6)


def test_footprint_corners_follow_the_pixel_grid_order() -> None:
    header = make_frame((100, 200), stars=None, seed=0).header
    corners = footprint_corners(wcs_of(header), (100, 200))
    assert len(corners) == 4
    # north up, east left: (0, 0) is the south-east corner, x grows to the west
    (ra0, dec0), (ra1, dec1), (ra2, dec2), (_ra3, dec3) = corners
    assert ra1 < ra0
    assert dec1 == pytest.approx(dec0)
    assert dec2 > dec1
    assert dec3 == pytest.approx(dec2)
    assert ra2 == pytest.approx(ra1, abs=1e-4)  # a TAN column is not a meridian


def test_coverage_flags_reasons_and_thresholds() -> None:
    """Direct: off (NaN and negative distance), edge buffer, aperture and annulus fractions."""
    shape = (100, 100)
    invalid = np.zeros(shape, bool)
    invalid[40:60, 0:10] = True  # a bad block touching the annulus of (20, 50) only
    invalid[80, 80] = True  # one bad pixel in the aperture of (80, 80)
    x = np.array([np.nan, -3.0, 3.0, 50.0, 80.0, 20.0])
    y = np.array([np.nan, 50.0, 50.0, 50.0, 80.0, 50.0])
    flags = coverage_flags(x, y, invalid, margin_px=5.0, radius_px=4.0)
    assert [coverage_of(f) for f in flags] == [
        "off_frame",
        "off_frame",
        "edge",
        "covered",
        "covered",
        "covered",
    ]
    # with a sky annulus (12, 20) px: pi (20^2 - 12^2) ~ 804 px, the block takes < 200
    flags = coverage_flags(x, y, invalid, margin_px=5.0, radius_px=4.0, annulus_px=(12.0, 20.0))
    assert coverage_of(flags[5]) == "covered"
    invalid[30:70, 0:35] = True  # now most of that annulus is bad, but not the aperture
    invalid[44:57, 14:27] = False
    flags = coverage_flags(x, y, invalid, margin_px=5.0, radius_px=4.0, annulus_px=(12.0, 20.0))
    assert coverage_of(flags[5]) == "masked"
    assert flags[5] & Flag.MASKED_APERTURE
    assert coverage_of(coverage_flags(x, y, invalid, margin_px=5.0, radius_px=4.0)[5]) == "covered"
    # saturated pixels are valid: a saturated star is covered (and flagged SATURATED)
    sat = np.zeros(shape, bool)
    sat[45:56, 45:56] = True
    flags = coverage_flags(x, y, invalid | sat, margin_px=5.0, radius_px=4.0, saturated=sat)
    assert coverage_of(flags[3]) == "covered"
    flags = coverage_flags(x, y, invalid | sat, margin_px=5.0, radius_px=4.0)
    assert coverage_of(flags[3]) == "masked"
    assert 0.5 <= MIN_VALID_ANNULUS_FRACTION < MIN_VALID_APERTURE_FRACTION < 1.0


def test_flag_words_name_each_state_in_plain_words() -> None:
    assert set(COVERAGE_REASONS) == {"covered", "no_wcs", "off_frame", "edge", "masked"}
    assert flag_words(Flag.NOT_COVERED | Flag.OFF_FRAME) == ["not covered (off frame)"]
    assert flag_words(Flag.NOT_COVERED | Flag.NO_WCS | Flag.OFF_FRAME) == ["not covered (no WCS)"]
    assert flag_words(Flag.NOT_COVERED | Flag.NEAR_EDGE) == ["not covered (edge of frame)"]
    assert flag_words(Flag.NOT_COVERED | Flag.MASKED_APERTURE) == ["not covered (masked pixels)"]
    assert flag_text(Flag.SATURATED | Flag.APER_HASMASKED | Flag.BLENDED) == "saturated, blended"
    assert flag_text(Flag.UPPER_LIMIT | Flag.NO_CALIBRATION) == ""
    assert flag_text(0) == ""
    for name in ("COSMIC_RAY", "CONTAMINATED"):  # bits of the science branch, when present
        if name in Flag.__members__:
            assert flag_words(int(Flag[name]))
