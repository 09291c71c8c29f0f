"""Shared fixtures: rng, make_frame, fits_file, config (DESIGN §4.9)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from soapd.config import Config, parse_config
from soapd.testing.synth import SynthFrame, make_frame, write_frame

#: The one seed of the shared random generator.
SEED = 20261124


@pytest.fixture(name="rng")
def fixture_rng() -> np.random.Generator:
    """A numpy Generator with a fixed seed."""
    return np.random.default_rng(SEED)


@pytest.fixture(name="make_frame")
def fixture_make_frame() -> Callable[..., SynthFrame]:
    """Factory: soapd.testing.synth.make_frame (defaults 512x512, 50 stars, seed 0)."""
    return make_frame


@pytest.fixture(name="fits_file")
def fixture_fits_file(tmp_path: Path) -> Callable[..., tuple[Path, Any]]:
    """Factory: fits_file(name="frame.fits", **make_frame_kwargs) -> (path, truth table)."""
    counter = {"n": 0}

    def _make(name: str | None = None, **kwargs: Any) -> tuple[Path, Any]:
        counter["n"] += 1
        frame = make_frame(**kwargs)
        path = tmp_path / (name or f"frame{counter['n']:03d}.fits")
        write_frame(path, frame.data_adu, frame.header)
        return path, frame.truth

    return _make


@pytest.fixture(name="config")
def fixture_config(tmp_path: Path) -> Callable[..., Config]:
    """Factory: config(photometry={...}, ...) -> validated Config with paths in tmp_path."""

    def _make(**sections: dict[str, Any]) -> Config:
        data: dict[str, Any] = {k: dict(v) for k, v in sections.items()}
        paths = data.setdefault("paths", {})
        paths.setdefault("state_dir", str(tmp_path / "state"))
        paths.setdefault("cache_dir", str(tmp_path / "cache"))
        return parse_config(data, where="<test config>", base=tmp_path)

    return _make


@pytest.fixture(name="env_db")
def fixture_env_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write a minimal config in ``tmp_path`` as $SOAPD_CONFIG; return its database path.

    For CLI tests: state in ``tmp_path/state``, cache in ``tmp_path/c``. The database
    is not created.
    """
    path = tmp_path / "soapd.toml"
    path.write_text(
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\ncache_dir = "{tmp_path / "c"}"\n'
    )
    monkeypatch.setenv("SOAPD_CONFIG", str(path))
    return tmp_path / "state" / "soapd.db"


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """Fail any test that leaves threads running (servers, observers, schedulers, timers)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10.0
    extra: list[threading.Thread] = []
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.02)
    pytest.fail(f"threads still running after the test: {[t.name for t in extra]}")
