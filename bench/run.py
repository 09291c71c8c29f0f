"""Run every soapd benchmark in one process run and print/write the results table.

``make bench`` runs this file. Sections: ``process`` (per-frame photometry against
the sep floor and skynetsoap), ``calibration`` (warm-cache time per frame, network
calls per night), ``store`` (one frame's rows in one transaction, a 100,000-point
lightcurve query), then every other ``bench/bench_<name>.py`` present (``daemon``,
``intake``, ...) through its ``run(workdir, quick=...) -> list[common.Row]``.

Inputs are seeded and synthetic; nothing leaves 127.0.0.1. The skynetsoap
comparison runs in ``bench/.skynetsoap-venv``, created on first use by
``bench/setup_skynetsoap.sh`` (if that fails, those rows are skipped). Results go to stdout (a Markdown table) and
to ``--out`` (JSON with every repetition, and the same table as Markdown).

Usage::

    .venv/bin/python bench/run.py [--quick] [--only process,store] [--sizes 1024,2048]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from common import BENCH_DIR, Row, bytecode_as_installed, machine_info, markdown_table

#: Sections with their own module here; any other ``bench/bench_<name>.py`` (daemon,
#: intake, ...) is a section too, run through its ``run(workdir, quick=...)``.
OWN_SECTIONS = ("process", "calibration", "store")


def sections() -> list[str]:
    """Return every section: the three above, then the other bench_*.py modules by name."""
    others = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    return [*OWN_SECTIONS, *(o for o in others if o not in OWN_SECTIONS)]


def _section(name: str, workdir: Path, args: argparse.Namespace) -> list[Row]:
    if name == "process":
        import bench_process

        plan = bench_process.Plan.quick() if args.quick else bench_process.Plan()
        if args.full:
            plan = bench_process.Plan.full()
        if not args.no_skynetsoap and not bench_process.skynetsoap_ready():
            print("setting up bench/.skynetsoap-venv (once)", file=sys.stderr, flush=True)
            setup = subprocess.run([str(BENCH_DIR / "setup_skynetsoap.sh")], check=False)
            if setup.returncode != 0:
                print("skynetsoap set-up failed: its rows are skipped", file=sys.stderr)
        sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else bench_process.SIZES
        return bench_process.run(
            workdir / "process", sizes=sizes, plan=plan, skynetsoap=not args.no_skynetsoap
        )
    if name == "calibration":
        import bench_calibration

        return bench_calibration.run(workdir / "calibration", quick=args.quick)
    if name == "store":
        import bench_store

        return bench_store.run(workdir / "store", quick=args.quick)
    return _other(name, workdir / name, args)


def _other(name: str, workdir: Path, args: argparse.Namespace) -> list[Row]:
    """Run another engineer's bench/bench_<name>.py: its ``run()`` if it has one, else as a script."""
    script = BENCH_DIR / f"bench_{name}.py"
    module = importlib.import_module(f"bench_{name}")
    if hasattr(module, "run"):
        workdir.mkdir(parents=True, exist_ok=True)
        out = module.run(workdir, quick=args.quick)
        rows = []
        for item in out or []:
            if isinstance(item, Row):
                rows.append(item)
            elif isinstance(item, dict):
                known = {k: item[k] for k in Row.__dataclass_fields__ if k in item}
                known.setdefault("section", name)
                known.setdefault("case", str(item.get("name", name)))
                rows.append(Row(**known))
            else:
                rows.append(Row(name, str(item)))
        return rows
    cmd = [sys.executable, str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=BENCH_DIR.parent)
    print(proc.stdout, file=sys.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    rows = [Row(name, f"bench_{name}.py (exit {proc.returncode})", note="its output below")]
    rows.extend(Row(name, "", note=ln.replace("|", "/")) for ln in lines[-40:])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run soapd's benchmarks and print a results table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--only", default=",".join(sections()), help="comma-separated sections to run"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="few repetitions, to check the harness (numbers not for quoting)",
    )
    parser.add_argument(
        "--sizes",
        default="",
        help="process frame sizes in px, comma-separated (default 1024,2048,4096)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="also run skynetsoap's 4k multi-aperture case (10+ minutes) instead of projecting it",
    )
    parser.add_argument(
        "--no-skynetsoap", action="store_true", help="skip the skynetsoap comparison"
    )
    parser.add_argument(
        "--workdir",
        default="",
        help="where frames and databases go (default: a temporary folder, removed after)",
    )
    parser.add_argument(
        "--out", default=str(BENCH_DIR / "results"), help="folder for results.json and results.md"
    )
    args = parser.parse_args(argv)
    # One thread for numerical libraries, for soapd and skynetsoap alike (the
    # subprocesses inherit it; numpy is first imported after this), so the
    # comparison is core for core.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    bytecode_as_installed()

    import logging

    # the benchmarks provoke expected warnings (e.g. a catalog missing from the chain)
    logging.getLogger("soapd").setLevel(logging.ERROR)
    info = machine_info()
    print(
        f"soapd benchmarks, {info['date_utc']}, {info['cpu']} x{info['cores']}, load {info['loadavg_1_5_15']}",
        file=sys.stderr,
    )
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="soapd-bench-"))
    t_start = time.perf_counter()
    rows: list[Row] = []
    failed = []
    try:
        for name in [s.strip() for s in args.only.split(",") if s.strip()]:
            if name not in sections():
                parser.error(f"unknown section {name!r}; choose from {', '.join(sections())}")
            t0 = time.perf_counter()
            try:
                rows.extend(_section(name, workdir, args))
            except Exception as exc:
                traceback.print_exc()
                failed.append(name)
                rows.append(Row(name, "section failed", note=f"{type(exc).__name__}: {exc}"))
            print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_after"] = list(os.getloadavg())
    info["total_s"] = time.perf_counter() - t_start
    info["quick"] = args.quick
    table = markdown_table(rows)
    header = (
        f"Measured {info['date_utc']} on {info['cpu']} ({info['cores']} cores), "
        f"load average before {info['loadavg_1_5_15'][0]:.2f} / after {info['loadavg_after'][0]:.2f}, "
        f"total {info['total_s']:.0f} s{' (QUICK: not for quoting)' if args.quick else ''}."
    )
    print(header)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(header + "\n\n" + table + "\n")
    (out / "results.json").write_text(
        json.dumps({"machine": info, "rows": [r.as_dict() for r in rows]}, indent=1, default=str)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
