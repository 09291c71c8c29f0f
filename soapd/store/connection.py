"""Open the soapd SQLite database with the pragmas soapd relies on.

WAL journal (readers such as ``soapd status`` never block the daemon),
foreign keys on, a busy timeout, and an ``application_id`` that marks the
file as soapd's. Transactions that write start with ``BEGIN IMMEDIATE``
(:class:`SoapdDatabase`), so two writers queue for the write lock at the start
instead of one of them failing with "database is locked" when a read inside its
transaction turns into a write. One ``sqlite_utils.Database`` per thread. No
queries here; :func:`in_chunks` gives the ``IN (...)`` lists the queries bind, in a
few fixed lengths so that their SQL text does not change with every list length.
``sqlite_utils`` is imported when a database is opened, not with this module
(:mod:`soapd.store` stays light for the readers that need none of it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from soapd.errors import StoreError
from soapd.store.checkpoint import WAL_AUTOCHECKPOINT_PAGES

if TYPE_CHECKING:
    from soapd.store.database import SoapdDatabase

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_MS", "IN_CHUNK", "in_chunks", "is_busy", "open_database"]

#: "SOAP" in ASCII, written to the database header on creation.
APPLICATION_ID = 0x534F4150
#: Milliseconds a statement waits for another connection's lock before "database is locked".
BUSY_TIMEOUT_MS = 10_000


#: Most values one ``IN (...)`` list binds (a power of two); longer lists go in chunks.
IN_CHUNK = 512


def in_chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[tuple[str, list[Any]]]:
    """Yield ``("?,?,...", params)`` for ``IN (...)`` over ``values``, ``size`` at a time.

    Each chunk's list is padded to the next power of two by repeating its last
    value (a repeated value changes nothing in ``IN``), so a query has at most
    ``log2(size) + 1`` distinct SQL texts. With one text per list length, every
    read of a history that had grown by one frame prepared a new statement
    (~64 bytes per value) and pushed another out of the connection's statement
    cache (128 per connection): the daemon's memory grew ~5 MB in 15 minutes
    with that churn (bench/README.md, "Where the daemon's memory goes").
    ``size`` must be a power of two. Nothing is yielded for no values.
    """
    if size < 1 or size & (size - 1):
        raise ValueError(f"in_chunks: size must be a power of two, not {size}")
    for start in range(0, len(values), size):
        chunk = list(values[start : start + size])
        n = 1 << (len(chunk) - 1).bit_length()
        yield ",".join("?" * n), chunk + [chunk[-1]] * (n - len(chunk))


def is_busy(exc: BaseException) -> bool:
    """Return True when ``exc`` is SQLite's "database is locked/busy" (retry the write later)."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, StoreError) and cause is not None and is_busy(cause)


def open_database(
    path: Path | str, *, read_only: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> SoapdDatabase:
    """Given a file path (or ":memory:"), return an open Database with soapd's pragmas.

    ``read_only`` opens an existing file with ``mode=ro``: no write is possible and
    nothing is created. Raise StoreError if the file is not an SQLite database,
    belongs to another program, or (read-only) does not exist.
    """
    memory = str(path) == ":memory:"
    try:
        if read_only and not memory:
            if not Path(path).is_file():
                raise StoreError(f"{path}: no soapd database there")
            uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            if not memory:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path),
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id == 0 and not read_only:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        elif app_id not in (0, APPLICATION_ID):
            conn.close()
            raise StoreError(
                f"{path} is an SQLite database of another program "
                f"(application_id {app_id:#x}); point paths.state_dir elsewhere"
            )
        if not memory and not read_only:
            # WAL is stored in the file: switch only once. Switching needs an exclusive
            # lock, so asking again at every open failed with "database is locked"
            # while the daemon held a transaction.
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Checkpoints run on the Store's checkpointer thread; a commit does one
            # itself only past this many WAL pages (soapd.store.checkpoint).
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the soapd database: {exc}") from None
    from soapd.store.database import SoapdDatabase

    return SoapdDatabase(conn)
