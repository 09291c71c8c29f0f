"""The daemon on a real dask ``LocalCluster`` (2 worker processes) against the process pool.

The same six demo frames go through ``Service.run_until_idle`` twice from an inbox:
once with ``executor = "process"`` (2 worker processes), once with ``executor =
"dask"`` on a ``LocalCluster(n_workers=2, processes=True)``, once more on dask with
the frames' bytes sent to the workers (``dask_send_frames``). The ledger, the
measurements and the alerts must agree row for row (wall-clock columns and the
run's own folder aside).

CI installs the ``dask`` extra (.ci/run) and sets ``SOAPD_REQUIRE_DASK=1``, so these
tests fail there instead of being skipped when dask is missing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soapd.config import Config, parse_config
from soapd.daemon.service import Service
from soapd.testing.demo_field import DemoField

if os.environ.get("SOAPD_REQUIRE_DASK"):
    import distributed
else:
    distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(240)

#: Columns that hold wall-clock times or the config's hash (the executor differs).
VOLATILE = {
    "seen_at",
    "updated_at",
    "processed_at",
    "created_at",
    "next_attempt_at",
    "sent_at",
    "config_hash",
}


@pytest.fixture(name="cluster", scope="module")
def fixture_cluster() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes, one thread each.

    dask starts two process-wide helper threads (offload, future callbacks) the first
    time a client uses them; they are started here, before any test's thread check.
    """
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
    ) as cluster:
        with distributed.Client(cluster) as client:
            done = threading.Event()
            future = client.submit(abs, -1)
            future.add_done_callback(lambda _f: done.set())
            assert future.result() == 1
            done.wait(30)
        yield cluster


def _config(root: Path, demo: DemoField, **service: Any) -> Config:
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    for frame in demo.frames:
        shutil.copy(frame.path, inbox / frame.path.name)
    data = {
        "paths": {
            "state_dir": str(root / "state"),
            "cache_dir": str(root / "cache"),
            "inbox_dir": str(inbox),
        },
        "service": {"workers": 2, "process_interval_s": 1.0, **service},
        "calibration": {"online": False, "catalog_files": [str(demo.catalog_path)]},
        "alerts": {"batch_window_s": 0.0},
        "targets": [
            {"name": t.name, "ra_deg": t.ra_deg, "dec_deg": t.dec_deg} for t in demo.targets
        ],
    }
    return parse_config(data, base=root)


def _dump(cfg: Config) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the ledger, measurements and alerts, comparable across runs."""
    state = str(cfg.paths.state_dir)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with sqlite3.connect(cfg.paths.db_path) as db:
        for table in ("frames", "measurements", "alerts"):
            cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            keep = [c for c in cols if c not in VOLATILE]
            rows = db.execute(f"SELECT {', '.join(keep)} FROM {table} ORDER BY rowid").fetchall()
            out[table] = [
                tuple(v.replace(state, "<state>") if isinstance(v, str) else v for v in row)
                for row in rows
            ]
    return out


def _run(cfg: Config) -> dict[str, list[tuple[Any, ...]]]:
    assert Service(cfg, env={}).run_until_idle(poll=False) == 0
    return _dump(cfg)


def test_dask_run_matches_the_process_pool_row_for_row(
    tmp_path: Path, demo_field: DemoField, cluster: Any
) -> None:
    address = cluster.scheduler_address
    runs = {
        "process": _run(_config(tmp_path / "process", demo_field)),
        "dask": _run(
            _config(tmp_path / "dask", demo_field, executor="dask", dask_scheduler=address)
        ),
        "dask-bytes": _run(
            _config(
                tmp_path / "bytes",
                demo_field,
                executor="dask",
                dask_scheduler=address,
                dask_send_frames=True,
            )
        ),
    }
    ref = runs["process"]
    assert len(ref["frames"]) == len(demo_field.frames)
    assert len(ref["measurements"]) >= len(demo_field.frames) * len(demo_field.targets)
    for name in ("dask", "dask-bytes"):
        for table in ("frames", "measurements", "alerts"):
            assert runs[name][table] == ref[table], f"{name}: {table} differ"


def test_dask_run_writes_the_field_tables(
    tmp_path: Path, demo_field: DemoField, cluster: Any
) -> None:
    cfg = _config(
        tmp_path,
        demo_field,
        executor="dask",
        dask_scheduler=cluster.scheduler_address,
        dask_send_frames=True,
    )
    _run(cfg)
    with sqlite3.connect(cfg.paths.db_path) as db:
        rows = db.execute("SELECT state, catalog_path, tries FROM frames").fetchall()
    assert [r[0] for r in rows] == ["processed"] * len(demo_field.frames)
    assert all(r[2] == 1 for r in rows), "each frame charged exactly one try"
    for _, table_path, _ in rows:
        assert Path(table_path).is_file()
        assert Path(table_path).is_relative_to(cfg.paths.tables_dir)


def _toml(cfg_dir: Path, demo: DemoField) -> Path:
    """Write a config file for the demo field (processed first on the process pool)."""
    targets = "\n".join(
        f'[[targets]]\nname = "{t.name}"\nra_deg = {t.ra_deg!r}\ndec_deg = {t.dec_deg!r}\n'
        for t in demo.targets
    )
    path = cfg_dir / "soapd.toml"
    path.write_text(
        f'[paths]\nstate_dir = "{cfg_dir / "state"}"\ncache_dir = "{cfg_dir / "cache"}"\n'
        f'inbox_dir = "{cfg_dir / "inbox"}"\n'
        "[service]\nworkers = 2\nprocess_interval_s = 1.0\n"
        f'[calibration]\nonline = false\ncatalog_files = ["{demo.catalog_path}"]\n'
        "[alerts]\nbatch_window_s = 0.0\n" + targets,
        encoding="utf-8",
    )
    return path


def test_reprocess_on_dask_stores_what_the_process_pool_stored(
    tmp_path: Path,
    demo_field: DemoField,
    cluster: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from soapd.cli import daemon, main

    monkeypatch.setattr(daemon, "setup_logging", lambda *_a: None)  # keep pytest's handlers
    cfg = _config(tmp_path, demo_field)
    path = _toml(tmp_path, demo_field)
    before = _run(cfg)
    capsys.readouterr()
    assert main(["reprocess", "--config", str(path), "--scheduler", cluster.scheduler_address]) == 0
    out = capsys.readouterr().out
    n = len(demo_field.frames)
    assert f"{n} frame(s) queued for processing again" in out
    assert f"ledger: processed {n}\n" in out
    after = _dump(cfg)
    assert len(after["measurements"]) >= n * len(demo_field.targets)
    assert after["measurements"] == before["measurements"]
    assert after["alerts"] == before["alerts"], "no alert raised twice"
    # The ledger differs only in the try count: requeue starts a new series; one try on dask.
    with sqlite3.connect(cfg.paths.db_path) as db:
        assert [r[0] for r in db.execute("SELECT tries FROM frames")] == [1] * n


def test_reprocess_dask_without_scheduler_is_a_config_error(
    tmp_path: Path,
    demo_field: DemoField,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from soapd.cli import daemon, main

    monkeypatch.setattr(daemon, "setup_logging", lambda *_a: None)
    path = _toml(tmp_path, demo_field)
    (tmp_path / "inbox").mkdir()
    assert main(["reprocess", "--config", str(path), "--executor", "dask"]) == 2
    assert "--executor dask needs --scheduler ADDRESS" in capsys.readouterr().err
