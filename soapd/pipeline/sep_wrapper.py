"""The one door to sep: every call from soapd into the sep C library goes through here.

sep reports a failure inside its C code as a bare ``Exception`` (exactly that class;
its argument checks raise ``ValueError`` and a failed allocation ``MemoryError``).
:func:`_call` turns exactly those bare exceptions into
:class:`~soapd.errors.ExtractionError` naming the sep function, and only around the
sep call itself; every other exception (a wrong argument, a numpy bug) propagates as
itself. No other module of soapd imports ``sep``.

Conventions are sep's: pixel coordinates are 0-based (the centre of the first pixel
is 0.0), images are native-endian float64 in electrons.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
import sep

from soapd.errors import ExtractionError

__all__ = [
    "PixelBufferFull",
    "background",
    "background_map",
    "extract",
    "flux_radius",
    "mask_ellipse",
    "subtract_background",
    "sum_circann",
    "sum_circle",
    "winpos",
]

F64 = npt.NDArray[np.float64]
P = ParamSpec("P")
R = TypeVar("R")

#: sep's object pixel stack is a process-wide setting: extraction holds this lock.
_PIXSTACK_LOCK = threading.Lock()


class PixelBufferFull(ExtractionError):
    """``sep.extract`` ran out of its object pixel stack (raise ``pixstack`` and retry)."""


def _call(name: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Return ``fn(*args, **kwargs)``; a bare ``Exception`` from sep becomes ExtractionError."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if type(exc) is not Exception:  # ValueError, MemoryError, a numpy bug: not sep's C code
            raise
        if "pixel buffer full" in str(exc):
            raise PixelBufferFull(f"sep.{name} failed: {exc}") from exc
        raise ExtractionError(f"sep.{name} failed: {exc}") from exc


def background(
    data_e: F64,
    *,
    mask: npt.NDArray[np.bool_] | None,
    mesh_px: int,
    filter_size: int,
) -> tuple[Any, F64, float, float]:
    """Return sep's background object, its RMS map (e-) and its global level and RMS (e-).

    ``mesh_px`` is the square mesh size and ``filter_size`` the square median filter
    (in meshes), as ``sep.Background(bw, bh, fw, fh)``.
    """
    bkg = _call(
        "Background",
        sep.Background,
        data_e,
        mask=mask,
        bw=mesh_px,
        bh=mesh_px,
        fw=filter_size,
        fh=filter_size,
    )
    rms: F64 = _call("Background.rms", bkg.rms, dtype=np.float64)
    return bkg, rms, float(bkg.globalback), float(bkg.globalrms)


def background_map(sep_background: Any) -> F64:
    """Return the background map (e- per pixel) of a sep background object."""
    back: F64 = _call("Background.back", sep_background.back, dtype=np.float64)
    return back


def subtract_background(sep_background: Any, image_e: F64) -> None:
    """Subtract the background map from ``image_e`` in place."""
    _call("Background.subfrom", sep_background.subfrom, image_e)


def extract(
    data_e: F64, thresh: float, *, pixstack: int, **options: Any
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.int32]]:
    """Return ``sep.extract``'s objects and segmentation map, with the pixel stack ``pixstack``.

    ``options`` are ``sep.extract`` keywords (``segmentation_map=True`` is expected).
    Raise PixelBufferFull when the pixel stack overflows.
    """
    with _PIXSTACK_LOCK:
        _call("set_extract_pixstack", sep.set_extract_pixstack, pixstack)
        objects, segmap = _call("extract", sep.extract, data_e, thresh, **options)
    return objects, segmap


def sum_circle(data_e: F64, x: Any, y: Any, r: Any, **options: Any) -> tuple[F64, F64, Any]:
    """Return (sum, error, flag) of circular apertures (``sep.sum_circle``)."""
    out: tuple[F64, F64, Any] = _call("sum_circle", sep.sum_circle, data_e, x, y, r, **options)
    return out


def sum_circann(
    data_e: F64, x: Any, y: Any, r_in: float, r_out: float, **options: Any
) -> tuple[F64, F64, Any]:
    """Return (sum, error, flag) of circular annuli (``sep.sum_circann``)."""
    out: tuple[F64, F64, Any] = _call(
        "sum_circann", sep.sum_circann, data_e, x, y, r_in, r_out, **options
    )
    return out


def flux_radius(
    data_e: F64, x: Any, y: Any, r_max: Any, frac: float, **options: Any
) -> tuple[F64, Any]:
    """Return (radius holding ``frac`` of the flux within ``r_max``, flag): ``sep.flux_radius``."""
    out: tuple[F64, Any] = _call(
        "flux_radius", sep.flux_radius, data_e, x, y, r_max, frac, **options
    )
    return out


def winpos(data_e: F64, x: Any, y: Any, sigma: Any, **options: Any) -> tuple[F64, F64, Any]:
    """Return (x, y, flag) of windowed centroids (``sep.winpos``)."""
    out: tuple[F64, F64, Any] = _call("winpos", sep.winpos, data_e, x, y, sigma, **options)
    return out


def mask_ellipse(
    mask: npt.NDArray[np.bool_], x: Any, y: Any, *, a: Any, b: Any, theta: Any, r: float
) -> None:
    """Set ``mask`` True inside the ellipses scaled by ``r`` (``sep.mask_ellipse``, in place)."""
    _call("mask_ellipse", sep.mask_ellipse, mask, x, y, a, b, theta, r=r)
