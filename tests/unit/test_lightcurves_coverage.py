"""`extract`/`--backfill` go by the stored footprints (issue 10): only frames whose footprint
holds the position are opened, and a limit is given only where the frame covered it."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from soapd.flags import Flag
from soapd.lightcurves import backfill_target, covers, extract_lightcurve, footprint_contains
from soapd.models import FrameResult, Target
from soapd.output.export import write_table
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result
from soapd.testing.synth import make_header, wcs_of
from soapd.timeutil import mjd_of

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
RA0, DEC0 = 150.0, -30.0


def _box(half_deg: float, ra: float = RA0, dec: float = DEC0) -> tuple[tuple[float, float], ...]:
    c = np.cos(np.radians(dec))
    return (
        (ra + half_deg / c, dec - half_deg),
        (ra - half_deg / c, dec - half_deg),
        (ra - half_deg / c, dec + half_deg),
        (ra + half_deg / c, dec + half_deg),
    )


@pytest.mark.parametrize(
    ("ra", "dec", "rotation"), [(0.0, 0.0, 0.0), (359.99, 30.0, 35.0), (120.0, 89.8, 10.0)]
)
def test_footprint_contains_agrees_with_the_wcs_pixel_grid(
    ra: float, dec: float, rotation: float
) -> None:
    """Reference: astropy's world2pix. 2000 random points around a 400 x 300 px frame at
    2"/px (across RA = 0 and near the pole); points within 0.5 px of an edge are skipped."""
    shape = (300, 400)
    header = make_header(
        shape, center_ra_deg=ra, center_dec_deg=dec, pixscale_arcsec=2.0, rotation_deg=rotation
    )
    w = wcs_of(header)
    xs = np.array([-0.5, 399.5, 399.5, -0.5])
    ys = np.array([-0.5, -0.5, 299.5, 299.5])
    cra, cdec = w.all_pix2world(xs, ys, 0)
    corners = tuple(zip(cra.tolist(), cdec.tolist(), strict=True))
    rng = np.random.default_rng(1)
    px = rng.uniform(-100, 500, 2000)
    py = rng.uniform(-100, 400, 2000)
    pra, pdec = w.all_pix2world(px, py, 0)
    inside = (px > -0.5) & (px < 399.5) & (py > -0.5) & (py < 299.5)
    margin = np.minimum.reduce([px + 0.5, 399.5 - px, py + 0.5, 299.5 - py])
    clear = np.abs(margin) > 0.5
    got = np.array([footprint_contains(corners, a, d) for a, d in zip(pra, pdec, strict=True)])
    assert np.array_equal(got[clear], inside[clear])
    assert inside.sum() > 500
    assert not footprint_contains(corners, (ra + 180.0) % 360.0, -dec)
    assert not footprint_contains(corners[:2], ra, dec)


def _frame(
    store: Store,
    tmp_path: Path,
    i: int,
    sources: list[tuple[float, float, float]],
    *,
    footprint=(),
    covered=(),
    flags: int = 0,
    table_path: str | None = None,
    forced: dict | None = None,
) -> int:
    """Store a processed frame with a field-wide table of ``sources`` (ra, dec, mag)."""
    mid = T0 + timedelta(hours=i)
    mags = {f"s{k}": m for k, (_, _, m) in enumerate(sources)}
    pos = {f"s{k}": (ra, dec) for k, (ra, dec, _) in enumerate(sources)}
    res = target_result(mags, positions=pos, mid_time_utc=mid, image_file=f"f{i}.fits")
    t = res.table
    t["is_forced"] = False
    t["target_name"] = ""
    t["mjd"] = mjd_of(mid)
    if forced is not None:  # one forced row of a target at the position, with these flags
        row = dict(zip(t.colnames, t[0], strict=True)) | forced
        t.add_row([row[c] for c in t.colnames])
    summary = replace(
        res.summary, footprint_deg=footprint, covered_footprint_deg=covered, flags=flags
    )
    fid = register_frame(store, f"f{i}", mid_time_utc=mid)
    if table_path is None:
        table_path = str(write_table(t, tmp_path / f"f{i}.parquet"))
    store.save_result(
        fid,
        FrameResult(summary=summary, table=Table(rows=[], names=t.colnames)),
        config_hash="h",
        soapd_version="t",
        table_path=table_path,
    )
    return fid


AROUND = [(RA0 + 0.05, DEC0 + 0.05, 15.0), (RA0 - 0.05, DEC0 - 0.05, 15.5)]
AROUND.append((RA0 + 0.05, DEC0 - 0.05, 16.0))


def test_extract_uses_footprints_and_covered_parts(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    big, inner = _box(0.1), _box(0.09)
    # a frame centred 0.095 deg east: the position is between its covered part and its edge
    east = RA0 + 0.095 / np.cos(np.radians(DEC0))
    with Store(tmp_path / "s.db") as store:
        detected = _frame(store, tmp_path, 0, [(RA0, DEC0, 17.0), *AROUND], footprint=big,
                          covered=inner)  # fmt: skip
        limit = _frame(store, tmp_path, 1, AROUND, footprint=big, covered=inner)
        # the position is in the edge buffer of this frame: no limit
        # (a truncated source there is no measurement either)
        edge = [(RA0, DEC0, 17.0), *AROUND]
        _frame(store, tmp_path, 2, edge, footprint=_box(0.1, ra=east), covered=_box(0.09, east))
        # another field: its table is never opened (the path does not even exist)
        _frame(store, tmp_path, 3, AROUND, footprint=_box(0.1, ra=200.0), covered=_box(0.09, 200.0),
               table_path=str(tmp_path / "missing.parquet"))  # fmt: skip
        # no WCS: skipped, although its sources' bounding box holds the position
        _frame(store, tmp_path, 4, AROUND, flags=int(Flag.NO_WCS))
        # a forced row at the position says the frame did not cover it (NaN pixels)
        _frame(
            store,
            tmp_path,
            5,
            [(RA0 + 1 / 3600, DEC0, 19.0), *AROUND],
            footprint=big,
            covered=inner,
            forced={
                "is_forced": True,
                "target_name": "T",
                "ra": RA0,
                "dec": DEC0,
                "flag": int(Flag.NOT_COVERED | Flag.MASKED_APERTURE),
            },
        )
        # processed before footprints were stored: the bounding box of its sources decides
        legacy = _frame(store, tmp_path, 6, AROUND)
        lc = extract_lightcurve(store, RA0, DEC0, radius_arcsec=2.0)
        assert lc["frame_id"].tolist() == [detected, limit, legacy]
        assert lc["is_detection"].tolist() == [True, False, False]
        assert "missing.parquet" not in caplog.text
        store.upsert_target(Target(name="LATE", ra_deg=RA0, dec_deg=DEC0))
        assert backfill_target(store, "LATE", radius_arcsec=2.0) == 3
        back = store.lightcurve("LATE")
        assert back["frame_id"].tolist() == [detected, limit, legacy]
        assert np.isfinite(back["limiting_mag"]).all()


def test_covers_ignores_forced_rows_that_hold_far_away_positions() -> None:
    """A target once forced at a far position must not stretch the sources' bounding box."""
    t = Table(
        {
            "ra": [RA0 + 0.05, RA0 - 0.05, RA0 + 0.05, RA0 + 5.0],
            "dec": [DEC0 + 0.05, DEC0 - 0.05, DEC0 - 0.05, DEC0 + 5.0],
            "is_forced": [False, False, False, True],
        }
    )
    assert covers(t, RA0, DEC0)
    assert not covers(t, RA0 + 2.0, DEC0 + 2.0)
