"""Real-browser helpers for tests and benchmarks: system Chromium, ``soapd web`` subprocess.

Playwright drives Debian's ``chromium`` package (``/usr/bin/chromium``, or
``$SOAPD_CHROMIUM``) through ``executable_path``; it never downloads a browser
(``playwright install`` is not needed and cannot work offline). Each launch uses
a fresh profile folder and flags that keep Chromium off the network (no
component updates, no sync, no background networking) and inside a container
(``--no-sandbox``: tests run as root there).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "CHROMIUM_ARGS",
    "WebServer",
    "find_chromium",
    "free_port",
    "launch_chromium",
    "missing_browser_reason",
]

#: Command-line flags of every Chromium launch.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """Return the Chromium executable, or None.

    ``$SOAPD_CHROMIUM`` when set (and only it), else ``/usr/bin/chromium``, else
    ``chromium`` or ``chromium-browser`` on the PATH.
    """
    chosen = os.environ.get("SOAPD_CHROMIUM")
    for candidate in [chosen] if chosen else ["/usr/bin/chromium"]:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    if chosen:
        return None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_browser_reason() -> str | None:
    """Return why the browser tests cannot run here (no Playwright, no Chromium), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    if find_chromium() is None:
        return (
            "Chromium is missing: install Debian's package (apt-get install chromium) "
            "or point $SOAPD_CHROMIUM at a Chromium binary"
        )
    return None


def launch_chromium(playwright: Any, profile_dir: Path, **options: Any) -> Any:
    """Return a Playwright BrowserContext of the system Chromium with a fresh profile.

    ``options`` go to ``launch_persistent_context`` (e.g. ``permissions``, ``viewport``).
    """
    executable = find_chromium()
    if executable is None:
        raise RuntimeError(missing_browser_reason() or "no Chromium")
    profile_dir.mkdir(parents=True, exist_ok=True)
    return playwright.chromium.launch_persistent_context(
        str(profile_dir),
        executable_path=executable,
        headless=True,
        args=list(CHROMIUM_ARGS),
        **options,
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebServer:
    """``soapd web --config CONFIG --port PORT`` as a subprocess on 127.0.0.1.

    Output goes to ``log_path``. ``env`` adds environment variables (e.g.
    ``SOAPD_WEB_TOKEN``). Use as a context manager; ``url`` is the base URL.
    """

    def __init__(self, config: Path, log_path: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("SOAPD_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.command = [sys.executable, "-m", "soapd", "web", "--config", str(config)]
        self.command += ["--port", str(self.port)]

    def start(self, timeout_s: float = 30.0) -> Self:
        """Start the server and wait until it answers; raise RuntimeError if it does not."""
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.command],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/favicon.ico", timeout=2):  # noqa: S310
                    return self
            except urllib.error.HTTPError:
                return self  # it answered (e.g. 401 without the token)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"soapd web did not start; see {self.log_path}")

    def stop(self) -> None:
        """Stop the server with SIGTERM (SIGKILL after 10 s) and close its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
