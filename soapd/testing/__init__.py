"""Helpers for tests, the fake Skynet server and the demo (synthetic frames)."""

from soapd.testing.synth import (
    SynthFrame,
    inject_stars,
    make_frame,
    make_header,
    mid_exposure,
    random_stars,
    render_stars,
    wcs_of,
    write_frame,
    write_synthetic,
)

__all__ = [
    "SynthFrame",
    "inject_stars",
    "make_frame",
    "make_header",
    "mid_exposure",
    "random_stars",
    "render_stars",
    "wcs_of",
    "write_frame",
    "write_synthetic",
]
