"""Alert drafts for a processed frame, decided against the target's stored history.

:func:`draft_alerts` reads each measured target's earlier lightcurve from the
store (``Store.rule_history``), runs the rules of :mod:`soapd.alerts.rules` on the
new point and returns the :class:`~soapd.models.AlertDraft` values. It only
reads: :func:`soapd.frames.record_result` stores the drafts with the frame's
measurements in one transaction.

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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.table import Table

from soapd.alerts.rules import INSTRUMENTAL, Point, RuleParams, evaluate
from soapd.config import Config
from soapd.errors import ConfigError
from soapd.flags import Flag
from soapd.models import AlertDraft

if TYPE_CHECKING:
    from soapd.models import FrameResult
    from soapd.store import Store

__all__ = ["RULE_COLUMNS", "draft_alerts", "reference_points", "rule_arrays"]

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
    a["frame_id"] = np.full(len(table), frame_id, dtype=np.int64)
    a["mjd"] = np.full(len(table), mjd)
    a["band"] = np.where(a["band"] == "", result.summary.band, a["band"])
    a["telescope"] = np.where(a["telescope"] == "", result.summary.telescope, a["telescope"])
    names = np.ma.filled(np.ma.asarray(table["target_name"]).astype(str), "")
    out: dict[str, Point] = {}
    for name in sorted(set(names.tolist()) - {""}):
        sel = names == name
        points = reference_points({k: v[sel] for k, v in a.items()})
        if points:
            out[name] = points[0]
    return out


def draft_alerts(
    store: Store, frame_id: int, result: FrameResult, *, config: Config
) -> list[AlertDraft]:
    """Return the alerts the target rows of ``result`` raise against the stored history."""
    from soapd.timeutil import mjd_of

    if not config.alerts.enabled or "target_name" not in result.table.colnames:
        return []
    new = _frame_points(result, frame_id, mjd_of(result.summary.mid_time_utc))
    obs_id = store.frame_obs_id(frame_id)
    drafts: list[AlertDraft] = []
    for name, point in new.items():
        target = store.get_target(name)
        if target is None or not target.active:
            continue
        earlier = [
            p
            for p in reference_points(store.rule_history(name))
            if p.frame_id != frame_id and (p.mjd, p.frame_id) < (point.mjd, frame_id)
        ]
        try:
            params = RuleParams.from_config(config.alerts, target.rules)
        except ConfigError as exc:  # a bad [[targets]] rules entry must not block storing
            logger.error("target %r: %s; using the [alerts] defaults", name, exc)  # noqa: TRY400
            params = RuleParams.from_config(config.alerts)
        batch = f"{name}|obs:{obs_id}" if obs_id is not None else f"{name}|frame:{frame_id}"
        drafts.extend(
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
            for hit in evaluate(earlier, point, params)
        )
    return drafts


def _json_num(value: float | str) -> float | str | None:
    if isinstance(value, str):
        return value
    return value if math.isfinite(value) else None
