"""Fixtures of the browser tests: a soapd state made by the real daemon, ``soapd web``, Chromium.

The state: the deterministic demo observation (6 frames) on a FakeSkynet; the first
5 frames are released and processed by ``soapd run --until-idle`` (a subprocess, as
an operator runs it), together with an exposure whose file is not FITS (failed) and a
constant image dropped into the inbox (rejected). Watched targets: DEMO-FADER
(with a trigger time), DEMO-RISER, and ``<script>alert(1)</script>`` at the riser's
position. The last frame is kept back for the test that adds a point while the page
is served.

Without Chromium or Playwright the tests are skipped with the reason, unless
``SOAPD_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from soapd.testing.browser import WebServer, launch_chromium, missing_browser_reason
from soapd.testing.demo_field import DemoField, build_demo_field, load_into
from soapd.testing.fake_skynet import NOT_FITS_BYTES, FakeSkynet
from soapd.testing.synth import write_frame

XSS = "<script>alert(1)</script>"
WEB_TOKEN = "browser-test-token-31337"
TRIGGER = "2026-11-24T02:55:00Z"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip (or, in CI, fail) the browser tests when no browser can run."""
    reason = missing_browser_reason()
    if reason is None:
        return
    if os.environ.get("SOAPD_REQUIRE_BROWSER") == "1":
        return  # _browser_required fails them instead
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.skip(reason=f"browser tests skipped: {reason}"))


@pytest.fixture(autouse=True, scope="session")
def _browser_required() -> None:
    """In CI (SOAPD_REQUIRE_BROWSER=1) a missing browser is an error, not a skip."""
    reason = missing_browser_reason()
    if reason is not None and os.environ.get("SOAPD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SOAPD_REQUIRE_BROWSER=1 but {reason}", pytrace=False)


def _leftover_threads(before: set[threading.Thread], *, allow_asyncio: bool) -> list[str]:
    deadline = time.monotonic() + 10.0
    extra: list[threading.Thread] = []
    while time.monotonic() < deadline:
        extra = [
            t
            for t in threading.enumerate()
            if t not in before
            and t.is_alive()
            and not (allow_asyncio and t.name.startswith("asyncio_"))
        ]
        if not extra:
            return []
        time.sleep(0.02)
    return [t.name for t in extra]


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """The suite's thread-leak check, except Playwright's event-loop executor threads.

    Playwright's sync API runs an asyncio loop whose default executor starts
    ``asyncio_N`` threads on demand; they end when the browser fixture closes
    Playwright, which checks that (see ``fixture_browser``).
    """
    before = set(threading.enumerate())
    yield
    left = _leftover_threads(before, allow_asyncio=True)
    if left:
        pytest.fail(f"threads still running after the test: {left}")


@dataclass
class Site:
    """The state, the fake archive, the running web servers and where artefacts go."""

    demo: DemoField
    fake: FakeSkynet
    config: Path
    state_dir: Path
    web: WebServer
    token_web: WebServer
    artefacts: Path
    env: dict[str, str]

    def run_daemon(self, timeout_s: float = 240.0) -> subprocess.CompletedProcess[str]:
        """Run ``soapd run --until-idle`` on the state; fail the test if it fails."""
        proc = subprocess.run(
            [sys.executable, "-m", "soapd", "run", "--until-idle", "--config", str(self.config)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    def start_daemon(self) -> subprocess.Popen[str]:
        """Start ``soapd run --until-idle`` without waiting for it."""
        return subprocess.Popen(
            [sys.executable, "-m", "soapd", "run", "--until-idle", "--config", str(self.config)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )


def _write_config(path: Path, demo: DemoField, api_url: str, state: Path, inbox: Path) -> None:
    fader, riser = demo.targets
    path.write_text(
        f"""[skynet]
api_url = "{api_url}"
observations = [{demo.obs_id}]
backoff_s = 0.05
max_attempts = 2
# A bad answer (the not-FITS exposure) counts a try at once, so it fails in this run.
download_budget_s = 0.0

[paths]
state_dir = "{state}"
cache_dir = "{state / "cache"}"
inbox_dir = "{inbox}"

[service]
workers = 1
max_tries = 1

[calibration]
online = false
catalog_files = ["{demo.catalog_path}"]

[alerts]
batch_window_s = 0.0

[web]
refresh_s = 2.0

[[notifiers]]
kind = "file"
directory = "{state / "alerts"}"

[[targets]]
name = "{fader.name}"
ra_deg = {fader.ra_deg!r}
dec_deg = {fader.dec_deg!r}
trigger_time = "{TRIGGER}"

[[targets]]
name = "{riser.name}"
ra_deg = {riser.ra_deg!r}
dec_deg = {riser.dec_deg!r}

[[targets]]
name = "{XSS}"
ra_deg = {riser.ra_deg!r}
dec_deg = {riser.dec_deg!r}
""",
        encoding="utf-8",
    )


def _flat_fits(path: Path) -> None:
    """Write a readable FITS frame whose pixels are all equal (soapd rejects it)."""
    from astropy.io import fits

    header = fits.Header()
    header["DATE-OBS"] = "2026-11-24T03:30:00"
    header["EXPTIME"] = 30.0
    header["FILTER"] = "V"
    write_frame(path, np.full((64, 64), 1000.0, dtype=np.float32), header)


@pytest.fixture(name="site", scope="module")
def fixture_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The processed demo state served by ``soapd web`` (plain and token-protected)."""
    root = tmp_path_factory.mktemp("browser")
    artefacts = Path(os.environ.get("SOAPD_ARTEFACTS") or root / "artefacts") / "screenshots"
    artefacts.mkdir(parents=True, exist_ok=True)
    demo = build_demo_field(root / "field", n_frames=6)
    state, inbox = root / "state", root / "inbox"
    inbox.mkdir()
    _flat_fits(inbox / "flat_field.fits")
    config = root / "soapd.toml"
    with FakeSkynet(seed=0) as fake:
        load_into(fake, demo)
        for _ in range(5):
            fake.release_next()
        fake.add_exposure(
            demo.obs_id,
            NOT_FITS_BYTES,
            center_time_utc=demo.frames[0].mid_time_utc + timedelta(minutes=30),
            exp_id=demo.obs_id * 100 + 99,
            filename="broken.fits",
            archived=True,
        )
        _write_config(config, demo, fake.url, state, inbox)
        env = dict(os.environ, SOAPD_SKYNET_TOKEN=fake.token, MPLBACKEND="Agg")
        for key in ("SOAPD_CONFIG", "CREDENTIALS_DIRECTORY", "SOAPD_WEB_TOKEN"):
            env.pop(key, None)
        web = WebServer(config, root / "web.log", env={"SOAPD_WEB_TOKEN": ""})
        token_web = WebServer(config, root / "web-token.log", env={"SOAPD_WEB_TOKEN": WEB_TOKEN})
        site = Site(demo, fake, config, state, web, token_web, artefacts, env)
        site.run_daemon()
        with web, token_web:
            yield site


@pytest.fixture(name="browser", scope="module")
def fixture_browser(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Chromium context (fresh profile) allowed to use the clipboard on the test site."""
    from playwright.sync_api import sync_playwright

    before = set(threading.enumerate())
    with sync_playwright() as pw:
        context = launch_chromium(
            pw,
            tmp_path_factory.mktemp("chromium-profile"),
            viewport={"width": 1280, "height": 900},
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.web.url)
        try:
            yield context
        finally:
            context.close()
    left = _leftover_threads(before, allow_asyncio=False)
    assert not left, f"Playwright left threads running: {left}"


@pytest.fixture(name="page_problems")
def fixture_page_problems() -> list[str]:
    """The JavaScript errors, console errors and dialogs of ``page`` (a test may clear some)."""
    return []


@pytest.fixture(name="page")
def fixture_page(browser: Any, page_problems: list[str]) -> Iterator[Any]:
    """A new tab that fails the test on any JavaScript error or console error (CSP included)."""
    page = browser.new_page()
    problems = page_problems
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    yield page
    page.close()
    assert not problems, problems
