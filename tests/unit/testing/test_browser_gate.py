"""Without Chromium the browser tests skip with the reason; with SOAPD_REQUIRE_BROWSER=1 they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from soapd.testing.browser import find_chromium, missing_browser_reason

REPO = Path(__file__).resolve().parents[3]


def _pytest_browser(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/browser"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_soapd_chromium_overrides_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOAPD_CHROMIUM", "/nonexistent/chromium")
    assert find_chromium() is None
    reason = missing_browser_reason()
    assert reason is not None
    assert "apt-get install chromium" in reason


def test_missing_browser_skips_for_developers_and_fails_in_ci() -> None:
    no_browser = {"SOAPD_CHROMIUM": "/nonexistent/chromium", "SOAPD_REQUIRE_BROWSER": ""}
    dev = _pytest_browser(no_browser)
    assert dev.returncode == 0, dev.stdout[-2000:]
    assert "browser tests skipped: Chromium is missing" in dev.stdout
    assert " passed" not in dev.stdout
    ci = _pytest_browser(no_browser | {"SOAPD_REQUIRE_BROWSER": "1"})
    assert ci.returncode == 1, ci.stdout[-2000:]
    assert "SOAPD_REQUIRE_BROWSER=1 but Chromium is missing" in ci.stdout
