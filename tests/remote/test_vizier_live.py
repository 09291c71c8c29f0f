"""Live VizieR queries (network; deselected by default: run with ``-m remote_data``)."""

from __future__ import annotations

import numpy as np
import pytest

from soapd.catalogs import CatalogService
from soapd.config import CalibrationConfig

pytestmark = pytest.mark.remote_data

EY_UMA = {"ra_deg": 135.5509, "dec_deg": 49.8429, "radius_deg": 0.1}


@pytest.mark.parametrize(
    ("catalog", "band"),
    [
        ("apass", "V"),
        ("apass", "r"),
        ("refcat2", "r"),
        ("ps1", "i"),
        ("gaia_synth", "R"),
        ("gaia_dr3", "G"),
    ],
)
def test_live_vizier_returns_usable_stars_then_serves_from_cache(tmp_path, catalog, band):
    cfg = CalibrationConfig(online=True, timeout_s=60.0, tile_deg=0.25)
    svc = CatalogService(cfg, tmp_path)
    stars = svc.stars(catalog, band=band, **EY_UMA)
    assert len(stars) > 5
    assert np.isfinite(stars["mag"]).sum() > 5
    assert svc.network_calls >= 1
    again = CatalogService(cfg, tmp_path).stars(catalog, band=band, **EY_UMA)
    assert len(again) == len(stars)


def test_live_skymapper_outside_footprint_is_a_catalog_error(tmp_path):
    from soapd.errors import CatalogError

    svc = CatalogService(CalibrationConfig(online=True, timeout_s=60.0), tmp_path)
    with pytest.raises(CatalogError, match="no stars"):
        svc.stars("skymapper", band="r", ra_deg=135.55, dec_deg=75.0, radius_deg=0.05)
