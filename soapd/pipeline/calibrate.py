"""Cross-match and robust zero point (+ optional colour term).

Interface pinned; body by the calibration work (issue 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from astropy.table import Table

    from soapd.config import CalibrationConfig

__all__ = ["Calibration", "ReferenceProvider", "calibrate_sources"]


class ReferenceProvider(Protocol):
    """Anything that can hand out reference stars (``soapd.catalogs.CatalogService``)."""

    def chain(self, band: str) -> list[str]:
        """Return catalog names to try, in order, for ``band``."""
        ...

    def stars(
        self, name: str, *, ra_deg: float, dec_deg: float, radius_deg: float, band: str
    ) -> Table:
        """Return catalog ``name``'s stars in the cone; raise CatalogError on failure."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """A frame's zero point (per second of exposure, electrons) and how it was found."""

    zp_mag: float = float("nan")
    zp_err_mag: float = float("nan")
    scatter_mag: float = float("nan")
    n_stars: int = 0
    n_matched: int = 0
    catalog: str | None = None
    ref_band: str = ""
    mag_system: str = "none"
    color_term: float | None = None
    color_term_err: float | None = None
    flags: int = 0
    reason: str = ""
    used_index: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    rejected_index: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def ok(self) -> bool:
        """True when a finite zero point was fitted."""
        return bool(np.isfinite(self.zp_mag))


def calibrate_sources(
    sources: Table,
    *,
    band: str,
    center_ra_deg: float,
    center_dec_deg: float,
    radius_deg: float,
    config: CalibrationConfig,
    catalogs: ReferenceProvider,
) -> Calibration:
    """Fit the zero point of ``sources`` (columns ra, dec, ins_mag, ins_mag_err, flag, snr).

    Never raises for a missing catalog or too few stars: returns a Calibration with
    NaN zero point, the NO_CALIBRATION flag and a ``reason``.
    """
    raise NotImplementedError("calibration is being built under issue 4")
