"""Hostile downloads and inbox files against a real ``soapd run`` process (#15).

The daemon runs as ``python -m soapd run`` against FakeSkynet on 127.0.0.1, with
an inbox. Each test plays one fault of an operator's worst night and checks
what the issue asks:

* a 1 MB gzip bomb dropped in the inbox -> set aside with a clear reason, the
  daemon's peak RSS (``VmHWM`` in ``/proc/<pid>/status``) under 500 MB, and
  frames after it still processed;
* an HTML page with status 200 instead of FITS for a while (seconds here; the
  report was 30 s) -> every frame processed after it, none with a try used up;
* a drip-fed download -> inbox frames are processed while it trickles, and
  SIGTERM still stops the daemon promptly;
* an exposure id of 2**64 in the listing and server file names that collide ->
  the other exposures processed, each with its own pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from soapd.store import Store
from soapd.testing.demo_field import DemoField
from soapd.testing.fake_skynet import FakeSkynet
from tests.unit.ingest.test_checker import gzip_bomb

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MB = 1024 * 1024
RSS_LIMIT_BYTES = 500 * MB


def _q(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(root: Path, demo: DemoField, api_url: str, **skynet: float) -> Path:
    """Write a fast daemon config for ``demo`` with an inbox; return its path."""
    extra = "".join(f"{k} = {v!r}\n" for k, v in skynet.items())
    targets = "".join(
        f"[[targets]]\nname = {_q(t.name)}\nra_deg = {t.ra_deg!r}\ndec_deg = {t.dec_deg!r}\n"
        for t in demo.targets
    )
    path = root / "soapd.toml"
    path.write_text(
        f"""[skynet]
api_url = {_q(api_url)}
observations = [{demo.obs_id}]
poll_interval_s = 5.0
backoff_s = 0.3
max_attempts = 2
read_timeout_s = 5.0
{extra}
[paths]
state_dir = {_q(root / "state")}
cache_dir = {_q(root / "cache")}
inbox_dir = {_q(root / "inbox")}

[service]
workers = 2
process_interval_s = 1.0
inbox_interval_s = 1.0

[calibration]
online = false
catalog_files = [{_q(demo.catalog_path)}]

{targets}""",
        encoding="utf-8",
    )
    (root / "inbox").mkdir()
    return path


class Daemon:
    """``soapd run`` as a subprocess; its log goes to a file; stopped with SIGTERM."""

    def __init__(self, cfg: Path, token: str) -> None:
        self.cfg = cfg
        self.log_path = cfg.parent / "daemon.log"
        self.db = cfg.parent / "state" / "soapd.db"
        env = dict(os.environ, SOAPD_SKYNET_TOKEN=token, SOAPD_CONFIG="")
        env.pop("CREDENTIALS_DIRECTORY", None)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "soapd", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def memory(self) -> dict[str, int]:
        """Return the daemon process's VmRSS and VmHWM (peak RSS), in bytes."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                out[key] = int(value.split()[0]) * 1024
        return out

    def frames(self) -> list[Any]:
        try:
            with Store(self.db, migrate=False) as store:
                return store.db.execute(
                    "SELECT exp_id, state, tries, last_error, sha256, source FROM frames"
                    " ORDER BY frame_id"
                ).fetchall()
        except Exception:  # not created yet, or busy for a moment
            return []

    def wait(self, what: str, predicate: Callable[[], bool], timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"soapd exited:\n{self.log[-3000:]}"
            if predicate():
                return
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}: {self.frames()}\n{self.log[-3000:]}")

    def stop(self, timeout_s: float = 60.0) -> float:
        """SIGTERM, wait; return the seconds it took to exit."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return time.monotonic() - start


@pytest.fixture(name="daemon")
def fixture_daemon() -> Iterator[Callable[[Path, str], Daemon]]:
    """Factory: start a daemon; every one started is stopped after the test."""
    started: list[Daemon] = []

    def start(cfg: Path, token: str) -> Daemon:
        started.append(Daemon(cfg, token))
        return started[-1]

    yield start
    for d in started:
        d.stop()


def _publish(fake: FakeSkynet, demo: DemoField, indexes: range, **kw: Any) -> list[int]:
    fake.add_observation(demo.obs_id, demo.obs_name)
    return [
        fake.add_exposure(
            demo.obs_id,
            demo.frames[i].path.read_bytes(),
            center_time_utc=demo.frames[i].mid_time_utc,
            exptime_s=demo.frames[i].exptime_s,
            filter_name=demo.frames[i].filter_name,
            gain=demo.gain_e_per_adu,
            read_noise=demo.read_noise_e,
            exp_id=demo.obs_id * 100 + i + 1,
            filename=demo.frames[i].path.name,
            archived=True,
            **kw,
        )
        for i in indexes
    ]


def test_gzip_bomb_in_the_inbox_is_set_aside_and_the_daemon_stays_small(
    tmp_path: Path, demo_field_e2e: DemoField, daemon: Callable[[Path, str], Daemon]
) -> None:
    demo = demo_field_e2e
    with FakeSkynet(seed=11) as fake:
        fake.add_observation(demo.obs_id)  # followed, empty: the inbox is the only source
        cfg = write_config(tmp_path, demo, fake.url)
        run = daemon(cfg, fake.token)
        inbox = tmp_path / "inbox"
        bomb = gzip_bomb(tmp_path / "bomb.fits.gz")
        assert bomb.stat().st_size < 1.1 * MB
        shutil.move(bomb, inbox / "bomb.fits.gz")
        run.wait("the bomb set aside", (inbox / "rejected" / "bomb.fits.gz").exists)
        shutil.copy(demo.frames[0].path, inbox / "after.fits")
        run.wait("the frame after it", lambda: [r[1] for r in run.frames()] == ["processed"])
        memory = run.memory()
        reason = (inbox / "rejected" / "bomb.fits.gz.reason.txt").read_text()
        log = run.log
    print(f"daemon memory after the bomb: {memory}")
    assert memory["VmHWM"] < RSS_LIMIT_BYTES, memory
    assert "decompresses to more than 1024 MB" in reason
    assert "[frame] max_decompressed_mb = 1024" in reason
    assert "inbox: bomb.fits.gz not registered" in log
    assert "Traceback" not in log


def test_html_page_for_a_while_then_every_frame_processed_without_a_try(
    tmp_path: Path, demo_field_e2e: DemoField, daemon: Callable[[Path, str], Daemon]
) -> None:
    demo = demo_field_e2e
    with FakeSkynet(seed=12) as fake:
        fake.serve_html(8.0)  # the report saw 30 s; the same fault, shorter
        ids = _publish(fake, demo, range(4))
        cfg = write_config(tmp_path, demo, fake.url, download_budget_s=120.0)
        run = daemon(cfg, fake.token)
        run.wait(
            "every frame processed",
            lambda: [r[1] for r in run.frames()] == ["processed"] * len(ids),
            timeout_s=150.0,
        )
        pages = [r for r in fake.requests if r.path.endswith("/download/fits") and r.status == 200]
        log = run.log
    rows = run.frames()
    assert [r[0] for r in rows] == ids
    assert [r[2] for r in rows] == [1] * len(ids)  # one processing try each, no download try
    assert len(pages) > len(ids), "the HTML page was never served"
    assert "HTML page (Content-Type text/html) instead of a FITS file" in log
    assert "download postponed (no try counted" in log
    assert "Traceback" not in log


def test_drip_fed_download_does_not_stop_the_inbox(
    tmp_path: Path, demo_field_e2e: DemoField, daemon: Callable[[Path, str], Daemon]
) -> None:
    demo = demo_field_e2e
    with FakeSkynet(seed=13, request_timeout_s=60.0) as fake:
        fake.drip_next_download(chunk_bytes=1024, interval_s=1.0)  # 1 MB: about 17 minutes
        (dripped,) = _publish(fake, demo, range(1))
        cfg = write_config(tmp_path, demo, fake.url, download_deadline_s=600.0)
        run = daemon(cfg, fake.token)
        run.wait(
            "the drip to start",
            lambda: any(r.path.endswith("/download/fits") for r in fake.requests),
        )
        for i in (1, 2):
            shutil.copy(demo.frames[i].path, tmp_path / "inbox" / f"local{i}.fits")
        run.wait(
            "the inbox frames processed",
            lambda: [r[1] for r in run.frames() if r[5] == "inbox"] == ["processed"] * 2,
        )
        rows = {r[0]: r for r in run.frames()}
        assert rows[dripped][1] == "seen"  # still trickling in meanwhile
        assert rows[dripped][2] == 0
        took_s = run.stop()
        log = run.log
    print(f"daemon stopped {took_s:.1f} s after SIGTERM, mid-drip")
    assert run.proc.returncode == 0, log[-3000:]
    assert took_s < 30.0  # the transfer is cut short: no 17-minute wait
    assert "Traceback" not in log


def test_id_2_64_in_the_listing_and_colliding_names_each_frame_its_own_pixels(
    tmp_path: Path, demo_field_e2e: DemoField, daemon: Callable[[Path, str], Daemon]
) -> None:
    demo = demo_field_e2e
    with FakeSkynet(seed=14) as fake:
        fake.collide_names("image.fits")
        ids = _publish(fake, demo, range(4))
        fake.add_record({"id": 2**64, "obsId": demo.obs_id, "state": "archived"})
        cfg = write_config(tmp_path, demo, fake.url)
        run = daemon(cfg, fake.token)
        run.wait(
            "every good exposure processed",
            lambda: [r[1] for r in run.frames()] == ["processed"] * len(ids),
            timeout_s=150.0,
        )
        log = run.log
    rows = run.frames()
    assert [r[0] for r in rows] == ids
    for i, row in zip(range(4), rows, strict=True):
        assert row[4] == hashlib.sha256(demo.frames[i].path.read_bytes()).hexdigest()
    fader = demo.targets[0]
    measured = _median_mags(run.db, fader.name)
    for i, exp_id in enumerate(ids):  # the fader dims 0.25 mag per frame: pixels tell frames apart
        assert measured[exp_id] == pytest.approx(fader.mags[i], abs=0.1)
    assert "18446744073709551616 is outside 1..2**63-1" in log
    assert "Traceback" not in log


def _median_mags(db: Path, target: str) -> dict[int, float]:
    with Store(db, migrate=False) as store:
        rows = store.db.execute(
            "SELECT f.exp_id, m.mag FROM measurements m JOIN frames f USING (frame_id)"
            " JOIN targets t USING (target_id) WHERE t.name = ? AND m.superseded = 0"
            " AND m.mag IS NOT NULL",
            [target],
        ).fetchall()
    by_exp: dict[int, list[float]] = {}
    for exp_id, mag in rows:
        by_exp.setdefault(exp_id, []).append(mag)
    return {k: statistics.median(v) for k, v in by_exp.items()}
