"""The ``[stacks]`` and ``[circular]`` sections: stacked epochs and GCN circular drafts.

Part of the configuration schema (:mod:`soapd.config.schema`), kept in its own
module; the same rules apply (defaults only here, a ``#:`` comment per field).
"""

from __future__ import annotations

from dataclasses import dataclass

from soapd.config.fields import _FROZEN, _opt

__all__ = ["CircularConfig", "StacksConfig"]


@dataclass(**_FROZEN)
class StacksConfig:
    """Stacked epochs: per target, frames of one telescope and filter co-added near in time."""

    #: Build stacked epochs for every watched target.
    enabled: bool = True
    #: With a trigger time, epochs are log-spaced bins in t - T0 whose width is at most this
    #: fraction of t (a bin starting at t spans [t, (1 + factor) t]).
    log_bin_factor: float = _opt(0.1, lo=0.01, hi=10.0)
    #: Seconds after the trigger where the first log bin starts; earlier frames share one epoch.
    first_bin_s: float = _opt(60.0, lo=1.0, hi=86400.0)
    #: Width in seconds of the fixed time bins used without a trigger time (and before it),
    #: counted from 1970-01-01 00:00 UTC (or back from the trigger).
    fixed_bin_s: float = _opt(3600.0, lo=10.0, hi=31_536_000.0)
    #: Side in px of the square cutout around the target that is stacked (not whole frames).
    cutout_size_px: int = _opt(256, lo=32, hi=4096)
    #: Alignment onto the stack's grid: "auto" (a frame whose grid differs from the stack's by a
    #: translation only is shifted by exact pixel-overlap weights, which equals reproject_exact;
    #: any other frame goes through reproject_adaptive with flux conservation), "exact"
    #: (reproject_exact for every frame) or "adaptive" (reproject_adaptive for every frame).
    reproject_method: str = _opt("auto", choices=("auto", "exact", "adaptive"))
    #: "auto" alignment: largest departure in px from a pure translation, over the cutout, that
    #: still counts as a translation (0.05 px at the corners of a 256 px box is a rotation of
    #: 0.016 degrees; at the target, in the centre, the shift is exact).
    shift_tolerance_px: float = _opt(0.05, lo=0.0, hi=1.0)
    #: Weights of the co-add: "inverse_variance" (of each frame scaled to the common zero point)
    #: or "equal" (a plain mean, as Skynet's classic stacks).
    weighting: str = _opt("inverse_variance", choices=("inverse_variance", "equal"))
    #: A frame joins the stack only if it deepens the predicted stacked limit by at least this
    #: many mag (frames are tried deepest first).
    min_gain_mag: float = _opt(0.001, lo=0.0, hi=5.0)
    #: A frame whose zero point lies more than this many mag below the median zero point of its
    #: telescope and filter is left out (clouds).
    cloud_margin_mag: float = _opt(0.5, lo=0.0, hi=20.0)
    #: A frame with a saturated pixel within this many px of the target is left out.
    saturation_radius_px: float = _opt(5.0, lo=0.0, hi=100.0)
    #: Fewest frames that make a stack (1: every epoch gets a row, single frames included).
    min_frames: int = _opt(1, lo=1, hi=10000)
    #: Most frames in one stack: the deepest are kept, the others are left out with this reason
    #: (bounds a stack's memory, ~2 x 0.5 MB per frame at 256 px, and its build time).
    max_frames: int = _opt(100, lo=1, hi=100000)
    #: The daemon rebuilds an epoch that is still open (its time bin not yet over) only when it
    #: has this fraction more frames than its stored stack (0.25: at 4, 5, 7, 9, 11, ... frames),
    #: so a dense cadence costs a bounded number of rebuilds per frame; an epoch whose bin is
    #: over is rebuilt with every frame it holds. 0 rebuilds at every new frame.
    rebuild_growth: float = _opt(0.25, lo=0.0, hi=10.0)


@dataclass(**_FROZEN)
class CircularConfig:
    """GCN circular drafts (soapd never submits them; the link opens GCN's prefilled form)."""

    #: Team named in the subject and lead ("<event>: <team>/<telescopes> optical ...").
    team: str = "Skynet"
    #: Author line that opens the body (empty: none; the submitter adds it in the form).
    authors: str = ""
    #: What to do when the target name matches no GCN event pattern (GCN then files the
    #: circular under "Misc"): "warn" (draft it and say so) or "refuse" (no circular).
    event_name_check: str = _opt("warn", choices=("warn", "refuse"))
    #: Most lines in the body (GCN's style guide asks for under 60); later epochs beyond it are
    #: left to the JSON sidecar, and the body says so.
    max_lines: int = _opt(59, lo=20, hi=1000)
