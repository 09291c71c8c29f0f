"""soapd's pipeline with SExtractor's settings against SExtractor on a real CCD frame.

Reference: ``tests/data/sep`` (sep's comparison set: SExtractor 2.8.6 catalogue of a real
ESO NTT/EMMI frame, 65 objects). Tolerances are sep's own (``test.py::test_vs_sextractor``):
positions 1e-3 px, FLUX_APER rtol 2e-4; the background must equal SExtractor's
BACKGROUND check-image.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning

from soapd.flags import Flag
from soapd.pipeline import process_frame
from soapd.pipeline.background import measure_background
from soapd.pipeline.frame import load_frame

DATA = Path(__file__).resolve().parents[1] / "data" / "sep"

#: SExtractor's default.sex expressed as soapd config. GAIN 0 (no Poisson term) -> gain 1,
#: which only changes errors. SExtractor flags pixels above SATUR_LEVEL but does not mask
#: them, so soapd's masking is moved above the data (the frame peaks at 98215 ADU).
SEXTRACTOR_SETTINGS = {
    "frame": {"saturation_adu": 1e9, "saturation_fraction": 1.0, "gain_e_per_adu": 1.0},
    "extraction": {
        "thresh_sigma": 1.5,
        "minarea_px": 5,
        "filter_kernel": "default",
        "deblend_cont": 1.0,
        "clean": True,
        "clean_param": 1.0,
        "back_size_px": 64,
        "back_filter_size": 3,
        "noise": "global",
        "blank_sky_correction": False,
    },
    "photometry": {
        "aperture_mode": "fixed",
        "fixed_radius_px": 5.0,
        "subpix": 5,
        "aperture_correction": False,
        "edge_margin_px": 0.0,
    },
}


def _catalogue() -> Table:
    names = [
        "NUMBER",
        "X_IMAGE",
        "Y_IMAGE",
        "XWIN_IMAGE",
        "YWIN_IMAGE",
        "X2_IMAGE",
        "Y2_IMAGE",
        "XY_IMAGE",
        "ERRX2_IMAGE",
        "ERRY2_IMAGE",
        "ERRXY_IMAGE",
        "A_IMAGE",
        "FLUX_APER",
        "FLUXERR_APER",
        "KRON_RADIUS",
        "FLUX_AUTO",
        "FLUXERR_AUTO",
        "FLUX_RADIUS_1",
        "FLUX_RADIUS_2",
        "FLUX_RADIUS_3",
        "FLAGS",
    ]
    data = np.loadtxt(DATA / "image.cat", comments="#")
    cat = Table(data, names=names)
    cat.sort("Y_IMAGE")
    return cat


@pytest.fixture(name="sex_config")
def fixture_sex_config(config):
    """Config with SExtractor's settings of default.sex."""
    return config(**SEXTRACTOR_SETTINGS)


def test_background_equals_sextractor_back_fits(sex_config) -> None:
    """sep background through soapd (BACK_SIZE 64, BACK_FILTERSIZE 3) == back.fits.

    Reference: SExtractor BACKGROUND check-image; tolerance: float32 rounding (rtol 1e-6).
    """
    frame = load_frame(DATA / "image.fits", config=sex_config.frame)
    bkg = measure_background(frame.data_e, frame.mask, back_size_px=64, back_filter_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # ESO-LOG cards in the header
        back = fits.getdata(DATA / "back.fits").astype(np.float64)
    np.testing.assert_allclose(bkg.back_e, back, rtol=1e-6)
    assert bkg.global_back_e == pytest.approx(6852.05, abs=0.01)
    assert bkg.global_rms_e == pytest.approx(65.46, abs=0.01)


def test_process_frame_matches_sextractor_catalogue(sex_config) -> None:
    """Same 65 objects; x/y within 1e-3 px of X/Y_IMAGE - 1; flux within rtol 2e-4 of FLUX_APER.

    Reference: tests/data/sep/image.cat (SExtractor 2.8.6, PHOT_APERTURES 10 px diameter);
    tolerances from sep's test_vs_sextractor. Exactly 4 objects have truncated apertures.
    """
    result = process_frame(DATA / "image.fits", config=sex_config)
    table = result.table
    assert result.summary.n_sources == 65
    assert len(table) == 65
    table.sort("y_pix")
    cat = _catalogue()
    np.testing.assert_allclose(table["x_pix"], cat["X_IMAGE"] - 1.0, atol=1e-3)
    np.testing.assert_allclose(table["y_pix"], cat["Y_IMAGE"] - 1.0, atol=1e-3)
    np.testing.assert_allclose(table["flux"], cat["FLUX_APER"], rtol=2e-4)
    assert np.all(table["aperture_radius"] == 5.0)
    truncated = (np.asarray(table["flag"]) & int(Flag.APER_TRUNC)) != 0
    assert truncated.sum() == 4
