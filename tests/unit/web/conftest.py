"""Fixtures of the web app's tests: the state of :mod:`soapd.testing.web_state`, test clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from soapd.config import Config, Token
from soapd.store import Store
from soapd.testing.web_state import GRB, XSS, build_state
from soapd.web import create_app

__all__ = ["GRB", "XSS"]


@pytest.fixture(name="web_config")
def fixture_web_config(config: Callable[..., Config]) -> Config:
    """A config whose state folder holds the state of :func:`build_state`."""
    cfg = config()
    with Store(cfg.paths.db_path) as store:
        build_state(store)
    return cfg


@pytest.fixture(name="client")
def fixture_client(web_config: Config) -> Iterator[TestClient]:
    """A TestClient of the app without a token."""
    with TestClient(create_app(web_config)) as client:
        yield client


@pytest.fixture(name="token_client")
def fixture_token_client(web_config: Config) -> Iterator[TestClient]:
    """A TestClient of the app protected by the token 'sesame-7'."""
    app = create_app(web_config, token=Token("sesame-7"))
    with TestClient(app, follow_redirects=False) as client:
        yield client
