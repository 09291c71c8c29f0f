"""Open the soapd SQLite database with the pragmas soapd relies on.

WAL journal (readers such as ``soapd status`` never block the daemon),
foreign keys on, a busy timeout, and an ``application_id`` that marks the
file as soapd's. One ``sqlite_utils.Database`` per thread. No queries here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from soapd.errors import StoreError

__all__ = ["APPLICATION_ID", "open_database"]

#: "SOAP" in ASCII, written to the database header on creation.
APPLICATION_ID = 0x534F4150
BUSY_TIMEOUT_MS = 10_000


def open_database(path: Path | str) -> sqlite_utils.Database:
    """Given a file path (or ":memory:"), return an open Database with soapd's pragmas.

    Raise StoreError if the file is not an SQLite database or belongs to another program.
    """
    try:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id == 0:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        elif app_id != APPLICATION_ID:
            conn.close()
            raise StoreError(
                f"{path} is an SQLite database of another program "
                f"(application_id {app_id:#x}); point paths.state_dir elsewhere"
            )
        if str(path) != ":memory:":
            # WAL is stored in the file: switch only once. Switching needs an exclusive
            # lock, so asking again at every open failed with "database is locked"
            # while the daemon held a transaction.
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the soapd database: {exc}") from None
    return sqlite_utils.Database(conn)
