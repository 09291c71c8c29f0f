"""``soapd lightcurve NAME`` and ``soapd extract RA DEC``: lightcurves out of the store.

Both print a text table (detections as ``mag +/- err``, limits as ``> lim``) or
a table in csv, ecsv or json to standard output, or write ``--out FILE`` (also
parquet; through :mod:`soapd.output.export`; the ``is_detection`` column keeps
detections and limits apart), or ``gcn`` (a GCN circular draft from the stacked
epochs, :mod:`soapd.alerts.circular`; the prefilled GCN submission link goes to
standard error; with ``--out X.gcn`` also the sidecar ``X.gcn.json``, the same
numbers in GCN's JSON schema, and ``X.gcn.url``, the link: never a file the user
did not name). ``--stacks`` outputs a target's stacked epochs instead of its frames;
``--frames`` makes the circular list single frames. ``--plot`` also draws the
lightcurve to a PNG, stacked epochs with their own marker.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from soapd.cli import HelpFormatter, add_config_option, open_store, parse_position
from soapd.config import load_config
from soapd.errors import ConfigError, SoapdError, StoreError, UsageError
from soapd.output.lctext import TEXT_COLUMNS, first_aperture_rows, text_table
from soapd.store.targets import parse_utc

if TYPE_CHECKING:
    from collections.abc import Mapping

    from astropy.table import Table

    from soapd.alerts.circular import Draft
    from soapd.config import CircularConfig, Config

__all__ = ["TEXT_READ_COLUMNS", "lightcurve_text", "register", "text_table", "write_output"]

FORMATS = ("text", "csv", "ecsv", "parquet", "json", "gcn")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format; unset: from the --out suffix (.csv .ecsv .parquet .json .gcn .txt), "
        "else text on stdout",
    )
    p.add_argument("--out", metavar="FILE", default=None, help="write to FILE instead of stdout")
    p.add_argument("--plot", metavar="PNG", default=None, help="also plot the lightcurve to PNG")
    p.add_argument(
        "--units", choices=("mag", "flux"), default="mag", help="plot units (flux: microjansky)"
    )
    p.add_argument(
        "--log-time",
        action="store_true",
        help="plot: logarithmic axis of hours since the target's trigger time (afterglows; "
        "needs a trigger time; points before it are left out and counted in the title)",
    )
    p.add_argument(
        "--all-apertures",
        action="store_true",
        help="output every aperture (default: each frame's first aperture)",
    )
    p.add_argument(
        "--frames",
        action="store_true",
        help="gcn: one row per frame instead of the stacked epochs",
    )
    add_config_option(p)


def register(sub: Any) -> None:
    """Add the ``lightcurve`` and ``extract`` subcommands."""
    fmt = HelpFormatter
    p = sub.add_parser(
        "lightcurve",
        help="print or export a target's lightcurve",
        description="Print or export the lightcurve of a watched target: detections as "
        "magnitudes with errors, non-detections as upper limits.",
        formatter_class=fmt,
    )
    p.add_argument("name", metavar="NAME", help="target name (see `soapd targets list`)")
    p.add_argument("--band", metavar="B", default=None, help="only this band (e.g. R, r, V)")
    p.add_argument("--since", metavar="T", default=None, help="only points after T (ISO-8601 UTC)")
    p.add_argument(
        "--include-superseded",
        action="store_true",
        help="also rows of older processings (column 'superseded')",
    )
    p.add_argument(
        "--include-not-covered",
        action="store_true",
        help="also the frames that had the target in their footprint but could not measure "
        "it (edge buffer, masked pixels; flag NOT_COVERED, the notes say why)",
    )
    p.add_argument(
        "--stacks",
        action="store_true",
        help="output the stacked epochs (one row per telescope, band and epoch) instead",
    )
    _add_output_options(p)
    p.set_defaults(func=run_lightcurve)
    e = sub.add_parser(
        "extract",
        help="lightcurve of any position from the kept field-wide tables",
        description="Build the lightcurve of any sky position from the field-wide source "
        "tables of the processed frames (nearest source within the radius per frame, or "
        "the frame's limit when nothing is there).",
        formatter_class=fmt,
    )
    e.add_argument("ra", metavar="RA", help="right ascension: degrees, or hours as hh:mm:ss")
    e.add_argument("dec", metavar="DEC", help="declination in degrees (or dd:mm:ss)")
    e.add_argument("--radius-arcsec", type=float, default=3.0, help="match radius in arcsec")
    e.add_argument("--name", default=None, help="name written in the output (default: RA Dec)")
    e.add_argument(
        "--trigger-time", metavar="T", default=None, help="trigger time (ISO-8601 UTC) for gcn"
    )
    _add_output_options(e)
    e.set_defaults(func=run_extract)


#: Lightcurve columns :func:`lightcurve_text` reads: the text columns and the frame keys.
TEXT_READ_COLUMNS = (*TEXT_COLUMNS, "frame_id", "aperture_id")


def lightcurve_text(
    arrays: Mapping[str, np.ndarray], trigger: datetime | None, *, all_apertures: bool = False
) -> str:
    """Return the text table of a lightcurve given as arrays (:data:`TEXT_READ_COLUMNS`).

    The lines :func:`write_output` prints for the lightcurve Table with the same
    columns: each frame's first aperture unless ``all_apertures``
    (:func:`~soapd.output.lctext.first_aperture_rows`, the selection of
    ``one_per_frame``), formatted by :func:`~soapd.output.lctext.text_table`.
    """
    if not all_apertures and len(arrays["frame_id"]):
        keep = first_aperture_rows(arrays["frame_id"], arrays["aperture_id"], arrays["mjd"])
        arrays = {name: values[keep] for name, values in arrays.items()}
    return text_table(arrays, trigger)


def write_output(
    table: Table,
    args: argparse.Namespace,
    *,
    name: str,
    trigger: datetime | None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    draft: Draft | None = None,
    stacks: Table | None = None,
    circular: CircularConfig | None = None,
) -> None:
    """Write ``table`` as asked by --format/--out/--plot.

    ``draft``: the circular for ``gcn`` (else drafted from ``table``); ``stacks``:
    stacked epochs drawn over the frames by ``--plot``.
    """
    from soapd.alerts.gcn import one_per_frame

    if args.plot and args.log_time and trigger is None:
        raise UsageError(
            f"--log-time needs the target's trigger time: soapd targets set {name!r} "
            "--trigger-time ISO-TIME"
        )
    if not args.all_apertures and "is_stack" not in table.colnames:
        table = one_per_frame(table)
    fmt = args.format
    if fmt is None:
        fmt = "text" if args.out is None else Path(args.out).suffix.lstrip(".").lower()
        fmt = {"pq": "parquet", "txt": "text"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise ConfigError(f"--out {args.out}: unknown suffix; give --format")
    if fmt == "gcn":
        from soapd.alerts.circular import draft_from_table, write_draft

        if draft is None:
            draft = draft_from_table(
                table,
                name=name,
                trigger_time_utc=trigger,
                ra_deg=ra_deg,
                dec_deg=dec_deg,
                single_frames=bool(getattr(args, "frames", False)),
                config=circular,
            )
        if args.out:
            # X.gcn -> X.gcn.json and X.gcn.url: never a file the user did not name.
            out, side, link = write_draft(draft, args.out)
            print(f"wrote {out}, {side} and {link}", file=sys.stderr)
        else:
            print(draft.circular.text, end="")
        for warning in draft.circular.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(
            f"submit (review it first; soapd never submits): {draft.circular.url}",
            file=sys.stderr,
        )
    elif fmt == "text":
        body = text_table(table, trigger)
        if args.out:
            Path(args.out).write_text(body + "\n", encoding="utf-8")
        else:
            print(body)
    else:
        from soapd.output.export import table_text, write_table

        if not args.out:  # to standard output, for pipes: soapd lightcurve X --format csv | ...
            sys.stdout.write(table_text(table, fmt))
        else:
            print(f"wrote {write_table(table, args.out, fmt)} ({len(table)} rows)", file=sys.stderr)
    if args.plot:
        from soapd.output.plots import plot_lightcurve

        plot_lightcurve(
            table,
            args.plot,
            units=args.units,
            trigger_time_utc=trigger,
            title=name,
            stacks=stacks,
            log_time=args.log_time,
        )
        print(f"wrote {args.plot}")


def _text_only(args: argparse.Namespace) -> bool:
    """Return True when ``args`` ask for nothing but a target's text table (no plot, no stacks)."""
    if args.plot or args.stacks:
        return False
    if args.format is not None:
        return bool(args.format == "text")
    if args.out is None:
        return True
    return Path(args.out).suffix.lstrip(".").lower() in ("text", "txt")


def _print_text_only(args: argparse.Namespace, cfg: Config, since: datetime | None) -> bool:
    """Print the text table of ``args.name`` read without sqlite_utils or astropy, if possible.

    The common case kept light: a plain read-only connection, the lightcurve read as
    arrays (the read ``Store.lightcurve`` wraps in a Table), no stacks (the text
    shows none). Return False when ``args`` ask for more than the text or the
    database is not one the Store would open unchanged (a pending migration, a
    stale view: the caller opens the Store, which updates it, as it always did).
    """
    from soapd.store.readonly import LightcurveReader

    if not _text_only(args) or not cfg.paths.db_path.exists():
        return False
    try:
        reader = LightcurveReader.open_current(cfg.paths.db_path)
    except StoreError:
        return False  # the Store says what is wrong with it, in its own words
    if reader is None:
        return False
    with reader:
        target = reader.get_target(args.name)
        if target is None:
            raise SoapdError(f"no target named {args.name!r}; see `soapd targets list`")
        arrays = reader.lightcurve_arrays(
            target,
            TEXT_READ_COLUMNS,
            band=args.band,
            since_utc=since,
            include_superseded=args.include_superseded,
            include_not_covered=args.include_not_covered,
        )
    body = lightcurve_text(arrays, target.trigger_time_utc, all_apertures=args.all_apertures)
    if args.out:
        Path(args.out).write_text(body + "\n", encoding="utf-8")
    else:
        print(body)
    return True


def run_lightcurve(args: argparse.Namespace) -> int:
    """Print or export a target's lightcurve (its frames, or with --stacks its stacked epochs)."""
    cfg = load_config(args.config)
    since = parse_utc(args.since, what="--since")
    if _print_text_only(args, cfg, since):
        return 0
    from soapd.alerts.circular import draft_for_target
    from soapd.stacks.table import stack_table

    with open_store(cfg) as store:
        target = store.get_target(args.name)
        if target is None:
            raise SoapdError(f"no target named {args.name!r}; see `soapd targets list`")
        table = store.lightcurve(
            args.name,
            band=args.band,
            since_utc=since,
            include_superseded=args.include_superseded,
            include_not_covered=args.include_not_covered,
        )
        records = store.stacked(target.name, include_superseded=args.include_superseded)
        if args.band is not None:
            records = [r for r in records if r.band == args.band]
        if since is not None:
            records = [r for r in records if r.mid_time_utc >= since]
        stacks = stack_table(records, trigger_time_utc=target.trigger_time_utc)
        draft = None
        if args.format == "gcn" or (args.format is None and str(args.out).endswith(".gcn")):
            draft = draft_for_target(
                store,
                target.name,
                config=cfg.circular,
                single_frames=args.frames,
                band=args.band,
                since_utc=since,
            )
    write_output(
        stacks if args.stacks else table,
        args,
        name=target.name,
        trigger=target.trigger_time_utc,
        ra_deg=target.ra_deg,
        dec_deg=target.dec_deg,
        draft=draft,
        stacks=None if args.stacks else stacks,
        circular=cfg.circular,
    )
    return 0


def run_extract(args: argparse.Namespace) -> int:
    """Build and output the lightcurve of a position from the field-wide tables."""
    from soapd.lightcurves import extract_lightcurve

    if not args.radius_arcsec > 0:
        raise ConfigError("--radius-arcsec must be positive")
    cfg = load_config(args.config)
    ra, dec = parse_position(args.ra, args.dec)
    with open_store(cfg) as store:
        table = extract_lightcurve(
            store, ra, dec, radius_arcsec=args.radius_arcsec, target_name=args.name
        )
    if len(table) == 0:
        print("no processed frame with a field-wide table covers this position")
        return 1
    name = str(table.meta.get("target_name", args.name or ""))
    if "band" not in table.colnames:
        table["band"] = np.asarray(table["filter"]).astype(str)
    write_output(
        table,
        args,
        name=name,
        trigger=parse_utc(args.trigger_time, what="--trigger-time"),
        ra_deg=ra,
        dec_deg=dec,
        circular=cfg.circular,
    )
    return 0
