"""Intake benchmark: listing and downloading from the fake Skynet, registering files, inbox latency.

Everything runs on this machine through soapd's own code: ``SkynetClient`` (httpx,
real sockets) against ``soapd.testing.fake_skynet.FakeSkynet`` on 127.0.0.1,
``soapd.ingest.register_file`` and ``soapd.ingest.InboxWatcher`` (inotify).

* **list**: ``iter_archived`` over an observation of 1,000 archived exposures, pages
  of 100 (11 requests), records parsed into ``Exposure``.
* **download**: 1024 x 1024 float32 frames (4.2 MB) streamed to ``.part``, checked with
  astropy, fsynced, renamed; MB/s over the batch.
* **register**: the same files copied into a frames folder (copy, fsync, FITS check,
  rename); MB/s.
* **inbox latency**: time from ``close()`` of a 4.2 MB file written into the inbox to
  its path arriving on the queue (watchdog inotify thread).

Usage: ``.venv/bin/python bench/bench_intake.py [--quick]``; ``run(workdir, quick=...)``
returns rows for ``bench/run.py``.
"""

from __future__ import annotations

import io
import queue
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits
from common import Row, repeat, standalone_main

from soapd.config import SkynetConfig, Token
from soapd.ingest import InboxWatcher, register_file
from soapd.skynet import SkynetClient
from soapd.testing.fake_skynet import FakeSkynet

TOKEN = "bench-token-0123456789abcdef"
T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def _frame_bytes(seed: int, size: int = 1024) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    fits.PrimaryHDU(rng.normal(300.0, 20.0, (size, size)).astype(np.float32)).writeto(buf)
    return buf.getvalue()


def _client(fake: FakeSkynet) -> SkynetClient:
    cfg = SkynetConfig(api_url=fake.url, page_size=100, backoff_s=0.0)
    return SkynetClient.from_config(cfg, Token(TOKEN))


def bench_list(n_exps: int, reps: int) -> Row:
    with FakeSkynet(token=TOKEN) as fake:
        for i in range(n_exps):
            fake.add_exposure(1, b"x", center_time_utc=T0 + timedelta(seconds=i), archived=True)
        with _client(fake) as client:
            times, got = repeat(lambda: len(list(client.iter_archived(1))), reps)
    assert got == n_exps
    return Row(
        "intake",
        f"list {n_exps} archived exposures (pages of 100)",
        times_s=times,
        note=f"{n_exps / statistics.median(times):.0f} exposures/s",
    )


def bench_download(work: Path, n_frames: int) -> tuple[Row, list[Path]]:
    data = [_frame_bytes(i) for i in range(n_frames)]
    with FakeSkynet(token=TOKEN) as fake:
        for i, blob in enumerate(data):
            fake.add_exposure(1, blob, center_time_utc=T0 + timedelta(minutes=i), archived=True)
        with _client(fake) as client:
            exps = list(client.iter_archived(1))
            times = []
            paths = []
            for exp in exps:
                t0 = time.perf_counter()
                paths.append(client.download(exp, work / "downloads").path)
                times.append(time.perf_counter() - t0)
    mb = sum(len(b) for b in data) / 1e6
    return (
        Row(
            "intake",
            f"download 1024x1024 float32 frame ({len(data[0]) / 1e6:.1f} MB), per frame",
            times_s=times,
            note=f"{mb / sum(times):.0f} MB/s over {n_frames} frames",
        ),
        paths,
    )


def bench_register(work: Path, paths: list[Path]) -> Row:
    times = []
    for path in paths:
        t0 = time.perf_counter()
        register_file(path, work / "frames")
        times.append(time.perf_counter() - t0)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    return Row(
        "intake",
        "register_file (copy, fsync, FITS check, rename), per frame",
        times_s=times,
        note=f"{mb / sum(times):.0f} MB/s over {len(paths)} frames",
    )


def bench_inbox(work: Path, n_files: int) -> Row:
    inbox = work / "inbox"
    paths: queue.Queue[Path] = queue.Queue()
    blob = _frame_bytes(99)
    times = []
    with InboxWatcher(inbox, paths):
        for i in range(n_files):
            target = inbox / f"f{i:03d}.fits"
            with target.open("wb") as fh:
                fh.write(blob)
            t0 = time.perf_counter()
            got = paths.get(timeout=10)
            times.append(time.perf_counter() - t0)
            assert got == target
    return Row(
        "intake",
        "inbox: close() to path on the queue",
        times_s=times,
        note=f"median {statistics.median(times) * 1e6:.0f} us, max {max(times) * 1e3:.1f} ms",
    )


def run(workdir: Path, *, quick: bool = False) -> list[Row]:
    workdir.mkdir(parents=True, exist_ok=True)
    n = 5 if quick else 20
    rows = [bench_list(200 if quick else 1000, 3 if quick else 5)]
    download_row, paths = bench_download(workdir, n)
    rows += [download_row, bench_register(workdir, paths), bench_inbox(workdir, n)]
    return rows


if __name__ == "__main__":
    sys.exit(standalone_main(run, __doc__, "intake"))
