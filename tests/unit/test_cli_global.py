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


def _targets(cfg_file: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    import json

    capsys.readouterr()
    assert main(["--config", str(cfg_file), "targets", "list", "--json"]) == 0
    return {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_targets_add_refuses_an_existing_name_and_set_changes_only_what_is_given(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["--config", str(cfg_file)]
    assert (
        main(
            [
                *c,
                "targets",
                "add",
                "GRB X",
                "10:00:00",
                "-30:30:00",
                "--trigger-time",
                "2026-11-24T03:00:00Z",
            ]
        )
        == 0
    )  # negative dd:mm:ss, no `--`
    before = _targets(cfg_file, capsys)["GRB X"]
    assert before["dec_deg"] == pytest.approx(-30.5)
    # adding the same name again must not silently drop the trigger time
    assert (
        main([*c, "targets", "add", "GRB X", "150", "-30.5", "--rule", "change_min_mag=0.5"]) == 2
    )
    err = capsys.readouterr().err
    assert "already watched" in err
    assert "targets set" in err
    assert "usage error" in err
    assert _targets(cfg_file, capsys)["GRB X"] == before
    # set changes only the rule; trigger time and position stay
    assert main([*c, "targets", "set", "GRB X", "--rule", "change_min_mag=0.5"]) == 0
    after = _targets(cfg_file, capsys)["GRB X"]
    assert after["rules"] == {"change_min_mag": 0.5}
    assert after["trigger_time_utc"] == before["trigger_time_utc"]
    assert (after["ra_deg"], after["dec_deg"]) == (before["ra_deg"], before["dec_deg"])
    assert main([*c, "targets", "set", "GRB X", "--ra", "150.5", "--dec", "-12:30:00"]) == 0
    moved = _targets(cfg_file, capsys)["GRB X"]
    assert (moved["ra_deg"], moved["dec_deg"]) == (pytest.approx(150.5), pytest.approx(-12.5))
    assert moved["rules"] == {"change_min_mag": 0.5}
    assert main([*c, "targets", "set", "nobody", "--rule", "change_min_mag=1"]) == 2


@pytest.mark.parametrize(
    ("ra", "dec", "message"),
    [
        ("400", "0", "RA must be in [0, 360)"),
        ("-10", "0", "RA must be in [0, 360)"),
        ("10", "95", "Dec must be in [-90, 90]"),
        ("25:00:00", "0", "cannot read the position"),
        ("10:00:00", "-91:00:00", "Dec must be"),
    ],
)
def test_the_cli_validates_positions_as_the_toml_does(
    ra: str, dec: str, message: str, cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(cfg_file), "targets", "add", "X", ra, dec]) == 2
    assert message in capsys.readouterr().err


def test_negative_sexagesimal_dec_in_extract_and_prefetch(
    cfg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["--config", str(cfg_file)]
    assert main([*c, "targets", "add", "VAR", "1", "1"]) == 0  # creates the database
    assert main([*c, "extract", "12:49:37.598", "-63:32:09.8"]) in (0, 1)
    assert "expected one argument" not in capsys.readouterr().err
    # prefetch parses the position before any network use; an impossible radius stops it there
    assert (
        main(
            [
                *c,
                "catalogs",
                "prefetch",
                "--ra",
                "12:49:37.6",
                "--dec",
                "-63:32:09.8",
                "--radius",
                "50",
            ]
        )
        == 2
    )
    assert "--radius must be in (0, 10]" in capsys.readouterr().err
