"""Targets, measurements, the alerts outbox and lightcurve queries."""

from __future__ import annotations

from soapd.store.base import StoreBase

__all__ = ["ResultsMixin"]


class ResultsMixin(StoreBase):
    """Result queries (the lightcurve work, issue 6)."""
