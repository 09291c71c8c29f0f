"""One frame for the web: its stored summary, its sky footprint, its debug figure on demand.

The footprint is read from the frame file's header (WCS only, no pixels). The
debug figure runs the pipeline's own stages on the kept frame file (as
``soapd process --debug`` does) with the catalog cache and local catalog files
only (never VizieR: the web server makes no outside calls) and returns a PNG.
Nothing is written anywhere.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soapd.web.data import _num, flag_words

if TYPE_CHECKING:
    from soapd.config import Config
    from soapd.store.readonly import ReadOnlyStore

__all__ = ["footprint", "frame_payload", "render_debug_png"]

logger = logging.getLogger(__name__)


def footprint(path: Path) -> dict[str, Any] | None:
    """Return the sky footprint of a FITS frame from its header's WCS, or None.

    Keys: ``centre_ra_deg``, ``centre_dec_deg``, ``radius_deg`` (centre to the
    farthest corner) and ``corners_deg`` ([[ra, dec], ...] of the four corners).
    None when the file is gone, unreadable or has no celestial WCS.
    """
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from soapd.pipeline.forced import frame_footprint

    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                for hdu in hdul:
                    header = hdu.header
                    if header.get("NAXIS", 0) == 2 or header.get("ZNAXIS", 0) == 2:
                        nx = int(header.get("ZNAXIS1", header.get("NAXIS1", 0)))
                        ny = int(header.get("ZNAXIS2", header.get("NAXIS2", 0)))
                        wcs = WCS(header, naxis=2)
                        break
                else:
                    return None
            if not wcs.has_celestial or nx == 0 or ny == 0:
                return None
            ra, dec, radius = frame_footprint(wcs, (ny, nx))
            cx = np.array([0, nx - 1, nx - 1, 0], float)
            cy = np.array([0, 0, ny - 1, ny - 1], float)
            cra, cdec = wcs.all_pix2world(cx, cy, 0)
    except (OSError, ValueError, KeyError) as exc:
        logger.debug("footprint of %s: %s", path, exc)
        return None
    return {
        "centre_ra_deg": round(ra, 6),
        "centre_dec_deg": round(dec, 6),
        "radius_deg": round(radius, 6),
        "corners_deg": [
            [round(float(r) % 360.0, 6), round(float(d), 6)] for r, d in zip(cra, cdec, strict=True)
        ],
    }


def frame_payload(store: ReadOnlyStore, frame_id: int) -> dict[str, Any] | None:
    """Return one frame's page data (summary, flags in words, footprint, measurements), or None."""
    row = store.frame_details(frame_id)
    if row is None:
        return None
    meta_text = row.pop("meta_json", None)
    try:
        meta = json.loads(meta_text) if meta_text else {}
    except ValueError:
        meta = {}
    frame = {k: _num(v) for k, v in row.items()}
    frame["flag_words"] = list(flag_words(int(row["flags"] or 0)))
    path = Path(row["path"]) if row["path"] else None
    measurements = [
        {k: _num(v) for k, v in m.items()} | {"flag_words": list(flag_words(int(m["flags"])))}
        for m in store.frame_measurements(frame_id)
    ]
    for m in measurements:
        for key in ("frame_id", "flags", "aperture_id", "is_detection", "is_forced"):
            if m.get(key) is not None:
                m[key] = int(m[key])
    return {
        "frame": frame,
        "meta": {k: _num(v) for k, v in meta.items() if not isinstance(v, dict | list)},
        "file_exists": bool(path and path.is_file()),
        "footprint": footprint(path) if path else None,
        "measurements": measurements,
    }


def render_debug_png(cfg: Config, frame: dict[str, Any], *, dpi: int = 90) -> bytes:
    """Return the four-panel debug figure of a stored frame as PNG bytes.

    Raise SoapdError (FrameUnreadable, FrameRejected, ...) when the frame cannot be read.
    """
    from soapd.errors import FrameUnreadable
    from soapd.output.debug import debug_image
    from soapd.store.frame_rows import meta_from_json

    path = Path(frame["path"]) if frame.get("path") else None
    if path is None or not path.is_file():
        raise FrameUnreadable(f"frame {frame['frame_id']}: its file is no longer kept")
    catalogs = None
    if cfg.calibration.enabled:
        try:
            from soapd.catalogs import CatalogService

            offline = dataclasses.replace(cfg.calibration, online=False)
            catalogs = CatalogService(offline, cfg.paths.catalog_cache_dir)
        except Exception as exc:  # the figure is still useful without calibration stars
            logger.warning("debug figure of frame %s: no catalogs (%s)", frame["frame_id"], exc)
    meta = meta_from_json(frame.get("meta_json"))
    fig = debug_image(path, config=cfg, catalogs=catalogs, meta=meta, dpi=dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
