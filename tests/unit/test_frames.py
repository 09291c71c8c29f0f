"""soapd.frames: how ``run_task`` maps errors, and worker log lines that carry the frame id.

``process_frame`` is replaced by a stub that raises or logs, so no pixel work is
done; the outcome then goes through the daemon's ``finish`` and through
``Soap.run``, the two callers of the shared lifecycle, on a real store.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from soapd.api.soap import Soap
from soapd.config import Config
from soapd.daemon.jobs import JobContext, finish
from soapd.daemon.pool import WorkerPool
from soapd.errors import ExtractionError, FrameRejected, FrameUnreadable
from soapd.frames import run_task, start_task
from soapd.logs import FrameFormatter, FrameLogger, frame_context
from soapd.models import ExposureMeta
from soapd.skynet.records import Exposure
from soapd.store import Store

OBS = 77


def _stub(exc: BaseException | None, *, log: str = "") -> Callable[..., Any]:
    """A process_frame stand-in: logs ``log`` (as the pipeline would), then raises ``exc``."""

    def process_frame(*_args: Any, **_kwargs: Any) -> Any:
        if log:
            logging.getLogger("soapd.pipeline.stub").warning("%s", log)
        if exc is not None:
            raise exc
        raise AssertionError("the stub only raises")

    return process_frame


@pytest.fixture(name="cfg")
def fixture_cfg(config: Callable[..., Config]) -> Config:
    """A config with the default ``service.max_tries`` (3)."""
    return config(calibration={"enabled": False})


@pytest.fixture(name="store")
def fixture_store(cfg: Config) -> Iterator[Store]:
    """A fresh store with one downloaded Skynet frame of observation OBS (a dummy file)."""
    frame = cfg.paths.frames_dir / "r1_dummy.fits"
    frame.parent.mkdir(parents=True, exist_ok=True)
    frame.write_bytes(b"not looked at: process_frame is a stub")
    with Store(cfg.paths.db_path) as store:
        (fid,) = store.record_seen(
            [Exposure(exp_id=1, obs_id=OBS, state="archived", meta=ExposureMeta(obs_id=OBS))]
        )
        digest = hashlib.sha256(frame.read_bytes()).hexdigest()  # the worker checks it (#15)
        store.mark_downloaded(fid, frame, digest, frame.stat().st_size)
        yield store


def _frame_id(store: Store) -> int:
    (row,) = store.pending_frames(10)
    return row.frame_id


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


#: (error raised by the pipeline, outcome, start of the outcome's error text)
ERROR_CLASSES = [
    (FrameRejected("too few stars"), "rejected", "rejected: too few stars"),
    (FrameUnreadable("not FITS"), "failed", "unreadable: not FITS"),
    (ExtractionError("sep failed"), "retry", "ExtractionError: sep failed"),
    (OSError(28, "No space left on device"), "retry", "OSError: [Errno 28] No space"),
    (ValueError("numpy bug"), "failed", "unexpected ValueError: numpy bug"),
]


@pytest.mark.parametrize("case", ERROR_CLASSES, ids=lambda c: type(c[0]).__name__)
def test_run_task_maps_each_error_class_to_its_outcome(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch, case: tuple[Any, str, str]
) -> None:
    exc, outcome, error = case
    monkeypatch.setattr("soapd.pipeline.process_frame", _stub(exc))
    task = start_task(store, _frame_id(store), ())
    out = run_task(task, cfg, None)
    assert out.outcome == outcome
    assert out.error.startswith(error)
    assert out.result is None


def test_unexpected_worker_error_is_logged_once_with_traceback_and_frame_fails(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Daemon path: the worker's outcome goes through jobs.finish."""
    monkeypatch.setattr("soapd.pipeline.process_frame", _stub(ZeroDivisionError("bug")))
    ctx = JobContext(config=cfg, store=store, pool=WorkerPool(cfg), wake=lambda _job: None)
    fid = _frame_id(store)
    caplog.set_level(logging.INFO)
    finish(ctx, run_task(start_task(store, fid, ()), cfg, None))
    row = store.frame(fid)
    assert row is not None
    assert row.state == "failed"  # not retried
    assert row.tries == 1
    assert row.last_error == "unexpected ZeroDivisionError: bug"
    (logged,) = _tracebacks(caplog)
    assert logged.exc_info is not None
    assert logged.exc_info[0] is ZeroDivisionError
    assert logged.frame_id == fid  # type: ignore[attr-defined]
    assert f"frame {fid}" in logged.getMessage()
    assert ctx.counters["failed"] == 1


def test_unexpected_error_through_soap_ends_the_same(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """API path: Soap.run with the default processor (run_task in this process)."""
    monkeypatch.setattr("soapd.pipeline.process_frame", _stub(ZeroDivisionError("bug")))
    fid = _frame_id(store)
    caplog.set_level(logging.INFO)
    with Soap(OBS, config=cfg) as soap:
        result = soap.run(download=False)
        assert len(result) == 0
        assert soap.last_run.skipped == ((fid, "unexpected ZeroDivisionError: bug"),)
    row = store.frame(fid)
    assert row is not None
    assert (row.state, row.tries, row.last_error) == (
        "failed",
        1,
        "unexpected ZeroDivisionError: bug",
    )
    (logged,) = _tracebacks(caplog)
    assert logged.frame_id == fid  # type: ignore[attr-defined]


def test_soapd_errors_keep_their_retry_mapping_up_to_max_tries(
    store: Store, config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(calibration={"enabled": False}, service={"max_tries": 2})
    monkeypatch.setattr("soapd.pipeline.process_frame", _stub(ExtractionError("sep failed")))
    ctx = JobContext(config=cfg, store=store, pool=WorkerPool(cfg), wake=lambda _job: None)
    fid = _frame_id(store)
    finish(ctx, run_task(start_task(store, fid, ()), cfg, None))
    assert store.frame(fid).state == "downloaded"  # type: ignore[union-attr]
    finish(ctx, run_task(start_task(store, fid, ()), cfg, None))
    row = store.frame(fid)
    assert row is not None
    assert (row.state, row.tries) == ("failed", 2)
    assert row.last_error == "ExtractionError: sep failed"


def test_records_made_inside_run_task_carry_the_frame_id(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        "soapd.pipeline.process_frame", _stub(FrameRejected("empty"), log="sep: 0 sources")
    )
    fid = _frame_id(store)
    caplog.set_level(logging.INFO)
    run_task(start_task(store, fid, ()), cfg, None)
    logging.getLogger("soapd.pipeline.stub").warning("after the task")
    inside, after = (r for r in caplog.records if r.name == "soapd.pipeline.stub")
    assert inside.frame_id == fid  # type: ignore[attr-defined]
    assert not hasattr(after, "frame_id")
    line = FrameFormatter("%(levelname)s %(name)s: %(message)s").format(inside)
    assert line == f"WARNING soapd.pipeline.stub: [frame {fid}] sep: 0 sources"


def test_frame_formatter_does_not_tag_twice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with frame_context(5):
        FrameLogger(logging.getLogger("soapd.x"), {"frame_id": 5, "exp_id": 9}).info("hello")
        logging.getLogger("soapd.x").info("frame 5: explained")
    fmt = FrameFormatter("%(message)s")
    assert [fmt.format(r) for r in caplog.records] == [
        "[frame 5 exp 9] hello",
        "frame 5: explained",
    ]


def test_start_task_on_a_missing_file_fails_the_frame(store: Store) -> None:
    fid = _frame_id(store)
    row = store.frame(fid)
    assert row is not None
    assert row.path is not None
    row.path.unlink()
    with pytest.raises(FrameUnreadable, match="is missing"):
        start_task(store, fid, ())
    assert store.frame(fid).state == "failed"  # type: ignore[union-attr]
