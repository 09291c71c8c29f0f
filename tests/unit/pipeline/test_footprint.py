"""Frame footprint and the far-from-frame cut of forced positions (astropy's angular_separation)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from soapd.pipeline.forced import _place, frame_footprint
from soapd.pipeline.zeropoint import robust_sigma


def _tan_wcs(ra_deg: float, dec_deg: float, scale_deg: float = 1.0 / 3600.0) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra_deg, dec_deg]
    w.wcs.crpix = [512.5, 512.5]
    w.wcs.cdelt = [-scale_deg, scale_deg]
    return w


@pytest.mark.parametrize(
    ("ra", "dec"), [(0.01, 0.0), (359.99, 45.0), (120.0, 89.9), (210.0, -60.0)]
)
def test_footprint_radius_is_the_great_circle_distance_to_the_farthest_corner(ra, dec) -> None:
    """Reference: SkyCoord.separation of the centre and the four corner pixels.
    Tolerance 1e-9 deg (float noise of two formulas, far below a pixel)."""
    w = _tan_wcs(ra, dec)
    c_ra, c_dec, radius = frame_footprint(w, (1024, 1024))
    corners = w.pixel_to_world([0, 1023, 0, 1023], [0, 0, 1023, 1023])
    centre = w.pixel_to_world(511.5, 511.5)
    assert c_ra == pytest.approx(centre.ra.deg % 360.0, abs=1e-9)
    assert c_dec == pytest.approx(centre.dec.deg, abs=1e-9)
    assert radius == pytest.approx(centre.separation(corners).deg.max(), abs=1e-9)
    # a 1024 px frame at 1"/px: half-diagonal ~ 0.2011 deg
    assert radius == pytest.approx(1023 / 2 * np.sqrt(2) / 3600, rel=1e-3)


def test_positions_far_outside_the_frame_are_not_placed() -> None:
    """A TAN projection maps the antipode back onto the image; it must come out as NaN."""
    w = _tan_wcs(30.0, 10.0)
    ra = np.array([30.0, 30.05, 210.0, 30.0])
    dec = np.array([10.0, 10.05, -10.0, 10.6])
    x, y = _place(w, (1024, 1024), ra, dec)
    assert np.isfinite(x[:2]).all()
    assert np.isfinite(y[:2]).all()
    assert np.isnan(x[2:]).all()
    assert np.isnan(y[2:]).all()
    assert (
        SkyCoord(30 * u.deg, 10 * u.deg).separation(SkyCoord(30 * u.deg, 10.6 * u.deg)).deg
        > 1.5 * 0.2011
    )


def test_robust_sigma_is_mad_std_and_nan_when_empty() -> None:
    from astropy.stats import mad_std

    r = np.random.default_rng(3).normal(0.0, 0.05, 101)
    assert robust_sigma(r) == mad_std(r)
    assert np.isnan(robust_sigma(np.zeros(0)))
