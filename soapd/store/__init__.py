"""The Store: the only place in soapd that issues SQL.

``Store`` is composed of mixins, one per concern, each in its own module and each
a subclass of ``base.StoreBase`` (which owns ``self.db``, a ``sqlite_utils.Database``):
``ledger.LedgerMixin`` (frames and their state machine, followed observations,
service status) and ``results.ResultsMixin`` (targets, measurements, alerts
outbox, lightcurve queries).
"""

from __future__ import annotations

from soapd.store.base import StoreBase, utc_iso
from soapd.store.ledger import LedgerMixin
from soapd.store.measurements import ResultsMixin

__all__ = ["Store", "StoreBase", "utc_iso"]


class Store(LedgerMixin, ResultsMixin):
    """The soapd database: ledger, targets, measurements, alerts."""
