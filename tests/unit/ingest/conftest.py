"""Fixtures for the inbox and file-registration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(name="fits_payload")
def fixture_fits_payload() -> bytes:
    """A small valid FITS image as bytes (float32, 32 x 32)."""
    import io

    import numpy as np
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(32 * 32, dtype=np.float32).reshape(32, 32)).writeto(buf)
    return buf.getvalue()
