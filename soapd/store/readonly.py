"""Read-only access to the soapd database, for readers that must never write (``soapd web``).

:func:`open_readonly` opens the file through an SQLite ``mode=ro`` URI with
``query_only`` on, so nothing this connection does can change the database,
take a write lock or block the daemon (WAL: readers never wait for the
writer). When the database's WAL files do not exist and cannot be created (a
read-only file system, e.g. systemd's ``ProtectSystem=strict`` while the daemon
is stopped), it falls back to ``immutable=1``: the file is then read as it is on
disk, which is safe because no writer is running to change it.

:class:`ReadOnlyStore` is the :class:`~soapd.store.Store` facade on such a
connection (every read method of the Store works, every write raises) plus the
overview queries of :class:`OverviewMixin` that the web pages need: activity per
followed observation, problem frames, alert deliveries per notifier, one summary
row per target, and one frame with its measurements.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from soapd.errors import StoreError
from soapd.models import Target
from soapd.store import Store
from soapd.store.base import Repository
from soapd.store.connection import APPLICATION_ID, BUSY_TIMEOUT_MS
from soapd.store.lctable import PACKED_FIELDS
from soapd.store.measurements import read_lightcurve
from soapd.store.targets import _row_to_target
from soapd.store.views import lightcurve_view_sql

if TYPE_CHECKING:
    import sqlite_utils

__all__ = [
    "SCHEMA_MIGRATIONS",
    "LightcurveReader",
    "OverviewMixin",
    "ReadOnlyStore",
    "known_migrations",
    "open_readonly",
    "open_readonly_connection",
]

logger = logging.getLogger(__name__)

#: Columns of ``frames`` shown on a frame's page (everything but the raw metadata JSON).
_FRAME_FIELDS = (
    "frame_id, source, exp_id, obs_id, telescope, filter, band, mid_time_utc, mjd, exptime_s, "
    "path, image_file, sha256, size_bytes, state, tries, last_error, seen_at, updated_at, "
    "processed_at, fwhm_px, zp_mag, zp_err_mag, zp_scatter_mag, n_calib, cal_catalog, "
    "mag_system, lim_mag, flags, soapd_version, config_hash, catalog_path, meta_json"
)


def _connect(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        uri,
        uri=True,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")
    return conn


def open_readonly(path: Path | str) -> sqlite_utils.Database:
    """Given the database file, return a read-only Database on it.

    Raise StoreError if the file does not exist, is not an SQLite database, or
    belongs to another program. Never creates the file or its folder.
    """
    import sqlite_utils

    return sqlite_utils.Database(open_readonly_connection(path))


def open_readonly_connection(path: Path | str) -> sqlite3.Connection:
    """Return a plain read-only sqlite3 connection on the database file (see :func:`open_readonly`).

    Raise StoreError as :func:`open_readonly` does.
    """
    db_path = Path(path).expanduser().resolve()
    if not db_path.is_file():
        raise StoreError(
            f"no soapd database at {db_path}; check paths.state_dir or start the daemon once"
        )
    uri = db_path.as_uri() + "?mode=ro"
    conn = _connect(uri)
    try:
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            # WAL database whose -shm file is missing and cannot be created here.
            if "readonly" not in str(exc) and "unable to open" not in str(exc):
                raise
            conn.close()
            logger.debug("%s: WAL files not writable, reading it as immutable", db_path)
            conn = _connect(uri + "&immutable=1")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{db_path}: cannot open the soapd database read-only: {exc}") from None
    if app_id not in (0, APPLICATION_ID):
        conn.close()
        raise StoreError(
            f"{db_path} is an SQLite database of another program (application_id {app_id:#x})"
        )
    return conn


def _decode(blob: bytes | None) -> dict[str, float]:
    """Return one ``measurements.packed`` blob as {field: value} (NaN where NULL)."""
    if not blob:
        return dict.fromkeys(PACKED_FIELDS, float("nan"))
    values = np.frombuffer(blob, dtype="<f8")
    return dict(zip(PACKED_FIELDS, values.tolist(), strict=True))


class OverviewMixin(Repository):
    """Summary queries for dashboards: observations, problem frames, targets, one frame."""

    def pending_migrations(self) -> list[str]:
        """Return the names of schema migrations this soapd knows but the database lacks."""
        from soapd.store.migrations import migrations

        return [m.name for m in migrations.pending(self.db)]

    def observation_activity(self) -> list[dict[str, Any]]:
        """Return every observation (followed or with frames) and when its frames were last seen.

        Keys: obs_id, source (None for an observation only known from frames),
        active, added_at, n_frames, n_processed, n_bad, last_seen_utc,
        last_processed_utc, last_mid_time_utc.
        """
        return list(
            self.db.query(
                "WITH f AS (SELECT obs_id, COUNT(*) AS n_frames,"
                " SUM(state = 'processed') AS n_processed,"
                " SUM(state IN ('failed', 'rejected')) AS n_bad,"
                " MAX(seen_at) AS last_seen_utc, MAX(processed_at) AS last_processed_utc,"
                " MAX(mid_time_utc) AS last_mid_time_utc"
                " FROM frames WHERE obs_id IS NOT NULL GROUP BY obs_id)"
                " SELECT o.obs_id, o.source, o.active, o.added_at,"
                " COALESCE(f.n_frames, 0) AS n_frames, COALESCE(f.n_processed, 0) AS n_processed,"
                " COALESCE(f.n_bad, 0) AS n_bad, f.last_seen_utc, f.last_processed_utc,"
                " f.last_mid_time_utc"
                " FROM observations AS o LEFT JOIN f ON f.obs_id = o.obs_id"
                " UNION ALL"
                " SELECT f.obs_id, NULL, 0, NULL, f.n_frames, f.n_processed, f.n_bad,"
                " f.last_seen_utc, f.last_processed_utc, f.last_mid_time_utc"
                " FROM f WHERE f.obs_id NOT IN (SELECT obs_id FROM observations)"
                " ORDER BY 1"
            )
        )

    def problem_frames(
        self, state: str, *, source: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Return the latest frames in ``state`` ('failed' or 'rejected'), with their reasons.

        ``source`` ('skynet', 'inbox', 'cli') keeps only frames that came that way.
        Keys: frame_id, source, exp_id, obs_id, file (image or stored path), tries,
        last_error, updated_at.
        """
        where, params = "state = ?", [state]
        if source is not None:
            where += " AND source = ?"
            params.append(source)
        return list(
            self.db.query(
                "SELECT frame_id, source, exp_id, obs_id, COALESCE(image_file, path) AS file,"
                " tries, last_error, updated_at FROM frames"
                f" WHERE {where} ORDER BY updated_at DESC, frame_id DESC LIMIT ?",
                [*params, limit],
            )
        )

    def notifier_alert_counts(self, keys: list[str]) -> dict[str, dict[str, int]]:
        """Return, per notifier key, alerts delivered to it and those still owed to it.

        ``keys`` are the configured notifiers; notifiers that delivered alerts in the
        past are added. Each value has ``delivered`` (rows of alert_deliveries),
        ``pending`` and ``failed`` (alerts in that status not delivered to this
        notifier).
        """
        delivered = dict(
            self.db.execute(
                "SELECT notifier, COUNT(*) FROM alert_deliveries GROUP BY notifier"
            ).fetchall()
        )
        out: dict[str, dict[str, int]] = {}
        for key in dict.fromkeys([*keys, *sorted(delivered)]):
            counts = {"delivered": int(delivered.get(key, 0)), "pending": 0, "failed": 0}
            for status, n in self.db.execute(
                "SELECT status, COUNT(*) FROM alerts AS a WHERE status IN ('pending', 'failed')"
                " AND NOT EXISTS (SELECT 1 FROM alert_deliveries AS d"
                " WHERE d.alert_id = a.alert_id AND d.notifier = ?) GROUP BY status",
                [key],
            ):
                counts[str(status)] = int(n)
            out[key] = counts
        return out

    def target_overview(self) -> list[dict[str, Any]]:
        """Return one row per target (active or not), ordered by name, with its latest point.

        Keys: target_id, name, ra_deg, dec_deg, trigger_time_utc, active, source,
        n_points (frames with a current measurement), first_mjd, last_mjd, and
        ``last``: the latest point's decoded measurement (PACKED_FIELDS, lowest
        aperture of the latest frame) plus its frame's band, telescope and
        mag_system, or None when the target has no point.
        """
        rows = list(
            self.db.query(
                "SELECT t.target_id, t.name, t.ra_deg, t.dec_deg, t.trigger_time_utc, t.active,"
                " t.source, COALESCE(s.n_points, 0) AS n_points, s.first_mjd, s.last_mjd"
                " FROM targets AS t LEFT JOIN (SELECT target_id,"
                " COUNT(DISTINCT frame_id) AS n_points, MIN(mjd) AS first_mjd,"
                " MAX(mjd) AS last_mjd FROM measurements WHERE superseded = 0"
                " GROUP BY target_id) AS s ON s.target_id = t.target_id ORDER BY t.name"
            )
        )
        for row in rows:
            row["last"] = None
            if row["last_mjd"] is None:
                continue
            hit = self.db.execute(
                "SELECT m.packed, f.band, f.telescope, f.mag_system FROM measurements AS m"
                " JOIN frames AS f ON f.frame_id = m.frame_id"
                " WHERE m.target_id = ? AND m.superseded = 0 AND m.mjd = ?"
                " ORDER BY m.frame_id DESC, m.aperture_id LIMIT 1",
                [row["target_id"], row["last_mjd"]],
            ).fetchone()
            if hit is not None:
                last: dict[str, Any] = _decode(hit[0])
                last.update(band=hit[1], telescope=hit[2], mag_system=hit[3])
                row["last"] = last
        return rows

    def frame_details(self, frame_id: int) -> dict[str, Any] | None:
        """Return every column of one frame (``meta_json`` as text), or None if unknown."""
        rows = list(
            self.db.query(f"SELECT {_FRAME_FIELDS} FROM frames WHERE frame_id = ?", [frame_id])
        )
        return rows[0] if rows else None

    def frame_measurements(self, frame_id: int) -> list[dict[str, Any]]:
        """Return the current measurements of one frame: target name + decoded fields, by name."""
        out = []
        for name, blob in self.db.execute(
            "SELECT t.name, m.packed FROM measurements AS m"
            " JOIN targets AS t ON t.target_id = m.target_id"
            " WHERE m.frame_id = ? AND m.superseded = 0 ORDER BY t.name, m.aperture_id",
            [frame_id],
        ):
            row: dict[str, Any] = {"target_name": name}
            row.update(_decode(blob))
            out.append(row)
        return out


class ReadOnlyStore(OverviewMixin, Store):
    """The Store's read methods and the overview queries on a read-only connection.

    Any write method raises ``sqlite3.OperationalError`` (attempt to write a
    readonly database). Migrations are never applied.
    """

    def __init__(self, path: Path | str) -> None:
        """Open the database at ``path`` read-only (see :func:`open_readonly`)."""
        self.path = path
        self.db = open_readonly(path)
        self._attach_repositories()


#: The schema migrations of this soapd, in order: the names that
#: ``soapd.store.migrations`` registers, listed here so that a reader can tell a
#: current database without importing that module (it imports ``sqlite_utils``).
#: A new migration adds its name here; ``tests/unit/cli/test_lightcurve_fast.py``
#: fails until it does.
SCHEMA_MIGRATIONS = (
    "m001_frames",
    "m002_ledger_observations_status",
    "m003_results_targets_measurements_alerts",
    "m004_measurements_packed",
    "m005_frame_metadata_once",
    "m006_measurements_packed_calibration",
    "m007_frame_footprint_and_coverage",
    "m008_stacks",
    "m009_frames_started_at",
    "m010_rule_state",
    "m011_retention",
)


def known_migrations() -> list[str]:
    """Return the names of the schema migrations this soapd has (:data:`SCHEMA_MIGRATIONS`)."""
    return list(SCHEMA_MIGRATIONS)


class LightcurveReader:
    """A target and its lightcurve arrays on a plain read-only sqlite3 connection.

    For readers that need neither ``sqlite_utils`` nor astropy (``soapd lightcurve``
    printing text): the same row decoding as ``Store.get_target`` and the same read
    as ``Store.lightcurve`` (:func:`~soapd.store.measurements.read_lightcurve`).
    Open it with :meth:`open_current`, which declines a database that opening the
    Store would change.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Read through ``conn`` (see :func:`open_readonly_connection`)."""
        self.conn = conn

    @classmethod
    def open_current(cls, path: Path | str) -> LightcurveReader | None:
        """Open the database at ``path`` read-only if opening the Store would leave it as it is.

        That is: every known migration applied, the ``lightcurve`` view current,
        soapd's application_id set and WAL on. Otherwise return None: the caller
        opens the Store, which migrates and refreshes the view, as it always did.
        Raise StoreError as :func:`open_readonly_connection` does.
        """
        conn = open_readonly_connection(path)
        try:
            current = _is_current(conn)
        except sqlite3.DatabaseError:
            current = False
        if not current:
            conn.close()
            return None
        return cls(conn)

    def get_target(self, name: str) -> Target | None:
        """Return the target called ``name`` (active or not), or None (as ``Store.get_target``)."""
        cursor = self.conn.execute("SELECT * FROM targets WHERE name = ?", [name])
        keys = [d[0] for d in cursor.description]
        row = cursor.fetchone()
        return None if row is None else _row_to_target(dict(zip(keys, row, strict=True)))

    def lightcurve_arrays(
        self,
        target: Target,
        names: Iterable[str] | None = None,
        *,
        band: str | None = None,
        since_utc: datetime | str | None = None,
        include_superseded: bool = False,
        include_not_covered: bool = False,
    ) -> dict[str, np.ndarray]:
        """Return lightcurve columns of ``target`` as arrays (the read of ``Store.lightcurve``)."""
        return read_lightcurve(
            self.conn,
            target,
            names,
            band=band,
            since_utc=since_utc,
            include_superseded=include_superseded,
            include_not_covered=include_not_covered,
        )

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the connection."""
        self.close()


def _is_current(conn: sqlite3.Connection) -> bool:
    """Return True when opening the Store on ``conn``'s database would write nothing."""
    if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
        return False
    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        return False
    known = known_migrations()
    applied = {
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'soapd'"
        ).fetchall()
    }
    if not set(known) <= applied:
        return False
    view = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'lightcurve'"
    ).fetchone()
    return view is not None and view[0] == lightcurve_view_sql()
