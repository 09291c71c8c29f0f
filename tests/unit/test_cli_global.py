"""The global options of `soapd` and read-only commands that never create a database (#14)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from soapd.cli import main


@pytest.fixture(name="cfg_file")
def fixture_cfg_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SOAPD_CONFIG", raising=False)
    path = tmp_path / "soapd.toml"
    path.write_text(
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\ncache_dir = "{tmp_path / "c"}"\n'
    )
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["lightcurve", "GRB X"],
        ["extract", "10.0", "20.0"],
        ["targets", "list"],
    ],
)
def test_read_only_commands_refuse_a_missing_database_and_create_none(
    argv: list[str], cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cfg_file.parent / "state" / "soapd.db"
    assert main([*argv, "--config", str(cfg_file)]) == 1
    err = capsys.readouterr().err
    assert f"no soapd database at {db}" in err
    assert "paths.state_dir" in err
    assert not db.exists()
    assert not db.parent.exists() or not any(db.parent.iterdir())


def test_global_config_option_applies_to_any_command(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(cfg_file), "targets", "add", "VAR", "150.5", "2.25"]) == 0
    assert (cfg_file.parent / "state" / "soapd.db").exists()
    assert main(["--config", str(cfg_file), "targets", "list"]) == 0
    assert "VAR" in capsys.readouterr().out


def test_command_config_wins_over_the_global_one(
    cfg_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.toml"
    other.write_text(f'[paths]\nstate_dir = "{tmp_path / "elsewhere"}"\n')
    assert (
        main(["--config", str(other), "targets", "add", "VAR", "1", "2", "--config", str(cfg_file)])
        == 0
    )
    assert (cfg_file.parent / "state" / "soapd.db").exists()
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        (["-v"], logging.INFO),
        (["-vv"], logging.DEBUG),
        (["--log-level", "warning"], logging.WARNING),
    ],
)
def test_verbosity_flags_set_the_log_level(
    flags: list[str], level: int, cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        assert main([*flags, "check-config", "--config", str(cfg_file)]) == 0
        assert root.level == level
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]


def test_lightcurve_of_an_unknown_target_names_it(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(cfg_file), "targets", "add", "VAR", "150.5", "2.25"]) == 0
    assert main(["--config", str(cfg_file), "lightcurve", "nobody"]) == 1
    assert "no target" in capsys.readouterr().err


def test_a_closed_pipe_is_not_a_traceback(cfg_file: Path) -> None:
    """`soapd ... | head` closes the pipe early: soapd exits quietly (#14)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "soapd", "check-config", "--config", str(cfg_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before soapd writes
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err.decode(), err.decode()
    assert "BrokenPipeError" not in err.decode()
    assert proc.returncode == 0
