"""Web benchmark: a 10,000-point target's lightcurve JSON, and its page drawn in real Chromium.

The state is built through soapd's own Store API (``upsert_target``, ``save_result``,
``save_stack``) in a temporary folder: one target with a trigger time, 10,000 frames
90 s apart with 3 apertures each (30,000 measurement rows; the JSON and the plot
keep one aperture per frame: 10,000 points), and its stacked epochs in log bins of
t - T0 (factor 1.1 from 60 s, at most 100 frames each, as ``[stacks]`` defaults
make them). ``soapd web`` serves it as a subprocess on 127.0.0.1, as an operator
runs it.

* **floor**: ``ReadOnlyStore.lightcurve(name)`` + ``ReadOnlyStore.stacked(name)`` in
  this process: the store's reads alone, what any endpoint must at least pay.
* **payload**: the floor plus ``soapd.web.data.lightcurve_payload`` (column lists)
  plus the JSON encoding, in this process (the endpoint's work without HTTP).
* **GET /api/targets/{name}/lightcurve**: the whole request over HTTP to ``soapd
  web`` (uvicorn), body read to the end. Aim (issue 13): < 100 ms.
* **GET /targets/{name}**: the target page's HTML (its table: the newest
  ``[web] table_rows`` = 500 rows).
* **page in Chromium**: Debian's Chromium driven by Playwright (``executable_path``,
  ``--no-sandbox``, headless, no GPU) opens the target page; the time is the
  ``soapd-plot-drawn`` performance mark that ``lightcurve.js`` sets once Plotly has
  drawn every point (ms since navigation start, so it includes the HTML, Plotly's
  1.5 MB gl2d script, the JSON and the drawing). Cold: a fresh browser profile (nothing
  cached); warm: the page loaded again in the same profile. Aim: < 1.5 s.

Usage: ``.venv/bin/python bench/bench_web.py [--quick]``; ``run(workdir, quick=...)``
returns rows for ``bench/run.py``. Needs Chromium and Playwright for the browser
rows (skipped, with the reason, without them).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from bench_store import _new_frame, _summary, _table
from common import Row, interleave, standalone_main

NAME = "GRB 261124A"
N_FRAMES = 10_000
CADENCE_S = 90.0
#: Aperture radii per frame: the default "fwhm_scaled" mode stores one; "multi" three.
RADII = {"1 aperture (default fwhm_scaled)": (5.0,), "3 apertures (multi)": (3.0, 5.0, 7.0)}
TRIGGER = datetime(2026, 11, 24, 2, 58, tzinfo=UTC)
START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
API_AIM_S = 0.100
PAGE_AIM_S = 1.5
#: Repetitions of the HTTP and in-process timings, and of the browser loads (full run).
REPS = 15
BROWSER_REPS = 7


def _log_bin(t_s: float) -> int:
    """Index of the log bin of t - T0 (factor 1.1 from 60 s), as the [stacks] defaults."""
    return 0 if t_s < 60.0 else 1 + int(math.log(t_s / 60.0) / math.log(1.1))


def _stacks(frame_ids: list[int], mids: list[datetime], lims: np.ndarray) -> list[Any]:
    """StackRecords of the frames' log bins (at most 100 members each, deepest first)."""
    from soapd.models import StackRecord

    bins: dict[int, list[int]] = {}
    for k, mid in enumerate(mids):
        bins.setdefault(_log_bin((mid - TRIGGER).total_seconds()), []).append(k)
    out = []
    rng = np.random.default_rng(12)
    for b, ks in sorted(bins.items()):
        kept = sorted(ks, key=lambda k: -lims[k])[:100]
        left = [k for k in ks if k not in set(kept)]
        kept.sort()
        first, last = mids[kept[0]], mids[kept[-1]]
        mid = first + (last - first) / 2
        n = len(kept)
        lim = float(np.median(lims[kept]) + 1.25 * math.log10(n))
        det = b % 3 != 0
        out.append(
            StackRecord(
                target_name=NAME,
                epoch_key=f"PROMPT-SYNTH|V|log{b}",
                telescope="PROMPT-SYNTH",
                band="V",
                bin_start_utc=first - timedelta(seconds=1),
                bin_end_utc=last + timedelta(seconds=1),
                mid_time_utc=mid,
                mean_mid_time_utc=mid,
                start_utc=first - timedelta(seconds=30),
                stop_utc=last + timedelta(seconds=30),
                exptime_s=60.0,
                total_exptime_s=60.0 * n,
                members=tuple(frame_ids[k] for k in kept),
                weights=tuple(1.0 / n for _ in kept),
                considered=tuple(frame_ids[k] for k in ks),
                excluded=tuple((frame_ids[k], "more than max_frames (100)") for k in left),
                mag=float(lim - rng.uniform(0.5, 2.0)) if det else math.nan,
                mag_err=0.05 if det else math.nan,
                lim_mag=lim,
                snr=20.0 if det else 1.0,
                is_detection=det,
                zp_mag=23.0,
                zp_err_mag=0.01,
                zp_scatter_mag=0.03,
                n_cal_stars=80,
                cal_catalog="apass",
                mag_system="Vega",
                config_hash="bench",
            )
        )
    return out


def build_state(db_path: Path, n_frames: int, radii: tuple[float, ...]) -> dict[str, Any]:
    """Fill a new database with the target, its frames and its stacks; describe them."""
    from soapd.models import FrameResult, Target
    from soapd.store import Store

    rng = np.random.default_rng(13)
    t0 = time.perf_counter()
    frame_ids: list[int] = []
    mids: list[datetime] = []
    with Store(db_path) as store:
        store.upsert_target(Target(name=NAME, ra_deg=150.0, dec_deg=20.0, trigger_time_utc=TRIGGER))
        tables = [_table([NAME], rng, START, radii) for _ in range(16)]
        for k in range(n_frames):
            when = START + timedelta(seconds=CADENCE_S * k)
            fid = _new_frame(store, 2 * 10**6 + k)
            res = FrameResult(summary=_summary(k, when), table=tables[k % len(tables)])
            store.save_result(fid, res, config_hash="bench", soapd_version="bench", table_path=None)
            frame_ids.append(fid)
            mids.append(when)
        lims = rng.normal(20.4, 0.2, n_frames)
        records = _stacks(frame_ids, mids, lims)
        for record in records:
            store.save_stack(record)
        n_rows = len(store.lightcurve(NAME))
    return {
        "frames": n_frames,
        "apertures": len(radii),
        "measurement_rows": n_rows,
        "stacks": len(records),
        "stack_members": sum(len(r.members) for r in records),
        "build_s": round(time.perf_counter() - t0, 1),
        "db_mb": round(db_path.stat().st_size / 1e6, 1),
    }


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    with urllib.request.urlopen(request, timeout=60) as r:
        body: bytes = r.read()
        return body


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served(url: str, pid: int, reps: int, warmup: int) -> tuple[list[float], list[float], bytes]:
    """GET ``url`` ``reps`` times: wall seconds, the server's CPU seconds each, the body."""
    for _ in range(warmup):
        _get(url)
    wall, cpu = [], []
    body = b""
    for _ in range(reps):
        c0 = _proc_cpu_s(pid)
        t0 = time.perf_counter()
        body = _get(url)
        wall.append(time.perf_counter() - t0)
        time.sleep(0.05)  # let the server's thread finish its accounting
        cpu.append(_proc_cpu_s(pid) - c0)
    return wall, cpu, body


def _browser_rows(url: str, profile_root: Path, reps: int, n_rows: int) -> list[Row]:
    """Time the target page in Chromium: cold, first visit, warm.

    Cold: a new browser with a fresh profile each time (its start-up included in the
    first navigation); first visit: a browser already running, a new context (empty
    caches) that opened the status page first; warm: reload.

    Fails if the plot holds fewer points than the JSON's ``n_rows`` rows (none thinned out).
    """
    from playwright.sync_api import sync_playwright

    from soapd.testing.browser import (
        CHROMIUM_ARGS,
        find_chromium,
        launch_chromium,
        missing_browser_reason,
    )

    reason = missing_browser_reason()
    if reason is not None:
        return [Row("web", "target page in Chromium", note=f"skipped: {reason}")]
    script = """() => {
      const m = performance.getEntriesByName('soapd-plot-drawn')[0];
      const d = performance.getEntriesByName('soapd-data-loaded')[0];
      const nav = performance.getEntriesByType('navigation')[0];
      const gd = document.getElementById('lightcurve');
      return {drawn_ms: m.startTime, data_ms: d.startTime,
              dcl_ms: nav.domContentLoadedEventEnd,
              points: gd.data.reduce((n, t) => n + t.x.length, 0),
              svg_points: gd.querySelectorAll('.scatterlayer .point').length,
              renderer: gd.getAttribute('data-renderer'),
              traces: gd.data.length};
    }"""
    cold: list[dict[str, float]] = []
    warm: list[dict[str, float]] = []
    first: list[dict[str, float]] = []
    with sync_playwright() as pw:
        for i in range(reps + 1):  # the first, uncounted, warms the server and the disk cache
            context = launch_chromium(
                pw, profile_root / f"cold{i}", viewport={"width": 1280, "height": 900}
            )
            try:
                page = context.new_page()
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_selector("#lightcurve[data-state=ready]", timeout=120_000)
                if i:
                    cold.append(page.evaluate(script))
                for _ in range(2 if i else 0):
                    page.reload(wait_until="domcontentloaded")
                    page.wait_for_selector("#lightcurve[data-state=ready]", timeout=120_000)
                    warm.append(page.evaluate(script))
            finally:
                context.close()
        # First visit in a browser that is already running (an observer's): a new
        # context each time (empty HTTP and code caches), after the status page of the
        # same server was open in it, so the browser's own start-up is not counted.
        browser = pw.chromium.launch(
            executable_path=find_chromium(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            for i in range(reps + 1):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                try:
                    page = context.new_page()
                    page.goto(url.rsplit("/targets/", 1)[0] + "/", wait_until="load")
                    page.goto(url, wait_until="domcontentloaded")
                    page.wait_for_selector("#lightcurve[data-state=ready]", timeout=120_000)
                    if i:
                        first.append(page.evaluate(script))
                finally:
                    context.close()
        finally:
            browser.close()
    drawn_points = {int(r["points"]) for r in cold + warm + first}
    if drawn_points != {n_rows}:
        raise AssertionError(f"the plot held {drawn_points} points, not the {n_rows} rows")
    out = []
    labels = (
        ("cold (new browser, fresh profile)", cold),
        ("first visit (running browser, empty caches)", first),
        ("warm (reload)", warm),
    )
    for label, runs in labels:
        drawn = [r["drawn_ms"] / 1000.0 for r in runs]
        out.append(
            Row(
                "web",
                f"target page in Chromium, plot drawn, {label}",
                drawn,
                aim="< 1.5 s",
                meets_aim=statistics.median(drawn) < PAGE_AIM_S,
                note=(
                    f"{int(runs[0]['points'])} markers in {int(runs[0]['traces'])} traces "
                    f"({runs[0]['renderer']}); "
                    f"HTML parsed at {statistics.median(r['dcl_ms'] for r in runs):.0f} ms, "
                    f"JSON in at {statistics.median(r['data_ms'] for r in runs):.0f} ms (medians)"
                ),
                extra={"runs": runs},
            )
        )
    return out


def _state(workdir: Path, n_frames: int, radii: tuple[float, ...]) -> tuple[Path, dict[str, Any]]:
    """Write a config for ``workdir`` and build (or reuse) its state; return (config, facts)."""
    from soapd.config import load_config

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "soapd.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{workdir / "state"}"\ncache_dir = "{workdir / "cache"}"\n',
        encoding="utf-8",
    )
    db_path = load_config(config).paths.db_path
    db_path.parent.mkdir(parents=True, exist_ok=True)
    described = workdir / "state.json"
    if described.is_file():
        state: dict[str, Any] = json.loads(described.read_text())
        if (state["frames"], state["apertures"]) == (n_frames, len(radii)):
            return config, state  # a kept --workdir: built before
    db_path.unlink(missing_ok=True)
    state = build_state(db_path, n_frames, radii)
    described.write_text(json.dumps(state))
    return config, state


def _in_process_rows(db_path: Path, label: str, state: dict[str, Any], reps: int) -> list[Row]:
    """The floor (store reads) and the endpoint's work without HTTP, interleaved."""
    from soapd.store.readonly import ReadOnlyStore
    from soapd.web.api import JSONResponse, target_info
    from soapd.web.data import lightcurve_payload

    def floor() -> Any:
        with ReadOnlyStore(db_path) as store:
            return store.lightcurve(NAME), store.stacked(NAME)

    def payload() -> bytes:
        with ReadOnlyStore(db_path) as store:
            target = store.get_target(NAME)
            assert target is not None
            table, stacks = store.lightcurve(NAME), store.stacked(NAME)
        data = lightcurve_payload(table, target=target_info(target), stacks=stacks)
        return JSONResponse(data).body

    cpu: dict[str, list[float]] = {}
    times = interleave({"floor": floor, "payload": payload}, reps, warmup=1, cpu_s=cpu)
    floor_med = statistics.median(times["floor"])
    return [
        Row(
            "web",
            f"{label}: floor: ReadOnlyStore.lightcurve() + stacked(), "
            f"{state['measurement_rows']:,} rows + {state['stacks']} stacks",
            times["floor"],
            note=f"in process; CPU {statistics.median(cpu['floor']) * 1000:.1f} ms",
            extra={"cpu_s": cpu["floor"]},
        ),
        Row(
            "web",
            f"{label}: floor + lightcurve_payload() + JSON (orjson)",
            times["payload"],
            note=f"in process; CPU {statistics.median(cpu['payload']) * 1000:.1f} ms; "
            f"{statistics.median(times['payload']) / floor_med:.2f} x floor",
            extra={"cpu_s": cpu["payload"]},
        ),
    ]


def run(workdir: Path, *, quick: bool = False) -> list[Row]:
    """Run the web benchmark; return its rows."""
    from soapd.config import load_config
    from soapd.testing.browser import WebServer

    n_frames = N_FRAMES // 10 if quick else N_FRAMES
    reps = 3 if quick else REPS
    rows: list[Row] = []
    for k, (label, radii) in enumerate(RADII.items()):
        config, state = _state(workdir / f"state{len(radii)}", n_frames, radii)
        print(f"web: {label}: {state}", file=sys.stderr, flush=True)
        db_path = load_config(config).paths.db_path
        in_process = _in_process_rows(db_path, label, state, reps)
        rows += in_process
        floor_med = in_process[0].median_s
        floor_cpu = statistics.median(in_process[0].extra["cpu_s"])
        with WebServer(config, workdir / f"web{k}.log", env={"SOAPD_WEB_TOKEN": ""}) as web:
            api = f"{web.url}/api/targets/{quote(NAME, safe='')}/lightcurve"
            page_url = f"{web.url}/targets/{quote(NAME, safe='')}"
            pid = web.proc.pid if web.proc is not None else 0
            api_times, api_cpu, got = _served(api, pid, reps, warmup=2)
            med = statistics.median(api_times)
            n_rows = json.loads(got)["n_rows"]
            rows.append(
                Row(
                    "web",
                    f"{label}: GET /api/targets/{{name}}/lightcurve, {n_rows:,} rows "
                    f"({n_frames:,} frames + {state['stacks']} stacks)",
                    api_times,
                    aim="< 100 ms",
                    meets_aim=med < API_AIM_S,
                    note=f"over HTTP to soapd web; server CPU "
                    f"{statistics.median(api_cpu) * 1000:.0f} ms "
                    f"({statistics.median(api_cpu) / floor_cpu:.2f} x floor CPU); "
                    f"{len(got) / 1e6:.1f} MB JSON; {med / floor_med:.2f} x floor",
                    extra={"server_cpu_s": api_cpu},
                )
            )
            html_times, html_cpu, html = _served(page_url, pid, reps, warmup=1)
            rows.append(
                Row(
                    "web",
                    f"{label}: GET /targets/{{name}} (HTML, newest 500 rows in its table)",
                    html_times,
                    note=f"server CPU {statistics.median(html_cpu) * 1000:.0f} ms; "
                    f"{len(html) / 1e3:.0f} kB; "
                    f"{statistics.median(html_times) / floor_med:.2f} x floor",
                    extra={"server_cpu_s": html_cpu},
                )
            )
            if k == 0:
                browser = _browser_rows(
                    page_url, workdir / "chromium", 2 if quick else BROWSER_REPS, n_rows
                )
                for r in browser:
                    r.case = f"{label}: {r.case}"
                rows += browser
        for r in rows:
            r.extra.setdefault("state", state)
    return rows


if __name__ == "__main__":
    sys.exit(standalone_main(run, __doc__, "web"))
