"""The frame ledger: frames, their state machine, followed observations, service status."""

from __future__ import annotations

from soapd.store.base import StoreBase

__all__ = ["LedgerMixin"]


class LedgerMixin(StoreBase):
    """Frame-ledger queries (the daemon work, issue 5)."""
