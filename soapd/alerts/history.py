"""Alert drafts for a processed frame, decided against the target's stored rule state.

:func:`decide_alerts` reads each measured target's rule state (a summary of its
earlier lightcurve, :mod:`soapd.store.rule_state`), runs the rules on the new point
(:mod:`soapd.alerts.state`, the same decisions as :mod:`soapd.alerts.rules` on the
history) and returns the :class:`~soapd.models.AlertDraft` values and the targets'
new states. The history (``Store.rule_history``) is read only to build a state: the
first time, for a frame older than the state's newest point, or for a frame
processed again. It only reads: :func:`soapd.frames.record_result` stores drafts and
states with the frame's measurements in one transaction.

"Earlier" means an earlier mid-exposure time (ties broken by frame id) and never
the frame itself, so processing a frame again, or frames out of order, makes the
same decisions and (through the unique ``dedupe_key``) no second alert.

Each point is calibrated (``calibrated_mag``/``limiting_mag`` on the row's AB or
Vega system) when its frame has a zero point, else instrumental (``ins_mag`` and
``limiting_ins_mag``, system :data:`~soapd.alerts.rules.INSTRUMENTAL`); the rules
compare points of one telescope, band and system only. Not-covered rows make no
point (the store's history holds none; a new frame's are skipped here).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.table import Table

from soapd.alerts.rules import INSTRUMENTAL, Point, RuleHit, RuleParams
from soapd.alerts.state import decide, fold, stack_summary
from soapd.config import Config
from soapd.errors import ConfigError
from soapd.flags import Flag
from soapd.models import AlertDraft

if TYPE_CHECKING:
    from soapd.models import FrameResult
    from soapd.store import Store
    from soapd.store.rule_state import TargetState

__all__ = [
    "RULE_COLUMNS",
    "Decision",
    "build_rule_states",
    "decide_alerts",
    "draft_alerts",
    "reference_points",
    "rule_arrays",
    "stack_history",
]

logger = logging.getLogger(__name__)


#: What the rules read of a lightcurve: column name -> numpy dtype.
RULE_COLUMNS = {
    "frame_id": np.int64,
    "mjd": float,
    "aperture_id": np.int64,
    "telescope": str,
    "band": str,
    "cal_mag_system": str,
    "is_detection": bool,
    "snr": float,
    "calibrated_mag": float,
    "calibrated_mag_err": float,
    "limiting_mag": float,
    "ins_mag": float,
    "ins_mag_err": float,
    "limiting_ins_mag": float,
    "flag": np.int64,
}

#: Calibrated magnitude systems; any other row is on the instrumental scale.
_CALIBRATED = ("AB", "Vega")


def rule_arrays(table: Table | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Return the :data:`RULE_COLUMNS` of a table as plain arrays (NaN for masked floats)."""
    names = table.colnames if isinstance(table, Table) else list(table)
    n = len(table[names[0]]) if names else 0
    out: dict[str, np.ndarray] = {}
    for name, dtype in RULE_COLUMNS.items():
        if name not in names:
            out[name] = np.full(n, "" if dtype is str else 0, dtype=dtype)
            continue
        raw = getattr(table[name], "value", table[name])
        if isinstance(raw, np.ma.MaskedArray):
            fill: Any = np.nan if dtype is float else ("" if dtype is str else 0)
            out[name] = np.ma.filled(raw.astype(dtype), fill)
        else:
            out[name] = np.asarray(raw).astype(dtype, copy=False)
    return out


def reference_points(table: Table | Mapping[str, Any]) -> list[Point]:
    """Return one :class:`Point` per frame (its lowest ``aperture_id``), oldest first.

    ``table`` is a lightcurve table (``Store.lightcurve`` or ``Store.rule_history``),
    or a mapping of the :data:`RULE_COLUMNS` arrays. Rules compare one aperture per
    frame so that several apertures never look like several measurements. Rows
    flagged NOT_COVERED make no point. A row is calibrated when its system is AB
    or Vega, or it has a calibrated magnitude or limit; otherwise its point is
    instrumental (``ins_mag``, ``ins_mag_err``, ``limiting_ins_mag``).
    """
    a = rule_arrays(table)
    covered = (a["flag"] & int(Flag.NOT_COVERED)) == 0
    a = {k: v[covered] for k, v in a.items()}
    if len(a["frame_id"]) == 0:
        return []
    order = np.lexsort((a["aperture_id"], a["frame_id"], a["mjd"]))
    _, first = np.unique(a["frame_id"][order], return_index=True)
    pick = order[np.sort(first)]
    a = {k: v[pick] for k, v in a.items()}
    calibrated = (
        np.isin(a["cal_mag_system"], _CALIBRATED)
        | np.isfinite(a["calibrated_mag"])
        | np.isfinite(a["limiting_mag"])
    )
    system = np.where(calibrated, a["cal_mag_system"], INSTRUMENTAL)
    mag = np.where(calibrated, a["calibrated_mag"], a["ins_mag"])
    err = np.where(calibrated, a["calibrated_mag_err"], a["ins_mag_err"])
    lim = np.where(calibrated, a["limiting_mag"], a["limiting_ins_mag"])
    # An instrumental magnitude exists for limits too (a positive flux below the
    # threshold); a limit is never a magnitude.
    mag = np.where(a["is_detection"], mag, np.nan)
    err = np.where(a["is_detection"], err, np.nan)
    cols = (
        a["frame_id"].tolist(),
        a["mjd"].tolist(),
        a["telescope"].tolist(),
        a["band"].tolist(),
        system.tolist(),
        a["is_detection"].tolist(),
        a["snr"].tolist(),
        mag.tolist(),
        err.tolist(),
        lim.tolist(),
        a["flag"].tolist(),
    )
    return [
        Point(
            frame_id=int(fid),
            mjd=float(t),
            telescope=str(tel),
            band=str(band),
            mag_system=str(sys_),
            is_detection=bool(det),
            snr=float(snr),
            mag=float(m),
            mag_err=float(e),
            lim_mag=float(li),
            flags=int(fl),
        )
        for fid, t, tel, band, sys_, det, snr, m, e, li, fl in zip(*cols, strict=True)
    ]


def _frame_points(result: FrameResult, frame_id: int, mjd: float) -> dict[str, Point]:
    """Return each target's reference point in a new frame (target name -> Point)."""
    table = result.table
    a = rule_arrays(table)
    names = np.ma.filled(np.ma.asarray(table["target_name"]).astype(str), "")
    named = names != ""
    a = {k: v[named] for k, v in a.items()}
    uniq, code = np.unique(names[named], return_inverse=True)
    # One "frame" per target: reference_points keeps each one's lowest aperture.
    a["frame_id"] = code.astype(np.int64)
    a["mjd"] = np.full(len(code), mjd)
    a["band"] = np.where(a["band"] == "", result.summary.band, a["band"])
    a["telescope"] = np.where(a["telescope"] == "", result.summary.telescope, a["telescope"])
    return {str(uniq[p.frame_id]): replace(p, frame_id=frame_id) for p in reference_points(a)}


@dataclass(frozen=True, slots=True)
class Decision:
    """What a processed frame raises: alert drafts, and the measured targets' new rule states.

    ``states`` maps every known target with a row in the frame to its
    :class:`~soapd.store.rule_state.TargetState` after the frame, for
    ``Store.save_result(rule_states=...)``.
    """

    drafts: list[AlertDraft] = field(default_factory=list)
    states: dict[str, TargetState] = field(default_factory=dict)


def decide_alerts(store: Store, frame_id: int, result: FrameResult, *, config: Config) -> Decision:
    """Return the alerts the target rows of ``result`` raise, and the targets' new rule states.

    Each target is decided from its stored rule state (:func:`soapd.alerts.state.decide`);
    its history is read only when the state cannot be advanced (no state yet, a frame
    older than the state's newest point, a frame processed again). Only reads: the
    caller stores both with the measurements (``Store.save_result``).
    """
    from soapd.timeutil import mjd_of

    if "target_name" not in result.table.colnames:
        return Decision()
    ids = store.target_ids()
    names = _target_names(result, ids)
    if not names:
        return Decision()
    new = _frame_points(result, frame_id, mjd_of(result.summary.mid_time_utc))
    states = store.rule_states_of(ids[n] for n in names)
    fresh = not store.frame_has_measurements(frame_id)
    active = {t.name: t for t in store.active_targets()} if config.alerts.enabled else {}
    obs_id = store.frame_obs_id(frame_id) if active else None
    out = Decision()
    defaults = RuleParams.from_config(config.alerts)
    for name in names:
        point = new.get(name)
        target = active.get(name)
        params = _SILENT
        if target is not None:
            params = _params(name, target.rules, config) if target.rules else defaults
        hits, out.states[name] = decide(
            states.get(ids[name]),
            point,
            params,
            frame_id=frame_id,
            fresh_frame=fresh,
            history=partial(_history, store, name),
        )
        if point is not None and hits:
            out.drafts.extend(
                _drafts(name, hits, point, frame_id=frame_id, obs_id=obs_id, result=result)
            )
    return out


def draft_alerts(
    store: Store, frame_id: int, result: FrameResult, *, config: Config
) -> list[AlertDraft]:
    """Return the alerts the target rows of ``result`` raise (:func:`decide_alerts`'s drafts)."""
    return decide_alerts(store, frame_id, result, config=config).drafts


#: The parameters of a target that raises no alert (inactive, or alerts switched off).
_SILENT = RuleParams(enabled=False)


def build_rule_states(store: Store, *, progress: Callable[[], None] | None = None) -> int:
    """Build every missing alert rule state from history now; return how many were built.

    What the first frame of each target would otherwise do on the daemon's scheduler
    thread after an upgrade or a ``soapd reprocess`` (``O(history)`` per target):
    ``soapd migrate`` does it up front. Targets with a state or without stored points
    are left as they are; ``progress`` is called once per target.
    """
    built = 0
    for name in sorted(store.target_ids()):
        built += store.fill_rule_state(name, lambda rows: fold(reference_points(rows)))
        if progress is not None:
            progress()
    return built


def stack_history(store: Store, name: str) -> list[Point]:
    """Return what the stack rules read of a target's single-frame points.

    From its rule state (:func:`soapd.alerts.state.stack_summary`, one point per
    telescope, band and system) when built, else the points themselves (its
    history). Empty for an unknown target.
    """
    tid = store.target_ids().get(name)
    state = None if tid is None else store.rule_states_of([tid]).get(tid)
    return _history(store, name) if state is None else stack_summary(state)


def _history(store: Store, name: str) -> list[Point]:
    """Return a target's stored points (one per frame, oldest first)."""
    return reference_points(store.rule_history(name))


def _target_names(result: FrameResult, ids: Mapping[str, int]) -> list[str]:
    """Return the known targets with a row in ``result`` (sorted names)."""
    col = result.table["target_name"]
    names = np.ma.filled(np.ma.asarray(col).astype(str), "")
    return sorted(set(names.tolist()) & set(ids))


def _params(name: str, rules: Mapping[str, float], config: Config) -> RuleParams:
    try:
        return RuleParams.from_config(config.alerts, rules)
    except ConfigError as exc:  # a bad [[targets]] rules entry must not block storing
        logger.error("target %r: %s; using the [alerts] defaults", name, exc)  # noqa: TRY400
        return RuleParams.from_config(config.alerts)


def _drafts(
    name: str,
    hits: Sequence[RuleHit],
    point: Point,
    *,
    frame_id: int,
    obs_id: int | None,
    result: FrameResult,
) -> list[AlertDraft]:
    """Return the alert drafts of a target's ``hits`` on its ``point`` in frame ``frame_id``."""
    batch = f"{name}|obs:{obs_id}" if obs_id is not None else f"{name}|frame:{frame_id}"
    return [
        AlertDraft(
            target_name=name,
            rule=hit.rule,
            dedupe_key=f"{name}|{hit.rule}|frame:{frame_id}|{point.band}",
            batch_key=batch,
            message=f"{name}: {hit.message}",
            payload={
                "target": name,
                "rule": hit.rule,
                "band": point.band,
                "frame_id": frame_id,
                "obs_id": obs_id,
                "mjd": point.mjd,
                "mid_time_utc": result.summary.mid_time_utc.isoformat(),
                "telescope": point.telescope or result.summary.telescope,
                "mag_system": point.mag_system,
                "flags": point.flags,
                **{k: _json_num(v) for k, v in hit.values.items()},
            },
        )
        for hit in hits
    ]


def _json_num(value: float | str) -> float | str | None:
    if isinstance(value, str):
        return value
    return value if math.isfinite(value) else None
