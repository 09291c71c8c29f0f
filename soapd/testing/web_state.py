"""A small soapd state for the web app's tests, built through the Store's public API.

Targets: ``GRB 261124A`` (trigger time set; 3 detections, 1 limit), ``<script>alert(1)</script>``
(a name that must render as text; off the last frame) and ``NO-DATA`` (no point).
Frames: 4 processed, 1 failed, 1 rejected inbox file. One alert, delivered to the
``log`` notifier. The running daemon's status is this process's pid.

:func:`add_stacks` adds two stacked epochs of ``GRB 261124A`` (a detection of
frames 1-2, a limit of frames 3-4 with frame 4 left out), as the daemon stores them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from soapd.flags import Flag
from soapd.models import AlertDraft, StackRecord, Target
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

__all__ = ["GRB", "MAGS", "START", "TRIGGER", "XSS", "add_stacks", "build_state"]

GRB = "GRB 261124A"
XSS = "<script>alert(1)</script>"
TRIGGER = datetime(2026, 11, 24, 2, 50, tzinfo=UTC)
START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
#: (GRB magnitude or None, XSS magnitude or None) per processed frame.
MAGS = ((16.0, 17.0), (16.5, 17.1), (None, 17.2), (17.0, None))


def build_state(store: Store) -> None:
    """Fill ``store`` with the targets, frames and alert described in the module docstring."""
    store.upsert_target(Target(name=GRB, ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=TRIGGER))
    store.upsert_target(Target(name=XSS, ra_deg=150.01, dec_deg=-30.0))
    store.upsert_target(Target(name="NO-DATA", ra_deg=10.0, dec_deg=10.0))
    for i, (grb, xss) in enumerate(MAGS):
        when = START + timedelta(minutes=10 * i)
        fid = register_frame(store, f"frame{i}.fits", mid_time_utc=when, obs_id=77)
        store.start_attempt(fid)
        result = target_result({GRB: grb, XSS: xss}, mid_time_utc=when, image_file=f"frame{i}.fits")
        if i == 3:  # the XSS target off this frame: flagged, no flux
            table = result.table
            table["flag"][table["target_name"] == XSS] = int(Flag.OFF_FRAME)
        alerts = []
        if i == 0:
            alerts = [
                AlertDraft(
                    target_name=GRB,
                    rule="new_detection",
                    dedupe_key="grb-new",
                    batch_key="grb",
                    message=f"{GRB}: new detection in R: 16.00 mag",
                    payload={"mid_time_utc": when.isoformat()},
                )
            ]
        new = store.save_result(
            fid, result, alerts=alerts, config_hash="h", soapd_version="t", table_path=None
        )
        for alert_id in new:
            store.mark_alert_delivered(alert_id, "log")
            store.mark_alert_sent(alert_id)
    fid = register_frame(store, "broken.fits", mid_time_utc=START, obs_id=77)
    store.start_attempt(fid)
    store.mark_retry(fid, "FrameUnreadable: not a FITS file", max_tries=1)
    inbox = store.record_local(Path("/inbox/flat.fits"), "c" * 64, 10, source="inbox")
    store.start_attempt(inbox.frame_id)
    store.mark_rejected(inbox.frame_id, "FrameRejected: the image is constant (1000)")
    store.follow_observation(77, source="config")
    now = store.now()
    store.set_status(
        pid=os.getpid(), started_utc=now, heartbeat_utc=now, last_poll_utc=now, soapd_version="t"
    )


def _stack(
    epoch: str, members: tuple[int, ...], excluded: tuple[tuple[int, str], ...], **kw: object
) -> StackRecord:
    first = START + timedelta(minutes=10 * (members[0] - 1))
    last = START + timedelta(minutes=10 * (members[-1] - 1))
    mid = first + (last - first) / 2
    values: dict[str, object] = {
        "target_name": GRB,
        "epoch_key": f"PROMPT-5|R|{epoch}",
        "telescope": "PROMPT-5",
        "band": "R",
        "bin_start_utc": first - timedelta(minutes=1),
        "bin_end_utc": last + timedelta(minutes=1),
        "mid_time_utc": mid,
        "mean_mid_time_utc": mid,
        "start_utc": first - timedelta(seconds=30),
        "stop_utc": last + timedelta(seconds=30),
        "exptime_s": 60.0,
        "total_exptime_s": 60.0 * len(members),
        "members": members,
        "weights": tuple(1.0 / len(members) for _ in members),
        "considered": members + tuple(f for f, _ in excluded),
        "excluded": excluded,
        "lim_nsigma": 5.0,
        "zp_mag": 22.0,
        "zp_err_mag": 0.004,
        "zp_scatter_mag": 0.03,
        "n_cal_stars": 40,
        "cal_catalog": "apass",
        "mag_system": "Vega",
        "config_hash": "h",
    }
    values.update(kw)
    return StackRecord(**values)  # type: ignore[arg-type]


def add_stacks(store: Store) -> list[StackRecord]:
    """Store two stacked epochs of ``GRB`` (see the module docstring); return them."""
    records = [
        _stack(
            "log10",
            (1, 2),
            (),
            is_detection=True,
            mag=16.21,
            mag_err=0.02,
            lim_mag=20.3,
            snr=54.0,
            flux_ujy=1200.0,
            flux_ujy_err=22.0,
        ),
        _stack(
            "log12",
            (3,),
            ((4, "zero point 1.5 mag below the median (clouds)"),),
            lim_mag=20.05,
            flags=int(Flag.UPPER_LIMIT),
        ),
    ]
    for record in records:
        store.save_stack(record)
    return records
