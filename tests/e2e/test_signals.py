"""The daemon as systemd runs it: sd_notify READY/WATCHDOG/STOPPING, SIGHUP reload, SIGTERM.

A real ``python -m soapd run`` subprocess with ``$NOTIFY_SOCKET`` pointing at a
datagram socket this test reads, and ``$WATCHDOG_USEC`` set as ``WatchdogSec=2``
would set it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soapd.cli.demo import write_demo_config
from soapd.store import Store
from soapd.testing.demo_field import DemoField, load_into
from soapd.testing.fake_skynet import FakeSkynet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def _messages(sock: socket.socket, until: float) -> list[str]:
    out: list[str] = []
    while time.monotonic() < until:
        with contextlib.suppress(TimeoutError):
            out.append(sock.recv(4096).decode())
    return out


def test_daemon_notifies_systemd_reloads_on_sighup_and_stops_on_sigterm(
    tmp_path: Path, demo_field_e2e: DemoField
) -> None:
    demo = demo_field_e2e
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.5)
    with FakeSkynet(seed=9) as fake:
        load_into(fake, demo, archived=True)
        cfg = write_demo_config(tmp_path / "soapd.toml", demo, api_url=fake.url, state_dir=tmp_path)
        env = dict(
            os.environ,
            SOAPD_SKYNET_TOKEN=fake.token,
            NOTIFY_SOCKET=str(notify),
            WATCHDOG_USEC="2000000",
            SOAPD_CONFIG="",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "soapd", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            got: list[str] = []
            deadline = time.monotonic() + 30
            while not any(m.startswith("READY=1") for m in got) and time.monotonic() < deadline:
                got += _messages(sock, time.monotonic() + 0.5)
            assert any(m.startswith("READY=1") for m in got)
            pings = _messages(sock, time.monotonic() + 3)
            assert pings.count("WATCHDOG=1") >= 2, "no watchdog pings while healthy"
            assert any(m.startswith("STATUS=processed ") for m in pings)

            status = subprocess.run(
                [sys.executable, "-m", "soapd", "status", "--config", str(cfg)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            assert "daemon        running" in status.stdout
            assert fake.token not in status.stdout

            text = cfg.read_text()
            cfg.write_text(
                text + '\n[[targets]]\nname = "ADDED-BY-HUP"\nra_deg = 10.0\ndec_deg = 5.0\n'
            )
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            names: list[str] = []
            while time.monotonic() < deadline:
                with Store(tmp_path / "soapd.db", migrate=False) as store:
                    names = [t.name for t in store.active_targets()]
                if "ADDED-BY-HUP" in names:
                    break
                time.sleep(0.2)
            assert "ADDED-BY-HUP" in names
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        tail = _messages(sock, time.monotonic() + 1)
    sock.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "STOPPING=1" in tail
    assert b"SIGTERM received: stopping" in err
    assert b"soapd stopped" in err
    with Store(tmp_path / "soapd.db", migrate=False) as store:
        assert store.status_values()["stopped_utc"]
        assert store.backlog()["processing"] == 0
