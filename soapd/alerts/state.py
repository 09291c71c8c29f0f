"""The alert rules on a target's rule state instead of its history (issue 11).

:mod:`soapd.alerts.rules` decides a new point from the target's whole earlier
lightcurve; the functions here decide it from a :class:`~soapd.store.rule_state.TargetState`
(a few numbers per telescope, band and magnitude system) and return the same
:class:`~soapd.alerts.rules.RuleHit` values, so recording a frame costs the same
after ten or ten thousand earlier frames. Everything here is pure.

* :func:`advance` adds one point (newer than every point in the state) to a state;
  :func:`fold` builds a state from points in any order.
* :func:`evaluate_state` runs the rules on a point and the state of the points
  before it; the hits equal :func:`soapd.alerts.rules.evaluate` on those points.
* :func:`decide` is one target's decision for a new frame: from the state when the
  point is newer than the state's newest point and the frame is new; otherwise (a
  frame older than the state's newest, a frame processed again, no state built yet)
  from the target's history, read only then (O(history), rare).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import reduce
from operator import or_

from soapd.alerts.rules import Point, RuleHit, RuleParams
from soapd.flags import SPURIOUS, SUSPECT, Flag
from soapd.store.rule_state import Kind, KindState, TargetState

__all__ = ["advance", "decide", "evaluate_state", "fold", "is_after", "stack_summary"]


def _order(p: Point) -> tuple[float, int]:
    return (p.mjd, p.frame_id)


def _max(a: float, b: float) -> float:
    """Return the larger of two magnitudes, NaN meaning 'none'."""
    if math.isnan(a):
        return b
    return a if math.isnan(b) or a >= b else b


def _mask(names: frozenset[str]) -> int:
    """Return the bits called ``names`` as one mask (names this version lacks: no bit)."""
    return reduce(or_, (int(Flag[n]) for n in names if n in Flag.__members__), 0)


_SUSPECT_MASK = _mask(SUSPECT)
_SPURIOUS_MASK = _mask(SPURIOUS)


def _real(p: Point) -> bool:
    """:attr:`Point.real` (a detection without a spurious bit), without the name look-ups."""
    return p.is_detection and not p.flags & _SPURIOUS_MASK


def _clean(p: Point) -> bool:
    """:attr:`Point.clean` (no suspect bit), without the name look-ups."""
    return not p.flags & _SUSPECT_MASK


def _advance_kind(k: KindState, p: Point) -> KindState:
    """Return the summary of a kind's points after its newest point ``p``."""
    real = _real(p)
    finite_lim = math.isfinite(p.lim_mag)
    finite_mag = math.isfinite(p.mag)
    last_clean_mag, last_clean_mag_err = k.last_clean_mag, k.last_clean_mag_err
    if real and _clean(p) and finite_mag and math.isfinite(p.mag_err):
        last_clean_mag, last_clean_mag_err = p.mag, p.mag_err
    last_real_mag, faded = k.last_real_mag, k.faded
    if real and finite_mag:
        last_real_mag, faded = p.mag, False
    elif not p.is_detection and not math.isnan(last_real_mag) and p.lim_mag > last_real_mag:
        faded = True
    return KindState(
        n_points=k.n_points + 1,
        any_detection=k.any_detection or p.is_detection,
        any_real=k.any_real or real,
        max_real_snr=(
            _max(k.max_real_snr, p.snr) if real and math.isfinite(p.snr) else k.max_real_snr
        ),
        n_lim=k.n_lim + finite_lim,
        max_lim_mag=_max(k.max_lim_mag, p.lim_mag) if finite_lim else k.max_lim_mag,
        max_nondet_lim_mag=(
            _max(k.max_nondet_lim_mag, p.lim_mag)
            if finite_lim and not p.is_detection
            else k.max_nondet_lim_mag
        ),
        last_clean_mag=last_clean_mag,
        last_clean_mag_err=last_clean_mag_err,
        last_real_mag=last_real_mag,
        faded=faded,
    )


def advance(state: TargetState, point: Point) -> TargetState:
    """Return ``state`` after ``point``, which must be newer than every point in it.

    Raise ValueError for a point that is not (:func:`is_after`).
    """
    if not is_after(state, point):
        raise ValueError(
            f"frame {point.frame_id} at MJD {point.mjd} is not after the state's newest point "
            f"(frame {state.newest_frame_id} at MJD {state.newest_mjd})"
        )
    kind = point.kind()
    kinds = dict(state.kinds)
    kinds[kind] = _advance_kind(kinds.get(kind, KindState()), point)
    return TargetState(
        n_points=state.n_points + 1,
        newest_mjd=point.mjd,
        newest_frame_id=point.frame_id,
        kinds=kinds,
    )


def fold(points: Iterable[Point], state: TargetState | None = None) -> TargetState:
    """Return the state of ``points`` (any order; one per frame) added to ``state``.

    Equal to :func:`advance` on each point in time order; raise ValueError when a
    point is not newer than every point of ``state``.
    """
    out = state or TargetState()
    ordered = sorted(points, key=_order)
    if not ordered:
        return out
    if not is_after(out, ordered[0]):
        advance(out, ordered[0])  # raises
    by_kind: dict[Kind, list[Point]] = {}
    for p in ordered:
        by_kind.setdefault(p.kind(), []).append(p)
    kinds = dict(out.kinds)
    for kind, pts in by_kind.items():
        kinds[kind] = _fold_kind(kinds.get(kind, _EMPTY), pts)
    last = ordered[-1]
    return TargetState(
        n_points=out.n_points + len(ordered),
        newest_mjd=last.mjd,
        newest_frame_id=last.frame_id,
        kinds=kinds,
    )


_EMPTY = KindState()


def _fold_kind(k: KindState, points: Sequence[Point]) -> KindState:
    """Return :func:`_advance_kind` applied to each of ``points`` (oldest first), in one pass."""
    any_det, any_real, best_snr = k.any_detection, k.any_real, k.max_real_snr
    n_lim, max_lim, max_nondet = k.n_lim, k.max_lim_mag, k.max_nondet_lim_mag
    clean_mag, clean_err = k.last_clean_mag, k.last_clean_mag_err
    real_mag, faded = k.last_real_mag, k.faded
    isfinite, isnan = math.isfinite, math.isnan
    for p in points:
        det = p.is_detection
        real = det and not p.flags & _SPURIOUS_MASK
        lim, mag = p.lim_mag, p.mag
        any_det = any_det or det
        any_real = any_real or real
        if real and isfinite(p.snr):
            best_snr = _max(best_snr, p.snr)
        if isfinite(lim):
            n_lim += 1
            max_lim = _max(max_lim, lim)
            if not det:
                max_nondet = _max(max_nondet, lim)
        if real and isfinite(mag):
            if not p.flags & _SUSPECT_MASK and isfinite(p.mag_err):
                clean_mag, clean_err = mag, p.mag_err
            real_mag, faded = mag, False
        elif not det and not isnan(real_mag) and lim > real_mag:
            faded = True
    return KindState(
        n_points=k.n_points + len(points),
        any_detection=any_det,
        any_real=any_real,
        max_real_snr=best_snr,
        n_lim=n_lim,
        max_lim_mag=max_lim,
        max_nondet_lim_mag=max_nondet,
        last_clean_mag=clean_mag,
        last_clean_mag_err=clean_err,
        last_real_mag=real_mag,
        faded=faded,
    )


def is_after(state: TargetState, point: Point) -> bool:
    """Return True when ``point`` is newer (mjd, then frame id) than every point of ``state``."""
    return _order(point) > (state.newest_mjd, state.newest_frame_id)


def _best_real_snr(state: TargetState) -> float:
    return max((k.max_real_snr for k in state.kinds.values()), key=_nan_low, default=math.nan)


def _nan_low(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _new_detection(state: TargetState, k: KindState, p: Point, prm: RuleParams) -> RuleHit | None:
    snr_min = prm.detection_snr
    if not _clean(p) or not (_real(p) and math.isfinite(p.snr) and p.snr >= snr_min):
        return None
    if _best_real_snr(state) >= snr_min:
        return None
    text = f"new detection in {p.where()}"
    if math.isfinite(p.mag) and math.isfinite(p.mag_err):
        text += f": {p.mag:.2f} +/- {p.mag_err:.2f} mag"
    text += f" (S/N {p.snr:.1f})"
    if k.n_lim:
        text += f" after {k.n_lim} limit(s), deepest {k.max_lim_mag:.2f}"
    return RuleHit(
        rule="new_detection",
        message=text,
        values={"mag": p.mag, "mag_err": p.mag_err, "snr": p.snr},
    )


def _deeper_limit(k: KindState, p: Point, prm: RuleParams) -> RuleHit | None:
    if p.is_detection or not math.isfinite(p.lim_mag) or k.any_real:
        return None
    best = k.max_nondet_lim_mag
    if math.isnan(best) or p.lim_mag < best + prm.deeper_limit_margin_mag:
        return None
    return RuleHit(
        rule="deeper_limit",
        message=f"deeper limit in {p.where()}: > {p.lim_mag:.2f} (previous > {best:.2f})",
        values={"lim_mag": p.lim_mag, "previous_lim_mag": best},
    )


def _brightening_or_fading(k: KindState, p: Point, prm: RuleParams) -> RuleHit | None:
    if not p.is_detection or not _clean(p):
        return None
    if not (math.isfinite(p.mag) and math.isfinite(p.mag_err)):
        return None
    last_mag, last_err = k.last_clean_mag, k.last_clean_mag_err
    if math.isnan(last_mag):
        return None
    delta = p.mag - last_mag
    sigma = math.hypot(p.mag_err, last_err)
    signif = abs(delta) / sigma if sigma > 0 else math.inf
    if abs(delta) < prm.change_min_mag or signif < prm.change_min_sigma:
        return None
    rule = "brightening" if delta < 0 else "fading"
    return RuleHit(
        rule=rule,
        message=(
            f"{rule} in {p.where()}: {last_mag:.2f} -> {p.mag:.2f} mag "
            f"({delta:+.2f} mag, {signif:.1f} sigma)"
        ),
        values={"mag": p.mag, "previous_mag": last_mag, "delta_mag": delta, "sigma": signif},
    )


def _faded_below_limit(k: KindState, p: Point) -> RuleHit | None:
    if p.is_detection or not math.isfinite(p.lim_mag):
        return None
    last = k.last_real_mag
    if math.isnan(last) or p.lim_mag <= last or k.faded:
        return None
    return RuleHit(
        rule="faded_below_limit",
        message=(
            f"faded below the limit in {p.where()}: > {p.lim_mag:.2f}, "
            f"last detected at {last:.2f} mag"
        ),
        values={"lim_mag": p.lim_mag, "last_mag": last},
    )


def evaluate_state(state: TargetState, point: Point, params: RuleParams) -> list[RuleHit]:
    """Return every rule that fires for ``point`` after the points summarised by ``state``.

    Equal to :func:`soapd.alerts.rules.evaluate` on those points (oldest first).
    """
    if not params.enabled:
        return []
    k = state.kinds.get(point.kind(), KindState())
    hits = (
        _new_detection(state, k, point, params),
        _deeper_limit(k, point, params),
        _brightening_or_fading(k, point, params),
        _faded_below_limit(k, point),
    )
    return [h for h in hits if h is not None and h.rule not in params.rules_off]


def decide(
    state: TargetState | None,
    point: Point | None,
    params: RuleParams,
    *,
    frame_id: int,
    fresh_frame: bool,
    history: Callable[[], Sequence[Point]],
) -> tuple[list[RuleHit], TargetState]:
    """Return one target's hits for frame ``frame_id``'s ``point`` and its state after it.

    ``state``: the stored state (None: not built); ``point``: the target's point in
    the frame (None: the frame has rows of the target but no covered one);
    ``fresh_frame``: the frame has no stored measurements yet; ``history``: returns
    the target's stored points (one per frame), called only when the state cannot
    be advanced: no state, a point not newer than the state's newest, or a frame
    processed again (its stored point is replaced by ``point``).
    """
    if state is not None and fresh_frame:
        if point is None:
            return [], state
        if is_after(state, point):
            return evaluate_state(state, point, params), advance(state, point)
    stored = [p for p in history() if p.frame_id != frame_id]
    if point is None:
        return [], fold(stored)
    before = fold(p for p in stored if _order(p) < _order(point))
    hits = evaluate_state(before, point, params)
    return hits, fold((p for p in stored if _order(p) > _order(point)), advance(before, point))


def stack_summary(state: TargetState) -> list[Point]:
    """Return one point per kind of ``state`` that stands for its points in the stack rules.

    :mod:`soapd.alerts.stack_rules` reads only the band, ``is_detection`` and
    ``lim_mag`` of a target's single-frame points: whether any point of the band
    was a detection, and the band's deepest finite limit. Each returned point is a
    detection when any point of its kind was, and has the kind's deepest limit (NaN:
    none), so the stack rules decide on these as on the points themselves. The
    points have ``frame_id`` -1 and no magnitude or S/N.
    """
    return [
        Point(
            frame_id=-1,
            mjd=state.newest_mjd,
            telescope=tel,
            band=band,
            mag_system=system,
            is_detection=k.any_detection,
            snr=math.nan,
            mag=math.nan,
            mag_err=math.nan,
            lim_mag=k.max_lim_mag,
        )
        for (tel, band, system), k in sorted(state.kinds.items())
    ]
