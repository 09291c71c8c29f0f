"""End to end: frames -> record_result -> outbox -> email/webhook/file, with failures.

A series of 8 frames in two observations: target "GRB A" is absent (limits) in
the first three and appears in the fourth; "VAR B" is steady at R = 16.0, then
brightens to 15.0 in the sixth frame. Expected alerts, exactly once each:
VAR B new_detection (frame 1), GRB A new_detection (frame 4), VAR B brightening
(frame 6). The store is closed and reopened after frame 4, every frame is then
processed again (same config, then a changed config), and the SMTP server
refuses the first two deliveries while the webhook times out twice.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest

from soapd.alerts.notifiers import build_notifiers
from soapd.alerts.outbox import flush
from soapd.config import AlertsConfig, Config, NotifierConfig, PhotometryConfig
from soapd.frames import record_result
from soapd.models import Target
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
GRB = [None, None, None, 17.5, 17.6, 17.7, 17.8, 17.9]
VAR = [16.0, 16.0, 16.0, 16.0, 16.0, 15.0, 15.0, 15.0]
EXPECTED = {
    ("VAR B", "new_detection", 0),
    ("GRB A", "new_detection", 3),
    ("VAR B", "brightening", 5),
}


@dataclass
class Sink:
    refuse: int = 0
    attempts: int = 0
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.attempts <= self.refuse:
            return "451 4.3.0 mailbox busy, try later"
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(name="smtp")
def fixture_smtp() -> Iterator[tuple[Sink, int]]:
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sink = Sink(refuse=2)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def _frame(store: Store, i: int, config: Config) -> list[int]:
    mid = T0 + timedelta(minutes=10 * (i + 1))
    fid = register_frame(store, f"frame{i:02d}.fits", mid_time_utc=mid, obs_id=7 if i < 4 else 8)
    res = target_result(
        {"GRB A": GRB[i], "VAR B": VAR[i]},
        mid_time_utc=mid,
        aperture_radii_px=(3.0, 5.0),
        image_file=f"frame{i:02d}.fits",
    )
    return record_result(store, fid, res, config=config, table_path=None)


def test_alert_flow_once_each_across_restart_reprocessing_and_failing_notifiers(
    tmp_path: Path, smtp
) -> None:
    sink, port = smtp
    hook_calls: list[dict] = []

    def hook(request: httpx.Request) -> httpx.Response:
        hook_calls.append(json.loads(request.content))
        if len(hook_calls) <= 2:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(204)

    alerts_cfg = AlertsConfig(batch_window_s=0.0, backoff_s=60.0, max_attempts=10)
    config = Config(alerts=alerts_cfg)
    notifiers = build_notifiers(
        [
            NotifierConfig(
                kind="email",
                smtp_host="127.0.0.1",
                smtp_port=port,
                recipients=["gcn@example.org"],
                timeout_s=5.0,
            ),
            NotifierConfig(kind="webhook", url="https://hooks.example.org/soapd", timeout_s=1.0),
            NotifierConfig(kind="file", directory=tmp_path / "alerts"),
        ],
        transport=httpx.MockTransport(hook),
    )
    clock = [datetime.now(UTC) + timedelta(seconds=1)]

    def tick(minutes: float = 0.5):
        clock[0] += timedelta(minutes=minutes)
        return flush(store, notifiers, config=alerts_cfg, now=clock[0])

    db = tmp_path / "soapd.db"
    store = Store(db)
    store.upsert_target(Target(name="GRB A", ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=T0))
    store.upsert_target(Target(name="VAR B", ra_deg=150.1, dec_deg=-30.0))
    new_ids: list[int] = []
    for i in range(4):
        new_ids += _frame(store, i, config)
        tick()  # notifiers fail: processing goes on regardless
    # The first alert met both failures and waits for its retry; frames went on meanwhile.
    assert new_ids[0] in {a.alert_id for a in store.unsent_alerts(clock[0] + timedelta(days=1))}
    assert len(store.frames_in_state("processed")) == 4
    store.close()

    store = Store(db)  # restart in the middle
    for i in range(4, 8):
        new_ids += _frame(store, i, config)
        tick()
    assert len(new_ids) == 3

    # Processing every frame again (same config, then another one) raises nothing new.
    frames = store.frames_in_state("processed")
    assert len(frames) == 8
    for cfg in (config, config.replace(photometry=PhotometryConfig(radii_px=[2.5, 4.0]))):
        for i, row in enumerate(frames):
            assert row.meta.mid_time_utc == T0 + timedelta(minutes=10 * (i + 1))
            res = target_result(
                {"GRB A": GRB[i], "VAR B": VAR[i]},
                mid_time_utc=row.meta.mid_time_utc,
                aperture_radii_px=(3.0, 5.0),
            )
            assert record_result(store, row.frame_id, res, config=cfg, table_path=None) == []
    assert len(store.lightcurve("GRB A")) == 16
    assert len(store.lightcurve("GRB A", include_superseded=True)) == 32

    for _ in range(6):
        tick(minutes=5)
    assert store.alert_counts() == {"pending": 0, "sent": 3, "failed": 0}
    assert tick(minutes=60).messages == 0  # nothing goes out twice

    raised = {(a["target_name"], a["rule"], a["frame_id"]) for a in store.list_alerts()}
    ids = {r.frame_id: i for i, r in enumerate(frames)}
    assert {(n, r, ids[f]) for n, r, f in raised} == EXPECTED

    # Email: two refusals, then every alert delivered exactly once.
    delivered = [int(x) for m in sink.messages for x in m["X-Soapd-Alerts"].split(",")]
    assert sorted(delivered) == sorted(new_ids)
    assert sink.attempts == len(sink.messages) + 2
    # Webhook: two timeouts, then each alert once in a successful call.
    ok_calls = hook_calls[2:]
    got = sorted(a["alert_id"] for c in ok_calls for a in c["alerts"])
    assert got == sorted(new_ids)
    # File notifier: one text + one JSON per message.
    files = sorted((tmp_path / "alerts").iterdir())
    assert len(files) == 2 * len(sink.messages)
    grb_text = next(f for f in files if "GRB_A" in f.name and f.suffix == ".txt").read_text()
    assert "new detection in R" in grb_text
    assert "> 19.5" in grb_text  # the GCN draft shows the earlier limits
    store.close()
