"""Store benchmark: one frame's rows in one transaction, and a long lightcurve query.

Uses soapd's own Store API only (``soapd.store.Store``: ``upsert_target``,
``record_local``, ``save_result``, ``lightcurve``) on a database file in a temporary
folder (WAL journal, ``synchronous = NORMAL``, as the daemon opens it).

* **save_result, 6,000 rows**: a frame whose result table holds 6,000 target rows
  (2,000 watched targets x 3 apertures, all columns filled) written by one
  ``save_result`` call (frame summary + measurements + alerts in one transaction).
  Timed on fresh frames (inserts) and on re-saving a stored frame (the upsert path
  taken when a frame is processed again). Aim: < 30 ms.
* **lightcurve, 100,000 points**: ``Store.lightcurve(name)`` of one target with
  100,000 measurements (10,000 frames x 10 aperture radii), in a database that also
  holds the 2,000 other targets' rows. Aim: < 50 ms.
* **floors**, timed in turn with the cases above (A B A B ...): a plain ``sqlite3``
  ``executemany`` of the same 6,000 stored rows into a copy of ``measurements``
  without indexes or constraints (one transaction); the ``packed`` blobs of the
  lightcurve rows fetched with the store's WHERE and ORDER BY, row by row and as one
  ``group_concat`` value (the least any reader of this schema does: the store reads
  the second way); ``SELECT *`` from the ``lightcurve`` view (what an operator's
  script does).
* **soapd lightcurve, whole process**: ``python -m soapd lightcurve LC`` printing
  10,000 points (10,000 frames x 1 aperture, own database), against
  ``bench/floor_lightcurve.py`` (plain sqlite3 on the view, same lines), in turn;
  wall and CPU seconds of the child processes. Aim: < 0.3 s.
"""

from __future__ import annotations

import hashlib
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from common import BENCH_DIR, Row, interleave, repeat

N_TARGETS = 2000
RADII = (3.0, 5.0, 7.0)
LC_RADII = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0)
LC_FRAMES = 10_000


def _summary(i: int, when: datetime) -> Any:
    from soapd.models import FrameSummary

    return FrameSummary(
        image_file=f"frame_{i:06d}.fits",
        telescope="PROMPT-SYNTH",
        filter_raw="V",
        band="V",
        exptime_s=60.0,
        mid_time_utc=when,
        gain_e_per_adu=1.5,
        read_noise_e=6.0,
        saturation_adu=60000.0,
        fwhm_px=3.5,
        n_fwhm_stars=100,
        n_sources=6000,
        aperture_radii_px=RADII,
        zp_mag=23.0,
        zp_err_mag=0.01,
        zp_scatter_mag=0.03,
        n_cal_stars=80,
        cal_catalog="apass",
        cal_mag_system="Vega",
        lim_mag=20.5,
        lim_mag_robust=20.4,
        sky_rms_e=18.0,
        has_wcs=True,
        center_ra_deg=150.0,
        center_dec_deg=20.0,
        flags=0,
    )


def _table(
    names: list[str], rng: np.random.Generator, when: datetime, radii: tuple[float, ...] = RADII
) -> Any:
    """A result table: every name x every radius, all columns filled like the pipeline's."""
    from astropy.table import Table

    n_t, n_r = len(names), len(radii)
    n = n_t * n_r
    flux = rng.lognormal(8.0, 1.5, n)
    err = np.sqrt(flux + 400.0)
    ins = -2.5 * np.log10(flux / 60.0)
    mjd = (when - datetime(1858, 11, 17, tzinfo=UTC)).total_seconds() / 86400.0
    t = Table()
    t["image_file"] = np.full(n, "frame.fits")
    t["telescope"] = np.full(n, "PROMPT-SYNTH")
    t["filter"] = np.full(n, "V")
    t["exptime"] = np.full(n, 60.0)
    t["mjd"] = np.full(n, mjd)
    t["jd"] = t["mjd"] + 2400000.5
    t["x_pix"] = rng.uniform(0, 2048, n)
    t["y_pix"] = rng.uniform(0, 2048, n)
    t["ra"] = rng.uniform(149.5, 150.5, n)
    t["dec"] = rng.uniform(19.5, 20.5, n)
    t["flux"] = flux
    t["flux_err"] = err
    t["snr"] = flux / err
    t["ins_mag"] = ins
    t["ins_mag_err"] = 1.0857 * err / flux
    t["calibrated_mag"] = ins + 23.0
    t["calibrated_mag_err"] = np.hypot(t["ins_mag_err"], 0.01)
    t["cal_mag_system"] = np.full(n, "Vega")
    t["zeropoint"] = np.full(n, 23.0)
    t["zeropoint_err"] = np.full(n, 0.01)
    t["aperture_id"] = np.tile(np.arange(n_r), n_t)
    t["aperture_radius"] = np.tile(np.asarray(radii), n_t)
    t["fwhm"] = np.full(n, 3.5)
    t["n_cal_stars"] = np.full(n, 80)
    t["limiting_mag_analytic"] = np.full(n, 20.5)
    t["limiting_mag_robust"] = np.full(n, 20.4)
    t["limiting_mag"] = np.full(n, 20.4)
    t["is_forced"] = np.ones(n, dtype=bool)
    t["flag"] = np.zeros(n, dtype=np.int64)
    t["target_name"] = np.repeat(np.asarray(names), n_r)
    t["is_detection"] = t["snr"] >= 3.0
    t["band"] = np.full(n, "V")
    t["flux_ujy"] = flux * 0.01
    t["flux_ujy_err"] = err * 0.01
    t["ap_corr_mag"] = np.zeros(n)
    t.meta["lim_nsigma"] = 5.0
    return t


def _new_frame(store: Any, i: int) -> int:
    from soapd.models import ExposureMeta

    digest = hashlib.sha256(f"bench-frame-{i}".encode()).hexdigest()
    return store.record_local(
        Path(f"/nonexistent/frame_{i:06d}.fits"), digest, 1000, source="cli", meta=ExposureMeta()
    ).frame_id


def run(workdir: Path, *, quick: bool = False) -> list[Row]:
    """Run the store benchmark; return its rows."""
    from soapd.models import FrameResult, Target
    from soapd.store import Store

    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "bench.sqlite"
    db_path.unlink(missing_ok=True)
    rng = np.random.default_rng(6000)
    start = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    rows: list[Row] = []
    with Store(db_path) as store:
        # --- a 100,000-point lightcurve, built first (while few targets exist: the
        # build is set-up, not measured), queried after the 6,000-row frames below
        n_frames = LC_FRAMES // 10 if quick else LC_FRAMES
        store.upsert_target(Target(name="LC", ra_deg=150.0, dec_deg=20.0))
        t0 = time.perf_counter()
        lc_tables = [_table(["LC"], rng, start, LC_RADII) for _ in range(16)]
        build_times = []
        for k in range(n_frames):
            fid = _new_frame(store, 10**6 + k)
            when = start + timedelta(seconds=90 * k)
            res = FrameResult(summary=_summary(k, when), table=lc_tables[k % len(lc_tables)])
            t_save = time.perf_counter()
            store.save_result(fid, res, config_hash="bench", soapd_version="bench", table_path=None)
            build_times.append(time.perf_counter() - t_save)
        build_s = time.perf_counter() - t0
        n_points = n_frames * len(LC_RADII)
        k_edge = min(200, n_frames // 4)
        rows.append(
            Row(
                "store",
                f"save_result: one {len(LC_RADII)}-row frame of a target, first {k_edge} frames",
                build_times[:k_edge],
                note="each its own transaction",
            )
        )
        rows.append(
            Row(
                "store",
                f"save_result: the same, last {k_edge} frames (target has ~{n_points:,} points)",
                build_times[-k_edge:],
                note="should not grow with the target's history",
            )
        )
        print(
            f"store: {n_points} lightcurve points built in {build_s:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        names = [f"T{i:04d}" for i in range(N_TARGETS)]
        t0 = time.perf_counter()
        with store.db.atomic():
            for i, name in enumerate(names):
                store.upsert_target(Target(name=name, ra_deg=150.0 + i * 1e-4, dec_deg=20.0))
        print(
            f"store: {N_TARGETS} targets in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )

        # --- 6,000 rows in one save_result transaction
        counter = iter(range(10**9))
        results = [
            FrameResult(
                summary=_summary(k, start + timedelta(minutes=k)),
                table=_table(names, rng, start + timedelta(minutes=k)),
            )
            for k in range(3)
        ]
        n_rows = len(results[0].table)

        def save_new():
            k = next(counter)
            fid = _new_frame(store, k)
            res = results[k % len(results)]
            t_save = time.perf_counter()
            store.save_result(fid, res, config_hash="bench", soapd_version="bench", table_path=None)
            return fid, time.perf_counter() - t_save

        reps = 3 if quick else 10
        save_new()  # warm-up
        insert_times = [save_new()[1] for _ in range(reps)]
        fid_again, _ = save_new()

        def save_again():
            store.save_result(
                fid_again, results[0], config_hash="bench", soapd_version="bench", table_path=None
            )

        upsert_times, _ = repeat(save_again, reps, warmup=1)
        floor_times = _insert_floor(store.db.conn, fid_again, reps)
        stored = store.db.execute(
            "SELECT COUNT(*) FROM measurements WHERE frame_id = ?", [fid_again]
        ).fetchone()[0]
        rows.append(
            Row(
                "store",
                f"save_result: {n_rows:,}-row frame, one transaction (new frame)",
                insert_times,
                aim="< 30 ms",
                meets_aim=statistics.median(insert_times) < 0.030,
                note=f"{N_TARGETS} targets x {len(RADII)} apertures; {stored} rows stored; "
                f"mean {statistics.mean(insert_times) * 1e3:.1f} ms (checkpoints included "
                "where a commit ran one)",
            )
        )
        rows.append(
            Row(
                "store",
                f"save_result: same {n_rows:,}-row frame again (upsert)",
                upsert_times,
                aim="< 30 ms",
                meets_aim=statistics.median(upsert_times) < 0.030,
                note="re-processing path",
            )
        )
        rows.append(
            Row(
                "store",
                f"floor: plain sqlite3 executemany of the same {n_rows:,} rows, no index",
                floor_times,
                note=f"save_result = {statistics.median(insert_times) / statistics.median(floor_times):.1f}x this floor",
            )
        )

        tid = store.get_target("LC").target_id
        conn = store.db.conn
        cpu: dict[str, list[float]] = {}
        timing = interleave(
            {
                "lc": lambda: store.lightcurve("LC"),
                "packed": lambda: _packed_floor(conn, tid),
                "one value": lambda: _packed_one_value_floor(conn, tid),
                "view": lambda: _view_floor(conn),
            },
            3 if quick else 7,
            warmup=1,
            cpu_s=cpu,
        )
        times = timing["lc"]
        got = len(store.lightcurve("LC"))
        med = {k: statistics.median(v) for k, v in timing.items()}
        rows.append(
            Row(
                "store",
                f"lightcurve(): {got:,}-point target",
                times,
                aim="< 50 ms",
                meets_aim=med["lc"] < 0.050,
                note=f"DB {db_path.stat().st_size / 1e6:.0f} MB, {N_TARGETS + 1} targets; Table "
                f"with units; {med['lc'] / med['one value']:.2f}x the one-value packed floor, "
                f"{med['lc'] / med['packed']:.2f}x the row-by-row packed floor, "
                f"{med['lc'] / med['view']:.2f}x the view floor; CPU "
                f"{statistics.median(cpu['lc']) * 1e3:.0f} ms",
            )
        )
        rows.append(
            Row(
                "store",
                f"floor: sqlite3 fetch of the {got:,} packed rows one by one (store's WHERE, ORDER BY)",
                timing["packed"],
                note=f"CPU {statistics.median(cpu['packed']) * 1e3:.0f} ms",
            )
        )
        rows.append(
            Row(
                "store",
                f"floor: sqlite3 fetch of the {got:,} packed rows as one group_concat value",
                timing["one value"],
                note=f"CPU {statistics.median(cpu['one value']) * 1e3:.0f} ms",
            )
        )
        rows.append(
            Row(
                "store",
                "floor: sqlite3 SELECT * FROM lightcurve WHERE target_name = 'LC'",
                timing["view"],
                note=f"CPU {statistics.median(cpu['view']) * 1e3:.0f} ms; operator's query",
            )
        )
        band_times, _ = repeat(
            lambda: store.lightcurve(
                "LC", band="V", since_utc=start + timedelta(seconds=45 * n_frames)
            ),
            3 if quick else 7,
        )
        rows.append(
            Row(
                "store",
                "lightcurve(band=V, since=...): last ~half of it",
                band_times,
                note="filtered query",
            )
        )
    rows += _cli_rows(workdir, rng, start, quick=quick)
    return rows


def _insert_floor(conn: sqlite3.Connection, frame_id: int, reps: int) -> list[float]:
    """Time a plain executemany of one frame's stored rows into an index-free copy table."""
    data = conn.execute("SELECT * FROM measurements WHERE frame_id = ?", [frame_id]).fetchall()
    conn.execute("DROP TABLE IF EXISTS floor_measurements")
    conn.execute("CREATE TABLE floor_measurements AS SELECT * FROM measurements WHERE 0")
    marks = ",".join("?" * len(data[0]))

    def once() -> None:
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO floor_measurements VALUES ({marks})", data)
        conn.execute("COMMIT")

    times = []
    for _ in range(reps + 1):
        conn.execute("DELETE FROM floor_measurements")
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    conn.execute("DROP TABLE floor_measurements")
    return times[1:]


def _packed_floor(conn: sqlite3.Connection, target_id: int) -> np.ndarray:
    rows = conn.execute(
        "SELECT m.packed FROM measurements AS m WHERE m.target_id = ? AND (m.flags & 131072) = 0"
        " AND m.superseded = 0 ORDER BY m.mjd, m.frame_id, m.aperture_id, m.config_hash",
        [target_id],
    ).fetchall()
    return np.frombuffer(b"".join(r[0] for r in rows), dtype="<f8")


def _packed_one_value_floor(conn: sqlite3.Connection, target_id: int) -> np.ndarray:
    (blob,) = conn.execute(
        "SELECT CAST(group_concat(lc.packed, '') AS BLOB) FROM (SELECT m.packed "
        "FROM measurements AS m WHERE m.target_id = ? AND (m.flags & 131072) = 0"
        " AND m.superseded = 0 ORDER BY m.mjd, m.frame_id, m.aperture_id, m.config_hash) AS lc",
        [target_id],
    ).fetchone()
    return np.frombuffer(blob, dtype="<f8")


def _view_floor(conn: sqlite3.Connection) -> list[Any]:
    return conn.execute(
        "SELECT * FROM lightcurve WHERE target_name = 'LC' AND superseded = 0"
        " ORDER BY mjd, frame_id, aperture_id, config_hash"
    ).fetchall()


def _child_cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _cli_rows(
    workdir: Path, rng: np.random.Generator, start: datetime, *, quick: bool
) -> list[Row]:
    """Time ``soapd lightcurve LC`` (10,000 points) against the plain sqlite3 script."""
    from soapd.models import FrameResult, Target
    from soapd.store import Store

    folder = workdir / "cli"
    state = folder / "state"
    state.mkdir(parents=True, exist_ok=True)
    db = state / "soapd.db"
    db.unlink(missing_ok=True)
    n_frames = 1000 if quick else 10_000
    with Store(db) as store:
        store.upsert_target(Target(name="LC", ra_deg=150.0, dec_deg=20.0))
        tables = [_table(["LC"], rng, start, (3.0,)) for _ in range(16)]
        for k in range(n_frames):
            fid = _new_frame(store, 2 * 10**6 + k)
            when = start + timedelta(seconds=90 * k)
            res = FrameResult(summary=_summary(k, when), table=tables[k % len(tables)])
            store.save_result(fid, res, config_hash="bench", soapd_version="bench", table_path=None)
    config = folder / "soapd.toml"
    config.write_text(f'[paths]\nstate_dir = "{state}"\ncache_dir = "{folder / "cache"}"\n')
    env = {**os.environ, "PYTHONPATH": str(BENCH_DIR.parent), "MPLBACKEND": "Agg"}
    cmds = {
        "soapd": [sys.executable, "-m", "soapd", "lightcurve", "LC", "--config", str(config)],
        "floor": [sys.executable, str(BENCH_DIR / "floor_lightcurve.py"), str(db), "LC"],
    }
    wall: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    lines: dict[str, int] = {}
    for rep in range(1 + (2 if quick else 7)):
        for name, cmd in cmds.items():
            c0 = _child_cpu_s()
            t0 = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, check=True, text=True).stdout
            if rep:
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(_child_cpu_s() - c0)
            lines[name] = out.count("\n") - 1
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return [
        Row(
            "store",
            f"soapd lightcurve LC, whole process, {lines['soapd']:,} points (text)",
            wall["soapd"],
            aim="< 0.3 s",
            meets_aim=med["soapd"] < 0.3,
            note=f"{med['soapd'] / med['floor']:.1f}x the sqlite3 script; CPU "
            f"{med_cpu['soapd']:.2f} s ({med_cpu['soapd'] / med_cpu['floor']:.1f}x)",
        ),
        Row(
            "store",
            f"floor: bench/floor_lightcurve.py, same {lines['floor']:,} points",
            wall["floor"],
            note=f"plain sqlite3 on the view, python start-up included; CPU {med_cpu['floor']:.2f} s",
        ),
    ]
