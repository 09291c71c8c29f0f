"""Stage ``quality``: reject a frame that has too few usable pixels to measure."""

from __future__ import annotations

from soapd.errors import FrameRejected
from soapd.pipeline.context import Context, need

__all__ = ["MIN_USABLE_FRACTION", "stage_quality"]

#: Fewest usable (unmasked) pixels, as a fraction of the frame, worth measuring.
MIN_USABLE_FRACTION = 0.01


def stage_quality(ctx: Context) -> Context:
    """Return ``ctx``; raise FrameRejected when fewer than 1 % of the pixels are usable."""
    frame = need(ctx.frame, "frame")
    if (~frame.mask).mean() < MIN_USABLE_FRACTION:
        raise FrameRejected(f"{frame.path}: fewer than 1 % of the pixels are usable")
    return ctx
