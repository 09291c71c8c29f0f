"""The schema history: ``sqlite_utils`` migrations, append-only.

Applied migrations are never edited once released; changes come as new
functions registered after the last one. ``soapd migrate`` and service start-up
both call ``migrations.apply(db)``.

Every migration is frozen: it holds the literal values it was written with (the
frame states, the packed field order) and reads no module or runtime constant, so
editing :data:`soapd.models.FRAME_STATES` or the store's ``PACKED_FIELDS`` can never
change what an old database got. ``tests/unit/store/test_schema.py`` checks this and
compares a fresh database's schema with ``tests/unit/store/schema.sql``.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

__all__ = ["migrations"]

migrations = Migrations("soapd")


@migrations()
def m001_frames(db: sqlite_utils.Database) -> None:
    """Create the frame ledger: one row per exposure or local file, and its state."""
    states = "'seen', 'downloaded', 'processing', 'processed', 'rejected', 'failed'"
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


@migrations()
def m002_ledger_observations_status(db: sqlite_utils.Database) -> None:
    """Create the followed observations and the service-status key/value table (issue 5)."""
    db.execute("""
        CREATE TABLE observations (
            obs_id INTEGER PRIMARY KEY,
            source TEXT NOT NULL CHECK (source IN ('config', 'cli')),
            active INTEGER NOT NULL DEFAULT 1,
            added_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
    """)
    db.execute("""
        CREATE TABLE service_status (
            key TEXT PRIMARY KEY,
            value TEXT,
            updated_at TEXT NOT NULL
        )
    """)
    db.execute("CREATE INDEX frames_updated ON frames (updated_at)")


@migrations()
def m003_results_targets_measurements_alerts(db: sqlite_utils.Database) -> None:
    """Create targets, measurements, the alerts outbox and the ``lightcurve`` view (issue 6).

    ``measurements`` holds one row per frame x target x aperture x processing
    (``config_hash``). ``aperture_mpx`` is the aperture radius in milli-pixels, or
    -1 when it is unknown (NaN), so the unique key never contains NULL. Rows of an
    older processing are kept with ``superseded = 1``.
    """
    db.execute("ALTER TABLE frames ADD COLUMN image_file TEXT")
    db.execute("ALTER TABLE frames ADD COLUMN mjd REAL")
    db.execute("""
        CREATE TABLE targets (
            target_id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            ra_deg REAL NOT NULL CHECK (ra_deg >= 0 AND ra_deg < 360),
            dec_deg REAL NOT NULL CHECK (dec_deg >= -90 AND dec_deg <= 90),
            trigger_time_utc TEXT,
            active INTEGER NOT NULL DEFAULT 1,
            rules_json TEXT NOT NULL DEFAULT '{}',
            source TEXT NOT NULL DEFAULT 'cli' CHECK (source IN ('cli', 'config', 'api')),
            added_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
    """)
    db.execute("""
        CREATE TABLE measurements (
            measurement_id INTEGER PRIMARY KEY,
            frame_id INTEGER NOT NULL REFERENCES frames (frame_id),
            target_id INTEGER NOT NULL REFERENCES targets (target_id),
            aperture_mpx INTEGER NOT NULL,
            config_hash TEXT NOT NULL,
            superseded INTEGER NOT NULL DEFAULT 0,
            mjd REAL NOT NULL,
            aperture_id INTEGER,
            aperture_px REAL,
            x_px REAL,
            y_px REAL,
            ra_deg REAL,
            dec_deg REAL,
            flux_e REAL,
            flux_err_e REAL,
            flux_ujy REAL,
            flux_ujy_err REAL,
            snr REAL,
            ins_mag REAL,
            ins_mag_err REAL,
            mag REAL,
            mag_err REAL,
            lim_mag REAL,
            lim_nsigma REAL,
            is_detection INTEGER NOT NULL,
            is_forced INTEGER NOT NULL,
            flags INTEGER NOT NULL DEFAULT 0,
            zp_mag REAL,
            zp_err_mag REAL,
            n_cal_stars INTEGER,
            mag_system TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (frame_id, target_id, aperture_mpx, config_hash)
        )
    """)
    db.execute("CREATE INDEX measurements_lc ON measurements (target_id, superseded, mjd)")
    db.execute("""
        CREATE TABLE alerts (
            alert_id INTEGER PRIMARY KEY,
            target_id INTEGER NOT NULL REFERENCES targets (target_id),
            frame_id INTEGER REFERENCES frames (frame_id),
            batch_key TEXT NOT NULL,
            rule TEXT NOT NULL,
            dedupe_key TEXT NOT NULL UNIQUE,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed')),
            created_at TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL,
            sent_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        )
    """)
    db.execute("CREATE INDEX alerts_due ON alerts (status, next_attempt_at)")
    db.execute("""
        CREATE TABLE alert_deliveries (
            alert_id INTEGER NOT NULL REFERENCES alerts (alert_id),
            notifier TEXT NOT NULL,
            delivered_at TEXT NOT NULL,
            PRIMARY KEY (alert_id, notifier)
        )
    """)
    db.execute("""
        CREATE VIEW lightcurve AS
        SELECT
            m.measurement_id, m.frame_id, m.target_id, t.name AS target_name,
            m.mjd, f.mid_time_utc, f.obs_id, f.telescope, f.band, f.filter AS filter_raw,
            f.exptime_s, m.flux_e, m.flux_err_e, m.flux_ujy, m.flux_ujy_err, m.snr,
            m.mag, m.mag_err, m.lim_mag, m.lim_nsigma, m.is_detection, m.mag_system,
            m.zp_mag, m.zp_err_mag, f.zp_scatter_mag, m.n_cal_stars, f.cal_catalog,
            m.aperture_id, m.aperture_px, m.flags, f.image_file, f.path, m.is_forced,
            m.ra_deg, m.dec_deg, m.x_px, m.y_px, m.superseded, m.config_hash
        FROM measurements AS m
        JOIN frames AS f ON f.frame_id = m.frame_id
        JOIN targets AS t ON t.target_id = m.target_id
    """)


@migrations()
def m004_measurements_packed(db: sqlite_utils.Database) -> None:
    """Add ``measurements.packed``: the row's numbers as one float64 blob (fast lightcurves).

    Reading 100,000 rows column by column creates millions of Python objects; one
    blob per row is decoded with a single ``numpy.frombuffer``. NULL reads as NaN.
    """
    import numpy as np

    db.execute("ALTER TABLE measurements ADD COLUMN packed BLOB")
    # Serves the lightcurve query's WHERE and ORDER BY without a sort.
    db.execute("DROP INDEX measurements_lc")
    db.execute(
        "CREATE INDEX measurements_lc ON measurements "
        "(target_id, superseded, mjd, frame_id, aperture_id, config_hash)"
    )
    rows = db.execute(
        "SELECT measurement_id, mjd, flux_e, flux_err_e, flux_ujy, flux_ujy_err, snr, mag, "
        "mag_err, lim_mag, lim_nsigma, is_detection, aperture_id, aperture_px, flags, "
        "is_forced, ra_deg, dec_deg, frame_id FROM measurements"
    ).fetchall()
    for row in rows:
        blob = np.array(row[1:], dtype="<f8").tobytes()
        db.execute("UPDATE measurements SET packed = ? WHERE measurement_id = ?", [blob, row[0]])


@migrations()
def m005_frame_metadata_once(db: sqlite_utils.Database) -> None:
    """Store each frame's metadata once: ``meta_json`` stops repeating the columns.

    ``meta_json`` held the whole ExposureMeta, so exp_id, obs_id, telescope,
    filter, exptime_s and mid_time_utc were in both places (and disagreed once
    processing had updated the columns). They now live in the columns only. A
    NULL column first takes the JSON's value (exp_id only when no other frame has
    it); where both are set the column is kept.
    """
    import json

    rows = db.execute("SELECT frame_id, meta_json FROM frames WHERE meta_json IS NOT NULL")
    updates = []
    for frame_id, text in rows.fetchall():
        data = json.loads(text)
        moved = [data.pop(k, None) for k in ("exp_id", "obs_id", "telescope", "filter")]
        moved += [data.pop(k, None) for k in ("exptime_s", "mid_time_utc")]
        updates.append([*moved, json.dumps(data, sort_keys=True, default=str), frame_id])
    db.conn.executemany(
        """
        UPDATE frames SET
            exp_id = CASE WHEN exp_id IS NULL AND NOT EXISTS
                (SELECT 1 FROM frames AS o WHERE o.exp_id = ?1) THEN ?1 ELSE exp_id END,
            obs_id = COALESCE(obs_id, ?2), telescope = COALESCE(telescope, ?3),
            filter = COALESCE(filter, ?4), exptime_s = COALESCE(exptime_s, ?5),
            mid_time_utc = COALESCE(mid_time_utc, ?6), meta_json = ?7
        WHERE frame_id = ?8
        """,
        updates,
    )


@migrations()
def m006_measurements_packed_calibration(db: sqlite_utils.Database) -> None:
    """Re-pack ``measurements.packed`` with the row's own calibration.

    Lightcurves read each aperture's zero point, its error, its star count and its
    magnitude system (as the ``lightcurve`` view shows them) instead of the frame's
    main-aperture values. The blob grows from 18 to 21 float64 plus one code: m004's
    fields, then zp_mag, zp_err_mag, n_cal_stars, and mag_system as 0 '' (or NULL),
    1 'AB', 2 'Vega', 3 'none', NaN for any other value.
    """
    import numpy as np

    rows = db.execute(
        "SELECT measurement_id, mjd, flux_e, flux_err_e, flux_ujy, flux_ujy_err, snr, mag, "
        "mag_err, lim_mag, lim_nsigma, is_detection, aperture_id, aperture_px, flags, "
        "is_forced, ra_deg, dec_deg, frame_id, zp_mag, zp_err_mag, n_cal_stars, "
        "CASE coalesce(mag_system, '') WHEN '' THEN 0 WHEN 'AB' THEN 1 WHEN 'Vega' THEN 2 "
        "WHEN 'none' THEN 3 END FROM measurements"
    ).fetchall()
    db.conn.executemany(
        "UPDATE measurements SET packed = ? WHERE measurement_id = ?",
        [(np.array(row[1:], dtype="<f8").tobytes(), row[0]) for row in rows],
    )


@migrations()
def m007_frame_footprint_and_coverage(db: sqlite_utils.Database) -> None:
    """Store frame footprints and instrumental values; mark old unmeasured rows (issue 10).

    ``frames.footprint_json``: the sky corners (RA, Dec in degrees) of the frame's pixel
    grid and of its covered part (inside the edge buffer), as
    ``{"corners": [[ra, dec] x 4], "covered": [[ra, dec] x 4]}``; NULL without WCS or
    for frames processed before. ``measurements.lim_ins_mag``: the instrumental limit.

    ``measurements.packed`` grows from 22 to 25 float64: m006's fields, then
    ins_mag, ins_mag_err and lim_ins_mag (NaN for the rows stored before), so that
    lightcurves read the instrumental values without per-row columns.

    Rows stored before coverage was a state and that measured nothing (a forced
    position off the frame or without WCS, in the edge buffer with no flux, or under
    an all-masked aperture) held the frame's limit with UPPER_LIMIT. They become
    NOT_COVERED (bit 131072, UPPER_LIMIT 2048 cleared, no limit, not a detection),
    in the columns and in the blob (lim_mag at 8, is_detection at 10, flags at 13).
    """
    import numpy as np

    db.execute("ALTER TABLE frames ADD COLUMN footprint_json TEXT")
    db.execute("ALTER TABLE measurements ADD COLUMN lim_ins_mag REAL")
    unmeasured = (
        "is_forced = 1 AND (flags & 131072) = 0 AND ((flags & (1024 | 32768 | 64)) != 0 "
        "OR ((flags & 512) != 0 AND flux_e IS NULL))"
    )
    rows = db.execute(
        f"SELECT measurement_id, packed, ins_mag, ins_mag_err, {unmeasured} FROM measurements"
    ).fetchall()
    updates = []
    for measurement_id, blob, ins_mag, ins_mag_err, gone in rows:
        if blob is None:
            continue
        values = np.concatenate(
            [
                np.frombuffer(blob, dtype="<f8")[:22],
                np.array([ins_mag, ins_mag_err, None], dtype=float),
            ]
        )
        if gone:
            values[8] = np.nan
            values[10] = 0.0
            values[13] = float((int(values[13]) | 131072) & ~2048)
        updates.append((values.astype("<f8").tobytes(), measurement_id))
    db.conn.executemany("UPDATE measurements SET packed = ? WHERE measurement_id = ?", updates)
    db.execute(
        "UPDATE measurements SET flags = (flags | 131072) & ~2048, lim_mag = NULL, "
        f"is_detection = 0 WHERE {unmeasured}"
    )


@migrations()
def m008_stacks(db: sqlite_utils.Database) -> None:
    """Create ``stacks`` and ``stack_members``: stacked epochs of targets (issue 12).

    One row per target x epoch (``epoch_key``: telescope|band|time bin) x ``version``;
    building an epoch again (a frame joined it, or the config changed) adds the next
    version and marks the older ones ``superseded = 1``. ``considered`` is the JSON
    list of the epoch's frame ids that were looked at, ``excluded_json`` the ones left
    out with their reason; ``stack_members`` links each version to the frames co-added
    and their normalised weights. Times are ISO-8601 UTC text; ``mjd`` is the weighted
    mean mid-exposure time.
    """
    db.execute("""
        CREATE TABLE stacks (
            stack_id INTEGER PRIMARY KEY,
            target_id INTEGER NOT NULL REFERENCES targets (target_id),
            epoch_key TEXT NOT NULL,
            version INTEGER NOT NULL,
            superseded INTEGER NOT NULL DEFAULT 0,
            telescope TEXT NOT NULL,
            band TEXT NOT NULL,
            bin_start_utc TEXT NOT NULL,
            bin_end_utc TEXT NOT NULL,
            mid_time_utc TEXT NOT NULL,
            mean_mid_time_utc TEXT NOT NULL,
            start_utc TEXT NOT NULL,
            stop_utc TEXT NOT NULL,
            mjd REAL NOT NULL,
            n_frames INTEGER NOT NULL,
            exptime_s REAL,
            total_exptime_s REAL NOT NULL,
            mag REAL,
            mag_err REAL,
            lim_mag REAL,
            lim_nsigma REAL,
            snr REAL,
            flux_e REAL,
            flux_err_e REAL,
            flux_ujy REAL,
            flux_ujy_err REAL,
            is_detection INTEGER NOT NULL,
            flags INTEGER NOT NULL DEFAULT 0,
            zp_mag REAL,
            zp_err_mag REAL,
            zp_scatter_mag REAL,
            n_cal_stars INTEGER,
            cal_catalog TEXT,
            mag_system TEXT,
            predicted_lim_mag REAL,
            single_detections INTEGER NOT NULL DEFAULT 0,
            best_single_lim_mag REAL,
            fwhm_px REAL,
            aperture_px REAL,
            alignment TEXT,
            considered TEXT NOT NULL,
            excluded_json TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (target_id, epoch_key, version)
        )
    """)
    db.execute("CREATE INDEX stacks_lc ON stacks (target_id, superseded, mjd)")
    db.execute("""
        CREATE TABLE stack_members (
            stack_id INTEGER NOT NULL REFERENCES stacks (stack_id),
            frame_id INTEGER NOT NULL REFERENCES frames (frame_id),
            weight REAL NOT NULL,
            PRIMARY KEY (stack_id, frame_id)
        )
    """)
    db.execute("CREATE INDEX stack_members_frame ON stack_members (frame_id)")


@migrations()
def m009_frames_started_at(db: sqlite_utils.Database) -> None:
    """Record when a worker started a frame in 'processing' (``started_at``, UTC text).

    A frame is 'processing' from the moment the daemon hands it to its worker
    pool, but a try is charged only when a worker starts it: NULL means queued,
    not started (after a crash it goes back untouched), a time means the
    attempt began (its try was counted).
    """
    db.execute("ALTER TABLE frames ADD COLUMN started_at TEXT")


@migrations()
def m010_rule_state(db: sqlite_utils.Database) -> None:
    """Create ``rule_targets`` and ``rule_state``: what the alert rules read (issue 11).

    ``rule_targets`` has one row per target whose state is built: its number of
    lightcurve points (one per frame) and the newest one's (mjd, frame_id). A target
    without a row has no state yet (or it was invalidated): the next frame builds it
    from the target's history. ``rule_state`` has one row per target x telescope x
    band x magnitude system ("kind"): the counts, the deepest limits, the highest S/N
    of a real detection and the last detections the rules compare against. Both are
    written in the transaction that stores the measurements they summarise.
    """
    db.execute("""
        CREATE TABLE rule_targets (
            target_id INTEGER PRIMARY KEY REFERENCES targets (target_id),
            n_points INTEGER NOT NULL,
            newest_mjd REAL NOT NULL,
            newest_frame_id INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )
    """)
    db.execute("""
        CREATE TABLE rule_state (
            target_id INTEGER NOT NULL REFERENCES rule_targets (target_id),
            telescope TEXT NOT NULL,
            band TEXT NOT NULL,
            mag_system TEXT NOT NULL,
            n_points INTEGER NOT NULL,
            any_detection INTEGER NOT NULL,
            any_real INTEGER NOT NULL,
            max_real_snr REAL,
            n_lim INTEGER NOT NULL,
            max_lim_mag REAL,
            max_nondet_lim_mag REAL,
            last_clean_mag REAL,
            last_clean_mag_err REAL,
            last_real_mag REAL,
            faded INTEGER NOT NULL,
            PRIMARY KEY (target_id, telescope, band, mag_system)
        ) WITHOUT ROWID
    """)


@migrations()
def m011_retention(db: sqlite_utils.Database) -> None:
    """Create ``pruned_files``: which frame files and field tables retention deleted (issue 11).

    One row per deleted file: the frame it belonged to, ``kind`` ('frame': the
    downloaded FITS file, 'table': the field-wide table), the path and size it had,
    why it went (``reason``, e.g. "older than 30 days") and when (ISO-8601 UTC).
    The frame row keeps its state and measurements; its ``path`` (or
    ``catalog_path``) is cleared in the same transaction.
    """
    db.execute("""
        CREATE TABLE pruned_files (
            prune_id INTEGER PRIMARY KEY,
            frame_id INTEGER NOT NULL REFERENCES frames (frame_id),
            kind TEXT NOT NULL CHECK (kind IN ('frame', 'table')),
            path TEXT NOT NULL,
            size_bytes INTEGER,
            reason TEXT NOT NULL,
            pruned_at TEXT NOT NULL
        )
    """)
    db.execute("CREATE INDEX pruned_files_frame ON pruned_files (frame_id, kind)")
