"""A fake Skynet API v2 server on 127.0.0.1, for tests and ``make demo``.

:class:`FakeSkynet` serves ``GET /obs/{id}``, ``GET /exps`` (``obs``, ``scope``,
``state``, ``after``, ``before``, ``wcs_present``, ``sort_by``, ``offset``,
``limit``, ``include``, ``exclude``) and ``GET /download/fits`` (``image``,
``reduce``, ``reducequiet``) under ``/2.0``, the way ``skynet_api.md`` describes
the real API: camelCase JSON, naive UTC timestamps, only ``id`` unless
``include`` asks for more, Content-Disposition on downloads, plain-text errors.
Unknown query parameters are refused with HTTP 400, so a client that misspells
one (``reduceQuiet``) fails loudly here instead of silently in production.

Exposures are added as ``completed`` (taken, no file yet) and become
``archived`` one at a time (:meth:`FakeSkynet.release_next`, or a timer). Fault
switches: random 503s (seeded), slow responses, truncated downloads, a token
change (:meth:`FakeSkynet.rotate_token`: the old token then gets 401) and any
bytes as a "frame" (not FITS). Every request is logged without its token. All
waits are bounded and :meth:`FakeSkynet.stop` closes open connections, so
nothing can hang.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import sys
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["API_PREFIX", "NOT_FITS_BYTES", "FakeSkynet", "LoggedRequest"]

logger = logging.getLogger(__name__)

#: Path prefix of the API (``FakeSkynet.url`` ends with it).
API_PREFIX = "/2.0"
#: Bytes that are certainly not FITS (an HTML error page sent with status 200).
NOT_FITS_BYTES = b"<html><body>Internal error while reducing the image</body></html>\n"
_AUTH_HEADER = "Authentication-Token"
_EXPS_PARAMS = frozenset(
    {"obs", "scope", "state", "after", "before", "wcs_present", "sort_by", "offset"}
    | {"limit", "include", "exclude"}
)
_DOWNLOAD_PARAMS = frozenset({"image", "reduce", "reducequiet"})
_OBS_PARAMS = frozenset({"include", "exclude"})
_MAX_LIMIT = 1000
_MAX_DELAY_S = 30.0


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


@dataclass(slots=True)
class _Exp:
    record: dict[str, Any]
    data: bytes
    filename: str
    released: bool = False


@dataclass(slots=True)
class _Faults:
    fail_rate: float = 0.0
    slow: list[float] = field(default_factory=list)
    truncate: int = 0


def _iso(when: datetime) -> str:
    """Format an aware time the way Skynet does: naive ISO-8601 UTC."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat()


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _project(record: Mapping[str, Any], include: str | None, exclude: str | None) -> dict[str, Any]:
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


class _Handler(BaseHTTPRequestHandler):
    """Request handler; all state lives on ``self.server.fake``."""

    protocol_version = "HTTP/1.1"
    server: _Server
    entry: LoggedRequest | None = None

    def _status(self, status: int) -> None:
        if self.entry is not None:
            self.server.fake.set_status(self.entry, status)

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.fake.request_timeout_s)
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add about 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("fake skynet: %s", format % args)

    def do_GET(self) -> None:
        self.server.fake.handle(self)

    def send_plain(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        body = text.encode()
        self._status(status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self._status(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_file(self, data: bytes, filename: str, *, truncate: bool) -> None:
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
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    fake: FakeSkynet

    def handle_error(self, _request: Any, client_address: Any) -> None:
        """Log a failed connection (e.g. the client gave up on a slow answer) quietly."""
        logger.debug(
            "fake skynet: connection from %s failed: %r", client_address, sys.exc_info()[1]
        )


class FakeSkynet:
    """A threaded fake Skynet API v2 on 127.0.0.1 (ephemeral port); use it as a context manager.

    ``token`` is the token the fake accepts; ``seed`` drives the random 503s;
    ``max_requests`` bounds the requests served (later ones get 503 and
    :attr:`budget_exhausted` turns True), so a runaway client cannot loop forever.
    """

    def __init__(
        self,
        *,
        token: str = "fake-skynet-token",  # noqa: S107 - a test server's own token
        seed: int = 0,
        max_requests: int = 100_000,
        request_timeout_s: float = 10.0,
    ) -> None:
        self._token = token
        self._rng = random.Random(seed)  # noqa: S311 - fault injection, not crypto
        self.max_requests = max_requests
        self.request_timeout_s = request_timeout_s
        self.budget_exhausted = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._obs: dict[int, str] = {}
        self._exps: dict[int, _Exp] = {}
        self._order: list[int] = []
        self._next_id = 900_000_001
        self._faults = _Faults()
        self._log: list[LoggedRequest] = []
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> Self:
        """Start serving in a background thread; return self."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        # daemon=True: a forgotten stop() must not keep the interpreter alive; stop() joins it.
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-skynet",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the server and the release timer, close open connections, join all threads."""
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            with self._lock:
                conns = list(self._conns)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=_MAX_DELAY_S + 5)
        self._threads.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:40123/2.0``."""
        if self._server is None:
            raise RuntimeError("FakeSkynet is not running; call start() or use 'with'")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{API_PREFIX}"

    @property
    def token(self) -> str:
        """The token the fake currently accepts (test code only; soapd never prints it)."""
        return self._token

    def track(self, conn: socket.socket, *, add: bool) -> None:
        """Remember open connections so that :meth:`stop` can close them."""
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # -- content ------------------------------------------------------------------

    def add_observation(self, obs_id: int, name: str | None = None) -> int:
        """Add an observation; return its id."""
        with self._lock:
            self._obs[obs_id] = name or f"soapd-fake-{obs_id}"
        return obs_id

    def add_exposure(
        self,
        obs_id: int,
        data: bytes,
        *,
        center_time_utc: datetime,
        exptime_s: float = 60.0,
        telescope: str = "Prompt5",
        filter_name: str = "V",
        gain: float | None = 1.5,
        read_noise: float | None = 6.0,
        exp_id: int | None = None,
        filename: str | None = None,
        archived: bool = False,
        fields: Mapping[str, Any] | None = None,
    ) -> int:
        """Add an exposure of observation ``obs_id`` whose file is ``data``; return its id.

        It is ``completed`` (not downloadable) until released, unless ``archived``.
        ``fields`` overrides or adds JSON fields of the record.
        """
        with self._lock:
            if obs_id not in self._obs:
                self.add_observation(obs_id)
            if exp_id is None:
                exp_id = self._next_id
            self._next_id = max(self._next_id, exp_id) + 1
            start = center_time_utc - timedelta(seconds=exptime_s / 2)
            filt = {"id": zlib.crc32(filter_name.encode()) % 1000, "name": filter_name}
            record: dict[str, Any] = {
                "id": exp_id,
                "obsId": obs_id,
                "expNum": sum(1 for e in self._exps.values() if e.record["obsId"] == obs_id) + 1,
                "type": "light",
                "state": "completed",
                "expLength": exptime_s,
                "expLengthUsed": exptime_s,
                "timeIn": _iso(start - timedelta(hours=1)),
                "timeTaken": _iso(start),
                "centerTime": _iso(center_time_utc),
                "timeArchived": None,
                "filterName": filter_name,
                "filterUsed": filt,
                "filterRequested": filt,
                "telescope": {
                    "id": 42,
                    "name": telescope,
                    "siteName": "CTIO",
                    "site": {"id": 3, "name": "CTIO", "latDegs": -30.17, "lngDegs": -70.8},
                },
                "camera": {"id": 7, "name": "fake-cam", "gain": gain, "readNoise": read_noise},
                "gain": gain,
                "readNoise": read_noise,
                "binningUsed": 1,
                "wcsState": "completed",
                "wcsSolution": None,
                "imageId": f"r{exp_id}",
                "isCompressed": False,
                "remoteFilename": filename or f"fake_{exp_id}.fits",
            }
            record.update(fields or {})
            self._exps[exp_id] = _Exp(record, bytes(data), filename or f"fake_{exp_id}.fits")
            self._order.append(exp_id)
            if archived:
                self._archive(exp_id)
        return exp_id

    def _archive(self, exp_id: int) -> None:
        exp = self._exps[exp_id]
        exp.released = True
        exp.record["state"] = "archived"
        exp.record["timeArchived"] = _iso(datetime.now(UTC))

    def release_next(self) -> int | None:
        """Archive the next completed exposure (in the order added); return its id or None."""
        with self._lock:
            for exp_id in self._order:
                if not self._exps[exp_id].released:
                    self._archive(exp_id)
                    return exp_id
        return None

    def release_all(self) -> list[int]:
        """Archive every completed exposure; return their ids."""
        released = []
        while (exp_id := self.release_next()) is not None:
            released.append(exp_id)
        return released

    @property
    def pending(self) -> int:
        """Exposures not yet released."""
        with self._lock:
            return sum(1 for e in self._exps.values() if not e.released)

    def start_releasing(self, interval_s: float) -> None:
        """Release one exposure every ``interval_s`` seconds in a thread (stopped by stop())."""

        def run() -> None:
            while not self._stop.wait(interval_s):
                if self.release_next() is None:
                    return

        thread = threading.Thread(target=run, name="fake-skynet-release", daemon=True)
        thread.start()
        self._threads.append(thread)

    def archived_ids(self) -> list[int]:
        """Ids of the archived exposures, in the order added."""
        with self._lock:
            return [i for i in self._order if self._exps[i].released]

    # -- faults -------------------------------------------------------------------

    def set_fail_rate(self, rate: float) -> None:
        """Answer this fraction of requests with 503 (seeded, repeatable)."""
        if not 0.0 <= rate < 1.0:
            raise ValueError("fail rate must be in [0, 1)")
        with self._lock:
            self._faults.fail_rate = rate

    def slow_next(self, delay_s: float, count: int = 1) -> None:
        """Delay the next ``count`` responses by ``delay_s`` seconds (at most 30 s)."""
        with self._lock:
            self._faults.slow.extend([min(max(delay_s, 0.0), _MAX_DELAY_S)] * count)

    def truncate_next_download(self, count: int = 1) -> None:
        """Send only half of the next ``count`` files, then close the connection."""
        with self._lock:
            self._faults.truncate += count

    def rotate_token(self, new_token: str) -> None:
        """Accept only ``new_token`` from now on: clients with the old one get 401."""
        with self._lock:
            self._token = new_token

    # -- request log ----------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        """A copy of the request log (no tokens in it)."""
        with self._lock:
            return [replace(entry, params=dict(entry.params)) for entry in self._log]

    def count(self, path_suffix: str = "") -> int:
        """Return how many logged requests had a path ending in ``path_suffix``."""
        return sum(1 for r in self.requests if r.path.endswith(path_suffix))

    # -- serving --------------------------------------------------------------------

    def handle(self, req: _Handler) -> None:
        """Answer one request (called on a server thread)."""
        parts = urlsplit(req.path)
        path = unquote(parts.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        presented = req.headers.get(_AUTH_HEADER)
        with self._lock:
            auth = "missing" if not presented else ("ok" if presented == self._token else "bad")
            delay = self._faults.slow.pop(0) if self._faults.slow else 0.0
            over = len(self._log) >= self.max_requests
            fail = self._faults.fail_rate > 0 and self._rng.random() < self._faults.fail_rate
            req.entry = LoggedRequest("GET", path, params, 0, auth)
            self._log.append(req.entry)
        if delay:
            self._stop.wait(delay)
        self._respond(req, path, params, auth=auth, over=over, fail=fail)

    def set_status(self, entry: LoggedRequest, status: int) -> None:
        """Record the status of a logged request (called just before the answer is sent)."""
        with self._lock:
            entry.status = status

    def _respond(
        self,
        req: _Handler,
        path: str,
        params: dict[str, str],
        *,
        auth: str,
        over: bool,
        fail: bool,
    ) -> int:
        """Route the request; return the status sent."""
        if over:
            self.budget_exhausted = True
            req.send_plain(503, "request budget of the fake server exhausted")
            return 503
        if auth != "ok":
            req.send_plain(
                401,
                "Invalid or missing authentication token",
                {"web2py_error": "skynet.api.errors.AuthenticationError"},
            )
            return 401
        if fail:
            req.send_plain(503, "Service Temporarily Unavailable")
            return 503
        if not path.startswith(API_PREFIX + "/"):
            req.send_plain(404, f"no such endpoint {path}")
            return 404
        route = path[len(API_PREFIX) :].rstrip("/")
        try:
            if route == "/exps":
                return self._exps_list(req, params)
            if route.startswith("/obs/"):
                return self._obs_get(req, route.removeprefix("/obs/"), params)
            if route == "/download/fits":
                return self._download(req, params)
        except _BadRequest as exc:
            req.send_plain(400, str(exc), {"web2py_error": "skynet.api.errors.BadRequestError"})
            return 400
        req.send_plain(404, f"no such endpoint {path}")
        return 404

    def _visible(self) -> Iterator[dict[str, Any]]:
        for exp_id in self._order:
            yield self._exps[exp_id].record

    def _exps_list(self, req: _Handler, params: dict[str, str]) -> int:
        unknown = set(params) - _EXPS_PARAMS
        if unknown:
            raise _BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        with self._lock:
            rows = [dict(r) for r in self._visible() if self._matches(r, params)]
        for key in reversed([k for k in params.get("sort_by", "id").split(",") if k.strip()]):
            rows.sort(key=_sort_key(key.strip().lstrip("-")), reverse=key.startswith("-"))
        offset, limit = _int_param(params, "offset", 0), _int_param(params, "limit", _MAX_LIMIT)
        limit = min(limit, _MAX_LIMIT)
        page = rows[offset : offset + limit]
        req.send_json([_project(r, params.get("include"), params.get("exclude")) for r in page])
        return 200

    def _matches(self, rec: Mapping[str, Any], params: Mapping[str, str]) -> bool:
        if "obs" in params:
            wanted = {v.strip() for v in params["obs"].split(",")}
            name = self._obs.get(rec["obsId"], "")
            if str(rec["obsId"]) not in wanted and name not in wanted:
                return False
        if "scope" in params:
            wanted = {v.strip() for v in params["scope"].split(",")}
            tel = rec.get("telescope") or {}
            if str(tel.get("id")) not in wanted and tel.get("name") not in wanted:
                return False
        if "state" in params and rec["state"] not in params["state"].split(","):
            return False
        if params.get("wcs_present") == "1" and rec.get("wcsState") != "completed":
            return False
        taken = rec.get("timeTaken")
        for key, after in (("after", True), ("before", False)):
            if key in params:
                try:
                    limit = _parse_time(params[key])
                except ValueError:
                    raise _BadRequest(f"bad {key} time {params[key]!r}") from None
                if taken is None or (_parse_time(taken) <= limit) == after:
                    return False
        return True

    def _obs_get(self, req: _Handler, key: str, params: dict[str, str]) -> int:
        unknown = set(params) - _OBS_PARAMS
        if unknown:
            raise _BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        with self._lock:
            obs_id = next((i for i, n in self._obs.items() if key in (str(i), n)), None)
            if obs_id is None:
                req.send_plain(
                    404,
                    f"Observation {key} not found",
                    {"web2py_error": "skynet.api.errors.ResourceNotFoundError"},
                )
                return 404
            exps = [dict(r) for r in self._visible() if r["obsId"] == obs_id]
            record = {"id": obs_id, "name": self._obs[obs_id], "state": "active", "exps": exps}
        include = params.get("include") or "*"
        req.send_json(_project(record, include, params.get("exclude")))
        return 200

    def _download(self, req: _Handler, params: dict[str, str]) -> int:
        unknown = set(params) - _DOWNLOAD_PARAMS
        if unknown:
            raise _BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        image = params.get("image", "")
        exp_id = int(image[1:]) if image[:1] == "r" and image[1:].isdigit() else None
        with self._lock:
            exp = self._exps.get(exp_id) if exp_id is not None else None
            if exp is None or not exp.released:
                req.send_plain(
                    404,
                    f"Image {image} not found",
                    {"web2py_error": "skynet.api.errors.ResourceNotFoundError"},
                )
                return 404
            truncate = self._faults.truncate > 0
            if truncate:
                self._faults.truncate -= 1
            data, filename = exp.data, exp.filename
        req.send_file(data, filename, truncate=truncate)
        return 200


class _BadRequest(Exception):
    """A request the real API would refuse with 400."""


def _int_param(params: Mapping[str, str], key: str, default: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise _BadRequest(f"{key} must be a non-negative integer, got {value!r}")
    return int(value)


def _sort_key(name: str) -> Callable[[Mapping[str, Any]], tuple[bool, float, str]]:
    """Sort key on field ``name``: missing values last, numbers in numeric order."""

    def key(rec: Mapping[str, Any]) -> tuple[bool, float, str]:
        value = rec.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (False, float(value), "")
        return (value is None, 0.0, "" if value is None else str(value))

    return key
