"""The worker pool with real worker processes: kills, stalls, SIGTERM, start reports.

The workers run :func:`slow_runner` instead of the pipeline: it sleeps for the
number of seconds in the task's file name (``sleep-2.5.fits``), so a test knows
which frame is running when it kills a worker. No database here; the pool's
events are read with ``take_started`` and ``collect``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soapd.config import Config
from soapd.daemon.ordered import InOrder
from soapd.daemon.pool import WorkerPool
from soapd.frames import FrameTask, TaskOutcome
from soapd.models import ExposureMeta, Target
from soapd.stacks.epochs import Epoch, EpochBin
from soapd.stacks.plan import StackOutcome, StackTask
from soapd.stacks.records import Candidate

pytestmark = pytest.mark.timeout(120)


def slow_runner(task: FrameTask, _config: Config, _catalogs: object) -> TaskOutcome:
    """Sleep for the seconds named in the task's file name; return a 'rejected' outcome."""
    time.sleep(float(task.path.stem.split("-", 1)[1]))
    return TaskOutcome(frame_id=task.frame_id, outcome="rejected", error=f"pid {os.getpid()}")


def task(frame_id: int, sleep_s: float, *, tries: int = 0) -> FrameTask:
    return FrameTask(
        frame_id=frame_id,
        path=Path(f"/nowhere/sleep-{sleep_s}.fits"),
        meta=ExposureMeta(),
        targets=(),
        tries=tries,
    )


def wait_for(what: str, cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(name="make_pool")
def fixture_make_pool(config: Callable[..., Config]) -> Iterator[Callable[..., WorkerPool]]:
    pools: list[WorkerPool] = []

    def make(workers: int = 2, **kw: object) -> WorkerPool:
        pool = WorkerPool(
            config(service={"workers": workers}),
            runner=slow_runner,
            **kw,  # type: ignore[arg-type]
        )
        pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: its parent (the fork server) has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_a_started_frame_is_reported_once_and_its_outcome_collected(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(workers=1)
    pool.submit(task(1, 0.1))
    pool.submit(task(2, 0.1))
    outs: list[TaskOutcome] = []
    wait_for("both outcomes", lambda: bool(outs.extend(pool.collect())) or len(outs) == 2)
    assert [o.frame_id for o in outs] == [1, 2]
    assert pool.take_started() == [1, 2]
    assert pool.take_started() == []
    assert not pool.inflight


def test_a_killed_worker_is_replaced_and_its_frame_rerun_first_the_queued_one_not_charged(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(workers=1)
    (first_pid,) = pool.worker_pids()
    pool.submit(task(1, 2.0))
    pool.submit(task(2, 0.1))  # waits in the pool: the only worker is busy
    wait_for("frame 1 to start", lambda: pool.running() == {1: first_pid})
    assert pool.take_started() == [1]
    t0 = time.monotonic()
    os.kill(first_pid, signal.SIGKILL)
    wait_for("a new worker", lambda: pool.worker_pids() not in ([], [first_pid]), 15)
    replaced_s = time.monotonic() - t0
    outs: list[TaskOutcome] = []
    wait_for("the outcomes", lambda: bool(outs.extend(pool.collect())) or len(outs) == 2, 20)
    # Frame 1 ran again on the new worker before frame 2: results stay in ledger order.
    assert [(o.frame_id, o.outcome) for o in outs] == [(1, "rejected"), (2, "rejected")]
    assert pool.take_started() == [1, 2]  # each start reported (and charged) once
    assert pool.counts.deaths == 1
    assert pool.counts.retried == 1
    assert pool.counts.respawns == 1
    assert replaced_s < 5.0, f"replacing the worker took {replaced_s:.1f} s"


def test_a_killed_worker_on_the_last_try_gives_the_frame_back_as_retry(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(workers=1)
    (pid,) = pool.worker_pids()
    pool.submit(task(1, 30, tries=2))  # service.max_tries = 3: this start is the last try
    wait_for("frame 1 to start", lambda: 1 in pool.running())
    os.kill(pid, signal.SIGKILL)
    outs: list[TaskOutcome] = []
    wait_for("the outcome", lambda: bool(outs.extend(pool.collect())) or len(outs) == 1, 20)
    assert outs[0].outcome == "retry"
    assert "SIGKILL" in outs[0].error
    assert pool.take_started() == [1]


def test_a_frame_sent_to_a_worker_that_dies_before_starting_goes_back_uncharged(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(workers=1)
    (pid,) = pool.worker_pids()
    os.kill(pid, signal.SIGSTOP)  # it cannot read its pipe: the task waits there unstarted
    try:
        pool.submit(task(7, 0.1))
        time.sleep(0.5)
        assert pool.running() == {}
        os.kill(pid, signal.SIGKILL)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
    outs: list[TaskOutcome] = []
    wait_for("the outcome", lambda: bool(outs.extend(pool.collect())) or len(outs) == 1, 20)
    assert outs[0].outcome == "rejected"  # it ran once, on the replacement
    assert pool.take_started() == [7]
    assert pool.counts.requeued_unstarted == 1


def test_a_stalled_frame_gets_its_worker_killed_each_try_then_comes_back_as_retry(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(workers=1, stall_timeout_s=1.0)
    (pid,) = pool.worker_pids()
    pool.submit(task(3, 60, tries=1))  # two tries left of service.max_tries = 3
    outs: list[TaskOutcome] = []
    wait_for("the stalls", lambda: bool(outs.extend(pool.collect())) or len(outs) == 1, 30)
    assert outs[0].outcome == "retry"
    assert outs[0].error.startswith("stalled")
    assert pool.counts.stalls == 2
    assert pool.take_started() == [3, 3]  # each attempt started, and is charged, once
    wait_for("the old worker to go", lambda: not _alive(pid))
    wait_for("a new worker", lambda: len(pool.worker_pids()) == 1 and pool.worker_pids() != [pid])


def test_workers_die_on_sigterm_and_shutdown_reaps_busy_workers(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(workers=2)
    a, _b = pool.worker_pids()
    os.kill(a, signal.SIGTERM)
    wait_for("the worker to die on SIGTERM", lambda: not _alive(a), 10)
    wait_for("its replacement", lambda: len(pool.worker_pids()) == 2)
    pool.submit(task(1, 60))
    pool.submit(task(2, 60))
    wait_for("both frames running", lambda: len(pool.running()) == 2)
    pids = pool.worker_pids()
    t0 = time.monotonic()
    pool.shutdown()
    took_s = time.monotonic() - t0
    assert not any(_alive(p) for p in pids)
    assert took_s < 15.0, f"shutdown took {took_s:.1f} s"
    assert pool.counts.deaths == 1  # the SIGTERM'd idle worker


def test_cancel_queued_returns_only_frames_no_worker_received(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(workers=1)
    pool.submit(task(1, 30))
    pool.submit(task(2, 0.1))
    pool.submit(task(3, 0.1))
    wait_for("frame 1 running", lambda: 1 in pool.running())
    assert pool.cancel_queued() == [2, 3]
    assert list(pool.inflight) == [1]


def _stack_task(name: str) -> StackTask:
    t0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    bin_ = EpochBin(kind="fixed", index=1, start_utc=t0, end_utc=t0 + timedelta(minutes=10))
    epoch: Epoch[Candidate] = Epoch(telescope="T", band="V", bin=bin_, frames=())
    return StackTask(
        target=Target(name=name, ra_deg=10.0, dec_deg=-5.0),
        epoch=epoch,
        reference_zp_mag=None,
        config_hash="h",
    )


def test_stacks_share_the_workers_and_come_back_in_submission_order(
    make_pool: Callable[..., WorkerPool],
) -> None:
    """A stack task runs in a worker beside frames; ``capacity`` counts both kinds."""
    pool = make_pool(workers=1)
    pool.submit(task(1, 0.5))
    pool.submit_stack(_stack_task("A"))
    pool.submit_stack(_stack_task("B"))
    assert pool.capacity == 0  # two tasks per worker; three in flight
    assert set(pool.stacks_inflight) == {("A", "T|V|fixed1"), ("B", "T|V|fixed1")}
    with pytest.raises(RuntimeError, match="already in the pool"):
        pool.submit_stack(_stack_task("A"))
    frames = pool.collect(timeout_s=30)
    stacks: list[StackOutcome] = []
    wait_for("two stacks", lambda: len(stacks.extend(pool.collect_stacks()) or stacks) == 2)
    assert [o.frame_id for o in frames] == [1]
    assert [o.task.key[0] for o in stacks] == ["A", "B"]
    # An epoch without frames has nothing to stack: a result that says so, no error.
    assert [(o.error, o.result is not None and o.result.ok) for o in stacks] == [("", False)] * 2
    assert pool.capacity == 2
    assert pool.stacks_inflight == {}


def test_in_order_hands_results_back_in_submission_order() -> None:
    cond = threading.Condition()
    order: InOrder[int, str, str] = InOrder()
    for key in (3, 1, 2):
        order.add(key, f"task {key}")
    order.finish(1, "one")
    order.finish(2, "two")
    with cond:
        assert order.take(cond, 0.0) == []  # 3 was submitted first and has not finished
    order.drop(3)
    order.finish(3, "late")  # a withdrawn task's result is ignored
    with cond:
        assert order.take(cond, 0.0) == ["one", "two"]
    assert len(order) == 0
    assert 3 not in order


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_start_early_starts_the_fork_server_only_for_a_pool_and_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``soapd process --jobs N`` starts the fork server before its own imports."""
    from multiprocessing import forkserver

    from soapd.daemon.forkserver import start_early
    from soapd.fileio import pid_alive

    server: Any = getattr(forkserver, "_forkserver")  # noqa: B009 (private, untyped)
    server._stop()  # a server left by an earlier test would make this test pass by itself
    monkeypatch.setenv("SOAPD_SKYNET_TOKEN", "early-secret-7f3a")
    start_early(1)  # one job runs in the command's own process: no server
    assert server._forkserver_pid is None
    start_early(2)
    pid = server._forkserver_pid
    assert pid is not None
    assert pid_alive(pid)
    assert b"early-secret-7f3a" not in Path(f"/proc/{pid}/environ").read_bytes()
    assert os.environ["SOAPD_SKYNET_TOKEN"] == "early-secret-7f3a"  # the command keeps it
