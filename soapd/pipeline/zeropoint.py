"""Robust zero-point fit: weighted least squares with clipping on the robust scatter.

See :mod:`soapd.pipeline.calibrate` for the conventions. Pure numpy; no I/O.

>>> import numpy as np
>>> fit = fit_zero_point(np.array([20.0, 20.02, 19.98, 20.01, 23.0]), np.full(5, 0.02))
>>> round(fit.zp_mag, 3), int(fit.keep.sum())
(20.003, 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from astropy.stats import mad_std

if TYPE_CHECKING:
    from soapd.config import CalibrationConfig

__all__ = ["ZeroPointFit", "fit_zero_point", "implausible", "robust_sigma"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ZeroPointFit:
    """Result of :func:`fit_zero_point` (see the module docstring)."""

    zp_mag: float
    zp_err_mag: float
    scatter_mag: float
    color_term: float | None
    color_term_err: float | None
    color_ref_mag: float
    keep: npt.NDArray[np.bool_]
    chi2_red: float


def _wls(y: FloatArray, sigma: FloatArray, x: FloatArray | None) -> tuple[FloatArray, FloatArray]:
    """Weighted least squares of ``y = a (+ b x)``; return (params, covariance)."""
    w = 1.0 / sigma**2
    A = np.ones((len(y), 1)) if x is None else np.column_stack([np.ones_like(y), x])
    ata = A.T @ (A * w[:, None])
    cov = np.linalg.pinv(ata)
    params = cov @ (A.T @ (w * y))
    return np.asarray(params, dtype=float), np.asarray(cov, dtype=float)


def robust_sigma(r: FloatArray) -> float:
    """Return the robust sigma (astropy's ``mad_std``: 1.4826 MAD) of ``r``; NaN when empty."""
    return float(mad_std(r)) if len(r) else np.nan


def fit_zero_point(
    delta_mag: FloatArray,
    sigma_mag: FloatArray,
    *,
    color_mag: FloatArray | None = None,
    color_err_mag: FloatArray | None = None,
    sigma_clip: float = 3.0,
    max_iter: int = 10,
    min_stars: int = 3,
    floor_mag: float = 0.0,
) -> ZeroPointFit | None:
    """Fit ``delta = zp (+ k (c - c_ref))`` robustly; None if fewer than ``min_stars`` survive.

    Parameters
    ----------
    delta_mag
        Catalog minus instrumental magnitude per calibrator (mag).
    sigma_mag
        Their 1-sigma errors (mag; instrumental and catalog in quadrature).
    color_mag, color_err_mag
        Catalog colour and its error per calibrator; given -> a colour term is fitted.
    sigma_clip, max_iter, min_stars, floor_mag
        Clip threshold (in robust sigma), iteration cap, fewest stars, systematic floor.
    """
    delta = np.asarray(delta_mag, dtype=float)
    sig = np.asarray(sigma_mag, dtype=float)
    use_color = color_mag is not None
    c = np.asarray(color_mag, dtype=float) if use_color else np.zeros_like(delta)
    ce = np.asarray(color_err_mag, dtype=float) if color_err_mag is not None else np.zeros_like(c)
    p_count = 2 if use_color else 1
    if len(delta) < max(min_stars, p_count):
        return None
    c0 = float(np.median(c))
    keep = np.ones(len(delta), dtype=bool)
    params = np.array([np.median(delta), 0.0])
    for _ in range(max_iter):
        slope = float(params[1]) if use_color else 0.0
        sig_eff = np.sqrt(sig**2 + (slope * ce) ** 2)
        resid = delta - (params[0] + slope * (c - c0))
        s = robust_sigma(resid[keep])
        new_keep = np.abs(resid) <= sigma_clip * np.fmax(s, sig_eff)
        if new_keep.sum() < max(min_stars, p_count):
            return None
        params, _ = _wls(
            delta[new_keep], sig_eff[new_keep], (c - c0)[new_keep] if use_color else None
        )
        if not use_color:
            params = np.array([params[0], 0.0])
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    keep = new_keep
    c_ref = float(np.median(c[keep])) if use_color else float("nan")
    slope = float(params[1]) if use_color else 0.0
    sig_eff = np.sqrt(sig**2 + (slope * ce) ** 2)
    x = (c - c_ref)[keep] if use_color else None
    params, cov = _wls(delta[keep], sig_eff[keep], x)
    model = params[0] + (params[1] * (c - c_ref) if use_color else 0.0)
    resid = delta - model
    n = int(keep.sum())
    dof = n - p_count
    chi2_red = float(np.sum((resid[keep] / sig_eff[keep]) ** 2) / dof) if dof > 0 else float("nan")
    inflate = max(1.0, chi2_red) if np.isfinite(chi2_red) else 1.0
    zp_err = float(np.sqrt(cov[0, 0] * inflate + floor_mag**2))
    return ZeroPointFit(
        zp_mag=float(params[0]),
        zp_err_mag=zp_err,
        scatter_mag=robust_sigma(resid[keep]),
        color_term=float(params[1]) if use_color else None,
        color_term_err=float(np.sqrt(cov[1, 1] * inflate)) if use_color else None,
        color_ref_mag=c_ref,
        keep=keep,
        chi2_red=chi2_red,
    )


def implausible(zp_mag: float, zp_err_mag: float, n_stars: int, config: CalibrationConfig) -> str:
    """Return why a fitted zero point is not credible, or "" when it passes the sanity gate.

    Not credible: a non-finite zero point or error, an error above
    ``config.max_zp_err_mag`` (mag), or fewer than ``config.min_stars`` calibrators.
    The SA 112 mini frames (8-bit rescaled, no real noise) gave ``12.53 +- 9e22`` mag
    from 3 stars before this gate.

    >>> from soapd.config import CalibrationConfig
    >>> implausible(12.53, 9e22, 3, CalibrationConfig())
    'zero point 12.530 rejected: error 9e+22 mag > calibration.max_zp_err_mag = 0.2'
    """
    if not (np.isfinite(zp_mag) and np.isfinite(zp_err_mag)):
        return f"zero point not finite ({zp_mag} +- {zp_err_mag})"
    if zp_err_mag > config.max_zp_err_mag:
        return (
            f"zero point {zp_mag:.3f} rejected: error {zp_err_mag:.3g} mag > "
            f"calibration.max_zp_err_mag = {config.max_zp_err_mag:g}"
        )
    if n_stars < config.min_stars:
        return f"zero point from {n_stars} star(s); calibration.min_stars = {config.min_stars}"
    return ""
