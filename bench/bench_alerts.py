"""Alerts benchmark: the per-frame cost of record_result, and draining the outbox.

Uses soapd's own code only (``soapd.frames.record_result``,
``soapd.alerts.outbox.flush``, ``soapd.store.Store``) on a database file in a
temporary folder.

* **record_result**: one new frame measured at N watched targets (3 apertures),
  each with H earlier frames of history: rules read every target's history
  (``Store.rule_history``), then one ``save_result`` transaction.
* **flush**: 200 pending alerts (50 targets x 4 rules, one batch per target),
  delivered through a file notifier (GCN text + JSON per message).

Usage: ``.venv/bin/python bench/bench_alerts.py [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import Row, fmt_range, fmt_s, repeat

from soapd.alerts.notifiers import FileNotifier
from soapd.alerts.outbox import flush
from soapd.config import AlertsConfig, Config
from soapd.frames import record_result
from soapd.models import AlertDraft, Target
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _record_case(workdir: Path, n_targets: int, history: int, reps: int) -> Row:
    cfg = Config()
    with Store(workdir / f"rec_{n_targets}_{history}.db") as store:
        names = [f"T{i:04d}" for i in range(n_targets)]
        for i, name in enumerate(names):
            store.upsert_target(Target(name=name, ra_deg=10.0 + i * 1e-3, dec_deg=5.0))
        mags = dict.fromkeys(names, 17.0)
        with store.db.atomic():
            for k in range(history):
                mid = T0 + timedelta(minutes=k)
                fid = register_frame(store, f"h{k}", mid_time_utc=mid)
                res = target_result(mags, mid_time_utc=mid, aperture_radii_px=(3.0, 5.0, 7.0))
                store.save_result(fid, res, config_hash="b", soapd_version="b", table_path=None)
        # Frames and results are built before timing: only record_result is timed.
        todo = []
        for k in range(reps + 1):
            mid = T0 + timedelta(minutes=history + k)
            fid = register_frame(store, f"n{k}", mid_time_utc=mid)
            todo.append(
                (fid, target_result(mags, mid_time_utc=mid, aperture_radii_px=(3.0, 5.0, 7.0)))
            )
        queue = iter(todo)

        def one() -> None:
            fid, res = next(queue)
            record_result(store, fid, res, config=cfg, table_path=None)

        times, _ = repeat(one, reps)
    return Row(
        "alerts",
        f"record_result: {n_targets} targets x {history} earlier frames (3 apertures)",
        times,
        note="rules on each target's history + one save_result",
    )


def _flush_case(workdir: Path, reps: int) -> Row:
    times = []
    for r in range(reps):
        with Store(workdir / f"flush{r}.db") as store:
            for t in range(50):
                name = f"T{t}"
                store.upsert_target(Target(name=name, ra_deg=1.0, dec_deg=1.0))
                drafts = [
                    AlertDraft(
                        target_name=name,
                        rule=f"r{k}",
                        dedupe_key=f"{name}|{k}",
                        batch_key=f"{name}|obs:1",
                        message=f"{name}: alert {k}",
                    )
                    for k in range(4)
                ]
                store.add_alerts(None, drafts)
            notifier = FileNotifier(workdir / f"out{r}")
            now = datetime.now(UTC) + timedelta(seconds=1)
            t, stats = repeat(
                lambda s=store, n=notifier, w=now: flush(
                    s, [n], config=AlertsConfig(batch_window_s=0), now=w
                ),
                1,
                warmup=0,
            )
            assert stats.sent == 200, stats
            times.extend(t)
    return Row("alerts", "flush: 200 pending alerts, 50 batches, file notifier", times)


def run(workdir: Path, *, quick: bool = False) -> list[Row]:
    workdir.mkdir(parents=True, exist_ok=True)
    reps = 3 if quick else 10
    return [
        _record_case(workdir, 10, 300 if quick else 1000, reps),
        _record_case(workdir, 100, 100 if quick else 300, reps),
        _flush_case(workdir, 2 if quick else 5),
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp), quick="--quick" in sys.argv):
            print(
                f"{row.case}: median {fmt_s(statistics.median(row.times_s))} "
                f"({fmt_range(row.times_s)}, n={len(row.times_s)})"
            )
