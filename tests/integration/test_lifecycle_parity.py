"""One fault script through the daemon's jobs and through ``Soap``: the same ledger rows.

Both run the frame lifecycle of :mod:`soapd.frames` against their own FakeSkynet
(same seed and exposures, so the same exposure ids) with the real
``SkynetClient``. Four exposures, in this order:

A  the first download attempt gets HTTP 503, the client's retry succeeds
B  every attempt of the first download is truncated; the next download is fine
C  not a FITS file at all (failed after ``service.max_tries`` = 2 downloads)
D  Skynet is down whenever it is downloaded (HTTP 503 on every attempt)

Two download rounds (``download_frames`` / ``Soap.download()``), then the
downloaded frames are processed (the daemon's process pool / ``Soap.run``). The
final ledger rows (state, tries, last error, sha256, file name) must be
identical, and the archive must have seen the same download requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soapd.api.soap import Soap
from soapd.config import Config, Token, parse_config
from soapd.daemon.jobs import JobContext, download_frames, poll_skynet, process_pending
from soapd.daemon.pool import WorkerPool
from soapd.models import FRAME_STATES
from soapd.skynet.client import SkynetClient
from soapd.skynet.records import Exposure
from soapd.skynet.source import DownloadedFile
from soapd.store import Store
from soapd.testing.demo_field import DemoField
from soapd.testing.fake_skynet import NOT_FITS_BYTES, FakeSkynet

pytestmark = pytest.mark.timeout(180)

#: A 503 for every request while a fault is on (the fake takes a rate below 1 only).
DOWN = 0.999_999
MAX_ATTEMPTS = 2
#: service.max_tries (not the default 3, so a hard-coded 3 would show), one round each.
MAX_TRIES = 2
ROUNDS = MAX_TRIES
#: (exposure index, download call from 1, or 0 for every call) -> fault
SCRIPT = {(0, 1): "503 once", (1, 1): "truncated", (3, 0): "down"}

Row = tuple[Any, ...]


class ScriptedSource:
    """An ExposureSource: a SkynetClient whose downloads meet :data:`SCRIPT`'s faults.

    Each fault is switched on at the fake server just before the download and off
    after it; "503 once" is switched off by the client's wait before its retry.
    ``log`` lists (exposure index, call, fault) of every download.
    """

    def __init__(self, fake: FakeSkynet, cfg: Config, ids: list[int]) -> None:
        self.fake = fake
        self.ids = ids
        self.calls: Counter[int] = Counter()
        self.log: list[tuple[int, int, str]] = []
        self.fault = ""
        self.client = SkynetClient.from_config(
            cfg.skynet, Token(fake.token), sleep=self._between_attempts
        )

    def _between_attempts(self, _wait_s: float) -> None:
        if self.fault == "503 once":
            self.fake.set_fail_rate(0.0)

    def download(self, exp: Exposure, dest_dir: Path) -> DownloadedFile:
        """Download ``exp`` with this call's fault on at the fake server."""
        index = self.ids.index(exp.exp_id)
        self.calls[index] += 1
        call = self.calls[index]
        self.fault = SCRIPT.get((index, call)) or SCRIPT.get((index, 0), "")
        self.log.append((index, call, self.fault))
        if self.fault in {"503 once", "down"}:
            self.fake.set_fail_rate(DOWN)
        elif self.fault == "truncated":
            self.fake.truncate_next_download(MAX_ATTEMPTS)
        try:
            return self.client.download(exp, dest_dir)
        finally:
            self.fake.set_fail_rate(0.0)
            self.fault = ""

    def iter_archived(self, obs_id: int) -> Iterator[Exposure]:
        """The client's listing, unchanged."""
        return self.client.iter_archived(obs_id)

    def iter_telescope(self, telescope: str, *, since_utc: datetime) -> Iterator[Exposure]:
        """The client's listing, unchanged."""
        return self.client.iter_telescope(telescope, since_utc=since_utc)

    def close(self) -> None:
        """Close the client."""
        self.client.close()


@contextmanager
def _archive(demo: DemoField, root: Path) -> Iterator[tuple[Config, FakeSkynet, ScriptedSource]]:
    """A fresh fake archive with exposures A-D, a config for it and the scripted client."""
    with FakeSkynet(seed=3) as fake:
        fake.add_observation(demo.obs_id)
        files = [demo.frames[0].path.read_bytes(), demo.frames[1].path.read_bytes()]
        files += [NOT_FITS_BYTES, demo.frames[2].path.read_bytes()]
        ids = [
            fake.add_exposure(
                demo.obs_id,
                data,
                center_time_utc=demo.frames[0].mid_time_utc + timedelta(minutes=2 * i),
                gain=demo.gain_e_per_adu,
                read_noise=demo.read_noise_e,
                archived=True,
            )
            for i, data in enumerate(files)
        ]
        cfg = parse_config(
            {
                "skynet": {
                    "api_url": fake.url,
                    "max_attempts": MAX_ATTEMPTS,
                    "backoff_s": 0.0,
                    # C (not FITS) counts a try at each answer, as before #15's budget,
                    # and downloads go one at a time: the fault script is sequential.
                    "download_budget_s": 0.0,
                    "download_threads": 1,
                },
                "paths": {"state_dir": str(root / "state"), "cache_dir": str(root / "cache")},
                "service": {"workers": 1, "max_tries": MAX_TRIES},
                "calibration": {"catalog_files": [str(demo.catalog_path)], "online": False},
            },
            base=root,
        )
        source = ScriptedSource(fake, cfg, ids)
        try:
            yield cfg, fake, source
        finally:
            source.close()


def _run_daemon(cfg: Config, source: ScriptedSource, obs_id: int) -> None:
    """The daemon's jobs, as ``run_until_idle`` calls them, with the real process pool."""
    store = Store(cfg.paths.db_path)
    pool = WorkerPool(cfg)
    ctx = JobContext(
        config=cfg,
        store=store,
        pool=pool,
        wake=lambda _job: None,
        source_factory=lambda _token: source,
        read_token=lambda: Token("unused"),
    )
    try:
        store.follow_observation(obs_id)
        poll_skynet(ctx)
        for _ in range(ROUNDS):
            download_frames(ctx, limit=10, wait_s=60.0)
        for _ in range(120):
            process_pending(ctx, wait_s=1.0)
            if not pool.inflight and not store.pending_frames(1):
                break
    finally:
        if ctx.fetcher is not None:
            ctx.fetcher.close()
        pool.shutdown()
        store.close()


def _run_soap(cfg: Config, source: ScriptedSource, obs_id: int) -> None:
    with Soap(obs_id, config=cfg, source=source) as soap:
        for _ in range(ROUNDS):
            soap.download()
        soap.run(download=False)


def _rows(cfg: Config) -> list[Row]:
    """The ledger rows that must agree (the run's own state folder written as <state>)."""
    state = str(cfg.paths.state_dir)
    with Store(cfg.paths.db_path) as store:
        rows = [r for s in FRAME_STATES for r in store.frames_in_state(s)]
    return sorted(
        (
            r.exp_id,
            r.state,
            r.tries,
            (r.last_error or "").replace(state, "<state>"),
            r.sha256,
            r.path.name if r.path else None,
        )
        for r in rows
    )


def test_fault_script_leaves_identical_ledger_rows_in_daemon_and_soap(
    tmp_path: Path, demo_field: DemoField
) -> None:
    runs: dict[str, tuple[list[Row], list[tuple[int, int, str]], list[tuple[Any, int]]]] = {}
    for who in ("daemon", "soap"):
        with _archive(demo_field, tmp_path / who) as (cfg, fake, source):
            if who == "daemon":
                _run_daemon(cfg, source, demo_field.obs_id)
            else:
                _run_soap(cfg, source, demo_field.obs_id)
            downloads = [
                (r.params.get("image"), r.status)
                for r in fake.requests
                if r.path.endswith("/download/fits")
            ]
            runs[who] = (_rows(cfg), list(source.log), downloads)
    rows, calls, downloads = runs["daemon"]
    assert runs["soap"][0] == rows
    assert runs["soap"][1] == calls
    assert runs["soap"][2] == downloads
    # The script did what it says (daemon and Soap alike, by the asserts above).
    a, b, c, d = rows
    assert (a[1], a[2], a[3]) == ("processed", 1, "")
    assert a[4]
    assert a[5]
    assert (b[1], b[2], b[3]) == ("processed", 1, "")
    assert (c[1], c[2], c[4], c[5]) == ("failed", MAX_TRIES, None, None)
    assert "fits" in c[3].lower()
    assert (d[1], d[2], d[4]) == ("seen", 0, None)  # Skynet down: no try counted
    assert d[3].startswith("download postponed: ")
    assert "503" in d[3]
    assert calls[:4] == [(0, 1, "503 once"), (1, 1, "truncated"), (2, 1, ""), (3, 1, "down")]
    assert [s for _image, s in downloads].count(503) == 1 + ROUNDS * MAX_ATTEMPTS
