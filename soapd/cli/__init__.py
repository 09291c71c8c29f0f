"""The ``soapd`` command: argparse entry point that assembles the subcommands.

Each subcommand lives in its own module under ``soapd.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code). Errors of
type :class:`~soapd.errors.SoapdError` are printed as one line (no traceback)
with exit code 2 for configuration errors and 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from soapd import __version__
from soapd.errors import ConfigError, SoapdError

__all__ = ["main"]

#: Subcommand modules, in the order they appear in ``soapd --help``.
COMMAND_MODULES = (
    "soapd.cli.process",
    "soapd.cli.daemon",
    "soapd.cli.targets",
    "soapd.cli.lightcurve",
    "soapd.cli.catalogs",
    "soapd.cli.config_cmd",
    "soapd.cli.web",
)

logger = logging.getLogger("soapd")


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="soapd",
        description="soapd: photometry daemon for the Skynet robotic telescope network.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"soapd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add the common ``--config`` option to a subcommand parser."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML config file; if not given, $SOAPD_CONFIG, else the built-in defaults",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soapd command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"soapd: configuration error: {exc}", file=sys.stderr)
        return 2
    except SoapdError as exc:
        print(f"soapd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("soapd: interrupted", file=sys.stderr)
        return 130
    return code
