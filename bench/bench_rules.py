"""Rule-state benchmark: recording a frame after a long history, and database bytes per frame.

Uses soapd's own code only (``soapd.frames.record_result``, ``soapd.store.Store``,
``soapd.testing.rule_oracle``) on database files in a temporary folder (WAL
journal, ``synchronous = NORMAL``, as the daemon opens them).

* **record_result after H frames**: one new frame measured at 100 watched targets
  (3 apertures; noisy fluxes around 17 mag with a 19.5 mag limit, so detections,
  limits and changes all occur) after H = 100, 1,000 and 10,000 earlier frames of
  the same targets. The history is written once with ``save_result`` and the file
  copied, so two databases hold the same H frames; then, interleaved frame by frame,
  ``record_result`` (rules on the rule state + one ``save_result``) runs on one and
  the **floor**, the bare ``save_result`` of the same frame without rules, on the
  other. The history-based evaluation used before issue 11
  (:func:`soapd.testing.rule_oracle.history_draft_alerts` + ``save_result``) is timed
  on the floor's copy afterwards, for the record. The first ``record_result`` after
  the bulk write builds every target's state from its history (timed on its own).
  Aims: t(10,000) <= 1.2 x t(100) and <= 50 ms.
* **database bytes per frame**: N frames through ``record_result`` into a database
  watching 1 target that every frame covers, and into one that also watches 100
  targets off every frame (their rows flagged NOT_COVERED | OFF_FRAME, as the
  pipeline marks targets outside the footprint). Bytes per frame = growth of the
  checkpointed file (``page_count x page_size``) / N. Aim: within 10 % of the
  1-target database.

Usage: ``.venv/bin/python bench/bench_rules.py [--quick]``.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from common import Row, interleave, repeat, standalone_main

N_TARGETS = 100
RADII = (3.0, 5.0, 7.0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _results(names: list[str], n: int, seed: int) -> list[Any]:
    """Return ``n`` noisy frame results of ``names`` (mid-times set by the caller)."""
    from soapd.testing.lightcurves import target_result

    rng = np.random.default_rng(seed)
    mags = {
        name: float(m) for name, m in zip(names, rng.uniform(16.0, 19.8, len(names)), strict=True)
    }
    return [
        target_result(mags, mid_time_utc=T0, aperture_radii_px=RADII, rng=rng) for _ in range(n)
    ]


def _at(result: Any, mid: datetime) -> Any:
    return replace(result, summary=replace(result.summary, mid_time_utc=mid))


def _build_history(path: Path, history: int) -> None:
    """Write ``history`` frames of N_TARGETS targets with bare ``save_result`` calls."""
    from soapd.models import Target
    from soapd.store import Store
    from soapd.testing.lightcurves import register_frame

    names = [f"T{i:04d}" for i in range(N_TARGETS)]
    pool = _results(names, 16, seed=history)
    with Store(path) as store:
        for i, name in enumerate(names):
            store.upsert_target(Target(name=name, ra_deg=150.0, dec_deg=-30.0 + i * 1e-3))
        for start in range(0, history, 500):
            with store.db.atomic():
                for k in range(start, min(history, start + 500)):
                    mid = T0 + timedelta(minutes=k)
                    fid = register_frame(store, f"h{k}", mid_time_utc=mid)
                    store.save_result(
                        fid, _at(pool[k % 16], mid), config_hash="b", soapd_version="b",
                        table_path=None,
                    )  # fmt: skip


def _record_cases(workdir: Path, history: int, reps: int, oracle_reps: int) -> list[Row]:
    from soapd.config import Config
    from soapd.frames import record_result
    from soapd.store import Store
    from soapd.testing.lightcurves import register_frame
    from soapd.testing.rule_oracle import history_draft_alerts

    cfg = Config()
    rules_db = workdir / f"rules_{history}.db"
    floor_db = workdir / f"floor_{history}.db"
    t0 = time.perf_counter()
    _build_history(rules_db, history)
    shutil.copyfile(rules_db, floor_db)
    print(
        f"rules: {history} frames of history written in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    names = [f"T{i:04d}" for i in range(N_TARGETS)]
    pool = _results(names, 8, seed=10**6 + history)
    rows: list[Row] = []
    with Store(rules_db) as rules, Store(floor_db) as floor:
        counter = iter(range(history, 10**9))

        def next_frame(store: Store) -> tuple[int, Any]:
            k = next(counter)
            mid = T0 + timedelta(minutes=k)
            return register_frame(store, f"n{k}", mid_time_utc=mid), _at(pool[k % 8], mid)

        # the first record_result builds every target's state from its history
        first = next_frame(rules)
        build_s, _ = repeat(
            lambda: record_result(rules, *first, config=cfg, table_path=None), 1, warmup=0
        )
        built = len(rules.rule_states_of(rules.target_ids().values()))
        rows.append(
            Row(
                "rules",
                f"record_result, first after a bulk write: {N_TARGETS} states built from "
                f"H = {history:,} frames",
                build_s,
                note=f"{built} targets' states built (rare path: migration, backfill)",
            )
        )
        floor.save_result(*next_frame(floor), config_hash=cfg.fingerprint(),
                          soapd_version="b", table_path=None)  # fmt: skip
        todo_rules = [next_frame(rules) for _ in range(reps + 1)]
        todo_floor = [next_frame(floor) for _ in range(reps + 1)]
        q_rules, q_floor = iter(todo_rules), iter(todo_floor)
        ids: list[int] = []

        def with_rules() -> None:
            ids.extend(record_result(rules, *next(q_rules), config=cfg, table_path=None))

        def bare() -> None:
            floor.save_result(
                *next(q_floor), config_hash=cfg.fingerprint(), soapd_version="b", table_path=None
            )

        cpu: dict[str, list[float]] = {}
        times = interleave({"rules": with_rules, "floor": bare}, reps, warmup=1, cpu_s=cpu)
        n_rows = len(pool[0].table)
        ratio = statistics.median(times["rules"]) / statistics.median(times["floor"])
        rows.append(
            Row(
                "rules",
                f"record_result: {N_TARGETS} targets after H = {history:,} frames",
                times["rules"],
                aim="<= 50 ms",
                meets_aim=statistics.median(times["rules"]) <= 0.050,
                note=(
                    f"{n_rows} rows/frame; {ratio:.2f}x the floor (wall), "
                    f"{statistics.median(cpu['rules']) / statistics.median(cpu['floor']):.2f}x "
                    f"(CPU); {len(ids)} alerts raised in the timed frames"
                ),
                extra={"cpu_s": cpu["rules"], "ratio_to_floor": ratio},
            )
        )
        rows.append(
            Row(
                "rules",
                f"floor: bare save_result of the same frame, H = {history:,}",
                times["floor"],
                note="no rules, no rule state (other copy of the same database)",
                extra={"cpu_s": cpu["floor"]},
            )
        )
        if oracle_reps:
            todo = [next_frame(floor) for _ in range(oracle_reps)]
            q_old = iter(todo)

            def old() -> None:
                fid, res = next(q_old)
                drafts = history_draft_alerts(floor, fid, res, config=cfg)
                floor.save_result(fid, res, alerts=drafts, config_hash=cfg.fingerprint(),
                                  soapd_version="b", table_path=None)  # fmt: skip

            old_times, _ = repeat(old, oracle_reps, warmup=0)
            rows.append(
                Row(
                    "rules",
                    f"before #11: history-based rules + save_result, H = {history:,}",
                    old_times,
                    note=(
                        f"{statistics.median(old_times) / statistics.median(times['floor']):.0f}x "
                        "the floor; soapd.testing.rule_oracle"
                    ),
                )
            )
    rules_db.unlink()
    floor_db.unlink()
    return rows


def _db_bytes(store: Any) -> int:
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    return int(pages) * int(store.db.execute("PRAGMA page_size").fetchone()[0])


def _bytes_case(workdir: Path, n_frames: int) -> list[Row]:
    from soapd.config import Config
    from soapd.flags import Flag
    from soapd.frames import record_result
    from soapd.models import Target
    from soapd.store import Store
    from soapd.testing.lightcurves import register_frame, target_result

    cfg = Config()
    off = [f"OFF{i:03d}" for i in range(N_TARGETS)]
    rng = np.random.default_rng(11)
    per_frame: dict[str, float] = {}
    rows_per_frame: dict[str, float] = {}
    for case, watched in (("1 on-field", ["ON"]), ("1 on-field + 100 off-field", ["ON", *off])):
        path = workdir / f"bytes_{len(watched)}.db"
        with Store(path) as store:
            for i, name in enumerate(watched):
                store.upsert_target(Target(name=name, ra_deg=150.0 + i, dec_deg=-30.0))
            # a few frames first, so that the tables and indexes have their first pages
            frames = []
            for k in range(n_frames + 20):
                mid = T0 + timedelta(minutes=k)
                mags: dict[str, float | None] = dict.fromkeys(watched)
                mags["ON"] = 17.0
                res = target_result(mags, mid_time_utc=mid, aperture_radii_px=RADII, rng=rng)
                flags = np.asarray(res.table["flag"]).astype(np.int64)
                outside = np.asarray(res.table["target_name"]) != "ON"
                flags[outside] |= int(Flag.NOT_COVERED | Flag.OFF_FRAME)
                res.table["flag"] = flags
                frames.append((register_frame(store, f"b{k}", mid_time_utc=mid), res))
            for fid, res in frames[:20]:
                record_result(store, fid, res, config=cfg, table_path=None)
            before = _db_bytes(store)
            rows_before = store.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
            for fid, res in frames[20:]:
                record_result(store, fid, res, config=cfg, table_path=None)
            per_frame[case] = (_db_bytes(store) - before) / n_frames
            rows_after = store.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
            rows_per_frame[case] = (rows_after - rows_before) / n_frames
        path.unlink()
    base = per_frame["1 on-field"]
    out = []
    for case, value in per_frame.items():
        ratio = value / base
        aim = case != "1 on-field"
        out.append(
            Row(
                "rules",
                f"database bytes per frame: {case} target(s)",
                value=value,
                unit="B",
                aim="within 10 % of 1 on-field" if aim else "",
                meets_aim=(abs(ratio - 1.0) <= 0.10) if aim else None,
                note=(
                    f"{ratio:.3f}x the 1-target database; {rows_per_frame[case]:.1f} "
                    f"measurement rows/frame; {n_frames} frames through record_result"
                ),
            )
        )
    return out


def run(workdir: Path, *, quick: bool = False) -> list[Row]:
    """Run the rule-state benchmark; return its rows."""
    workdir.mkdir(parents=True, exist_ok=True)
    reps = 5 if quick else 20
    rows: list[Row] = []
    histories = (100, 1000) if quick else (100, 1000, 10_000)
    for history in histories:
        rows += _record_cases(workdir, history, reps, oracle_reps=3 if history > 100 else reps)
    by_h = {
        h: r.median_s
        for h in histories
        for r in rows
        if r.case == f"record_result: {N_TARGETS} targets after H = {h:,} frames"
    }
    ratio = by_h[histories[-1]] / by_h[histories[0]]
    rows.append(
        Row(
            "rules",
            f"record_result t(H = {histories[-1]:,}) / t(H = {histories[0]:,})",
            value=ratio,
            unit="x",
            aim="<= 1.2x",
            meets_aim=ratio <= 1.2,
            note="medians of the rows above, same run",
        )
    )
    rows += _bytes_case(workdir, 100 if quick else 500)
    return rows


if __name__ == "__main__":
    sys.exit(standalone_main(run, __doc__, "rules"))
