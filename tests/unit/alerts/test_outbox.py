"""Tests of the notifiers and the outbox drain (batching, retries, backoff, once only)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from soapd import fileio
from soapd.alerts.notifiers import (
    AlertMessage,
    EmailNotifier,
    FileNotifier,
    LogNotifier,
    WebhookNotifier,
    build_notifiers,
    check_webhook_url,
)
from soapd.alerts.outbox import flush
from soapd.config import AlertsConfig, NotifierConfig
from soapd.errors import ConfigError, NotifyError
from soapd.models import AlertDraft
from soapd.store import Store

NOW = datetime.now(UTC)


def _msg(ids: tuple[int, ...] = (1,)) -> AlertMessage:
    return AlertMessage(
        target_name="GRB A",
        batch_key="b",
        alert_ids=ids,
        subject="soapd: GRB A: x",
        text="GRB A: new detection\n",
        data={"target": "GRB A", "alerts": []},
    )


def _drafts(n: int, batch: str = "GRB A|obs:7", prefix: str = "k") -> list[AlertDraft]:
    return [
        AlertDraft(
            target_name="GRB A",
            rule="new_detection",
            dedupe_key=f"{prefix}{i}",
            batch_key=batch,
            message=f"GRB A: alert {i}",
            payload={"band": "R"},
        )
        for i in range(n)
    ]


class Recorder:
    def __init__(self, key: str = "rec", fail: int = 0) -> None:
        self.key = key
        self.fail = fail
        self.sent: list[AlertMessage] = []
        self.calls = 0

    def send(self, message: AlertMessage) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise NotifyError("down")
        self.sent.append(message)


def test_check_webhook_url_requires_https_unless_allowed() -> None:
    assert check_webhook_url("https://hooks.example.org/x", allow_http=False)
    with pytest.raises(ConfigError, match="allow_http"):
        check_webhook_url("http://127.0.0.1:8000/x", allow_http=False)
    assert check_webhook_url("http://127.0.0.1:8000/x", allow_http=True)
    with pytest.raises(ConfigError, match="no host"):
        check_webhook_url("https:///x", allow_http=False)
    with pytest.raises(ConfigError):
        check_webhook_url("file:///etc/passwd", allow_http=True)


def test_build_notifiers_checks_at_start_and_defaults_to_log(tmp_path: Path) -> None:
    assert [n.key for n in build_notifiers([])] == ["log"]
    with pytest.raises(ConfigError, match="https"):
        build_notifiers([NotifierConfig(kind="webhook", url="http://x.org/h")])
    built = build_notifiers(
        [NotifierConfig(kind="file", directory=tmp_path), NotifierConfig(kind="log")]
    )
    assert isinstance(built[0], FileNotifier)
    assert isinstance(built[1], LogNotifier)
    with pytest.raises(ConfigError, match="same place"):
        build_notifiers([NotifierConfig(kind="log"), NotifierConfig(kind="log")])


def test_file_notifier_writes_text_and_json(tmp_path: Path) -> None:
    FileNotifier(tmp_path / "out").send(_msg((3, 4)))
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 2
    assert files[0].endswith(".json")
    assert files[1].endswith(".txt")
    assert json.loads((tmp_path / "out" / files[0]).read_text())["target"] == "GRB A"


def test_file_notifier_fsyncs_each_file_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []  # True for a folder
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", record)
    FileNotifier(tmp_path / "out").send(_msg((3, 4)))
    assert synced == [False, True, False, True]  # .txt then its folder, .json then its folder
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".part")]


def test_file_notifier_unwritable_raises_notify_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotifyError, match="cannot write"):
        FileNotifier(blocker / "sub").send(_msg())


def test_webhook_posts_json_and_reports_http_errors() -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200 if len(seen) == 1 else 500)

    cfg = NotifierConfig(kind="webhook", url="https://hooks.example.org/soapd")
    hook = WebhookNotifier(cfg, transport=httpx.MockTransport(handler))
    hook.send(_msg())
    assert seen[0]["subject"] == "soapd: GRB A: x"
    with pytest.raises(NotifyError, match="HTTP 500"):
        hook.send(_msg())


def test_webhook_timeout_raises_notify_error_without_url_secrets() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    cfg = NotifierConfig(kind="webhook", url="https://hooks.example.org/T0KEN123", timeout_s=0.5)
    hook = WebhookNotifier(cfg, transport=httpx.MockTransport(handler))
    with pytest.raises(NotifyError, match="ReadTimeout") as info:
        hook.send(_msg())
    assert "T0KEN123" not in str(info.value)


def test_email_notifier_delivers_to_local_sink(smtp_sink) -> None:
    cfg = NotifierConfig(
        kind="email",
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        recipients=["obs@example.org"],
        timeout_s=5.0,
    )
    EmailNotifier(cfg).send(_msg((5,)))
    assert len(smtp_sink.messages) == 1
    mail = smtp_sink.messages[0]
    assert mail["Subject"] == "soapd: GRB A: x"
    assert mail["X-Soapd-Alerts"] == "5"


def test_email_notifier_refused_raises_notify_error(smtp_sink) -> None:
    smtp_sink.refuse = 1
    cfg = NotifierConfig(
        kind="email",
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        recipients=["obs@example.org"],
        timeout_s=5.0,
    )
    with pytest.raises(NotifyError, match="451"):
        EmailNotifier(cfg).send(_msg())


def test_flush_batches_one_target_observation_into_one_message(store: Store) -> None:
    store.add_alerts(None, _drafts(3))
    store.add_alerts(None, _drafts(1, batch="VAR B|obs:7", prefix="v"))
    rec = Recorder()
    cfg = AlertsConfig(batch_window_s=60.0)
    held = flush(store, [rec], config=cfg, now=datetime.now(UTC))
    assert held.held_batches == 2
    assert rec.sent == []
    stats = flush(store, [rec], config=cfg, now=datetime.now(UTC) + timedelta(seconds=61))
    assert stats.sent == 4
    assert len(rec.sent) == 2
    assert sorted(len(m.alert_ids) for m in rec.sent) == [1, 3]
    big = next(m for m in rec.sent if len(m.alert_ids) == 3)
    assert "GCN circular draft" in big.text
    assert store.alert_counts() == {"pending": 0, "sent": 4, "failed": 0}


def test_flush_retries_with_backoff_and_never_resends_to_a_notifier(store: Store) -> None:
    store.add_alerts(None, _drafts(1))
    good, bad = Recorder("good"), Recorder("bad", fail=2)
    cfg = AlertsConfig(batch_window_s=0.0, backoff_s=30.0, max_attempts=5)
    t = datetime.now(UTC) + timedelta(seconds=1)
    first = flush(store, [good, bad], config=cfg, now=t)
    assert (first.sent, first.retry_later) == (0, 1)
    assert flush(store, [good, bad], config=cfg, now=t + timedelta(seconds=29)).retry_later == 0
    second = flush(store, [good, bad], config=cfg, now=t + timedelta(seconds=31))
    assert second.retry_later == 1  # next try after 60 s (backoff doubles)
    assert flush(store, [good, bad], config=cfg, now=t + timedelta(seconds=31 + 59)).sent == 0
    third = flush(store, [good, bad], config=cfg, now=t + timedelta(seconds=31 + 61))
    assert third.sent == 1
    assert (len(good.sent), len(bad.sent), good.calls, bad.calls) == (1, 1, 1, 3)
    assert store.list_alerts()[0]["attempts"] == 3


def test_flush_gives_up_after_max_attempts_and_keeps_the_alert(store: Store) -> None:
    store.add_alerts(None, _drafts(1))
    bad = Recorder("bad", fail=100)
    cfg = AlertsConfig(batch_window_s=0.0, backoff_s=0.0, max_attempts=2)
    t = datetime.now(UTC) + timedelta(seconds=1)
    flush(store, [bad], config=cfg, now=t)
    stats = flush(store, [bad], config=cfg, now=t + timedelta(seconds=1))
    assert stats.given_up == 1
    assert store.alert_counts()["failed"] == 1
    assert "down" in store.list_alerts()[0]["last_error"]
    assert flush(store, [bad], config=cfg, now=t + timedelta(days=1)).messages == 0


def test_flush_survives_a_notifier_bug(store: Store) -> None:
    class Broken:
        key = "broken"

        def send(self, message: AlertMessage) -> None:
            raise RuntimeError("bug")

    store.add_alerts(None, _drafts(1))
    rec = Recorder()
    stats = flush(
        store,
        [Broken(), rec],
        config=AlertsConfig(batch_window_s=0),
        now=datetime.now(UTC) + timedelta(seconds=1),
    )
    assert stats.retry_later == 1
    assert len(rec.sent) == 1
