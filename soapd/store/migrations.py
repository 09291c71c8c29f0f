"""The schema history: ``sqlite_utils`` migrations, append-only.

Applied migrations are never edited once released; changes come as new
functions registered after the last one. ``soapd migrate`` and service start-up
both call ``migrations.apply(db)``.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

__all__ = ["migrations"]

migrations = Migrations("soapd")

FRAME_STATES = ("seen", "downloaded", "processing", "processed", "rejected", "failed")


@migrations()
def m001_frames(db: sqlite_utils.Database) -> None:
    """Create the frame ledger: one row per exposure or local file, and its state."""
    states = ", ".join(f"'{s}'" for s in FRAME_STATES)
    db.execute(f"""
        CREATE TABLE frames (
            frame_id INTEGER PRIMARY KEY,
            source TEXT NOT NULL CHECK (source IN ('skynet', 'inbox', 'cli')),
            exp_id INTEGER UNIQUE,
            obs_id INTEGER,
            telescope TEXT,
            filter TEXT,
            band TEXT,
            mid_time_utc TEXT,
            exptime_s REAL,
            path TEXT,
            sha256 TEXT UNIQUE,
            size_bytes INTEGER,
            state TEXT NOT NULL DEFAULT 'seen' CHECK (state IN ({states})),
            tries INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            seen_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            processed_at TEXT,
            fwhm_px REAL,
            zp_mag REAL,
            zp_err_mag REAL,
            zp_scatter_mag REAL,
            n_calib INTEGER,
            cal_catalog TEXT,
            mag_system TEXT,
            lim_mag REAL,
            flags INTEGER NOT NULL DEFAULT 0,
            soapd_version TEXT,
            config_hash TEXT,
            catalog_path TEXT,
            meta_json TEXT
        )
    """)
    db.execute("CREATE INDEX frames_state ON frames (state, frame_id)")
    db.execute("CREATE INDEX frames_obs ON frames (obs_id, mid_time_utc)")
