"""Soak: the real daemon against a fake Skynet that archives one exposure every 2 s, for hours.

Run (the issue asks for 2 hours; ``--duration-s`` sets the length)::

    .venv/bin/python bench/soak.py --duration-s 7200 --out bench/results/soak_7200s.json

``python -m soapd run`` runs as a subprocess (2 workers, the demo field's
calibration catalog, file notifier) following the fake's telescope. A producer
thread adds one new archived exposure every ``--release-every-s`` seconds: one of
the demo field's frames with a unique header card, so every exposure has its own
bytes and is a new frame. Every ``--sample-every-s`` seconds the harness reads
from ``/proc``: the daemon's resident memory (RSS), its threads and open file
descriptors, and the RSS of its worker processes (the fork server's children).
Latency is the time from an exposure's archiving on the server to its
``processed_at`` in the ledger.

The report compares the **start** (samples and frames of the first
``--window-s`` seconds after ``--warmup-s``) with the **end** (the last
``--window-s`` seconds), and counts frames released, processed and failed. The
fake drops the bytes of exposures already processed, so its own memory stays flat.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astropy.io import fits
from common import bytecode_as_installed

from soapd.store import Store
from soapd.testing.demo_field import DemoField, build_demo_field
from soapd.testing.fake_skynet import FakeSkynet

TELESCOPE = "Prompt5"


@dataclass
class Sample:
    """One look at the daemon's processes (t_s: seconds since the daemon started)."""

    t_s: float
    rss_mb: float
    threads: int
    open_fds: int
    workers: int
    workers_rss_mb: float
    processed: int


def _status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _worker_pids(pid: int) -> list[int]:
    """Return the worker processes: the children of the daemon's fork server."""
    workers: list[int] = []
    for child in _children(pid):
        with contextlib.suppress(OSError):
            if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers += _children(child)
    return workers


def _rss_mb(pid: int) -> float:
    return int(_status_field(pid, "VmRSS").split()[0]) / 1024.0


def sample(pid: int, t_s: float, processed: int) -> Sample:
    """Read the daemon's and its workers' numbers from /proc."""
    workers = []
    for child in _worker_pids(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            workers.append(_rss_mb(child))
    return Sample(
        t_s=round(t_s, 1),
        rss_mb=round(_rss_mb(pid), 1),
        threads=int(_status_field(pid, "Threads")),
        open_fds=len(os.listdir(f"/proc/{pid}/fd")),
        workers=len(workers),
        workers_rss_mb=round(sum(workers), 1),
        processed=processed,
    )


def unique_bytes(path: Path, seq: int) -> bytes:
    """Return the FITS file ``path`` with a SOAKSEQ card: same pixels, new bytes."""
    with fits.open(path) as hdul:
        hdul[0].header["SOAKSEQ"] = (seq, "soak harness sequence number")
        buf = io.BytesIO()
        hdul.writeto(buf)
    return buf.getvalue()


def write_config(path: Path, demo: DemoField, *, api_url: str, state_dir: Path) -> None:
    """Write the soak's soapd config: follow the fake's telescope, 2 workers, file alerts."""
    targets = "".join(
        f'[[targets]]\nname = "{t.name}"\nra_deg = {t.ra_deg!r}\ndec_deg = {t.dec_deg!r}\n'
        for t in demo.targets
    )
    path.write_text(
        f"""[skynet]
api_url = "{api_url}"
telescopes = ["{TELESCOPE}"]
poll_interval_s = 5.0
backoff_s = 0.2

[paths]
state_dir = "{state_dir}"
cache_dir = "{state_dir / "cache"}"

[service]
workers = 2
process_interval_s = 2.0
alerts_interval_s = 5.0
heartbeat_interval_s = 60.0

[calibration]
online = false
catalog_files = ["{demo.catalog_path}"]

[logging]
level = "WARNING"

[[notifiers]]
kind = "file"
directory = "{state_dir / "alerts"}"

{targets}""",
        encoding="utf-8",
    )


class Producer:
    """Adds one archived exposure every ``every_s`` seconds; drops bytes already processed."""

    def __init__(self, fake: FakeSkynet, demo: DemoField, db: Path, every_s: float) -> None:
        self.fake, self.demo, self.db, self.every_s = fake, demo, db, every_s
        self.released: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="soak-producer")

    def run(self) -> None:
        seq = 0
        next_s = time.monotonic()
        while not self.stop.wait(max(0.0, next_s - time.monotonic())):
            frame = self.demo.frames[seq % len(self.demo.frames)]
            exp_id = self.fake.add_exposure(
                self.demo.obs_id,
                unique_bytes(frame.path, seq),
                center_time_utc=datetime.now(UTC),
                exptime_s=frame.exptime_s,
                telescope=TELESCOPE,
                filter_name=frame.filter_name,
                gain=self.demo.gain_e_per_adu,
                read_noise=self.demo.read_noise_e,
                archived=True,
            )
            self.released[exp_id] = time.time()
            seq += 1
            next_s += self.every_s
            if seq % 50 == 0:
                self._drop_processed()

    def _drop_processed(self) -> None:
        """Free the fake's copy of exposures already processed (the harness's memory only)."""
        with contextlib.suppress(Exception), Store(self.db, read_only=True) as store:
            done = {
                r[0]
                for r in store.db.execute(
                    "SELECT exp_id FROM frames WHERE state = 'processed'"
                ).fetchall()
            }
        with self.fake._lock:  # a bench harness trimming its own fake
            for exp_id in done:
                exp = self.fake._exps.get(exp_id)
                if exp is not None:
                    exp.data = b""


def _processed(db: Path) -> tuple[int, dict[int, float], dict[str, int]]:
    try:
        with Store(db, read_only=True) as store:
            rows = store.db.execute(
                "SELECT exp_id, processed_at FROM frames WHERE state = 'processed'"
            ).fetchall()
            backlog = store.backlog()
    except Exception:  # not created yet
        return 0, {}, {}
    done = {int(e): datetime.fromisoformat(p).timestamp() for e, p in rows}
    return len(done), done, backlog


def _window(samples: list[Sample], lo: float, hi: float) -> dict[str, float]:
    chosen = [s for s in samples if lo <= s.t_s <= hi] or samples[-1:]
    return {
        "rss_mb": statistics.median(s.rss_mb for s in chosen),
        "threads": max(s.threads for s in chosen),
        "open_fds": max(s.open_fds for s in chosen),
        "workers_rss_mb": statistics.median(s.workers_rss_mb for s in chosen),
    }


def _latency(
    released: dict[int, float], done: dict[int, float], t0: float, lo: float, hi: float
) -> dict[str, float]:
    lat = sorted(done[e] - r for e, r in released.items() if e in done and lo <= r - t0 <= hi)
    if not lat:
        return {"n": 0}
    return {
        "n": len(lat),
        "median_s": round(statistics.median(lat), 2),
        "p95_s": round(lat[int(0.95 * (len(lat) - 1))], 2),
        "max_s": round(lat[-1], 2),
    }


def soak(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    demo = build_demo_field(tmp / "field", n_frames=10)
    state = tmp / "state"
    state.mkdir()
    db = state / "soapd.db"
    with FakeSkynet(seed=1, max_requests=10_000_000) as fake:
        fake.add_observation(demo.obs_id, demo.obs_name)
        cfg = tmp / "soapd.toml"
        write_config(cfg, demo, api_url=fake.url, state_dir=state)
        env = dict(os.environ, SOAPD_SKYNET_TOKEN=fake.token, SOAPD_CONFIG="")
        log = (tmp / "daemon.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "soapd", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        t0 = time.time()
        producer = Producer(fake, demo, db, args.release_every_s)
        samples: list[Sample] = []
        try:
            producer.thread.start()
            while time.time() - t0 < args.duration_s:
                time.sleep(args.sample_every_s)
                if proc.poll() is not None:
                    raise SystemExit(f"the daemon exited with code {proc.returncode}")
                n, _, _ = _processed(db)
                samples.append(sample(proc.pid, time.time() - t0, n))
                print(json.dumps(asdict(samples[-1])), flush=True)
            producer.stop.set()
            producer.thread.join()
            drain_deadline = time.time() + 120
            while time.time() < drain_deadline:
                n, done, backlog = _processed(db)
                if n >= len(producer.released):
                    break
                time.sleep(1.0)
        finally:
            producer.stop.set()
            if producer.thread.is_alive():
                producer.thread.join()
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            log.close()
    n, done, backlog = _processed(db)
    end = samples[-1].t_s if samples else args.duration_s
    start_lo, start_hi = args.warmup_s, args.warmup_s + args.window_s
    errors = [
        line
        for line in (tmp / "daemon.log").read_text(errors="replace").splitlines()
        if " ERROR " in line or "Traceback" in line
    ]
    return {
        "duration_s": args.duration_s,
        "release_every_s": args.release_every_s,
        "released": len(producer.released),
        "processed": n,
        "backlog_at_end": backlog,
        "exit_code": rc,
        "error_lines": len(errors),
        "start": {
            **_window(samples, start_lo, start_hi),
            "latency": _latency(producer.released, done, t0, start_lo, start_hi),
        },
        "end": {
            **_window(samples, end - args.window_s, end),
            "latency": _latency(producer.released, done, t0, end - args.window_s, end),
        },
        "samples": [asdict(s) for s in samples],
        "when_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=7200.0)
    parser.add_argument("--release-every-s", type=float, default=2.0)
    parser.add_argument("--sample-every-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="start window begins here")
    parser.add_argument("--window-s", type=float, default=120.0, help="length of each window")
    parser.add_argument("--out", type=Path, help="write the full report (JSON) here")
    args = parser.parse_args()
    bytecode_as_installed()
    with tempfile.TemporaryDirectory(prefix="soapd-soak-") as tmp:
        report = soak(args, Path(tmp))
    summary = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
