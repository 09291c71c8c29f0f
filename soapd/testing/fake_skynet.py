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
change (:meth:`FakeSkynet.rotate_token`: the old token then gets 401), any
bytes as a "frame" (not FITS), an HTML page with status 200 instead of the file
for a while (:meth:`FakeSkynet.serve_html`, a proxy's maintenance page),
drip-fed downloads (:meth:`FakeSkynet.drip_next_download`), one server file
name for every exposure (:meth:`FakeSkynet.collide_names`) and raw, malformed
listing records (:meth:`FakeSkynet.add_record`). Every request is logged
without its token. All waits are bounded and :meth:`FakeSkynet.stop` closes
open connections, so nothing can hang.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from soapd.testing.fake_skynet_faults import HTML_PAGE, MAX_DELAY_S, Faults, FaultSwitches
from soapd.testing.fake_skynet_http import (
    DOWNLOAD_PARAMS,
    EXPS_PARAMS,
    OBS_PARAMS,
    BadRequest,
    Drip,
    Handler,
    LoggedRequest,
    Server,
    check_params,
    matches,
    page,
    project,
)
from soapd.timeutil import iso_utc

__all__ = ["API_PREFIX", "HTML_PAGE", "NOT_FITS_BYTES", "Drip", "FakeSkynet", "LoggedRequest"]

logger = logging.getLogger(__name__)

#: Path prefix of the API (``FakeSkynet.url`` ends with it).
API_PREFIX = "/2.0"
#: Bytes that are certainly not FITS (an HTML error page sent with status 200).
NOT_FITS_BYTES = b"<html><body>Internal error while reducing the image</body></html>\n"
_AUTH_HEADER = "Authentication-Token"


@dataclass(slots=True)
class _Exp:
    record: dict[str, Any]
    data: bytes
    filename: str
    released: bool = False


class FakeSkynet(FaultSwitches):
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
        self._raw: dict[int, dict[str, Any]] = {}
        self._order: list[int] = []
        self._next_id = 900_000_001
        self._faults = Faults()
        self._log: list[LoggedRequest] = []
        self._conns: set[socket.socket] = set()
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> Self:
        """Start serving in a background thread; return self."""
        if self._server is not None:
            return self
        server = Server(("127.0.0.1", 0), Handler)
        server.backend = self
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
            thread.join(timeout=MAX_DELAY_S + 5)
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
                "timeIn": iso_utc(start - timedelta(hours=1)),
                "timeTaken": iso_utc(start),
                "centerTime": iso_utc(center_time_utc),
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

    def add_record(self, record: Mapping[str, Any]) -> None:
        """Add a raw exposure record to the listings, exactly as given (no file behind it).

        For malformed answers: an id of 2**64, a missing field, a wrong type. It
        is listed like the others (filters read it with ``.get``) and sorted by id.
        """
        with self._lock:
            key = -len(self._raw) - 1
            self._raw[key] = dict(record)
            self._order.append(key)

    def _archive(self, exp_id: int) -> None:
        exp = self._exps[exp_id]
        exp.released = True
        exp.record["state"] = "archived"
        exp.record["timeArchived"] = iso_utc(datetime.now(UTC))

    def release_next(self) -> int | None:
        """Archive the next completed exposure (in the order added); return its id or None."""
        with self._lock:
            for exp_id in self._order:
                if exp_id in self._exps and not self._exps[exp_id].released:
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
            return [i for i in self._order if i in self._exps and self._exps[i].released]

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

    def handle(self, req: Handler) -> None:
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
        req: Handler,
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
        except BadRequest as exc:
            req.send_plain(400, str(exc), {"web2py_error": "skynet.api.errors.BadRequestError"})
            return 400
        req.send_plain(404, f"no such endpoint {path}")
        return 404

    def _visible(self) -> Iterator[dict[str, Any]]:
        for exp_id in self._order:
            yield self._exps[exp_id].record if exp_id in self._exps else self._raw[exp_id]

    def _exps_list(self, req: Handler, params: dict[str, str]) -> int:
        check_params(params, EXPS_PARAMS)
        with self._lock:
            rows = [dict(r) for r in self._visible() if matches(r, params, self._obs)]
        req.send_json(
            [project(r, params.get("include"), params.get("exclude")) for r in page(rows, params)]
        )
        return 200

    def _obs_get(self, req: Handler, key: str, params: dict[str, str]) -> int:
        check_params(params, OBS_PARAMS)
        with self._lock:
            obs_id = next((i for i, n in self._obs.items() if key in (str(i), n)), None)
            if obs_id is None:
                req.send_plain(
                    404,
                    f"Observation {key} not found",
                    {"web2py_error": "skynet.api.errors.ResourceNotFoundError"},
                )
                return 404
            exps = [dict(r) for r in self._visible() if r.get("obsId") == obs_id]
            record = {"id": obs_id, "name": self._obs[obs_id], "state": "active", "exps": exps}
        include = params.get("include") or "*"
        req.send_json(project(record, include, params.get("exclude")))
        return 200

    def _download(self, req: Handler, params: dict[str, str]) -> int:
        check_params(params, DOWNLOAD_PARAMS)
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
            if time.monotonic() < self._faults.html_until_s:
                req.send_body(200, HTML_PAGE, "text/html; charset=utf-8")
                return 200
            truncate = self._faults.truncate > 0
            if truncate:
                self._faults.truncate -= 1
            drip = self._faults.drip.pop(0) if self._faults.drip else None
            data, filename = exp.data, self._faults.same_name or exp.filename
        req.send_file(data, filename, truncate=truncate, drip=drip, pause=self._stop.wait)
        return 200
