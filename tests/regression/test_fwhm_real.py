"""The FWHM comes from stars, and cosmic rays are not stars, on two real CCD frames (#10).

Data: tests/data/sep/image.fits (ESO NTT/EMMI, sep's SExtractor set) and
tests/data/images/saao1m_a8280271_raw.fits (SAAO 1.0 m raw frame, overscan on); see
their PROVENANCE.md. Before issue #10 soapd measured 7.07 px on the NTT frame (3 of its
6 "stars" were galaxies) and 1.16 px on the SAAO frame (from 4 cosmic rays).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soapd.flags import Flag
from soapd.pipeline import process_frame

DATA = Path(__file__).resolve().parents[1] / "data"
NTT = DATA / "sep" / "image.fits"
SAAO = DATA / "images" / "saao1m_a8280271_raw.fits"


def test_ntt_fwhm_is_the_stellar_fwhm(config) -> None:
    """Reference: 2.2 px, the stellar FWHM of the issue (stars 2.15-2.27 px); Gaussian fits
    (astropy LevMarLSQ, 2-D Gaussian + constant) of the two brightest isolated unsaturated
    stars, at (148.2, 32.5) and (75.6, 150.2), give 2.27 and 2.18 px. Tolerance 15 %.
    Measured: 2.23 px from 3 locus stars (core fits 2.23, 2.26, 2.22; 2 r50 of the same
    stars: 2.6-3.0 px, their wings count).
    """
    s = process_frame(NTT, config=config()).summary
    assert s.fwhm_source == "stars"
    assert s.n_fwhm_stars >= 2
    assert s.fwhm_px == pytest.approx(2.2, rel=0.15)


def test_saao_raw_fwhm_is_the_stellar_fwhm_and_its_cosmic_rays_are_flagged(config) -> None:
    """Reference: about 9 px (the issue; 2 r50 of the two bright stars at (153.3, 38.3) and
    (434.8, 433.2) is 9.5 and 9.6 px, their core fits 8.43 and 8.70 px). Tolerance 15 %.
    The frame's other compact detections are cosmic rays (peak / flux 0.3-1.0 against
    0.014 for the stars): at least 8 are flagged COSMIC_RAY, the two stars are not.
    Measured: 8.57 px from those 2 stars; 12 cosmic rays flagged.
    """
    result = process_frame(SAAO, config=config(frame={"overscan": True}))
    s, t = result.summary, result.table
    assert s.fwhm_source == "stars"
    assert s.fwhm_px == pytest.approx(9.0, rel=0.15)
    flags = np.asarray(t["flag"])
    assert np.count_nonzero(flags & Flag.COSMIC_RAY) >= 8
    for x, y in ((153.3, 38.3), (434.8, 433.2)):
        i = int(np.argmin(np.hypot(t["x_pix"] - x, t["y_pix"] - y)))
        assert np.hypot(t["x_pix"][i] - x, t["y_pix"][i] - y) < 1.0
        assert not flags[i] & (Flag.COSMIC_RAY | Flag.EXTENDED)
