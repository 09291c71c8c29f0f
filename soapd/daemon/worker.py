"""The worker side of the pool: the worker loop and its death with the daemon.

A worker (:func:`worker_main`) is forked from multiprocessing's fork server
(:mod:`soapd.daemon.forkserver`), which imports soapd once. It keeps the default
SIGTERM action and ignores SIGINT, dies with the daemon (``PR_SET_PDEATHSIG`` on
Linux: its parent is the fork server, which exits when the daemon does;
elsewhere a thread watching the daemon's sentinel), says "ready", and then for
each task says "start", runs it and sends the outcome, over its own pipe (a
frame, or a stacked epoch: :class:`~soapd.stacks.plan.StackTask`). The fork
server is started without the Skynet token variables in its environment, so no
worker has them.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from soapd.config import Config
from soapd.daemon.forkserver import start_forkserver
from soapd.frames import Processor
from soapd.logs import setup_logging
from soapd.stacks.plan import StackTask, run_stack_task

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from soapd.frames import FrameTask
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = [
    "PoolCounts",
    "WorkerProc",
    "exit_text",
    "spawn_worker",
    "stop_workers",
    "worker_main",
]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Make this worker die when the daemon does (PR_SET_PDEATHSIG, or a watching thread)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the daemon's end of the sentinel pipe closes
        os._exit(1)

    threading.Thread(target=watch, name="soapd-parent-watch", daemon=True).start()


def worker_main(
    conn: Connection,
    config: Config,
    catalogs: ReferenceProvider | None,
    max_tasks: int,
    runner: Processor,
) -> None:
    """Run a worker process: say ready, then run tasks from ``conn`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    setup_logging(config.logging.level, config.logging.style)
    pid = os.getpid()
    try:
        conn.send(("ready", pid))
        for _ in range(max_tasks):
            task = conn.recv()
            if task is None:
                return
            if isinstance(task, StackTask):
                conn.send(("start", None, pid))
                conn.send(("done", run_stack_task(task, config)))
                continue
            conn.send(("start", task.frame_id, pid))
            conn.send(("done", runner(task, config, catalogs)))
        conn.send(("retire", pid))
    except (EOFError, OSError):  # the daemon is gone
        return


def exit_text(code: int | None) -> str:
    """Describe a process exit code: 'killed by SIGKILL', 'exit code 1'."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass(slots=True, eq=False)
class WorkerProc:
    """The daemon's handle on one worker process: its pipe and the task it holds."""

    process: BaseProcess
    conn: Connection
    pid: int
    ready: bool = False
    task: FrameTask | StackTask | None = None
    started_s: float | None = None
    stalled_s: float | None = None
    retiring: bool = False
    reaped: bool = False


@dataclass(slots=True)
class PoolCounts:
    """Events since the pool started (for logs and tests)."""

    deaths: int = 0
    stalls: int = 0
    respawns: int = 0
    requeued_unstarted: int = 0
    retried: int = 0
    retired: int = 0


def spawn_worker(context: Any, args: tuple[Any, ...]) -> WorkerProc:
    """Start one worker process of ``context`` (forkserver) running :func:`worker_main`."""
    start_forkserver()  # restarts the server if it died
    parent, child = context.Pipe()
    process = context.Process(
        target=worker_main, args=(child, *args), name="soapd-worker", daemon=True
    )
    process.start()
    child.close()
    return WorkerProc(process, parent, process.pid or 0)


def stop_workers(workers: list[WorkerProc], *, grace_s: float) -> None:
    """Wait ``grace_s`` for ``workers`` to exit, then SIGTERM them, then SIGKILL; close pipes."""
    deadline = time.monotonic() + grace_s
    for w in workers:
        w.process.join(timeout=max(0.0, deadline - time.monotonic()))
    for w in workers:
        if w.process.is_alive():
            w.process.terminate()
    for w in workers:
        w.process.join(timeout=grace_s)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        with contextlib.suppress(OSError):
            w.conn.close()
