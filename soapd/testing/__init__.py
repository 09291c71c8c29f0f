"""Helpers for tests, the fake Skynet server and the demo (synthetic frames)."""

from soapd.testing.synth import (
    SynthFrame,
    make_frame,
    make_header,
    random_stars,
    render_stars,
    write_frame,
    write_synthetic,
)

__all__ = [
    "SynthFrame",
    "make_frame",
    "make_header",
    "random_stars",
    "render_stars",
    "write_frame",
    "write_synthetic",
]
