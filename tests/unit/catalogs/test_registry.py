"""The catalog registry: chains, identification of local tables."""

from __future__ import annotations

import pytest

from soapd.catalogs.registry import (
    CATALOGS,
    default_chain,
    identify_columns,
    identify_id,
    spec,
)
from soapd.errors import CatalogError


def test_default_chain_r_is_refcat2_first_gaia_last():
    assert default_chain("r") == ["refcat2", "ps1", "skymapper", "apass", "gaia_synth"]


def test_default_chain_every_name_is_registered():
    for band in "ugrizyUBVRIG":
        for name in default_chain(band):
            assert name in CATALOGS, (band, name)
        assert default_chain(band), band


def test_default_chain_unknown_band_is_empty():
    assert default_chain("Halpha") == []


def test_spec_unknown_name_lists_known_catalogs():
    with pytest.raises(CatalogError, match="known catalogs: apass"):
        spec("sdss_dr99")


@pytest.mark.parametrize(
    ("table_id", "name"),
    [
        ("II_336_apass9", "apass"),
        ("II/336/apass9", "apass"),
        ("J_ApJ_867_105_refcat2", "refcat2"),
        ("I/360/syntphot", "gaia_synth"),
        ("ii/349/ps1", "ps1"),
    ],
)
def test_identify_id_astroquery_and_vizier_spellings(table_id, name):
    found = identify_id(table_id)
    assert found is not None
    assert found.name == name


def test_identify_columns_apass_like_table():
    cols = ["RAJ2000", "DEJ2000", "Vmag", "e_Vmag", "Bmag", "e_Bmag", "g'mag", "r'mag", "i'mag"]
    found = identify_columns(cols)
    assert found is not None
    assert found.name == "apass"


def test_identify_columns_unknown_returns_none():
    assert identify_columns(["ra", "dec", "mag"]) is None


def test_columns_include_u_e_flags_and_cut_columns():
    cols = spec("apass").columns
    assert "u_e_g'mag" in cols
    assert "B-V" in cols
    assert cols[:2] == ("RAJ2000", "DEJ2000")
