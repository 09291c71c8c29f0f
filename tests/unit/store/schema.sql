-- index alerts_due ON alerts
CREATE INDEX alerts_due ON alerts (status, next_attempt_at);

-- index frames_obs ON frames
CREATE INDEX frames_obs ON frames (obs_id, mid_time_utc);

-- index frames_state ON frames
CREATE INDEX frames_state ON frames (state, frame_id);

-- index frames_updated ON frames
CREATE INDEX frames_updated ON frames (updated_at);

-- index measurements_lc ON measurements
CREATE INDEX measurements_lc ON measurements (target_id, superseded, mjd, frame_id, aperture_id, config_hash);

-- index pruned_files_frame ON pruned_files
CREATE INDEX pruned_files_frame ON pruned_files (frame_id, kind);

-- index sqlite_autoindex_alert_deliveries_1 ON alert_deliveries
(automatic);

-- index sqlite_autoindex_alerts_1 ON alerts
(automatic);

-- index sqlite_autoindex_frames_1 ON frames
(automatic);

-- index sqlite_autoindex_frames_2 ON frames
(automatic);

-- index sqlite_autoindex_measurements_1 ON measurements
(automatic);

-- index sqlite_autoindex_service_status_1 ON service_status
(automatic);

-- index sqlite_autoindex_stack_members_1 ON stack_members
(automatic);

-- index sqlite_autoindex_stacks_1 ON stacks
(automatic);

-- index sqlite_autoindex_targets_1 ON targets
(automatic);

-- index stack_members_frame ON stack_members
CREATE INDEX stack_members_frame ON stack_members (frame_id);

-- index stacks_lc ON stacks
CREATE INDEX stacks_lc ON stacks (target_id, superseded, mjd);

-- table alert_deliveries ON alert_deliveries
CREATE TABLE alert_deliveries (
            alert_id INTEGER NOT NULL REFERENCES alerts (alert_id),
            notifier TEXT NOT NULL,
            delivered_at TEXT NOT NULL,
            PRIMARY KEY (alert_id, notifier)
        );

-- table alerts ON alerts
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
        );

-- table frames ON frames
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
            state TEXT NOT NULL DEFAULT 'seen' CHECK (state IN ('seen', 'downloaded', 'processing', 'processed', 'rejected', 'failed')),
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
        , image_file TEXT, mjd REAL, footprint_json TEXT, started_at TEXT);

-- table measurements ON measurements
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
            updated_at TEXT NOT NULL, packed BLOB, lim_ins_mag REAL,
            UNIQUE (frame_id, target_id, aperture_mpx, config_hash)
        );

-- table observations ON observations
CREATE TABLE observations (
            obs_id INTEGER PRIMARY KEY,
            source TEXT NOT NULL CHECK (source IN ('config', 'cli')),
            active INTEGER NOT NULL DEFAULT 1,
            added_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

-- table pruned_files ON pruned_files
CREATE TABLE pruned_files (
            prune_id INTEGER PRIMARY KEY,
            frame_id INTEGER NOT NULL REFERENCES frames (frame_id),
            kind TEXT NOT NULL CHECK (kind IN ('frame', 'table')),
            path TEXT NOT NULL,
            size_bytes INTEGER,
            reason TEXT NOT NULL,
            pruned_at TEXT NOT NULL
        );

-- table rule_state ON rule_state
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
    ;

-- table rule_targets ON rule_targets
CREATE TABLE rule_targets (
            target_id INTEGER PRIMARY KEY REFERENCES targets (target_id),
            n_points INTEGER NOT NULL,
            newest_mjd REAL NOT NULL,
            newest_frame_id INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        );

-- table service_status ON service_status
CREATE TABLE service_status (
            key TEXT PRIMARY KEY,
            value TEXT,
            updated_at TEXT NOT NULL
        );

-- table stack_members ON stack_members
CREATE TABLE stack_members (
            stack_id INTEGER NOT NULL REFERENCES stacks (stack_id),
            frame_id INTEGER NOT NULL REFERENCES frames (frame_id),
            weight REAL NOT NULL,
            PRIMARY KEY (stack_id, frame_id)
        );

-- table stacks ON stacks
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
        );

-- table targets ON targets
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
        );

-- view lightcurve ON lightcurve
CREATE VIEW lightcurve AS
SELECT
    m.measurement_id,
    m.frame_id,
    m.target_id,
    t.name AS target_name,
    m.mjd,
    f.mid_time_utc,
    f.obs_id,
    f.telescope,
    f.band,
    f.filter AS filter_raw,
    f.exptime_s,
    m.flux_e,
    m.flux_err_e,
    m.flux_ujy,
    m.flux_ujy_err,
    m.snr,
    m.mag,
    m.mag_err,
    m.lim_mag,
    m.lim_nsigma,
    m.is_detection,
    m.mag_system,
    m.zp_mag,
    m.zp_err_mag,
    f.zp_scatter_mag,
    m.n_cal_stars,
    f.cal_catalog,
    m.aperture_id,
    m.aperture_px,
    m.flags,
    f.image_file,
    f.path,
    m.is_forced,
    m.ra_deg,
    m.dec_deg,
    m.x_px,
    m.y_px,
    m.superseded,
    m.config_hash,
    m.ins_mag,
    m.ins_mag_err,
    m.lim_ins_mag
FROM measurements AS m
JOIN frames AS f ON f.frame_id = m.frame_id
JOIN targets AS t ON t.target_id = m.target_id
WHERE (m.flags & 131072) = 0;

