"""Watched targets: add, deactivate, list, and the TOML ``[[targets]]`` sync."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from soapd import timeutil
from soapd.config import TargetConfig
from soapd.config.fields import name_problem
from soapd.errors import ConfigError
from soapd.models import Target
from soapd.store.base import Repository, utc_iso

__all__ = ["Targets", "parse_utc"]

logger = logging.getLogger(__name__)


def parse_utc(text: str | datetime | None, *, what: str = "time") -> datetime | None:
    """Return an aware UTC datetime from ISO-8601 text (naive text is taken as UTC).

    Empty text and None give None. Raise ConfigError naming ``what`` if unparseable.
    """
    if text is None:
        return None
    if isinstance(text, datetime):
        return timeutil.as_utc(text)
    if not text.strip():
        return None
    try:
        return timeutil.parse_utc(text)
    except ValueError:
        raise ConfigError(
            f"{what}: {text!r} is not an ISO-8601 time (e.g. 2026-11-24T03:12:45Z)"
        ) from None


def _check_position(name: str, ra_deg: float, dec_deg: float) -> None:
    problem = name_problem(name)
    if problem:
        raise ConfigError(problem)
    if not (math.isfinite(ra_deg) and 0.0 <= ra_deg < 360.0):
        raise ConfigError(f"target {name!r}: RA must be in [0, 360) deg, got {ra_deg}")
    if not (math.isfinite(dec_deg) and -90.0 <= dec_deg <= 90.0):
        raise ConfigError(f"target {name!r}: Dec must be in [-90, 90] deg, got {dec_deg}")


def _row_to_target(row: dict[str, Any]) -> Target:
    return Target(
        name=row["name"],
        ra_deg=row["ra_deg"],
        dec_deg=row["dec_deg"],
        trigger_time_utc=parse_utc(row["trigger_time_utc"]),
        active=bool(row["active"]),
        rules={k: float(v) for k, v in json.loads(row["rules_json"]).items()},
        target_id=row["target_id"],
    )


class Targets(Repository):
    """Queries on the ``targets`` table."""

    def upsert_target(self, target: Target, *, source: str = "cli") -> int:
        """Insert or update ``target`` by name (reactivating it) and return its target_id."""
        _check_position(target.name, target.ra_deg, target.dec_deg)
        now = self.now()
        trigger = None if target.trigger_time_utc is None else utc_iso(target.trigger_time_utc)
        with self.db.atomic():
            self.db.execute(
                """
                INSERT INTO targets (name, ra_deg, dec_deg, trigger_time_utc, active,
                                     rules_json, source, added_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET
                    ra_deg = excluded.ra_deg, dec_deg = excluded.dec_deg,
                    trigger_time_utc = excluded.trigger_time_utc, active = excluded.active,
                    rules_json = excluded.rules_json, source = excluded.source,
                    updated_at = excluded.updated_at
                """,
                [
                    target.name,
                    float(target.ra_deg),
                    float(target.dec_deg),
                    trigger,
                    int(target.active),
                    json.dumps(dict(sorted(target.rules.items()))),
                    source,
                    now,
                    now,
                ],
            )
            row = self.db.execute(
                "SELECT target_id FROM targets WHERE name = ?", [target.name]
            ).fetchone()
        return int(row[0])

    def remove_target(self, name: str) -> bool:
        """Deactivate the target ``name`` (its measurements stay); False if unknown."""
        cur = self.db.execute(
            "UPDATE targets SET active = 0, updated_at = ? WHERE name = ?", [self.now(), name]
        )
        return cur.rowcount > 0

    def get_target(self, name: str) -> Target | None:
        """Return the target called ``name`` (active or not), or None."""
        rows = list(self.db.query("SELECT * FROM targets WHERE name = ?", [name]))
        return _row_to_target(rows[0]) if rows else None

    def get_target_by_id(self, target_id: int) -> Target | None:
        """Return the target with ``target_id``, or None."""
        rows = list(self.db.query("SELECT * FROM targets WHERE target_id = ?", [target_id]))
        return _row_to_target(rows[0]) if rows else None

    def list_targets(self, include_inactive: bool = False) -> list[Target]:
        """Return the targets ordered by name (only active ones unless asked)."""
        where = "" if include_inactive else "WHERE active = 1"
        return [
            _row_to_target(r) for r in self.db.query(f"SELECT * FROM targets {where} ORDER BY name")
        ]

    def active_targets(self) -> list[Target]:
        """Return the active targets (what each new frame is measured at)."""
        return self.list_targets(include_inactive=False)

    def target_ids(self) -> dict[str, int]:
        """Return ``{name: target_id}`` for every target, active or not."""
        return {
            str(name): int(tid)
            for tid, name in self.db.execute("SELECT target_id, name FROM targets").fetchall()
        }

    def sync_config_targets(self, targets: Sequence[TargetConfig]) -> list[int]:
        """Upsert the TOML ``[[targets]]`` by name (start-up, SIGHUP); return their target_ids.

        Targets added on the command line and absent from the TOML are left alone.
        A target last changed on the command line (``targets add|set``) keeps the
        command line's values: a restart must never undo a change made at 3 a.m.
        When the TOML says otherwise, one warning names the target, the fields
        that differ and what to do.
        """
        ids: list[int] = []
        for tc in targets:
            trigger = parse_utc(tc.trigger_time, what=f"[[targets]] {tc.name}.trigger_time")
            target = Target(
                name=tc.name,
                ra_deg=tc.ra_deg,
                dec_deg=tc.dec_deg,
                trigger_time_utc=trigger,
                rules=dict(tc.rules),
            )
            kept = self._cli_edited(target)
            ids.append(kept if kept is not None else self.upsert_target(target, source="config"))
        return ids

    def _cli_edited(self, target: Target) -> int | None:
        """Return the id of an active CLI-edited target of that name (warning on a diff)."""
        row = self.db.execute(
            "SELECT target_id, source FROM targets WHERE name = ? AND active = 1", [target.name]
        ).fetchone()
        if row is None or row[1] != "cli":
            return None
        stored = self.get_target(target.name)
        assert stored is not None
        diff = [
            f
            for f in ("ra_deg", "dec_deg", "trigger_time_utc", "rules")
            if getattr(stored, f) != getattr(target, f)
        ]
        if diff:
            logger.warning(
                "target %r: the config file differs in %s from the version set on the "
                "command line; keeping the command line's (change it with `soapd targets "
                "set`, or `soapd targets remove` it and reload to take the file's)",
                target.name,
                ", ".join(diff),
            )
        return int(row[0])
