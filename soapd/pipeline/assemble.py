"""The last two stages: the zero point(s), then the result table and frame summary."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import numpy.typing as npt
from astropy.time import Time

from soapd import __version__
from soapd.columns import FrameResult, FrameSummary
from soapd.filters import AB_MINUS_VEGA, mag_system
from soapd.flags import Flag
from soapd.pipeline.calibrate import Calibration, calibrate_sources
from soapd.pipeline.context import Context
from soapd.pipeline.forced import frame_footprint
from soapd.pipeline.limits import analytic_limit_flux, flux_to_mag
from soapd.pipeline.photometry import MAG_PER_REL_FLUX, sky_sample_size
from soapd.pipeline.stages import calibration_sources, need
from soapd.pipeline.table import build_table

__all__ = ["stage_calibrate", "stage_table"]

#: AB magnitude of 1 microjansky.
AB_MAG_1UJY = 23.9


def _uncalibrated(reason: str) -> Calibration:
    return Calibration(flags=int(Flag.NO_CALIBRATION), reason=reason)


def _to_ab(cal: Calibration) -> Calibration:
    """Return ``cal`` moved onto the AB scale when it is a Vega zero point of a known band."""
    if not cal.ok or cal.mag_system != "Vega" or cal.ref_band not in AB_MINUS_VEGA:
        return cal
    return replace(cal, zp_mag=cal.zp_mag + AB_MINUS_VEGA[cal.ref_band], mag_system="AB")


def stage_calibrate(ctx: Context) -> Context:
    """Find the zero point: the caller's, else a catalog fit, else none (NO_CALIBRATION).

    With aperture correction (or one radius) one fit at the calibration radius
    serves every radius, since all magnitudes are total magnitudes; without it,
    each radius gets its own fit (skynetsoap bug B3).
    """
    frame = need(ctx.frame, "frame")
    aps = need(ctx.apertures, "apertures")
    n_r = len(aps.radii_px)
    band = frame.band
    cal_cfg = ctx.config.calibration
    if ctx.zeropoint is not None:
        cal = Calibration(
            zp_mag=float(ctx.zeropoint),
            zp_err_mag=0.0,
            ref_band=band,
            mag_system=mag_system(band),
            reason="zero point given by the caller",
        )
        cals: tuple[Calibration, ...] = (cal,) * n_r
    elif ctx.catalogs is None:
        cals = (_uncalibrated("no reference catalogs given"),) * n_r
    elif not cal_cfg.enabled:
        cals = (_uncalibrated("calibration.enabled = false"),) * n_r
    elif frame.wcs is None:
        cals = (_uncalibrated("no WCS: catalog stars cannot be matched"),) * n_r
    else:
        c_ra, c_dec, radius = frame_footprint(frame.wcs, frame.shape)
        fit = [aps.cal_index] if (aps.corrected or n_r == 1) else list(range(n_r))
        found: dict[int, Calibration] = {}
        for i in fit:
            found[i] = calibrate_sources(
                calibration_sources(ctx, i),
                band=band,
                center_ra_deg=c_ra,
                center_dec_deg=c_dec,
                radius_deg=radius,
                config=cal_cfg,
                catalogs=ctx.catalogs,
            )
        cals = tuple(found.get(i, found[aps.cal_index]) for i in range(n_r))
    if cal_cfg.convert_to_ab:
        cals = tuple(_to_ab(c) for c in cals)
    notes = ctx.notes
    main = cals[aps.cal_index]
    if not main.ok:
        notes += (f"no zero point: {main.reason or 'calibration failed'}",)
    return replace(ctx, calibrations=cals, notes=notes)


def _select(ctx: Context) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
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


def stage_table(ctx: Context) -> Context:
    """Build the result table (whole columns at once) and the frame summary."""
    frame = need(ctx.frame, "frame")
    blocks = need(ctx.blocks, "blocks")
    aps = need(ctx.apertures, "apertures")
    limits = need(ctx.limits, "limits")
    fwhm = need(ctx.fwhm, "fwhm")
    bkg = need(ctx.background, "background")
    cfg = ctx.config
    ri, pi = _select(ctx)
    n = len(ri)
    t = frame.exptime_s
    radius = np.asarray(aps.radii_px, np.float64)[ri]
    ap_corr = np.asarray(aps.ap_corr_mag, np.float64)[ri]
    zp = np.array([c.zp_mag for c in ctx.calibrations], np.float64)[ri]
    zp_err = np.array([c.zp_err_mag for c in ctx.calibrations], np.float64)[ri]
    n_cal = np.array([c.n_stars for c in ctx.calibrations], np.int64)[ri]
    systems = np.array([c.mag_system if c.ok else "none" for c in ctx.calibrations])[ri]
    cal_flags = np.array([c.flags for c in ctx.calibrations], np.int64)[ri]
    # AB - Vega offset of the band each zero point is on (the substitute band for
    # unfiltered frames), so that flux_ujy is on the AB scale.
    offset = np.array(
        [
            AB_MINUS_VEGA.get(c.ref_band, np.nan)
            if c.mag_system == "Vega"
            else (0.0 if c.mag_system == "AB" else np.nan)
            for c in ctx.calibrations
        ],
        np.float64,
    )[ri]
    flux = blocks.flux_e[ri, pi]
    flux_err = blocks.flux_err_e[ri, pi]
    flag = blocks.flag[ri, pi].copy() | cal_flags
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / flux_err
        positive = np.where(flux > 0, flux, np.nan)
        ins_mag = -2.5 * np.log10(positive / t) + ap_corr
        ins_err = MAG_PER_REL_FLUX * flux_err / positive
    is_det = np.isfinite(snr) & (snr >= cfg.photometry.forced_snr_threshold) & (flux > 0)
    flag |= np.where(is_det, 0, int(Flag.UPPER_LIMIT))
    calibrated = np.isfinite(zp)
    flag |= np.where(calibrated, 0, int(Flag.NO_CALIBRATION))
    cal_mag = np.where(is_det, ins_mag + zp, np.nan)
    cal_err = np.where(is_det, np.hypot(ins_err, zp_err), np.nan)
    lim_a = flux_to_mag(limits.analytic_flux_e[ri, pi], t, 0.0, ap_corr) + zp
    lim_r = flux_to_mag(limits.robust_flux_e[ri, pi], t, 0.0, ap_corr) + zp
    use_robust = (cfg.limits.method == "robust") & np.isfinite(lim_r)
    lim = np.where(use_robust, lim_r, lim_a)
    # Flux density on the AB scale (linear: defined for negative fluxes too).
    with np.errstate(invalid="ignore", over="ignore"):
        scale = 10.0 ** (0.4 * (AB_MAG_1UJY - (zp + offset))) * 10.0 ** (-0.4 * ap_corr) / t
        flux_ujy = flux * scale
        flux_ujy_err = np.hypot(flux_err * scale, flux_ujy * zp_err / MAG_PER_REL_FLUX)
    mid = frame.mid_time_utc
    mjd = float(Time(mid, scale="utc").mjd)
    columns = {
        "image_file": frame.path.name,
        "telescope": frame.telescope,
        "filter": frame.band,
        "exptime": t,
        "mjd": mjd,
        "jd": mjd + 2400000.5,
        "x_pix": blocks.x_px[pi],
        "y_pix": blocks.y_px[pi],
        "ra": blocks.ra_deg[pi],
        "dec": blocks.dec_deg[pi],
        "flux": flux,
        "flux_err": flux_err,
        "snr": snr,
        "ins_mag": ins_mag,
        "ins_mag_err": ins_err,
        "calibrated_mag": cal_mag,
        "calibrated_mag_err": cal_err,
        "cal_mag_system": systems,
        "zeropoint": zp,
        "zeropoint_err": zp_err,
        "aperture_id": ri,
        "aperture_radius": radius,
        "fwhm": fwhm.fwhm_px,
        "n_cal_stars": n_cal,
        "limiting_mag_analytic": lim_a,
        "limiting_mag_robust": lim_r,
        "limiting_mag": lim,
        "is_forced": blocks.is_forced[pi],
        "flag": flag,
        "target_name": blocks.target_name[pi] if n else np.zeros(0, str),
        "is_detection": is_det,
        "band": frame.band,
        "mid_time_utc": mid.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "flux_ujy": flux_ujy,
        "flux_ujy_err": flux_ujy_err,
        "ap_corr_mag": ap_corr,
    }
    main = ctx.calibrations[aps.cal_index]
    r_cal = aps.radii_px[aps.cal_index]
    a_cal = aps.ap_corr_mag[aps.cal_index]
    mesh = sky_sample_size(cfg.extraction.back_size_px)
    f_lim = float(
        analytic_limit_flux(
            np.array([bkg.global_rms_e**2]), r_cal, np.array([mesh]), cfg.limits.n_sigma
        )[0]
    )
    lim_frame = float(flux_to_mag(f_lim, t, main.zp_mag, a_cal))
    robust_sigma = limits.blank.sigma_e.get(r_cal, math.nan) if limits.blank else math.nan
    lim_robust = float(flux_to_mag(cfg.limits.n_sigma * robust_sigma, t, main.zp_mag, a_cal))
    if frame.wcs is not None:
        c_ra, c_dec, _ = frame_footprint(frame.wcs, frame.shape)
    else:
        c_ra = c_dec = math.nan
    frame_flags = 0 if frame.wcs is not None else int(Flag.NO_WCS)
    frame_flags |= main.flags | (0 if main.ok else int(Flag.NO_CALIBRATION))
    summary = FrameSummary(
        image_file=str(frame.path),
        telescope=frame.telescope,
        filter_raw=frame.filter_raw,
        band=frame.band,
        exptime_s=t,
        mid_time_utc=mid,
        gain_e_per_adu=frame.gain_e_per_adu,
        read_noise_e=frame.read_noise_e,
        saturation_adu=frame.saturation_adu,
        fwhm_px=fwhm.fwhm_px,
        n_fwhm_stars=fwhm.n_stars,
        n_sources=int((~blocks.is_forced).sum()),
        aperture_radii_px=aps.radii_px,
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
    )
    meta = {
        "soapd_version": __version__,
        "config_fingerprint": cfg.fingerprint(),
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
        "aperture_radii_px": list(aps.radii_px),
        "ap_corr_mag": list(aps.ap_corr_mag),
        "cog_stars": aps.cog.n_stars if aps.cog is not None else 0,
        "sky_rms_e": bkg.global_rms_e,
        "zeropoint": main.zp_mag,
        "zeropoint_err": main.zp_err_mag,
        "calibration": main.reason,
        "blank_sky_apertures": limits.blank.n_used if limits.blank else 0,
        "noise_correlation_beta": list(limits.beta),
        "notes": list(ctx.notes),
    }
    table = build_table(columns, n, meta)
    return replace(ctx, result=FrameResult(summary=summary, table=table))
