"""Tests of soapd.daemon.systemd: sd_notify messages over a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from soapd.daemon.systemd import SystemdNotifier


@pytest.fixture(name="notify_socket")
def fixture_notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def test_notifier_outside_systemd_is_a_noop() -> None:
    sd = SystemdNotifier({})
    assert not sd.enabled
    assert sd.ready("x") is False
    assert sd.watchdog() is False
    assert sd.watchdog_interval_s is None
    sd.close()


def test_notifier_sends_ready_status_watchdog_stopping(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    sd = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert sd.enabled
    assert sd.ready("soapd   running\nnow")
    assert sock.recv(1024) == b"READY=1\nSTATUS=soapd running now"
    assert sd.status("3 frames")
    assert sock.recv(1024) == b"STATUS=3 frames"
    assert sd.watchdog()
    assert sock.recv(1024) == b"WATCHDOG=1"
    assert sd.stopping()
    assert sock.recv(1024) == b"STOPPING=1"
    sd.close()
    sd.close()


def test_notifier_abstract_socket_address() -> None:
    name = f"soapd-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        sd = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert sd.watchdog()
        assert sock.recv(64) == b"WATCHDOG=1"
        sd.close()
    finally:
        sock.close()


def test_notifier_missing_socket_logs_and_returns_false(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sd = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert sd.ready() is False
    assert "sd_notify" in caplog.text
    sd.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "180000000"}, 90.0),
        ({"WATCHDOG_USEC": "180000000", "WATCHDOG_PID": str(os.getpid())}, 90.0),
        ({"WATCHDOG_USEC": "180000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(
    env: dict[str, str], expected: float | None
) -> None:
    assert SystemdNotifier(env).watchdog_interval_s == expected


UNIT_DIR = Path(__file__).resolve().parents[2] / "systemd"


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_file_is_notify_with_watchdog_credential_and_dirs() -> None:
    text = (UNIT_DIR / "soapd.service").read_text()
    settings = _settings(text)
    assert settings["Type"] == ["notify"]
    assert settings["LoadCredential"] == ["skynet-token:/etc/soapd/skynet-token"]
    assert settings["StateDirectory"] == ["soapd"]
    assert settings["CacheDirectory"] == ["soapd"]
    assert int(settings["WatchdogSec"][0]) > 0
    assert settings["KillMode"] == ["mixed"]
    assert any("soapd run" in v for v in settings["ExecStart"])
    assert any("check-config" in v for v in settings["ExecStartPre"])
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            assert "#" not in line, f"inline comment in a setting line: {line!r}"
    hardening = text[text.index("# --- Hardening") :]
    lines = [ln for ln in hardening.splitlines() if ln and not ln.startswith(("#", "["))]
    assert len(lines) >= 15
    assert "WantedBy" in lines[-1]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    soapd = Path(sys.executable).with_name("soapd")
    if not soapd.exists():
        pytest.skip("the soapd entry point is not installed in this environment")
    text = (UNIT_DIR / "soapd.service").read_text().replace("/opt/soapd/venv/bin/soapd", str(soapd))
    unit = tmp_path / "soapd.service"
    unit.write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "soapd.service" not in proc.stderr, proc.stderr


def test_web_unit_is_read_only_hardened_and_runs_soapd_web() -> None:
    text = (UNIT_DIR / "soapd-web.service").read_text()
    settings = _settings(text)
    assert settings["Type"] == ["exec"]
    assert settings["User"] == ["soapd"]
    assert any("soapd web" in v for v in settings["ExecStart"])
    assert any("check-config" in v for v in settings["ExecStartPre"])
    assert settings["ProtectSystem"] == ["strict"]
    assert "StateDirectory" not in settings  # never writable for the web server
    assert "/var/lib/soapd" in settings["ReadOnlyPaths"][0]
    assert "#LoadCredential=web-token:/etc/soapd/web-token" in text
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            assert "#" not in line, f"inline comment in a setting line: {line!r}"
    hardening = text[text.index("# --- Hardening") :]
    lines = [ln for ln in hardening.splitlines() if ln and not ln.startswith(("#", "["))]
    assert len(lines) >= 15
    assert "WantedBy" in lines[-1]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_web_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    soapd = Path(sys.executable).with_name("soapd")
    if not soapd.exists():
        pytest.skip("the soapd entry point is not installed in this environment")
    text = (UNIT_DIR / "soapd-web.service").read_text()
    unit = tmp_path / "soapd-web.service"
    unit.write_text(text.replace("/opt/soapd/venv/bin/soapd", str(soapd)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "soapd-web.service" not in proc.stderr, proc.stderr


def test_sysusers_and_tmpfiles_lines_have_the_expected_fields() -> None:
    users = [
        ln.split(None, 3)
        for ln in (UNIT_DIR / "soapd.sysusers.conf").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert users == [
        ["u", "soapd", "-", '"soapd photometry daemon"  /var/lib/soapd  /usr/sbin/nologin']
    ]
    dirs = [
        ln.split()
        for ln in (UNIT_DIR / "soapd.tmpfiles.conf").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert ["d", "/srv/soapd/inbox", "2775", "soapd", "soapd", "-", "-"] in dirs


def test_unit_file_hardening_settings_of_issue_14() -> None:
    settings = _settings((UNIT_DIR / "soapd.service").read_text())
    assert settings["ProtectProc"] == ["invisible"]
    assert settings["ProcSubset"] == ["pid"]
    assert settings["RemoveIPC"] == ["yes"]
    assert settings["PrivateMounts"] == ["yes"]
    assert settings["DevicePolicy"] == ["closed"]
    assert "~@privileged @resources" in settings["SystemCallFilter"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_file_exposure_score_is_at_most_1_5(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=yes`: 1.9 before #14's hardening, 1.3 after."""
    unit = tmp_path / "soapd.service"
    unit.write_text((UNIT_DIR / "soapd.service").read_text())
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout + proc.stderr)
    if match is None:
        pytest.skip(f"this systemd-analyze gives no offline score: {proc.stderr[:200]}")
    assert float(match.group(1)) <= 1.5
