"""A disk cache of cutouts, so that rebuilding a stack does not read every frame again.

When a frame joins an epoch the epoch's stack is rebuilt; without a cache every
member's whole FITS file would be read again. :func:`cached_loader` keeps, per
frame and target, a box somewhat larger than the stack (``pad_px`` on each side,
in the frame's own grid, centred on the target) in an ``.npz`` file: pixels in
electrons (float32, as frames are stored), the mask and saturation planes (bits),
the box's WCS and the frame's exposure time and mid-time: about 0.4 MB per frame
and target for the default 256 px stack. A frame that cannot be used
is cached as its reason. Later requests are cut from the cached box; a request the
box cannot cover (a frame rotated against the stack's grid) reads the file again.

The cache is disposable (it lives under ``paths.cache_dir``); a file that cannot
be read is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS

from soapd.config import Config
from soapd.errors import SoapdError
from soapd.models import Target
from soapd.pipeline.frame import Frame, load_frame
from soapd.stacks.build import CutoutLoader
from soapd.stacks.cutouts import Cutout, cut_frame, grid_box
from soapd.stacks.records import Candidate

__all__ = ["CutoutCache", "cached_loader"]


class CutoutCache:
    """Cutouts of frames around targets in ``directory`` (one ``.npz`` per frame and target)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, frame_id: int, target: Target, size_px: int) -> Path:
        """Return the cache file of one frame, target position and box size."""
        key = f"{target.name}|{target.ra_deg:.7f}|{target.dec_deg:.7f}|{size_px}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.directory / f"{frame_id}-{digest}.npz"

    def get(self, frame_id: int, target: Target, size_px: int) -> Cutout | str | None:
        """Return the cached cutout, the cached reason it is unusable, or None (not cached)."""
        path = self.path(frame_id, target, size_px)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if "reason" in z:
                    return str(z["reason"])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AstropyWarning)
                    # wcslib parses the header text directly (no card verification).
                    wcs = WCS(str(z["wcs"]))
                data = np.asarray(z["data_e"], np.float64)
                n = data.size
                return Cutout(
                    frame_id=frame_id,
                    data_e=data,
                    mask=np.unpackbits(z["mask"], count=n).astype(bool).reshape(data.shape),
                    saturated=np.unpackbits(z["saturated"], count=n)
                    .astype(bool)
                    .reshape(data.shape),
                    wcs=wcs,
                    x_px=float(z["x_px"]),
                    y_px=float(z["y_px"]),
                    exptime_s=float(z["exptime_s"]),
                    mid_time_utc=datetime.fromisoformat(str(z["mid_time_utc"])).astimezone(UTC),
                )
        except (OSError, ValueError, KeyError):
            return None

    def put(self, frame_id: int, target: Target, size_px: int, item: Cutout | str) -> None:
        """Store a cutout (or the reason the frame is unusable), atomically."""
        path = self.path(frame_id, target, size_px)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            if isinstance(item, str):
                np.savez(fh, reason=np.str_(item))
            else:
                np.savez(
                    fh,
                    data_e=item.data_e.astype(np.float32),
                    mask=np.packbits(item.mask),
                    saturated=np.packbits(item.saturated),
                    wcs=np.str_(item.wcs.to_header(relax=True).tostring()),
                    x_px=item.x_px,
                    y_px=item.y_px,
                    exptime_s=item.exptime_s,
                    mid_time_utc=np.str_(item.mid_time_utc.astimezone(UTC).isoformat()),
                )
        tmp.replace(path)


def cached_loader(
    cache: CutoutCache, target: Target, config: Config, *, pad_px: int = 24
) -> CutoutLoader:
    """Return a cutout loader that reads each frame once and keeps its box in ``cache``.

    The cached box is ``cutout_size_px + 2 pad_px`` square; a stack whose grid is a
    translation of the frame's needs ``cutout_size_px`` plus a few px, so it is always
    served from the cache.
    """
    size = config.stacks.cutout_size_px
    wide = size + 2 * pad_px
    sat_r = config.stacks.saturation_radius_px

    def read(c: Candidate) -> Frame | str:
        try:
            return load_frame(c.path, config=config.frame)
        except SoapdError as exc:
            return f"unreadable: {exc}"

    def load(c: Candidate, grid: tuple[WCS, tuple[int, int]] | None) -> Cutout | str:
        box = cache.get(c.frame_id, target, wide)
        frame: Frame | str | None = None
        if box is None:
            frame = read(c)
            if isinstance(frame, str):
                box = frame
            else:
                box = cut_frame(
                    frame,
                    target.ra_deg,
                    target.dec_deg,
                    frame_id=c.frame_id,
                    size_px=wide,
                    saturation_radius_px=sat_r,
                )
            cache.put(c.frame_id, target, wide, box)
        if isinstance(box, str):
            return box
        if grid is not None:
            bounds = grid_box(box.wcs, grid)
            inside = bounds is not None and (
                bounds[0][0] >= 0
                and bounds[0][1] >= 0
                and bounds[1][0] < box.shape[0]
                and bounds[1][1] < box.shape[1]
            )
            if not inside:
                frame = read(c) if frame is None else frame
                if isinstance(frame, str):
                    return frame
                return cut_frame(
                    frame,
                    target.ra_deg,
                    target.dec_deg,
                    frame_id=c.frame_id,
                    size_px=size,
                    grid=grid,
                    saturation_radius_px=sat_r,
                )
        return cut_frame(
            box,
            target.ra_deg,
            target.dec_deg,
            frame_id=c.frame_id,
            size_px=size,
            grid=grid,
            saturation_radius_px=sat_r,
        )

    return load
