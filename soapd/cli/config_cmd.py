"""``soapd check-config``: load, validate and print the effective configuration."""

from __future__ import annotations

import argparse
import json
from typing import Any

from soapd.cli import HelpFormatter, add_config_option
from soapd.config import load_config, read_token, read_web_token, to_dict
from soapd.config.secrets import redact

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``check-config`` subcommand to ``sub``."""
    p = sub.add_parser(
        "check-config",
        help="validate the config and print it with secrets redacted",
        description="Load and validate the config, print the effective values as one JSON "
        "object (with the science fingerprint under 'fingerprint'), every credential "
        "redacted: tokens, passwords, and the user info, path and query of webhook and "
        "apprise URLs. Exit 2 on any error. Safe in ExecStartPre= (output goes to the "
        "journal).",
        formatter_class=HelpFormatter,
    )
    add_config_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the effective configuration; return 0 when it is valid."""
    cfg = load_config(args.config)
    data: dict[str, Any] = redact(to_dict(cfg))
    token = read_token(cfg.skynet)
    data["skynet"]["token"] = "<set, redacted>" if token else "<not set>"
    data["fingerprint"] = cfg.fingerprint()
    data["web"]["token"] = "<set, redacted>" if read_web_token(cfg.web) else "<not set>"
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0
