"""Per-frame photometry time: soapd vs the sep floor vs skynetsoap, on the same frames.

Frames are synthetic (``soapd.testing.synth``), seeded, 1k/2k/4k square with a
realistic star density (1,250 stars per 1024x1024, magnitudes 11.5-20.5 at zero
point 23 in 60 s, so a few stars saturate), FWHM 3.5 px, sky 300 e-, 1"/px, V band.
A local APASS-style catalog of the same stars (V <= 17, 0.02 mag scatter) stands in
for VizieR for both soapd (``calibration.catalog_files``) and skynetsoap (its
``Vizier`` replaced by a local cone search), so both calibrate against the same stars.

Cases, all measured in one process run, interleaved per frame size:

* **sep floor (soapd settings)**: read the FITS file, ``sep.Background`` (64 px mesh,
  3x3 filter), subtract it, ``sep.extract`` at soapd's default threshold (SExtractor's
  DETECT_THRESH 1.5 with the 3x3 filter, ``filter_type="conv"``, minarea 5) against the
  background RMS *map*, ``sep.sum_circle`` at 5 px with that map as error. Nothing
  else: no WCS, no FWHM, no morphology, no calibration, no table.
* **sep floor (global RMS)**: the same with the scalar global RMS as error (what
  skynetsoap does); cheaper, shown for reference.
* **soapd process_frame**, in-process, default config (+ local catalog) and
  ``aperture_mode = "multi"`` (radii 3, 5, 7 px).
* **soapd process (CLI)**: the whole ``soapd process FILE --out OUT.ecsv`` command as a
  subprocess (interpreter start-up and imports included), and ``soapd --version`` for
  the start-up alone.
* **skynetsoap 1.0.1**: default config (``optimal`` aperture) and ``multi`` (3, 5,
  7 px), in its own venv via ``bench/skynetsoap_runner.py``; its 4k multi-aperture run
  is projected from the 1k and 2k ones (rows^k fit) when it would exceed the budget.

``--jobs-frames N`` (:func:`jobs_bench`): ``soapd process --jobs 2`` against
``--jobs 1`` and the single-frame floor on N frames.

Accuracy on the same frames: median calibrated magnitude minus the true magnitude of
isolated, unsaturated stars (true V 13-16.5) per aperture radius, the FWHM column
against the true 3.5 px, and how saturated stars come out.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import BENCH_DIR, Row, bytecode_as_installed, fmt_s, interleave, timed

SIZES = (1024, 2048, 4096)
STARS_PER_MPX = 1250
FWHM_PX = 3.5
GAIN = 1.5
ZP_MAG = 23.0
CAT_MAG_MAX = 17.0
SKYNETSOAP_PY = BENCH_DIR / ".skynetsoap-venv" / "bin" / "python"
SOAPD_BIN = Path(sys.executable).parent / "soapd"


@dataclass(frozen=True)
class Frame:
    size: int
    path: Path
    truth_path: Path
    catalog_path: Path
    config_path: Path
    n_stars: int


# --------------------------------------------------------------------------- frames
def make_frames(workdir: Path, sizes: tuple[int, ...], *, seed: int = 20261124) -> list[Frame]:
    """Write the seeded synthetic frames, truth tables, catalogs and soapd configs."""
    from soapd.testing.synth import make_frame, random_stars, write_frame

    frames = []
    for size in sizes:
        n_stars = round(STARS_PER_MPX * (size / 1024) ** 2)
        stem = workdir / f"synth_{size}"
        path = stem.with_suffix(".fits")
        truth_path = workdir / f"synth_{size}_truth.ecsv"
        catalog_path = workdir / f"synth_{size}_apass.ecsv"
        config_path = workdir / f"soapd_{size}.toml"
        if not (path.exists() and truth_path.exists() and catalog_path.exists()):
            rng = np.random.default_rng(seed + size)
            stars = random_stars(n_stars, (size, size), rng=rng, mag_range=(11.5, 20.5))
            frame = make_frame(
                (size, size),
                stars=stars,
                rng=rng,
                fwhm_px=FWHM_PX,
                gain_e_per_adu=GAIN,
                zeropoint_mag=ZP_MAG,
                exptime_s=60.0,
                sky_e=300.0,
                filter_name="V",
            )
            write_frame(path, frame.data_adu, frame.header)
            frame.truth.write(truth_path, overwrite=True)
            _write_catalog(frame.truth, catalog_path, rng)
            del frame
        state = workdir / f"state_{size}"
        config_path.write_text(
            "\n".join(
                [
                    "[paths]",
                    f'state_dir = "{state}"',
                    f'cache_dir = "{workdir / "catalog_cache"}"',
                    "[calibration]",
                    f'catalog_files = ["{catalog_path}"]',
                    "online = false",
                    "[logging]",
                    'level = "WARNING"',
                    "",
                ]
            )
        )
        frames.append(Frame(size, path, truth_path, catalog_path, config_path, n_stars))
    return frames


def _write_catalog(truth: Any, path: Path, rng: np.random.Generator) -> None:
    """Write an APASS DR9-style table (VizieR column names) of the frame's bright stars."""
    from astropy.table import Table

    bright = truth[np.asarray(truth["mag"]) <= CAT_MAG_MAX]
    v = np.asarray(bright["mag"]) + rng.normal(0.0, 0.02, len(bright))
    cat = Table(meta={"ID": "II/336/apass9", "name": "II/336/apass9"})
    cat["RAJ2000"] = np.asarray(bright["ra"])
    cat["DEJ2000"] = np.asarray(bright["dec"])
    # A fixed B-V = 0.6 star colour; the Sloan columns follow it (only V is used here).
    for name, offset in (
        ("Vmag", 0.0),
        ("Bmag", 0.6),
        ("g'mag", 0.3),
        ("r'mag", -0.2),
        ("i'mag", -0.4),
    ):
        cat[name] = v + offset
        cat[f"e_{name}"] = np.full(len(bright), 0.02)
    cat["B-V"] = np.full(len(bright), 0.6)
    cat["e_B-V"] = np.full(len(bright), 0.03)
    cat["nobs"] = np.full(len(bright), 10, dtype=np.int32)
    cat.write(path, overwrite=True)


# ----------------------------------------------------------------------- sep floor
def sep_floor(
    path: Path, *, rms_map: bool, thresh: float, minarea: int, radius_px: float, pixstack: int
) -> int:
    """Read + background + extract + aperture sums and nothing else; return the detections."""
    import sep
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        data = hdul[0].data.astype(np.float64)
    bkg = sep.Background(data, bw=64, bh=64, fw=3, fh=3)
    err = bkg.rms() if rms_map else bkg.globalrms
    bkg.subfrom(data)
    sep.set_extract_pixstack(pixstack)
    # soapd's threshold semantics (issue #10): the filtered image against the pixel RMS
    objects = sep.extract(data, thresh, err=err, minarea=minarea, filter_type="conv")
    sep.sum_circle(data, objects["x"], objects["y"], radius_px, err=err, gain=GAIN)
    return len(objects)


# --------------------------------------------------------------------------- soapd
def soapd_callable(frame: Frame, mode: str):
    """Return a zero-argument callable running ``process_frame`` on the frame, and the config."""
    from soapd.catalogs.service import CatalogService
    from soapd.config import load_config
    from soapd.pipeline import process_frame

    cfg = load_config(frame.config_path)
    if mode == "multi":
        cfg = cfg.replace(photometry=_replace(cfg.photometry, aperture_mode="multi"))
    # one long-lived reference-star provider, as a daemon worker holds one
    catalogs = CatalogService(cfg.calibration, cfg.paths.cache_dir)

    stage_log: list[dict[str, float]] = []

    def run():
        result = process_frame(frame.path, config=cfg, catalogs=catalogs)
        stage_log.append(dict(result.timings_s))
        return result

    run.stage_log = stage_log  # type: ignore[attr-defined]
    return run


def _replace(section, **changes):
    import dataclasses

    return dataclasses.replace(section, **changes)


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run a command; return (wall s, children's user+sys CPU s, exit code)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        print(
            f"  command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-2000:]}",
            file=sys.stderr,
        )
    return wall, cpu, proc.returncode


# ---------------------------------------------------------------------- skynetsoap
def skynetsoap_ready() -> bool:
    return SKYNETSOAP_PY.exists()


def run_skynetsoap(
    frame: Frame, workdir: Path, modes_repeat: dict[str, int], env: dict[str, str]
) -> list[dict]:
    """Run skynetsoap on one frame (each mode ``repeat`` times); return the runner's records."""
    records: list[dict] = []
    for mode, repeat in modes_repeat.items():
        if repeat <= 0:
            continue
        job = {
            "frames": [str(frame.path)],
            "modes": [mode],
            "repeat": repeat,
            "catalogs": {"II/336/apass9": str(frame.catalog_path)},
            "workdir": str(workdir / "skynetsoap"),
            "table_dir": str(workdir / "skynetsoap" / "tables"),
        }
        job_path = workdir / f"skynetsoap_job_{frame.size}_{mode}.json"
        out_path = workdir / f"skynetsoap_out_{frame.size}_{mode}.json"
        job_path.write_text(json.dumps(job))
        proc = subprocess.run(
            [
                str(SKYNETSOAP_PY),
                str(BENCH_DIR / "skynetsoap_runner.py"),
                str(job_path),
                "--out",
                str(out_path),
            ],
            env=env,
            cwd=str(workdir),
            check=False,
        )
        if proc.returncode != 0 or not out_path.exists():
            print(f"  skynetsoap runner failed on {frame.path.name} {mode}", file=sys.stderr)
            continue
        records.extend(json.loads(out_path.read_text())["records"])
    return records


def project_power_law(points: list[tuple[float, float]], x_new: float) -> tuple[float, float]:
    """Fit t = a * x^k through (x, t) points (log-log least squares); return (t(x_new), k)."""
    xs = np.log([p[0] for p in points])
    ts = np.log([p[1] for p in points])
    k, log_a = np.polyfit(xs, ts, 1)
    return float(math.exp(log_a + k * math.log(x_new))), float(k)


# ------------------------------------------------------------------------ accuracy
def accuracy(table: Any, truth: Any, exptime_s: float = 60.0) -> dict[str, Any]:
    """Compare a result table with the truth: calibrated-magnitude bias per radius, FWHM, saturation."""
    from scipy.spatial import cKDTree

    tx, ty = np.asarray(truth["x"]), np.asarray(truth["y"])
    tmag = np.asarray(truth["mag"])
    tsat = np.asarray(truth["saturated"], dtype=bool)
    tree_truth = cKDTree(np.column_stack([tx, ty]))
    # isolated: no other true star within 12 px that is less than 5 mag fainter
    pairs = tree_truth.query_ball_point(np.column_stack([tx, ty]), r=12.0)
    isolated = np.array(
        [all(j == i or tmag[j] > tmag[i] + 5.0 for j in p) for i, p in enumerate(pairs)]
    )
    good = isolated & ~tsat & (tmag >= 13.0) & (tmag <= 16.5)
    x = np.asarray(table["x_pix"], dtype=float)
    y = np.asarray(table["y_pix"], dtype=float)
    if "is_forced" in table.colnames:
        keep = ~np.asarray(table["is_forced"], dtype=bool)
    else:
        keep = np.ones(len(x), dtype=bool)
    dist, idx = tree_truth.query(np.column_stack([x, y]))
    matched = keep & (dist < 1.0)
    radii = np.round(np.asarray(table["aperture_radius"], dtype=float), 3)
    cal = np.asarray(table["calibrated_mag"], dtype=float)
    out: dict[str, Any] = {"per_radius": {}}
    for r in sorted(set(radii[matched].tolist())):
        sel = matched & (radii == r) & good[idx] & np.isfinite(cal)
        if sel.sum() < 5:
            continue
        d = cal[sel] - tmag[idx[sel]]
        out["per_radius"][f"{r:g}"] = {
            "n": int(sel.sum()),
            "cal_mag_bias": float(np.median(d)),
            "cal_mag_mad": float(1.4826 * np.median(np.abs(d - np.median(d)))),
        }
        if "ins_mag" in table.colnames and "exptime" in table.colnames:
            ins = np.asarray(table["ins_mag"], dtype=float)[sel]
            flux_total = exptime_s * 10 ** (-0.4 * ins)
            ratio = flux_total / np.asarray(truth["flux_e"])[idx[sel]]
            out["per_radius"][f"{r:g}"]["total_flux_bias"] = float(np.median(ratio) - 1.0)
    fwhm = np.asarray(table["fwhm"], dtype=float)
    out["fwhm_px"] = float(np.nanmedian(fwhm)) if len(fwhm) else float("nan")
    out["fwhm_true_px"] = FWHM_PX
    sat_rows = matched & tsat[idx]
    if sat_rows.any():
        flags = np.asarray(table["flag"], dtype=np.int64)[sat_rows]
        d = cal[sat_rows] - tmag[idx[sat_rows]]
        out["saturated"] = {
            "rows": int(sat_rows.sum()),
            "flagged_fraction": float(np.mean(flags != 0)),
            "median_cal_minus_true": float(np.nanmedian(d))
            if np.isfinite(d).any()
            else float("nan"),
        }
    return out


# -------------------------------------------------------------------------- driver
@dataclass
class Plan:
    """How many repetitions of each case; ``quick`` shrinks everything for debugging."""

    reps_small: int = 7
    reps_4k: int = 5
    cli_reps: int = 3
    sky_default: tuple[int, int, int] = (3, 2, 1)
    sky_multi: tuple[int, int, int] = (2, 1, 0)
    #: a skynetsoap run the plan skips is run once anyway when projected below this (s)
    sky_budget_s: float = 120.0

    @classmethod
    def full(cls) -> Plan:
        """The default plan, but skynetsoap's 4k multi-aperture run is measured (10+ min)."""
        return cls(sky_budget_s=1800.0)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            reps_small=2,
            reps_4k=1,
            cli_reps=1,
            sky_default=(1, 1, 0),
            sky_multi=(1, 0, 0),
            sky_budget_s=0.0,
        )


def run(
    workdir: Path,
    *,
    sizes: tuple[int, ...] = SIZES,
    plan: Plan | None = None,
    skynetsoap: bool = True,
) -> list[Row]:
    """Run the process benchmark; return its rows."""
    from astropy.table import Table

    from soapd.config import Config

    plan = plan or Plan()
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    frames = make_frames(workdir, sizes)
    defaults = Config()
    ex = defaults.extraction
    floor_kw = {
        "thresh": ex.thresh_sigma,
        "minarea": ex.minarea_px,
        "radius_px": defaults.photometry.fixed_radius_px,
        "pixstack": ex.pixstack,
    }
    rows: list[Row] = []
    sky_records: dict[tuple[int, str], dict] = {}
    soapd_tables: dict[tuple[int, str], Any] = {}
    soapd_ok = True
    for frame in frames:
        i_size = SIZES.index(frame.size) if frame.size in SIZES else 0
        reps = plan.reps_4k if frame.size >= 4096 else plan.reps_small
        label = f"{frame.size // 1024}k ({frame.size}x{frame.size}, {frame.n_stars} stars)"
        print(f"process: {label}", file=sys.stderr, flush=True)
        cases = {
            "floor_map": lambda f=frame: sep_floor(f.path, rms_map=True, **floor_kw),
            "floor_global": lambda f=frame: sep_floor(f.path, rms_map=False, **floor_kw),
        }
        if soapd_ok:
            try:
                cases["soapd_default"] = soapd_callable(frame, "default")
                cases["soapd_multi"] = soapd_callable(frame, "multi")
            except ImportError as exc:
                soapd_ok = False
                print(f"  soapd.pipeline.process_frame not available: {exc}", file=sys.stderr)
        cpu: dict[str, list[float]] = {}
        try:
            times = interleave(cases, reps, warmup=1, cpu_s=cpu)
        except Exception as exc:  # a soapd failure must not lose the other cases
            print(f"  soapd failed on {frame.path.name}: {exc!r}", file=sys.stderr)
            rows.append(Row("process", f"{label}: soapd process_frame", note=f"FAILED: {exc!r}"))
            for key in ("soapd_default", "soapd_multi"):
                cases.pop(key, None)
            cpu = {}
            times = interleave(cases, reps, warmup=1, cpu_s=cpu)
        n_det_map = sep_floor(frame.path, rms_map=True, **floor_kw)
        n_det_global = sep_floor(frame.path, rms_map=False, **floor_kw)
        floor_med = statistics.median(times["floor_map"])
        floor_glob_med = statistics.median(times["floor_global"])
        rows.append(
            Row(
                "process",
                f"{label}: sep floor, soapd settings (RMS map, {ex.thresh_sigma:g} sigma)",
                times["floor_map"],
                note=f"{n_det_map} detections; CPU {fmt_s(statistics.median(cpu['floor_map']))}",
            )
        )
        rows.append(
            Row(
                "process",
                f"{label}: sep floor, global RMS ({ex.thresh_sigma:g} sigma)",
                times["floor_global"],
                note=f"{n_det_global} detections; CPU {fmt_s(statistics.median(cpu['floor_global']))}",
            )
        )
        truth = Table.read(frame.truth_path)
        for mode in ("default", "multi"):
            key = f"soapd_{mode}"
            if key not in cases:
                continue
            counted = cases[key].stage_log[-reps:]  # the counted repetitions, not the warm-up
            _, result = timed(cases[key])
            soapd_tables[(frame.size, mode)] = result.table
            med = statistics.median(times[key])
            ratio = med / floor_med
            n_rows = len(result.table)
            cpu_ratio = statistics.median(cpu[key]) / statistics.median(cpu["floor_map"])
            note = (
                f"{n_rows} rows; {ratio:.2f}x floor (RMS map), {med / floor_glob_med:.2f}x floor "
                f"(global RMS); by CPU time {cpu_ratio:.2f}x floor (RMS map)"
            )
            stages = (
                {name: statistics.median([log[name] for log in counted]) for name in counted[0]}
                if counted
                else {}
            )
            if stages:
                note += "; stage medians: " + ", ".join(
                    f"{k} {fmt_s(v)}" for k, v in stages.items() if v >= 0.0005
                )
            row = Row("process", f"{label}: soapd process_frame, {mode}", times[key], note=note)
            row.extra = {
                "cpu_s": cpu[key],
                "cpu_ratio_to_floor_map": cpu_ratio,
                "ratio_to_floor_map": ratio,
                "ratio_to_floor_global": med / floor_glob_med,
                "stages_s": stages,
                "accuracy": accuracy(result.table, truth),
            }
            if mode == "default":
                row.aim = "<= 1.5x floor"
                row.meets_aim = ratio <= 1.5
            rows.append(row)
        # whole process: the CLI, interpreter start-up and imports included
        if soapd_ok and SOAPD_BIN.exists():
            out = workdir / f"cli_{frame.size}.ecsv"
            cli = [
                str(SOAPD_BIN),
                "process",
                str(frame.path),
                "--out",
                str(out),
                "--config",
                str(frame.config_path),
            ]
            floor_cmd = [sys.executable, str(Path(__file__).resolve()), "--floor", str(frame.path)]
            walls, cpus, codes, fwalls, fcpus = [], [], [], [], []
            run_cli(cli, env)  # warm-up (page cache, .pyc)
            run_cli(floor_cmd, env)
            for _ in range(plan.cli_reps):  # A B A B ...: drift hits both alike
                w, c, code = run_cli(cli, env)
                walls.append(w)
                cpus.append(c)
                codes.append(code)
                w, c, _ = run_cli(floor_cmd, env)
                fwalls.append(w)
                fcpus.append(c)
            ratio = statistics.median(walls) / statistics.median(fwalls)
            note = (
                f"CPU {statistics.median(cpus):.2f} s; {ratio:.2f}x the floor as a whole process "
                f"(wall), {statistics.median(cpus) / statistics.median(fcpus):.2f}x (CPU)"
            )
            if any(codes):
                note += f"; exit codes {codes}"
            rows.append(
                Row("process", f"{label}: soapd process (CLI, whole process)", walls, note=note)
            )
            rows.append(
                Row(
                    "process",
                    f"{label}: sep floor as a whole process (python + imports + floor)",
                    fwalls,
                    note=f"CPU {statistics.median(fcpus):.2f} s",
                )
            )
        # skynetsoap, same frame
        if skynetsoap and skynetsoap_ready():
            reps_map = {"default": plan.sky_default[i_size], "multi": plan.sky_multi[i_size]}
            reps_map = _run_if_affordable(frame, reps_map, sky_records, plan)
            for rec in run_skynetsoap(frame, workdir, reps_map, env):
                sky_records[(frame.size, rec["mode"])] = rec
                med = statistics.median(rec["times_s"])
                append = statistics.median(rec["append_rows_s"])
                row = Row(
                    "process",
                    f"{label}: skynetsoap 1.0.1, {rec['mode']}",
                    rec["times_s"],
                    note=f"{rec['n_rows']} rows; {med / floor_med:.1f}x floor (RMS map); {100 * append / med:.0f}% in add_row",
                )
                if "table" in rec:
                    row.extra["accuracy"] = accuracy(Table.read(rec["table"]), truth)
                row.extra["record"] = rec
                rows.append(row)
                soapd_key = "default" if rec["mode"] == "default" else "multi"
                if (frame.size, soapd_key) in soapd_tables:
                    soapd_row = next(
                        r for r in rows if r.case == f"{label}: soapd process_frame, {soapd_key}"
                    )
                    speedup = med / soapd_row.median_s
                    rows.append(
                        Row(
                            "process",
                            f"{label}: skynetsoap {rec['mode']} / soapd {soapd_key}",
                            value=speedup,
                            unit="x",
                            note="time ratio, same frame, same run",
                        )
                    )
    if skynetsoap and skynetsoap_ready():
        rows.extend(_projections(frames, sky_records, plan))
    rows.extend(accuracy_rows(rows))
    return rows


def accuracy_rows(rows: list[Row]) -> list[Row]:
    """One 'accuracy' row per measured table: magnitude bias per radius, FWHM, saturated stars."""
    out = []
    for r in rows:
        acc = r.extra.get("accuracy")
        if not acc:
            continue
        parts = []
        for radius, a in acc["per_radius"].items():
            text = f"r={float(radius):.2f}px: {a['cal_mag_bias']:+.3f} mag (MAD {a['cal_mag_mad']:.3f}, n={a['n']})"
            if "total_flux_bias" in a:
                text += f", total flux {100 * a['total_flux_bias']:+.1f}%"
            parts.append(text)
        note = "calibrated - true mag, isolated unsaturated V 13-16.5: " + "; ".join(parts)
        note += f". FWHM {acc['fwhm_px']:.2f} px (true {acc['fwhm_true_px']:.2f} px before pixel integration)"
        sat = acc.get("saturated")
        if sat:
            note += f". Saturated stars: {sat['rows']} rows, {100 * sat['flagged_fraction']:.0f}% flagged, {sat['median_cal_minus_true']:+.2f} mag"
        case = r.case.split(": ", 1)
        out.append(Row("accuracy", f"{case[0]}: {case[1] if len(case) > 1 else ''}", note=note))
    return out


def _run_if_affordable(
    frame: Frame, reps_map: dict[str, int], records: dict[tuple[int, str], dict], plan: Plan
) -> dict[str, int]:
    """Run a mode the plan skipped once when its projection from smaller frames fits the budget."""
    out = dict(reps_map)
    for mode, reps in reps_map.items():
        measured = [
            (s, statistics.median(records[(s, mode)]["times_s"]), records[(s, mode)]["n_rows"])
            for s in (1024, 2048)
            if (s, mode) in records
        ]
        if reps > 0 or len(measured) < 2 or plan.sky_budget_s <= 0:
            continue
        rows_est = measured[-1][2] * (frame.size / measured[-1][0]) ** 2
        t_est, _ = project_power_law([(m[2], m[1]) for m in measured], rows_est)
        if t_est <= plan.sky_budget_s:
            out[mode] = 1
    return out


def _projections(
    frames: list[Frame], records: dict[tuple[int, str], dict], plan: Plan
) -> list[Row]:
    """Project skynetsoap runs that were skipped (too long) from the measured ones."""
    rows = []
    for mode in ("default", "multi"):
        measured = [
            (
                records[(f.size, mode)]["n_rows"],
                statistics.median(records[(f.size, mode)]["times_s"]),
            )
            for f in frames
            if (f.size, mode) in records
        ]
        for f in frames:
            if (f.size, mode) in records or len(measured) < 2:
                continue
            # rows scale with detections; estimate this frame's rows from the default run or the star count
            per_size = [
                (s, records[(s, mode)]["n_rows"]) for s in (1024, 2048) if (s, mode) in records
            ]
            rows_est = per_size[-1][1] * (f.size / per_size[-1][0]) ** 2
            t_est, k = project_power_law(measured, rows_est)
            why = (
                f"over the {plan.sky_budget_s:.0f} s budget"
                if t_est > plan.sky_budget_s
                else "skipped by the repetition plan"
            )
            note = f"t = a*rows^k fitted to the measured runs (k = {k:.2f}), ~{rows_est:.0f} rows"
            other = "multi" if mode == "default" else "default"
            smaller = [s for s in (2048, 1024) if (s, mode) in records and (s, other) in records]
            if (f.size, other) in records and smaller:
                s = smaller[0]
                scale = statistics.median(records[(s, mode)]["times_s"]) / statistics.median(
                    records[(s, other)]["times_s"]
                )
                t_alt = statistics.median(records[(f.size, other)]["times_s"]) * scale
                note += f"; or {t_alt:.0f} s from its {other} run here x the {mode}/{other} ratio at {s}px"
            rows.append(
                Row(
                    "process",
                    f"{f.size // 1024}k: skynetsoap 1.0.1, {mode} (PROJECTED, not run)",
                    value=t_est,
                    unit="s",
                    note=f"{note}; {why}",
                )
            )
    return rows


def stage_medians(
    workdir: Path, size: int, *, n_targets: int, reps: int, seed: int = 0
) -> dict[str, float]:
    """Median ms per stage (and in total) of ``process_frame`` on the seeded frame of ``size``.

    ``n_targets`` forced positions 1" east of random true stars (so that they sit in the
    wings: the contamination test has work to do). One warm-up run is not counted. Works
    with any checkout on ``PYTHONPATH`` (stages it lacks are simply absent), so two
    checkouts can be compared stage by stage by alternating runs of ``--stages``.
    """
    from astropy.table import Table

    from soapd.catalogs.service import CatalogService
    from soapd.config import load_config
    from soapd.models import Target
    from soapd.pipeline import process_frame

    frame = make_frames(workdir, (size,))[0]
    cfg = load_config(frame.config_path)
    catalogs = CatalogService(cfg.calibration, cfg.paths.cache_dir)
    truth = Table.read(frame.truth_path)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(truth), n_targets, replace=False) if n_targets else []
    targets = [
        Target(
            name=f"t{i}", ra_deg=float(truth["ra"][j]) + 1 / 3600, dec_deg=float(truth["dec"][j])
        )
        for i, j in enumerate(pick)
    ]
    logs: list[dict[str, float]] = []
    totals: list[float] = []
    for k in range(reps + 1):
        start = time.perf_counter()
        result = process_frame(frame.path, config=cfg, catalogs=catalogs, targets=targets)
        if k:  # the first run warms caches up
            totals.append(time.perf_counter() - start)
            logs.append(result.timings_s)
    out = {name: 1000 * statistics.median(log[name] for log in logs) for name in logs[0]}
    out["total"] = 1000 * statistics.median(totals)
    out["n_sources"] = float(result.summary.n_sources)
    return out


def jobs_bench(n_frames: int, rounds: int) -> None:
    """``soapd process DIR --jobs 2`` vs ``--jobs 1`` vs the single-frame floor (issue 11).

    N synthetic 1024 x 1024 frames (300 stars, as bench_daemon.py), calibration off
    (``--zeropoint 23``). The floor is ``process_frame`` on each frame in turn, in this
    process (imports warm). The CLI runs are whole processes (interpreter start-up,
    imports, the worker pool's start-up, printing the summaries), alternating
    ``--jobs 1`` and ``--jobs 2`` so both see the same load. Prints frames/s, the ratios
    and the load average before and after.
    """
    import tempfile

    from bench_daemon import floor_and_ceiling, load_text, write_frames

    with tempfile.TemporaryDirectory(prefix="soapd-bench-jobs-") as name:
        tmp = Path(name)
        files = write_frames(tmp / "frames", n_frames)
        floor, ceiling = floor_and_ceiling(files, tmp)
        env = {**os.environ, "SOAPD_CONFIG": ""}
        for r in range(rounds):
            fps = {}
            for jobs in (1, 2):
                cmd = [str(SOAPD_BIN), "process", str(tmp / "frames"), "--zeropoint", "23"]
                run = timed_lines([*cmd, "--jobs", str(jobs)], env, n_frames, jobs)
                fps[jobs] = n_frames / run.wall_s
                print(
                    f"round {r + 1}: soapd process --jobs {jobs}: {run.wall_s:.2f} s wall, "
                    f"{fps[jobs]:.2f} frames/s = {fps[jobs] / floor:.2f}x the floor; first "
                    f"frame printed at {run.first_s:.2f} s; steady {run.steady_fps:.2f} "
                    f"frames/s = {run.steady_fps / floor:.2f}x the floor "
                    f"({run.steady_fps / ceiling:.2f}x the ceiling)"
                )
            print(f"round {r + 1}: --jobs 2 / --jobs 1 = {fps[2] / fps[1]:.2f}")
        print(f"after: {load_text()}")


@dataclass(frozen=True)
class TimedRun:
    """A ``soapd process`` run timed line by line (all times in s from its start)."""

    wall_s: float
    first_s: float  # the first frame's summary line printed
    steady_fps: float  # frames/s after the first round of results (as bench_daemon.steady_fps)


def timed_lines(args: list[str], env: dict[str, str], n_frames: int, jobs: int) -> TimedRun:
    """Run ``soapd process`` and time each frame's summary line as it is printed.

    A frame's summary is a line that does not start with a space (its notes are
    indented). The steady rate counts the frames after the first ``jobs`` lines (the
    first round of results), from the ``jobs``-th line to the last.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    stamps = [time.perf_counter() - t0 for line in proc.stdout if not line.startswith(" ")]
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, f"{' '.join(args)} failed: {err[-2000:]}"
    assert len(stamps) == n_frames, f"{len(stamps)} summaries for {n_frames} frames"
    steady = (n_frames - jobs) / (stamps[-1] - stamps[jobs - 1])
    return TimedRun(wall_s=wall, first_s=stamps[0], steady_fps=steady)


def main(argv: list[str] | None = None) -> int:
    """``--floor FILE``: the sep floor as a whole process; ``--stages SIZE``: stage medians.

    ``PYTHONPATH=<checkout> python bench/bench_process.py --stages 2048 --targets 300``
    prints one JSON line of per-stage medians (ms) of that checkout (see ``stage_medians``).
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--floor", metavar="FILE", help="FITS frame to measure")
    what.add_argument("--stages", metavar="SIZE", type=int, help="frame size (1024, 2048, 4096)")
    what.add_argument(
        "--jobs-frames", metavar="N", type=int, help="soapd process --jobs 2 vs 1 on N frames"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (--jobs-frames)")
    parser.add_argument("--global-rms", action="store_true", help="scalar RMS instead of the map")
    parser.add_argument("--targets", type=int, default=0, help="forced positions (--stages)")
    parser.add_argument("--reps", type=int, default=5, help="counted runs (--stages)")
    parser.add_argument("--workdir", help="folder for the frames (--stages; default: a temp dir)")
    args = parser.parse_args(argv)
    bytecode_as_installed()
    if args.jobs_frames:
        jobs_bench(args.jobs_frames, args.rounds)
        return 0
    if args.stages:
        import tempfile

        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="soapd-bench-stages-"))
        medians = stage_medians(workdir, args.stages, n_targets=args.targets, reps=args.reps)
        print(json.dumps(medians))
        return 0
    from soapd.config import Config

    ex = Config().extraction
    n = sep_floor(
        Path(args.floor),
        rms_map=not args.global_rms,
        thresh=ex.thresh_sigma,
        minarea=ex.minarea_px,
        radius_px=Config().photometry.fixed_radius_px,
        pixstack=ex.pixstack,
    )
    print(f"{n} detections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
