"""Stage ``calibrate``: the frame's zero point from reference stars (or the caller's).

Detections are cross-matched with catalog stars (:mod:`soapd.pipeline.crossmatch`)
and a robust zero point is fitted (:mod:`soapd.pipeline.zeropoint`), walking the
catalog chain until one catalog gives a fit.

Conventions: instrumental magnitudes are ``ins_mag = -2.5 log10(flux_e / exptime_s)``
(electrons per second, aperture-corrected to total flux), so the zero point is
per second of exposure and ``calibrated_mag = ins_mag + zp_mag``.

The fit, for the calibrators i that pass the cuts (:func:`select_calibrators`):

* ``delta_i = m_cat,i - ins_mag_i`` with ``sigma_i^2 = ins_mag_err_i^2 + m_cat_err_i^2``
  (plus ``(k sigma_colour,i)^2`` when a colour term k is fitted);
* model ``delta = zp`` or ``delta = zp + k (c - c_ref)``, fitted by inverse-variance
  weighted least squares;
* clipping: start from the median; a star is kept when
  ``|delta_i - model_i| <= sigma_clip * max(s, sigma_i)`` with ``s`` = 1.4826 x MAD of
  the kept residuals (the robust scatter; a star's own error only widens its
  window, so bright stars with tiny errors are not over-clipped); clipped stars
  may come back; repeat until the set is stable or ``max_iter``;
* error: the formal WLS error times ``sqrt(max(1, chi2_red))``, with the
  systematic floor ``zp_floor_mag`` added in quadrature.

**Colour term.** When ``calibration.color_term`` is on, ``c`` is the catalog colour
named in ``Calibration.color_name`` (e.g. g-r, on the reference band's system)
and ``c_ref`` (``Calibration.color_ref_mag``) is the median colour of the
calibrators used. ``zp_mag`` is then the zero point **at that median colour**:
applying ``zp_mag`` alone to a target of typical colour is unbiased, and the
exact magnitude of a target of colour c is ``ins_mag + zp_mag + color_term (c - c_ref)``.

**Sanity gate** (:func:`~soapd.pipeline.zeropoint.implausible`): a fit with a
non-finite zero point or error, an error above ``max_zp_err_mag`` or fewer than
``min_stars`` calibrators is rejected, and the next catalog is tried. A frame that
cannot be calibrated keeps a Calibration with NaN zero point, the NO_CALIBRATION
flag and a ``reason`` naming every catalog tried and why it failed; the reason is
logged and goes into the frame summary (``cal_reason``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
from astropy.table import Table

from soapd.errors import CatalogError
from soapd.filters import AB_MINUS_VEGA, is_unfiltered, mag_system
from soapd.flags import Flag
from soapd.pipeline.context import Context, need
from soapd.pipeline.crossmatch import Selection, column, select_calibrators
from soapd.pipeline.forced import frame_footprint
from soapd.pipeline.photometry import MAG_PER_REL_FLUX
from soapd.pipeline.zeropoint import ZeroPointFit, fit_zero_point, implausible

if TYPE_CHECKING:
    from soapd.config import CalibrationConfig

__all__ = [
    "Calibration",
    "ReferenceProvider",
    "ZeroPointFit",
    "calibrate_sources",
    "calibration_sources",
    "fit_zero_point",
    "select_calibrators",
    "stage_calibrate",
]

logger = logging.getLogger(__name__)


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
    """A frame's zero point (per second of exposure, electrons) and how it was found.

    ``zp_mag``: ``calibrated_mag = ins_mag + zp_mag``; with a colour term it is the
    zero point at the calibrators' median colour ``color_ref_mag`` (module docstring).
    ``scatter_mag``: robust scatter (1.4826 MAD) of the used calibrators' residuals.
    ``n_stars``: calibrators used after clipping; ``n_matched``: one-to-one matches
    before any cut. ``used_index``/``rejected_index``: rows of ``sources`` used, and
    those that passed the cuts but were clipped.
    """

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
    #: Colour of the colour term (e.g. "g-r"), empty when none was fitted.
    color_name: str = ""
    #: Median colour of the calibrators (mag): where ``zp_mag`` applies exactly.
    color_ref_mag: float = float("nan")
    #: How the reference magnitudes were obtained (e.g. "R = Jordi2006(r, i)").
    ref_how: str = ""

    @property
    def ok(self) -> bool:
        """True when a finite zero point was fitted."""
        return bool(np.isfinite(self.zp_mag))


def _failed(reason: str, *, flags: int, ref_band: str, n_matched: int = 0) -> Calibration:
    return Calibration(
        flags=flags | int(Flag.NO_CALIBRATION),
        reason=reason,
        ref_band=ref_band,
        n_matched=n_matched,
    )


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

    Walks ``catalogs.chain(ref_band)`` and returns the first catalog's fit that
    keeps at least ``min_stars`` calibrators; ``ref_band`` is ``band``, or
    ``calibration.unfiltered_band`` for unfiltered frames (then CAL_UNFILTERED is
    set). Never raises for a missing catalog or too few stars: returns a
    Calibration with NaN zero point, the NO_CALIBRATION flag and a ``reason``.
    A catalog that raises CatalogError (the provider's documented failure) is
    skipped; any other exception from the provider is a bug and propagates.

    Parameters
    ----------
    sources
        One row per detection: ``ra``/``dec`` (deg), ``ins_mag``/``ins_mag_err``
        (mag, -2.5 log10 e-/s, aperture-corrected to total), ``flag`` (Flag bits), ``snr``.
    band
        Canonical band of the frame (``soapd.filters.normalise_filter``).
    center_ra_deg, center_dec_deg, radius_deg
        Cone covering the frame (deg).
    config
        The ``[calibration]`` section.
    catalogs
        Reference star provider (``soapd.catalogs.CatalogService``).
    """
    flags = 0
    ref_band = band
    if is_unfiltered(band):
        ref_band = config.unfiltered_band
        flags |= int(Flag.CAL_UNFILTERED)
    if not config.enabled:
        return _failed(
            "calibration disabled (calibration.enabled = false)", flags=flags, ref_band=ref_band
        )
    if len(sources) == 0:
        return _failed("no detections to calibrate with", flags=flags, ref_band=ref_band)
    chain = catalogs.chain(ref_band)
    if not chain:
        return _failed(
            f"no reference catalog provides band {ref_band!r}; set calibration.chains",
            flags=flags,
            ref_band=ref_band,
        )
    reasons: list[str] = []
    best_matched = 0
    cone = (center_ra_deg, center_dec_deg, radius_deg)
    for name in chain:
        cal, reason, n_matched = _try_catalog(
            sources,
            name,
            cone=cone,
            ref_band=ref_band,
            flags=flags,
            config=config,
            catalogs=catalogs,
        )
        if cal is not None:
            return cal
        reasons.append(reason)
        best_matched = max(best_matched, n_matched)
    return _failed("; ".join(reasons), flags=flags, ref_band=ref_band, n_matched=best_matched)


def _try_catalog(
    sources: Table,
    name: str,
    *,
    cone: tuple[float, float, float],
    ref_band: str,
    flags: int,
    config: CalibrationConfig,
    catalogs: ReferenceProvider,
) -> tuple[Calibration | None, str, int]:
    """Fit against catalog ``name`` in ``cone`` (RA, Dec, radius; deg).

    Return (the calibration or None, why it failed, how many pairs matched).
    """
    ra_deg, dec_deg, radius_deg = cone
    try:
        stars = catalogs.stars(
            name, ra_deg=ra_deg, dec_deg=dec_deg, radius_deg=radius_deg, band=ref_band
        )
    except CatalogError as exc:
        logger.warning(
            "calibration: %s unusable for %s: %s; trying the next catalog", name, ref_band, exc
        )
        return None, f"{name}: {exc}", 0
    sel = select_calibrators(sources, stars, config)
    cut_note = ", ".join(f"{k} {v}" for k, v in sel.removed.items()) or "none removed"
    if len(sel.src_idx) < config.min_stars:
        msg = (
            f"{name}: {len(sel.src_idx)} usable calibrators of {sel.n_matched} matched "
            f"(need {config.min_stars}; {cut_note})"
        )
        logger.warning("calibration: %s; trying the next catalog", msg)
        return None, msg, sel.n_matched
    cal = _fit_catalog(
        sources, stars, sel, name=name, ref_band=ref_band, flags=flags, config=config
    )
    if cal.ok and (why := implausible(cal.zp_mag, cal.zp_err_mag, cal.n_stars, config)):
        cal = _failed(why, flags=flags, ref_band=ref_band, n_matched=sel.n_matched)
    if not cal.ok:
        logger.warning("calibration: %s: %s; trying the next catalog", name, cal.reason)
        return None, f"{name}: {cal.reason}", sel.n_matched
    logger.info(
        "calibration: %s %s zp=%.3f+-%.3f scatter=%.3f n=%d/%d (%s)",
        name,
        ref_band,
        cal.zp_mag,
        cal.zp_err_mag,
        cal.scatter_mag,
        cal.n_stars,
        cal.n_matched,
        cut_note,
    )
    return cal, "", sel.n_matched


def _with_colour(
    color: npt.NDArray[np.float64],
    color_err: npt.NDArray[np.float64],
    min_stars: int,
    name: str,
    color_name: object,
) -> npt.NDArray[np.bool_] | None:
    """Return which calibrators have a colour; None (logged) when too few for a colour term."""
    has = np.isfinite(color) & np.isfinite(color_err)
    if has.sum() >= max(min_stars, 3):
        return has
    logger.warning(
        "calibration: %s: only %d calibrators have a %s colour; fitting zp alone",
        name,
        int(has.sum()),
        color_name,
    )
    return None


def _fit_catalog(
    sources: Table,
    stars: Table,
    sel: Selection,
    *,
    name: str,
    ref_band: str,
    flags: int,
    config: CalibrationConfig,
) -> Calibration:
    ins = column(sources, "ins_mag")[sel.src_idx]
    ins_err = column(sources, "ins_mag_err")[sel.src_idx]
    mag = column(stars, "mag")[sel.star_idx]
    mag_err = column(stars, "mag_err")[sel.star_idx]
    color = column(stars, "color")[sel.star_idx]
    color_err = column(stars, "color_err")[sel.star_idx]
    delta, sigma = mag - ins, np.hypot(ins_err, mag_err)
    src_idx = sel.src_idx
    use_color = config.color_term and bool(stars.meta.get("color_name"))
    if use_color:
        has = _with_colour(color, color_err, config.min_stars, name, stars.meta.get("color_name"))
        use_color = has is not None
        if has is not None:
            delta, sigma, color, color_err, src_idx = (
                delta[has],
                sigma[has],
                color[has],
                color_err[has],
                src_idx[has],
            )
    fit = fit_zero_point(
        delta,
        sigma,
        color_mag=color if use_color else None,
        color_err_mag=color_err if use_color else None,
        sigma_clip=config.sigma_clip,
        max_iter=config.max_iter,
        min_stars=config.min_stars,
        floor_mag=config.zp_floor_mag,
    )
    if fit is None:
        return _failed(
            f"fewer than {config.min_stars} calibrators survive clipping",
            flags=flags,
            ref_band=ref_band,
            n_matched=sel.n_matched,
        )
    cal = Calibration(
        zp_mag=fit.zp_mag,
        zp_err_mag=fit.zp_err_mag,
        scatter_mag=fit.scatter_mag,
        n_stars=int(fit.keep.sum()),
        n_matched=sel.n_matched,
        catalog=name,
        ref_band=ref_band,
        mag_system=str(stars.meta.get("system", "none")),
        color_term=fit.color_term,
        color_term_err=fit.color_term_err,
        flags=flags,
        reason="",
        used_index=src_idx[fit.keep],
        rejected_index=src_idx[~fit.keep],
        color_name=str(stars.meta.get("color_name", "")) if use_color else "",
        color_ref_mag=fit.color_ref_mag,
        ref_how=str(stars.meta.get("how", "")),
    )
    return _to_ab(cal) if config.convert_to_ab else cal


def calibration_sources(ctx: Context, radius_index: int) -> Table:
    """Return the detections at one radius as the table ``calibrate_sources`` takes.

    Columns: ra, dec (deg), ins_mag (aperture-corrected, e-/s), ins_mag_err, flag, snr.
    """
    frame = need(ctx.frame, "frame")
    blocks = need(ctx.blocks, "blocks")
    aps = need(ctx.apertures, "apertures")
    det = ~blocks.is_forced
    flux = blocks.flux_e[radius_index, det]
    err = blocks.flux_err_e[radius_index, det]
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = np.where(flux > 0, flux, np.nan)
        ins = -2.5 * np.log10(positive / frame.exptime_s) + aps.ap_corr_mag[radius_index]
        ins_err = MAG_PER_REL_FLUX * err / positive
        snr = flux / err
    return Table(
        {
            "ra": blocks.ra_deg[det],
            "dec": blocks.dec_deg[det],
            "ins_mag": ins,
            "ins_mag_err": ins_err,
            "flag": blocks.flag[radius_index, det],
            "snr": snr,
        }
    )


def _to_ab(cal: Calibration) -> Calibration:
    """Return ``cal`` moved onto the AB scale when it is a Vega zero point of a known band."""
    if not cal.ok or cal.mag_system != "Vega" or cal.ref_band not in AB_MINUS_VEGA:
        return cal
    return replace(cal, zp_mag=cal.zp_mag + AB_MINUS_VEGA[cal.ref_band], mag_system="AB")


def _catalog_fits(ctx: Context, catalogs: ReferenceProvider) -> tuple[Calibration, ...]:
    """Return one catalog fit per radius: one fit shared by all, or one fit per radius.

    With aperture correction (or one radius) one fit at the calibration radius
    serves every radius, since all magnitudes are total magnitudes; without it,
    each radius gets its own fit (skynetsoap bug B3).
    """
    frame = need(ctx.frame, "frame")
    aps = need(ctx.apertures, "apertures")
    wcs = need(frame.wcs, "WCS")
    n_r = len(aps.radii_px)
    c_ra, c_dec, radius = frame_footprint(wcs, frame.shape)
    fit = [aps.cal_index] if (aps.corrected or n_r == 1) else list(range(n_r))
    found: dict[int, Calibration] = {}
    for i in fit:
        found[i] = calibrate_sources(
            calibration_sources(ctx, i),
            band=frame.band,
            center_ra_deg=c_ra,
            center_dec_deg=c_dec,
            radius_deg=radius,
            config=ctx.config.calibration,
            catalogs=catalogs,
        )
    return tuple(found.get(i, found[aps.cal_index]) for i in range(n_r))


def stage_calibrate(ctx: Context) -> Context:
    """Find the zero point: the caller's, else a catalog fit, else none (NO_CALIBRATION)."""
    frame = need(ctx.frame, "frame")
    aps = need(ctx.apertures, "apertures")
    n_r = len(aps.radii_px)
    cal_cfg = ctx.config.calibration
    if ctx.zeropoint is not None and np.isfinite(ctx.zeropoint):
        cal = Calibration(
            zp_mag=float(ctx.zeropoint),
            zp_err_mag=0.0,
            ref_band=frame.band,
            mag_system=mag_system(frame.band),
            reason="zero point given by the caller",
        )
        cals: tuple[Calibration, ...] = (cal,) * n_r
    elif ctx.catalogs is None:
        cals = (_failed("no reference catalogs given", flags=0, ref_band=""),) * n_r
    elif not cal_cfg.enabled:
        cals = (_failed("calibration.enabled = false", flags=0, ref_band=""),) * n_r
    elif frame.wcs is None:
        cals = (_failed("no WCS: catalog stars cannot be matched", flags=0, ref_band=""),) * n_r
    else:
        cals = _catalog_fits(ctx, ctx.catalogs)
    if cal_cfg.convert_to_ab:
        cals = tuple(_to_ab(c) for c in cals)
    notes = ctx.notes
    main = cals[aps.cal_index]
    if not main.ok:
        notes += (f"no zero point: {main.reason or 'calibration failed'}",)
        logger.info("%s: no zero point: %s", frame.path.name, main.reason or "calibration failed")
    return replace(ctx, calibrations=cals, notes=notes)
