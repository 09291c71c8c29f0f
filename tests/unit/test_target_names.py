"""Target names with control characters are refused everywhere a target can come in (#15).

A newline in a name would forge log lines ("frame 12 raised 1 new alert(s)" on a
line of its own) and break every line-based output; the CLI (`targets add`),
the TOML loader and the store's API all give the same clear reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soapd.cli import main
from soapd.config import parse_config
from soapd.config.fields import MAX_NAME_CHARS, name_problem
from soapd.errors import ConfigError
from soapd.models import Target
from soapd.store import Store

FORGED = "GRB 1\n2026-11-24 03:00:00 INFO soapd.frames: frame 9 raised 1 new alert(s)"

BAD_NAMES = [
    FORGED,
    "a\rb",
    "tab\there",
    "esc\x1b[31mred",
    "nul\x00",
    "del\x7f",
    "c1\x85next-line",
    "bidi\u202eevil",
    "zero\u200bwidth",
    "line\u2028sep",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_name_problem_names_the_characters(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None
    assert "control or invisible characters" in problem
    assert "U+" in problem
    assert "\n" not in problem  # the message itself is one line (repr of the name)


@pytest.mark.parametrize("name", ["GRB 261124A", "SN 2026abc", "Ψ Cyg", "M31 (core)", "a" * 200])
def test_ordinary_names_pass(name: str) -> None:
    assert name_problem(name) is None


def test_blank_and_overlong_names_are_refused() -> None:
    assert name_problem("   ") == "a target needs a non-empty name"
    problem = name_problem("x" * (MAX_NAME_CHARS + 1))
    assert problem is not None
    assert f"at most {MAX_NAME_CHARS}" in problem


def test_toml_loader_refuses_a_name_with_a_newline() -> None:
    data = {"targets": [{"name": "ok", "ra_deg": 1.0}, {"name": FORGED, "ra_deg": 2.0}]}
    with pytest.raises(ConfigError, match=r"targets\[1\]\.name: target name .*U\+000A"):
        parse_config(data, where="soapd.toml")


def test_store_api_refuses_a_name_with_a_newline(tmp_path: Path) -> None:
    with Store(tmp_path / "soapd.db") as store:
        with pytest.raises(ConfigError, match="control or invisible characters"):
            store.upsert_target(Target(name=FORGED, ra_deg=10.0, dec_deg=20.0))
        assert store.active_targets() == []


@pytest.mark.usefixtures("env_db")
def test_cli_targets_add_refuses_a_name_with_a_newline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "add", FORGED, "10", "20"]) == 2
    err = capsys.readouterr().err
    assert "usage error" in err
    assert "control or invisible characters (U+000A)" in err
    assert err.count("\n") == 1, "the error is one line: the name is shown escaped"
    assert main(["targets", "add", "GRB 1", "10", "20"]) == 0
    assert main(["targets", "list", "--json"]) == 0
    assert "INFO soapd.frames" not in capsys.readouterr().out
