"""Tests of soapd.testing.synth: the synthetic frames other tests rely on."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from soapd.testing.synth import make_frame, render_stars, write_frame


def test_render_stars_integrates_to_flux() -> None:
    """A star well inside the image sums to its flux (erf integration, rtol 1e-9)."""
    image = render_stars((64, 64), [31.3], [30.7], [1234.5], fwhm_px=3.0)
    assert image.sum() == pytest.approx(1234.5, rel=1e-9)
    iy, ix = np.unravel_index(np.argmax(image), image.shape)
    assert (iy, ix) == (31, 31)


def test_make_frame_is_deterministic_with_seed() -> None:
    a = make_frame((64, 64), stars=5, seed=3)
    b = make_frame((64, 64), stars=5, seed=3)
    c = make_frame((64, 64), stars=5, seed=4)
    np.testing.assert_array_equal(a.data_adu, b.data_adu)
    assert not np.array_equal(a.data_adu, c.data_adu)


def test_make_frame_noiseless_sky_and_gain() -> None:
    """Without noise every empty pixel is sky_e / gain + bias exactly."""
    f = make_frame(
        (32, 32), stars=None, sky_e=300.0, gain_e_per_adu=2.0, bias_adu=100.0, noise=False
    )
    np.testing.assert_allclose(f.data_adu, 250.0)


def test_make_frame_noise_matches_ccd_equation() -> None:
    """Empty-sky pixel rms = sqrt(sky + rn^2)/gain (tolerance 2 %, 65k pixels)."""
    f = make_frame((256, 256), stars=None, sky_e=400.0, read_noise_e=8.0, gain_e_per_adu=2.0)
    expected = np.sqrt(400.0 + 64.0) / 2.0
    assert np.std(f.data_adu) == pytest.approx(expected, rel=0.02)


def test_make_frame_stars_from_radec_and_mag_land_at_wcs_positions() -> None:
    stars = Table({"ra": [150.0, 150.01], "dec": [20.0, 20.005], "mag": [15.0, 16.0]})
    f = make_frame((256, 256), stars=stars, zeropoint_mag=23.0, exptime_s=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(f.header)
    x, y = wcs.all_world2pix([150.0, 150.01], [20.0, 20.005], 0)
    np.testing.assert_allclose(f.truth["x"], x)
    np.testing.assert_allclose(f.truth["y"], y)
    np.testing.assert_allclose(f.truth["flux_e"], 10.0 * 10 ** (-0.4 * (np.array([15, 16]) - 23)))


def test_make_frame_saturation_clips_and_marks_truth() -> None:
    stars = Table({"x": [50.0, 100.0], "y": [50.0, 100.0], "flux_e": [1e7, 1e3]})
    f = make_frame((160, 160), stars=stars, saturation_adu=30000.0)
    assert f.data_adu.max() == 30000.0
    assert list(f.truth["saturated"]) == [True, False]


def test_make_frame_omit_keys_and_nans() -> None:
    f = make_frame((64, 64), stars=0, omit_keys=("GAIN", "EXPTIME"), nan_fraction=0.1)
    assert "GAIN" not in f.header
    assert "EXPTIME" not in f.header
    assert 0.05 < np.isnan(f.data_adu).mean() < 0.15


@pytest.mark.parametrize("name", ["f.fits", "f.fits.gz", "f.fits.bz2", "f.fits.fz"])
def test_write_frame_round_trips_losslessly(tmp_path, name: str) -> None:
    f = make_frame((64, 48), stars=3, seed=1)
    path = write_frame(tmp_path / name, f.data_adu, f.header)
    with fits.open(path) as hdul:
        hdu = hdul[-1]
        np.testing.assert_array_equal(hdu.data, f.data_adu)
        assert hdu.header["GAIN"] == f.header["GAIN"]


def test_conftest_fixtures_build_frames_and_config(fits_file, config) -> None:
    path, truth = fits_file(stars=4, shape=(64, 64))
    assert path.exists()
    assert len(truth) == 4
    cfg = config(photometry={"aperture_mode": "fixed"})
    assert cfg.photometry.aperture_mode == "fixed"
