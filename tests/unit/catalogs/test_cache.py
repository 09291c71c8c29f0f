"""Sky tiles and the on-disk tile cache (atomic writes, reuse, expiry)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table

from soapd.catalogs.cache import Tile, TileCache, angular_sep_deg, tiles_for_cone
from soapd.errors import CatalogError


@pytest.mark.parametrize(
    ("ra", "dec", "radius"),
    [
        (135.55, 49.84, 0.3),
        (0.05, 0.0, 0.4),
        (359.9, -30.0, 0.2),
        (10.0, 89.8, 0.5),
        (200.0, -89.9, 0.3),
    ],
)
def test_tiles_for_cone_cover_every_point_exactly_once(rng, ra, dec, radius):
    size = 0.5
    tiles = tiles_for_cone(ra, dec, radius, size)
    # random points in the cone (uniform in a small-angle disk, then on the sphere)
    n = 2000
    rr = radius * np.sqrt(rng.uniform(0, 1, n)) * 0.999
    th = rng.uniform(0, 2 * np.pi, n)
    dec_p = np.clip(dec + rr * np.sin(th), -90, 90)
    ra_p = (ra + rr * np.cos(th) / max(np.cos(np.radians(dec_p)).min(), 1e-3)) % 360
    inside = angular_sep_deg(ra, dec, ra_p, dec_p) <= radius
    ra_p, dec_p = ra_p[inside], dec_p[inside]
    counts = np.zeros(len(ra_p), int)
    for t in tiles:
        counts += t.contains(ra_p, dec_p)
    assert np.all(counts == 1)


def test_tile_radius_encloses_tile_corners():
    t = Tile(0.5, 200, 17)
    (r0, r1), (d0, d1) = t.ra_range, t.dec_range
    ra_c, dec_c = t.center
    corners = angular_sep_deg(ra_c, dec_c, [r0, r0, r1, r1], [d0, d1, d0, d1])
    assert np.all(corners <= t.radius_deg)


def test_angular_sep_deg_agrees_with_skycoord_everywhere(rng):
    n = 500
    ra1, ra2 = rng.uniform(0, 360, n), rng.uniform(0, 360, n)
    dec1, dec2 = np.degrees(np.arcsin(rng.uniform(-1, 1, (2, n))))
    # plus the hard cases: identical points, antipodes, the poles, across RA = 0
    ra1 = np.concatenate([ra1, [10.0, 10.0, 0.0, 359.9999]])
    dec1 = np.concatenate([dec1, [20.0, 20.0, 90.0, 0.0]])
    ra2 = np.concatenate([ra2, [10.0, 190.0, 180.0, 0.0001]])
    dec2 = np.concatenate([dec2, [20.0, -20.0, -90.0, 0.0]])
    want = SkyCoord(ra1, dec1, unit="deg").separation(SkyCoord(ra2, dec2, unit="deg")).deg
    got = angular_sep_deg(ra1, dec1, ra2, dec2)
    assert got.dtype == np.float64
    assert np.allclose(got, want, rtol=0, atol=1e-12)
    assert got[-4:] == pytest.approx([0.0, 180.0, 180.0, 0.0002], abs=1e-9)
    assert angular_sep_deg(1.0, 2.0, [1.0, 1.0], [2.0, 3.0]).shape == (2,)


def _table() -> Table:
    t = Table()
    t["RAJ2000"] = [1.0, 1.1]
    t["g'mag"] = MaskedColumn([15.0, 16.0], mask=[False, True], unit="mag")
    t["B-V"] = [0.5, 0.7]
    t.meta["truncated"] = False
    return t


def test_cache_put_get_round_trips_masks_and_awkward_names(tmp_path):
    cache = TileCache(tmp_path)
    tile = Tile(0.5, 100, 3)
    cols = ("RAJ2000", "g'mag", "B-V")
    cache.put("apass", tile, cols, _table())
    got = cache.get("apass", tile, cols)
    assert got is not None
    assert got["g'mag"].mask.tolist() == [False, True]
    assert got["B-V"][1] == 0.7
    assert not list(cache.path("apass", tile, cols).parent.glob("*.part"))


def test_cache_key_depends_on_columns(tmp_path):
    cache = TileCache(tmp_path)
    tile = Tile(0.5, 100, 3)
    cache.put("apass", tile, ("a",), _table())
    assert cache.get("apass", tile, ("a", "b")) is None
    assert cache.get("apass", Tile(0.5, 100, 4), ("a",)) is None
    assert cache.get("ps1", tile, ("a",)) is None


def test_cache_failed_write_keeps_old_tile_and_leaves_no_partial_file(tmp_path, monkeypatch):
    """A write that dies half-way (disk full) leaves the previous tile intact, no .part file."""
    cache = TileCache(tmp_path)
    tile = Tile(0.5, 100, 3)
    cache.put("apass", tile, ("a",), _table())

    def half_write(fh, table):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("soapd.catalogs.cache._write_npz", half_write)
    with pytest.raises(CatalogError, match="No space left"):
        cache.put("apass", tile, ("a",), _table())
    got = cache.get("apass", tile, ("a",))
    assert got is not None
    assert len(got) == 2
    assert not list(cache.path("apass", tile, ("a",)).parent.glob("*.part"))


def test_cache_unwritable_dir_raises_catalog_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = TileCache(blocker)
    with pytest.raises(CatalogError, match="cache_dir"):
        cache.put("apass", Tile(0.5, 1, 1), ("a",), _table())


def test_cache_ttl_expires_old_tiles(tmp_path):
    cache = TileCache(tmp_path, ttl_days=1.0)
    tile = Tile(0.5, 100, 3)
    p = cache.put("apass", tile, ("a",), _table())
    assert cache.get("apass", tile, ("a",)) is not None
    old = time.time() - 2 * 86400
    os.utime(p, (old, old))
    assert cache.get("apass", tile, ("a",)) is None


def test_cache_corrupt_tile_is_treated_as_missing(tmp_path):
    cache = TileCache(tmp_path)
    tile = Tile(0.5, 100, 3)
    p = cache.put("apass", tile, ("a",), _table())
    p.write_bytes(b"PK\x03\x04 truncated zip")
    assert cache.get("apass", tile, ("a",)) is None


def test_cache_entries_lists_tiles(tmp_path):
    cache = TileCache(tmp_path)
    cache.put("apass", Tile(0.5, 1, 1), ("a",), _table())
    cache.put("ps1", Tile(0.5, 1, 2), ("a",), _table())
    assert sorted(e[0] for e in cache.entries()) == ["apass", "ps1"]
