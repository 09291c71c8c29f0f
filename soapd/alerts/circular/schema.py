"""The circular's numbers as GCN unified-schema JSON (``boom/alert`` + ``core/Photometry``).

The schema files (v7.2.1) are vendored in ``soapd/alerts/gcn_schema`` with their
provenance; :func:`validate_sidecar` checks a document against them with
``jsonschema`` and a local ``referencing`` registry (no network).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from soapd.alerts.circular.rows import CircularRow
from soapd.errors import CircularError

__all__ = ["BOOM_SCHEMA_ID", "sidecar", "validate_sidecar"]

#: ``$id`` of the envelope schema the sidecar follows.
BOOM_SCHEMA_ID = "https://gcn.nasa.gov/schema/main/gcn/notices/boom/alert.schema.json"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _finite(items: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None and non-finite numbers (the schema's numbers admit neither null nor NaN)."""
    out: dict[str, Any] = {}
    for k, v in items.items():
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        out[k] = v
    return out


def sidecar(
    rows: Sequence[CircularRow],
    *,
    event_name: str,
    team: str = "Skynet",
    trigger_time_utc: datetime | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    created_utc: datetime | None = None,
) -> dict[str, Any]:
    """Return the circular's numbers as a GCN ``boom/alert`` document (see the module).

    ``event_name`` should be the circular's canonical name (:attr:`Circular.event_name`).
    Items are in time order; times ISO 8601 UTC with a ``Z``; NaN values are left out.
    """
    created = (created_utc or datetime.now(UTC)).astimezone(UTC)
    trigger = _iso(trigger_time_utc) if trigger_time_utc is not None else None
    photometry = []
    for r in sorted(rows, key=lambda r: (r.mid_time_utc, r.telescope, r.band)):
        item: dict[str, Any] = {
            "event_name": event_name,
            "mission": team,
            "telescope": r.telescope,
            "filter": r.band,
            "mag_system": r.mag_system if r.mag_system in ("AB", "Vega") else "instrumental",
            "limiting_mag": r.lim_mag,
            "limiting_mag_sigma": r.lim_nsigma,
            "observation_start": _iso(r.start_utc),
            "observation_stop": _iso(r.stop_utc),
            "observation_livetime": r.total_exptime_s,
            "trigger_time": trigger,
        }
        if r.shows_detection:
            item["mag"] = r.mag
            item["mag_error"] = r.mag_err
        since = (
            (r.mid_time_utc - trigger_time_utc).total_seconds() / 3600.0
            if trigger_time_utc is not None
            else None
        )
        item["soapd"] = _finite(
            {
                "mid_time": _iso(r.mid_time_utc),
                "time_since_trigger_h": since,
                "n_exposures": r.n_exp,
                "exposure_s": r.exptime_s,
                "stacked": r.n_exp > 1,
                "calibration_catalog": r.cal_catalog or None,
                "n_calibration_stars": r.n_cal_stars,
                "calibration_sys_unc_mag": r.cal_sys_unc_mag,
                "calibration_stat_unc_mag": r.cal_stat_unc_mag,
                "frame_ids": list(r.frame_ids),
            }
        )
        photometry.append(_finite(item))
    target = _finite({"event_name": event_name, "ra": ra_deg, "dec": dec_deg})
    return {
        "$schema": BOOM_SCHEMA_ID,
        "alert_datetime": _iso(created),
        "alert_tense": "current",
        "mission": team,
        "instrument": ", ".join(sorted({r.telescope for r in rows if r.telescope})) or team,
        "messenger": "EM",
        "data": {"targets": [target], "photometry": photometry},
    }


@cache
def _validator() -> Any:
    """Build the Draft 2020-12 validator of the vendored envelope, with a local registry."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    root = resources.files("soapd.alerts").joinpath("gcn_schema")
    resources_: list[tuple[str, Resource[Any]]] = []
    envelope: dict[str, Any] | None = None
    for sub in ("gcn/notices/boom", "gcn/notices/core"):
        folder = root.joinpath(sub)
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if not entry.name.endswith(".schema.json"):
                continue
            contents = json.loads(entry.read_text(encoding="utf-8"))
            resources_.append((contents["$id"], Resource.from_contents(contents)))
            if contents["$id"] == BOOM_SCHEMA_ID:
                envelope = contents
    if envelope is None:  # pragma: no cover - the package data is incomplete
        raise CircularError("the vendored GCN schema (boom/alert.schema.json) is missing")
    registry: Registry[Any] = Registry().with_resources(resources_)
    return Draft202012Validator(envelope, registry=registry)


def validate_sidecar(doc: Mapping[str, Any]) -> None:
    """Raise CircularError listing every way ``doc`` breaks the GCN ``boom/alert`` schema."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]
        raise CircularError("the JSON does not follow the GCN schema: " + "; ".join(lines))
