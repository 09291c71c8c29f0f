"""Live Skynet API checks (remote_data): run only with a real token and an observation id.

Set ``SOAPD_SKYNET_TOKEN`` and ``SOAPD_SKYNET_TEST_OBS`` (an observation of yours with
archived exposures), then ``pytest -m remote_data tests/remote/test_skynet_live.py``.
These answer the open questions of ``skynet_api.md`` §8 that soapd depends on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from soapd.config import SkynetConfig, Token
from soapd.errors import SkynetAuthError
from soapd.ingest.fitscheck import check_fits
from soapd.skynet import SkynetClient

pytestmark = pytest.mark.remote_data

TOKEN = os.environ.get("SOAPD_SKYNET_TOKEN", "")
OBS = os.environ.get("SOAPD_SKYNET_TEST_OBS", "")
needs_live = pytest.mark.skipif(
    not (TOKEN and OBS.isdigit()), reason="set SOAPD_SKYNET_TOKEN and SOAPD_SKYNET_TEST_OBS"
)


@needs_live
def test_live_list_and_download_one_archived_exposure(tmp_path: Path) -> None:
    with SkynetClient.from_config(SkynetConfig(page_size=50), Token(TOKEN)) as client:
        exps = list(client.iter_archived(int(OBS)))
        assert exps, f"observation {OBS} has no archived exposure"
        exp = exps[0]
        assert exp.meta.mid_time_utc is not None
        assert exp.meta.mid_time_utc.utcoffset() is not None
        got = client.download(exp, tmp_path)
    assert got.path.is_file()
    assert check_fits(got.path).shape
    print(
        f"exposure {exp.exp_id}: {got.server_filename!r}, {got.size_bytes} bytes, {got.reduction}"
    )


@needs_live
def test_live_bad_token_is_an_auth_error() -> None:
    cfg = SkynetConfig(max_attempts=1)
    with SkynetClient.from_config(cfg, Token("not-a-valid-token")) as client:
        with pytest.raises(SkynetAuthError):
            list(client.iter_archived(int(OBS)))
