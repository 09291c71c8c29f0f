"""Photometry of a stacked cutout with the single-frame pipeline.

The co-add (:mod:`soapd.stacks.combine`) is in electrons of one ``T``-second
exposure, so it is handed to the pipeline's own stages as a frame with gain 1:
background, detection, blank-sky mask, FWHM, apertures and their correction,
forced photometry at the target, the CCD error model
(:mod:`soapd.pipeline.photometry`), blank-sky and analytic limits
(:mod:`soapd.pipeline.limits`) and the result table are exactly those of single
frames. Only two stages differ: there is no file to load (the frame is built
here), and the zero point is not fitted to catalogue stars (a cutout holds too
few) but is the common zero point of the members, with their combined
calibration uncertainty (:class:`~soapd.pipeline.calibrate.Calibration`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from astropy.wcs import WCS

from soapd.config import Config
from soapd.models import FrameResult, Target
from soapd.pipeline import STAGES, Stage, run_frame
from soapd.pipeline.calibrate import Calibration
from soapd.pipeline.context import Context
from soapd.pipeline.frame import Frame

__all__ = ["measure_stack", "stack_frame"]


def stack_frame(
    data_e: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    saturated: npt.NDArray[np.bool_],
    wcs: WCS,
    *,
    label: str,
    exptime_s: float,
    mid_time_utc: datetime,
    telescope: str,
    band: str,
    notes: tuple[str, ...] = (),
) -> Frame:
    """Return the co-add as a pipeline :class:`~soapd.pipeline.frame.Frame` (gain 1, no RN)."""
    header = wcs.to_header(relax=True)
    header["EXPTIME"] = (exptime_s, "[s] total exposure of the stack")
    header["FILTER"] = band
    header["TELESCOP"] = telescope
    header["GAIN"] = (1.0, "[e-/ADU] pixels are electrons")
    data = np.ascontiguousarray(data_e, np.float64).copy()
    data[mask] = 0.0
    return Frame(
        path=Path(label),
        data_e=data,
        mask=np.asarray(mask, bool),
        saturated=np.asarray(saturated, bool),
        header=fits.Header(header),
        wcs=wcs,
        gain_e_per_adu=1.0,
        gain_source="stack",
        read_noise_e=0.0,
        read_noise_source="stack",
        saturation_adu=math.inf,
        saturation_source="stack",
        exptime_s=exptime_s,
        mid_time_utc=mid_time_utc,
        time_source="stack:weighted mid-exposure",
        filter_raw=band,
        band=band,
        telescope=telescope,
        overscan_adu=0.0,
        notes=notes,
    )


def _stages(calibration: Calibration) -> tuple[Stage, ...]:
    """Return the single-frame chain: no ``load``; ``calibrate`` gives the members' zero point."""

    def calibrate(ctx: Context) -> Context:
        aps = ctx.apertures
        n_r = len(aps.radii_px) if aps is not None else 1
        return replace(ctx, calibrations=(calibration,) * n_r)

    chain: list[Stage] = []
    for name, fn in STAGES:
        if name == "load":
            continue
        if name == "calibrate":
            chain.append((name, calibrate))
        else:
            chain.append((name, fn))
    return tuple(chain)


def measure_stack(
    frame: Frame, target: Target, *, calibration: Calibration, config: Config
) -> FrameResult:
    """Run the pipeline on a stacked ``frame``; return its result (target rows + field sources).

    Raise the pipeline's errors (:class:`~soapd.errors.SoapdError` subclasses) with
    the stage name prefixed, as for single frames.
    """
    # sep allocates its whole pixel stack on every extraction (about 50 ms for the default
    # million pixels); no object in a cutout can hold more pixels than the cutout has.
    npix = max(10_000, frame.shape[0] * frame.shape[1])
    if config.extraction.pixstack > npix:
        config = config.replace(extraction=replace(config.extraction, pixstack=npix))
    ctx = Context(
        path=frame.path,
        config=config,
        targets=(target,),
        zeropoint=calibration.zp_mag,
        frame=frame,
        notes=frame.notes,
    )
    ctx, timings = run_frame(ctx, _stages(calibration))
    result = ctx.result
    if result is None:  # pragma: no cover - the table stage always sets it
        raise RuntimeError("stack measurement finished without a result")
    return FrameResult(summary=result.summary, table=result.table, timings_s=timings)
