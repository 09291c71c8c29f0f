"""The four-panel debug figure: every layer drawn, calibrators used and rejected (B22)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from soapd.catalogs import CatalogService
from soapd.config import Config
from soapd.errors import FrameUnreadable
from soapd.output.debug import debug_image
from soapd.output.debug_figure import (
    APERTURES_GID,
    CAL_REJECTED_GID,
    CAL_USED_GID,
    CATALOG_GID,
    SOURCES_GID,
    DebugLayers,
    draw_debug_figure,
    panel,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _collections(fig: Any, index: int) -> dict[str, Any]:
    return {c.get_gid(): c for c in panel(fig, index).collections if c.get_gid()}


def _points(coll: Any) -> np.ndarray:
    """Return the (x, y) data positions drawn by a scatter or a circle collection."""
    if coll.get_paths() and hasattr(coll, "get_offsets") and len(coll.get_offsets()) > 1:
        return np.asarray(coll.get_offsets())
    return np.array([p.vertices.mean(axis=0) for p in coll.get_paths()])


def test_draw_debug_figure_draws_every_marker_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(100.0, 5.0, (80, 120))
    x = np.array([10.0, 30.0, 50.0, 70.0, 90.0])
    y = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    layers = DebugLayers(
        image_adu=image,
        background_adu=np.full_like(image, 100.0),
        background_rms_adu=np.full_like(image, 5.0),
        source_x_px=x,
        source_y_px=y,
        aperture_radius_px=4.0,
        used_x_px=x[:3],
        used_y_px=y[:3],
        rejected_x_px=x[3:],
        rejected_y_px=y[3:],
        catalog_x_px=np.append(x, 110.0),
        catalog_y_px=np.append(y, 70.0),
        zp_mag=21.5,
        zp_err_mag=0.02,
        catalog_name="apass",
    )
    out = tmp_path / "d" / "fig.png"
    fig = draw_debug_figure(layers, out)
    assert out.read_bytes()[:8] == PNG
    p3, p4 = _collections(fig, 3), _collections(fig, 4)
    assert len(p3[SOURCES_GID].get_paths()) == 5
    assert len(p3[APERTURES_GID].get_paths()) == 5
    assert len(p4[CAL_USED_GID].get_paths()) == 3
    assert np.allclose(np.sort(p4[CAL_REJECTED_GID].get_offsets()[:, 0]), [70.0, 90.0])
    assert len(p4[CATALOG_GID].get_offsets()) == 6
    texts = " ".join(t.get_text() for t in panel(fig, 4).texts)
    assert "Aperture: 4.00 px" in texts
    assert "ZP 21.500" in texts
    assert "RMS 5.00" in panel(fig, 2).get_title()


def test_draw_debug_figure_uses_wcs_axes_when_celestial(make_frame: Callable[..., Any]) -> None:
    frame = make_frame((64, 64), stars=2, seed=4)
    wcs = _wcs(frame.header)
    data = frame.data_adu.astype(float)
    fig = draw_debug_figure(DebugLayers(image_adu=data, background_adu=data * 0, wcs=wcs))
    assert hasattr(panel(fig, 1), "coords")


def _shifted_catalog(src: Path, dest: Path, n_bad: int) -> tuple[Path, Table]:
    """Copy the demo catalog with the V magnitudes of its ``n_bad`` brightest stars +1.5 mag."""
    cat = Table.read(src, format="ascii.ecsv")
    bad = np.argsort(np.asarray(cat["Vmag"], dtype=float))[:n_bad]
    cat["Vmag"][bad] += 1.5
    cat.write(dest, format="ascii.ecsv", overwrite=True)
    return dest, cat[bad]


def test_debug_image_b22_draws_used_and_rejected_calibrators(
    demo: Any, config: Callable[..., Config], tmp_path: Path
) -> None:
    """skynetsoap B22: panel 4 never drew the catalog matches.

    Three catalog stars get V 1.5 mag too faint: the robust zero-point fit must
    clip them, and panel 4 must show them as rejected at their pixel positions.
    """
    path, bad = _shifted_catalog(demo.catalog_path, tmp_path / "cat.ecsv", 3)
    cfg = config(calibration={"catalog_files": [str(path)], "online": False})
    catalogs = CatalogService(cfg.calibration, cfg.paths.catalog_cache_dir)
    frame = demo.frames[0].path
    out = tmp_path / "debug.png"
    fig = debug_image(frame, out, config=cfg, catalogs=catalogs)
    assert out.read_bytes()[:8] == PNG
    p4 = _collections(fig, 4)
    used = p4[CAL_USED_GID]
    rejected = np.asarray(p4[CAL_REJECTED_GID].get_offsets())
    assert len(used.get_paths()) >= 20
    assert len(rejected) >= 3
    wcs = _wcs(_header(frame))
    bx, by = wcs.world_to_pixel_values(np.asarray(bad["RAJ2000"]), np.asarray(bad["DEJ2000"]))
    for x, y in zip(bx, by, strict=True):
        assert np.min(np.hypot(rejected[:, 0] - x, rejected[:, 1] - y)) < 1.0
    assert len(p4[CATALOG_GID].get_offsets()) >= len(used.get_paths())
    assert "used" in " ".join(t.get_text() for t in panel(fig, 4).texts)


def _wcs(header: Any) -> WCS:
    """Return the header's WCS, quiet about astropy's DATE-OBS -> MJD-OBS fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def _header(path: Path) -> Any:
    from astropy.io import fits

    return fits.getheader(path)


def test_debug_image_missing_file_is_a_clear_error(config: Callable[..., Config]) -> None:
    with pytest.raises(FrameUnreadable, match="not found"):
        debug_image(Path("/nonexistent/frame.fits"), config=config())


def test_info_box_and_legends_sit_in_the_corners_with_fewest_sources() -> None:
    """Stars crowd the upper half: panel 4's box and legend, and panel 3's legend, go below."""
    rng = np.random.default_rng(5)
    image = rng.normal(100.0, 5.0, (100, 100))
    x = rng.uniform(0.0, 100.0, 60)
    y = rng.uniform(70.0, 100.0, 60)  # every source in the upper 30 %
    x = np.append(x, 90.0)  # one in the lower right: the lower left is the emptiest
    y = np.append(y, 10.0)
    fig = draw_debug_figure(
        DebugLayers(
            image_adu=image,
            background_adu=np.full_like(image, 100.0),
            source_x_px=x,
            source_y_px=y,
            used_x_px=x[:5],
            used_y_px=y[:5],
            zp_mag=21.0,
            zp_err_mag=0.01,
        )
    )
    p3, p4 = panel(fig, 3), panel(fig, 4)
    (box,) = [t for t in p4.texts if "Aperture:" in t.get_text()]
    assert box.get_position() == (0.02, 0.02)  # lower left, in axes fraction
    assert (box.get_ha(), box.get_va()) == ("left", "bottom")
    assert p3.get_legend()._loc == 3  # "lower left"
    assert p4.get_legend()._loc == 4  # "lower right", the next emptiest
