"""Cosmic rays and galaxies are not stars (issue #10): morphology flags and the FWHM.

Synthetic truth: soapd.testing.synth (stars, Gaussian PSF) and soapd.testing.artifacts
(cosmic-ray tracks, exponential-disc galaxies). Before #10 soapd reported every cosmic
ray of such a frame as a source (47 of 50 unflagged at S/N >= 5, with magnitudes).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from scipy.spatial import cKDTree

from soapd.config import CalibrationConfig
from soapd.flags import Flag
from soapd.models import Target
from soapd.pipeline import process_frame
from soapd.pipeline.crossmatch import select_calibrators
from soapd.pipeline.fwhm import gaussian_peak_fraction
from soapd.pipeline.morphology import cosmic_ray_dominated
from soapd.testing.artifacts import add_cosmic_rays, render_galaxies
from soapd.testing.synth import make_frame, random_stars, render_stars, wcs_of, write_frame

#: Pixel-integrated FWHM of the synthetic 3.5 px Gaussian: sqrt(3.5^2 + 2.3548^2 / 12).
FWHM_TRUE_PX = math.hypot(3.5, 2.3548 / math.sqrt(12.0))
MORPH = int(Flag.COSMIC_RAY | Flag.EXTENDED)


@pytest.fixture(name="cr_frame", scope="module")
def fixture_cr_frame(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Table, Table, Table]:
    """A 2048^2 frame: 5000 stars (V 11.5-20.5, as bench/bench_process.py), 40 galaxies
    (V 15-19, r_eff 2.5-6 px) and 50 cosmic rays (1-6 px tracks, 500-15000 ADU per pixel)
    at least 15 px from any star or galaxy. Returns (path, stars, cosmic rays, galaxies)."""
    rng = np.random.default_rng(5)
    n = 2048
    stars = random_stars(5000, (n, n), rng=rng, mag_range=(11.5, 20.5))
    frame = make_frame((n, n), stars=stars, rng=rng, fwhm_px=3.5)
    gx, gy = rng.uniform(30, n - 30, 40), rng.uniform(30, n - 30, 40)
    gmag = rng.uniform(15.0, 19.0, 40)
    galaxies_e = render_galaxies(
        (n, n),
        gx,
        gy,
        60.0 * 10 ** (-0.4 * (gmag - 23.0)),
        r_eff_px=rng.uniform(2.5, 6.0, 40),
        axis_ratio=rng.uniform(0.4, 1.0, 40),
        theta_rad=rng.uniform(0, np.pi, 40),
        fwhm_px=3.5,
    )
    data = frame.data_adu + rng.poisson(galaxies_e) / 1.5
    avoid = np.column_stack([np.r_[frame.truth["x"], gx], np.r_[frame.truth["y"], gy]])
    data, crs = add_cosmic_rays(data, 50, rng=rng, avoid_xy=avoid, avoid_px=15.0)
    tmp = tmp_path_factory.mktemp("cr")
    path = write_frame(tmp / "cr2k.fits", data.astype(np.float32), frame.header)
    return path, frame.truth, crs, Table({"x": gx, "y": gy, "mag": gmag})


def _rows_near(table: Table, x: np.ndarray, y: np.ndarray, radius_px: float) -> np.ndarray:
    """Index of the table row nearest each (x, y), -1 when none is within ``radius_px``."""
    dist, idx = cKDTree(np.column_stack([table["x_pix"], table["y_pix"]])).query(
        np.column_stack([x, y])
    )
    return np.where(dist < radius_px, idx, -1)


def test_cosmic_rays_flagged_stars_not_on_a_2k_frame(cr_frame, config) -> None:
    """Reference: injected truth. Tolerances (issue #10): <= 2 of the 50 cosmic rays
    unflagged at S/N >= 5; >= 97 % of isolated (nothing within 12 px), unsaturated,
    detected stars without COSMIC_RAY or EXTENDED. Measured: 50 of 50 cosmic rays
    detected and flagged (0 unflagged); 1 of 2667 isolated stars flagged (EXTENDED,
    at the frame's edge): 99.96 % unflagged.
    """
    path, stars, crs, galaxies = cr_frame
    t = process_frame(path, config=config()).table
    flags, snr = np.asarray(t["flag"]), np.asarray(t["snr"])
    cr_rows = _rows_near(t, crs["x"], crs["y"], 2.0)
    found = cr_rows[cr_rows >= 0]
    assert len(found) >= 45
    unflagged = (flags[found] & Flag.COSMIC_RAY) == 0
    assert np.count_nonzero(unflagged & (snr[found] >= 5)) <= 2
    sx, sy = np.asarray(stars["x"]), np.asarray(stars["y"])
    others = np.column_stack([np.r_[crs["x"], galaxies["x"]], np.r_[crs["y"], galaxies["y"]]])
    star_xy = np.column_stack([sx, sy])
    isolated = cKDTree(star_xy).query(star_xy, k=2)[0][:, 1] > 12
    isolated &= cKDTree(others).query(star_xy)[0] > 12
    isolated &= ~np.asarray(stars["saturated"])
    rows = _rows_near(t, sx[isolated], sy[isolated], 1.0)
    rows = rows[rows >= 0]
    assert len(rows) > 2000
    assert np.mean((flags[rows] & MORPH) == 0) >= 0.97


def test_fwhm_from_stars_only_and_galaxies_flagged_on_the_2k_frame(cr_frame, config) -> None:
    """Reference: the PSF's pixel-integrated FWHM, 3.565 px. Tolerance 15 % (issue #10;
    measured 3.567 px from 39 stars). No FWHM star lies within 5 px of a cosmic ray or a
    galaxy. Galaxies: at least 30 of 40 flagged EXTENDED (measured 37), none COSMIC_RAY.
    """
    path, _, crs, galaxies = cr_frame
    result = process_frame(path, config=config())
    s, t = result.summary, result.table
    assert s.fwhm_source == "stars"
    assert s.fwhm_px == pytest.approx(FWHM_TRUE_PX, rel=0.15)
    assert s.n_fwhm_stars >= 10
    flags = np.asarray(t["flag"])
    g_rows = _rows_near(t, galaxies["x"], galaxies["y"], 3.0)
    g_rows = g_rows[g_rows >= 0]
    assert np.count_nonzero(flags[g_rows] & Flag.EXTENDED) >= 30
    assert not np.any(flags[g_rows] & Flag.COSMIC_RAY)
    # the FWHM stars are stars: rerun the stages to see which detections they were
    from soapd.pipeline import STAGES, run_frame
    from soapd.pipeline.context import Context

    names = [n for n, _ in STAGES]
    ctx, _ = run_frame(Context(path=path, config=config()), STAGES[: names.index("fwhm") + 1])
    assert ctx.fwhm is not None
    assert ctx.detections is not None
    used = ctx.detections.objects[ctx.fwhm.index]
    bad = np.column_stack([np.r_[crs["x"], galaxies["x"]], np.r_[crs["y"], galaxies["y"]]])
    dist, _ = cKDTree(bad).query(np.column_stack([used["x"], used["y"]]))
    assert np.all(dist > 5.0)


def test_forced_target_on_a_cosmic_ray_is_flagged(tmp_path, config) -> None:
    """A cosmic ray (3 px, 3000 ADU each) on blank sky at a target's position makes a
    'detection' there: the forced row is flagged COSMIC_RAY. Targets on a real star and on
    blank sky are not. Reference: the injected positions."""
    rng = np.random.default_rng(2)
    stars = random_stars(40, (256, 256), rng=rng, mag_range=(14.0, 17.0), border_px=20)
    frame = make_frame((256, 256), stars=stars, seed=3)
    tree = cKDTree(np.column_stack([frame.truth["x"], frame.truth["y"]]))
    grid = np.array([(x, y) for x in range(30, 226, 5) for y in range(30, 226, 5)], float)
    blank = grid[tree.query(grid)[0] > 15]
    (cx, cy), (bx, by) = blank[0], blank[-1]  # two blank spots, far apart
    data = frame.data_adu.astype(np.float64)
    data[int(cy), int(cx) - 1 : int(cx) + 2] += 3000.0  # a 3 px horizontal track
    path = write_frame(tmp_path / "cr.fits", data.astype(np.float32), frame.header)
    wcs = wcs_of(frame.header)
    xs = np.array([cx, frame.truth["x"][0], bx])
    ys = np.array([cy, frame.truth["y"][0], by])
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    targets = [Target(name=n, ra_deg=r, dec_deg=d) for n, r, d in zip("CSB", ra, dec, strict=True)]
    t = process_frame(path, config=config(), targets=targets, zeropoint=23.0).table
    forced = {row["target_name"]: int(row["flag"]) for row in t[t["is_forced"]]}
    on_cr = t[t["target_name"] == "C"][0]
    assert on_cr["snr"] > 10
    assert forced["C"] & Flag.COSMIC_RAY
    assert not forced["S"] & Flag.COSMIC_RAY
    assert not forced["B"] & Flag.COSMIC_RAY
    det = t[~t["is_forced"]]
    i = int(np.argmin(np.hypot(det["x_pix"] - cx, det["y_pix"] - cy)))
    assert det["flag"][i] & Flag.COSMIC_RAY


@pytest.mark.parametrize("seed", range(6))
def test_too_few_stars_fall_back_to_the_configured_fwhm(tmp_path, config, seed) -> None:
    """One star and 30 cosmic rays (1-6 px; their 3-6 px blobs have r50 ~ 0.8-1 px, like
    an undersampled star): no stellar locus, so the FWHM is photometry.fallback_fwhm_px
    (source "configured", 0 stars, a note) and the aperture is fwhm_factor x that.
    Before the wing test, 3 of these 6 frames got a 'FWHM' of 0.9-1.7 px from cosmic rays.
    """
    stars = Table({"x": [128.0], "y": [128.0], "mag": [15.0]})
    frame = make_frame((256, 256), stars=stars, seed=seed)
    data, _ = add_cosmic_rays(
        frame.data_adu, 30, rng=np.random.default_rng(seed), avoid_xy=[[128, 128]], avoid_px=10
    )
    path = write_frame(tmp_path / "one.fits", data.astype(np.float32), frame.header)
    cfg = config(photometry={"fallback_fwhm_px": 6.0})
    s = process_frame(path, config=cfg).summary
    assert s.fwhm_source == "configured"
    assert s.fwhm_px == 6.0
    assert s.n_fwhm_stars == 0
    assert s.aperture_radii_px == (7.5,)
    assert any("fallback_fwhm_px = 6 px" in n for n in s.notes)


def test_flagged_detections_are_never_calibrators() -> None:
    """select_calibrators drops COSMIC_RAY and EXTENDED sources as 'flagged'."""
    ra = 150.0 + np.arange(4) * 0.01
    sources = Table(
        {
            "ra": ra,
            "dec": np.full(4, 20.0),
            "ins_mag": np.full(4, -8.0),
            "ins_mag_err": np.full(4, 0.01),
            "flag": [0, int(Flag.COSMIC_RAY), int(Flag.EXTENDED), 0],
            "snr": np.full(4, 100.0),
        }
    )
    stars = Table(
        {
            "ra_deg": ra,
            "dec_deg": np.full(4, 20.0),
            "mag": np.full(4, 15.0),
            "mag_err": np.full(4, 0.02),
        }
    )
    sel = select_calibrators(sources, stars, CalibrationConfig())
    assert sorted(sel.src_idx.tolist()) == [0, 3]
    assert sel.removed == {"flagged": 2}


def test_gaussian_peak_fraction_matches_a_rendered_star() -> None:
    """Reference: render_stars (erf pixel integration). Tolerance 1 % (pixel integration of
    the wings is the only difference)."""
    for fwhm in (2.0, 3.5, 8.0):
        image = render_stars((81, 81), [40.0], [40.0], [1.0], fwhm_px=fwhm)
        yy, xx = np.mgrid[:81, :81]
        inside = np.hypot(xx - 40, yy - 40) <= fwhm
        expected = image[40, 40] / image[inside].sum()
        assert float(gaussian_peak_fraction(fwhm / 2.0)) == pytest.approx(expected, rel=0.05)


def test_cosmic_ray_dominated_cases() -> None:
    """Half the flux, or the detection itself, made by a cosmic ray inside the aperture."""
    x = np.array([10.0, 10.0, 10.0, 10.0])
    y = np.zeros(4)
    flux = np.array([1000.0, 1000.0, 1000.0, 100.0])
    err = np.full(4, 50.0)
    cr_x = np.array([12.0, 40.0])
    cr_y = np.zeros(2)
    cr_flux = np.array([600.0, 5000.0])
    out = cosmic_ray_dominated(x, y, flux, err, 4.0, cr_x, cr_y, cr_flux, snr_threshold=3.0)
    assert out.tolist() == [True, True, True, True]
    out = cosmic_ray_dominated(
        x, y, flux, err, 4.0, cr_x, cr_y, np.array([100.0, 5000.0]), snr_threshold=3.0
    )
    # 100 e- of 1000: neither half nor decisive; of 100 e- (S/N 2): not a detection anyway
    assert out.tolist() == [False, False, False, True]
    far = cosmic_ray_dominated(
        x, y, flux, err, 4.0, np.array([30.0]), np.zeros(1), np.array([900.0]), snr_threshold=3.0
    )
    assert not far.any()
