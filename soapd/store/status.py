"""Followed observations and the service-status key/value table (``soapd status``).

Part of the ledger (issue 5): ``LedgerMixin`` builds on this mixin. No
skynet, pipeline or service imports here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from soapd.models import FRAME_STATES
from soapd.store.base import StoreBase

__all__ = ["StatusMixin"]


class StatusMixin(StoreBase):
    """Followed observations, service status and backlog queries."""

    # ----------------------------------------------------- followed observations
    def follow_observation(self, obs_id: int, *, source: str = "cli") -> bool:
        """Follow observation ``obs_id``. Return False when it was already followed."""
        now = self.now()
        with self.db.atomic():
            old = self.db.execute(
                "SELECT active FROM observations WHERE obs_id = ?", [obs_id]
            ).fetchone()
            if old is None:
                self.db.execute(
                    "INSERT INTO observations (obs_id, source, active, added_at, updated_at)"
                    " VALUES (?, ?, 1, ?, ?)",
                    [obs_id, source, now, now],
                )
                return True
            self.db.execute(
                "UPDATE observations SET active = 1, updated_at = ? WHERE obs_id = ?",
                [now, obs_id],
            )
            return not old[0]

    def unfollow_observation(self, obs_id: int) -> bool:
        """Stop following ``obs_id`` (its frames stay). Return False when it was not followed."""
        cur = self.db.execute(
            "UPDATE observations SET active = 0, updated_at = ? WHERE obs_id = ? AND active = 1",
            [self.now(), obs_id],
        )
        return cur.rowcount == 1

    def followed_observations(self) -> list[int]:
        """Return the ids of the observations followed now, in the order they were added."""
        sql = "SELECT obs_id FROM observations WHERE active = 1 ORDER BY added_at, obs_id"
        return [r[0] for r in self.db.execute(sql).fetchall()]

    def observation_rows(self) -> list[dict[str, Any]]:
        """Return every observation ever followed with its frame counts per state."""
        return list(
            self.db.query(
                "SELECT o.obs_id, o.source, o.active, o.added_at,"
                " COUNT(f.frame_id) AS n_frames,"
                " SUM(f.state = 'processed') AS n_processed,"
                " SUM(f.state IN ('failed', 'rejected')) AS n_bad"
                " FROM observations o LEFT JOIN frames f ON f.obs_id = o.obs_id"
                " GROUP BY o.obs_id ORDER BY o.added_at, o.obs_id"
            )
        )

    def sync_config_observations(self, obs_ids: Iterable[int]) -> None:
        """Follow every observation listed in the config (re-activating removed ones)."""
        for obs_id in obs_ids:
            self.follow_observation(obs_id, source="config")

    # ------------------------------------------------------------------ status
    def set_status(self, **values: str | float | None) -> None:
        """Store service-status values (key -> text) for ``soapd status``."""
        now = self.now()
        with self.db.atomic():
            for key, value in values.items():
                self.db.execute(
                    "INSERT INTO service_status (key, value, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at",
                    [key, None if value is None else str(value), now],
                )

    def status_values(self) -> dict[str, str | None]:
        """Return every service-status key and its value."""
        rows = self.db.execute("SELECT key, value FROM service_status").fetchall()
        return dict(rows)

    def backlog(self) -> dict[str, int]:
        """Return the number of frames in each state (every state present, zeros included)."""
        counts = dict.fromkeys(FRAME_STATES, 0)
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM frames GROUP BY state"):
            counts[state] = n
        return counts

    def last_processed_utc(self) -> str | None:
        """Return when the most recent frame was processed, or None."""
        row = self.db.execute("SELECT MAX(processed_at) FROM frames").fetchone()
        return row[0] if row else None

    def recent_errors(self, limit: int = 10) -> list[dict[str, Any]]:
        """Return the latest frames with an error message (failed, rejected or retrying)."""
        return list(
            self.db.query(
                "SELECT frame_id, exp_id, obs_id, state, tries, last_error, updated_at"
                " FROM frames WHERE last_error IS NOT NULL"
                " ORDER BY updated_at DESC, frame_id DESC LIMIT ?",
                [limit],
            )
        )
