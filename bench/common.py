"""Shared helpers for soapd's benchmarks: timing, result rows, machine description.

Timings are wall-clock ``time.perf_counter`` seconds. A benchmark reports the
median of several repetitions with the min and max beside it, so that a noisy
(shared) machine shows itself as a wide range rather than as a wrong number.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent


@dataclass
class Row:
    """One line of the results table.

    ``times_s`` holds every counted repetition (seconds); ``value`` is for rows
    that report a count or a ratio instead of a time; ``aim`` states the issue's aim
    in words and ``meets_aim`` whether the median met it (None: no aim).
    """

    section: str
    case: str
    times_s: list[float] = field(default_factory=list)
    value: float | None = None
    unit: str = "s"
    aim: str = ""
    meets_aim: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s) if self.times_s else float("nan")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["median_s"] = self.median_s
        return d


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Return (seconds, result) of one call of ``fn``."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def repeat(fn: Callable[[], Any], n: int, *, warmup: int = 1) -> tuple[list[float], Any]:
    """Call ``fn`` ``warmup`` times uncounted, then ``n`` times; return (times_s, last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(n):
        dt, out = timed(fn)
        times.append(dt)
    return times, out


def interleave(
    cases: dict[str, Callable[[], Any]],
    n: int,
    *,
    warmup: int = 1,
    cpu_s: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Time several cases in turn (A B C A B C ...), so that drift hits all alike.

    Return wall seconds per case; with ``cpu_s`` also fill it with this process's
    CPU seconds (user + system) per repetition, which other programs' load on a
    shared machine disturbs less than wall time.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(n):
        for name, fn in cases.items():
            c0 = time.process_time()
            dt, _ = timed(fn)
            if cpu_s is not None:
                cpu_s.setdefault(name, []).append(time.process_time() - c0)
            times[name].append(dt)
    return times


def fmt_s(seconds: float) -> str:
    """Format seconds for a table: ms below one second."""
    if math.isnan(seconds):
        return "-"
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_range(times: Sequence[float]) -> str:
    if not times:
        return ""
    return f"{fmt_s(min(times))} - {fmt_s(max(times))}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("numpy", "astropy", "sep", "scipy", "sqlite_utils"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            out[name] = "missing"
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    return out


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """Describe the machine, the load at this moment and the software versions."""
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_1_5_15": list(os.getloadavg()),
        "platform": platform.platform(),
        "versions": _versions(),
        "git_head": _git_head(),
        "argv": sys.argv,
    }


def markdown_table(rows: Sequence[Row]) -> str:
    """Return the rows as a Markdown table (median, range, repetitions, aim, note)."""
    lines = [
        "| section | case | median | min - max | n | aim | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.times_s:
            med, rng, n = fmt_s(r.median_s), fmt_range(r.times_s), str(len(r.times_s))
        elif r.value is not None:
            med = f"{r.value:.4g} {r.unit}".strip()
            rng, n = "", ""
        else:
            med, rng, n = "-", "", ""
        aim = r.aim
        if r.meets_aim is not None:
            aim = f"{aim} ({'met' if r.meets_aim else 'NOT met'})"
        lines.append(f"| {r.section} | {r.case} | {med} | {rng} | {n} | {aim} | {r.note} |")
    return "\n".join(lines)


def bytecode_as_installed() -> None:
    """Give soapd's child processes compiled bytecode, as an installed soapd has.

    ``pip install`` compiles a package's ``.pyc`` files; a source checkout run with
    ``PYTHONDONTWRITEBYTECODE=1`` (as this machine's environment and ``.ci/run`` set)
    compiles every changed soapd module again in each new process, ~50 ms of a
    whole-process timing such as ``soapd lightcurve`` (0.31 s against 0.26 s, measured
    2026-12-06). This compiles the package once and lets the benches' child processes
    (which inherit the environment) use and write the cache.
    """
    import compileall

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(str(BENCH_DIR.parent / "soapd"), quiet=1)


def standalone_main(
    run: Callable[..., list[Row]], doc: str | None, name: str, argv: list[str] | None = None
) -> int:
    """Run one section's ``run(workdir, quick=...)`` in a temporary folder; print its table."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=(doc or name).splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and repetitions")
    args = parser.parse_args(argv)
    bytecode_as_installed()
    with tempfile.TemporaryDirectory(prefix=f"soapd-bench-{name}-") as tmp:
        rows = run(Path(tmp), quick=args.quick)
    print(markdown_table(rows))
    return 0
