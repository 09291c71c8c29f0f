"""Skynet API v2 over httpx: auth, timeouts, paging, retries, atomic FITS downloads.

:class:`SkynetClient` implements :class:`~soapd.skynet.source.ExposureSource`.
Conventions (DESIGN §4.7, ``skynet_api.md``): one ``httpx.Client``; the token
travels in the ``Authentication-Token`` header, added by an ``httpx.Auth`` so it
is never part of the client's default headers, a URL, a log line or an error
message; explicit connect/read timeouts; snake_case, lower-case parameters
(``state=archived``, ``reducequiet=1``); list calls ask for the fields soapd
needs with ``include=`` and page with ``offset``/``limit`` until a short page.
Transport errors, HTTP 5xx and 429 are retried with exponential backoff
(tenacity); 401/403 (:class:`SkynetAuthError`) and 404 (:class:`SkynetNotFound`)
never are. Downloads (:mod:`soapd.skynet.download`) are stored as
``r<exp_id>.fits``, stream to a ``.part`` file, are checked (HTML pages refused,
size against Content-Length, readable FITS in the checker process within
``[frame] max_decompressed_mb``), fsynced and renamed into place. One download
call, retries included, ends by ``skynet.download_deadline_s``, and each read
waits at most that long too. An answer that is not the file (a page with status
200, a body truncated on every attempt or unreadable, the deadline passed) is
:class:`~soapd.errors.SkynetBadAnswer`: transient, the caller retries later.
:meth:`SkynetClient.close` interrupts downloads in progress (from any thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from soapd.config import FrameConfig, SkynetConfig, Token
from soapd.errors import (
    SkynetAuthError,
    SkynetBadAnswer,
    SkynetError,
    SkynetNotFound,
    SkynetUnavailable,
)
from soapd.ingest.checker import FileChecker, mb_to_bytes
from soapd.skynet.download import Stopped, TooSlow, Truncated, save_response
from soapd.skynet.records import EXPOSURE_FIELDS, Exposure, exposure_from_json, format_api_time
from soapd.skynet.source import DownloadedFile

__all__ = ["AUTH_HEADER", "ObservationInfo", "SkynetClient"]

logger = logging.getLogger(__name__)

#: The header that carries the API token.
AUTH_HEADER = "Authentication-Token"
#: Largest wait between two attempts, in seconds.
MAX_BACKOFF_S = 120.0
#: Pages listed at most in one call (a guard against a server that ignores ``offset``).
MAX_PAGES = 10_000
_BODY_EXCERPT = 200
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ObservationInfo:
    """What soapd needs to know about a followed observation."""

    obs_id: int
    name: str | None
    state: str | None


class _TokenAuth(httpx.Auth):
    """Add the token header to each request (kept out of the client's default headers)."""

    def __init__(self, token: Token) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[AUTH_HEADER] = self.token.reveal()
        yield request

    def __repr__(self) -> str:
        return "_TokenAuth(***)"


class _ServerError(Exception):
    """HTTP 5xx or 429: worth another attempt."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}{detail}")
        self.status = status


def _excerpt(response: httpx.Response, secret: str) -> str:
    """Return a short, token-free excerpt of an error response (and its web2py_error header)."""
    try:
        text = response.text.strip()
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        text = ""
    text = " ".join(text.split())[:_BODY_EXCERPT]
    error_class = response.headers.get("web2py_error", "")
    detail = f" [{error_class}]" if error_class else ""
    if text:
        detail += f": {text}"
    return detail.replace(secret, "***") if secret else detail


class SkynetClient:
    """A Skynet API v2 client (an :class:`~soapd.skynet.source.ExposureSource`).

    Build it with :meth:`from_config`; close it with :meth:`close` or a ``with``
    block. ``transport`` replaces the network (``httpx.MockTransport`` in
    tests); ``sleep`` replaces ``time.sleep`` between retries; ``checker`` the
    shared file-checker process. Downloads may run on several threads at once.
    """

    def __init__(
        self,
        *,
        api_url: str,
        token: Token,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        page_size: int = 100,
        reduced: bool = True,
        verify_tls: bool = True,
        download_deadline_s: float = 600.0,
        max_frame_mb: float | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        checker: FileChecker | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._deadline_s = max(0.001, download_deadline_s)
        self._max_bytes = mb_to_bytes(max_frame_mb or FrameConfig().max_decompressed_mb)
        self._checker = checker
        self._closing = threading.Event()
        self._download_timeout = httpx.Timeout(
            connect=connect_timeout_s,
            read=min(read_timeout_s, self._deadline_s),
            write=read_timeout_s,
            pool=connect_timeout_s,
        )
        self._auth = _TokenAuth(token)
        self._max_attempts = max(1, max_attempts)
        self._backoff_s = max(0.0, backoff_s)
        self._page_size = max(1, page_size)
        self._reduced = reduced
        self._sleep = sleep
        timeout = httpx.Timeout(
            connect=connect_timeout_s,
            read=read_timeout_s,
            write=read_timeout_s,
            pool=connect_timeout_s,
        )
        self._http = httpx.Client(
            base_url=self.api_url,
            auth=self._auth,
            timeout=timeout,
            transport=transport,
            verify=verify_tls,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )

    @classmethod
    def from_config(
        cls,
        cfg: SkynetConfig,
        token: Token,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        frame: FrameConfig | None = None,
    ) -> Self:
        """Given the [skynet] section and the token, return a client.

        ``frame`` gives ``max_decompressed_mb`` (the default [frame] section's otherwise).
        """
        return cls(
            api_url=cfg.api_url,
            token=token,
            connect_timeout_s=cfg.connect_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            max_attempts=cfg.max_attempts,
            backoff_s=cfg.backoff_s,
            page_size=cfg.page_size,
            reduced=cfg.reduced,
            verify_tls=cfg.verify_tls,
            download_deadline_s=cfg.download_deadline_s,
            max_frame_mb=None if frame is None else frame.max_decompressed_mb,
            transport=transport,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"SkynetClient({self.api_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Interrupt downloads in progress and close the connection pool. Safe to call twice."""
        self._closing.set()
        self._http.close()

    def set_token(self, token: Token) -> None:
        """Use ``token`` from the next request on (after the operator replaced the credential)."""
        self._auth.token = token

    # -- the ExposureSource interface -------------------------------------------------

    def iter_archived(self, obs_id: int) -> Iterator[Exposure]:
        """Yield every archived exposure of observation ``obs_id``, lowest id first."""
        yield from self._iter_exps({"obs": str(int(obs_id))})

    def iter_telescope(self, telescope: str, *, since_utc: datetime) -> Iterator[Exposure]:
        """Yield archived exposures of ``telescope`` (name or id) taken after ``since_utc``."""
        yield from self._iter_exps({"scope": telescope, "after": format_api_time(since_utc)})

    def download(self, exp: Exposure, dest_dir: Path) -> DownloadedFile:
        """Download ``exp``'s FITS file into ``dest_dir``; return its path, sha256 and size.

        The file is ``dest_dir/r<exp_id>.fits``; it appears under that name only
        when complete, FITS-readable and fsynced; on any failure nothing but
        earlier complete files is left. The whole call, retries included, ends
        by ``skynet.download_deadline_s``. Raise SkynetBadAnswer (a page instead
        of the file, truncated on every attempt, unreadable, too slow: transient),
        FrameRejected (its data exceed ``[frame] max_decompressed_mb``),
        SkynetAuthError, SkynetNotFound or SkynetUnavailable (also when the
        client is closed meanwhile).
        """
        dest_dir.mkdir(parents=True, exist_ok=True)
        params = {"image": exp.image_id}
        if self._reduced:
            params["reducequiet"] = "1"
        what = f"download of exposure {exp.exp_id}"
        deadline_s = time.monotonic() + self._deadline_s
        try:
            return self._retrying(
                lambda: self._download_once(exp, dest_dir, params, deadline_s), what
            )
        except TooSlow as exc:
            raise SkynetBadAnswer(
                f"{what}: not done after {self._deadline_s:g} s "
                f"(skynet.download_deadline_s; {exc} bytes); given up, soapd will try again"
            ) from None
        except Stopped as exc:
            raise SkynetUnavailable(str(exc)) from None
        except RuntimeError:  # httpx: the client was closed by another thread
            if not self._closing.is_set():
                raise
            raise SkynetUnavailable(f"{what}: interrupted, the client was closed") from None

    # -- other calls --------------------------------------------------------------

    def get_observation(self, obs_id: int) -> ObservationInfo:
        """Return the id, name and state of observation ``obs_id``. Raise SkynetNotFound."""
        data = self._get_json(f"/obs/{int(obs_id)}", {"include": "id,name,state"})
        if not isinstance(data, Mapping):
            raise SkynetError(
                f"GET /obs/{obs_id}: expected a JSON object, got {type(data).__name__}"
            )
        name, state = data.get("name"), data.get("state")
        return ObservationInfo(
            obs_id=int(obs_id),
            name=name if isinstance(name, str) else None,
            state=state if isinstance(state, str) else None,
        )

    # -- internals ------------------------------------------------------------------

    def _iter_exps(self, filters: Mapping[str, str]) -> Iterator[Exposure]:
        """Page through ``GET /exps`` with ``filters`` plus state=archived; yield Exposures."""
        base = {
            **filters,
            "state": "archived",
            "include": ",".join(EXPOSURE_FIELDS),
            "sort_by": "id",
            "limit": str(self._page_size),
        }
        previous: list[Any] | None = None
        for page_no in range(MAX_PAGES):
            params = {**base, "offset": str(page_no * self._page_size)}
            page = self._get_json("/exps", params)
            if not isinstance(page, list):
                raise SkynetError(f"GET /exps: expected a JSON list, got {type(page).__name__}")
            if page and page == previous:
                raise SkynetError("GET /exps: the server ignores 'offset' (the same page twice)")
            for rec in page:
                exp = self._record(rec)
                if exp is not None:
                    yield exp
            if len(page) < self._page_size:
                return
            previous = page
        raise SkynetError(f"GET /exps: more than {MAX_PAGES} pages; narrow the query")

    @staticmethod
    def _record(rec: Any) -> Exposure | None:
        """Return the Exposure of one list item, or None (logged) if it is unusable."""
        if not isinstance(rec, Mapping):
            logger.warning("Skynet sent a non-object exposure record; skipped")
            return None
        try:
            exp = exposure_from_json(rec)
        except SkynetError as exc:
            logger.warning("%s; skipped", exc)
            return None
        if not isinstance(rec.get("state"), str):
            logger.warning("exposure %s: Skynet sent a record without a state; skipped", exp.exp_id)
            return None
        if not exp.is_archived:
            logger.debug("exposure %s is %r, not archived; skipped", exp.exp_id, exp.state)
            return None
        return exp

    def _get_json(self, path: str, params: Mapping[str, str]) -> Any:
        """GET ``path`` with retries; return the decoded JSON."""

        def attempt() -> Any:
            logger.debug("GET %s %s", path, dict(params))
            response = self._http.get(path, params=dict(params))
            self._check_status(response, f"GET {path}")
            try:
                return response.json()
            except ValueError:
                raise SkynetError(
                    f"GET {path}: the answer is not JSON{_excerpt(response, self._secret)}"
                ) from None

        return self._retrying(attempt, f"GET {path}")

    @property
    def _secret(self) -> str:
        return self._auth.token.reveal()

    def _check_status(self, response: httpx.Response, what: str) -> None:
        """Raise the soapd error for a non-200 answer (``_ServerError`` for retryable ones)."""
        status = response.status_code
        if status == 200:
            return
        detail = _excerpt(response, self._secret)
        if status in (401, 403):
            raise SkynetAuthError(
                f"{what}: Skynet refused the API token (HTTP {status}{detail}). "
                "Check that the token is still valid on your Skynet account page, then update "
                "the credential ($CREDENTIALS_DIRECTORY/skynet-token, $SOAPD_SKYNET_TOKEN or "
                "skynet.token_file) and reload soapd"
            )
        if status == 404:
            raise SkynetNotFound(f"{what}: Skynet has no such resource (HTTP 404{detail})")
        if status == 429 or status >= 500:
            raise _ServerError(status, detail)
        raise SkynetError(f"{what}: Skynet answered HTTP {status}{detail}")

    def _retrying(self, fn: Callable[[], _T], what: str) -> _T:
        """Run ``fn`` with retries on transport errors, 5xx/429 and truncation; map failures."""
        retryer = Retrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential(multiplier=self._backoff_s, max=MAX_BACKOFF_S),
            retry=retry_if_exception(
                lambda e: isinstance(e, httpx.TransportError | _ServerError | Truncated)
            ),
            before_sleep=lambda state: self._log_retry(state, what),
            sleep=self._sleep,
            reraise=True,
        )
        tries = f"after {self._max_attempts} attempt(s)"
        try:
            return retryer(fn)
        except httpx.TransportError as exc:
            msg = f"{what}: cannot reach Skynet at {self.api_url} ({type(exc).__name__}: {exc})"
            raise SkynetUnavailable(f"{msg} {tries}".replace(self._secret or "\0", "***")) from None
        except _ServerError as exc:
            raise SkynetUnavailable(
                f"{what}: Skynet answered {exc} {tries}; it may be down, soapd will try again"
            ) from None
        except Truncated as exc:
            raise SkynetBadAnswer(f"{what}: {exc} {tries}; soapd will try again") from None

    def _log_retry(self, state: RetryCallState, what: str) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        reason = exc if isinstance(exc, _ServerError | Truncated) else type(exc).__name__
        logger.warning(
            "%s failed (%s); attempt %d of %d, retrying in %.1f s",
            what,
            reason,
            state.attempt_number,
            self._max_attempts,
            wait,
        )

    def _download_once(
        self, exp: Exposure, dest_dir: Path, params: Mapping[str, str], deadline_s: float
    ) -> DownloadedFile:
        """One download attempt (see :func:`soapd.skynet.download.save_response`)."""
        if time.monotonic() > deadline_s:
            raise TooSlow("no attempt left before the deadline: received 0 of ?")
        with self._http.stream(
            "GET", "/download/fits", params=dict(params), timeout=self._download_timeout
        ) as response:
            if response.status_code != 200:
                response.read()
                self._check_status(response, f"download of exposure {exp.exp_id}")
            return save_response(
                response,
                exp.exp_id,
                dest_dir,
                reduced=self._reduced,
                max_bytes=self._max_bytes,
                deadline_s=deadline_s,
                stop=self._closing,
                checker=self._checker,
            )
