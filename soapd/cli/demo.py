"""``python -m soapd.cli.demo`` (what ``make demo`` runs): the real daemon against a fake Skynet.

It builds (once, then reuses) the deterministic demo observation of
:mod:`soapd.testing.demo_field`, serves it from
:class:`~soapd.testing.fake_skynet.FakeSkynet` on 127.0.0.1 releasing one
exposure every few seconds, writes a config pointing soapd at that server and at
the bundled catalog file (calibration offline), and runs ``soapd run`` **as a
separate process, unchanged**. When every exposure has been processed it stops
the daemon with SIGTERM, as systemd would, and prints each target's lightcurve
and the alerts raised. Nothing leaves 127.0.0.1.

The state (database, frames, alerts, ``demo.toml``) is kept in a named folder,
``./demo-run`` unless ``--state-dir`` says otherwise, and the demo ends with the
commands to try next on it, ``soapd web`` (the status and lightcurve pages) among
them. Running the demo again starts that folder afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from soapd.cli import HelpFormatter
from soapd.store import Store
from soapd.testing.demo_field import DemoField, build_demo_field, load_into
from soapd.testing.fake_skynet import FakeSkynet

__all__ = ["main", "write_demo_config"]

_DONE_STATES = ("processed", "rejected", "failed")
#: File that marks a folder as the demo's own state (so a new run may empty it).
_MARKER = ".soapd-demo-state"


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "soapd" / "demo-field"


def _q(value: object) -> str:
    """Return ``value`` as a TOML basic string."""
    return json.dumps(str(value))


def write_demo_config(path: Path, demo: DemoField, *, api_url: str, state_dir: Path) -> Path:
    """Write the demo's soapd config (TOML) to ``path`` and return it."""
    targets = "\n".join(
        f"[[targets]]\nname = {_q(t.name)}\nra_deg = {t.ra_deg!r}\ndec_deg = {t.dec_deg!r}\n"
        for t in demo.targets
    )
    path.write_text(
        f"""# soapd demo configuration (written by python -m soapd.cli.demo)
[skynet]
api_url = {_q(api_url)}
observations = [{demo.obs_id}]
poll_interval_s = 5.0
backoff_s = 0.2

[paths]
state_dir = {_q(state_dir)}
cache_dir = {_q(state_dir / "cache")}

[service]
workers = 2
process_interval_s = 2.0
alerts_interval_s = 2.0
heartbeat_interval_s = 15.0

[calibration]
online = false
catalog_files = [{_q(demo.catalog_path)}]

[alerts]
batch_window_s = 0.0

[[notifiers]]
kind = "file"
directory = {_q(state_dir / "alerts")}

{targets}""",
        encoding="utf-8",
    )
    return path


def _progress(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    try:
        with Store(db, migrate=False) as store:
            return store.backlog()
    except Exception:  # the daemon may still be creating the schema
        return {}


def _wait_for(
    proc: subprocess.Popen[bytes], db: Path, n_frames: int, timeout_s: float
) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the daemon exited early with code {proc.returncode}")
        counts = _progress(db)
        if sum(counts.get(s, 0) for s in _DONE_STATES) >= n_frames:
            return counts
        time.sleep(0.5)
    return counts


def _report(db: Path, demo: DemoField) -> None:
    from soapd.cli import main as soapd_main

    cfg = db.parent / "demo.toml"
    for target in demo.targets:
        print(
            f"\n=== lightcurve of {target.name} (RA {target.ra_deg:.5f}, Dec {target.dec_deg:.5f})"
        )
        sys.stdout.flush()
        soapd_main(["lightcurve", target.name, "--config", str(cfg)])
        sys.stdout.flush()
    with Store(db, migrate=False) as store:
        alerts = store.list_alerts()
    print(f"\n=== alerts raised: {len(alerts)}")
    for a in sorted(alerts, key=lambda row: row["alert_id"]):
        payload: dict[str, Any] = json.loads(a["payload"])
        when = str(payload.get("mid_time_utc", ""))[:19]
        print(f"  {when}  [{a['status']}] {payload.get('message', a['rule'])}")
    last = demo.targets[-1].name
    print(f"\n=== GCN circular draft for {last} (`soapd lightcurve {last!r} --format gcn`)")
    sys.stdout.flush()
    soapd_main(["lightcurve", last, "--format", "gcn", "--config", str(cfg)])


def _fresh_state_dir(state: Path) -> Path:
    """Return ``state`` (absolute), emptied when it is an earlier demo's; refuse other folders."""
    state = state.resolve()
    if state.exists() and any(state.iterdir()):
        if not (state / _MARKER).is_file():
            raise SystemExit(
                f"demo: {state} exists and is not a soapd demo folder; "
                "give another --state-dir (the demo empties its folder on each run)"
            )
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    (state / _MARKER).write_text("written by python -m soapd.cli.demo\n", encoding="utf-8")
    return state


def _shown(path: Path) -> str:
    """Return ``path`` relative to the current folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _next_steps(state: Path, demo: DemoField) -> None:
    """Print where the state is and the commands to try on it."""
    exe = Path(sys.executable).with_name("soapd")
    soapd = _shown(exe) if exe.is_file() else "soapd"
    cfg = _shown(state / "demo.toml")
    first = demo.targets[0].name
    print(
        f"\ndemo: state kept in {_shown(state)}/ (alerts as GCN text + JSON in "
        f"{_shown(state / 'alerts')}/; the next `make demo` starts it afresh).\n"
        "Try next, on the kept state:\n"
        f"  {soapd} status --config {cfg}\n"
        f"  {soapd} lightcurve {first} --config {cfg} --plot {first}.png\n"
        f"  {soapd} web --config {cfg}\n"
        "      then open http://127.0.0.1:8788/ (status, targets, interactive "
        "lightcurves; Ctrl-C stops it)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the demo and return the daemon's exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m soapd.cli.demo",
        description="Run the real soapd daemon against a fake Skynet on 127.0.0.1 serving a "
        "synthetic observation, then print the lightcurves and alerts.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--frames", type=int, default=12, help="exposures in the observation")
    parser.add_argument(
        "--release-every", type=float, default=2.0, metavar="S", help="seconds between releases"
    )
    parser.add_argument(
        "--field-dir", type=Path, default=_default_cache(), help="where demo frames are cached"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("demo-run"),
        help="soapd state folder, kept after the demo (emptied first when it holds an "
        "earlier demo's state)",
    )
    parser.add_argument("--timeout", type=float, default=180.0, metavar="S", help="give up after")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    print(f"demo: preparing {args.frames} synthetic frames in {args.field_dir} ...", flush=True)
    demo = build_demo_field(args.field_dir, n_frames=args.frames)
    state = _fresh_state_dir(args.state_dir)
    with FakeSkynet(seed=0) as fake:
        load_into(fake, demo)
        cfg = write_demo_config(state / "demo.toml", demo, api_url=fake.url, state_dir=state)
        env = dict(os.environ, SOAPD_SKYNET_TOKEN=fake.token, SOAPD_CONFIG="")
        env.pop("CREDENTIALS_DIRECTORY", None)
        print(f"demo: fake Skynet at {fake.url}; starting `soapd run --config {cfg}`", flush=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "soapd", "run", "--config", str(cfg)], env=env
        )
        try:
            fake.start_releasing(args.release_every)
            counts = _wait_for(proc, state / "soapd.db", len(demo.frames), args.timeout)
            time.sleep(3.0)  # let the outbox send the last alerts
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
    print(f"\ndemo: daemon stopped with code {code}; frames: {counts}", flush=True)
    _report(state / "soapd.db", demo)
    print(f"\ndemo: done in {time.monotonic() - t0:.0f} s")
    _next_steps(state, demo)
    return code


if __name__ == "__main__":
    sys.exit(main())
