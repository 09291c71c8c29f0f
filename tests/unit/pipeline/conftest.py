"""Fixtures for pipeline tests: a matched injected field and its measured table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from soapd.testing.synth import make_frame, random_stars, write_frame

#: Truth of the standard injected field: FWHM, sky, detector, zero point.
FIELD = {
    "fwhm_px": 3.5,
    "sky_e": 300.0,
    "read_noise_e": 6.0,
    "gain_e_per_adu": 1.5,
    "exptime_s": 60.0,
    "zeropoint_mag": 23.0,
}


def isolated_stars(n: int, rng: np.random.Generator, *, mags: tuple[float, float]) -> Table:
    """Return ``n`` stars at least 30 px apart and 30 px from the edges of a 512x512 frame."""
    return random_stars(n, (512, 512), rng=rng, mag_range=mags, border_px=30, min_sep_px=30)


@pytest.fixture(name="field")
def fixture_field() -> dict[str, float]:
    """Truth parameters of the standard synthetic field (FWHM, sky, detector, zero point)."""
    return dict(FIELD)


@pytest.fixture(name="isolated")
def fixture_isolated():
    """Factory: isolated(n, rng, mags=(lo, hi)) -> star table 30 px apart (512x512 frame)."""
    return isolated_stars


@pytest.fixture(name="injected_field")
def fixture_injected_field(tmp_path: Path) -> tuple[Path, Table]:
    """A 512x512 synthetic frame of 60 isolated stars (mag 15-19.5) and its truth table."""
    rng = np.random.default_rng(7)
    stars = isolated_stars(60, rng, mags=(15.0, 19.5))
    frame = make_frame((512, 512), stars=stars, seed=11, **FIELD)
    path = write_frame(tmp_path / "field.fits", frame.data_adu, frame.header)
    return path, frame.truth
