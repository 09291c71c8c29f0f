"""Downloads that end out of order are recorded in frame order (alerts depend on that order)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from soapd.daemon.intake import _in_ledger_order
from soapd.skynet.fetcher import FetchResult


def _ctx() -> Any:
    return SimpleNamespace(download_held=[])


def _fetcher(inflight: set[int]) -> Any:
    return SimpleNamespace(inflight=inflight)


def _r(frame_id: int) -> FetchResult:
    return FetchResult(frame_id=frame_id, exp_id=1000 + frame_id)


def test_a_later_frame_waits_for_an_earlier_one_still_downloading() -> None:
    ctx = _ctx()
    # frame 3 finished first while frames 1 and 2 are still downloading
    assert _in_ledger_order(ctx, _fetcher({1, 2}), [_r(3)]) == []
    assert [r.frame_id for r in ctx.download_held] == [3]
    # frame 2 ends: 1 is still running, so 2 and 3 wait
    assert _in_ledger_order(ctx, _fetcher({1}), [_r(2)]) == []
    # frame 1 ends: all three go, in frame order
    got = _in_ledger_order(ctx, _fetcher(set()), [_r(1)])
    assert [r.frame_id for r in got] == [1, 2, 3]
    assert ctx.download_held == []


def test_frames_before_the_first_running_one_are_not_held() -> None:
    ctx = _ctx()
    got = _in_ledger_order(ctx, _fetcher({5}), [_r(4), _r(2), _r(7)])
    assert [r.frame_id for r in got] == [2, 4]
    assert [r.frame_id for r in ctx.download_held] == [7]
