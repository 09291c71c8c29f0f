"""The JSON endpoints behind every page, and the lightcurve downloads.

=========================================  ============================================
``GET /api``                               this list
``GET /api/status``                        daemon, backlog, problems, alerts, cache
``GET /api/targets``                       every target with its latest state
``GET /api/targets/{name}``                one target, its alerts
``GET /api/targets/{name}/lightcurve``     frame and stacked-epoch rows as column arrays
                                           (``?all_apertures=1``, ``?band=B``,
                                           ``?since=ISO``, ``?stacks=0``)
``GET /api/targets/{name}/lightcurve.F``   download: F = csv, ecsv, json, parquet
``GET /api/targets/{name}/gcn``            GCN circular from stacked epochs: text,
                                           prefilled submission link, GCN-schema JSON
                                           (``?frames=1``, ``?band=B``, ``?since=ISO``)
``GET /api/frames/{frame_id}``             one frame's summary and measurements
=========================================  ============================================

Handlers are synchronous (Starlette runs them in its thread pool) and only read.
"""

from __future__ import annotations

import json
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from soapd.config import CircularConfig
from soapd.errors import ConfigError
from soapd.models import StackRecord, Target
from soapd.store.base import utc_iso
from soapd.store.readonly import ReadOnlyStore
from soapd.store.targets import parse_utc
from soapd.web.data import lightcurve_payload, status_payload, target_rows
from soapd.web.frame import frame_payload
from soapd.web.state import web_state

__all__ = [
    "DOWNLOAD_FORMATS",
    "JSONResponse",
    "api_frame",
    "api_gcn",
    "api_index",
    "api_lightcurve",
    "api_lightcurve_download",
    "api_status",
    "api_target",
    "api_targets",
    "gcn_draft",
    "require_target",
    "target_alerts",
    "target_info",
    "target_stacks",
]

#: Download format -> (media type, file suffix).
DOWNLOAD_FORMATS = {
    "csv": ("text/csv; charset=utf-8", ".csv"),
    "ecsv": ("text/plain; charset=utf-8", ".ecsv"),
    "json": ("application/json", ".json"),
    "parquet": ("application/vnd.apache.parquet", ".parquet"),
}


class JSONResponse(Response):
    """Compact JSON encoded by orjson (NaN and infinities become null; numpy values allowed)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Return ``content`` as UTF-8 JSON (other objects as their ``str``)."""
        return orjson.dumps(content, default=str, option=orjson.OPT_SERIALIZE_NUMPY)


def require_target(store: ReadOnlyStore, name: str) -> Target:
    """Return the target called ``name``; raise HTTP 404 if there is none."""
    target = store.get_target(name)
    if target is None:
        raise HTTPException(404, f"no target named {name!r}")
    return target


def target_info(target: Target) -> dict[str, Any]:
    """Return a target's name, position, trigger time (ISO text or None) and active flag."""
    return {
        "name": target.name,
        "ra_deg": target.ra_deg,
        "dec_deg": target.dec_deg,
        "trigger_time_utc": utc_iso(target.trigger_time_utc) if target.trigger_time_utc else None,
        "active": target.active,
    }


def _since(request: Request) -> datetime | None:
    try:
        return parse_utc(request.query_params.get("since") or None, what="since")
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None


def _lightcurve_table(store: ReadOnlyStore, name: str, request: Request) -> Any:
    band = request.query_params.get("band") or None
    return store.lightcurve(name, band=band, since_utc=_since(request))


def target_stacks(
    store: ReadOnlyStore, name: str, *, band: str | None = None, since_utc: datetime | None = None
) -> list[StackRecord]:
    """Return a target's current stacked epochs, of ``band`` and from ``since_utc`` only if given.

    The same selection as ``soapd lightcurve --stacks --band B --since T``.
    """
    records = store.stacked(name)
    if band is not None:
        records = [r for r in records if r.band == band]
    if since_utc is not None:
        records = [r for r in records if r.mid_time_utc >= since_utc]
    return records


def _flag(request: Request, key: str) -> bool:
    return request.query_params.get(key, "").lower() in ("1", "true", "yes", "on")


def api_index(_request: Request) -> JSONResponse:
    """List the JSON endpoints."""
    return JSONResponse(
        {
            "endpoints": {
                "/api/status": "daemon, backlog per frame state, problem frames, alerts, cache",
                "/api/targets": "every target with its latest state",
                "/api/targets/{name}": "one target and the alerts raised for it",
                "/api/targets/{name}/lightcurve": "frame rows, then stacked-epoch rows "
                "(row_type 'frame' or 'stack'), as column arrays; "
                "?all_apertures=1, ?band=B, ?since=ISO-8601, ?stacks=0",
                "/api/targets/{name}/lightcurve.{csv,ecsv,json,parquet}": "download",
                "/api/targets/{name}/gcn": "GCN circular from the stacked epochs: text, "
                "prefilled GCN submission link, GCN-schema JSON; ?frames=1, ?band=B, ?since=ISO",
                "/api/frames/{frame_id}": "one frame's summary and measurements",
            }
        }
    )


def api_status(request: Request) -> JSONResponse:
    """Return the status page's data."""
    state = web_state(request)
    with state.store() as store:
        return JSONResponse(status_payload(store, state.config, notifier_keys=state.notifier_keys))


def api_targets(request: Request) -> JSONResponse:
    """Return every target with its latest state."""
    with web_state(request).store() as store:
        return JSONResponse({"targets": target_rows(store)})


def target_alerts(store: ReadOnlyStore, name: str) -> list[dict[str, Any]]:
    """Return the alerts raised for a target, newest first, with their messages."""
    out = []
    for row in store.list_alerts(target_name=name):
        try:
            payload = json.loads(row["payload"])
        except ValueError:
            payload = {}
        out.append(
            {
                "alert_id": row["alert_id"],
                "frame_id": row["frame_id"],
                "rule": row["rule"],
                "status": row["status"],
                "created_at": row["created_at"],
                "sent_at": row["sent_at"],
                "attempts": row["attempts"],
                "last_error": row["last_error"],
                "message": str(payload.get("message", "")),
                "mid_time_utc": payload.get("mid_time_utc"),
            }
        )
    return out


def api_target(request: Request) -> JSONResponse:
    """Return one target and its alerts."""
    name = request.path_params["name"]
    with web_state(request).store() as store:
        target = require_target(store, name)
        return JSONResponse({"target": target_info(target), "alerts": target_alerts(store, name)})


def api_lightcurve(request: Request) -> JSONResponse:
    """Return a target's lightcurve as column arrays."""
    name = request.path_params["name"]
    with_stacks = request.query_params.get("stacks", "1").lower() not in ("0", "false", "no", "off")
    with web_state(request).store() as store:
        target = require_target(store, name)
        table = _lightcurve_table(store, name, request)
        stacks = (
            target_stacks(
                store,
                name,
                band=request.query_params.get("band") or None,
                since_utc=_since(request),
            )
            if with_stacks
            else []
        )
    payload = lightcurve_payload(
        table,
        target=target_info(target),
        all_apertures=_flag(request, "all_apertures"),
        stacks=stacks,
    )
    return JSONResponse(payload)


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "target"


def api_lightcurve_download(request: Request) -> Response:
    """Return a target's lightcurve as a file, written by the CLI's exporters."""
    from soapd.alerts.gcn import one_per_frame
    from soapd.output.export import write_table

    name = request.path_params["name"]
    fmt = request.path_params["fmt"]
    if fmt not in DOWNLOAD_FORMATS:
        raise HTTPException(404, f"unknown format {fmt!r}; use csv, ecsv, json or parquet")
    with web_state(request).store() as store:
        require_target(store, name)
        table = _lightcurve_table(store, name, request)
    if not _flag(request, "all_apertures"):
        table = one_per_frame(table)
    media, suffix = DOWNLOAD_FORMATS[fmt]
    filename = f"{_safe_stem(name)}_lightcurve{suffix}"
    with tempfile.TemporaryDirectory(prefix="soapd-web-") as tmp:
        path = write_table(table, Path(tmp) / filename, fmt)
        body = path.read_bytes()
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def gcn_draft(
    store: ReadOnlyStore,
    target: Target,
    config: CircularConfig,
    *,
    single_frames: bool = False,
    band: str | None = None,
    since_utc: datetime | None = None,
) -> dict[str, Any]:
    """Return a target's GCN circular: the draft ``soapd lightcurve NAME --format gcn`` writes.

    Made by :func:`soapd.alerts.circular.draft_for_target` from the stored stacked
    epochs (the single frames combined per epoch when no stack is stored; one row
    per frame with ``single_frames``). Keys: ``text`` (subject line, blank line,
    body), ``subject``, ``body``, ``event_name``, ``submission_url`` (GCN's new
    circular form prefilled with subject and body; soapd never submits),
    ``stacked`` (rows are stacked epochs), ``n_rows``, ``rows_omitted`` (epochs
    left out of the text to stay under the line limit), ``warnings`` and ``json``
    (the GCN-schema sidecar). Raise HTTP 409 when there is nothing to report or
    the event name is refused (``circular.event_name_check = "refuse"``).
    """
    from soapd.alerts.circular import GCN_NEW_CIRCULAR_URL, draft_for_target
    from soapd.errors import CircularError

    try:
        draft = draft_for_target(
            store,
            target.name,
            config=config,
            single_frames=single_frames,
            band=band,
            since_utc=since_utc,
        )
    except CircularError as exc:
        raise HTTPException(409, str(exc)) from None
    c = draft.circular
    url = c.url
    if not url.startswith(GCN_NEW_CIRCULAR_URL + "?"):  # pragma: no cover - built from it
        raise HTTPException(500, "the submission link does not point at GCN's form")
    return {
        "text": c.text,
        "subject": c.subject,
        "body": c.body,
        "event_name": c.event_name,
        "submission_url": url,
        "stacked": draft.stacked,
        "n_rows": len(c.rows),
        "rows_omitted": c.rows_omitted,
        "warnings": list(c.warnings),
        "json": draft.sidecar,
    }


def api_gcn(request: Request) -> JSONResponse:
    """Return a target's GCN circular (``?frames=1``: a row per frame; ``?band``, ``?since``)."""
    name = request.path_params["name"]
    state = web_state(request)
    with state.store() as store:
        target = require_target(store, name)
        return JSONResponse(
            gcn_draft(
                store,
                target,
                state.config.circular,
                single_frames=_flag(request, "frames"),
                band=request.query_params.get("band") or None,
                since_utc=_since(request),
            )
        )


def api_frame(request: Request) -> JSONResponse:
    """Return one frame's summary, footprint and measurements."""
    frame_id = int(request.path_params["frame_id"])
    with web_state(request).store() as store:
        payload = frame_payload(store, frame_id)
    if payload is None:
        raise HTTPException(404, f"no frame {frame_id}")
    return JSONResponse(payload)
