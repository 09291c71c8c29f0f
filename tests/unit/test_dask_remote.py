"""The dask worker's side of a frame (``run_remote``) and the executor settings, without a cluster.

The LocalCluster runs are in tests/integration/test_dask_pool.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from soapd.config import Config
from soapd.daemon.dask_remote import run_remote
from soapd.daemon.executor import make_pool
from soapd.daemon.pool import WorkerPool
from soapd.errors import ConfigError
from soapd.frames import FrameTask, run_task, table_path_for
from soapd.models import ExposureMeta, Target
from soapd.testing.synth import make_frame, write_frame


def _frame(folder: Path) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    f = make_frame((192, 192), stars=12, seed=4)
    path = folder / "night_001.fits"
    write_frame(path, f.data_adu, f.header)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_frame_bytes_give_the_result_of_the_shared_path(
    tmp_path: Path, config: Callable[..., Config]
) -> None:
    cfg = config(calibration={"enabled": False})
    path, sha = _frame(cfg.paths.frames_dir)
    task = FrameTask(
        frame_id=7,
        path=path,
        meta=ExposureMeta(filter="V"),
        targets=(Target(name="T1", ra_deg=150.0, dec_deg=20.0),),
        sha256=sha,
    )
    data = path.read_bytes()
    ref = run_task(task, cfg, None)
    assert ref.outcome == "ok"
    assert ref.result is not None
    table_path_for(cfg, 7).unlink()
    path.unlink()  # the worker cannot see the driver's file: only its bytes
    got = run_remote("k", task, cfg, None, data)
    assert got.outcome == "ok", got.error
    assert got.result is not None
    assert got.table_path is None, "the driver writes the table"
    assert not table_path_for(cfg, 7).exists(), "nothing written under the driver's state_dir"
    assert repr(got.result.summary) == repr(ref.result.summary)  # NaN fields compare by text
    assert got.result.table.meta == ref.result.table.meta
    assert got.result.table.colnames == ref.result.table.colnames
    for name in ref.result.table.colnames:
        np.testing.assert_array_equal(
            np.asarray(got.result.table[name]), np.asarray(ref.result.table[name])
        )


def test_unreadable_bytes_fail_naming_the_original_file(
    tmp_path: Path, config: Callable[..., Config]
) -> None:
    cfg = config(calibration={"enabled": False})
    task = FrameTask(frame_id=3, path=tmp_path / "gone" / "x.fits", meta=ExposureMeta(), targets=())
    got = run_remote("k", task, cfg, None, b"SIMPLE  = not a fits file")
    assert got.outcome == "failed"
    assert str(task.path) in got.error
    assert "soapd-frame-" not in got.error, "the worker's temporary folder is not shown"


def test_executor_dask_needs_a_scheduler(config: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match="dask_scheduler"):
        config(service={"executor": "dask"})
    with pytest.raises(ConfigError, match="executor"):
        config(service={"executor": "threads"})
    cfg = config(service={"executor": "dask", "dask_scheduler": "tcp://10.0.0.5:8786"})
    assert cfg.service.dask_scheduler == "tcp://10.0.0.5:8786"


def test_make_pool_follows_the_executor(config: Callable[..., Config]) -> None:
    pool = make_pool(config(), None)
    assert isinstance(pool, WorkerPool)
    pool.shutdown()
    distributed = pytest.importorskip("distributed")
    del distributed
    from soapd.daemon.dask_pool import DaskPool

    cfg = config(service={"executor": "dask", "dask_scheduler": "tcp://127.0.0.1:1"})
    dask_pool = make_pool(cfg, None)
    assert isinstance(dask_pool, DaskPool)
    assert dask_pool.capacity == 0, "nothing is sent before the scheduler is reached"
    dask_pool.shutdown()
