"""Connection handling shared by every Store mixin."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import sqlite_utils

from soapd.store.connection import open_database
from soapd.store.migrations import migrations

__all__ = ["StoreBase", "utc_iso"]


def utc_iso(when: datetime | None = None) -> str:
    """Return ``when`` (default: now) as ISO-8601 UTC with a ``Z`` suffix, to the microsecond."""
    when = datetime.now(UTC) if when is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StoreBase:
    """Connection handling shared by every mixin."""

    def __init__(self, path: Path | str, *, migrate: bool = True) -> None:
        """Open the database at ``path`` and, unless ``migrate`` is False, apply migrations."""
        self.path = path
        self.db: sqlite_utils.Database = open_database(path)
        if migrate:
            migrations.apply(self.db)

    @staticmethod
    def now() -> str:
        """Return the current time as ISO-8601 UTC text."""
        return utc_iso()

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(Exception):
            self.db.conn.close()

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the connection."""
        self.close()
