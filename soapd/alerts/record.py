"""Record a processed frame: evaluate the alert rules, then store everything at once.

:func:`record_result` is the only call the daemon and the one-shot API make
after ``process_frame``: it reads each measured target's earlier lightcurve from
the store, runs the rules of :mod:`soapd.alerts.rules` on the new point, and
hands measurements, frame summary and alert drafts to ``Store.save_result``,
which writes them in one transaction.

"Earlier" means an earlier mid-exposure time (ties broken by frame id) and never
the frame itself, so processing a frame again, or frames out of order, makes the
same decisions and (through the unique ``dedupe_key``) no second alert.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table

from soapd import __version__
from soapd.alerts.rules import Point, RuleParams, evaluate
from soapd.config import Config
from soapd.models import AlertDraft

if TYPE_CHECKING:
    from soapd.pipeline.result import FrameResult
    from soapd.store import Store

__all__ = ["draft_alerts", "record_result", "reference_points"]

logger = logging.getLogger(__name__)


def reference_points(table: Table) -> list[Point]:
    """Return one :class:`Point` per frame (its lowest ``aperture_id``), oldest first.

    ``table`` is a lightcurve table (``Store.lightcurve``) or the target rows of a
    result table with ``frame_id`` added. Rules compare one aperture per frame so
    that several apertures never look like several measurements.
    """
    if len(table) == 0:
        return []
    frame = np.asarray(table["frame_id"], dtype=np.int64)
    ap = np.asarray(table["aperture_id"], dtype=np.int64)
    mjd = np.asarray(table["mjd"], dtype=float)
    order = np.lexsort((ap, frame, mjd))
    _, first = np.unique(frame[order], return_index=True)
    pick = order[np.sort(first)]

    def floats(name: str) -> list[float]:
        col = table[name]
        data: np.ndarray = np.ma.filled(
            np.ma.asarray(getattr(col, "value", col), dtype=float), np.nan
        )
        return [float(v) for v in data[pick]]

    systems = (
        np.asarray(table["cal_mag_system"]).astype(str)[pick].tolist()
        if "cal_mag_system" in table.colnames
        else [""] * len(pick)
    )
    return [
        Point(
            frame_id=int(fid),
            mjd=float(t),
            band=str(band),
            is_detection=bool(det),
            snr=snr,
            mag=mag,
            mag_err=err,
            lim_mag=lim,
            mag_system=str(system),
        )
        for fid, t, band, det, snr, mag, err, lim, system in zip(
            frame[pick].tolist(),
            mjd[pick].tolist(),
            np.asarray(table["band"]).astype(str)[pick].tolist(),
            np.asarray(table["is_detection"], dtype=bool)[pick].tolist(),
            floats("snr"),
            floats("calibrated_mag"),
            floats("calibrated_mag_err"),
            floats("limiting_mag"),
            systems,
            strict=True,
        )
    ]


def _frame_rows(result: FrameResult, name: str, frame_id: int, mjd: float) -> Table:
    table = result.table
    names = np.asarray(table["target_name"]).astype(str)
    rows = Table(table[names == name], copy=True)
    rows["frame_id"] = np.full(len(rows), frame_id, dtype=np.int64)
    rows["mjd"] = np.full(len(rows), mjd)
    if "aperture_id" not in rows.colnames:
        rows["aperture_id"] = np.zeros(len(rows), dtype=np.int64)
    if "band" not in rows.colnames or (len(rows) and not str(rows["band"][0])):
        rows["band"] = np.full(len(rows), result.summary.band)
    return rows


def draft_alerts(
    store: Store, frame_id: int, result: FrameResult, *, config: Config
) -> list[AlertDraft]:
    """Return the alerts the target rows of ``result`` raise against the stored history."""
    from soapd.store.results import mjd_of

    if not config.alerts.enabled or "target_name" not in result.table.colnames:
        return []
    mjd = mjd_of(result.summary.mid_time_utc)
    obs_id = store.frame_obs_id(frame_id)
    names = sorted({str(n) for n in np.asarray(result.table["target_name"]).astype(str) if n})
    drafts: list[AlertDraft] = []
    for name in names:
        target = store.get_target(name)
        if target is None or not target.active:
            continue
        new = reference_points(_frame_rows(result, name, frame_id, mjd))
        if not new:
            continue
        point = new[0]
        earlier = [
            p
            for p in reference_points(store.rule_history(name))
            if p.frame_id != frame_id and (p.mjd, p.frame_id) < (point.mjd, frame_id)
        ]
        params = RuleParams.from_config(config.alerts, target.rules)
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
                    "telescope": result.summary.telescope,
                    "mag_system": point.mag_system,
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


def record_result(
    store: Store,
    frame_id: int,
    result: FrameResult,
    *,
    config: Config,
    table_path: str | None,
) -> list[int]:
    """Evaluate the alert rules and store ``result`` in one transaction; return new alert ids."""
    drafts: Sequence[AlertDraft] = draft_alerts(store, frame_id, result, config=config)
    ids = store.save_result(
        frame_id,
        result,
        alerts=drafts,
        config_hash=config.fingerprint(),
        soapd_version=__version__,
        table_path=table_path,
        lim_nsigma=config.limits.n_sigma,
    )
    if ids:
        logger.info("frame %d raised %d new alert(s)", frame_id, len(ids))
    return ids
