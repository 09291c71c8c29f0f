"""``SoapdDatabase``: the ``sqlite_utils.Database`` that ``open_database`` returns.

:func:`soapd.store.connection.open_database` makes one per connection.

Its own module so that importing :mod:`soapd.store` does not import
``sqlite_utils`` (a plain read such as ``soapd lightcurve`` needs none of it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator

import sqlite_utils

__all__ = ["SAVEPOINT", "SoapdDatabase"]

#: The name of every savepoint (nested ``atomic`` block).
SAVEPOINT = "soapd_savepoint"


class SoapdDatabase(sqlite_utils.Database):
    """A ``sqlite_utils.Database`` whose :meth:`atomic` takes the write lock when it begins.

    ``after_commit``, when set, is called after each outermost block commits (the
    Store asks its WAL checkpointer for a checkpoint there: :mod:`.checkpoint`).
    """

    after_commit: Callable[[], None] | None = None

    @contextlib.contextmanager
    def atomic(self) -> Generator[SoapdDatabase, None, None]:
        """Run the block in one transaction begun with ``BEGIN IMMEDIATE`` (nested: a savepoint).

        The write lock is taken (waiting up to the busy timeout) before the first
        read, so a read-then-write transaction never fails half-way because another
        connection wrote in between.
        """
        if self.conn.in_transaction:
            # One savepoint name for every nested block (SQLite releases the newest of a
            # name): sqlite_utils' random names were two new SQL texts per block, each a
            # prepared statement pushing a used one out of the statement cache.
            self.conn.execute(f"SAVEPOINT {SAVEPOINT}")
            try:
                yield self
            except BaseException:
                if self.conn.in_transaction:  # an error may have ended the transaction
                    self.conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                    self.conn.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
                raise
            self.conn.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        if self.after_commit is not None:
            self.after_commit()
