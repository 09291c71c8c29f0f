"""The web app factory: routes, middleware, static files, the bundled Plotly.

:func:`create_app` returns a Starlette ASGI app serving the read-only pages and
JSON endpoints of one soapd state folder. Only GET (and HEAD) exist: no
endpoint writes. Plotly's JavaScript is plotly.js's official "gl2d" partial
bundle (scatter + scattergl), vendored in ``soapd/web/vendor/`` with its
provenance, and served by soapd itself, gzipped once in memory: the pages need
no CDN and no internet access.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from soapd.config import Config, Token
from soapd.errors import SoapdError
from soapd.web import api, pages
from soapd.web.middleware import AccessLog, SecurityHeaders, TokenGate
from soapd.web.state import WebState, notifier_keys

__all__ = ["PLOTLY_URL", "create_app", "plotly_js_path"]

_HERE = Path(__file__).resolve().parent
#: Where the pages load Plotly from (served by soapd).
PLOTLY_URL = "/static/vendor/plotly-gl2d.min.js"


def plotly_js_path() -> Path:
    """Return the path of the vendored Plotly bundle (``soapd/web/vendor/PROVENANCE.md``)."""
    path = _HERE / "vendor" / "plotly-gl2d.min.js"
    if not path.is_file():  # pragma: no cover - a broken install
        raise SoapdError(f"{path} is missing; reinstall soapd (pip install 'soapd[web]')")
    return path


class _PlotlyJS:
    """Serve the Plotly bundle with a strong ETag, gzipped once when the client accepts it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raw: bytes | None = None
        self._gz: bytes | None = None
        self._etag = ""

    def _load(self) -> None:
        with self._lock:
            if self._raw is None:
                raw = plotly_js_path().read_bytes()
                self._gz = gzip.compress(raw, compresslevel=6, mtime=0)
                self._etag = '"' + hashlib.sha256(raw).hexdigest()[:16] + '"'
                self._raw = raw

    def response(self, request: Request) -> Response:
        """Return the file (304 when the client has it)."""
        self._load()
        headers = {
            "ETag": self._etag,
            "Cache-Control": "public, max-age=86400",
            "Vary": "Accept-Encoding",
        }
        if request.headers.get("if-none-match") == self._etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", "") and self._gz is not None:
            headers["Content-Encoding"] = "gzip"
            body = self._gz
        else:
            body = self._raw or b""
        return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return api.JSONResponse({"error": exc.detail, "status": exc.status_code}, exc.status_code)
    templates: Jinja2Templates = request.app.state.templates
    context = {
        "title": f"{exc.status_code}",
        "message": exc.detail,
        "database": str(request.app.state.soapd.db_path),
        "refresh_s": None,
        "page": "error",
    }
    return templates.TemplateResponse(request, "error.html", context, status_code=exc.status_code)


def _soapd_error(request: Request, exc: Exception) -> Response:
    return _http_error(request, HTTPException(503, str(exc)))


def _health(request: Request) -> Response:
    state = request.app.state.soapd
    with state.store() as store:
        store.backlog()
    return PlainTextResponse("ok\n")


def _favicon(_request: Request) -> Response:
    return RedirectResponse("/static/favicon.svg", status_code=301)


def _routes() -> list[Any]:
    get = ["GET", "HEAD"]
    name_lc = "/api/targets/{name:path}/lightcurve"
    return [
        Route("/", pages.status_page, methods=get, name="status"),
        Route("/status", pages.root_redirect, methods=get),
        Route("/targets", pages.targets_page, methods=get, name="targets"),
        Route("/targets/{name:path}", pages.target_page, methods=get, name="target"),
        Route("/frames/{frame_id:int}/debug.png", pages.debug_png, methods=get, name="debug"),
        Route("/frames/{frame_id:int}", pages.frame_page, methods=get, name="frame"),
        Route("/healthz", _health, methods=get),
        Route("/favicon.ico", _favicon, methods=get),
        Route("/api", api.api_index, methods=get),
        Route("/api/status", api.api_status, methods=get),
        Route("/api/targets", api.api_targets, methods=get),
        Route(name_lc + ".{fmt}", api.api_lightcurve_download, methods=get),
        Route(name_lc, api.api_lightcurve, methods=get),
        Route("/api/targets/{name:path}/gcn", api.api_gcn, methods=get),
        Route("/api/targets/{name:path}", api.api_target, methods=get),
        Route("/api/frames/{frame_id:int}", api.api_frame, methods=get),
        Route(PLOTLY_URL, _PlotlyJS().response, methods=get),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]


def create_app(
    config: Config, *, token: Token | None = None, db_path: Path | None = None
) -> Starlette:
    """Return the ASGI app serving ``config``'s database read-only.

    ``token`` (see :func:`soapd.config.read_web_token`) is then required on
    every request. ``db_path`` overrides ``config.paths.db_path``. The database
    is opened per request, so the app starts even before the daemon created it
    (pages then say where they looked).
    """
    middleware = [Middleware(AccessLog), Middleware(SecurityHeaders)]
    if token:
        middleware.append(Middleware(TokenGate, token=token.reveal()))
    app = Starlette(
        routes=_routes(),
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, SoapdError: _soapd_error},
    )
    app.state.soapd = WebState(
        config=config,
        db_path=db_path or config.paths.db_path,
        notifier_keys=notifier_keys(config),
    )
    app.state.templates = pages.make_templates(str(_HERE / "templates"))
    return app
