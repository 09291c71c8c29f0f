"""Reference catalogs: registry, VizieR queries, tile cache, local files, transformations.

The rest of soapd uses :class:`CatalogService` (it satisfies
``soapd.pipeline.calibrate.ReferenceProvider``). It is imported lazily, so that
``soapd.catalogs.registry`` can be read without loading astroquery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soapd.catalogs.service import CatalogService

__all__ = ["CatalogService"]


def __getattr__(name: str) -> Any:
    """Import :class:`CatalogService` on first use."""
    if name == "CatalogService":
        from soapd.catalogs.service import CatalogService

        return CatalogService
    raise AttributeError(f"module 'soapd.catalogs' has no attribute {name!r}")
