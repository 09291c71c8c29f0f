"""Fixtures for the Python API tests (the tables themselves are in ``api_tables``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api_tables import field_table, result_row
from astropy.table import Table


@pytest.fixture(name="field")
def fixture_field() -> Table:
    """A hand-built field-wide result table (see :func:`field_table`)."""
    return field_table()


@pytest.fixture(name="row")
def fixture_row() -> Callable[..., dict[str, Any]]:
    """The :func:`result_row` factory."""
    return result_row


@pytest.fixture(name="demo", scope="session")
def fixture_demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The deterministic demo field (4 frames: a fader, and a riser absent from frames 1-2)."""
    from soapd.testing.demo_field import build_demo_field

    return build_demo_field(tmp_path_factory.mktemp("demo"), n_frames=4)
