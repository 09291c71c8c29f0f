"""Bright-star wings in forced apertures: the CONTAMINATED flag (issue #10).

Before #10, BLENDED looked at distance only: on blank sky 2.5 FWHM from V ~ 13.5-14
stars, 9 of 10 forced positions came out as unflagged detections, and a V = 18.5 star
there was 0.22 mag too bright, unflagged. Truth: soapd.testing.synth (Gaussian PSF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from soapd.flags import Flag
from soapd.models import Target
from soapd.pipeline import process_frame
from soapd.pipeline.contamination import contamination_e, enclosed_profile, offset_fraction
from soapd.testing.synth import make_frame, wcs_of, write_frame

FWHM_PX = 3.2
#: 25 bright stars on a 100 px grid, and 16 isolated V = 16.5 field stars between them (for
#: the FWHM and the curve of growth).
GRID = np.arange(60.0, 461.0, 100.0)


def _limit_5sigma(tmp_path: Path, config) -> float:
    """The robust 5-sigma limit (mag, zp 23) of an empty frame like the test frames."""
    empty = make_frame((512, 512), stars=None, seed=1, fwhm_px=FWHM_PX)
    path = write_frame(tmp_path / "empty.fits", empty.data_adu, empty.header)
    return process_frame(path, config=config(), zeropoint=23.0).summary.lim_mag_robust


def _field(bright_mag: np.ndarray, faint: Table | None = None) -> Table:
    gx, gy = np.meshgrid(GRID, GRID)
    fx, fy = np.meshgrid(GRID[:-1] + 50.0, GRID[:-1] + 50.0)
    parts = [
        Table({"x": gx.ravel(), "y": gy.ravel(), "mag": bright_mag}),
        Table({"x": fx.ravel(), "y": fy.ravel(), "mag": np.full(fx.size, 16.5)}),
    ]
    if faint is not None:
        parts.append(faint)
    from astropy.table import vstack

    return vstack(parts)


def _forced(tmp_path: Path, config, stars: Table, xs, ys, *, seed: int) -> Table:
    frame = make_frame((512, 512), stars=stars, seed=seed, fwhm_px=FWHM_PX)
    path = write_frame(tmp_path / f"wing{seed}.fits", frame.data_adu, frame.header)
    ra, dec = wcs_of(frame.header).all_pix2world(xs, ys, 0)
    targets = [
        Target(name=f"t{i}", ra_deg=r, dec_deg=d)
        for i, (r, d) in enumerate(zip(ra, dec, strict=True))
    ]
    result = process_frame(path, config=config(), targets=targets, zeropoint=23.0)
    assert result.summary.fwhm_source == "stars"
    t = result.table[result.table["is_forced"]]
    return t[np.argsort([int(n[1:]) for n in t["target_name"]])]


def _offsets(rng: np.random.Generator, n: int, distance_px: float) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    return distance_px * np.cos(angle), distance_px * np.sin(angle)


@pytest.mark.parametrize(("brighter", "seed"), [((4.0, 5.0), 1), ((4.0, 5.0), 2), ((6.3, 6.8), 3)])
def test_blank_sky_near_bright_stars_gives_no_unflagged_detection(
    tmp_path, config, brighter, seed
) -> None:
    """Blank positions 2.5 FWHM (8 px) from 25 stars 4-5 mag (and, the issue's case,
    6.3-6.8 mag: V ~ 13.4-13.9) brighter than the 5-sigma limit (20.18). Tolerance (issue
    #10): at most 1 in 10 positions an unflagged detection (S/N >= 3 without CONTAMINATED).
    Measured: 4-5 mag: 1 and 0 detections, all 25 positions flagged; 6.3-6.8 mag: 24 of 25
    detections (11 at S/N >= 5), all 25 flagged, so 0 unflagged detections in each case.
    """
    rng = np.random.default_rng(seed)
    lim = _limit_5sigma(tmp_path, config)
    bright = lim - rng.uniform(*brighter, GRID.size**2)
    gx, gy = np.meshgrid(GRID, GRID)
    dx, dy = _offsets(rng, GRID.size**2, 2.5 * FWHM_PX)
    t = _forced(tmp_path, config, _field(bright), gx.ravel() + dx, gy.ravel() + dy, seed=seed)
    flags = np.asarray(t["flag"])
    unflagged_det = np.asarray(t["is_detection"]) & ((flags & Flag.CONTAMINATED) == 0)
    assert np.count_nonzero(unflagged_det) <= len(t) // 10


def test_faint_star_next_to_a_bright_one_is_right_or_flagged(tmp_path, config) -> None:
    """Stars 4 mag fainter than a neighbour 2.5 FWHM away (faint V 14-19.5). Tolerance
    (issue #10): measured magnitude within 0.05 mag of the truth, or flagged CONTAMINATED.
    Measured: all 25 flagged; they come out 0.017-0.254 mag too bright (median 0.124; a
    noiseless Gaussian pair gives 0.09 mag at r = 1.25 FWHM).
    """
    rng = np.random.default_rng(7)
    faint_mag = rng.uniform(14.0, 19.5, GRID.size**2)
    gx, gy = np.meshgrid(GRID, GRID)
    dx, dy = _offsets(rng, GRID.size**2, 2.5 * FWHM_PX)
    fx, fy = gx.ravel() + dx, gy.ravel() + dy
    faint = Table({"x": fx, "y": fy, "mag": faint_mag})
    t = _forced(tmp_path, config, _field(faint_mag - 4.0, faint), fx, fy, seed=7)
    error = np.abs(np.asarray(t["calibrated_mag"]) - faint_mag)
    flagged = (np.asarray(t["flag"]) & Flag.CONTAMINATED) != 0
    assert np.all((error <= 0.05) | flagged)


def test_isolated_positions_are_not_flagged(tmp_path, config) -> None:
    """Control: blank positions 25 px (7.8 FWHM) from the same bright stars, and the
    isolated field stars, are not CONTAMINATED (their neighbours' light is ~0)."""
    rng = np.random.default_rng(4)
    lim = _limit_5sigma(tmp_path, config)
    gx, gy = np.meshgrid(GRID, GRID)
    dx, dy = _offsets(rng, GRID.size**2, 25.0)
    fx, fy = np.meshgrid(GRID[:-1] + 50.0, GRID[:-1] + 50.0)
    xs = np.r_[gx.ravel() + dx, fx.ravel()]
    ys = np.r_[gy.ravel() + dy, fy.ravel()]
    t = _forced(tmp_path, config, _field(lim - rng.uniform(4.0, 5.0, GRID.size**2)), xs, ys, seed=4)
    assert not np.any(np.asarray(t["flag"]) & Flag.CONTAMINATED)


def test_offset_fraction_agrees_with_a_rendered_gaussian() -> None:
    """Reference: the light of a rendered (erf-integrated) Gaussian star inside an offset
    circle, summed with sep-like exact pixels (fine grid). Tolerance 5 % relative, or
    1e-5 absolute for the far wings."""
    from soapd.testing.synth import render_stars

    fwhm, radius = 3.2, 4.0
    profile = enclosed_profile(None, fwhm)
    oversample = 8
    n = 64 * oversample
    image = render_stars((n, n), [n / 2], [n / 2], [1.0], fwhm_px=fwhm * oversample)
    yy, xx = np.mgrid[:n, :n]
    for d in (0.0, 2.0, 5.0, 8.0, 10.0):
        inside = np.hypot(xx - n / 2 - d * oversample, yy - n / 2) <= radius * oversample
        expected = image[inside].sum()
        got = float(offset_fraction(profile, radius, np.array([d]))[0])
        assert got == pytest.approx(expected, rel=0.05, abs=1e-5)


def test_contamination_skips_the_target_itself_and_sums_neighbours() -> None:
    profile = enclosed_profile(None, 3.0)
    xy = np.array([[10.0, 10.0], [10.5, 10.0], [17.5, 10.0]])
    total = np.array([1e6, 1e6, 2e4])
    light = contamination_e(np.array([10.0]), np.array([10.0]), 4.0, xy, total, profile=profile)
    expected = 2e4 * offset_fraction(profile, 4.0, np.array([7.5]))[0]
    assert light[0] == pytest.approx(expected)
