"""Downloads off the scheduler thread: each on its own short-lived thread, results by value.

The daemon's scheduler thread must never wait on the network: a transfer
drip-fed just under the read timeout once held the only job thread for 150 s
while the inbox waited. :class:`Fetcher` runs each download
(:meth:`ExposureSource.download`) on a thread of its own, at most ``n_threads``
at a time, and hands back :class:`FetchResult` values; the scheduler thread
records them in the ledger (:func:`soapd.frames.record_download`), so every
database write stays on that one thread. ``on_done`` is called (from the
download thread) when a result is ready, to wake the job that collects it.

The fetcher also keeps the retry schedule of transient download faults
(:class:`~soapd.ingest.retry.Backoff` keyed by frame id): a frame whose
download came back as a page, truncated, unreadable or too slow is not
submitted again until its wait is over. Threads end with their download; a
download in progress ends at the client's deadline, or at once when the client
is closed (:meth:`SkynetClient.close`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soapd.ingest.retry import Backoff
from soapd.skynet.records import Exposure
from soapd.skynet.source import DownloadedFile, ExposureSource

__all__ = ["FetchResult", "Fetcher"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """One finished download: the file, or the exception it raised; and how long it took."""

    frame_id: int
    exp_id: int
    file: DownloadedFile | None = None
    error: BaseException | None = None
    duration_s: float = 0.0


class Fetcher:
    """Run downloads on their own threads, ``n_threads`` at most; collect their results.

    Not thread-safe except for what the download threads themselves call: one
    thread (the scheduler's) submits, collects and closes. ``backoff`` is the
    retry schedule of transient faults (frame id -> when it may be tried again).
    """

    def __init__(
        self,
        n_threads: int,
        *,
        backoff: Backoff[int],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.n_threads = max(1, n_threads)
        self.backoff = backoff
        self._on_done = on_done
        self._results: queue.Queue[FetchResult] = queue.Queue()
        self._threads: dict[int, threading.Thread] = {}

    @property
    def inflight(self) -> set[int]:
        """Frame ids whose download was submitted and not yet collected."""
        return set(self._threads)

    @property
    def capacity(self) -> int:
        """How many more downloads may start now."""
        return max(0, self.n_threads - len(self._threads))

    def wanted(self, frame_id: int) -> bool:
        """Return True when ``frame_id`` may be submitted now (not running, not waiting)."""
        return frame_id not in self._threads and self.backoff.due(frame_id)

    def submit(self, source: ExposureSource, exp: Exposure, frame_id: int, dest: Path) -> bool:
        """Start downloading ``exp`` for frame ``frame_id`` into ``dest``; False if not now."""
        if not self.capacity or not self.wanted(frame_id):
            return False
        thread = threading.Thread(
            target=self._run,
            args=(source, exp, frame_id, dest),
            name=f"soapd-download-{exp.exp_id}",
            daemon=False,
        )
        self._threads[frame_id] = thread
        thread.start()
        return True

    def _run(self, source: ExposureSource, exp: Exposure, frame_id: int, dest: Path) -> None:
        start = time.monotonic()
        try:
            got = source.download(exp, dest)
        except BaseException as exc:  # unit-of-work boundary: the scheduler thread judges it
            result = FetchResult(
                frame_id=frame_id,
                exp_id=exp.exp_id,
                error=exc,
                duration_s=time.monotonic() - start,
            )
        else:
            result = FetchResult(
                frame_id=frame_id,
                exp_id=exp.exp_id,
                file=got,
                duration_s=time.monotonic() - start,
            )
        self._results.put(result)
        if self._on_done is not None:
            try:
                self._on_done()
            except Exception:  # the wake-up is a courtesy; the periodic run collects anyway
                logger.exception("download wake-up callback failed")

    def collect(self, timeout_s: float = 0.0) -> list[FetchResult]:
        """Return the finished downloads; with ``timeout_s``, wait that long for the first one."""
        out: list[FetchResult] = []
        if timeout_s > 0 and self._threads:
            with contextlib.suppress(queue.Empty):
                out.append(self._results.get(timeout=timeout_s))
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                break
        for result in out:
            thread = self._threads.pop(result.frame_id, None)
            if thread is not None:
                thread.join()
        return out

    def wait(self, timeout_s: float) -> list[FetchResult]:
        """Collect until nothing is in flight or ``timeout_s`` has passed; return the results."""
        deadline = time.monotonic() + timeout_s
        out: list[FetchResult] = []
        while self._threads and (left := deadline - time.monotonic()) > 0:
            out += self.collect(timeout_s=min(left, 1.0))
        return out

    def close(self, timeout_s: float = 30.0) -> list[FetchResult]:
        """Wait up to ``timeout_s`` for downloads in progress (closing the client ends them)."""
        out = self.wait(timeout_s)
        if self._threads:
            logger.warning(
                "%d download(s) still running at exit; their frames are fetched again later",
                len(self._threads),
            )
        return out
