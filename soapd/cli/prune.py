"""``soapd prune [--dry-run]``: delete old frame files and field tables under ``[retention]``."""

from __future__ import annotations

import argparse
from typing import Any

from soapd.cli import HelpFormatter, add_config_option, open_store

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``prune`` subcommand to ``sub``."""
    p = sub.add_parser(
        "prune",
        help="delete old downloaded frames and field tables ([retention] settings)",
        description="Delete downloaded frame files and field-wide tables as the config's "
        "[retention] section says: frames_keep_days / field_tables_keep_days (days after "
        "the frame was finished) and frames_max_gb / field_tables_max_gb (disk budgets in "
        "GB = 10^9 bytes, oldest deleted first). Every limit defaults to 0 = off, so "
        "nothing is deleted unless configured. Never deleted: measurements, ledger rows, "
        "frames waiting, downloading or being processed, frames of a stack epoch still "
        "open, and inbox/command-line frames unless prune_local_frames = true. Each "
        "deletion is recorded in the database; `soapd reprocess` downloads a pruned Skynet "
        "frame again. Safe while the daemon runs (which also prunes once a day).",
        formatter_class=HelpFormatter,
    )
    add_config_option(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only list what would be deleted and how much space it would free",
    )
    p.add_argument(
        "--quiet", action="store_true", help="print only the summary line, not each file"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prune (or with ``--dry-run`` plan) and print what was freed; return 0."""
    from soapd.config import load_config
    from soapd.retention import prune, retention_enabled

    cfg = load_config(args.config)
    if not retention_enabled(cfg.retention):
        print(
            "retention is off: set frames_keep_days, frames_max_gb, field_tables_keep_days "
            "or field_tables_max_gb in [retention] (all 0 = keep everything); nothing deleted"
        )
        return 0
    with open_store(cfg) as store:
        outcome = prune(store, cfg, dry_run=args.dry_run)
    shown = outcome.plan.delete if args.dry_run else outcome.deleted
    if not args.quiet:
        verb = "would delete" if args.dry_run else "deleted"
        for f in shown:
            print(
                f"{verb} {f.kind} of frame {f.frame_id}: {f.path} "
                f"({f.size_bytes / 1e6:.1f} MB, {f.reason})"
            )
    for line in outcome.errors:
        print(f"could not delete {line}")
    plan = outcome.plan
    for kind in ("frame", "table"):
        label = "frame files" if kind == "frame" else "field tables"
        after = (
            plan.after_bytes.get(kind, 0)
            if args.dry_run
            else (plan.total_bytes.get(kind, 0) - outcome.freed_bytes.get(kind, 0))
        )
        note = " (still over budget: the rest is needed)" if kind in plan.over_budget else ""
        print(
            f"{label}: {plan.total_bytes.get(kind, 0) / 1e6:.1f} MB before, "
            f"{after / 1e6:.1f} MB after{note}"
        )
    print(outcome.summary())
    return 1 if outcome.errors else 0
