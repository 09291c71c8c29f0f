"""The value threaded through the pipeline stages, and its intermediate records.

Each stage module (see :data:`soapd.pipeline.STAGES`) takes a :class:`Context` and
returns a new one with its product filled in; :func:`need` fetches an earlier
stage's product. The records of the science modules are imported for type checking
only, so that every stage module can import this one without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from soapd.config import Config
    from soapd.models import ExposureMeta, FrameResult, Target
    from soapd.pipeline.apcorr import CurveOfGrowth
    from soapd.pipeline.background import Background
    from soapd.pipeline.calibrate import Calibration, ReferenceProvider
    from soapd.pipeline.detect import Detections
    from soapd.pipeline.frame import Frame
    from soapd.pipeline.fwhm import FwhmEstimate
    from soapd.pipeline.limits import BlankSky
    from soapd.pipeline.morphology import Morphology

__all__ = ["Apertures", "Blocks", "Context", "Forced", "Limits", "need"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
T = TypeVar("T")


def need(value: T | None, what: str) -> T:
    """Return ``value``; raise RuntimeError when an earlier stage has not produced it."""
    if value is None:  # pragma: no cover - a programming error in STAGES
        raise RuntimeError(f"stage order: {what} is not available yet")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Apertures:
    """The radii of this frame, the calibration radius and the aperture corrections."""

    radii_px: tuple[float, ...]
    cal_index: int
    ap_corr_mag: tuple[float, ...]
    corrected: bool
    cog: CurveOfGrowth | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Forced:
    """Requested sky positions and where they land on the frame (0-based px)."""

    names: tuple[str, ...]
    ra_deg: F64
    dec_deg: F64
    x_px: F64
    y_px: F64
    measurable: npt.NDArray[np.bool_]
    flag: I64


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocks:
    """Aperture results as (n_radii, n_positions) arrays, detections then forced positions."""

    x_px: F64
    y_px: F64
    ra_deg: F64
    dec_deg: F64
    is_forced: npt.NDArray[np.bool_]
    target_name: npt.NDArray[np.str_]
    flux_e: F64
    flux_err_e: F64
    flag: I64
    pixel_var_e2: F64
    n_sky_px: F64

    @property
    def n_positions(self) -> int:
        """Number of positions (columns of the 2-D arrays)."""
        return len(self.x_px)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Limiting fluxes (electrons, in the aperture) per block element, and blank-sky stats."""

    analytic_flux_e: F64
    robust_flux_e: F64
    blank: BlankSky | None
    #: Blank-sky over white-noise aperture scatter per radius (>= 1; 1 = white noise).
    beta: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Inputs of ``process_frame`` and the products of each stage so far."""

    path: Path
    config: Config
    targets: tuple[Target, ...] = ()
    zeropoint: float | None = None
    meta: ExposureMeta | None = None
    catalogs: ReferenceProvider | None = None
    frame: Frame | None = None
    background: Background | None = None
    data_sub_e: F64 | None = None
    detections: Detections | None = None
    exclude: npt.NDArray[np.bool_] | None = None
    fwhm: FwhmEstimate | None = None
    morphology: Morphology | None = None
    apertures: Apertures | None = None
    forced: Forced | None = None
    blocks: Blocks | None = None
    calibrations: tuple[Calibration, ...] = ()
    limits: Limits | None = None
    result: FrameResult | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
