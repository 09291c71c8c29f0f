"""Soap.download against the fake Skynet server: ledger, skipping, one bad exposure, B1."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soapd.api.soap import Soap
from soapd.config import Config, Token
from soapd.errors import SkynetAuthError
from soapd.skynet.client import SkynetClient
from soapd.skynet.records import Exposure
from soapd.skynet.source import DownloadedFile
from soapd.testing.fake_skynet import NOT_FITS_BYTES, FakeSkynet
from soapd.testing.synth import make_frame, write_frame

OBS = 4242


@pytest.fixture(name="frame_bytes")
def fixture_frame_bytes(tmp_path: Path) -> Callable[[], bytes]:
    """Factory: a different small synthetic FITS frame (as bytes) at each call."""
    seeds = iter(range(1, 1000))

    def make() -> bytes:
        seed = next(seeds)
        frame = make_frame((64, 64), stars=3, seed=seed)
        return write_frame(tmp_path / f"src{seed}.fits", frame.data_adu, frame.header).read_bytes()

    return make


@pytest.fixture(name="fake")
def fixture_fake() -> Iterator[FakeSkynet]:
    """A running fake Skynet server."""
    with FakeSkynet() as fake:
        yield fake


@pytest.fixture(name="api_config")
def fixture_api_config(fake: FakeSkynet, config: Callable[..., Config]) -> Config:
    """A config pointing at the fake server, with no retries (fast failures)."""
    return config(skynet={"api_url": fake.url, "max_attempts": 1, "backoff_s": 0.0})


def _downloads(fake: FakeSkynet) -> int:
    return fake.count("/download/fits")


def test_soap_download_skips_downloaded_and_survives_one_bad_exposure(
    fake: FakeSkynet,
    api_config: Config,
    frame_bytes: Callable[[], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = datetime.now(UTC)
    good = [
        fake.add_exposure(
            OBS, frame_bytes(), center_time_utc=now - timedelta(hours=h), archived=True
        )
        for h in (3, 2, 1)
    ]
    bad = fake.add_exposure(
        OBS, NOT_FITS_BYTES, center_time_utc=now - timedelta(minutes=90), archived=True
    )
    caplog.set_level(logging.WARNING)
    with Soap(OBS, config=api_config, token=fake.token) as soap:
        paths = soap.download()
        assert len(paths) == 3
        assert all(p.is_file() for p in paths)
        assert f"exposure {bad}: download failed" in caplog.text
        row = soap.store.find_frame(exp_id=bad)
        assert row is not None
        assert row.state == "seen"
        # #15: an HTML page instead of the file is transient: no try counted within
        # skynet.download_budget_s (test_download_faults.py covers the budget).
        assert row.tries == 0
        assert (row.last_error or "").startswith("download postponed: ")
        for exp_id in good:
            done = soap.store.find_frame(exp_id=exp_id)
            assert done is not None
            assert done.state == "downloaded"
            assert done.path in paths
        before = _downloads(fake)
        again = soap.download()
    assert again == paths
    assert _downloads(fake) - before == 1  # only the bad exposure is tried again
    assert fake.token not in caplog.text
    # A second Soap (another process, or the daemon) sees the same ledger.
    with Soap(OBS, config=api_config, token=fake.token) as other:
        before = _downloads(fake)
        assert other.download() == paths
        assert _downloads(fake) - before == 1


def test_soap_download_b1_days_ago_and_naive_bounds_against_naive_api_times(
    fake: FakeSkynet, api_config: Config, frame_bytes: Callable[[], bytes]
) -> None:
    """skynetsoap B1: days_ago compared an aware 'now' with naive centerTime: TypeError."""
    now = datetime.now(UTC)
    recent = fake.add_exposure(
        OBS, frame_bytes(), center_time_utc=now - timedelta(hours=2), archived=True
    )
    old = fake.add_exposure(
        OBS, frame_bytes(), center_time_utc=now - timedelta(days=3), archived=True
    )
    with Soap(OBS, config=api_config, token=fake.token) as soap:
        paths = soap.download(days_ago=1)
        assert len(paths) == 1
        assert soap.store.find_frame(exp_id=old) is None  # outside the range: not recorded
        row = soap.store.find_frame(exp_id=recent)
        assert row is not None
        assert paths == [row.path]
        naive_cut = (now - timedelta(days=4)).replace(tzinfo=None).isoformat()
        assert len(soap.download(after=naive_cut, before=now.replace(tzinfo=None))) == 2


def test_soap_download_without_token_says_how_to_give_one(
    api_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SOAPD_SKYNET_TOKEN", "SKYNET_API_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    with Soap(OBS, config=api_config) as soap, pytest.raises(SkynetAuthError, match="token="):
        soap.download()


def test_soap_download_refused_token_raises_and_never_shows_it(
    fake: FakeSkynet, api_config: Config, frame_bytes: Callable[[], bytes]
) -> None:
    fake.add_exposure(OBS, frame_bytes(), center_time_utc=datetime.now(UTC), archived=True)
    with (
        Soap(OBS, config=api_config, token="wrong-token-123") as soap,
        pytest.raises(SkynetAuthError) as info,
    ):
        soap.download()
    assert "wrong-token-123" not in str(info.value)
    assert "wrong-token-123" not in repr(soap)


def test_soap_rejects_bad_observation_id(api_config: Config) -> None:
    with pytest.raises(ValueError, match="observation_id"):
        Soap(0, config=api_config)


def test_soap_default_state_goes_to_cwd_not_var_lib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOAPD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    soap = Soap(7)
    assert soap.state_dir == tmp_path / "soapd_data"
    assert soap.config.paths.cache_dir == tmp_path / "soapd_data" / "cache"
    explicit = Soap(7, state_dir=tmp_path / "s")
    assert explicit.config.paths.db_path == tmp_path / "s" / "soapd.db"


class DownAtDownload:
    """A SkynetClient for ``fake`` whose downloads (not listings) all get HTTP 503."""

    def __init__(self, fake: FakeSkynet, cfg: Config) -> None:
        self.fake = fake
        self.client = SkynetClient.from_config(cfg.skynet, Token(fake.token))

    def iter_archived(self, obs_id: int) -> Iterator[Exposure]:
        """The client's listing, unchanged."""
        return self.client.iter_archived(obs_id)

    def iter_telescope(self, telescope: str, *, since_utc: datetime) -> Iterator[Exposure]:
        """The client's listing, unchanged."""
        return self.client.iter_telescope(telescope, since_utc=since_utc)

    def download(self, exp: Exposure, dest_dir: Path) -> DownloadedFile:
        """Download with every request answered 503."""
        self.fake.set_fail_rate(0.999_999)
        try:
            return self.client.download(exp, dest_dir)
        finally:
            self.fake.set_fail_rate(0.0)

    def close(self) -> None:
        """Close the client."""
        self.client.close()


def test_soap_download_while_skynet_is_down_counts_no_try_and_stops(
    fake: FakeSkynet,
    config: Callable[..., Config],
    frame_bytes: Callable[[], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As the daemon: an unavailable archive postpones the downloads and counts no try."""
    cfg = config(skynet={"api_url": fake.url, "max_attempts": 2, "backoff_s": 0.0})
    now = datetime.now(UTC)
    first, second = (
        fake.add_exposure(
            OBS, frame_bytes(), center_time_utc=now - timedelta(hours=h), archived=True
        )
        for h in (2, 1)
    )
    source = DownAtDownload(fake, cfg)
    caplog.set_level(logging.WARNING)
    with Soap(OBS, config=cfg, source=source) as soap:
        assert soap.download() == []
        tried, untouched = (soap.store.find_frame(exp_id=e) for e in (first, second))
    source.close()
    assert tried is not None
    assert untouched is not None
    assert (tried.state, tried.tries) == ("seen", 0)
    assert (tried.last_error or "").startswith("download postponed: ")
    assert (untouched.state, untouched.tries, untouched.last_error) == ("seen", 0, None)
    assert _downloads(fake) == 2  # the first exposure's two attempts, then no more
    assert "Skynet is unavailable" in caplog.text
