"""What the daemon's jobs share (:class:`JobContext`) and what the service builds for it.

The context is built by :class:`soapd.daemon.service.Service` and touched only
by the scheduler thread (the alerts thread reads its config and notifiers).
"""

from __future__ import annotations

import logging
import queue
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from soapd.config import Config, Token, read_token
from soapd.daemon.executor import FramePool
from soapd.errors import SkynetAuthError, SoapdError
from soapd.frames import TaskOutcome
from soapd.ingest.retry import Backoff
from soapd.logs import RepeatedErrors
from soapd.skynet.fetcher import Fetcher, FetchResult
from soapd.skynet.source import ExposureSource
from soapd.stacks.plan import StackTask
from soapd.store import Store

if TYPE_CHECKING:
    from soapd.alerts.notifiers import Notifier
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = ["JobContext", "build_notifiers", "catalog_service", "skynet_factory", "status_line"]

logger = logging.getLogger("soapd.daemon.jobs")


@dataclass
class JobContext:
    """Everything the jobs share. Built by the service; touched only by the scheduler thread.

    ``source_factory`` builds the archive client from a token (tests pass one
    that talks to the fake server); ``wake(job_id)`` asks the scheduler to run a
    job now; ``inbox`` is filled by the watcher thread; ``fetcher`` runs the
    downloads on their own threads (made by ``download_frames``); ``inbox_retry``
    holds inbox files to copy again later (a full disk).
    """

    config: Config
    store: Store
    pool: FramePool
    wake: Callable[[str], None]
    source_factory: Callable[[Token], ExposureSource] | None = None
    read_token: Callable[[], Token | None] | None = None
    notifiers: list[Notifier] = field(default_factory=list)
    inbox: queue.Queue[Path] = field(default_factory=queue.Queue)
    source: ExposureSource | None = None
    auth_blocked_until: float = 0.0
    counters: Counter[str] = field(default_factory=Counter)
    fetcher: Fetcher | None = None
    #: Finished downloads held back until every earlier frame still downloading has ended,
    #: so that frames reach 'downloaded' (and so processing and alerts) in ledger order.
    download_held: list[FetchResult] = field(default_factory=list)
    inbox_retry: Backoff[Path] = field(default_factory=lambda: Backoff(base_s=5.0, cap_s=600.0))
    #: Stacked epochs waiting for a worker, by (target name, epoch key); the newest plan wins.
    stack_queue: dict[tuple[str, str], StackTask] = field(default_factory=dict)
    #: Epochs built this run with nothing to stack (considered frames, config hash).
    stack_empty: dict[tuple[str, str], tuple[frozenset[int], str]] = field(default_factory=dict)
    #: Whether the start-up sweep for out-of-date stacks has run.
    stacks_swept: bool = False
    #: Frames a worker started whose try is not written yet (the database was locked).
    started: deque[int] = field(default_factory=deque)
    #: Worker outcomes collected but not yet written (the database was locked), in order.
    unapplied: deque[TaskOutcome] = field(default_factory=deque)
    #: Job errors, one line per repeated error (set by the service).
    errors: RepeatedErrors | None = None

    @property
    def max_tries(self) -> int:
        """Download or processing attempts per frame (``service.max_tries``)."""
        return self.config.service.max_tries

    def get_source(self) -> ExposureSource | None:
        """Return the archive client, (re)building it from a freshly read token when needed.

        While the token is missing or was refused, return None until
        ``skynet.auth_retry_interval_s`` has passed, so the API is not hammered.
        """
        if self.source is not None:
            return self.source
        if self.source_factory is None or time.monotonic() < self.auth_blocked_until:
            return None
        reader = self.read_token or (lambda: read_token(self.config.skynet))
        try:
            token = reader()
        except SoapdError as exc:
            token = None
            logger.error("cannot read the Skynet token: %s", exc)  # noqa: TRY400
        if not token:
            self._block_auth(
                "no Skynet API token: put it in $CREDENTIALS_DIRECTORY/skynet-token "
                "(systemd LoadCredential=), $SOAPD_SKYNET_TOKEN or skynet.token_file"
            )
            return None
        self.source = self.source_factory(token)
        return self.source

    def _block_auth(self, message: str) -> None:
        wait_s = self.config.skynet.auth_retry_interval_s
        self.auth_blocked_until = time.monotonic() + wait_s
        logger.error("%s; polling paused, next try in %.0f s", message, wait_s)
        self.store.set_status(auth_error=message, auth_error_utc=self.store.now())
        if self.source is not None:
            self.source.close()
            self.source = None

    def auth_failed(self, exc: SkynetAuthError) -> None:
        """Say plainly that the token was refused and pause polling for the retry interval."""
        self._block_auth(
            f"Skynet refused the API token ({exc}); replace the token (the credential file, "
            "$SOAPD_SKYNET_TOKEN or skynet.token_file) - it is re-read at the next try"
        )


def status_line(ctx: JobContext, problem: str | None = None) -> str:
    """Return the one-line status shown by ``systemctl status`` (no database access)."""
    c = ctx.counters
    text = (
        f"processed {c['processed']}, failed {c['failed']}, rejected {c['rejected']}, "
        f"in flight {len(ctx.pool.inflight)}"
    )
    if ctx.source is None and ctx.auth_blocked_until:
        text += "; Skynet token missing or refused"
    if problem:
        text += f"; HUNG: {problem}"
    return text


def skynet_factory(config: Config) -> Callable[[Token], ExposureSource]:
    """Return a function that builds the Skynet client of ``config`` from a token."""

    def build(token: Token) -> ExposureSource:
        from soapd.skynet.client import SkynetClient

        return SkynetClient.from_config(config.skynet, token, frame=config.frame)

    return build


def catalog_service(config: Config) -> ReferenceProvider | None:
    """Return the picklable catalog service handed to the workers (None when calibration is off)."""
    from soapd.catalogs import CatalogService

    logging.getLogger("astroquery").setLevel(logging.WARNING)
    return CatalogService.if_enabled(config)


def build_notifiers(config: Config) -> list[Notifier]:
    """Return the configured notifiers."""
    from soapd.alerts.notifiers import build_notifiers

    return list(build_notifiers(config.notifiers))
