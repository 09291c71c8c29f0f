"""Light of neighbouring detections inside a forced aperture, and the CONTAMINATED flag.

``BLENDED`` looks at distance only; a bright star 2.5 FWHM away puts thousands of
electrons into a target's aperture, enough to turn blank sky into a "detection".
Here each neighbour's light inside the aperture is estimated from the PSF:

    C_i = sum_j F_j * f(d_ij; r)

``F_j`` is neighbour j's total flux (its aperture flux at the calibration radius over
the PSF's enclosed fraction there), ``d_ij`` its distance from aperture i and
``f(d; r)`` the fraction of a star's light that falls inside a circle of radius ``r``
whose centre is ``d`` from the star (:func:`offset_fraction`). The PSF is the frame's
curve of growth (enclosed light against radius, up to ``r_total``) when there is one,
else a Gaussian of the frame's FWHM. A forced row is ``CONTAMINATED`` when
``C_i > photometry.contamination_max_sigma * flux_err_i``. Detections within 1.5 px of
the aperture centre (the target itself) and cosmic rays do not count. Light beyond
``r_total`` and the light of saturated neighbours (whose flux is underestimated) are
missed, so ``C`` is a lower bound there. Positions 0-based px, fluxes electrons.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from soapd.pipeline.apcorr import CurveOfGrowth
from soapd.pipeline.detect import GAUSS_FWHM_PER_SIGMA

__all__ = ["EnclosedProfile", "contamination_e", "enclosed_profile", "offset_fraction"]

F64 = npt.NDArray[np.float64]

#: Step (px) of the ring grid the PSF is integrated on.
_RING_STEP_PX = 0.1

#: A detection closer than this (px) to an aperture centre is the target itself.
SELF_MATCH_PX = 1.5


class EnclosedProfile:
    """A PSF as the light enclosed within radius ``rho`` (1 at ``r_total_px``), on fine rings."""

    def __init__(self, radii_px: F64, enclosed: F64) -> None:
        r_total = float(radii_px[-1])
        grid = np.arange(0.0, r_total + 1e-9, _RING_STEP_PX)
        grid[-1] = r_total
        radii = np.concatenate([[0.0], radii_px])
        frac = np.concatenate([[0.0], enclosed])
        cum = np.maximum.accumulate(np.interp(grid, radii, frac))
        cum /= cum[-1] if cum[-1] > 0 else 1.0
        #: Mid-radius of each ring (px) and the light it holds.
        self.ring_px = 0.5 * (grid[1:] + grid[:-1])
        self.ring_light = np.diff(cum)
        self.r_total_px = r_total
        self._radii = radii
        self._frac = frac

    def enclosed(self, radius_px: float) -> float:
        """Return the light within ``radius_px`` of the centre (0-1)."""
        return float(np.interp(radius_px, self._radii, self._frac, right=1.0))


def enclosed_profile(cog: CurveOfGrowth | None, fwhm_px: float) -> EnclosedProfile:
    """Return the frame's PSF: its curve of growth when usable, else a Gaussian of ``fwhm_px``."""
    if cog is not None and cog.ok:
        return EnclosedProfile(np.asarray(cog.radii_px, np.float64), np.asarray(cog.fraction))
    sigma = fwhm_px / GAUSS_FWHM_PER_SIGMA
    radii = np.linspace(0.1, 5.0 * sigma, 200)
    return EnclosedProfile(radii, 1.0 - np.exp(-0.5 * (radii / sigma) ** 2))


def offset_fraction(profile: EnclosedProfile, radius_px: float, distance_px: F64) -> F64:
    """Return the light of a star that falls in a circle of ``radius_px`` at ``distance_px``.

    Each ring of the profile at radius ``rho`` contributes the arc inside the circle:
    all of it when ``rho <= r - d``, none when ``rho >= r + d`` or ``rho <= d - r``,
    else ``arccos((rho^2 + d^2 - r^2) / (2 rho d)) / pi`` of it.
    """
    d = np.atleast_1d(np.asarray(distance_px, np.float64))[:, None]
    rho = profile.ring_px[None, :]
    r = radius_px
    with np.errstate(divide="ignore", invalid="ignore"):
        cos_arg = (rho**2 + d**2 - r**2) / (2.0 * rho * np.maximum(d, 1e-12))
        arc = np.arccos(np.clip(cos_arg, -1.0, 1.0)) / math.pi
    arc = np.where(rho <= r - d, 1.0, np.where((rho >= r + d) | (rho <= d - r), 0.0, arc))
    return np.asarray(arc @ profile.ring_light, np.float64)


def contamination_e(
    x_px: F64,
    y_px: F64,
    radius_px: float,
    neighbours_xy: F64,
    neighbours_total_e: F64,
    *,
    profile: EnclosedProfile,
) -> F64:
    """Return the neighbours' light (electrons) inside apertures of ``radius_px`` at (x, y).

    ``neighbours_xy`` (N x 2, px) and their total fluxes; non-positive or non-finite
    fluxes count as 0, and neighbours within :data:`SELF_MATCH_PX` of an aperture
    centre are left out (the target itself).
    """
    out = np.zeros(len(x_px))
    ok_pos = np.isfinite(x_px) & np.isfinite(y_px)
    flux = np.where(np.isfinite(neighbours_total_e), np.clip(neighbours_total_e, 0, None), 0.0)
    if len(neighbours_xy) == 0 or not ok_pos.any():
        return out
    reach = radius_px + profile.r_total_px
    d_grid = np.arange(0.0, reach + 0.25, 0.25)
    f_grid = offset_fraction(profile, radius_px, d_grid)
    where = np.flatnonzero(ok_pos)
    lists = cKDTree(neighbours_xy).query_ball_point(np.column_stack([x_px, y_px])[where], reach)
    counts = np.fromiter((len(n) for n in lists), np.int64, count=len(lists))
    if counts.sum() == 0:
        return out
    nb = np.concatenate([np.asarray(n, np.int64) for n in lists])
    owner = where[np.repeat(np.arange(len(where)), counts)]
    d = np.hypot(neighbours_xy[nb, 0] - x_px[owner], neighbours_xy[nb, 1] - y_px[owner])
    light = np.where(d > SELF_MATCH_PX, np.interp(d, d_grid, f_grid) * flux[nb], 0.0)
    out += np.bincount(owner, weights=light, minlength=len(out))
    return out
