"""[paths].inbox_dir must be kept apart from the state folder (it is watched recursively)."""

from __future__ import annotations

from pathlib import Path

import pytest

from soapd.config import parse_config
from soapd.errors import ConfigError


@pytest.mark.parametrize(
    ("inbox", "state"),
    [("srv/state", "srv/state"), ("srv/state/frames", "srv/state"), ("srv", "srv/state")],
)
def test_inbox_overlapping_state_dir_is_refused(tmp_path: Path, inbox: str, state: str) -> None:
    data = {"paths": {"inbox_dir": inbox, "state_dir": state}}
    with pytest.raises(ConfigError, match=r"paths\.inbox_dir .* must be outside paths\.state_dir"):
        parse_config(data, where="t.toml", base=tmp_path)


def test_inbox_beside_state_dir_is_accepted(tmp_path: Path) -> None:
    cfg = parse_config(
        {"paths": {"inbox_dir": "srv/inbox", "state_dir": "srv/state"}}, base=tmp_path
    )
    assert cfg.paths.inbox_dir == tmp_path / "srv" / "inbox"
