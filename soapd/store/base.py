"""What every repository of the store shares: the connection, the clock, UTC text and MJD."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["Repository", "utc_iso"]


def utc_iso(when: datetime | None = None) -> str:
    """Return ``when`` (default: now) as ISO-8601 UTC with a ``Z`` suffix, to the microsecond."""
    when = datetime.now(UTC) if when is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Repository:
    """One concern's queries over the shared connection ``db``.

    Repositories do not call each other: work that spans several (one transaction
    over frames, measurements and alerts) is written in the ``Store`` facade.
    """

    def __init__(self, db: sqlite_utils.Database) -> None:
        """Use the open connection ``db`` (see :func:`soapd.store.connection.open_database`)."""
        self.db = db

    @staticmethod
    def now() -> str:
        """Return the current time as ISO-8601 UTC text."""
        return utc_iso()
