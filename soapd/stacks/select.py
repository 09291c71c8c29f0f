"""Which frames of an epoch go into its stack: only those that deepen the limit.

Skynet's rule ("stacking only images that increase the limiting magnitude",
GCN 9916; Morgan et al. 2008): first drop frames that cannot help, then try the
rest from the deepest down and keep each one that makes the *predicted* stacked
limit deeper by at least ``min_gain_mag``.

Left out, with the reason recorded:

* **not covered**: the target is off the frame, at its edge, in masked pixels, or
  the frame has no WCS (``OFF_FRAME``, ``NEAR_EDGE``, ``NO_WCS``, ``APER_ALLMASKED``);
* **saturated at target** (``SATURATED``);
* **no calibration** (``NO_CALIBRATION`` or no finite zero point);
* **no limit** (the frame's limiting magnitude is not finite);
* **clouds**: a zero point more than ``cloud_margin_mag`` below the reference
  (the median zero point of the telescope and band, unless the caller gives one);
* **does not deepen the limit**;
* **beyond stacks.max_frames** (the deepest frames are kept).

The predicted limit of frames with ``n``-sigma limits ``m_i`` uses their flux
noise on the common scale, ``sigma_i = 10**(-0.4 m_i) / n``: inverse-variance
weights give ``sigma = (sum sigma_i**-2)**-1/2``, equal weights
``sigma = sqrt(sum sigma_i**2) / N``; the limit is ``-2.5 log10(n sigma)``.

>>> round(predicted_limit([20.0] * 16, weighting="inverse_variance") - 20.0, 3)
1.505
>>> round(predicted_limit([20.0, 18.0], weighting="equal"), 3)
18.739
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from soapd.flags import Flag
from soapd.stacks.records import Candidate

__all__ = [
    "NOT_COVERED_FLAGS",
    "Selection",
    "exclusion_reason",
    "predicted_limit",
    "reference_zero_point",
    "select_frames",
]

#: Target-row flags that mean the frame did not really see the target's position.
NOT_COVERED_FLAGS = Flag.OFF_FRAME | Flag.NEAR_EDGE | Flag.NO_WCS | Flag.APER_ALLMASKED

#: Reason recorded for frames the depth rule turned away.
NO_GAIN = "does not deepen the limit"
#: Reason recorded for frames beyond ``stacks.max_frames`` (the deepest are kept).
TOO_MANY = "beyond stacks.max_frames = {} (the deepest frames are stacked)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The frames that go in (deepest first), those left out with a reason, the predicted limit."""

    included: tuple[Candidate, ...]
    excluded: tuple[tuple[Candidate, str], ...]
    predicted_lim_mag: float
    reference_zp_mag: float


def predicted_limit(lim_mags: Sequence[float], *, weighting: str) -> float:
    """Return the predicted limit (mag, the inputs' sigma) of stacking frames of these limits."""
    if not lim_mags:
        return math.nan
    flux = 10.0 ** (-0.4 * np.asarray(lim_mags, np.float64))
    if weighting == "equal":
        sigma = float(np.sqrt(np.sum(flux**2)) / len(flux))
    else:
        sigma = float(1.0 / np.sqrt(np.sum(flux**-2.0)))
    return -2.5 * math.log10(sigma)


def reference_zero_point(candidates: Sequence[Candidate]) -> float:
    """Return the median finite zero point of ``candidates`` (NaN when none has one)."""
    zps = [c.zp_mag for c in candidates if math.isfinite(c.zp_mag)]
    return float(np.median(zps)) if zps else math.nan


def exclusion_reason(
    candidate: Candidate, *, reference_zp_mag: float, cloud_margin_mag: float
) -> str | None:
    """Return why ``candidate`` cannot join any stack, or None when it may."""
    flags = candidate.flags
    if flags & NOT_COVERED_FLAGS:
        names = [f.name for f in Flag if f.name and flags & f & NOT_COVERED_FLAGS]
        return f"not covered ({', '.join(names)})"
    if flags & Flag.SATURATED:
        return "saturated at target"
    if flags & Flag.NO_CALIBRATION or not math.isfinite(candidate.zp_mag):
        return "no calibration"
    if not math.isfinite(candidate.lim_mag):
        return "no limit"
    if math.isfinite(reference_zp_mag) and candidate.zp_mag < reference_zp_mag - cloud_margin_mag:
        low = reference_zp_mag - candidate.zp_mag
        return (
            f"clouds (zero point {candidate.zp_mag:.2f} mag, "
            f"{low:.2f} mag below the reference {reference_zp_mag:.2f})"
        )
    return None


def select_frames(
    candidates: Sequence[Candidate],
    *,
    weighting: str,
    min_gain_mag: float,
    cloud_margin_mag: float,
    reference_zp_mag: float | None = None,
    max_frames: int | None = None,
) -> Selection:
    """Choose the frames of one epoch to stack (see the module docstring).

    Parameters
    ----------
    candidates
        Frames of one telescope and band (one epoch).
    weighting
        "inverse_variance" or "equal" (how the co-add will weight them).
    min_gain_mag
        Smallest improvement (mag) of the predicted limit for a frame to join.
    cloud_margin_mag
        Zero points more than this (mag) below the reference mean clouds.
    reference_zp_mag
        The reference zero point (mag); None: the median of ``candidates``.
    max_frames
        Most frames to include (the deepest); the rest are left out with
        :data:`TOO_MANY`. None: no limit.
    """
    ref = reference_zero_point(candidates) if reference_zp_mag is None else reference_zp_mag
    excluded: list[tuple[Candidate, str]] = []
    usable: list[Candidate] = []
    for c in candidates:
        reason = exclusion_reason(c, reference_zp_mag=ref, cloud_margin_mag=cloud_margin_mag)
        if reason is None:
            usable.append(c)
        else:
            excluded.append((c, reason))
    usable.sort(key=lambda c: (-c.lim_mag, c.mid_time_utc, c.frame_id))
    included: list[Candidate] = []
    current = math.nan
    for c in usable:
        if max_frames is not None and len(included) >= max_frames:
            excluded.append((c, TOO_MANY.format(max_frames)))
            continue
        trial = predicted_limit([m.lim_mag for m in (*included, c)], weighting=weighting)
        if not included or trial >= current + min_gain_mag:
            included.append(c)
            current = trial
        else:
            excluded.append((c, NO_GAIN))
    excluded.sort(key=lambda pair: (pair[0].mid_time_utc, pair[0].frame_id))
    return Selection(
        included=tuple(included),
        excluded=tuple(excluded),
        predicted_lim_mag=current,
        reference_zp_mag=ref,
    )
