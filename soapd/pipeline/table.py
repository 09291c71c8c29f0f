"""Stage ``table``: the result table (whole columns, never row by row) and the frame summary.

One row per position (detections, then forced targets) and radius; in ``multi``
mode without ``keep_all``, one row per position at its best-S/N radius. Column
names, units and descriptions come from :mod:`soapd.columns`. Magnitudes are
total-flux magnitudes (``ap_corr_mag`` applied); ``flux_ujy`` is on the AB scale.
Skynetsoap bug B20: the table is built from whole columns.

Coverage: a forced row the ``forced`` stage marked NOT_COVERED keeps its position
and its coverage bits but no measurement: flux, S/N, magnitudes, every limit and
``flux_ujy`` are NaN, ``is_detection`` is False and UPPER_LIMIT is never set; the
``coverage`` column names the reason (:data:`soapd.flags.COVERAGE_REASONS`). The
summary carries the frame's footprint (sky corners) and the covered part of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.table import Column, Table

from soapd import __version__
from soapd.columns import COLUMN_DESCRIPTIONS, COLUMN_DTYPES, COLUMN_UNITS, RESULT_COLUMNS
from soapd.filters import AB_MINUS_VEGA
from soapd.flags import Flag
from soapd.models import FrameResult, FrameSummary
from soapd.pipeline.calibrate import Calibration
from soapd.pipeline.context import Context, need
from soapd.pipeline.forced import (
    apply_coverage,
    edge_margin,
    footprint_corners,
    frame_footprint,
)
from soapd.pipeline.limits import analytic_limit_flux, flux_to_mag
from soapd.pipeline.photometry import MAG_PER_REL_FLUX, sky_sample_size
from soapd.timeutil import jd_from_mjd

__all__ = ["build_table", "convert_mag_system", "empty_table", "stage_table"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: AB magnitude of 1 microjansky.
AB_MAG_1UJY = 23.9


def build_table(columns: Mapping[str, Any], n_rows: int, meta: Mapping[str, Any]) -> Table:
    """Return a Table with every RESULT_COLUMNS column, in order, with units and descriptions.

    ``columns`` maps names to arrays of length ``n_rows`` or to scalars (broadcast);
    missing numeric columns are NaN, missing text columns empty. Unknown names
    raise KeyError.
    """
    unknown = set(columns) - set(RESULT_COLUMNS)
    if unknown:
        raise KeyError(f"not result columns: {sorted(unknown)}")
    cols = []
    for name in RESULT_COLUMNS:
        kind = COLUMN_DTYPES[name]
        value = columns.get(name, np.nan if kind == "f8" else ("" if kind == "U" else 0))
        array = np.asarray(value)
        if array.ndim == 0:
            array = np.full(n_rows, array.item() if kind != "U" else str(value))
        array = array.astype(str) if kind == "U" else array.astype(kind)
        cols.append(
            Column(
                array,
                name=name,
                unit=COLUMN_UNITS.get(name),
                description=COLUMN_DESCRIPTIONS.get(name),
            )
        )
    return Table(cols, meta=dict(meta), copy=False)  # the columns are new: no second copy


def empty_table() -> Table:
    """Return a result table with no rows (the right columns and units)."""
    return build_table({}, 0, {})


def convert_mag_system(table: Table, to: str) -> Table:
    """Return a copy of a result/lightcurve table with calibrated rows on system ``to``.

    Rows whose ``cal_mag_system`` is the other system and whose ``band`` has an
    entry in ``soapd.filters.AB_MINUS_VEGA`` get ``calibrated_mag``, ``zeropoint``
    and every ``limiting_mag*`` column shifted by m_AB - m_Vega; their
    ``cal_mag_system`` becomes ``to``. Other rows (uncalibrated, unfiltered,
    narrow bands) are left as they are. Raise ValueError for a ``to`` other
    than "AB" or "Vega".
    """
    if to not in ("AB", "Vega"):
        raise ValueError(f"magnitude system must be 'AB' or 'Vega', not {to!r}")
    out = table.copy()
    if len(out) == 0 or "cal_mag_system" not in out.colnames or "band" not in out.colnames:
        return out
    src = "Vega" if to == "AB" else "AB"
    sign = 1.0 if to == "AB" else -1.0
    systems = np.asarray(out["cal_mag_system"]).astype(str)
    bands = np.asarray(out["band"]).astype(str)
    offset = np.array([AB_MINUS_VEGA.get(b, np.nan) for b in bands])
    rows = (systems == src) & np.isfinite(offset)
    cols = [
        c
        for c in out.colnames
        if c in ("calibrated_mag", "zeropoint") or c.startswith("limiting_mag")
    ]
    for c in cols:
        values = np.asarray(out[c], dtype=float).copy()
        values[rows] += sign * offset[rows]
        out[c] = (
            values if not hasattr(out[c], "unit") or out[c].unit is None else values * out[c].unit
        )
    sys_col = systems.astype(object)
    sys_col[rows] = to
    out["cal_mag_system"] = sys_col.astype(str)
    return out


def _select(ctx: Context) -> tuple[I64, I64]:
    """Return (radius index, position index) of each output row."""
    blocks = need(ctx.blocks, "blocks")
    aps = need(ctx.apertures, "apertures")
    ph = ctx.config.photometry
    n_r, n_p = blocks.flux_e.shape
    if ph.aperture_mode == "multi" and not ph.keep_all and n_r > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(
                np.isfinite(blocks.flux_e / blocks.flux_err_e),
                blocks.flux_e / blocks.flux_err_e,
                -np.inf,
            )
        best = np.argmax(snr, axis=0)
        best = np.where(np.isfinite(snr.max(axis=0)), best, aps.cal_index)
        return best.astype(np.int64), np.arange(n_p, dtype=np.int64)
    ri = np.repeat(np.arange(n_r, dtype=np.int64), n_p)
    pi = np.tile(np.arange(n_p, dtype=np.int64), n_r)
    return ri, pi


@dataclass(frozen=True, slots=True, kw_only=True)
class _RowCalibration:
    """Each row's zero point (mag) and what came with it, taken from its radius's Calibration."""

    zp_mag: F64
    zp_err_mag: F64
    n_stars: I64
    mag_system: npt.NDArray[np.str_]
    flags: I64
    #: AB - Vega offset (mag) of the band the zero point is on; 0 for AB, NaN if unknown.
    ab_offset_mag: F64


def _row_calibration(cals: tuple[Calibration, ...], ri: I64) -> _RowCalibration:
    """Spread the per-radius calibrations over rows with radius index ``ri``."""
    # AB - Vega offset of the band each zero point is on (the substitute band for
    # unfiltered frames), so that flux_ujy is on the AB scale.
    offset = np.array(
        [
            AB_MINUS_VEGA.get(c.ref_band, np.nan)
            if c.mag_system == "Vega"
            else (0.0 if c.mag_system == "AB" else np.nan)
            for c in cals
        ],
        np.float64,
    )
    return _RowCalibration(
        zp_mag=np.array([c.zp_mag for c in cals], np.float64)[ri],
        zp_err_mag=np.array([c.zp_err_mag for c in cals], np.float64)[ri],
        n_stars=np.array([c.n_stars for c in cals], np.int64)[ri],
        mag_system=np.array([c.mag_system if c.ok else "none" for c in cals])[ri],
        flags=np.array([c.flags for c in cals], np.int64)[ri],
        ab_offset_mag=offset[ri],
    )


def _magnitude_columns(
    ctx: Context, ri: I64, pi: I64, cal: _RowCalibration
) -> dict[str, npt.NDArray[Any]]:
    """Return the flux, S/N, magnitude and flag columns of the rows (``ri``, ``pi``)."""
    blocks = need(ctx.blocks, "blocks")
    aps = need(ctx.apertures, "apertures")
    t = need(ctx.frame, "frame").exptime_s
    ap_corr = np.asarray(aps.ap_corr_mag, np.float64)[ri]
    flux = blocks.flux_e[ri, pi]
    flux_err = blocks.flux_err_e[ri, pi]
    flag = blocks.flag[ri, pi].copy() | cal.flags
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / flux_err
        positive = np.where(flux > 0, flux, np.nan)
        ins_mag = -2.5 * np.log10(positive / t) + ap_corr
        ins_err = MAG_PER_REL_FLUX * flux_err / positive
    threshold = ctx.config.photometry.forced_snr_threshold
    covered = (flag & int(Flag.NOT_COVERED)) == 0
    is_det = covered & np.isfinite(snr) & (snr >= threshold) & (flux > 0)
    flag |= np.where(is_det | ~covered, 0, int(Flag.UPPER_LIMIT))
    flag |= np.where(np.isfinite(cal.zp_mag), 0, int(Flag.NO_CALIBRATION))
    return {
        "flux": flux,
        "flux_err": flux_err,
        "snr": snr,
        "ins_mag": ins_mag,
        "ins_mag_err": ins_err,
        "calibrated_mag": np.where(is_det, ins_mag + cal.zp_mag, np.nan),
        "calibrated_mag_err": np.where(is_det, np.hypot(ins_err, cal.zp_err_mag), np.nan),
        "is_detection": is_det,
        "flag": flag,
        "ap_corr_mag": ap_corr,
    }


def _finite(mag: F64) -> F64:
    """Return ``mag`` with every non-finite value NaN (an infinite limiting flux is no limit)."""
    return np.where(np.isfinite(mag), mag, np.nan)


def _calibrated_limit(ins_lim_mag: F64, zp_mag: F64) -> F64:
    """Return the calibrated limit ``ins_lim + zp`` (mag).

    NaN without a zero point, and without a finite, positive limiting flux
    (``flux_to_mag`` gives NaN then): never a number made of those.
    """
    lim = np.asarray(ins_lim_mag + zp_mag, np.float64)
    return np.where(np.isfinite(lim), lim, np.nan)


def _limit_columns(ctx: Context, ri: I64, pi: I64, zp_mag: F64, ap_corr: F64) -> dict[str, F64]:
    """Return the analytic, robust and chosen limiting magnitudes of the rows.

    ``limiting_ins_mag`` is the chosen limit on the instrumental scale (no zero point);
    a limiting flux that is not finite or not positive gives NaN everywhere.
    """
    limits = need(ctx.limits, "limits")
    t = need(ctx.frame, "frame").exptime_s
    ins_a = _finite(flux_to_mag(limits.analytic_flux_e[ri, pi], t, 0.0, ap_corr))
    ins_r = _finite(flux_to_mag(limits.robust_flux_e[ri, pi], t, 0.0, ap_corr))
    use_robust = (ctx.config.limits.method == "robust") & np.isfinite(ins_r)
    ins = np.where(use_robust, ins_r, ins_a)
    return {
        "limiting_mag_analytic": _calibrated_limit(ins_a, zp_mag),
        "limiting_mag_robust": _calibrated_limit(ins_r, zp_mag),
        "limiting_mag": _calibrated_limit(ins, zp_mag),
        "limiting_ins_mag": ins,
    }


def _flux_density_columns(
    flux: F64, flux_err: F64, cal: _RowCalibration, ap_corr: F64, exptime_s: float
) -> dict[str, F64]:
    """Return the total flux density (microjansky, AB scale) and its error.

    Linear in flux, so defined for negative fluxes too.
    """
    zp, zp_err = cal.zp_mag, cal.zp_err_mag
    with np.errstate(invalid="ignore", over="ignore"):
        scale = (
            10.0 ** (0.4 * (AB_MAG_1UJY - (zp + cal.ab_offset_mag)))
            * 10.0 ** (-0.4 * ap_corr)
            / exptime_s
        )
        flux_ujy = flux * scale
        flux_ujy_err = np.hypot(flux_err * scale, flux_ujy * zp_err / MAG_PER_REL_FLUX)
    return {"flux_ujy": flux_ujy, "flux_ujy_err": flux_ujy_err}


def _columns(ctx: Context, ri: I64, pi: I64) -> dict[str, Any]:
    """Return every result column of the rows (``ri``, ``pi``); scalars are broadcast."""
    frame = need(ctx.frame, "frame")
    blocks = need(ctx.blocks, "blocks")
    aps = need(ctx.apertures, "apertures")
    cal = _row_calibration(ctx.calibrations, ri)
    mags = _magnitude_columns(ctx, ri, pi, cal)
    ap_corr = mags["ap_corr_mag"]
    mjd = frame.mjd
    return {
        "image_file": frame.path.name,
        "telescope": frame.telescope,
        "filter": frame.band,
        "exptime": frame.exptime_s,
        "mjd": mjd,
        "jd": jd_from_mjd(mjd),
        "x_pix": blocks.x_px[pi],
        "y_pix": blocks.y_px[pi],
        "ra": blocks.ra_deg[pi],
        "dec": blocks.dec_deg[pi],
        **mags,
        "cal_mag_system": cal.mag_system,
        "zeropoint": cal.zp_mag,
        "zeropoint_err": cal.zp_err_mag,
        "aperture_id": ri,
        "aperture_radius": np.asarray(aps.radii_px, np.float64)[ri],
        "fwhm": need(ctx.fwhm, "fwhm").fwhm_px,
        "n_cal_stars": cal.n_stars,
        **_limit_columns(ctx, ri, pi, cal.zp_mag, ap_corr),
        "is_forced": blocks.is_forced[pi],
        "target_name": blocks.target_name[pi] if len(ri) else np.zeros(0, str),
        "band": frame.band,
        "mid_time_utc": frame.mid_time_utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        **_flux_density_columns(mags["flux"], mags["flux_err"], cal, ap_corr, frame.exptime_s),
    }


def _frame_limits(ctx: Context) -> tuple[float, float]:
    """Return the frame's analytic and robust *instrumental* limits at the calibration radius."""
    aps = need(ctx.apertures, "apertures")
    limits = need(ctx.limits, "limits")
    bkg = need(ctx.background, "background")
    t = need(ctx.frame, "frame").exptime_s
    cfg = ctx.config
    r_cal = aps.radii_px[aps.cal_index]
    a_cal = aps.ap_corr_mag[aps.cal_index]
    mesh = sky_sample_size(cfg.extraction.back_size_px)
    f_lim = float(
        analytic_limit_flux(
            np.array([bkg.global_rms_e**2]), r_cal, np.array([mesh]), cfg.limits.n_sigma
        )[0]
    )
    lim_frame = float(_finite(flux_to_mag(f_lim, t, 0.0, a_cal)))
    robust_sigma = limits.blank.sigma_e.get(r_cal, math.nan) if limits.blank else math.nan
    lim_robust = float(_finite(flux_to_mag(cfg.limits.n_sigma * robust_sigma, t, 0.0, a_cal)))
    return lim_frame, lim_robust


def _summary(ctx: Context, main: Calibration) -> FrameSummary:
    """Return the frame summary (one record per frame)."""
    frame = need(ctx.frame, "frame")
    blocks = need(ctx.blocks, "blocks")
    fwhm = need(ctx.fwhm, "fwhm")
    bkg = need(ctx.background, "background")
    ins_frame, ins_robust = _frame_limits(ctx)
    zp = np.array([main.zp_mag])
    lim_frame = float(_calibrated_limit(np.array([ins_frame]), zp)[0])
    lim_robust = float(_calibrated_limit(np.array([ins_robust]), zp)[0])
    footprint: tuple[tuple[float, float], ...] = ()
    covered: tuple[tuple[float, float], ...] = ()
    if frame.wcs is not None:
        c_ra, c_dec, _ = frame_footprint(frame.wcs, frame.shape)
        footprint = footprint_corners(frame.wcs, frame.shape)
        covered = footprint_corners(frame.wcs, frame.shape, edge_margin(ctx))
    else:
        c_ra = c_dec = math.nan
    frame_flags = 0 if frame.wcs is not None else int(Flag.NO_WCS)
    frame_flags |= main.flags | (0 if main.ok else int(Flag.NO_CALIBRATION))
    return FrameSummary(
        image_file=str(frame.path),
        telescope=frame.telescope,
        filter_raw=frame.filter_raw,
        band=frame.band,
        exptime_s=frame.exptime_s,
        mid_time_utc=frame.mid_time_utc,
        gain_e_per_adu=frame.gain_e_per_adu,
        read_noise_e=frame.read_noise_e,
        saturation_adu=frame.saturation_adu,
        fwhm_px=fwhm.fwhm_px,
        n_fwhm_stars=fwhm.n_stars,
        n_sources=int((~blocks.is_forced).sum()),
        aperture_radii_px=need(ctx.apertures, "apertures").radii_px,
        zp_mag=main.zp_mag,
        zp_err_mag=main.zp_err_mag,
        zp_scatter_mag=main.scatter_mag,
        n_cal_stars=main.n_stars,
        cal_catalog=main.catalog,
        cal_mag_system=main.mag_system if main.ok else "none",
        lim_mag=lim_frame,
        lim_mag_robust=lim_robust,
        sky_rms_e=bkg.global_rms_e,
        has_wcs=frame.wcs is not None,
        center_ra_deg=c_ra,
        center_dec_deg=c_dec,
        flags=frame_flags,
        notes=ctx.notes,
        fwhm_source=fwhm.source,
        cal_reason="" if main.ok else (main.reason or "calibration failed"),
        lim_ins_mag=ins_frame,
        lim_ins_mag_robust=ins_robust,
        footprint_deg=footprint,
        covered_footprint_deg=covered,
    )


def _meta(ctx: Context, main: Calibration) -> dict[str, Any]:
    """Return the table's metadata: provenance, detector values and their sources, notes."""
    frame = need(ctx.frame, "frame")
    aps = need(ctx.apertures, "apertures")
    limits = need(ctx.limits, "limits")
    fwhm = need(ctx.fwhm, "fwhm")
    return {
        "soapd_version": __version__,
        "config_fingerprint": ctx.config.fingerprint(),
        "image_file": str(frame.path),
        "gain_e_per_adu": frame.gain_e_per_adu,
        "gain_source": frame.gain_source,
        "read_noise_e": frame.read_noise_e,
        "read_noise_source": frame.read_noise_source,
        "saturation_adu": frame.saturation_adu,
        "saturation_source": frame.saturation_source,
        "time_source": frame.time_source,
        "filter_raw": frame.filter_raw,
        "overscan_adu": frame.overscan_adu,
        "fwhm_px": fwhm.fwhm_px,
        "n_fwhm_stars": fwhm.n_stars,
        "fwhm_source": fwhm.source,
        "aperture_radii_px": list(aps.radii_px),
        "ap_corr_mag": list(aps.ap_corr_mag),
        "cog_stars": aps.cog.n_stars if aps.cog is not None else 0,
        "sky_rms_e": need(ctx.background, "background").global_rms_e,
        "zeropoint": main.zp_mag,
        "zeropoint_err": main.zp_err_mag,
        "calibration": main.reason,
        "blank_sky_apertures": limits.blank.n_used if limits.blank else 0,
        "noise_correlation_beta": list(limits.beta),
        "notes": list(ctx.notes),
    }


def stage_table(ctx: Context) -> Context:
    """Build the result table (whole columns at once) and the frame summary."""
    aps = need(ctx.apertures, "apertures")
    ri, pi = _select(ctx)
    main = ctx.calibrations[aps.cal_index]
    table = build_table(apply_coverage(_columns(ctx, ri, pi)), len(ri), _meta(ctx, main))
    return replace(ctx, result=FrameResult(summary=_summary(ctx, main), table=table))
