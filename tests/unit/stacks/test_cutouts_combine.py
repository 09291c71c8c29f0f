"""Cutouts, alignment (shift = reproject_exact; adaptive conserves flux) and the co-add."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.wcs import WCS

from soapd.config import Config
from soapd.pipeline.frame import load_frame
from soapd.stacks import Cutout, align, coadd, cut_frame, scale_factor, subtract_background
from soapd.stacks.align import Aligned, translation_px
from soapd.testing.synth import make_frame, make_header, render_stars, wcs_of, write_frame

WHEN = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def _cutout(data: np.ndarray, wcs: WCS, *, mask: np.ndarray | None = None) -> Cutout:
    m = np.zeros(data.shape, bool) if mask is None else mask
    return Cutout(
        frame_id=1,
        data_e=np.where(m, 0.0, data),
        mask=m,
        saturated=np.zeros(data.shape, bool),
        wcs=wcs,
        x_px=data.shape[1] / 2,
        y_px=data.shape[0] / 2,
        exptime_s=60.0,
        mid_time_utc=WHEN,
        background_subtracted=True,
        sky_rms_e=1.0,
    )


def _grid(shape: tuple[int, int], **kw) -> WCS:
    return wcs_of(make_header(shape, **kw))


def test_shift_equals_reproject_exact(rng: np.random.Generator) -> None:
    """A translated grid: the fast shift path gives reproject_exact's pixels (to 1e-6 of peak)."""
    src_shape, out_shape = (90, 90), (64, 64)
    src = _grid(src_shape)
    data = rng.normal(0.0, 10.0, src_shape) + render_stars(
        src_shape, [40.3, 51.7], [44.6, 30.2], [5e4, 2e4], fwhm_px=3.0
    )
    grid = _grid(out_shape)
    grid.wcs.crpix = grid.wcs.crpix + np.array([0.37, -0.62])
    dx, dy, departure = translation_px(grid, src, out_shape)
    assert departure < 1e-3
    assert (dx, dy) == pytest.approx((13.0 - 0.37, 13.0 + 0.62), abs=1e-6)
    fast = align(_cutout(data, src), grid, out_shape, method="auto", shift_tolerance_px=0.02)
    exact = align(_cutout(data, src), grid, out_shape, method="exact", shift_tolerance_px=0.02)
    assert fast.method == "shift"
    assert exact.method == "exact"
    assert np.max(np.abs(fast.data_e - exact.data_e)) < 1e-6 * np.max(np.abs(data))
    assert not fast.mask.any()
    # Flux is conserved (the star is well inside both grids).
    assert fast.data_e.sum() == pytest.approx(exact.data_e.sum(), rel=1e-6)


def test_rotated_grid_uses_adaptive_and_conserves_flux() -> None:
    """A grid rotated by 30 degrees with 1.3x larger pixels: total star flux kept to 1 %."""
    src_shape = (120, 120)
    src = _grid(src_shape)
    star = render_stars(src_shape, [60.2], [59.7], [1e5], fwhm_px=3.5)
    grid = _grid((48, 48), rotation_deg=30.0, pixscale_arcsec=1.3)
    out = align(_cutout(star, src), grid, (48, 48), method="auto", shift_tolerance_px=0.02)
    assert out.method == "adaptive"
    assert out.data_e.sum() == pytest.approx(1e5, rel=0.01)
    exact = align(_cutout(star, src), grid, (48, 48), method="exact", shift_tolerance_px=0.02)
    assert exact.data_e.sum() == pytest.approx(1e5, rel=0.01)


@pytest.mark.parametrize("method", ["auto", "adaptive"])
def test_masked_input_pixels_mask_what_they_touch(method: str) -> None:
    shape = (40, 40)
    src = _grid(shape)
    data = np.full(shape, 5.0)
    mask = np.zeros(shape, bool)
    mask[20, 20] = True
    grid = _grid((30, 30))
    grid.wcs.crpix = grid.wcs.crpix + np.array([0.5, 0.5])
    out = align(
        _cutout(data, src, mask=mask), grid, (30, 30), method=method, shift_tolerance_px=0.02
    )
    assert out.mask.any()
    assert out.mask.sum() <= 16
    assert np.all(out.data_e[out.mask] == 0.0)
    # Away from the bad pixel, a flat image stays flat.
    assert np.allclose(out.data_e[~out.mask][:50], 5.0, rtol=0.02)


def test_cut_frame_reasons_and_box(tmp_path) -> None:
    cfg = Config()
    path = write_frame(
        tmp_path / "f.fits",
        *make_frame((200, 200), stars=None, center_ra_deg=150.0, center_dec_deg=20.0, seed=1)[:2],
    )
    frame = load_frame(path, config=cfg.frame)
    box = cut_frame(frame, 150.0, 20.0, frame_id=7, size_px=64)
    assert isinstance(box, Cutout)
    assert box.shape == (64, 64)
    assert abs(box.x_px - 32) <= 1
    assert abs(box.y_px - 32) <= 1
    assert box.frame_id == 7
    assert cut_frame(frame, 151.0, 20.0, frame_id=7, size_px=64) == "not covered (OFF_FRAME)"
    # Near the edge: the box runs off the frame; those pixels are masked.
    w = frame.wcs
    ra, dec = w.all_pix2world([[3.0, 100.0]], 0)[0]
    edge = cut_frame(frame, float(ra), float(dec), frame_id=7, size_px=64)
    assert isinstance(edge, Cutout)
    assert edge.mask[:, :20].all()
    sat = np.zeros(frame.shape, bool)
    sat[100, 103] = True
    from dataclasses import replace

    saturated = replace(frame, saturated=sat, mask=frame.mask | sat)
    cx, cy = w.all_world2pix([[150.0, 20.0]], 0)[0]
    assert abs(cx - 99.5) < 1
    assert abs(cy - 99.5) < 1
    assert (
        cut_frame(saturated, 150.0, 20.0, frame_id=7, size_px=64, saturation_radius_px=5)
        == "saturated at target"
    )
    nowcs = replace(frame, wcs=None)
    assert cut_frame(nowcs, 150.0, 20.0, frame_id=7, size_px=64) == "not covered (NO_WCS)"


def test_background_subtraction_of_a_cutout(rng: np.random.Generator) -> None:
    data = rng.normal(300.0, 17.0, (128, 128))
    sub = subtract_background(_cutout(data, _grid((128, 128))), back_size_px=64, back_filter_size=3)
    assert sub.background_subtracted
    assert abs(float(np.median(sub.data_e))) < 1.0
    assert sub.sky_rms_e == pytest.approx(17.0, rel=0.05)


def _aligned(value: float, shape=(8, 8), mask=None) -> Aligned:
    m = np.zeros(shape, bool) if mask is None else mask
    return Aligned(
        data_e=np.where(m, 0.0, np.full(shape, value)),
        mask=m,
        saturated=np.zeros(shape, bool),
        method="shift",
    )


def test_coadd_of_equal_frames_is_their_sum() -> None:
    """Four equal frames of 60 s on one zero point, scaled to 240 s: the stack is the sum."""
    s = scale_factor(60.0, 23.0, ref_exptime_s=240.0, ref_zp_mag=23.0)
    st = coadd([_aligned(10.0)] * 4, [s] * 4, [5.0] * 4, weighting="inverse_variance")
    assert np.allclose(st.data_e, 40.0)
    assert st.weights == pytest.approx((0.25,) * 4)
    assert not st.mask.any()


def test_coadd_scales_to_the_common_zero_point_and_weights_by_inverse_variance() -> None:
    """A frame with a zero point 0.5 mag lower holds 10**-0.2 of the electrons; scaled, it agrees."""
    low = 10 ** (-0.4 * 0.5)
    s_good = scale_factor(60.0, 23.0, ref_exptime_s=120.0, ref_zp_mag=23.0)
    s_low = scale_factor(60.0, 22.5, ref_exptime_s=120.0, ref_zp_mag=23.0)
    assert s_low == pytest.approx(s_good / low)
    st = coadd(
        [_aligned(10.0), _aligned(10.0 * low)],
        [s_good, s_low],
        [5.0, 5.0],
        weighting="inverse_variance",
    )
    assert np.allclose(st.data_e, 20.0)
    # Weights: 1 / (s sigma)^2, so the low-zero-point frame counts 10**-0.4 as much.
    assert st.weights[1] / st.weights[0] == pytest.approx(low**2)
    eq = coadd(
        [_aligned(10.0), _aligned(10.0 * low)], [s_good, s_low], [5.0, 5.0], weighting="equal"
    )
    assert eq.weights == (0.5, 0.5)


def test_coadd_masked_pixels() -> None:
    mask = np.zeros((8, 8), bool)
    mask[2, 3] = True
    a, b = _aligned(10.0, mask=mask), _aligned(12.0)
    st = coadd([a, b], [2.0, 2.0], [1.0, 1.0], weighting="inverse_variance")
    assert st.data_e[2, 3] == pytest.approx(24.0)
    assert st.data_e[0, 0] == pytest.approx(22.0)
    assert st.coverage[2, 3] == pytest.approx(0.5)
    assert not st.mask[2, 3]
    both = coadd([a, _aligned(12.0, mask=mask)], [2.0, 2.0], [1.0, 1.0], weighting="equal")
    assert both.mask[2, 3]
    assert both.data_e[2, 3] == 0.0
    sat = Aligned(data_e=a.data_e, mask=a.mask, saturated=mask.copy(), method="shift")
    with_sat = coadd([sat, b], [1.0, 1.0], [1.0, 1.0], weighting="equal")
    assert with_sat.mask[2, 3]
    assert with_sat.saturated[2, 3]
    with pytest.raises(ValueError, match="nothing"):
        coadd([], [], [], weighting="equal")
    assert math.isclose(sum(st.weights), 1.0)
