"""Service status (``soapd status``): key/value table, backlog per state, recent errors."""

from __future__ import annotations

from typing import Any

from soapd.models import FRAME_STATES
from soapd.store.base import Repository

__all__ = ["ServiceStatus"]


class ServiceStatus(Repository):
    """Queries on ``service_status`` and the ledger's counts for ``soapd status``."""

    def set_status(self, /, **values: str | float | None) -> None:
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
