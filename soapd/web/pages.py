"""The HTML pages: status, targets, one target, one frame (and its debug figure).

Each page is a Jinja2 template fed by the same data functions as the JSON
endpoints (:mod:`soapd.web.data`). Jinja2 escapes every value, so target names,
file names and messages render as text. The target page's plot, its GCN draft
and its download links use the JSON endpoints from the browser.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from soapd import __version__
from soapd.errors import SoapdError
from soapd.output.plots import BAND_COLOURS
from soapd.web.api import (
    DOWNLOAD_FORMATS,
    require_target,
    target_alerts,
    target_info,
)
from soapd.web.data import flag_meanings, lightcurve_payload, status_payload, target_rows
from soapd.web.frame import frame_payload, render_debug_png
from soapd.web.state import web_state

__all__ = [
    "debug_png",
    "frame_page",
    "make_templates",
    "root_redirect",
    "status_page",
    "target_page",
    "targets_page",
]

logger = logging.getLogger(__name__)


def _q(value: object) -> str:
    """Percent-encode a URL path segment (``/`` included)."""
    return quote(str(value), safe="")


def _num(value: object, digits: int = 3) -> str:
    """Format a number with ``digits`` decimals; '-' for None or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _age(seconds: object) -> str:
    """Return a duration in seconds as '42 s', '5.0 min', '3.2 h' or '2.1 d'."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    s = float(seconds)
    if abs(s) < 120:
        return f"{s:.0f} s"
    if abs(s) < 7200:
        return f"{s / 60:.1f} min"
    if abs(s) < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _mb(n_bytes: object) -> str:
    return f"{float(n_bytes) / 1e6:.1f} MB" if isinstance(n_bytes, int | float) else "-"


def _short(text: object, n: int = 19) -> str:
    """Return ISO time text cut to seconds ('-' for none)."""
    return str(text)[:n].replace("T", " ") if text else "-"


def make_templates(directory: str) -> Jinja2Templates:
    """Return the page templates with soapd's filters (autoescaping on)."""
    templates = Jinja2Templates(directory=directory)
    env = templates.env
    env.autoescape = True
    env.filters.update(q=_q, num=_num, age=_age, mb=_mb, short=_short)
    env.globals.update(version=__version__, download_formats=list(DOWNLOAD_FORMATS))
    return templates


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    state = web_state(request)
    templates: Jinja2Templates = request.app.state.templates
    page = name.split(".", maxsplit=1)[0]
    base = {"database": str(state.db_path), "refresh_s": None, "page": page}
    return templates.TemplateResponse(request, name, base | context, status_code=status)


def status_page(request: Request) -> Response:
    """Render the status page: daemon, backlog, problem frames, alerts, cache (self-refreshing)."""
    state = web_state(request)
    try:
        with state.store() as store:
            info = status_payload(store, state.config, notifier_keys=state.notifier_keys)
    except SoapdError as exc:
        return _render(
            request,
            "error.html",
            {"title": "No database", "message": str(exc), "refresh_s": state.config.web.refresh_s},
            503,
        )
    return _render(request, "status.html", {"info": info, "refresh_s": state.config.web.refresh_s})


def targets_page(request: Request) -> Response:
    """Render the targets table: latest state per target, sortable, linked."""
    state = web_state(request)
    with state.store() as store:
        rows = target_rows(store)
    return _render(request, "targets.html", {"rows": rows, "refresh_s": state.config.web.refresh_s})


def target_page(request: Request) -> Response:
    """Render one target: lightcurve plot, points table, alerts, GCN draft, downloads."""
    name = request.path_params["name"]
    state = web_state(request)
    with state.store() as store:
        target = require_target(store, name)
        info = target_info(target)
        table = store.lightcurve(name)
        stacks = store.stacked(name)
        alerts = target_alerts(store, name)
    lc = lightcurve_payload(table, target=info, stacks=stacks)
    n = lc["n_rows"]
    limit = n if request.query_params.get("rows") == "all" else state.config.web.table_rows
    pts = lc["points"]
    keys = list(pts)
    # Newest first, frames and stacked epochs together (a stack after its frames).
    mjd = pts["mjd"]
    order = sorted(
        range(n),
        key=lambda i: (mjd[i] if mjd[i] is not None else -math.inf, pts["stacked"][i]),
        reverse=True,
    )
    rows = [{k: pts[k][i] for k in keys} for i in order[:limit]]
    return _render(
        request,
        "target.html",
        {
            "target": info,
            "lc": lc,
            "rows": rows,
            "n_shown": len(rows),
            "alerts": alerts,
            "flag_meanings": flag_meanings(),
            "base_url": f"/api/targets/{_q(name)}",
            "band_colours": json.dumps(BAND_COLOURS),
        },
    )


def frame_page(request: Request) -> Response:
    """Render one frame: summary, footprint, measurements, a link to its debug figure."""
    frame_id = int(request.path_params["frame_id"])
    with web_state(request).store() as store:
        payload = frame_payload(store, frame_id)
    if payload is None:
        raise HTTPException(404, f"no frame {frame_id}")
    show_debug = request.query_params.get("debug") == "1"
    return _render(request, "frame.html", {"p": payload, "show_debug": show_debug})


def debug_png(request: Request) -> Response:
    """Return the frame's four-panel debug figure (PNG), drawn on demand, cached in memory."""
    frame_id = int(request.path_params["frame_id"])
    state = web_state(request)
    png = state.cached_debug(frame_id)
    if png is None:
        with state.store() as store:
            row = store.frame_details(frame_id)
        if row is None:
            raise HTTPException(404, f"no frame {frame_id}")
        with state.debug_lock:
            png = state.cached_debug(frame_id)
            if png is None:
                try:
                    png = render_debug_png(state.config, row)
                except SoapdError as exc:
                    raise HTTPException(409, f"frame {frame_id}: no debug figure: {exc}") from None
                state.remember_debug(frame_id, png)
    return Response(png, media_type="image/png")


def root_redirect(_request: Request) -> Response:
    """Send ``/status`` to the status page at ``/``."""
    return RedirectResponse("/", status_code=308)
