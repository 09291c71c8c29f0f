"""The checker process: frame files are decompressed and read there, never in the daemon.

:class:`FileChecker` keeps one child process (:func:`soapd.ingest.unpack.main`)
and hands it one request at a time over a pipe (JSON lines): check a FITS file
in place, or decompress a gzip/bzip2 file into a ``.part`` file and check that.
What a hostile file can do is therefore limited to the child: a decompression
bomb stops at ``[frame] max_decompressed_mb`` (stream decompression, a
:class:`~soapd.errors.FrameRejected` with the reason), a pathological file that
takes too long is killed after ``timeout_s``, and the child's address space is
capped as a backstop. The daemon's own memory does not move.

The child is started on first use, replaced when it dies or after
``max_requests`` requests, gets an environment without credentials (no
``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*`` or ``CREDENTIALS_DIRECTORY``), and
exits when its pipe closes or within a second of its parent's death. Calls
are serialised by a lock, so download threads and the scheduler thread may
share one checker (:func:`shared_checker`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soapd
from soapd.errors import FrameRejected, FrameUnreadable
from soapd.ingest.fitscheck import FitsCheck

__all__ = ["CheckedFile", "FileChecker", "mb_to_bytes", "shared_checker"]

logger = logging.getLogger(__name__)

#: Seconds one request may take before the child is killed (a pathological file).
TIMEOUT_S = 300.0
#: Requests one child serves before it is replaced (bounds memory creep).
MAX_REQUESTS = 500
#: What the child runs (``-c``, not ``-m``: the package imports the module first).
_CHILD_CODE = "import sys; from soapd.ingest.unpack import main; sys.exit(main())"
_SECRET_MARKS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIALS_DIRECTORY")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def mb_to_bytes(mb: float) -> int:
    """Return ``mb`` mebibytes (the unit of ``max_decompressed_mb``) in bytes."""
    return int(mb * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class CheckedFile:
    """What the checker found: the FITS check, and for an unpacked file its SHA-256 and size."""

    check: FitsCheck
    sha256: str | None = None
    size_bytes: int | None = None


def _child_env() -> dict[str, str]:
    """Return this environment minus credentials, with soapd importable and one math thread."""
    env = {k: v for k, v in os.environ.items() if not any(m in k.upper() for m in _SECRET_MARKS)}
    root = str(Path(soapd.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    for name in _THREAD_VARS:
        env.setdefault(name, "1")
    return env


class FileChecker:
    """A child process that checks and decompresses frame files; thread-safe.

    ``timeout_s`` bounds one request; ``max_requests`` requests are served by
    one child before it is replaced. :meth:`close` ends the child.
    """

    def __init__(self, *, timeout_s: float = TIMEOUT_S, max_requests: int = MAX_REQUESTS) -> None:
        self.timeout_s = timeout_s
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = 0
        #: Child processes started so far (tests read it).
        self.started = 0

    # ------------------------------------------------------------------ requests
    def check(self, path: Path, *, max_bytes: int) -> FitsCheck:
        """Check the FITS file ``path`` in place (headers' declared size, then readability).

        Raise FrameUnreadable (not FITS, truncated, compressed data inside),
        FrameRejected (over ``max_bytes``, or the child died or timed out on it).
        """
        got = self._ask({"op": "check", "src": str(path), "max_bytes": max_bytes}, path)
        return got.check

    def unpack(self, src: Path, dest: Path, *, max_bytes: int) -> CheckedFile:
        """Decompress the gzip/bzip2 file ``src`` into ``dest`` and check it; return the result.

        ``dest`` is complete and fsynced on return, removed on error. Raise
        FrameRejected (decompresses past ``max_bytes``, or the child failed on
        it), FrameUnreadable (corrupt, or not FITS inside), OSError (I/O, e.g. ENOSPC).
        """
        request = {"op": "unpack", "src": str(src), "dest": str(dest), "max_bytes": max_bytes}
        try:
            return self._ask(request, src)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _ask(self, request: dict[str, Any], path: Path) -> CheckedFile:
        with self._lock:
            proc = self._ensure()
            try:
                answer = self._exchange(proc, request)
            except (OSError, ValueError, TimeoutError) as exc:
                why = self._kill(proc)
                if isinstance(exc, TimeoutError):
                    raise FrameRejected(
                        f"{path.name}: checking it took more than {self.timeout_s:g} s; "
                        "the checker process was stopped"
                    ) from None
                raise FrameRejected(
                    f"{path.name}: the checker process {why} while reading it"
                ) from None
            self._served += 1
            if self._served >= self.max_requests:
                self._kill(proc)
        return _result(answer)

    def _exchange(self, proc: subprocess.Popen[bytes], request: dict[str, Any]) -> Any:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
            if ready:
                line = proc.stdout.readline()
                if not line:
                    raise OSError("the checker process ended")
                return json.loads(line)

    # --------------------------------------------------------------- the child
    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._reap(self._proc)
        self._proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _CHILD_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
            close_fds=True,
        )
        self._served = 0
        self.started += 1
        logger.debug("file checker process %d started", self._proc.pid)
        return self._proc

    def _kill(self, proc: subprocess.Popen[bytes]) -> str:
        """Kill ``proc`` (if still alive) and reap it; return how it ended, for messages."""
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
        self._reap(proc)
        if self._proc is proc:
            self._proc = None
        code = proc.returncode
        return f"was killed by signal {-code}" if code and code < 0 else f"exited ({code})"

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10.0)

    @property
    def pid(self) -> int | None:
        """The running child's pid, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def close(self) -> None:
        """End the child (closing its pipe; killed if it does not exit). Safe to call twice."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
        self._reap(proc)


def _result(answer: Any) -> CheckedFile:
    """Turn the child's answer into a CheckedFile, or raise the error it reports."""
    if not isinstance(answer, dict):
        raise FrameRejected(f"the checker process answered {answer!r:.100}")
    if answer.get("ok"):
        c = answer["check"]
        check = FitsCheck(
            hdu_index=int(c["hdu_index"]),
            shape=tuple(int(n) for n in c["shape"]),
            bitpix=int(c["bitpix"]),
            reduction_marks=tuple(str(k) for k in c["reduction_marks"]),
        )
        return CheckedFile(check, answer.get("sha256"), answer.get("size_bytes"))
    kind, message = answer.get("kind"), str(answer.get("message", ""))
    if kind == "unreadable":
        raise FrameUnreadable(message)
    if kind == "oserror":
        code = int(answer.get("errno") or 0)
        if code:
            raise OSError(code, os.strerror(code), answer.get("filename"))
        raise OSError(message)
    raise FrameRejected(message)


_SHARED: list[FileChecker] = []
_SHARED_LOCK = threading.Lock()


def shared_checker() -> FileChecker:
    """Return this process's one :class:`FileChecker` (closed at exit)."""
    with _SHARED_LOCK:
        if not _SHARED:
            checker = FileChecker()
            _SHARED.append(checker)
            atexit.register(checker.close)
        return _SHARED[0]
