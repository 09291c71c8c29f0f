"""Dask vs the process pool: the daemon on the same 40 frames, 2 workers each.

Run: ``.venv/bin/python bench/bench_dask.py [--frames 40] [--rounds 2]``

The same N synthetic 1024 x 1024 frames (300 stars, calibration off) go through the
daemon (``Service.run_until_idle``, inbox start-up scan) with
``service.executor = "process"`` (``workers = 2``) and with ``executor = "dask"`` on a
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` started
beforehand (its start-up is not counted; the process pool's is, in "wall").
The runs alternate (process, dask, process, dask, ...) so that both see the same
machine load; the single-frame floor (``process_frame`` in turn, in this process) is
measured first. Reported per run: steady-state and wall frames/s and their ratio to
the floor; the load average before and after; the dask/process ratio per round.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench_daemon import daemon_run, floor_and_ceiling, load_text, write_frames
from common import bytecode_as_installed

from soapd.logs import setup_logging


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bytecode_as_installed()
    setup_logging("WARNING")
    import distributed

    with tempfile.TemporaryDirectory(prefix="soapd-bench-dask-") as name:
        tmp = Path(name)
        src = tmp / "inbox"
        files = write_frames(src, args.frames)
        floor, ceiling = floor_and_ceiling(files, tmp)
        with distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster:
            address = cluster.scheduler_address
            for r in range(args.rounds):
                got = {}
                for kind in ("process", "dask"):
                    extra = (
                        {"executor": "dask", "dask_scheduler": address} if kind == "dask" else {}
                    )
                    steady, wall = daemon_run(tmp, src, 2, f"{kind}{r}", **extra)
                    got[kind] = steady
                    print(
                        f"round {r + 1}, {kind:7s} 2 workers: steady {steady:.2f} frames/s = "
                        f"{steady / floor:.2f}x the floor ({steady / ceiling:.2f}x the ceiling); "
                        f"wall {wall:.2f} frames/s = "
                        f"{wall / floor:.2f}x"
                    )
                print(
                    f"round {r + 1}: dask / process (steady) = {got['dask'] / got['process']:.2f}"
                )
        print(f"after: {load_text()}")
    print(f"(python {sys.version.split()[0]}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
