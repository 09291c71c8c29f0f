"""A small soapd state for the web app's tests, built through the Store's public API.

Targets: ``GRB 261124A`` (trigger time set; 3 detections, 1 limit), ``<script>alert(1)</script>``
(a name that must render as text; off the last frame) and ``NO-DATA`` (no point).
Frames: 4 processed, 1 failed, 1 rejected inbox file. One alert, delivered to the
``log`` notifier. The running daemon's status is this process's pid.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from soapd.flags import Flag
from soapd.models import AlertDraft, Target
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

__all__ = ["GRB", "MAGS", "START", "TRIGGER", "XSS", "build_state"]

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
