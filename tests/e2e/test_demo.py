"""``python -m soapd.cli.demo`` (``make demo``) keeps its state and ends with a working ``soapd web``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from soapd.cli.demo import _MARKER, _fresh_state_dir
from soapd.testing.browser import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_demo_keeps_its_state_and_prints_a_soapd_web_command(tmp_path: Path) -> None:
    state = tmp_path / "demo-run"
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("SOAPD_CONFIG", None)
    argv = [sys.executable, "-m", "soapd.cli.demo", "--frames", "3", "--release-every", "0.3"]
    argv += ["--field-dir", str(tmp_path / "field"), "--state-dir", str(state)]
    proc = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "demo: state kept in demo-run/" in out
    match = re.search(r"^  (\S+) web --config (\S+)$", out, re.MULTILINE)
    assert match, out[-2000:]
    assert "http://127.0.0.1:8788/" in out
    config = tmp_path / match.group(2)
    assert config == state / "demo.toml"
    assert (state / "soapd.db").is_file()
    assert (state / _MARKER).is_file()
    with WebServer(config, tmp_path / "web.log") as web:
        with urllib.request.urlopen(web.url + "/api/targets", timeout=30) as r:
            targets = {t["name"]: t for t in json.loads(r.read())["targets"]}
    assert targets["DEMO-FADER"]["n_points"] == 3
    assert targets["DEMO-FADER"]["state"] == "detected"


def test_demo_state_folder_is_emptied_only_when_it_is_the_demos(tmp_path: Path) -> None:
    mine = _fresh_state_dir(tmp_path / "demo-run")
    (mine / "soapd.db").write_text("old")
    again = _fresh_state_dir(tmp_path / "demo-run")
    assert again == mine
    assert not (again / "soapd.db").exists()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not a soapd demo folder"):
        _fresh_state_dir(other)
    assert (other / "data.txt").read_text() == "keep me"
