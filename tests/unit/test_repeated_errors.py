"""One clear line per repeated error, with a count (soapd.logs.RepeatedErrors)."""

from __future__ import annotations

import logging

import pytest

from soapd.logs import RepeatedErrors


def test_a_repeated_error_is_one_line_then_a_count_then_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = logging.getLogger("soapd.test.repeat")
    errors = RepeatedErrors(log, every_s=60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger=log.name)
    try:
        raise OSError(28, "No space left on device")
    except OSError as exc:
        first = exc
    assert errors.failed("drain_inbox", "job drain_inbox failed: disk full", exc=first)
    for _ in range(40):
        now[0] += 1.0
        assert not errors.failed("drain_inbox", "job drain_inbox failed: disk full", exc=first)
    now[0] += 30.0
    assert errors.failed("drain_inbox", "job drain_inbox failed: disk full")
    assert "42x since" in errors.current()["drain_inbox"]
    assert errors.succeeded("drain_inbox")
    assert errors.current() == {}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "job drain_inbox failed: disk full",
        "job drain_inbox failed: disk full (41 more times in the last 70 s)",
        "drain_inbox: recovered after 42 failures",
    ]
    assert all(r.exc_info is None for r in caplog.records), "no traceback for an expected error"


def test_an_unexpected_error_logs_its_traceback_once(caplog: pytest.LogCaptureFixture) -> None:
    errors = RepeatedErrors(logging.getLogger("soapd.test.repeat2"))
    try:
        raise KeyError("bug")
    except KeyError as exc:
        for _ in range(3):
            errors.failed(
                "reconcile", "job reconcile failed: KeyError: 'bug'", exc=exc, traceback=True
            )
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(caplog.records) == 1
    assert len(tracebacks) == 1
    assert errors.succeeded("reconcile")
    assert not errors.succeeded("reconcile")
