"""The alerts outbox: alerts stored with the measurement that caused them, then delivered.

An alert is ``pending`` until every notifier has delivered it (``alert_deliveries``
remembers which ones did, so a retry never sends twice to the same notifier), then
``sent``; after too many failed attempts it is ``failed`` (kept for inspection).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soapd.models import AlertDraft
from soapd.store.base import Repository, utc_iso

__all__ = ["Outbox", "StoredAlert"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAlert:
    """One alert row of the outbox, with the notifiers that already delivered it."""

    alert_id: int
    target_id: int
    target_name: str
    frame_id: int | None
    batch_key: str
    rule: str
    dedupe_key: str
    message: str
    payload: dict[str, Any]
    created_at: str
    attempts: int
    delivered_to: frozenset[str]


def _iso(when: datetime | str | None) -> str:
    if when is None:
        return utc_iso()
    return when if isinstance(when, str) else utc_iso(when)


class Outbox(Repository):
    """Queries on ``alerts`` and ``alert_deliveries``."""

    def insert(
        self, frame_id: int | None, alerts: Sequence[AlertDraft], ids: dict[str, int]
    ) -> list[int]:
        """Insert drafts (inside the caller's transaction); return the ids of new alerts.

        ``ids`` maps target names to target ids; drafts of unknown targets are skipped.
        """
        now = self.now()
        new_ids: list[int] = []
        for draft in alerts:
            target_id = ids.get(draft.target_name)
            if target_id is None:
                continue
            payload = {"message": draft.message, **draft.payload}
            cur = self.db.execute(
                """
                INSERT INTO alerts (target_id, frame_id, batch_key, rule, dedupe_key, payload,
                                    created_at, next_attempt_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (dedupe_key) DO NOTHING
                """,
                [
                    target_id,
                    frame_id,
                    draft.batch_key,
                    draft.rule,
                    draft.dedupe_key,
                    json.dumps(payload, allow_nan=False, default=str),
                    now,
                    now,
                ],
            )
            if cur.rowcount == 1 and cur.lastrowid is not None:
                new_ids.append(int(cur.lastrowid))
        return new_ids

    def unsent_alerts(self, now: datetime | str | None = None) -> list[StoredAlert]:
        """Return the pending alerts due at ``now`` (default: now), oldest first."""
        rows = self.db.execute(
            """
            SELECT a.alert_id, a.target_id, t.name, a.frame_id, a.batch_key, a.rule,
                   a.dedupe_key, a.payload, a.created_at, a.attempts,
                   (SELECT group_concat(d.notifier, char(31)) FROM alert_deliveries AS d
                    WHERE d.alert_id = a.alert_id)
            FROM alerts AS a JOIN targets AS t ON t.target_id = a.target_id
            WHERE a.status = 'pending' AND a.next_attempt_at <= ?
            ORDER BY a.created_at, a.alert_id
            """,
            [_iso(now)],
        ).fetchall()
        out = []
        for r in rows:
            payload = json.loads(r[7])
            out.append(
                StoredAlert(
                    alert_id=r[0],
                    target_id=r[1],
                    target_name=r[2],
                    frame_id=r[3],
                    batch_key=r[4],
                    rule=r[5],
                    dedupe_key=r[6],
                    message=str(payload.get("message", "")),
                    payload=payload,
                    created_at=r[8],
                    attempts=r[9],
                    delivered_to=frozenset(r[10].split("\x1f")) if r[10] else frozenset(),
                )
            )
        return out

    def mark_alert_delivered(self, alert_id: int, notifier: str) -> None:
        """Record that ``notifier`` delivered the alert (never sent to it again)."""
        self.db.execute(
            "INSERT OR IGNORE INTO alert_deliveries (alert_id, notifier, delivered_at) "
            "VALUES (?, ?, ?)",
            [alert_id, notifier, self.now()],
        )

    def mark_alert_sent(self, alert_id: int) -> None:
        """Mark the alert delivered to every notifier."""
        now = self.now()
        self.db.execute(
            "UPDATE alerts SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
            "last_error = NULL WHERE alert_id = ?",
            [now, alert_id],
        )

    def mark_alert_failed(
        self, alert_id: int, error: str, next_attempt_at: datetime | str | None
    ) -> None:
        """Count a failed attempt; retry at ``next_attempt_at``, or give up if it is None."""
        if next_attempt_at is None:
            self.db.execute(
                "UPDATE alerts SET status = 'failed', attempts = attempts + 1, last_error = ? "
                "WHERE alert_id = ?",
                [error[:2000], alert_id],
            )
        else:
            self.db.execute(
                "UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                "WHERE alert_id = ?",
                [error[:2000], _iso(next_attempt_at), alert_id],
            )

    def alert_counts(self) -> dict[str, int]:
        """Return the number of alerts per status: pending, sent, failed."""
        counts = dict.fromkeys(("pending", "sent", "failed"), 0)
        for status, n in self.db.execute("SELECT status, count(*) FROM alerts GROUP BY status"):
            counts[str(status)] = int(n)
        return counts

    def list_alerts(self, *, target_name: str | None = None) -> list[dict[str, Any]]:
        """Return every alert row (newest first), optionally for one target."""
        where, params = ("WHERE t.name = ?", [target_name]) if target_name else ("", [])
        return list(
            self.db.query(
                "SELECT a.*, t.name AS target_name FROM alerts AS a "
                f"JOIN targets AS t ON t.target_id = a.target_id {where} "
                "ORDER BY a.alert_id DESC",
                params,
            )
        )
