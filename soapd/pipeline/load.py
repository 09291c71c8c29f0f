"""Stage ``load``: read the FITS file into a :class:`~soapd.pipeline.frame.Frame`.

The reading itself (HDU choice, gain, saturation, time, filter, WCS, overscan) is
:func:`soapd.pipeline.frame.load_frame`.
"""

from __future__ import annotations

from dataclasses import replace

from soapd.pipeline.context import Context
from soapd.pipeline.frame import load_frame

__all__ = ["stage_load"]


def stage_load(ctx: Context) -> Context:
    """Read the FITS file (pixels in electrons); keep the reader's notes."""
    frame = load_frame(ctx.path, config=ctx.config.frame, meta=ctx.meta)
    return replace(ctx, frame=frame, notes=ctx.notes + frame.notes)
