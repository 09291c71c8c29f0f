"""Fixtures for the inbox and file-registration tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves threads running (observers, servers)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left running: {extra}")


@pytest.fixture(name="fits_payload")
def fixture_fits_payload() -> bytes:
    """A small valid FITS image as bytes (float32, 32 x 32)."""
    import io

    import numpy as np
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(32 * 32, dtype=np.float32).reshape(32, 32)).writeto(buf)
    return buf.getvalue()
