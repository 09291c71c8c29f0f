"""Followed observations: the Skynet observations whose frames the daemon fetches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from soapd.store.base import Repository

__all__ = ["Observations"]


class Observations(Repository):
    """Queries on ``observations`` (added by the CLI or listed in the config)."""

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
