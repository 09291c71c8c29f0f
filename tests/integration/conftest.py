"""Fixtures for the daemon's integration tests (tests/integration/test_service*.py).

The suite-wide ``_no_thread_leaks`` fixture (tests/conftest.py) fails a test that leaves a
thread running after the service stopped: the scheduler, its executor, the inbox
observer, the pool's management thread and the fake server must all be joined.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soapd.testing.demo_field import DemoField, build_demo_field


@pytest.fixture(name="demo_field", scope="session")
def fixture_demo_field(tmp_path_factory: pytest.TempPathFactory) -> DemoField:
    """The deterministic demo observation (6 frames of 512 x 512 px) and its catalog."""
    folder: Path = tmp_path_factory.mktemp("demo-field")
    return build_demo_field(folder, n_frames=6)
