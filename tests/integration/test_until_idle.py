"""``soapd run --until-idle`` (issue 14): exit code on a token problem; held alerts go out.

The fake Skynet serves the deterministic demo field on 127.0.0.1; the config is
:func:`tests.integration.test_service.service_config` with a file notifier.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from soapd.config import Token
from soapd.daemon.service import Service
from soapd.skynet.client import SkynetClient
from soapd.store import Store
from soapd.testing.demo_field import DemoField, load_into
from soapd.testing.fake_skynet import FakeSkynet

from .test_service import service_config

pytestmark = pytest.mark.timeout(180)


def _service(cfg: object, token: str | None) -> Service:
    return Service(
        cfg,  # type: ignore[arg-type]
        source_factory=lambda tok: SkynetClient.from_config(cfg.skynet, tok),  # type: ignore[attr-defined]
        read_token=lambda: Token(token) if token else None,
        env={},
    )


@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["missing", "refused"])
def test_a_missing_or_refused_token_exits_1_with_one_clear_line(
    tmp_path: Path, demo_field: DemoField, token: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeSkynet(seed=4) as fake:
        load_into(fake, demo_field, archived=True)
        cfg = service_config(tmp_path, demo_field, fake.url)
        with caplog.at_level(logging.ERROR):
            code = _service(cfg, token).run_until_idle()
    assert code == 1
    assert "exit code 1: no frame was fetched from Skynet" in caplog.text
    with Store(cfg.paths.db_path, read_only=True) as store:
        assert store.backlog()["processed"] == 0
        assert store.status_values()["auth_error"]


def test_an_inbox_only_setup_needs_no_token_and_exits_0(
    tmp_path: Path, demo_field: DemoField
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for frame in demo_field.frames[:2]:
        (inbox / frame.path.name).write_bytes(frame.path.read_bytes())
    cfg = service_config(tmp_path, demo_field, "http://127.0.0.1:9", inbox_dir=str(inbox))
    cfg = cfg.replace(skynet=dataclasses.replace(cfg.skynet, observations=()))
    assert _service(cfg, None).run_until_idle() == 0
    with Store(cfg.paths.db_path, read_only=True) as store:
        assert store.backlog()["processed"] == 2


def test_alerts_held_for_the_batch_window_are_sent_before_exit(
    tmp_path: Path, demo_field: DemoField
) -> None:
    with FakeSkynet(seed=5) as fake:
        load_into(fake, demo_field, archived=True)
        cfg = service_config(tmp_path, demo_field, fake.url)
        cfg = cfg.replace(alerts=dataclasses.replace(cfg.alerts, batch_window_s=3600.0))
        assert _service(cfg, fake.token).run_until_idle() == 0
    with Store(cfg.paths.db_path, read_only=True) as store:
        raised = store.db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
        assert raised > 0, "the demo field raised no alert: nothing to check"
        assert store.unsent_alerts("9999-12-31T00:00:00Z") == []
    sent = [json.loads(p.read_text()) for p in (tmp_path / "alerts").glob("*.json")]
    assert sum(len(m["alerts"]) for m in sent) == raised


def test_a_frame_soapd_died_processing_is_retried_until_max_crash_starts(
    tmp_path: Path, demo_field: DemoField
) -> None:
    """Three crashes of the daemon on one frame do not fail it (max_tries counts worker deaths)."""
    from soapd.fileio import sha256_file

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = service_config(tmp_path, demo_field, "http://127.0.0.1:9", inbox_dir=str(inbox))
    cfg = cfg.replace(skynet=dataclasses.replace(cfg.skynet, observations=()))
    frames = cfg.paths.frames_dir
    frames.mkdir(parents=True)
    ids = []
    with Store(cfg.paths.db_path) as store:
        for i, starts in enumerate((3, cfg.service.max_crash_starts)):
            path = frames / f"crash{i}.fits"
            path.write_bytes(demo_field.frames[i].path.read_bytes())
            digest, size = sha256_file(path)
            fid = store.record_local(path, digest, size, source="inbox").frame_id
            for _ in range(starts):  # started, then soapd died (the crash sweep's input)
                store.claim_frame(fid)
                store.mark_started(fid)
                if _ < starts - 1:
                    store.reset_stuck_processing(max_tries=1000)
            ids.append(fid)
    assert _service(cfg, None).run_until_idle() == 0
    with Store(cfg.paths.db_path, read_only=True) as store:
        states = [(store.frame(f).state, store.frame(f).tries) for f in ids]  # type: ignore[union-attr]
    assert states[0] == ("processed", 4)  # 3 starts interrupted, the 4th stored
    assert states[1] == ("failed", cfg.service.max_crash_starts)
