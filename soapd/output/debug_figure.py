"""The four-panel debug figure of one frame (skynetsoap's ``debug_image``, B22 fixed).

Panels, left to right and top to bottom:

1. the frame as read, with a 1-99 percentile stretch;
2. the background map, with its median level and the median background RMS
   in the title;
3. the background-subtracted frame with every extracted source (red circles)
   and its measuring aperture (cyan circles of the aperture radius);
4. the same frame with the calibration stars actually drawn: the ones used
   in the zero-point fit (lime circles), the ones matched but rejected (orange
   crosses: clipped, saturated, flagged, not isolated, outside the magnitude
   window) and the other reference-catalog stars on the frame (grey squares),
   plus a label with the aperture radius and the zero point.

WCS axes are used when the frame has a celestial WCS. Drawing uses a bare
``matplotlib.figure.Figure`` with the Agg canvas: no pyplot state, no display
needed. :func:`draw_debug_figure` is the pure drawing step (arrays in, figure
out); :func:`soapd.output.debug.debug_image` gathers those arrays from a frame file
by running the pipeline's stages. Pixel coordinates are 0-based.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from astropy.wcs import WCS
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DebugLayers", "draw_debug_figure", "panel"]

FloatArray = npt.NDArray[np.float64]

#: Labels (and gids) of the marker sets drawn on panels 3 and 4; tests look them up.
SOURCES_GID = "sources"
APERTURES_GID = "apertures"
CAL_USED_GID = "calibrators_used"
CAL_REJECTED_GID = "calibrators_rejected"
CATALOG_GID = "catalog_stars"


def _empty() -> FloatArray:
    return np.zeros(0, dtype=np.float64)


@dataclass(frozen=True, slots=True, kw_only=True)
class DebugLayers:
    """Everything the debug figure shows; pixel positions are 0-based (x = column).

    ``image_adu`` and ``background_adu`` have the frame's shape; ``background_rms_adu``
    is the RMS map (or None). ``used_*``/``rejected_*`` are the calibration stars'
    pixel positions; ``catalog_*`` the reference stars on the frame.
    """

    image_adu: npt.NDArray[Any]
    background_adu: npt.NDArray[Any]
    background_rms_adu: npt.NDArray[Any] | None = None
    source_x_px: FloatArray = field(default_factory=_empty)
    source_y_px: FloatArray = field(default_factory=_empty)
    aperture_radius_px: float = float("nan")
    used_x_px: FloatArray = field(default_factory=_empty)
    used_y_px: FloatArray = field(default_factory=_empty)
    rejected_x_px: FloatArray = field(default_factory=_empty)
    rejected_y_px: FloatArray = field(default_factory=_empty)
    catalog_x_px: FloatArray = field(default_factory=_empty)
    catalog_y_px: FloatArray = field(default_factory=_empty)
    wcs: WCS | None = None
    title: str = ""
    zp_mag: float = float("nan")
    zp_err_mag: float = float("nan")
    catalog_name: str | None = None
    notes: Sequence[str] = ()
    unit: str = "ADU"


def _stretch(data: npt.NDArray[Any], lo: float = 1.0, hi: float = 99.0) -> tuple[float, float]:
    """Return the (lo, hi) percentiles of the finite pixels, or (0, 1) if there are none."""
    finite = np.asarray(data, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    vmin, vmax = np.percentile(finite, [lo, hi])
    if not vmax > vmin:
        vmax = vmin + 1.0
    return float(vmin), float(vmax)


def _circles(
    ax: Axes, x: FloatArray, y: FloatArray, radius: float, *, color: str, gid: str, label: str
) -> None:
    """Draw circles of ``radius`` px at (x, y) as one collection with ``gid`` and ``label``."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    ok = np.isfinite(x) & np.isfinite(y)
    patches = [Circle((float(a), float(b)), radius) for a, b in zip(x[ok], y[ok], strict=True)]
    coll = PatchCollection(patches, facecolor="none", edgecolor=color, linewidth=0.8)
    coll.set_gid(gid)
    coll.set_label(label)
    ax.add_collection(coll)


def _markers(ax: Axes, x: FloatArray, y: FloatArray, *, gid: str, label: str, **style: Any) -> None:
    """Draw point markers at (x, y) as one scatter collection with ``gid`` and ``label``."""
    ok = np.isfinite(x) & np.isfinite(y)
    coll = ax.scatter(x[ok], y[ok], label=label, **style)
    coll.set_gid(gid)


def _image_axes(fig: Figure, index: int, wcs: WCS | None) -> Axes:
    """Add subplot ``index`` of a 2x2 grid (gid ``panel<index>``), WCS axes when celestial."""
    if wcs is not None and getattr(wcs, "has_celestial", False):
        ax: Any = fig.add_subplot(2, 2, index, projection=wcs.celestial)
        ax.set_gid(f"panel{index}")
        ax.coords[0].set_axislabel("RA")
        ax.coords[1].set_axislabel("Dec")
        return cast("Axes", ax)
    plain: Axes = fig.add_subplot(2, 2, index)
    plain.set_gid(f"panel{index}")
    plain.set_xlabel("x [px]")
    plain.set_ylabel("y [px]")
    return plain


def _show(
    fig: Figure, ax: Axes, data: npt.NDArray[Any], title: str, *, unit: str, cmap: str = "gray"
) -> None:
    vmin, vmax = _stretch(data)
    im = ax.imshow(data, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=unit)
    ax.set_title(title, fontsize=9)
    ny, nx = data.shape
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)


def draw_debug_figure(
    layers: DebugLayers, out_path: str | Path | None = None, *, dpi: int = 150
) -> Figure:
    """Return the four-panel debug figure of ``layers``; save it as PNG to ``out_path`` if given.

    Parameters
    ----------
    layers
        Images (ADU) and marker positions (0-based pixels).
    out_path
        Where to write the PNG (folders are created); None: do not save.
    dpi
        Resolution of the saved PNG in dots per inch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 11), layout="constrained")
    FigureCanvasAgg(fig)
    if layers.title:
        fig.suptitle(layers.title, fontsize=11)
    image = np.asarray(layers.image_adu, dtype=np.float64)
    back = np.asarray(layers.background_adu, dtype=np.float64)
    sub = image - back

    ax1 = _image_axes(fig, 1, layers.wcs)
    unit = layers.unit
    _show(fig, ax1, image, "1. frame as read (1-99 % stretch)", unit=unit)

    rms = layers.background_rms_adu
    rms_text = "n/a" if rms is None else f"{float(np.nanmedian(rms)):.2f} {unit}"
    ax2 = _image_axes(fig, 2, layers.wcs)
    _show(
        fig,
        ax2,
        back,
        f"2. background: median {float(np.nanmedian(back)):.1f} {unit}, RMS {rms_text}",
        unit=unit,
        cmap="viridis",
    )

    radius = layers.aperture_radius_px if np.isfinite(layers.aperture_radius_px) else 3.0
    n_src = int(np.sum(np.isfinite(layers.source_x_px)))
    ax3 = _image_axes(fig, 3, layers.wcs)
    _show(fig, ax3, sub, f"3. background-subtracted: {n_src} sources, apertures", unit=unit)
    _circles(
        ax3,
        layers.source_x_px,
        layers.source_y_px,
        radius * 2.0,
        color="red",
        gid=SOURCES_GID,
        label=f"sources ({n_src})",
    )
    _circles(
        ax3,
        layers.source_x_px,
        layers.source_y_px,
        radius,
        color="cyan",
        gid=APERTURES_GID,
        label=f"aperture r = {radius:.2f} px",
    )
    corners = _emptiest_corners(sub.shape, layers.source_x_px, layers.source_y_px)
    ax3.legend(handles=_legend_handles(ax3), loc=corners[0], fontsize=7)

    ax4 = _image_axes(fig, 4, layers.wcs)
    _show(fig, ax4, sub, "4. calibration stars", unit=unit)
    _draw_calibration(ax4, layers, radius, corners)
    return _save(fig, out_path, dpi)


#: Matplotlib's location names of the four corners.
Corner = Literal["upper left", "upper right", "lower left", "lower right"]

#: Each corner: (at the right, at the top) of the image.
_CORNERS: dict[Corner, tuple[bool, bool]] = {
    "upper left": (False, True),
    "upper right": (True, True),
    "lower left": (False, False),
    "lower right": (True, False),
}


def _emptiest_corners(
    shape: tuple[int, ...], x_px: npt.ArrayLike, y_px: npt.ArrayLike
) -> list[Corner]:
    """Return the image corners ordered by how few sources fall in them (fewest first).

    Each corner is the outer 35 % x 35 % of the image (the size of an info box or a
    legend on the panel); pixel (0, 0) is drawn at the lower left (``origin="lower"``),
    so "upper" is high y. Ties keep the order upper left, upper right, lower left,
    lower right. Used to keep the panels' text boxes and legends off the stars.
    """
    ny, nx = shape[0], shape[1]
    x = np.asarray(x_px, dtype=float)
    y = np.asarray(y_px, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    counts: dict[Corner, int] = {}
    for name, (right, upper) in _CORNERS.items():
        in_x = x >= 0.65 * nx if right else x < 0.35 * nx
        in_y = y >= 0.65 * ny if upper else y < 0.35 * ny
        counts[name] = int(np.count_nonzero(in_x & in_y))
    return sorted(_CORNERS, key=lambda name: counts[name])


def _draw_calibration(ax: Axes, layers: DebugLayers, radius: float, corners: list[Corner]) -> None:
    """Draw panel 4's catalog, used and rejected calibrators, and its label.

    ``corners``: the image corners fewest sources first; the info box takes the
    first, the legend the second.
    """
    n_cat = int(np.sum(np.isfinite(layers.catalog_x_px)))
    n_used = int(np.sum(np.isfinite(layers.used_x_px)))
    n_rej = int(np.sum(np.isfinite(layers.rejected_x_px)))
    cat_name = layers.catalog_name or "catalog"
    _markers(
        ax,
        layers.catalog_x_px,
        layers.catalog_y_px,
        gid=CATALOG_GID,
        label=f"{cat_name} stars ({n_cat})",
        marker="s",
        s=70,
        facecolors="none",
        edgecolors="magenta",
        linewidths=0.6,
    )
    _circles(
        ax,
        layers.used_x_px,
        layers.used_y_px,
        radius,
        color="lime",
        gid=CAL_USED_GID,
        label=f"used in zero point ({n_used})",
    )
    _markers(
        ax,
        layers.rejected_x_px,
        layers.rejected_y_px,
        gid=CAL_REJECTED_GID,
        label=f"matched, rejected ({n_rej})",
        marker="x",
        s=40,
        c="orange",
        linewidths=1.2,
    )
    zp = (
        f"ZP {layers.zp_mag:.3f} ± {layers.zp_err_mag:.3f} mag"
        if np.isfinite(layers.zp_mag)
        else "no zero point"
    )
    lines = [f"Aperture: {radius:.2f} px", zp, *layers.notes]
    right, upper = _CORNERS[corners[0]]
    ax.text(
        0.98 if right else 0.02,
        0.98 if upper else 0.02,
        "\n".join(lines),
        transform=ax.transAxes,
        va="top" if upper else "bottom",
        ha="right" if right else "left",
        fontsize=8,
        color="white",
        bbox={"facecolor": "black", "alpha": 0.6, "pad": 3},
    )
    ax.legend(handles=_legend_handles(ax), loc=corners[1], fontsize=7)


def _legend_handles(ax: Axes) -> list[Any]:
    """Return legend proxies for the labelled collections of ``ax`` (PatchCollections have none)."""
    from matplotlib.lines import Line2D

    handles: list[Any] = []
    for coll in ax.collections:
        label = str(coll.get_label() or "")
        if not label or label.startswith("_"):
            continue
        edge = coll.get_edgecolor()
        face = coll.get_facecolor()
        color: Any = edge[0] if len(edge) else (face[0] if len(face) else "k")
        marker = {CAL_REJECTED_GID: "x", CATALOG_GID: "s"}.get(coll.get_gid() or "", "o")
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker=marker,
                markerfacecolor="none",
                markeredgecolor=color,
                label=label,
            )
        )
    return handles


def panel(fig: Figure, index: int) -> Axes:
    """Return panel ``index`` (1-4) of a figure made by :func:`draw_debug_figure`."""
    for ax in fig.axes:
        if ax.get_gid() == f"panel{index}":
            return ax
    raise KeyError(f"the figure has no panel {index}")


def _save(fig: Figure, out_path: str | Path | None, dpi: int) -> Figure:
    if out_path is not None:
        path = Path(out_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig
