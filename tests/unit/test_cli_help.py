"""Every `soapd` command's --help reads cleanly (#14): a description, defaults once, no noise."""

from __future__ import annotations

import argparse

import pytest

from soapd.cli import HelpFormatter, build_parser


def _subparsers(
    parser: argparse.ArgumentParser, prefix: str = "soapd"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend(_subparsers(sub, f"{prefix} {name}"))
    return out


PARSERS = _subparsers(build_parser())


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[n for n, _ in PARSERS])
def test_help_has_a_description_and_no_noise(name: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert parser.description, f"{name} has no description"
    for noise in ("(default: None)", "(default: False)", "(default: [])", "(default: ())"):
        assert noise not in text, f"{name}: {noise}"
    fmt = HelpFormatter(name)
    for action in parser._actions:
        shown = fmt._get_help_string(action) or ""
        if "default" in (action.help or "").lower():
            assert shown == action.help, f"{name} {action.option_strings}: default shown twice"


def test_every_command_is_listed() -> None:
    names = {n for n, _ in PARSERS}
    for expected in (
        "soapd process",
        "soapd run",
        "soapd status",
        "soapd targets add",
        "soapd lightcurve",
        "soapd check-config",
    ):
        assert expected in names
