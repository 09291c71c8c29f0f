"""Fixtures for end-to-end tests that run ``soapd`` as a real subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from soapd.testing.demo_field import DemoField, build_demo_field


@pytest.fixture(name="demo_field_e2e", scope="session")
def fixture_demo_field_e2e(tmp_path_factory: pytest.TempPathFactory) -> DemoField:
    """The deterministic demo observation (10 frames of 512 x 512 px) and its catalog."""
    folder: Path = tmp_path_factory.mktemp("demo-field-e2e")
    return build_demo_field(folder, n_frames=10)


@pytest.fixture(name="demo_field_faults", scope="session")
def fixture_demo_field_faults(tmp_path_factory: pytest.TempPathFactory) -> DemoField:
    """A longer demo observation (40 frames) so that faults land while frames process."""
    folder: Path = tmp_path_factory.mktemp("demo-field-faults")
    return build_demo_field(folder, n_frames=40)
