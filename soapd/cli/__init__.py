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
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from soapd import __version__
from soapd.errors import ConfigError, SoapdError, UsageError

if TYPE_CHECKING:
    from soapd.config import Config
    from soapd.store import Store

__all__ = [
    "HelpFormatter",
    "Parser",
    "add_config_option",
    "log_level_of",
    "main",
    "open_store",
    "parse_position",
]

#: Subcommand modules, in the order they appear in ``soapd --help``.
COMMAND_MODULES = (
    "soapd.cli.process",
    "soapd.cli.daemon",
    "soapd.cli.targets",
    "soapd.cli.lightcurve",
    "soapd.cli.catalogs",
    "soapd.cli.config_cmd",
    "soapd.cli.web",
    "soapd.cli.prune",
)

logger = logging.getLogger("soapd")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that reads ``-30:30:00`` and ``-12d30m`` as values, not options.

    argparse takes any word that starts with ``-`` and is not a plain negative
    number for an option, so a negative sexagesimal declination needed ``--``
    before the positionals. No soapd option starts with ``-`` and a digit, so such
    words are always values. Subcommand parsers inherit the class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` that shows a default once, and only when there is one to show.

    argparse's own formatter appends ``(default: X)`` to every option: twice when
    the help text already states it, ``(default: None)`` on required or
    value-less options, ``(default: False)`` on flags, ``(default: [])`` on
    repeatable ones.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "default" in text.lower()
            or action.required
            or action.default in (None, False, argparse.SUPPRESS, [], ())
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
            or not action.option_strings
        ):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser with every available subcommand."""
    parser = Parser(
        prog="soapd",
        description="soapd: photometry daemon for the Skynet robotic telescope network.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"soapd {__version__}")
    parser.add_argument(
        "--config",
        dest="global_config",
        metavar="FILE",
        default=None,
        help="TOML config file for any command (as the command's own --config); "
        "if neither is given, $SOAPD_CONFIG, else the built-in defaults",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output: -v = INFO, -vv = DEBUG (repeatable)",
    )
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        default=None,
        help="log level for this run, overriding [logging] level (default: the config's)",
    )
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


def log_level_of(args: argparse.Namespace) -> str | None:
    """Return the log level asked for with ``--log-level`` or ``-v``/``-vv``, else None."""
    level: str | None = getattr(args, "log_level", None)
    verbose = int(getattr(args, "verbose", 0) or 0)
    if level is None and verbose:
        level = "DEBUG" if verbose > 1 else "INFO"
    return level


def _angle_deg(text: str, *, hours: bool) -> float | None:
    """Return degrees from a plain number (degrees) or sexagesimal text (RA in hours)."""
    try:
        return float(text)
    except ValueError:
        pass
    from astropy import units as u
    from astropy.coordinates import Angle

    try:
        angle = Angle(text, unit=u.hourangle if hours else u.deg)
    except ValueError:
        return None
    if hours and not 0.0 <= float(angle.hour) < 24.0:
        return None
    return float(angle.deg)


def parse_position(ra: str, dec: str) -> tuple[float, float]:
    """Return (ra_deg, dec_deg) from degrees or sexagesimal text (RA in hours: ``10:17:52.3``).

    The same ranges as the TOML's ``[[targets]]``: RA in [0, 360) deg, Dec in
    [-90, 90] deg. Raise UsageError naming the accepted forms.
    """
    ra_deg = _angle_deg(ra, hours=True)
    dec_deg = _angle_deg(dec, hours=False)
    if ra_deg is None or dec_deg is None:
        raise UsageError(
            f"cannot read the position {ra!r} {dec!r}; give degrees (150.25 -30.5) or "
            "RA in hours and Dec in degrees (10:01:00 -30:30:00), or mix them"
        )
    if not (math.isfinite(ra_deg) and 0.0 <= ra_deg < 360.0):
        raise UsageError(f"RA must be in [0, 360) deg (or 0-24 h as hh:mm:ss), got {ra!r}")
    if not (math.isfinite(dec_deg) and -90.0 <= dec_deg <= 90.0):
        raise UsageError(f"Dec must be in [-90, 90] deg, got {dec!r}")
    return ra_deg, dec_deg


def open_store(cfg: Config, *, create: bool = False) -> Store:
    """Open the configured database; unless ``create``, refuse when it does not exist.

    Read-only commands must never leave an empty database behind (as root under
    /var/lib/soapd) because a config path is wrong.
    """
    from soapd.store import Store

    db = cfg.paths.db_path
    if not create and not db.exists():
        raise SoapdError(
            f"no soapd database at {db}; check paths.state_dir in the config "
            "(--config or $SOAPD_CONFIG), or start the daemon once to create it"
        )
    return Store(db)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soapd command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is None and args.global_config is not None:
        args.config = args.global_config
    level = log_level_of(args)
    if level is not None:
        from soapd.logs import setup_logging

        setup_logging(level)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"soapd: usage error: {exc} (see soapd {args.command} --help)", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"soapd: configuration error: {exc}", file=sys.stderr)
        return 2
    except SoapdError as exc:
        print(f"soapd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("soapd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`soapd lightcurve X | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return code
