"""Per-stage time of ``soapd.pipeline.process_frame`` beside the sep floor, same run.

The sep floor is read (astropy, float64) + ``sep.Background`` + ``sep.extract`` against
the RMS map + ``sep.sum_circle`` at every detection. soapd's row is the default config
without catalogs (the calibration stage is then empty). Frames are synthetic and seeded
(``soapd.testing.synth``, about 1000 stars per 1024^2). Each stage's median time goes in
the row's ``extra`` so regressions point at a stage.

Usage::

    .venv/bin/python bench/bench_pipeline.py [--quick] [--sizes 1024,2048,4096]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sep
from astropy.io import fits
from common import Row, markdown_table

from soapd.config import Config
from soapd.pipeline import process_frame
from soapd.testing.synth import make_frame, write_frame


def _floor(path: Path) -> int:
    data = fits.getdata(path).astype(np.float64)
    bkg = sep.Background(data)
    sub = data - bkg.back()
    rms = bkg.rms()
    objects = sep.extract(sub, 3.0, err=rms)
    sep.sum_circle(sub, objects["x"], objects["y"], 5.0, err=rms, subpix=0)
    return len(objects)


def run(
    workdir: Path, *, quick: bool = False, sizes: tuple[int, ...] = (1024, 2048, 4096)
) -> list[Row]:
    workdir.mkdir(parents=True, exist_ok=True)
    reps = 2 if quick else 5
    rows: list[Row] = []
    config = Config()
    for n in sizes:
        frame = make_frame((n, n), stars=int(1000 * (n / 1024) ** 2), seed=1)
        path = write_frame(workdir / f"pipe_{n}.fits", frame.data_adu, frame.header)
        sep.set_extract_pixstack(config.extraction.pixstack)
        _floor(path)
        process_frame(path, config=config)
        floor_t: list[float] = []
        soapd_t: list[float] = []
        stages: dict[str, list[float]] = {}
        for _ in range(reps):
            t0 = time.perf_counter()
            n_obj = _floor(path)
            floor_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = process_frame(path, config=config)
            soapd_t.append(time.perf_counter() - t0)
            for name, secs in result.timings_s.items():
                stages.setdefault(name, []).append(secs)
        ratio = statistics.median(soapd_t) / statistics.median(floor_t)
        rows.append(Row("pipeline", f"{n}^2: sep floor ({n_obj} objects)", floor_t))
        rows.append(
            Row(
                "pipeline",
                f"{n}^2: process_frame default",
                soapd_t,
                aim="<= 1.5 x sep floor",
                meets_aim=ratio <= 1.5,
                note=f"{ratio:.2f} x floor",
                extra={k: statistics.median(v) for k, v in stages.items()},
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sizes", default="1024,2048,4096", help="frame sizes in px")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="soapd-bench-pipeline-") as tmp:
        rows = run(Path(tmp), quick=args.quick, sizes=sizes)
    print(markdown_table(rows))
    for row in rows:
        if row.extra:
            stages = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in row.extra.items())
            print(f"{row.case}: {stages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
