"""Build one epoch's stack for one target: select, cut, align, co-add, measure.

:func:`build_stack` is a pure function of the epoch's candidate frames (their
files and single-frame results), the target and the configuration; it returns a
picklable :class:`~soapd.stacks.records.StackResult`, so the daemon can run it in
its worker pool whenever a frame joins the epoch.

1. :func:`~soapd.stacks.select.select_frames` keeps only frames that deepen the
   predicted limit (deepest first) and records why the others are left out;
2. the deepest kept frame is cut around the target and defines the stack's grid
   (:mod:`soapd.stacks.cutouts`); the others are cut to cover it. A frame whose
   pixels show the target uncovered or saturated is left out and the selection
   is made again without it;
3. each cutout's background is removed, then it is aligned onto the grid;
4. the aligned cutouts are scaled to the reference zero point and the total
   exposure, and co-added with inverse-variance weights (:mod:`soapd.stacks.combine`);
5. the co-add is measured by the single-frame pipeline (:mod:`soapd.stacks.measure`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from soapd.config import Config
from soapd.models import Target
from soapd.pipeline.calibrate import Calibration
from soapd.stacks.align import Aligned, align
from soapd.stacks.combine import coadd, scale_factor, weighted_mean
from soapd.stacks.cutouts import Cutout, load_cutout, subtract_background
from soapd.stacks.epochs import Epoch
from soapd.stacks.measure import measure_stack, stack_frame
from soapd.stacks.records import Candidate, StackResult
from soapd.stacks.select import select_frames

__all__ = ["CutoutLoader", "build_stack", "file_loader", "stack_calibration"]

#: ``loader(candidate, grid)`` returns the candidate's cutout (on the grid's footprint
#: when a grid is given) or the reason it cannot be used.
CutoutLoader = Callable[[Candidate, tuple[WCS, tuple[int, int]] | None], Cutout | str]


def file_loader(target: Target, config: Config) -> CutoutLoader:
    """Return a loader that reads each candidate's FITS file as single frames are read."""

    def load(c: Candidate, grid: tuple[WCS, tuple[int, int]] | None) -> Cutout | str:
        return load_cutout(
            c.path,
            target.ra_deg,
            target.dec_deg,
            frame_id=c.frame_id,
            size_px=config.stacks.cutout_size_px,
            frame_config=config.frame,
            grid=grid,
            saturation_radius_px=config.stacks.saturation_radius_px,
        )

    return load


def stack_calibration(
    members: list[Candidate], weights: tuple[float, ...], zp_mag: float
) -> Calibration:
    """Return the stack's zero point record from its members' calibrations.

    The zero point is the reference ``zp_mag`` (every member is scaled onto it). Its
    statistical error combines the members' independent zero-point errors as the
    co-add combines their fluxes, ``sqrt(sum c_i**2 err_i**2)``; the systematic part is
    the weighted mean of the members' calibrator scatter (it does not average down).
    """
    c = np.asarray(weights, np.float64)
    err = np.asarray([m.zp_err_mag for m in members], np.float64)
    ok = np.isfinite(err)
    stat = float(np.sqrt(np.sum((c[ok] * err[ok]) ** 2))) if ok.any() else math.nan
    systematic = weighted_mean([m.zp_scatter_mag for m in members], weights)
    catalogs = Counter(m.cal_catalog for m in members if m.cal_catalog)
    systems = Counter(m.mag_system for m in members if m.mag_system not in ("", "none"))
    return Calibration(
        zp_mag=zp_mag,
        zp_err_mag=stat,
        scatter_mag=systematic,
        n_stars=int(np.median([m.n_cal_stars for m in members])),
        n_matched=int(np.median([m.n_cal_stars for m in members])),
        catalog=catalogs.most_common(1)[0][0] if catalogs else None,
        ref_band=members[0].band,
        mag_system=systems.most_common(1)[0][0] if systems else "none",
        reason=f"zero point of the {len(members)} stacked frame(s)",
    )


def _target_row(table: Table, name: str) -> dict[str, Any] | None:
    """Return the target's row at its smallest aperture id (as single-frame lightcurves use)."""
    if len(table) == 0:
        return None
    rows = table[(np.asarray(table["target_name"]) == name) & np.asarray(table["is_forced"])]
    if len(rows) == 0:
        return None
    best = rows[int(np.argmin(np.asarray(rows["aperture_id"])))]
    return {k: best[k] for k in rows.colnames}


def _empty(
    epoch: Epoch[Candidate],
    target: Target,
    excluded: list[tuple[int, str]],
    predicted: float,
    n_sigma: float,
) -> StackResult:
    return StackResult(
        target_name=target.name,
        epoch_key=epoch.key,
        telescope=epoch.telescope,
        band=epoch.band,
        bin_start_utc=epoch.bin.start_utc,
        bin_end_utc=epoch.bin.end_utc,
        members=(),
        weights=(),
        excluded=tuple(sorted(excluded)),
        exptime_s=math.nan,
        total_exptime_s=0.0,
        mid_time_utc=None,
        mean_mid_time_utc=None,
        start_utc=None,
        stop_utc=None,
        zp_mag=math.nan,
        zp_err_mag=math.nan,
        zp_scatter_mag=math.nan,
        n_cal_stars=0,
        cal_catalog="",
        mag_system="none",
        predicted_lim_mag=predicted,
        lim_nsigma=n_sigma,
    )


def _mean_time(times: list[datetime], weights: list[float]) -> datetime:
    base = min(times)
    offsets = [(t - base).total_seconds() for t in times]
    return base + timedelta(seconds=weighted_mean(offsets, weights))


def build_stack(
    epoch: Epoch[Candidate],
    target: Target,
    *,
    config: Config,
    reference_zp_mag: float | None = None,
    loader: CutoutLoader | None = None,
    preloaded: Mapping[int, Cutout] | None = None,
) -> StackResult:
    """Stack the epoch's frames that deepen the limit and measure the target on the co-add.

    Parameters
    ----------
    epoch
        One telescope, band and time bin (:func:`~soapd.stacks.epochs.group_epochs`).
    target
        The position measured (forced photometry at its RA, Dec).
    config
        ``[stacks]`` drives selection and alignment; ``[extraction]``, ``[photometry]``
        and ``[limits]`` the measurement, as for single frames; ``[frame]`` the reading.
    reference_zp_mag
        Zero point (mag) that clouds are judged against; None: the epoch's median.
    loader
        How cutouts are obtained; default: read each candidate's file (:func:`file_loader`).
    preloaded
        Cutouts already at hand (frame id -> cutout in the frame's own grid, e.g. a
        cache); used only for the reference frame, whose box is centred on the target.

    Returns
    -------
    StackResult
        ``ok`` is False when no frame could be stacked (the reasons are in ``excluded``).
    """
    cfg = config.stacks
    n_sigma = config.limits.n_sigma
    load = loader or file_loader(target, config)
    timings: dict[str, float] = {"select": 0.0, "load": 0.0, "align": 0.0}
    candidates = list(epoch.frames)
    pixel_reasons: dict[int, str] = {}
    loaded: dict[int, Cutout] = {}
    grid: tuple[WCS, tuple[int, int]] | None = None
    while True:
        t0 = time.perf_counter()
        sel = select_frames(
            [c for c in candidates if c.frame_id not in pixel_reasons],
            weighting=cfg.weighting,
            min_gain_mag=cfg.min_gain_mag,
            cloud_margin_mag=cfg.cloud_margin_mag,
            reference_zp_mag=reference_zp_mag,
            max_frames=cfg.max_frames,
        )
        timings["select"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        changed = False
        for c in sel.included:
            if c.frame_id in loaded:
                continue
            cut: Cutout | str
            if grid is None and preloaded is not None and c.frame_id in preloaded:
                cut = preloaded[c.frame_id]
            else:
                cut = load(c, grid)
            if isinstance(cut, str):
                pixel_reasons[c.frame_id] = cut
                changed = True
                continue
            loaded[c.frame_id] = cut
            if grid is None:
                grid = (cut.wcs, cut.shape)
        timings["load"] += time.perf_counter() - t0
        if not changed:
            break
    excluded = [(c.frame_id, reason) for c, reason in sel.excluded]
    excluded += list(pixel_reasons.items())
    members = list(sel.included)
    if not members or grid is None or len(members) < cfg.min_frames:
        if members:
            excluded += [
                (c.frame_id, f"too few frames to stack ({len(members)} < {cfg.min_frames})")
                for c in members
            ]
        return _empty(epoch, target, excluded, sel.predicted_lim_mag, n_sigma)

    t0 = time.perf_counter()
    gwcs, gshape = grid
    ref_zp = members[0].zp_mag
    total_s = float(sum(c.exptime_s for c in members))
    aligned: list[Aligned] = []
    rms: list[float] = []
    how: list[str] = []
    for c in members:
        cut = subtract_background(
            loaded[c.frame_id],
            back_size_px=config.extraction.back_size_px,
            back_filter_size=config.extraction.back_filter_size,
        )
        a = align(
            cut,
            gwcs,
            gshape,
            method=cfg.reproject_method,
            shift_tolerance_px=cfg.shift_tolerance_px,
        )
        aligned.append(a)
        rms.append(cut.sky_rms_e)
        how.append(a.method)
    scales = [
        scale_factor(c.exptime_s, c.zp_mag, ref_exptime_s=total_s, ref_zp_mag=ref_zp)
        for c in members
    ]
    timings["align"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stack = coadd(aligned, scales, rms, weighting=cfg.weighting)
    timings["coadd"] = time.perf_counter() - t0

    weights = list(stack.weights)
    mid = _mean_time([c.mid_time_utc for c in members], weights)
    mean_mid = _mean_time([c.mid_time_utc for c in members], [1.0] * len(members))
    calibration = stack_calibration(members, stack.weights, ref_zp)
    label = f"stack:{target.name}:{epoch.key}"
    frame = stack_frame(
        stack.data_e,
        stack.mask,
        stack.saturated,
        gwcs,
        label=label,
        exptime_s=total_s,
        mid_time_utc=mid.astimezone(UTC),
        telescope=epoch.telescope,
        band=epoch.band,
        notes=(f"stack of {len(members)} frame(s) ({', '.join(sorted(set(how)))})",),
    )
    t0 = time.perf_counter()
    result = measure_stack(frame, target, calibration=calibration, config=config)
    timings["measure"] = time.perf_counter() - t0
    row = _target_row(result.table, target.name)
    exps = {round(c.exptime_s, 3) for c in members}

    def num(key: str) -> float:
        if row is None:
            return math.nan
        value = row[key]
        return float(value) if value is not None and np.isfinite(value) else math.nan

    return StackResult(
        target_name=target.name,
        epoch_key=epoch.key,
        telescope=epoch.telescope,
        band=epoch.band,
        bin_start_utc=epoch.bin.start_utc,
        bin_end_utc=epoch.bin.end_utc,
        members=tuple(c.frame_id for c in members),
        weights=stack.weights,
        excluded=tuple(sorted(excluded)),
        exptime_s=members[0].exptime_s if len(exps) == 1 else math.nan,
        total_exptime_s=total_s,
        mid_time_utc=mid,
        mean_mid_time_utc=mean_mid,
        start_utc=min(c.start_utc for c in members),
        stop_utc=max(c.stop_utc for c in members),
        zp_mag=ref_zp,
        zp_err_mag=calibration.zp_err_mag,
        zp_scatter_mag=calibration.scatter_mag,
        n_cal_stars=calibration.n_stars,
        cal_catalog=calibration.catalog or "",
        mag_system=calibration.mag_system,
        predicted_lim_mag=sel.predicted_lim_mag,
        mag=num("calibrated_mag"),
        mag_err=num("calibrated_mag_err"),
        lim_mag=num("limiting_mag"),
        lim_nsigma=n_sigma,
        snr=num("snr"),
        flux_e=num("flux"),
        flux_err_e=num("flux_err"),
        flux_ujy=num("flux_ujy"),
        flux_ujy_err=num("flux_ujy_err"),
        fwhm_px=result.summary.fwhm_px,
        aperture_px=num("aperture_radius"),
        is_detection=bool(row["is_detection"]) if row is not None else False,
        flags=int(row["flag"]) if row is not None else 0,
        single_detections=sum(1 for c in members if c.single_detection),
        best_single_lim_mag=max(c.lim_mag for c in members),
        alignment=tuple(how),
        result=result,
        timings_s=timings | {f"measure:{k}": v for k, v in result.timings_s.items()},
    )
