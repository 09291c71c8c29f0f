"""Co-adding aligned cutouts: common zero point, weights, weighted mean.

Every frame ``i`` (exposure ``t_i``, zero point ``zp_i``, both as in ``mag = zp -
2.5 log10(F_e / t)``) is scaled onto a common scale, that of one exposure of
``T`` seconds (the members' total) at zero point ``ZP``::

    s_i = (T / t_i) * 10**(0.4 (ZP - zp_i))

so a source of magnitude ``m`` has ``T 10**(-0.4 (m - ZP))`` electrons in every
scaled frame. The stack is the weighted mean of the scaled frames, pixel by pixel
over the frames that have the pixel unmasked::

    S = sum_i w_i s_i D_i / sum_i w_i,   w_i = 1 / (s_i sigma_i)**2

(inverse variance, ``sigma_i`` the frame's sky RMS in electrons per pixel), or
``w_i = 1`` with ``weighting = "equal"``. For N equal frames ``S`` is their sum,
so its pixels behave as electrons of one ``T``-second exposure (gain 1): the
single-frame error model applies unchanged. The stack's mid-time is the same
weighted mean of the members' mid-exposure times (the time at which a source
changing linearly has the stacked flux).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soapd.stacks.align import Aligned

__all__ = ["CoAdd", "coadd", "scale_factor"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class CoAdd:
    """The stacked image (electrons of a ``T``-second exposure at ``ZP``) and its weights.

    ``weights`` are the members' global weights normalised to sum 1; ``coverage`` is
    the fraction of the total weight behind each pixel (1 where no member is masked).
    """

    data_e: F64
    mask: npt.NDArray[np.bool_]
    saturated: npt.NDArray[np.bool_]
    coverage: F64
    weights: tuple[float, ...]
    scales: tuple[float, ...]


def scale_factor(
    exptime_s: float, zp_mag: float, *, ref_exptime_s: float, ref_zp_mag: float
) -> float:
    """Return ``s`` that puts a frame (t, zp) on the scale of (T, ZP) (see the module docstring).

    >>> scale_factor(60.0, 23.0, ref_exptime_s=960.0, ref_zp_mag=23.0)
    16.0
    """
    return float((ref_exptime_s / exptime_s) * 10.0 ** (0.4 * (ref_zp_mag - zp_mag)))


def coadd(
    frames: Sequence[Aligned],
    scales: Sequence[float],
    sky_rms_e: Sequence[float],
    *,
    weighting: str,
) -> CoAdd:
    """Return the weighted mean of ``scales[i] * frames[i]`` (see the module docstring).

    A pixel masked in every member is masked (value 0); a pixel saturated in any
    member is masked and flagged saturated (a saturated core would otherwise come
    from the unsaturated members alone).
    """
    if not frames:
        raise ValueError("nothing to co-add")
    s = np.asarray(scales, np.float64)
    if weighting == "equal":
        w = np.ones(len(frames))
    else:
        w = 1.0 / (s * np.asarray(sky_rms_e, np.float64)) ** 2
    shape = frames[0].data_e.shape
    num = np.zeros(shape, np.float64)
    den = np.zeros(shape, np.float64)
    saturated = np.zeros(shape, bool)
    for frame, si, wi in zip(frames, s, w, strict=True):
        good = ~frame.mask
        num += np.where(good, (wi * si) * frame.data_e, 0.0)
        den += np.where(good, wi, 0.0)
        saturated |= frame.saturated
    mask = (den <= 0) | saturated
    with np.errstate(invalid="ignore", divide="ignore"):
        data = np.where(mask, 0.0, num / np.where(den > 0, den, 1.0))
    total = float(np.sum(w))
    return CoAdd(
        data_e=np.asarray(data, np.float64),
        mask=np.asarray(mask, bool),
        saturated=saturated,
        coverage=den / total if total > 0 else den,
        weights=tuple(float(v) for v in w / total),
        scales=tuple(float(v) for v in s),
    )


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    """Return the weighted mean of the finite ``values`` (NaN when none)."""
    v = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    ok = np.isfinite(v) & (w > 0)
    if not ok.any():
        return math.nan
    return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok]))
