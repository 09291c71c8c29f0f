"""Errors: sep's C errors become ExtractionError in the sep wrapper; bugs propagate as themselves."""

from __future__ import annotations

import types

import numpy as np
import pytest

from soapd.errors import ExtractionError
from soapd.pipeline import limits, photometry, process_frame, sep_wrapper
from soapd.pipeline.sep_wrapper import PixelBufferFull


def _broken_numpy(name: str) -> types.SimpleNamespace:
    """Return a stand-in for the ``np`` module whose function ``name`` raises TypeError."""

    def broken(*args, **kwargs):
        raise TypeError(f"deliberate bug in np.{name}")

    return types.SimpleNamespace(**{**vars(np), name: broken})


def test_sep_c_error_becomes_extraction_error_naming_the_call() -> None:
    data = np.ones((50, 50))
    with pytest.raises(ExtractionError, match=r"^sep\.sum_circle failed: invalid aperture"):
        sep_wrapper.sum_circle(data, [10.0], [10.0], -3.0)


def test_sep_argument_errors_are_not_converted() -> None:
    """sep's own argument checks raise ValueError: a bug in our call, so it stays ValueError."""
    data = np.ones((50, 50))
    with pytest.raises(ValueError, match="size of mask"):
        sep_wrapper.background(data, mask=np.zeros((10, 10), bool), mesh_px=16, filter_size=3)


def test_pixel_buffer_overflow_is_its_own_extraction_error() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(0.0, 1.0, (200, 200))
    with pytest.raises(PixelBufferFull, match=r"^sep\.extract failed: internal pixel buffer full"):
        sep_wrapper.extract(data, 0.01, pixstack=100, err=1.0, segmentation_map=True)
    objects, segmap = sep_wrapper.extract(
        data, 5.0, pixstack=100_000, err=1.0, segmentation_map=True
    )
    assert segmap.shape == data.shape
    assert len(objects) < 10


def test_numpy_bug_in_aperture_photometry_propagates_as_itself(
    monkeypatch, injected_field, config
) -> None:
    """np.clip runs right after sep.sum_circle in measure_apertures (once inside a broad
    ``except Exception`` that reported "sep aperture photometry failed")."""
    path, _ = injected_field
    monkeypatch.setattr(photometry, "np", _broken_numpy("clip"))
    with pytest.raises(TypeError, match=r"deliberate bug in np\.clip") as info:
        process_frame(path, config=config())
    assert not isinstance(info.value, ExtractionError)
    assert any("'photometry'" in note for note in info.value.__notes__)


def test_numpy_bug_in_blank_sky_limits_propagates_as_itself(
    monkeypatch, injected_field, config
) -> None:
    """blank_sky's numpy work was inside ``except Exception`` ("sep failed while sampling
    blank sky"); a bug there must now surface as the TypeError it is."""
    path, _ = injected_field
    monkeypatch.setattr(limits, "np", _broken_numpy("concatenate"))
    with pytest.raises(TypeError, match=r"deliberate bug in np\.concatenate") as info:
        process_frame(path, config=config())
    assert any("'limits'" in note for note in info.value.__notes__)
