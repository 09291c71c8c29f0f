"""``soapd targets add|set|remove|list``: the watch list, changed while the daemon runs.

The daemon reads the active targets before each frame, so a target added here
is measured from the next frame on; ``--backfill`` also measures it on the
frames already processed, from their kept field-wide tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from soapd.alerts.rules import validate_overrides
from soapd.cli import HelpFormatter, add_config_option, open_store, parse_position
from soapd.config import load_config
from soapd.config.fields import name_problem
from soapd.errors import UsageError
from soapd.models import Target
from soapd.store import Store
from soapd.store.targets import parse_utc

__all__ = ["parse_rules", "register"]


def parse_rules(items: list[str]) -> dict[str, float]:
    """Return ``{key: value}`` from ``key=value`` strings; ConfigError on bad input."""
    rules: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--rule {item!r}: write key=value, e.g. change_min_mag=0.5")
        try:
            rules[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--rule {item!r}: {value!r} is not a number") from None
    validate_overrides(rules)
    return rules


def _add_trigger_and_rules(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trigger-time",
        metavar="T",
        default=None,
        help="trigger time, ISO-8601 UTC (e.g. 2026-11-24T03:12:45Z); "
        "lightcurves then show hours since trigger",
    )
    parser.add_argument(
        "--rule",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="per-target alert rule override, repeatable: detection_snr (sigma), "
        "deeper_limit_margin_mag (mag), change_min_mag (mag), change_min_sigma (sigma), "
        "enabled (0/1), or a rule name (new_detection, deeper_limit, brightening, fading, "
        "faded_below_limit) = 0 to switch it off",
    )


def register(sub: Any) -> None:
    """Add ``targets`` with its ``add``, ``set``, ``remove`` and ``list`` subcommands."""
    fmt = HelpFormatter
    p = sub.add_parser(
        "targets",
        help="add, remove or list watched targets",
        description="Manage the watch list. Changes take effect at the next frame, "
        "also while the daemon runs.",
        formatter_class=fmt,
    )
    tsub = p.add_subparsers(dest="targets_command", metavar="ACTION", required=True)
    add = tsub.add_parser(
        "add",
        help="add a new target (refuses a name in use: see `targets set`)",
        description="Add a target. A name already watched is refused, so nothing is "
        "overwritten by accident: change it with `soapd targets set`. A removed "
        "target's name may be added again.",
        formatter_class=fmt,
    )
    add.add_argument("name", metavar="NAME", help="unique target name, e.g. 'GRB 261124A'")
    add.add_argument("ra", metavar="RA", help="right ascension: degrees, or hours as hh:mm:ss")
    add.add_argument(
        "dec",
        metavar="DEC",
        help="declination in degrees (or dd:mm:ss, negative ones too: -30:30:00)",
    )
    _add_trigger_and_rules(add)
    add.add_argument(
        "--backfill",
        action="store_true",
        help="also measure the target on frames already processed (from their field-wide "
        "tables; raises no alerts)",
    )
    add.add_argument(
        "--radius-arcsec",
        type=float,
        default=3.0,
        help="backfill match radius in arcsec",
    )
    add_config_option(add)
    add.set_defaults(func=run_add)
    st = tsub.add_parser(
        "set",
        help="change a watched target: only the fields given",
        description="Change a target in place. Only what is given changes; the rest "
        "(trigger time, rules, position) stays. --rule adds or replaces rule keys; "
        "--clear-rules drops them all first; --clear-trigger-time removes the trigger time.",
        formatter_class=fmt,
    )
    st.add_argument("name", metavar="NAME", help="target name")
    st.add_argument("--ra", default=None, help="new right ascension: degrees or hh:mm:ss")
    st.add_argument("--dec", default=None, help="new declination: degrees or dd:mm:ss")
    _add_trigger_and_rules(st)
    st.add_argument("--clear-rules", action="store_true", help="drop every rule override")
    st.add_argument("--clear-trigger-time", action="store_true", help="remove the trigger time")
    add_config_option(st)
    st.set_defaults(func=run_set)
    rm = tsub.add_parser(
        "remove",
        help="stop watching a target (its measurements are kept)",
        description="Deactivate a target: it is no longer measured; its history stays.",
        formatter_class=fmt,
    )
    rm.add_argument("name", metavar="NAME", help="target name")
    add_config_option(rm)
    rm.set_defaults(func=run_remove)
    ls = tsub.add_parser(
        "list", help="list targets", description="List the targets.", formatter_class=fmt
    )
    ls.add_argument("--all", action="store_true", help="include removed (inactive) targets")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_config_option(ls)
    ls.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
    """Add the target; with --backfill, measure it on the kept field-wide tables."""
    cfg = load_config(args.config)
    problem = name_problem(args.name.strip())
    if problem:
        raise UsageError(problem)
    ra, dec = parse_position(args.ra, args.dec)
    target = Target(
        name=args.name.strip(),
        ra_deg=ra,
        dec_deg=dec,
        trigger_time_utc=parse_utc(args.trigger_time, what="--trigger-time"),
        rules=parse_rules(args.rule),
    )
    with Store(cfg.paths.db_path) as store:
        existing = store.get_target(target.name)
        if existing is not None and existing.active:
            raise UsageError(
                f"a target named {target.name!r} is already watched (RA "
                f"{existing.ra_deg:.6f}, Dec {existing.dec_deg:+.6f}); change it with "
                f"`soapd targets set {target.name!r} ...`, or remove it first"
            )
        tid = store.upsert_target(target)
        print(f"target {target.name!r} (id {tid}) at RA {ra:.6f} deg, Dec {dec:+.6f} deg")
        if args.backfill:
            from soapd.lightcurves import backfill_target

            n = backfill_target(store, target.name, radius_arcsec=args.radius_arcsec)
            print(f"backfilled {n} frame(s)")
    return 0


def run_set(args: argparse.Namespace) -> int:
    """Change only the given fields of an existing target."""
    cfg = load_config(args.config)
    with open_store(cfg) as store:
        old = store.get_target(args.name)
        if old is None:
            raise UsageError(f"no target named {args.name!r}; add it with `soapd targets add`")
        if (args.ra is None) != (args.dec is None):
            raise UsageError("give --ra and --dec together")
        ra, dec = (
            (old.ra_deg, old.dec_deg) if args.ra is None else parse_position(args.ra, args.dec)
        )
        trigger = old.trigger_time_utc
        if args.clear_trigger_time:
            trigger = None
        if args.trigger_time is not None:
            trigger = parse_utc(args.trigger_time, what="--trigger-time")
        rules = {} if args.clear_rules else dict(old.rules)
        rules.update(parse_rules(args.rule))
        new = dataclasses.replace(
            old, ra_deg=ra, dec_deg=dec, trigger_time_utc=trigger, rules=rules, active=True
        )
        store.upsert_target(new)
    changed = [
        f
        for f in ("ra_deg", "dec_deg", "trigger_time_utc", "rules", "active")
        if getattr(old, f) != getattr(new, f)
    ]
    print(f"target {args.name!r}: " + (f"changed {', '.join(changed)}" if changed else "unchanged"))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Deactivate the target; exit 1 if there is none of that name."""
    cfg = load_config(args.config)
    with Store(cfg.paths.db_path) as store:
        if not store.remove_target(args.name):
            print(f"soapd: no target named {args.name!r}")
            return 1
    print(f"target {args.name!r} removed (its measurements are kept)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print the targets as a table or JSON."""
    cfg = load_config(args.config)
    with open_store(cfg) as store:
        targets = store.list_targets(include_inactive=args.all)
    rows: list[dict[str, Any]] = [
        {
            "name": t.name,
            "ra_deg": t.ra_deg,
            "dec_deg": t.dec_deg,
            "trigger_time_utc": t.trigger_time_utc.isoformat() if t.trigger_time_utc else None,
            "active": t.active,
            "rules": t.rules,
        }
        for t in targets
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'NAME':<{width}}  {'RA(deg)':>11}  {'DEC(deg)':>11}  ACTIVE  TRIGGER (UTC)  RULES")
    for r in rows:
        rules = ",".join(f"{k}={v:g}" for k, v in r["rules"].items()) or "-"
        print(
            f"{r['name']:<{width}}  {r['ra_deg']:11.6f}  {r['dec_deg']:+11.6f}  "
            f"{'yes' if r['active'] else 'no':<6}  {r['trigger_time_utc'] or '-'}  {rules}"
        )
    return 0
