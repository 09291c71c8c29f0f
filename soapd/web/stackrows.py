"""Stacked epochs as lightcurve rows of the web pages and ``/api/targets/{name}/lightcurve``.

A stacked epoch (:class:`~soapd.models.StackRecord`, issue 12) becomes one row with
the same columns as a single frame's row (``mjd``, ``mag``, ``lim_mag``,
``flux_ujy``...) and ``row_type`` ``"stack"``; what only a stack has
(``stack_id``, ``n_frames``, ``total_exptime_s``, ``member_frame_ids``,
``excluded``: {reason: [frame ids]}) is filled for frame rows too (a frame is one
exposure: itself), so every column keeps one length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from astropy.time import Time

from soapd.models import StackRecord

__all__ = ["stack_points"]


def _fin(value: float, digits: int) -> float | None:
    """Return ``value`` rounded to ``digits``, or None when it is NaN or infinite."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _by_reason(excluded: Sequence[tuple[int, str]]) -> dict[str, list[int]]:
    """Return the frames left out of a stack grouped by reason: {reason: [frame_id, ...]}."""
    out: dict[str, list[int]] = {}
    for frame_id, reason in excluded:
        out.setdefault(reason, []).append(int(frame_id))
    return out


def _iso(record: StackRecord) -> str:
    return record.mid_time_utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def stack_points(
    records: Sequence[StackRecord],
    *,
    t0_mjd: float | None,
    flag_words: Callable[[int], list[str]],
    limit_flux_ujy: Callable[[list[float | None], list[str], list[str]], list[float | None]],
) -> dict[str, list[Any]]:
    """Return the stacked epochs as column lists keyed like the frame rows.

    Parameters
    ----------
    records
        The target's current stacks (``Store.stacked``), any order; rows come out in
        time order (weighted mean mid-exposure time).
    t0_mjd
        The trigger time as MJD (days), or None: then ``t_since_trigger_h`` is None.
    flag_words
        Flag word -> its bits in words (the frame rows' function).
    limit_flux_ujy
        (limits in mag, bands, systems) -> limits as AB flux density in microjansky.

    Returns
    -------
    dict
        Column name -> list, one entry per stack (``frame_id`` None, ``stacked``
        True, ``row_type`` "stack", ``exptime_s`` the single exposure S of
        ``N x S``, ``total_exptime_s`` = N x S in seconds).
    """
    recs = sorted(records, key=lambda r: (r.mid_time_utc, r.telescope, r.band))
    # One vectorised conversion (as soapd.timeutil.mjd_of, for every stack at once).
    mjd: list[float] = (
        np.round(Time([r.mid_time_utc for r in recs], scale="utc").mjd, 7).tolist() if recs else []
    )
    bands = [r.band for r in recs]
    systems = [r.mag_system for r in recs]
    lim_mag = [_fin(r.lim_mag, 3) for r in recs]
    is_det = [bool(r.is_detection) and math.isfinite(r.mag) for r in recs]
    return {
        "frame_id": [None] * len(recs),
        "mjd": mjd,
        "mid_time_utc": [_iso(r) for r in recs],
        "t_since_trigger_h": [
            None if t0_mjd is None else round((m - t0_mjd) * 24.0, 6) for m in mjd
        ],
        "band": bands,
        "telescope": [r.telescope for r in recs],
        "exptime_s": [_fin(r.exptime_s, 3) for r in recs],
        "is_detection": is_det,
        "mag": [_fin(r.mag, 4) for r in recs],
        "mag_err": [_fin(r.mag_err, 4) for r in recs],
        "lim_mag": lim_mag,
        "lim_flux_ujy": limit_flux_ujy(lim_mag, bands, systems),
        "lim_nsigma": [_fin(r.lim_nsigma, 2) for r in recs],
        "flux_ujy": [_fin(r.flux_ujy, 4) for r in recs],
        "flux_ujy_err": [_fin(r.flux_ujy_err, 4) for r in recs],
        "snr": [_fin(r.snr, 2) for r in recs],
        "mag_system": systems,
        "zp_mag": [_fin(r.zp_mag, 4) for r in recs],
        "n_cal_stars": [int(r.n_cal_stars) for r in recs],
        "aperture_id": [-1] * len(recs),
        "aperture_radius_px": [_fin(r.aperture_px, 3) for r in recs],
        "flags": [int(r.flags) for r in recs],
        "flag_words": [flag_words(int(r.flags)) for r in recs],
        "image_file": [""] * len(recs),
        "obs_id": [-1] * len(recs),
        "stacked": [True] * len(recs),
        "row_type": ["stack"] * len(recs),
        "stack_id": [r.stack_id for r in recs],
        "epoch_key": [r.epoch_key for r in recs],
        "n_frames": [r.n_frames for r in recs],
        "total_exptime_s": [_fin(r.total_exptime_s, 3) for r in recs],
        "member_frame_ids": [list(r.members) for r in recs],
        "excluded": [_by_reason(r.excluded) for r in recs],
    }
