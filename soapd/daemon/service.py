"""The composition root: build config, store, archive client, worker pool, scheduler, watcher.

Runtime (DESIGN §4.3): the **main thread** supervises (signals, READY,
watchdog pings only while :class:`Health` says the worker is alive); an
APScheduler ``BackgroundScheduler`` with a **single-thread executor** runs every
job that writes frames and measurements; a second single-thread executor runs
only the alerts outbox sender, with its own connection, so that a notifier that
hangs never delays the storing of frames (a change from DESIGN §4.3, where one
thread did both); the inbox watcher thread only enqueues paths and wakes
``drain_inbox``; pixel work runs in the process pool (or on dask workers:
``service.executor``). SIGTERM/SIGINT stop the
service cleanly (frames already running finish, frames not started are put
back); SIGHUP re-reads the config's targets and observations.

It holds the state folder's lock (:class:`soapd.store.lock.StateLock`): a second
writer fails at once naming its pid. Every job runs at start, then at its interval;
a database deleted or replaced under it stops it (exit 1).
:meth:`Service.run_until_idle` runs the same jobs in the calling thread, without
a scheduler, until nothing is left to do (``soapd run --until-idle``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from soapd import __version__
from soapd.config import Config, Token, load_config
from soapd.daemon import jobs
from soapd.daemon.context import (
    JobContext,
    build_notifiers,
    catalog_service,
    skynet_factory,
    status_line,
)
from soapd.daemon.executor import make_pool
from soapd.daemon.health import Health, Waker
from soapd.daemon.systemd import SystemdNotifier
from soapd.errors import ConfigError, SoapdError
from soapd.logs import RepeatedErrors
from soapd.skynet.source import ExposureSource
from soapd.store import Store
from soapd.store.lock import StateLock

if TYPE_CHECKING:
    from soapd.alerts.notifiers import Notifier

__all__ = ["Service"]

logger = logging.getLogger(__name__)

#: Seconds the supervisor waits between two checks when systemd asks for no watchdog.
SUPERVISE_S = 5.0
#: Seconds SIGTERM waits for frames already running in a worker.
STOP_GRACE_S = 120.0


class Service:
    """soapd as a service: build with a config, then :meth:`run` or :meth:`run_until_idle`."""

    def __init__(
        self,
        config: Config,
        *,
        source_factory: Callable[[Token], ExposureSource] | None = None,
        read_token: Callable[[], Token | None] | None = None,
        notifiers: list[Notifier] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare (nothing starts yet). ``source_factory`` defaults to the Skynet client."""
        self.config = config
        self._source_factory = source_factory or skynet_factory(config)
        self._read_token = read_token
        self._notifiers = notifiers
        self.sd = SystemdNotifier(env)
        self.health = Health(config.service.stall_timeout_s)
        self.stop_event = threading.Event()
        self._nudge = threading.Event()
        self.waker = Waker(self._nudge.set)
        self._reload_requested = False
        self.ctx: JobContext | None = None
        self.scheduler: Any = None
        self.watcher: Any = None
        self._alerts_store: Store | None = None
        self.lock = StateLock(config.paths.state_dir, owner="soapd run")
        self.errors = RepeatedErrors(logger)
        self.exit_code = 0
        self._db_identity: tuple[int, int] | None = None

    # --------------------------------------------------------------- start-up
    def _open(self) -> JobContext:
        """Take the state lock, open the store (migrations), sync the config, start the pool.

        Raise StateLocked (naming the other process) when another soapd already
        writes this state folder.
        """
        cfg = self.config
        for folder in (cfg.paths.state_dir, cfg.paths.frames_dir, cfg.paths.tables_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            return self._open_locked()
        except BaseException:
            self.lock.release()
            raise

    def _open_locked(self) -> JobContext:
        cfg = self.config
        notifiers = self._notifiers if self._notifiers is not None else build_notifiers(cfg)
        store = Store(cfg.paths.db_path)
        self._db_identity = _file_identity(cfg.paths.db_path)
        try:
            store.sync_config_targets(cfg.targets)
            store.sync_config_observations(cfg.skynet.observations)
            stuck = store.reset_stuck_processing(max_tries=cfg.service.max_crash_starts)
            if stuck:
                logger.warning("%d frame(s) interrupted while processing were put back", stuck)
            pool = make_pool(
                cfg,
                catalog_service(cfg),
                on_event=lambda: self.waker.wake("process_pending"),
            )
            try:
                pool.start()
            except BaseException:
                pool.shutdown()
                raise
        except BaseException:
            store.close()
            raise
        self.ctx = JobContext(
            config=cfg,
            store=store,
            pool=pool,
            wake=self.waker.wake,
            source_factory=self._source_factory,
            read_token=self._read_token,
            notifiers=notifiers,
            errors=self.errors,
        )
        store.set_status(
            started_utc=store.now(),
            pid=os.getpid(),
            soapd_version=__version__,
            config_hash=cfg.fingerprint(),
            stopped_utc=None,
            job_errors=None,
        )
        logger.info(
            "soapd %s starting: state %s, %d worker(s), %d observation(s), %d telescope(s)",
            __version__,
            cfg.paths.state_dir,
            pool.n_workers,
            len(store.followed_observations()),
            len(cfg.skynet.telescopes),
        )
        return self.ctx

    def _start_watcher(self, ctx: JobContext, *, watch: bool) -> None:
        """Queue the inbox files that arrived while soapd was down; watch for new ones."""
        inbox = self.config.paths.inbox_dir
        if inbox is None:
            return
        from soapd.ingest.inbox import InboxWatcher

        self.watcher = InboxWatcher(inbox, ctx.inbox, lambda: self.waker.wake("drain_inbox"))
        if watch:
            self.watcher.start()
        self.watcher.scan()

    def _build_scheduler(self, ctx: JobContext) -> Any:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(
            # "default" runs every job that writes frames and measurements; "alerts"
            # runs only the outbox sender, on its own connection, so that a notifier
            # that times out never delays the storing of frames.
            executors={
                "default": ThreadPoolExecutor(max_workers=1),
                "alerts": ThreadPoolExecutor(max_workers=1),
            },
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.waker.attach(scheduler)
        sk, service = self.config.skynet, self.config.service
        intervals = {
            "poll_skynet": sk.poll_interval_s,
            "download_frames": service.process_interval_s,
            "drain_inbox": service.inbox_interval_s,
            "process_pending": service.process_interval_s,
            "flush_alerts": service.alerts_interval_s,
            "reconcile": sk.reconcile_interval_s,
            "heartbeat": service.heartbeat_interval_s,
            "prune": jobs.PRUNE_INTERVAL_S,
        }
        # Every job runs at start, then at its interval (next_run_time=None would pause it).
        now = datetime.now(UTC)
        for job_id, every_s in intervals.items():
            fn = self._flush_alerts if job_id == "flush_alerts" else getattr(jobs, job_id)
            scheduler.add_job(
                self._job(job_id, fn, ctx),
                "interval",
                executor="alerts" if job_id == "flush_alerts" else "default",
                seconds=every_s,
                id=job_id,
                name=job_id,
                replace_existing=True,
                next_run_time=now,
            )
        return scheduler

    def _flush_alerts(self, ctx: JobContext) -> None:
        """Drain the outbox on the alerts thread, through that thread's own connection."""
        jobs.flush_alerts(ctx, self._alerts_store)

    def _job(
        self, job_id: str, fn: Callable[[JobContext], Any], ctx: JobContext
    ) -> Callable[[], None]:
        """Wrap a job: health bookkeeping and the unit-of-work boundary (log, never raise)."""

        def run() -> None:
            self.health.started(job_id)
            try:
                fn(ctx)
            except Exception as exc:  # unit-of-work boundary: one job run; the scheduler goes on
                expected = isinstance(exc, SoapdError | OSError)
                text = f"job {job_id} failed: {type(exc).__name__}: {exc}"
                if self.errors.failed(job_id, text, exc=exc, traceback=not expected):
                    self._save_job_errors(ctx, job_id)
            else:
                if self.errors.succeeded(job_id):
                    self._save_job_errors(ctx, job_id)
            finally:
                self.health.finished(job_id)

        return run

    def _save_job_errors(self, ctx: JobContext, job_id: str) -> None:
        """Write the job errors for ``soapd status`` (the alerts thread's: at the heartbeat)."""
        if job_id == "flush_alerts":
            return
        try:
            jobs.save_job_errors(ctx)
        except Exception as exc:  # the database may be what fails (disk full)
            logger.debug("job errors not saved: %s", exc)

    # ------------------------------------------------------------------ running
    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`stop`). Return the exit code.

        Raise StateLocked when another process already writes this state folder.
        """
        self._install_signals()
        ctx = self._open()
        try:
            # Now: opened after the database file was deleted, it would create an empty one.
            self._alerts_store = Store(self.config.paths.db_path, migrate=False)
            self.scheduler = self._build_scheduler(ctx)
            self._start_watcher(ctx, watch=True)
            self.scheduler.start()
            self.sd.ready(f"soapd {__version__}: running")
            logger.info("soapd ready")
            self._supervise(ctx)
        finally:
            self._shutdown(ctx)
        return self.exit_code

    def _supervise(self, ctx: JobContext) -> None:
        """Loop on the main thread: wakes, watchdog pings while healthy, SIGHUP reloads."""
        every_s = min(self.sd.watchdog_interval_s or SUPERVISE_S, SUPERVISE_S)
        last_problem: str | None = None
        next_check = 0.0
        while not self.stop_event.is_set():
            self._nudge.wait(every_s)
            self._nudge.clear()
            if self.stop_event.is_set():
                break
            self.waker.flush()
            if self._reload_requested:
                self._reload_requested = False
                self.scheduler.add_job(
                    self._job("reload", self._reload, ctx), id="reload", replace_existing=True
                )
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + every_s
            if not self._database_is_ours():
                break
            problem = self.health.problem(ctx.pool.oldest_age_s())
            if problem is None:
                self.sd.watchdog()
            elif problem != last_problem:
                logger.error("worker looks hung (%s); no watchdog ping until it recovers", problem)
            last_problem = problem
            self.sd.status(status_line(ctx, problem))

    def _database_is_ours(self) -> bool:
        """Check that the database file is still the one opened; if not, log and stop (exit 1)."""
        db = self.config.paths.db_path
        now = _file_identity(db)
        if now == self._db_identity:
            return True
        what = "deleted" if now is None else "replaced by another file"
        logger.critical(
            "the database %s was %s while soapd was running; stopping: the work and alerts "
            "recorded from now on would be lost. Restore the file or start soapd again",
            db,
            what,
        )
        self.exit_code = 1
        self.stop()
        return False

    def _reload(self, ctx: JobContext) -> None:
        """Re-read the config file's targets and observations (SIGHUP)."""
        if self.config.source is None:
            logger.info("SIGHUP: no config file to reload")
            return
        try:
            fresh = load_config(self.config.source)
        except ConfigError as exc:
            logger.error("SIGHUP: config not reloaded: %s", exc)  # noqa: TRY400
            return
        ctx.store.sync_config_targets(fresh.targets)
        ctx.store.sync_config_observations(fresh.skynet.observations)
        logger.info(
            "SIGHUP: %d target(s), %d observation(s) from %s",
            len(fresh.targets),
            len(fresh.skynet.observations),
            self.config.source,
        )

    def run_until_idle(self, *, poll: bool = True) -> int:
        """Poll once, download, register and process until nothing is left; send held alerts.

        Return 0, or 1 when followed Skynet observations or telescopes could not be
        read because the token is missing or was refused (inbox frames still count).
        """
        self._install_signals()
        ctx = self._open()
        try:
            self._start_watcher(ctx, watch=False)
            if poll:
                jobs.poll_skynet(ctx)
            downloads = True
            while not self.stop_event.is_set():
                jobs.drain_inbox(ctx)
                if downloads:
                    postponed = ctx.counters["postponed"]
                    jobs.download_frames(ctx, limit=ctx.pool.capacity or 1)
                    downloads = ctx.counters["postponed"] == postponed  # archive down: next run
                jobs.process_pending(ctx, wait_s=0.5)
                if self._idle(ctx, downloads=downloads):
                    break
            jobs.flush_alerts(ctx, final=True)
            jobs.heartbeat(ctx)
            token_failed = ctx.source is None and ctx.auth_blocked_until > 0
        finally:
            self._shutdown(ctx)
        if token_failed:
            logger.error(
                "exit code 1: no frame was fetched from Skynet because its token is missing or "
                "was refused (see the message above)"
            )
            return 1
        return 0

    @staticmethod
    def _idle(ctx: JobContext, *, downloads: bool) -> bool:
        waiting = downloads and ctx.store.frames_to_download(1) and ctx.get_source() is not None
        return not (
            ctx.pool.inflight
            or ctx.pool.stacks_inflight
            or ctx.stack_queue
            or not ctx.stacks_swept
            or ctx.unapplied
            or ctx.started
            or ctx.store.pending_frames(1)
            or waiting
            or not ctx.inbox.empty()
        )

    # ----------------------------------------------------------------- stopping
    def stop(self) -> None:
        """Ask the service to stop (thread-safe; what SIGTERM does)."""
        self.stop_event.set()
        self._nudge.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_stop(signum: int, _frame: FrameType | None) -> None:
            logger.info("%s received: stopping", signal.Signals(signum).name)
            self.stop()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload_requested = True
            self._nudge.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _shutdown(self, ctx: JobContext) -> None:
        """Send STOPPING, stop the watcher, drain the scheduler, settle frames in flight, close."""
        self.sd.stopping()
        logger.info("soapd stopping")
        if self.watcher is not None:
            self.watcher.stop()
        self.waker.close()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        jobs.settle(ctx, grace_s=STOP_GRACE_S)
        if self._alerts_store is not None:
            self._alerts_store.close()
            self._alerts_store = None
        ctx.pool.shutdown()
        if ctx.source is not None:
            ctx.source.close()  # also ends downloads in progress
        if ctx.fetcher is not None:
            ctx.fetcher.close()
        with contextlib.suppress(Exception):  # the database may be gone (deleted, disk full)
            jobs.save_job_errors(ctx)
            ctx.store.set_status(stopped_utc=ctx.store.now())
        ctx.store.close()
        self.lock.release()
        self.sd.close()
        logger.info("soapd stopped")


def _file_identity(path: Path) -> tuple[int, int] | None:
    """Return (device, inode) of ``path``, or None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)
