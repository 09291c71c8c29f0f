"""Reference catalogs: registry, VizieR queries, tile cache, local files, transformations.

The rest of soapd uses :class:`CatalogService` (it satisfies
``soapd.pipeline.calibrate.ReferenceProvider``).
"""

from soapd.catalogs.service import CatalogService

__all__ = ["CatalogService"]
