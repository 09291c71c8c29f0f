"""``soapd catalogs``: warm, list and describe the reference-catalog cache.

* ``soapd catalogs prefetch --ra DEG --dec DEG --radius DEG [--band r ...]`` fetches
  every tile of the cone for each catalog of each band's chain, so the night's
  frames on that field never touch the network;
* ``soapd catalogs list`` lists the cached tiles;
* ``soapd catalogs info`` lists the known catalogs and the chain of each band.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from soapd.catalogs.registry import CATALOGS
from soapd.cli import HelpFormatter, add_config_option, parse_position
from soapd.config import load_config
from soapd.errors import CatalogError, UsageError
from soapd.filters import normalise_filter

if TYPE_CHECKING:
    from soapd.catalogs.service import CatalogService

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``catalogs`` subcommand (prefetch, list, info) to ``sub``."""
    p = sub.add_parser(
        "catalogs",
        help="warm, list and describe the reference-catalog cache",
        description="Manage the on-disk cache of reference-catalog tiles "
        "(paths.cache_dir/catalogs).",
        formatter_class=HelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    pf = actions.add_parser(
        "prefetch",
        help="fetch every catalog tile of a field before a night",
        description="Query VizieR for every tile of the cone, for each catalog in the "
        "chain of each band, and store the tiles in the cache.",
        formatter_class=HelpFormatter,
    )
    add_config_option(pf)
    pf.add_argument(
        "--ra", required=True, help="cone centre right ascension: degrees, or hours as hh:mm:ss"
    )
    pf.add_argument(
        "--dec", required=True, help="cone centre declination: degrees, or dd:mm:ss (-30:30:00)"
    )
    pf.add_argument(
        "--radius", type=float, default=0.5, help="cone radius (deg); cover the whole frame"
    )
    pf.add_argument(
        "--band",
        action="append",
        default=None,
        help="band whose catalog chain is fetched (repeatable; filter aliases accepted); "
        "default: r",
    )
    pf.add_argument(
        "--catalog",
        action="append",
        default=None,
        help=f"fetch only these catalogs (repeatable; one of {', '.join(sorted(CATALOGS))})",
    )
    pf.set_defaults(func=run_prefetch)

    ls = actions.add_parser(
        "list",
        help="list cached tiles",
        description="List every cached catalog tile with its size.",
        formatter_class=HelpFormatter,
    )
    add_config_option(ls)
    ls.set_defaults(func=run_list)

    info = actions.add_parser(
        "info",
        help="list known catalogs and the chain of each band",
        description="Show the catalog registry and the effective fallback chains.",
        formatter_class=HelpFormatter,
    )
    add_config_option(info)
    info.set_defaults(func=run_info)


def _service(args: argparse.Namespace) -> CatalogService:
    from soapd.catalogs import CatalogService

    return CatalogService.from_config(load_config(args.config))


def run_prefetch(args: argparse.Namespace) -> int:
    """Fetch the tiles; return 0 when every band got at least one catalog."""
    ra_deg, dec_deg = parse_position(args.ra, args.dec)
    if not 0.0 < args.radius <= 10.0:
        raise UsageError(f"--radius must be in (0, 10] deg, got {args.radius}")
    svc = _service(args)
    bands = [normalise_filter(b) for b in (args.band or ["r"])]
    status = 0
    done: set[str] = set()
    for band in bands:
        chain = svc.chain(svc.config.unfiltered_band if band == "Open" else band)
        if args.catalog:
            chain = [c for c in chain if c in args.catalog] or list(args.catalog)
        ok = False
        for name in chain:
            if name in done:
                ok = True
                continue
            try:
                n_tiles, fetched, rows = svc.prefetch(
                    name, ra_deg=ra_deg, dec_deg=dec_deg, radius_deg=args.radius
                )
            except CatalogError as exc:
                print(f"{band}: {name}: FAILED: {exc}")
                continue
            done.add(name)
            ok = True
            print(f"{band}: {name}: {n_tiles} tiles ({fetched} fetched now), {rows} rows")
        if not ok:
            status = 1
    print(f"network calls: {svc.network_calls}; cache: {svc.cache.root}")
    return status


def run_list(args: argparse.Namespace) -> int:
    """Print the cached tiles; return 0."""
    svc = _service(args)
    entries = svc.cache.entries()
    total = 0
    for catalog, path, size in entries:
        total += size
        print(f"{catalog:14s} {size / 1024:9.1f} KiB  {path.relative_to(svc.cache.root)}")
    print(f"{len(entries)} tiles, {total / 1024 / 1024:.1f} MiB in {svc.cache.root}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print the registry and the chains; return 0."""
    svc = _service(args)
    for s in CATALOGS.values():
        bands = " ".join(s.bands)
        print(f"{s.name:14s} {s.vizier_id or '(local file)':24s} bands: {bands}")
        print(f"{'':14s} {s.title}")
    print()
    for band in ("u", "g", "r", "i", "z", "y", "U", "B", "V", "R", "I", "G"):
        print(f"chain {band}: {' -> '.join(svc.chain(band)) or '(none)'}")
    print(f"unfiltered frames use band {svc.config.unfiltered_band}")
    return 0
