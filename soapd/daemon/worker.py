"""The worker side of the pool: the worker loop, its death with the daemon, the fork server.

A worker (:func:`worker_main`) is forked from multiprocessing's fork server,
which imports soapd once (:data:`PRELOAD`). It keeps the default SIGTERM action
and ignores SIGINT, dies with the daemon (``PR_SET_PDEATHSIG`` on Linux: its
parent is the fork server, which exits when the daemon does; elsewhere a thread
watching the daemon's sentinel), says "ready", and then for each task says
"start", runs it and sends the outcome, over its own pipe (a frame, or a stacked
epoch: :class:`~soapd.stacks.plan.StackTask`). The fork server is
started without the Skynet token variables (:data:`SECRET_VARS`) in its
environment, so no worker has them.
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
from soapd.fileio import pid_alive
from soapd.frames import Processor
from soapd.logs import setup_logging
from soapd.stacks.plan import StackTask, run_stack_task

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from soapd.frames import FrameTask
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = [
    "PRELOAD",
    "SECRET_VARS",
    "THREAD_VARS",
    "PoolCounts",
    "WorkerProc",
    "exit_text",
    "forkserver_context",
    "spawn_worker",
    "start_forkserver",
    "stop_workers",
    "worker_main",
]

#: Modules the fork server imports before forking workers.
PRELOAD = (
    "soapd.daemon.pool",
    "soapd.frames",
    "soapd.pipeline",
    "soapd.output.export",
    "soapd.catalogs",
    "soapd.stacks.plan",
)

#: Environment variables that cap math-library threads in the workers.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: Environment variables never handed to the fork server (and so to no worker).
SECRET_VARS = ("SOAPD_SKYNET_TOKEN", "SKYNET_API_TOKEN")

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


#: Serialises starting the fork server (it briefly changes this process's environment).
_FORKSERVER_LOCK = threading.Lock()


def start_forkserver() -> None:
    """Start multiprocessing's fork server, if it is not running, without the current folder.

    The fork server is started as ``python -c ...``, so its ``sys.path`` begins
    with the current folder, and Pythons without the fix of CPython gh-117378
    (every 3.11, the 3.12 and 3.13 releases before it was backported) ignore the
    ``sys.path`` the parent hands it. A folder named
    ``soapd`` there, even an empty one, is then imported as a namespace package
    before an editable install's finder (a meta-path finder asked after the path
    finder) is consulted; the preload's ImportError is swallowed, and every
    worker forked from the server inherits that broken ``soapd`` module.
    ``PYTHONSAFEPATH=1`` (the ``-P`` flag) keeps the folder off the server's
    ``sys.path``; workers still get this process's ``sys.path`` from
    multiprocessing's preparation data. The variable is set only while the
    server starts, so other children of this process do not inherit it. The
    Skynet token variables (:data:`SECRET_VARS`) are kept out of its environment,
    and so out of every worker's. When the server runs already, the environment
    is not touched (another thread may be reading the token from it).
    """
    from multiprocessing import forkserver

    names = ("PYTHONSAFEPATH", *SECRET_VARS)
    with _FORKSERVER_LOCK:
        pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
        if pid is not None and pid_alive(pid):
            return
        before = {name: os.environ.get(name) for name in names}
        for name in SECRET_VARS:
            os.environ.pop(name, None)
        os.environ["PYTHONSAFEPATH"] = "1"
        try:
            forkserver.ensure_running()
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


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


def forkserver_context() -> Any:
    """Return the forkserver context, its server started with soapd preloaded.

    The fork server imports soapd once, now; every worker (also those that replace
    a retired or dead one later) is forked from it, so all run the code the daemon
    started with even if the installed files change underneath. One math-library
    thread per worker: the pool already uses every core, and BLAS/OpenMP threads on
    top only oversubscribe them (the fork server inherits :data:`THREAD_VARS`; an
    operator's values win).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    for name in THREAD_VARS:
        os.environ.setdefault(name, "1")
    start_forkserver()
    return context


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
