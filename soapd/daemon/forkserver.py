"""multiprocessing's fork server for soapd's workers, started without importing soapd's science.

Kept apart from :mod:`soapd.daemon.worker` so that a command can start the fork
server first thing (:func:`start_early`): the server then imports soapd's science
stack (:data:`PRELOAD`) on one core while the command imports its own modules on
the other, instead of one after the other. Only the standard library and
:mod:`soapd.fileio` are imported here.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from typing import Any

from soapd.fileio import pid_alive

__all__ = [
    "PRELOAD",
    "SECRET_VARS",
    "THREAD_VARS",
    "forkserver_context",
    "start_early",
    "start_forkserver",
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


def start_early(workers: int) -> None:
    """Start the fork server now when ``workers`` > 1 (a command about to use a pool).

    Called before a command's own heavy imports; the pool's later
    :func:`forkserver_context` finds the server running. Failures are left to the
    pool, which reports them when it starts.
    """
    if workers > 1:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            forkserver_context()
