"""The HTTP side of :class:`~soapd.testing.fake_skynet.FakeSkynet`: handler, server, query rules.

The request handler only parses and writes bytes; every decision is made by
the backend (the ``FakeSkynet``). The pure functions below implement the
Skynet API v2 query conventions the fake imitates (``skynet_api.md`` §2-§3):
``include``/``exclude`` projection (only ``id`` by default), comma-separated
filters matching ids or names, ``after``/``before`` on ``timeTaken``,
``sort_by`` with ``-`` for descending, ``offset``/``limit`` paging (at most
1000), and HTTP 400 for unknown parameters.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from soapd.timeutil import parse_utc

__all__ = [
    "DOWNLOAD_PARAMS",
    "EXPS_PARAMS",
    "MAX_LIMIT",
    "OBS_PARAMS",
    "BadRequest",
    "Drip",
    "Handler",
    "LoggedRequest",
    "Server",
    "check_params",
    "matches",
    "page",
    "project",
]

logger = logging.getLogger("soapd.testing.fake_skynet")

#: Query parameters of ``GET /exps``.
EXPS_PARAMS = frozenset(
    {"obs", "scope", "state", "after", "before", "wcs_present", "sort_by", "offset"}
    | {"limit", "include", "exclude"}
)
#: Query parameters of ``GET /download/fits``.
DOWNLOAD_PARAMS = frozenset({"image", "reduce", "reducequiet"})
#: Query parameters of ``GET /obs/{id}``.
OBS_PARAMS = frozenset({"include", "exclude"})
#: Largest page the API returns.
MAX_LIMIT = 1000


@dataclass(slots=True)
class LoggedRequest:
    """One request as the fake saw it; ``auth`` is "ok", "bad" or "missing", never the token.

    It is logged on arrival with ``status`` 0, which is set just before the answer is sent.
    """

    method: str
    path: str
    params: dict[str, str]
    status: int
    auth: str


@dataclass(frozen=True, slots=True)
class Drip:
    """How a drip-fed download is sent: ``chunk_bytes`` every ``interval_s`` seconds."""

    chunk_bytes: int
    interval_s: float


class BadRequest(Exception):
    """A request the real API would refuse with 400."""


def check_params(params: Mapping[str, str], allowed: frozenset[str]) -> None:
    """Raise BadRequest naming any parameter not in ``allowed``."""
    unknown = set(params) - allowed
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown))}")


def project(record: Mapping[str, Any], include: str | None, exclude: str | None) -> dict[str, Any]:
    """Apply ``include``/``exclude`` as Skynet does: only ``id`` unless asked for more."""
    if include is None or not include.strip():
        out = {"id": record["id"]}
    elif include.strip() == "*":
        out = dict(record)
    else:
        wanted = {name.strip() for name in include.split(",")} | {"id"}
        out = {k: v for k, v in record.items() if k in wanted}
    for name in (exclude or "").split(","):
        if name.strip() and name.strip() != "id":
            out.pop(name.strip(), None)
    return out


def matches(
    rec: Mapping[str, Any], params: Mapping[str, str], obs_names: Mapping[int, str]
) -> bool:
    """Return True when exposure record ``rec`` passes the ``/exps`` filters in ``params``."""
    if "obs" in params:
        wanted = {v.strip() for v in params["obs"].split(",")}
        obs_id = rec.get("obsId")
        name = obs_names.get(obs_id, "") if isinstance(obs_id, int) else ""
        if str(obs_id) not in wanted and name not in wanted:
            return False
    if "scope" in params:
        wanted = {v.strip() for v in params["scope"].split(",")}
        tel = rec.get("telescope") or {}
        if str(tel.get("id")) not in wanted and tel.get("name") not in wanted:
            return False
    if "state" in params and rec.get("state") not in params["state"].split(","):
        return False
    if params.get("wcs_present") == "1" and rec.get("wcsState") != "completed":
        return False
    taken = rec.get("timeTaken")
    for key, after in (("after", True), ("before", False)):
        if key in params:
            try:
                limit = parse_utc(params[key])
            except ValueError:
                raise BadRequest(f"bad {key} time {params[key]!r}") from None
            if taken is None or (parse_utc(taken) <= limit) == after:
                return False
    return True


def _int_param(params: Mapping[str, str], key: str, default: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise BadRequest(f"{key} must be a non-negative integer, got {value!r}")
    return int(value)


def _sort_key(name: str) -> Callable[[Mapping[str, Any]], tuple[bool, float, str]]:
    """Sort key on field ``name``: missing values last, numbers in numeric order."""

    def key(rec: Mapping[str, Any]) -> tuple[bool, float, str]:
        value = rec.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (False, float(value), "")
        return (value is None, 0.0, "" if value is None else str(value))

    return key


def page(rows: list[dict[str, Any]], params: Mapping[str, str]) -> list[dict[str, Any]]:
    """Sort ``rows`` by ``sort_by`` (default ``id``) and return the ``offset``/``limit`` page."""
    for key in reversed([k for k in params.get("sort_by", "id").split(",") if k.strip()]):
        rows.sort(key=_sort_key(key.strip().lstrip("-")), reverse=key.startswith("-"))
    offset = _int_param(params, "offset", 0)
    limit = min(_int_param(params, "limit", MAX_LIMIT), MAX_LIMIT)
    return rows[offset : offset + limit]


class Backend(Protocol):
    """What the handler needs from the fake."""

    request_timeout_s: float

    def track(self, conn: socket.socket, *, add: bool) -> None: ...
    def handle(self, req: Handler) -> None: ...
    def set_status(self, entry: LoggedRequest, status: int) -> None: ...


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 request handler; the backend decides, the handler writes."""

    protocol_version = "HTTP/1.1"
    server: Server
    entry: LoggedRequest | None = None

    def _status(self, status: int) -> None:
        if self.entry is not None:
            self.server.backend.set_status(self.entry, status)

    def setup(self) -> None:
        """Bound the socket's waits, turn Nagle off, register the connection."""
        super().setup()
        self.connection.settimeout(self.server.backend.request_timeout_s)
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add about 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.backend.track(self.connection, add=True)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        finally:
            self.server.backend.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Log at DEBUG (the path holds no secret; headers are not logged)."""
        logger.debug("fake skynet: %s", format % args)

    def do_GET(self) -> None:
        """Hand the request to the backend."""
        self.server.backend.handle(self)

    def send_plain(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        """Send a plain-text answer (Skynet's error style)."""
        body = text.encode()
        self._status(status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        """Send ``body`` with ``status`` and ``content_type`` (an HTML page sent as a file)."""
        self._status(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, payload: Any) -> None:
        """Send a 200 JSON answer."""
        body = json.dumps(payload).encode()
        self._status(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_file(
        self,
        data: bytes,
        filename: str,
        *,
        truncate: bool,
        drip: Drip | None = None,
        pause: Callable[[float], bool] | None = None,
    ) -> None:
        """Send a file with Content-Disposition; ``truncate`` sends half and drops the link.

        ``drip`` sends it ``drip.chunk_bytes`` at a time with ``pause(drip.interval_s)``
        between chunks; ``pause`` returning True (the server stops) ends the answer.
        """
        self._status(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/fits")
        self.send_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if truncate:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_WR)
            return
        if drip is not None:
            for start in range(0, len(data), drip.chunk_bytes):
                if start and pause is not None and pause(drip.interval_s):
                    self.close_connection = True
                    return
                self.wfile.write(data[start : start + drip.chunk_bytes])
                self.wfile.flush()
            return
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    """Threaded server whose request threads are joined on close (no leaks)."""

    daemon_threads = False
    block_on_close = True
    backend: Backend

    def handle_error(self, _request: Any, client_address: Any) -> None:
        """Log a failed connection (e.g. the client gave up on a slow answer) quietly."""
        logger.debug(
            "fake skynet: connection from %s failed: %r", client_address, sys.exc_info()[1]
        )
