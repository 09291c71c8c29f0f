"""SkynetClient against the FakeSkynet HTTP server: real sockets, real httpx/httpcore."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soapd.config import SkynetConfig, Token
from soapd.errors import SkynetAuthError, SkynetBadAnswer, SkynetNotFound, SkynetUnavailable
from soapd.skynet import SkynetClient
from soapd.skynet.records import exposure_from_json
from soapd.testing.fake_skynet import NOT_FITS_BYTES, FakeSkynet

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture(name="fake")
def fixture_fake(secret: str) -> Iterator[FakeSkynet]:
    """A running FakeSkynet that accepts the test token."""
    with FakeSkynet(token=secret, seed=3, max_requests=2000) as fake:
        yield fake


@pytest.fixture(name="connect")
def fixture_connect(fake: FakeSkynet, token: Token) -> Iterator[Callable[..., SkynetClient]]:
    """Factory: connect(**skynet_config) -> a SkynetClient on the fake (closed afterwards)."""
    made: list[SkynetClient] = []

    def _make(**cfg: Any) -> SkynetClient:
        cfg.setdefault("backoff_s", 0.0)
        client = SkynetClient.from_config(SkynetConfig(api_url=fake.url, **cfg), token)
        made.append(client)
        return client

    yield _make
    for client in made:
        client.close()


def _add(
    fake: FakeSkynet, data: bytes, n: int, *, obs_id: int = 5, telescope: str = "Prompt5"
) -> list[int]:
    return [
        fake.add_exposure(
            obs_id, data, center_time_utc=T0 + timedelta(minutes=i), telescope=telescope
        )
        for i in range(n)
    ]


def test_fake_only_released_exposures_are_listed_and_paged(
    fake: FakeSkynet, connect: Callable[..., SkynetClient], fits_bytes: Callable[..., bytes]
) -> None:
    ids = _add(fake, fits_bytes(), 5)
    _add(fake, fits_bytes(), 2, obs_id=6)
    client = connect(page_size=2)
    assert list(client.iter_archived(5)) == []
    fake.release_next()
    assert [e.exp_id for e in client.iter_archived(5)] == ids[:1]
    fake.release_all()
    exps = list(client.iter_archived(5))
    assert [e.exp_id for e in exps] == ids
    assert exps[0].meta.gain_e_per_adu == 1.5
    assert exps[0].meta.mid_time_utc == T0
    assert exps[0].meta.telescope == "Prompt5"
    offsets = [r.params["offset"] for r in fake.requests if r.params.get("obs") == "5"]
    assert offsets[-3:] == ["0", "2", "4"]


def test_fake_iter_telescope_filters_scope_and_time(
    fake: FakeSkynet, connect: Callable[..., SkynetClient], fits_bytes: Callable[..., bytes]
) -> None:
    ids = _add(fake, fits_bytes(), 4)
    _add(fake, fits_bytes(), 2, obs_id=6, telescope="Prompt6")
    fake.release_all()
    client = connect()
    since = T0 + timedelta(seconds=60)
    got = [e.exp_id for e in client.iter_telescope("Prompt5", since_utc=since)]
    assert got == ids[2:]  # start = T0 + i min - 30 s must be after T0 + 60 s: i >= 2


def test_fake_download_roundtrip(
    fake: FakeSkynet,
    connect: Callable[..., SkynetClient],
    fits_bytes: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    data = fits_bytes()
    (exp_id,) = _add(fake, data, 1)
    fake.release_all()
    client = connect()
    (exp,) = client.iter_archived(5)
    got = client.download(exp, tmp_path)
    assert got.path.read_bytes() == data
    assert got.path.name == f"r{exp_id}.fits"  # the exposure id names it, not the server
    assert got.server_filename == f"fake_{exp_id}.fits"
    assert fake.requests[-1].params == {"image": f"r{exp_id}", "reducequiet": "1"}


def test_fake_download_of_unreleased_exposure_is_not_found(
    fake: FakeSkynet,
    connect: Callable[..., SkynetClient],
    fits_bytes: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    (exp_id,) = _add(fake, fits_bytes(), 1)
    with pytest.raises(SkynetNotFound):
        connect().download(exposure_from_json({"id": exp_id, "state": "archived"}), tmp_path)


def test_fake_random_503s_are_ridden_out(
    fake: FakeSkynet,
    connect: Callable[..., SkynetClient],
    fits_bytes: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    ids = _add(fake, fits_bytes(), 6)
    fake.release_all()
    fake.set_fail_rate(0.3)
    client = connect(page_size=2, max_attempts=10)
    exps = list(client.iter_archived(5))
    assert [e.exp_id for e in exps] == ids
    for exp in exps:
        client.download(exp, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"r{i}.fits" for i in ids)
    assert any(r.status == 503 for r in fake.requests)


def test_fake_slow_response_times_out_then_retries(
    fake: FakeSkynet, connect: Callable[..., SkynetClient], fits_bytes: Callable[..., bytes]
) -> None:
    _add(fake, fits_bytes(), 1)
    fake.release_all()
    fake.slow_next(1.0)
    client = connect(read_timeout_s=0.2, max_attempts=3)
    assert len(list(client.iter_archived(5))) == 1
    assert fake.count("/exps") == 2


def test_fake_truncated_download_retried_then_complete(
    fake: FakeSkynet,
    connect: Callable[..., SkynetClient],
    fits_bytes: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    data = fits_bytes(shape=(64, 64))
    _add(fake, data, 1)
    fake.release_all()
    fake.truncate_next_download(1)
    client = connect()
    (exp,) = client.iter_archived(5)
    got = client.download(exp, tmp_path)
    assert got.path.read_bytes() == data
    assert fake.count("/download/fits") == 2
    assert [p.name for p in tmp_path.iterdir()] == [got.path.name]


def test_fake_truncated_download_without_retries_leaves_nothing(
    fake: FakeSkynet,
    connect: Callable[..., SkynetClient],
    fits_bytes: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    _add(fake, fits_bytes(shape=(64, 64)), 1)
    fake.release_all()
    fake.truncate_next_download(5)
    client = connect(max_attempts=2)
    (exp,) = client.iter_archived(5)
    with pytest.raises(SkynetBadAnswer, match="truncated"):
        client.download(exp, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fake_not_fits_frame_is_unreadable(
    fake: FakeSkynet, connect: Callable[..., SkynetClient], tmp_path: Path
) -> None:
    _add(fake, NOT_FITS_BYTES, 1)
    fake.release_all()
    client = connect()
    (exp,) = client.iter_archived(5)
    with pytest.raises(SkynetBadAnswer, match="HTML page instead of a FITS file"):
        client.download(exp, tmp_path)
    assert fake.count("/download/fits") == 1
    assert list(tmp_path.iterdir()) == []


def test_fake_token_rotation_gives_auth_error_without_retry(
    fake: FakeSkynet, connect: Callable[..., SkynetClient], fits_bytes: Callable[..., bytes]
) -> None:
    _add(fake, fits_bytes(), 1)
    fake.release_all()
    client = connect(max_attempts=5)
    assert len(list(client.iter_archived(5))) == 1
    fake.rotate_token("the-new-token-after-rotation")
    before = len(fake.requests)
    with pytest.raises(SkynetAuthError, match="refused the API token"):
        list(client.iter_archived(5))
    assert len(fake.requests) == before + 1
    client.set_token(Token("the-new-token-after-rotation"))
    assert len(list(client.iter_archived(5))) == 1


def test_fake_unreachable_server_is_unavailable(token: Token) -> None:
    with FakeSkynet() as gone:
        url = gone.url
    cfg = SkynetConfig(api_url=url, backoff_s=0.0, max_attempts=2, connect_timeout_s=1.0)
    with SkynetClient.from_config(cfg, token) as client, pytest.raises(SkynetUnavailable):
        list(client.iter_archived(5))


def test_fake_token_never_logged_by_httpx_or_httpcore(  # noqa: PLR0917 - fixtures
    fake: FakeSkynet,
    connect: Callable[..., SkynetClient],
    fits_bytes: Callable[..., bytes],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    secret: str,
) -> None:
    _add(fake, fits_bytes(), 2)
    fake.release_all()
    fake.set_fail_rate(0.3)
    with contextlib.ExitStack() as stack:
        for name in (None, "httpx", "httpcore", "soapd", "hpack"):
            stack.enter_context(caplog.at_level(logging.DEBUG, logger=name))
        client = connect(max_attempts=10)
        for exp in client.iter_archived(5):
            client.download(exp, tmp_path)
        fake.rotate_token("rotated-token-value-0001")
        with pytest.raises(SkynetAuthError) as info:
            list(client.iter_archived(5))
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert secret not in caplog.text
    assert secret not in str(info.value)
    assert secret not in repr(fake.requests)
