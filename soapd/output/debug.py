"""Gather the debug figure's layers from a frame by running the pipeline's own stages.

:func:`debug_image` runs :func:`soapd.pipeline.run_frame` on a frame and takes
every layer from the resulting context: the pixels as read (electrons), the
background and RMS maps, the detections and the calibration radius, and the
calibration of that radius (``Calibration.used_index``/``rejected_index`` index
the detections). The reference-catalog stars on the frame are fetched from the
same catalog service the fit used. Nothing is recomputed differently from
``process_frame``: what the figure shows is what the pipeline did.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from soapd.errors import CatalogError, FrameUnreadable
from soapd.output.debug_figure import DebugLayers, draw_debug_figure

if TYPE_CHECKING:
    from astropy.wcs import WCS
    from matplotlib.figure import Figure

    from soapd.config import Config
    from soapd.models import ExposureMeta, FrameResult
    from soapd.pipeline.calibrate import Calibration, ReferenceProvider
    from soapd.pipeline.context import Context

__all__ = ["debug_image", "layers_from_context"]


def debug_image(
    frame: str | Path | FrameResult,
    out_path: str | Path | None = None,
    *,
    config: Config,
    catalogs: ReferenceProvider | None = None,
    image_path: str | Path | None = None,
    meta: ExposureMeta | None = None,
    dpi: int = 150,
) -> Figure:
    """Draw the four-panel debug figure of a frame; save it to ``out_path`` if given.

    Parameters
    ----------
    frame
        A FITS file, or a ``FrameResult`` whose frame file is ``image_path`` (default:
        its ``summary.image_file``). The frame is processed again with ``config``.
    out_path
        PNG to write (folders are created); None: only return the figure.
    config, catalogs, meta
        As for :func:`soapd.pipeline.process_frame`; without ``catalogs`` panel 4
        shows no calibration stars.
    dpi
        Resolution of the PNG.

    Raises
    ------
    FrameUnreadable, FrameRejected
        The frame cannot be read or measured.
    """
    from soapd.pipeline import run_frame
    from soapd.pipeline.context import Context

    if isinstance(frame, str | Path):
        path = Path(frame)
    else:
        path = Path(image_path or frame.summary.image_file)
    if not path.is_file():
        raise FrameUnreadable(f"{path}: frame file not found (for a FrameResult pass image_path=)")
    ctx = Context(path=path, config=config, meta=meta, catalogs=catalogs)
    ctx, _ = run_frame(ctx)
    return draw_debug_figure(layers_from_context(ctx), out_path, dpi=dpi)


def layers_from_context(ctx: Context) -> DebugLayers:
    """Return the figure's layers from a pipeline context that went through every stage."""
    frame, back, blocks, aps = ctx.frame, ctx.background, ctx.blocks, ctx.apertures
    if frame is None or back is None or blocks is None or aps is None:
        raise ValueError("the pipeline context is incomplete; run every stage first")
    det = ~np.asarray(blocks.is_forced, dtype=bool)
    x = np.asarray(blocks.x_px, dtype=float)[det]
    y = np.asarray(blocks.y_px, dtype=float)[det]
    radius = float(aps.radii_px[aps.cal_index])
    fields: dict[str, Any] = {}
    notes = [f"{frame.band} {frame.exptime_s:g} s"]
    if ctx.fwhm is not None:
        notes[0] += f", FWHM {ctx.fwhm.fwhm_px:.2f} px ({ctx.fwhm.n_stars} stars)"
    zp = err = float("nan")
    if ctx.calibrations:
        cal = ctx.calibrations[aps.cal_index]
        zp, err = cal.zp_mag, cal.zp_err_mag
        fields = {
            "used_x_px": x[cal.used_index],
            "used_y_px": y[cal.used_index],
            "rejected_x_px": x[cal.rejected_index],
            "rejected_y_px": y[cal.rejected_index],
            "catalog_name": cal.catalog,
        }
        if cal.ok:
            notes.append(
                f"{cal.catalog} {cal.ref_band}: {cal.n_stars} used, "
                f"{len(cal.rejected_index)} clipped, {cal.n_matched} matched"
            )
        else:
            notes.append(f"no zero point: {cal.reason}"[:120])
        if frame.wcs is not None and ctx.catalogs is not None and cal.catalog is not None:
            fields.update(_catalog_pixels(ctx.catalogs, cal, frame.wcs, frame.data_e.shape))
    return DebugLayers(
        image_adu=frame.data_e,
        background_adu=back.back_e,
        background_rms_adu=back.rms_e,
        source_x_px=x,
        source_y_px=y,
        aperture_radius_px=radius,
        wcs=frame.wcs,
        title=f"{frame.path.name}   {frame.telescope}   {frame.mid_time_utc:%Y-%m-%d %H:%M:%S} UTC",
        zp_mag=zp,
        zp_err_mag=err,
        notes=tuple(notes),
        unit="e-",
        **fields,
    )


def _catalog_pixels(
    catalogs: ReferenceProvider, cal: Calibration, wcs: WCS, shape: tuple[int, ...]
) -> dict[str, npt.NDArray[np.float64]]:
    """Return the pixel positions of the calibration catalog's stars that fall on the frame."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    assert cal.catalog is not None
    ny, nx = shape[0], shape[1]
    centre = wcs.celestial.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    scale_deg = float(np.max(proj_plane_pixel_scales(wcs.celestial)))
    radius_deg = 0.5 * float(np.hypot(nx, ny)) * scale_deg * 1.05
    try:
        stars = catalogs.stars(
            cal.catalog,
            ra_deg=float(centre[0]),
            dec_deg=float(centre[1]),
            radius_deg=radius_deg,
            band=cal.ref_band,
        )
    except CatalogError:
        return {}
    cx, cy = wcs.celestial.world_to_pixel_values(
        np.asarray(stars["ra_deg"], dtype=float), np.asarray(stars["dec_deg"], dtype=float)
    )
    cx, cy = np.asarray(cx, dtype=float), np.asarray(cy, dtype=float)
    inside = (cx > -0.5) & (cx < nx - 0.5) & (cy > -0.5) & (cy < ny - 0.5)
    return {"catalog_x_px": cx[inside], "catalog_y_px": cy[inside]}
