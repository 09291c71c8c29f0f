"""Build target measurements of known magnitude without pixels (tests, benchmarks, demo).

:func:`target_result` returns a :class:`~soapd.models.FrameResult`
whose table holds forced-photometry rows of watched targets, computed from
their true magnitudes with the soapd conventions: fluxes in electrons,
``mag = -2.5 log10(flux_e / exptime_s) + zp_mag``, and an n-sigma limiting
magnitude ``lim_mag`` that fixes the flux noise
(``sigma_e = 10**(-0.4 (lim_mag - zp_mag)) * exptime_s / n_sigma``). A target with
magnitude None is absent (pure noise at its position). :func:`register_frame`
adds the matching ledger row through the public ledger API.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table

from soapd.filters import AB_MINUS_VEGA, mag_system
from soapd.flags import Flag
from soapd.models import ExposureMeta, FrameResult, FrameSummary

if TYPE_CHECKING:
    from soapd.store import Store

__all__ = ["register_frame", "target_result"]


def register_frame(
    store: Store,
    name: str,
    *,
    mid_time_utc: datetime,
    obs_id: int | None = None,
    telescope: str = "PROMPT-5",
    filter_raw: str = "R",
    exptime_s: float = 80.0,
) -> int:
    """Add a 'downloaded' ledger row for a (virtual) frame file ``name``; return its id."""
    sha = hashlib.sha256(name.encode()).hexdigest()
    meta = ExposureMeta(
        obs_id=obs_id,
        telescope=telescope,
        filter=filter_raw,
        exptime_s=exptime_s,
        mid_time_utc=mid_time_utc,
    )
    return store.record_local(Path(name), sha, 0, source="cli", meta=meta).frame_id


def target_result(
    mags: Mapping[str, float | None],
    *,
    positions: Mapping[str, tuple[float, float]] | None = None,
    mid_time_utc: datetime,
    band: str = "R",
    filter_raw: str | None = None,
    telescope: str = "PROMPT-5",
    exptime_s: float = 80.0,
    zp_mag: float = 22.0,
    zp_err_mag: float = 0.01,
    zp_scatter_mag: float = 0.05,
    lim_mag: float = 19.5,
    n_sigma: float = 5.0,
    n_cal_stars: int = 40,
    cal_catalog: str = "APASS DR9",
    aperture_radii_px: Sequence[float] = (4.0,),
    image_file: str = "frame.fits",
    rng: np.random.Generator | None = None,
) -> FrameResult:
    """Return a FrameResult with one forced row per target and aperture.

    Parameters
    ----------
    mags
        Target name -> true magnitude (calibrated scale), or None for no source.
    mid_time_utc
        Mid-exposure time (aware, UTC).
    lim_mag
        ``n_sigma`` limiting magnitude of the frame; it sets the flux noise.
    rng
        If given, Gaussian noise of that sigma is added to each flux; else the flux
        is the true one exactly.
    """
    system = mag_system(band)
    sigma_e = 10 ** (-0.4 * (lim_mag - zp_mag)) * exptime_s / n_sigma
    rows: list[dict[str, object]] = []
    for name, mag in mags.items():
        ra, dec = (positions or {}).get(name, (150.0, -30.0))
        for ap_id, radius in enumerate(aperture_radii_px):
            true = 0.0 if mag is None else 10 ** (-0.4 * (mag - zp_mag)) * exptime_s
            flux = true + (0.0 if rng is None else float(rng.normal(0.0, sigma_e)))
            snr = flux / sigma_e
            detected = snr >= n_sigma
            ins = -2.5 * math.log10(flux / exptime_s) if flux > 0 else math.nan
            err = 2.5 / math.log(10) / snr if flux > 0 else math.nan
            cal = ins + zp_mag if math.isfinite(ins) else math.nan
            ab_shift = AB_MINUS_VEGA.get(band, 0.0) if system == "Vega" else 0.0
            to_ujy = 10 ** (-0.4 * (zp_mag + ab_shift - 23.9)) / exptime_s
            rows.append(
                {
                    "image_file": image_file,
                    "telescope": telescope,
                    "filter": band,
                    "exptime": exptime_s,
                    "x_pix": 100.0,
                    "y_pix": 120.0,
                    "ra": ra,
                    "dec": dec,
                    "flux": flux,
                    "flux_err": sigma_e,
                    "snr": snr,
                    "ins_mag": ins,
                    "ins_mag_err": err,
                    "calibrated_mag": cal,
                    "calibrated_mag_err": math.hypot(err, zp_err_mag) if flux > 0 else math.nan,
                    "cal_mag_system": system,
                    "zeropoint": zp_mag,
                    "zeropoint_err": zp_err_mag,
                    "aperture_id": ap_id,
                    "aperture_radius": radius,
                    "n_cal_stars": n_cal_stars,
                    "limiting_mag": lim_mag,
                    "is_forced": True,
                    "flag": 0 if detected else int(Flag.UPPER_LIMIT),
                    "target_name": name,
                    "is_detection": detected,
                    "band": band,
                    "flux_ujy": flux * to_ujy,
                    "flux_ujy_err": sigma_e * to_ujy,
                }
            )
    table = Table(rows=rows) if rows else Table()
    table.meta["lim_nsigma"] = n_sigma
    summary = FrameSummary(
        image_file=image_file,
        telescope=telescope,
        filter_raw=filter_raw or band,
        band=band,
        exptime_s=exptime_s,
        mid_time_utc=mid_time_utc.astimezone(UTC),
        gain_e_per_adu=1.0,
        read_noise_e=10.0,
        saturation_adu=60000.0,
        fwhm_px=3.0,
        n_fwhm_stars=30,
        n_sources=100,
        aperture_radii_px=tuple(aperture_radii_px),
        zp_mag=zp_mag,
        zp_err_mag=zp_err_mag,
        zp_scatter_mag=zp_scatter_mag,
        n_cal_stars=n_cal_stars,
        cal_catalog=cal_catalog,
        cal_mag_system=system,
        lim_mag=lim_mag,
        lim_mag_robust=lim_mag,
        sky_rms_e=10.0,
        has_wcs=True,
        center_ra_deg=150.0,
        center_dec_deg=-30.0,
        flags=0,
    )
    return FrameResult(summary=summary, table=table)
