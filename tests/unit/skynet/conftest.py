"""Fixtures for the Skynet client tests: a token, FITS bytes, a MockTransport with a log."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits

from soapd.config import SkynetConfig, Token
from soapd.skynet import SkynetClient

DATA = Path(__file__).parents[2] / "data" / "skynet"
#: A long, unmistakable token: any appearance in logs or messages is a leak.
SECRET = "tok-3f9a1c7e55d2b8a04e6f1d9c2b7a8e11-SECRET"


def load_json(name: str) -> Any:
    """Return a JSON fixture from tests/data/skynet."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def fits_bytes(
    *,
    dtype: Any = np.float32,
    shape: tuple[int, int] = (16, 16),
    header: dict[str, Any] | None = None,
) -> bytes:
    """Return a small FITS image as bytes."""
    hdu = fits.PrimaryHDU(np.ones(shape, dtype=dtype))
    for key, value in (header or {}).items():
        hdu.header[key] = value
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


@dataclass
class Recorder:
    """A MockTransport handler that records requests and answers from a queue or a function."""

    answer: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    @property
    def params(self) -> list[dict[str, str]]:
        return [dict(r.url.params) for r in self.requests]


@pytest.fixture(name="secret")
def fixture_secret() -> str:
    """The raw test token text (to search logs and messages for leaks)."""
    return SECRET


@pytest.fixture(name="load_json")
def fixture_load_json() -> Callable[[str], Any]:
    """Function: load_json(name) -> parsed JSON fixture from tests/data/skynet."""
    return load_json


@pytest.fixture(name="fits_bytes")
def fixture_fits_bytes() -> Callable[..., bytes]:
    """Function: fits_bytes(dtype=..., shape=..., header={...}) -> a FITS file as bytes."""
    return fits_bytes


@pytest.fixture(name="token")
def fixture_token() -> Token:
    """The test token (wrapped)."""
    return Token(SECRET)


@pytest.fixture(name="make_client")
def fixture_make_client(token: Token) -> Iterator[Callable[..., tuple[SkynetClient, Recorder]]]:
    """Factory: make_client(answer, **skynet_config) -> (client, recorder); closed afterwards."""
    made: list[SkynetClient] = []

    def _make(
        answer: Callable[[httpx.Request], httpx.Response], **cfg: Any
    ) -> tuple[SkynetClient, Recorder]:
        cfg.setdefault("backoff_s", 0.0)
        cfg.setdefault("api_url", "https://skynet.test/2.0")
        recorder = Recorder(answer)
        client = SkynetClient.from_config(
            SkynetConfig(**cfg), token, transport=httpx.MockTransport(recorder)
        )
        made.append(client)
        return client, recorder

    yield _make
    for client in made:
        client.close()
