"""Stacked epochs: time to rebuild a 16-frame stack of 256 px cutouts, against one frame.

Frames: 16 seeded synthetic 2048 x 2048 px frames of one field (``soapd.testing.series``:
5,000 stars, V 13-19.5, zero point 23.0, 60 s, FWHM 3.5 px, sky 300 e-, dithered by up
to 6 px, TAN WCS at 1"/px, plain FITS float32), a constant target at 21.1 mag.

* **floor**: ``soapd.pipeline.process_frame`` of one of these frames with the target,
  zero point given (no catalogue fit), in the same run.
* **rebuild, from files**: ``soapd.stacks.build_stack`` of the 16 frames reading
  every FITS file (what a rebuild costs with no cutout cache).
* **rebuild, one new frame**: 15 members' cutouts in the cutout cache
  (``soapd.stacks.CutoutCache``), the 16th read from its file: what the daemon does
  when a frame joins an open epoch.
* **rebuild, all cached**: every cutout from the cache.
* **alignment methods**: all cached, with ``reproject_method`` "auto" (the exact-overlap
  shift, these frames differ by translations), "adaptive" (reproject_adaptive with
  flux conservation) and "exact" (reproject_exact) forced on every frame.

Each case runs after one uncounted warm-up; cases are interleaved; medians with min-max.
The aim (issue 12): rebuilding is cheaper than processing one frame.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import Row, interleave, standalone_main

N_FRAMES = 16
SIZE = 2048
STARS = 5000
MAG = 21.1


def _setup(workdir: Path, size: int, n_frames: int) -> dict[str, Any]:
    import numpy as np

    from soapd.config import parse_config
    from soapd.models import Target
    from soapd.pipeline import process_frame
    from soapd.stacks import candidate_from_result, group_epochs
    from soapd.testing.series import field_stars, write_series

    cfg = parse_config(
        {
            "paths": {"state_dir": str(workdir / "state"), "cache_dir": str(workdir / "cache")},
            "logging": {"level": "WARNING"},
        },
        where="<bench>",
        base=workdir,
    )
    target = Target(name="GRB 261124A", ra_deg=150.0, dec_deg=20.0)
    rng = np.random.default_rng(20261124)
    stars = field_stars(
        round(STARS * (size / 2048) ** 2),
        ra_deg=150.0,
        dec_deg=20.0,
        shape=(size, size),
        pixscale_arcsec=1.0,
        rng=rng,
    )
    frames = write_series(
        workdir / "frames",
        n=n_frames,
        source_mag=MAG,
        stars=stars,
        shape=(size, size),
        seed=20261124,
    )
    candidates = []
    for i, f in enumerate(frames):
        res = process_frame(f.path, targets=[target], zeropoint=23.0, config=cfg)
        candidates.append(candidate_from_result(i + 1, f.path, res, target.name))
    epochs = group_epochs(
        candidates, trigger_time_utc=None, log_bin_factor=0.1, first_bin_s=60.0, fixed_bin_s=3600.0
    )
    if len(epochs) != 1:
        raise RuntimeError(f"expected one epoch, got {len(epochs)}")
    return {"config": cfg, "target": target, "frames": frames, "epoch": epochs[0]}


def run(workdir: Path, *, quick: bool = False) -> list[Row]:
    from soapd.pipeline import process_frame
    from soapd.stacks import CutoutCache, build_stack, cached_loader

    size = 1024 if quick else SIZE
    reps = 2 if quick else 7
    workdir.mkdir(parents=True, exist_ok=True)
    s = _setup(workdir, size, N_FRAMES)
    cfg, target, epoch, frames = s["config"], s["target"], s["epoch"], s["frames"]
    label = f"{N_FRAMES} x {size}^2 frames, {cfg.stacks.cutout_size_px}^2 cutouts"

    warm = CutoutCache(workdir / "cutouts-warm")
    build_stack(epoch, target, config=cfg, loader=cached_loader(warm, target, cfg))
    newest = epoch.frames[-1].frame_id
    partial_dir = workdir / "cutouts-partial"

    def one_new() -> Any:
        # 15 cutouts cached, the newest frame not yet: refill the cache folder each time.
        import shutil

        shutil.rmtree(partial_dir, ignore_errors=True)
        shutil.copytree(warm.directory, partial_dir)
        for p in partial_dir.glob(f"{newest}-*.npz"):
            p.unlink()
        cache = CutoutCache(partial_dir)
        return build_stack(epoch, target, config=cfg, loader=cached_loader(cache, target, cfg))

    def with_method(method: str) -> Any:
        c = cfg.replace(stacks=replace(cfg.stacks, reproject_method=method))
        return lambda: build_stack(epoch, target, config=c, loader=cached_loader(warm, target, c))

    cases = {
        "floor": lambda: process_frame(
            frames[0].path, targets=[target], zeropoint=23.0, config=cfg
        ),
        "files": lambda: build_stack(epoch, target, config=cfg),
        "one_new": one_new,
        "cached": with_method("auto"),
        "adaptive": with_method("adaptive"),
        "exact": with_method("exact"),
    }
    cpu: dict[str, list[float]] = {}
    times = interleave(cases, reps, warmup=1, cpu_s=cpu)
    floor = statistics.median(times["floor"])
    last = cases["cached"]()
    parts = {k: v for k, v in last.timings_s.items() if not k.startswith("measure:")}
    note_parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in parts.items())
    rows = [
        Row(
            "stack",
            f"floor: process_frame, one {size}^2 frame (zero point given)",
            times["floor"],
            note=f"CPU {statistics.median(cpu['floor']) * 1000:.0f} ms",
        )
    ]
    described = {
        "files": "rebuild, every frame read from its FITS file (no cache)",
        "one_new": "rebuild when a frame joins: 15 cutouts cached, 1 read from file",
        "cached": "rebuild, all 16 cutouts cached (alignment: auto = exact-overlap shift)",
        "adaptive": "rebuild, all cached, reproject_adaptive (conserve_flux) on every frame",
        "exact": "rebuild, all cached, reproject_exact on every frame",
    }
    for key, text in described.items():
        med = statistics.median(times[key])
        ratio = med / floor
        aim = "< 1 frame's processing" if key in ("one_new", "cached") else ""
        rows.append(
            Row(
                "stack",
                f"{label}: {text}",
                times[key],
                aim=aim,
                meets_aim=(ratio < 1.0) if aim else None,
                note=f"{ratio:.2f} x floor; CPU {statistics.median(cpu[key]) * 1000:.0f} ms"
                + (f"; stages of one run: {note_parts}" if key == "cached" else ""),
            )
        )
    rows.append(
        Row(
            "stack",
            f"{label}: result of the cached rebuild",
            value=last.lim_mag,
            unit="mag",
            note=(
                f"{last.n_frames} frames, 5-sigma limit {last.lim_mag:.2f} (predicted "
                f"{last.predicted_lim_mag:.2f}), target {last.mag:.2f} +/- {last.mag_err:.2f} "
                f"(injected {MAG}), alignment {sorted(set(last.alignment))}"
            ),
        )
    )
    return rows


if __name__ == "__main__":
    sys.exit(standalone_main(run, __doc__, "stack"))
