"""Calibration benchmark: time per frame with a warm catalog cache; network calls per night.

Everything goes through soapd's own code: ``soapd.catalogs.CatalogService`` with its
real ``VizierFetcher`` (astroquery over HTTP), pointed by ``calibration.vizier_server``
at a local fake VizieR (bench/fake_vizier.py) that counts the requests it answers,
and ``soapd.pipeline.calibrate.calibrate_sources`` for the zero-point fit.

The field: the seeded 2k synthetic frame of bench_process (34' x 34' at 1"/px,
centre 150, +20 deg), its true stars as the sky (plus random field stars out to
1 deg so that neighbouring tiles are not empty); sources are its stars with
V < 20 as a detection table would give them (instrumental magnitudes with noise).

* **cold**: first frame, empty cache: VizieR queries + parse + cache write + fit.
* **warm, same service**: tiles in memory (one long-lived worker).
* **warm, new service per frame**: tiles read from the disk cache each time (a fresh
  worker process or a restart).
* **a night on one field**: 300 frames, V and R alternating, pointing scattered by
  1' (sigma) around the field centre, each with a *new* CatalogService sharing one
  cache folder; the fake server counts the network calls, compared with the number
  of distinct (catalog, tile) pairs the night's cones cover.

The extraction time of the same frame (sep floor: read + background + extract +
sums, soapd settings) is measured alongside for the "well under the extraction
time" comparison.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import Row, fmt_s, repeat
from fake_vizier import FakeVizier

NIGHT_FRAMES = 300
JITTER_ARCMIN = 1.0


def _sky_and_sources(
    truth: Any, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Return the fake sky (ra, dec, V) and the frame's detection table."""
    from astropy.table import Table

    ra_t, dec_t, v_t = (np.asarray(truth[c], float) for c in ("ra", "dec", "mag"))
    n_field = 20000
    cos = np.cos(np.radians(20.0))
    ra_f = 150.0 + rng.uniform(-1.0, 1.0, n_field) / cos
    dec_f = 20.0 + rng.uniform(-1.0, 1.0, n_field)
    half = size / 2 / 3600.0
    outside = (np.abs((ra_f - 150.0) * cos) > half) | (np.abs(dec_f - 20.0) > half)
    v_f = rng.uniform(10.0, 17.5, n_field)
    bright = v_t <= 17.5
    ra = np.concatenate([ra_t[bright], ra_f[outside]])
    dec = np.concatenate([dec_t[bright], dec_f[outside]])
    vmag = np.concatenate([v_t[bright], v_f[outside]])
    det = v_t < 20.0
    flux = 60.0 * 10 ** (-0.4 * (v_t[det] - 23.0))
    err = np.sqrt(flux + 3.14 * 4.4**2 * 300.0)
    sources = Table()
    sources["ra"] = ra_t[det]
    sources["dec"] = dec_t[det]
    sources["ins_mag"] = -2.5 * np.log10(flux / 60.0) + rng.normal(0, 1.0857 * err / flux)
    sources["ins_mag_err"] = 1.0857 * err / flux
    sources["flag"] = np.zeros(det.sum(), dtype=np.int64)
    sources["snr"] = flux / err
    sources["x_pix"] = np.asarray(truth["x"], float)[det]
    sources["y_pix"] = np.asarray(truth["y"], float)[det]
    return ra, dec, vmag, sources


def run(workdir: Path, *, quick: bool = False) -> list[Row]:
    """Run the calibration benchmark; return its rows."""
    import bench_process
    from astropy.table import Table

    from soapd.catalogs.cache import tiles_for_cone
    from soapd.catalogs.service import CatalogService
    from soapd.config import Config
    from soapd.pipeline.calibrate import calibrate_sources

    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("catalog_cache", "night_cache"):  # every run starts cold
        shutil.rmtree(workdir / stale, ignore_errors=True)
    size = 2048
    (frame,) = bench_process.make_frames(workdir, (size,))
    truth = Table.read(frame.truth_path)
    rng = np.random.default_rng(4)
    ra, dec, vmag, sources = _sky_and_sources(truth, size, rng)
    radius_deg = size * np.sqrt(2) / 2 / 3600.0
    rows: list[Row] = []
    with FakeVizier(ra, dec, vmag) as server:
        base = Config().calibration
        cfg = dataclasses.replace(base, online=True, vizier_server=server.url, timeout_s=30.0)

        def calibrate(
            service: CatalogService, band: str = "V", ra_c: float = 150.0, dec_c: float = 20.0
        ):
            return calibrate_sources(
                sources,
                band=band,
                center_ra_deg=ra_c,
                center_dec_deg=dec_c,
                radius_deg=radius_deg,
                config=cfg,
                catalogs=service,
            )

        cache_dir = workdir / "catalog_cache"
        service = CatalogService(cfg, cache_dir)
        t_cold, cal = _timed(lambda: calibrate(service))
        cold_calls = server.calls
        note = f"{cold_calls} VizieR calls; zp {cal.zp_mag:.3f} (true 23.000) +- {cal.zp_err_mag:.3f} from {cal.n_stars} stars of {cal.catalog}; {len(sources)} sources"
        rows.append(
            Row(
                "calibration",
                "cold cache: first frame (fetch + parse + cache + fit)",
                [t_cold],
                note=note,
            )
        )

        reps = 3 if quick else 15
        warm_mem, cal = repeat(lambda: calibrate(service), reps)
        calls_mem = server.calls - cold_calls

        def fresh():
            return calibrate(CatalogService(cfg, cache_dir))

        warm_disk, _ = repeat(fresh, reps)
        calls_disk = server.calls - cold_calls - calls_mem
        floor_kw = {
            "rms_map": True,
            "thresh": 3.0,
            "minarea": 5,
            "radius_px": 5.0,
            "pixstack": 1_000_000,
        }
        floor_times, _ = repeat(
            lambda: bench_process.sep_floor(frame.path, **floor_kw), 3 if quick else 7
        )
        floor = statistics.median(floor_times)
        rows.append(
            Row(
                "calibration",
                f"{size // 1024}k frame extraction, for comparison (sep floor, soapd settings)",
                floor_times,
            )
        )
        for label, times, calls in (
            ("warm cache, same CatalogService (tiles in memory)", warm_mem, calls_mem),
            ("warm cache, new CatalogService per frame (tiles from disk)", warm_disk, calls_disk),
        ):
            med = statistics.median(times)
            rows.append(
                Row(
                    "calibration",
                    label,
                    times,
                    aim="well under extraction",
                    meets_aim=med < 0.25 * floor,
                    note=f"{100 * med / floor:.0f}% of the extraction floor; {calls} VizieR calls",
                )
            )

        # a night on one field, fresh service per frame, one shared cache folder
        night_cache = workdir / "night_cache"
        before = server.calls
        before_req = dict(server.requests)
        n_frames = 40 if quick else NIGHT_FRAMES
        jitter = rng.normal(0.0, JITTER_ARCMIN / 60.0, (n_frames, 2))
        wanted: set[tuple[str, str]] = set()
        per_frame = []
        zps = []
        t0 = time.perf_counter()
        for k in range(n_frames):
            band = "V" if k % 2 == 0 else "R"
            ra_c = 150.0 + jitter[k, 0] / np.cos(np.radians(20.0))
            dec_c = 20.0 + jitter[k, 1]
            svc = CatalogService(cfg, night_cache)
            dt, cal = _timed(
                lambda svc=svc, band=band, ra_c=ra_c, dec_c=dec_c: calibrate(svc, band, ra_c, dec_c)
            )
            per_frame.append(dt)
            if cal.catalog:
                zps.append(cal.zp_mag)
                wanted.update(
                    (cal.catalog, t.key)
                    for t in tiles_for_cone(ra_c, dec_c, radius_deg, cfg.tile_deg)
                )
        night_s = time.perf_counter() - t0
        calls = server.calls - before
        by_cat = {
            k: v - before_req.get(k, 0)
            for k, v in server.requests.items()
            if v - before_req.get(k, 0)
        }
        rows.append(
            Row(
                "calibration",
                f"night on one field: {n_frames} frames (V, R), 1' pointing scatter, new service per frame",
                value=calls,
                unit="VizieR calls",
                aim="one per catalog tile",
                meets_aim=calls <= len(wanted),
                note=f"{len(wanted)} distinct (catalog, tile) pairs used; calls by table {by_cat}; median {fmt_s(statistics.median(per_frame))}/frame, total {night_s:.1f} s; {len(zps)}/{n_frames} frames calibrated",
            )
        )
    print(
        f"calibration: done, {server.calls} fake VizieR requests in all",
        file=sys.stderr,
        flush=True,
    )
    return rows


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out
