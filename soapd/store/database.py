"""``SoapdDatabase``: the ``sqlite_utils.Database`` that ``open_database`` returns.

:func:`soapd.store.connection.open_database` makes one per connection.

Its own module so that importing :mod:`soapd.store` does not import
``sqlite_utils`` (a plain read such as ``soapd lightcurve`` needs none of it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import sqlite_utils

__all__ = ["SoapdDatabase"]


class SoapdDatabase(sqlite_utils.Database):
    """A ``sqlite_utils.Database`` whose :meth:`atomic` takes the write lock when it begins."""

    @contextlib.contextmanager
    def atomic(self) -> Generator[SoapdDatabase, None, None]:
        """Run the block in one transaction begun with ``BEGIN IMMEDIATE`` (nested: a savepoint).

        The write lock is taken (waiting up to the busy timeout) before the first
        read, so a read-then-write transaction never fails half-way because another
        connection wrote in between.
        """
        if self.conn.in_transaction:
            with super().atomic():
                yield self
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
