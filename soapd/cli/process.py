"""``soapd process``: one-shot photometry of FITS frames, without the daemon.

Each file (directories expand to the FITS files directly inside them) goes
through :func:`soapd.pipeline.process_frame`, ``--jobs`` at a time in the
daemon's worker pool (:class:`soapd.daemon.pool.WorkerPool`; default one per CPU
core); the summaries are printed, and the rows written, in the files' order
whatever the number of jobs. A file that fails prints one line
``soapd: error: FILE: ...`` on stderr and the others are still processed; the
exit code is 1 when any file failed (or when targets were asked for on a frame
without WCS), else 0.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soapd import __version__
from soapd.cli import HelpFormatter, add_config_option
from soapd.config import Config, load_config
from soapd.errors import ConfigError, SoapdError
from soapd.flags import flag_text, flag_words, is_covered
from soapd.models import ExposureMeta, Target
from soapd.output.progress import ProgressBar

if TYPE_CHECKING:  # the science stack is imported only when frames are processed
    from astropy.table import Table

    from soapd.frames import FrameTask, TaskOutcome
    from soapd.models import FrameResult
    from soapd.pipeline.calibrate import ReferenceProvider

__all__ = [
    "FITS_SUFFIXES",
    "OneFrame",
    "expand_paths",
    "parse_target",
    "register",
    "run",
    "target_line",
]

#: File names taken from a directory (compressed forms included).
FITS_SUFFIXES = tuple(
    base + comp for base in (".fits", ".fit", ".fts") for comp in ("", ".gz", ".bz2", ".fz")
)


def register(sub: Any) -> None:
    """Add the ``process`` subcommand to ``sub``."""
    p = sub.add_parser(
        "process",
        help="measure FITS frames once (field photometry + forced photometry at targets)",
        description="Run the photometry pipeline on FITS files or directories of FITS files "
        "and print a summary per frame. Exit status 1 if any file failed.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="FITS files or directories")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=RA,DEC",
        help="forced photometry at this ICRS position; RA and Dec in degrees or sexagesimal "
        "(RA in hours: 12:30:00.1,-05:00:00); repeat for more targets "
        "(default: %(default)s = none)",
    )
    p.add_argument(
        "--zeropoint",
        type=float,
        default=None,
        metavar="MAG",
        help="zero point in mag (per second of exposure, electrons) applied to every frame "
        "instead of a catalog fit (default: %(default)s = fit against catalogs when configured)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="OUT",
        help="write all rows to OUT; the format follows the suffix: .csv, .ecsv, .parquet "
        "or .json (default: %(default)s = print the summary only)",
    )
    p.add_argument(
        "--exptime",
        type=_positive,
        default=None,
        metavar="S",
        help="exposure time in seconds for every frame, instead of the header's "
        "(default: %(default)s = the header's EXPTIME/EXPOSURE, else the archive's)",
    )
    p.add_argument(
        "--gain",
        type=_positive,
        default=None,
        metavar="E_PER_ADU",
        help="gain in e-/ADU for every frame, instead of the header's "
        "(default: %(default)s = the header's GAIN, else the archive's, else frame.gain_e_per_adu)",
    )
    p.add_argument(
        "--read-noise",
        type=_positive,
        default=None,
        metavar="E",
        help="read noise in electrons for every frame, instead of the header's "
        "(default: %(default)s = the header's RDNOISE, else the archive's, else the config's)",
    )
    p.add_argument(
        "--filter",
        default=None,
        metavar="NAME",
        help="filter name for every frame (e.g. V, R, g'), instead of the header's; for headers "
        "with a wheel code (FILTERS = 48) or none (default: %(default)s = the header's)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=_jobs,
        default=None,
        metavar="N",
        help="frames measured at once, each in its own worker process (the daemon's pool); "
        "the output is the same, in the same order, for every N (default: %(default)s = one "
        "per CPU core)",
    )
    add_config_option(p)
    p.set_defaults(func=run)


def _positive(text: str) -> float:
    """Parse a positive number for argparse (a clear message otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def frame_meta(args: argparse.Namespace, config: Config, path: Path) -> ExposureMeta | None:
    """Return the metadata ``soapd process`` gives the pipeline for ``path``.

    The ledger's archive metadata when the daemon knows the file (same checksum), so
    a frame processed again by hand gets the daemon's numbers; the user's
    ``--exptime/--gain/--read-noise/--filter`` on top, winning over the header.
    """
    from dataclasses import replace

    from soapd.frames import known_meta

    meta = known_meta(config, path)
    given = {
        "exptime_s": args.exptime,
        "gain_e_per_adu": args.gain,
        "read_noise_e": args.read_noise,
        "filter": args.filter,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return meta
    return replace(meta or ExposureMeta(), from_user=True, **given)


def _jobs(text: str) -> int:
    """Parse ``--jobs``: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def parse_target(text: str) -> Target:
    """Parse ``NAME=RA,DEC`` (degrees, or sexagesimal with RA in hours); raise ConfigError."""
    name, sep_, coords = text.partition("=")
    parts = [c.strip() for c in coords.split(",")]
    if not sep_ or not name.strip() or len(parts) != 2:
        raise ConfigError(f"--target {text!r}: expected NAME=RA,DEC, e.g. GRB1=150.1,-20.5")
    try:
        if ":" in coords or re.search(r"[hdms]", coords):
            from astropy.coordinates import SkyCoord

            c = SkyCoord(parts[0], parts[1], unit=("hourangle", "deg"))
            ra, dec = float(c.ra.deg), float(c.dec.deg)
        else:
            ra, dec = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise ConfigError(f"--target {text!r}: cannot read the coordinates ({exc})") from None
    if not (math.isfinite(ra) and math.isfinite(dec)) or not -90.0 <= dec <= 90.0:
        raise ConfigError(f"--target {text!r}: Dec must lie in [-90, 90] degrees")
    return Target(name=name.strip(), ra_deg=ra % 360.0, dec_deg=dec)


def expand_paths(items: Iterable[str]) -> list[Path]:
    """Return the files named in ``items``; a directory gives its FITS files, sorted."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES)
                )
            )
        else:
            out.append(path)
    return out


def _catalogs(config: Config, zeropoint: float | None) -> ReferenceProvider | None:
    """Return the catalog service when calibration is wanted and available, else None."""
    if zeropoint is not None or not config.calibration.enabled:
        return None
    try:
        from soapd.catalogs import CatalogService
    except ImportError:
        return None
    try:
        service: ReferenceProvider = CatalogService.from_config(config)
    except (SoapdError, OSError) as exc:
        print(
            f"soapd: warning: catalogs unavailable ({exc}); magnitudes stay instrumental",
            file=sys.stderr,
        )
        return None
    return service


def _fmt(value: float, spec: str = ".3f") -> str:
    return format(value, spec) if math.isfinite(value) else "nan"


def summarise(result: FrameResult) -> list[str]:
    """Return the short human summary of one frame (first line, target lines, notes)."""
    s = result.summary
    zp = (
        f"ZP {_fmt(s.zp_mag)} ± {_fmt(s.zp_err_mag)} ({s.n_cal_stars} stars)"
        if math.isfinite(s.zp_mag)
        else "no ZP (instrumental)"
    )
    radii = ",".join(f"{r:g}" for r in s.aperture_radii_px)
    first = (
        f"{Path(s.image_file).name}: {s.band} {s.exptime_s:g} s, "
        f"mid {s.mid_time_utc:%Y-%m-%dT%H:%M:%S} UTC, {s.n_sources} sources, "
        f"FWHM {_fmt(s.fwhm_px, '.2f')} px ({s.n_fwhm_stars} stars), r = {radii} px, {zp}, "
        f"limit {_fmt(s.lim_mag_robust, '.2f')} (robust) / {_fmt(s.lim_mag, '.2f')} (analytic)"
    )
    if not math.isfinite(s.lim_mag) and math.isfinite(s.lim_ins_mag):
        first = first.rsplit(", limit ", 1)[0] + (
            f", instrumental limit {_fmt(s.lim_ins_mag_robust, '.2f')} (robust) / "
            f"{_fmt(s.lim_ins_mag, '.2f')} (analytic)"
        )
    lines = [first]
    table = result.table
    lines.extend(target_line(row) for row in table[table["is_forced"]])
    lines.extend(f"  note: {note}" for note in s.notes)
    return lines


def _value(row: Any, name: str) -> float:
    """Return a float cell of ``row`` (NaN when the table has no such column)."""
    return float(row[name]) if name in row.colnames else math.nan


def target_line(row: Any) -> str:
    """Return the summary line of one forced row: the number, with its flags in words.

    ``12.554 ± 0.010 (saturated), S/N 95.1``; ``> 20.29 (upper limit), S/N 1.2``;
    ``not covered (masked pixels)``. A frame without a zero point gives the
    instrumental magnitude or limit, labelled so.
    """
    name = row["target_name"]
    flag = int(row["flag"])
    if not is_covered(flag):
        return f"  {name}: {flag_text(flag)} (no flux, no limit)"
    words = flag_words(flag)
    r = f"r={row['aperture_radius']:g}"
    snr = f"S/N {_fmt(row['snr'], '.1f')}"
    if row["is_detection"]:
        calibrated = math.isfinite(row["calibrated_mag"])
        mag = row["calibrated_mag"] if calibrated else row["ins_mag"]
        err = row["calibrated_mag_err"] if calibrated else row["ins_mag_err"]
        said = ([] if calibrated else ["instrumental"]) + words
        note = f" ({', '.join(said)})" if said else ""
        return f"  {name} {r}: {_fmt(mag)} ± {_fmt(err)}{note}, {snr}"
    limit = _value(row, "limiting_mag")
    said = ["upper limit"]
    if not math.isfinite(limit) and math.isfinite(_value(row, "limiting_ins_mag")):
        limit = _value(row, "limiting_ins_mag")
        said = ["instrumental upper limit"]
    return f"  {name} {r}: > {_fmt(limit, '.2f')} ({', '.join(said + words)}), {snr}"


@dataclass(frozen=True, slots=True)
class OneFrame:
    """What ``soapd process`` runs on each frame, in this process or in a pool worker.

    A :data:`soapd.frames.Processor`: the pipeline on ``task.path`` with the
    command's targets and zero point; a failure comes back as a "failed" outcome
    whose error is the line printed after ``soapd: error:``. Picklable, so the
    worker processes of :class:`soapd.daemon.pool.WorkerPool` run it too.
    """

    zeropoint: float | None = None

    def __call__(
        self, task: FrameTask, config: Config, catalogs: ReferenceProvider | None
    ) -> TaskOutcome:
        """Measure one frame; never raise an Exception."""
        from soapd.frames import TaskOutcome
        from soapd.pipeline import process_frame

        path = task.path
        start = time.perf_counter()
        try:
            result = process_frame(
                path,
                targets=list(task.targets),
                zeropoint=self.zeropoint,
                config=config,
                catalogs=catalogs,
                meta=task.meta,
            )
        except SoapdError as exc:
            text = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            return TaskOutcome(frame_id=task.frame_id, outcome="failed", error=text)
        except Exception as exc:  # one bad frame must not stop the others
            text = (
                f"{path}: unexpected {exc.__class__.__name__}: {exc} "
                "(please report this with the file)"
            )
            return TaskOutcome(frame_id=task.frame_id, outcome="failed", error=text)
        elapsed = time.perf_counter() - start
        return TaskOutcome(frame_id=task.frame_id, outcome="ok", result=result, duration_s=elapsed)


def _outcomes(
    tasks: list[FrameTask],
    runner: OneFrame,
    config: Config,
    catalogs: ReferenceProvider | None,
    jobs: int,
) -> Iterator[TaskOutcome]:
    """Yield the outcome of every task in task order: here (``jobs`` 1) or in a worker pool."""
    if jobs <= 1:
        for task in tasks:
            yield runner(task, config, catalogs)
        return
    from soapd.daemon.pool import WorkerPool

    cfg = replace(config, service=replace(config.service, workers=jobs))
    pool = WorkerPool(cfg, catalogs, runner=runner)
    try:
        pool.start()
        queue = deque(tasks)
        left = len(tasks)
        while left:
            while queue and pool.capacity:
                pool.submit(queue.popleft())
            pool.take_started()  # no ledger here: tries matter only to the pool
            for out in pool.collect(timeout_s=0.5):
                left -= 1
                yield out
    finally:
        pool.shutdown()


def run(args: argparse.Namespace) -> int:
    """Process every file; return 0 when all succeeded, else 1."""
    config = load_config(args.config)
    targets = [parse_target(t) for t in args.target]
    paths = expand_paths(args.files)
    if not paths:
        print("soapd: error: no FITS files found in the given paths", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else None
    if out is not None:
        from soapd.output.export import format_for

        format_for(out)  # fail before the work, not after
    jobs = min(args.jobs or os.cpu_count() or 1, len(paths))
    from soapd.daemon.forkserver import start_early

    start_early(jobs)  # jobs > 1: the workers' server imports the science as this process does
    from soapd.frames import FrameTask

    catalogs = _catalogs(config, args.zeropoint)
    tasks = [
        FrameTask(
            frame_id=i,
            path=path,
            meta=frame_meta(args, config, path) or ExposureMeta(),
            targets=tuple(targets),
        )
        for i, path in enumerate(paths)
    ]
    tables: list[Table] = []
    frames_meta: list[dict[str, Any]] = []
    failed = 0
    runner = OneFrame(zeropoint=args.zeropoint)
    with ProgressBar(len(paths), label="frames") as bar:
        for outcome in _outcomes(tasks, runner, config, catalogs, jobs):
            path = paths[outcome.frame_id]
            result = outcome.result
            if result is None:
                failed += 1
                text = outcome.error
                if outcome.outcome == "retry":  # its worker process died every time
                    text = f"{path}: {text}"
                bar.write(f"soapd: error: {text}", stream=sys.stderr)
                bar.advance()
                continue
            for line in summarise(result):
                bar.write(line)
            if targets and not result.summary.has_wcs:
                failed += 1
                bar.write(
                    f"soapd: error: {path}: no WCS, so forced photometry at the targets is "
                    "impossible; plate-solve the frame (e.g. astrometry.net) and run again",
                    stream=sys.stderr,
                )
            tables.append(result.table)
            frames_meta.append(dict(result.table.meta))
            bar.advance()
    if out is not None and tables:
        from astropy.table import vstack

        from soapd.output.export import write_table

        combined = vstack(tables, metadata_conflicts="silent") if len(tables) > 1 else tables[0]
        combined.meta = {"soapd_version": __version__, "frames": frames_meta}
        out.parent.mkdir(parents=True, exist_ok=True)
        write_table(combined, out)
        print(f"wrote {len(combined)} rows from {len(tables)} frame(s) to {out}")
    if failed:
        print(f"soapd: {failed} of {len(paths)} file(s) failed", file=sys.stderr)
        return 1
    return 0
