"""Alert rules on stacked epochs: pure functions of a new stack and what came before it.

stack_detection
    The stack (of at least two frames) detects the target at S/N >= ``detection_snr``
    while no single frame of the band did (nor any other stack of the band).
stack_deeper_limit
    The stack (of at least two frames) is an upper limit, the band has no detection
    (single frame or stack), and its limit is deeper than every single-frame limit
    and every other epoch's stacked limit of the band by >= ``stack_deeper_limit_margin_mag``.

``stack_detection`` fires at most once per band (its ``dedupe_key`` names the band),
``stack_deeper_limit`` at most once per epoch (the key names the epoch, not the
stack's version), so rebuilding an epoch (a frame joined it, or after a restart),
or two epochs built side by side, never send one twice. :func:`stack_alerts` returns
the drafts; the stack and its drafts are stored in one transaction
(``Store.save_stack``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from soapd.alerts.rules import Point, RuleHit, RuleParams
from soapd.models import AlertDraft, StackRecord
from soapd.timeutil import as_utc, mjd_of

__all__ = ["stack_alerts", "stack_deeper_limit", "stack_detection"]


def stack_detection(
    stack: StackRecord,
    history: Sequence[Point],
    other_stacks: Sequence[StackRecord],
    params: RuleParams,
) -> RuleHit | None:
    """Fire when a stack detects what no single frame of the band did."""
    if stack.n_frames < 2 or not stack.is_detection or stack.single_detections > 0:
        return None
    if not (math.isfinite(stack.snr) and stack.snr >= params.detection_snr):
        return None
    band = stack.band
    if any(p.band == band and p.is_detection for p in history):
        return None
    if any(
        s.band == band and s.is_detection and s.epoch_key != stack.epoch_key for s in other_stacks
    ):
        return None
    text = f"detection in a stack of {stack.n_frames} {stack.band} frames"
    if math.isfinite(stack.mag) and math.isfinite(stack.mag_err):
        text += f": {stack.mag:.2f} +/- {stack.mag_err:.2f} mag"
    text += f" (S/N {stack.snr:.1f}; single frames: limits only"
    if math.isfinite(stack.best_single_lim_mag):
        text += f", deepest > {stack.best_single_lim_mag:.2f}"
    text += ")"
    return RuleHit(
        rule="stack_detection",
        message=text,
        values={"mag": stack.mag, "mag_err": stack.mag_err, "snr": stack.snr},
    )


def stack_deeper_limit(
    stack: StackRecord,
    history: Sequence[Point],
    other_stacks: Sequence[StackRecord],
    params: RuleParams,
) -> RuleHit | None:
    """Fire when a stacked limit is deeper than every earlier limit of the band by the margin."""
    if stack.n_frames < 2 or stack.is_detection or not math.isfinite(stack.lim_mag):
        return None
    band = stack.band
    singles = [p for p in history if p.band == band]
    others = [s for s in other_stacks if s.band == band and s.epoch_key != stack.epoch_key]
    if any(p.is_detection for p in singles) or any(s.is_detection for s in others):
        return None
    limits = [p.lim_mag for p in singles if math.isfinite(p.lim_mag)]
    limits += [s.lim_mag for s in others if math.isfinite(s.lim_mag)]
    if not limits:
        return None
    best = max(limits)
    if stack.lim_mag < best + params.stack_deeper_limit_margin_mag:
        return None
    return RuleHit(
        rule="stack_deeper_limit",
        message=(
            f"deeper stacked limit in {band}: > {stack.lim_mag:.2f} from {stack.n_frames} frames "
            f"(previous deepest > {best:.2f})"
        ),
        values={"lim_mag": stack.lim_mag, "previous_lim_mag": best},
    )


def _num(value: float | str) -> float | str | None:
    if isinstance(value, str):
        return value
    return value if math.isfinite(value) else None


def stack_alerts(
    stack: StackRecord,
    *,
    history: Sequence[Point],
    other_stacks: Sequence[StackRecord],
    params: RuleParams,
    obs_id: int | None = None,
) -> list[AlertDraft]:
    """Return the alert drafts a new stack raises (see the module docstring).

    ``history``: the target's single-frame points (one per frame); ``other_stacks``:
    its stored stacks (this epoch's older versions are ignored); ``obs_id``: the
    observation of the newest member, so the alert is batched with that observation's
    frame alerts.
    """
    if not params.enabled:
        return []
    hits = [
        stack_detection(stack, history, other_stacks, params),
        stack_deeper_limit(stack, history, other_stacks, params),
    ]
    name = stack.target_name
    batch = f"{name}|obs:{obs_id}" if obs_id is not None else f"{name}|stack:{stack.epoch_key}"
    drafts: list[AlertDraft] = []
    for hit in hits:
        if hit is None or hit.rule in params.rules_off:
            continue
        payload: dict[str, Any] = {
            "target": name,
            "rule": hit.rule,
            "band": stack.band,
            "epoch_key": stack.epoch_key,
            "telescope": stack.telescope,
            "n_frames": stack.n_frames,
            "exptime_s": _num(stack.exptime_s),
            "total_exptime_s": stack.total_exptime_s,
            "frame_ids": list(stack.members),
            "mid_time_utc": as_utc(stack.mid_time_utc).isoformat(),
            "mjd": mjd_of(stack.mid_time_utc),
            "mag_system": stack.mag_system,
            "obs_id": obs_id,
            **{k: _num(v) for k, v in hit.values.items()},
        }
        scope = stack.band if hit.rule == "stack_detection" else stack.epoch_key
        drafts.append(
            AlertDraft(
                target_name=name,
                rule=hit.rule,
                dedupe_key=f"{name}|{hit.rule}|{scope}",
                batch_key=batch,
                message=f"{name}: {hit.message}",
                payload=payload,
            )
        )
    return drafts
