"""Fixtures for the daemon's integration tests (tests/integration/test_service*.py).

``_no_thread_leaks`` (autouse for the service tests) fails a test that leaves a
thread running after the service stopped: the scheduler, its executor, the inbox
observer, the pool's management thread and the fake server must all be joined.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from soapd.testing.demo_field import DemoField, build_demo_field


@pytest.fixture(autouse=True)
def _no_thread_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves threads behind (service tests only)."""
    if not request.module.__name__.rsplit(".", 1)[-1].startswith("test_service"):
        yield
        return
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10.0
    extra: list[threading.Thread] = []
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.05)
    pytest.fail(f"threads still running after the test: {[t.name for t in extra]}")


@pytest.fixture(name="demo_field", scope="session")
def fixture_demo_field(tmp_path_factory: pytest.TempPathFactory) -> DemoField:
    """The deterministic demo observation (6 frames of 512 x 512 px) and its catalog."""
    folder: Path = tmp_path_factory.mktemp("demo-field")
    return build_demo_field(folder, n_frames=6)
