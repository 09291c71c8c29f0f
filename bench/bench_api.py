"""Python API benchmark: Soap.run processing vs reuse, and result-table selections at scale.

Everything runs through soapd's own code on this machine: the demo observation
(``soapd.testing.demo_field``, 512 x 512 px V frames) served by
``soapd.testing.fake_skynet.FakeSkynet`` on 127.0.0.1, calibration from the
demo's local catalog file.

* **run, first**: ``Soap.run(forced_positions=[...])`` downloads and processes every
  frame (``soapd.frames.run_task`` in this process + ``record_result``); seconds per frame.
* **run, reuse**: the same call again: every frame's stored Parquet table is read
  back instead (no pixel work); seconds per frame, and the speed-up over the first.
* **extract_target**: the nearest row per frame within 3" of one position in a
  field-wide table of N rows (N = 1e5 and 1e6: 1,000 frames x 100 / 1,000 sources).
* **filter_by_date + filter_by_band**: both selections on the same tables.

Usage: ``.venv/bin/python bench/bench_api.py [--quick]``; ``run(workdir, quick=...)``
returns rows for ``bench/run.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from common import Row, repeat, standalone_main, timed

from soapd.api.results import PhotometryResult
from soapd.api.select import extract_target
from soapd.api.soap import Soap
from soapd.config import parse_config
from soapd.testing.demo_field import build_demo_field, load_into
from soapd.testing.fake_skynet import FakeSkynet


def field_table(n_frames: int, n_sources: int, seed: int = 1) -> Table:
    """Return a field-wide result table: n_frames x n_sources rows around (150, +20)."""
    rng = np.random.default_rng(seed)
    ra0 = 150.0 + rng.uniform(-0.15, 0.15, n_sources)
    dec0 = 20.0 + rng.uniform(-0.15, 0.15, n_sources)
    n = n_frames * n_sources
    jitter = rng.normal(0.0, 0.1 / 3600.0, (2, n))
    frame = np.repeat(np.arange(n_frames), n_sources)
    return Table(
        {
            "image_file": np.char.add("f", frame.astype(str)),
            "mjd": 61000.0 + frame * 0.01,
            "filter": np.where(frame % 2 == 0, "V", "rprime"),
            "ra": np.tile(ra0, n_frames) + jitter[0],
            "dec": np.tile(dec0, n_frames) + jitter[1],
            "snr": rng.uniform(3.0, 300.0, n),
            "is_forced": np.zeros(n, dtype=bool),
            "flag": np.zeros(n, dtype=np.int64),
            "aperture_id": np.zeros(n, dtype=np.int64),
            "calibrated_mag": rng.uniform(12.0, 20.0, n),
        }
    )


def bench_selections(quick: bool) -> list[Row]:
    rows: list[Row] = []
    sizes = [(1000, 100)] if quick else [(1000, 100), (1000, 1000)]
    for n_frames, n_sources in sizes:
        table = field_table(n_frames, n_sources)
        n = len(table)
        ra, dec = float(table["ra"][0]), float(table["dec"][0])
        times, lc = repeat(lambda t=table, a=ra, d=dec: extract_target(t, a, d), 3 if quick else 5)
        rows.append(
            Row(
                "api",
                f"extract_target, {n:,} rows ({n_frames} frames)",
                times,
                note=f"{len(lc)} points found",
            )
        )
        res = PhotometryResult(table)
        times, sel = repeat(
            lambda r=res: r.filter_by_date(after=61002.0, before=61008.0).filter_by_band("V"),
            3 if quick else 5,
        )
        rows.append(
            Row(
                "api",
                f"filter_by_date + filter_by_band, {n:,} rows",
                times,
                note=f"{len(sel):,} rows kept",
            )
        )
    return rows


def bench_run(workdir: Path, quick: bool) -> list[Row]:
    n_frames = 4 if quick else 12
    demo = build_demo_field(workdir / "demo", n_frames=n_frames)
    riser = SkyCoord(demo.targets[1].ra_deg, demo.targets[1].dec_deg, unit="deg")
    with FakeSkynet() as fake:
        load_into(fake, demo, archived=True)
        cfg = parse_config(
            {
                "skynet": {"api_url": fake.url},
                "paths": {"state_dir": str(workdir / "state"), "cache_dir": str(workdir / "c")},
                "calibration": {"catalog_files": [str(demo.catalog_path)], "online": False},
                "logging": {"level": "WARNING"},
            }
        )
        with Soap(demo.obs_id, config=cfg, token=fake.token) as soap:
            first_s, _ = timed(lambda: soap.run(forced_positions=[riser]))
            assert len(soap.last_run.processed) == n_frames
            reuse, _ = repeat(lambda: soap.run(forced_positions=[riser]), 3, warmup=0)
            assert len(soap.last_run.reused) == n_frames
    per_first = first_s / n_frames
    per_reuse = [t / n_frames for t in reuse]
    return [
        Row(
            "api",
            f"Soap.run first (download + process), per frame, {n_frames} frames",
            [per_first],
            note="512x512 demo frames, forced position, offline catalog",
        ),
        Row(
            "api",
            "Soap.run again (stored tables reused), per frame",
            per_reuse,
            note=f"speed-up x{per_first / float(np.median(per_reuse)):.0f} over the first run",
        ),
    ]


def run(workdir: Path, *, quick: bool = False) -> list[Row]:
    workdir.mkdir(parents=True, exist_ok=True)
    return bench_run(workdir, quick) + bench_selections(quick)


if __name__ == "__main__":
    sys.exit(standalone_main(run, __doc__, "api"))
