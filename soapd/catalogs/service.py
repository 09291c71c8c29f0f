"""CatalogService: reference stars for a cone, from cache, local files or VizieR.

Order of sources for one (catalog, cone): the on-disk tile cache (a field
whose tiles are all cached never touches the network), then the local files
of ``calibration.catalog_files`` that hold that catalog, then VizieR (only when
``calibration.online``). After a failed VizieR query the service leaves VizieR
alone for ``calibration.retry_after_s`` seconds: that catalog after any failed
query, and every catalog after a timeout or connection failure (the server is
down), so an outage costs one timeout, not one per frame and catalog.

:meth:`CatalogService.stars` returns an astropy Table with one row per catalog
star in the cone:

=============  ===============================================================
column         meaning
=============  ===============================================================
ra_deg         right ascension (deg, ICRS/J2000 as published)
dec_deg        declination (deg)
mag            magnitude in the requested band on that band's standard system
               (NaN when the star lacks it)
mag_err        1-sigma error of ``mag`` (catalog error, transformation errors)
color          colour used for colour terms (``meta['color_name']``, e.g. g-r)
color_err      its 1-sigma error (correlations with ``mag`` inputs included)
variable       True when the catalog marks the star as variable
=============  ===============================================================

``meta``: ``catalog``, ``band``, ``system`` ("AB"/"Vega"), ``how`` (e.g.
"R = Jordi2006(r, i)"), ``color_name``, ``source`` ("cache", "local", "vizier"),
``truncated`` (a tile hit the row limit).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from astropy.table import Table, vstack

from soapd.catalogs.cache import Tile, TileCache, angular_sep_deg, tiles_for_cone
from soapd.catalogs.local import read_local
from soapd.catalogs.normalise import normalise
from soapd.catalogs.registry import CATALOGS, CatalogSpec, default_chain, spec
from soapd.catalogs.vizier import VizierFetcher
from soapd.columns import filled
from soapd.errors import CatalogError

if TYPE_CHECKING:
    from soapd.config import CalibrationConfig, Config

__all__ = ["CatalogService", "ConeFetcher"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


class ConeFetcher(Protocol):
    """What queries a remote catalog (``VizierFetcher``, or a test fake)."""

    calls: int

    def cone(self, spec: CatalogSpec, *, ra_deg: float, dec_deg: float, radius_deg: float) -> Table:
        """Return the catalog's rows in the cone; raise CatalogError on failure."""
        ...


class CatalogService:
    """Reference stars per (catalog, cone, band); picklable for worker processes.

    Parameters
    ----------
    config
        The ``[calibration]`` section.
    cache_dir
        Folder of the tile cache (``paths.catalog_cache_dir``).
    fetcher
        What queries VizieR; default a :class:`VizierFetcher` built from ``config``.
    """

    def __init__(
        self,
        config: CalibrationConfig,
        cache_dir: Path,
        *,
        fetcher: ConeFetcher | None = None,
    ) -> None:
        """Set up the cache and the fetcher; nothing is read or queried yet."""
        self.config = config
        self.cache = TileCache(Path(cache_dir), ttl_days=config.cache_ttl_days)
        self.fetcher: ConeFetcher = fetcher or VizierFetcher(
            server=config.vizier_server,
            timeout_s=config.timeout_s,
            row_limit=config.row_limit,
            mag_limit=config.query_mag_limit,
            retry_after_s=config.retry_after_s,
        )
        self._failed_until: dict[str, float] = {}
        self._tiles: dict[tuple[str, Tile], Table] = {}
        self._unions: dict[tuple[Any, ...], Table] = {}
        self._norm: dict[tuple[Any, ...], Table] = {}
        self._local: dict[str, list[Table]] | None = None
        self.cache_hits = 0

    @classmethod
    def from_config(cls, config: Config, *, fetcher: ConeFetcher | None = None) -> CatalogService:
        """Return the service for ``config``'s ``[calibration]`` and ``paths.catalog_cache_dir``.

        The one place soapd builds a CatalogService from its settings (daemon,
        ``Soap``, ``soapd process``, ``soapd catalogs``).
        """
        return cls(config.calibration, config.paths.catalog_cache_dir, fetcher=fetcher)

    @classmethod
    def if_enabled(cls, config: Config) -> CatalogService | None:
        """Return :meth:`from_config`'s service, or None when ``calibration.enabled`` is off."""
        return cls.from_config(config) if config.calibration.enabled else None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings and counters, not the in-memory tables."""
        state = dict(self.__dict__)
        state["_tiles"] = {}
        state["_unions"] = {}
        state["_norm"] = {}
        state["_local"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`__getstate__`."""
        self.__dict__.update(state)

    @property
    def network_calls(self) -> int:
        """Number of VizieR queries this instance (this process's copy) has made."""
        return int(self.fetcher.calls)

    # -- chains ---------------------------------------------------------------------------

    def chain(self, band: str) -> list[str]:
        """Return the catalogs to try for canonical ``band``, best first.

        ``calibration.chains[band]`` overrides the built-in chain; unknown names
        are dropped with a warning. The built-in chains leave out catalogs that
        exist only as local files (Landolt) when no such file is configured.
        """
        if band in self.config.chains:
            names = list(self.config.chains[band])
        else:
            # built-in chains skip local-only catalogs (Landolt) that no local file holds
            names = [
                n for n in default_chain(band) if CATALOGS[n].vizier_id or self._local_tables(n)
            ]
        known = [n for n in names if n in CATALOGS]
        for n in set(names) - set(known):
            logger.warning("calibration.chains[%s]: unknown catalog %r ignored", band, n)
        return known

    # -- raw rows -------------------------------------------------------------------------

    def _key(self, s: CatalogSpec) -> tuple[str, ...]:
        limit = self.config.query_mag_limit
        extra = (f"{s.sort_col}<{limit:g}",) if limit > 0 and s.sort_col else ()
        return (*s.columns, *extra)

    def _local_tables(self, name: str) -> list[Table]:
        if self._local is None:
            self._local = {}
            for path in self.config.catalog_files:
                try:
                    s, table = read_local(Path(path))
                except CatalogError as exc:
                    logger.warning("skipping local catalog: %s", exc)
                    continue
                self._local.setdefault(s.name, []).append(table)
        return self._local.get(name, [])

    def _fetch_tile(self, s: CatalogSpec, tile: Tile) -> Table:
        if not self.config.online:
            raise CatalogError(
                f"{s.name}: tile {tile.key} not cached and calibration.online is false; "
                "run `soapd catalogs prefetch` or add a local file"
            )
        wait = self._failed_until.get(s.name, 0.0) - time.monotonic()
        if wait > 0:
            raise CatalogError(
                f"{s.name}: VizieR skipped for {wait:.0f} s more after a failed query "
                "(calibration.retry_after_s)"
            )
        ra_c, dec_c = tile.center
        try:
            table = self.fetcher.cone(s, ra_deg=ra_c, dec_deg=dec_c, radius_deg=tile.radius_deg)
        except CatalogError:
            self._failed_until[s.name] = time.monotonic() + self.config.retry_after_s
            raise
        if len(table) and {s.ra_col, s.dec_col} <= set(table.colnames):
            inside = tile.contains(filled(table, s.ra_col), filled(table, s.dec_col))
            table = table[inside]
        elif len(table):
            raise CatalogError(
                f"{s.name}: VizieR reply lacks position columns {s.ra_col}/{s.dec_col}"
            )
        meta_keep = {"truncated": bool(table.meta.get("truncated", False))}
        table.meta.clear()
        table.meta.update(meta_keep)
        table.meta["catalog"] = s.name
        table.meta["fetched_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self.cache.put(s.name, tile, self._key(s), table)
        except CatalogError as exc:
            logger.warning("catalog cache not updated (the stars are still used): %s", exc)
        return table

    def _tile(self, s: CatalogSpec, tile: Tile) -> tuple[Table, str]:
        mem = self._tiles.get((s.name, tile))
        if mem is not None:
            return mem, "cache"
        table = self.cache.get(s.name, tile, self._key(s))
        source = "cache"
        if table is None:
            table = self._fetch_tile(s, tile)
            source = "vizier"
        else:
            self.cache_hits += 1
        if len(self._tiles) > 256:
            self._tiles.clear()
        self._tiles[(s.name, tile)] = table
        return table, source

    def _union(
        self, s: CatalogSpec, ra_deg: float, dec_deg: float, radius_deg: float
    ) -> tuple[tuple[Any, ...], Table, str, bool]:
        """Return (memo key, rows covering the cone, source, truncated).

        The rows are every row of the tiles (or local files) that cover the cone;
        they are not cut to the cone.
        """
        tiles = tiles_for_cone(ra_deg, dec_deg, radius_deg, self.config.tile_deg)
        cached = all(
            (s.name, t) in self._tiles or self.cache.path(s.name, t, self._key(s)).is_file()
            for t in tiles
        )
        if not cached:
            local = self._local_tables(s.name)
            hit = tuple(
                i for i, t in enumerate(local) if _in_cone(t, s, ra_deg, dec_deg, radius_deg).any()
            )
            if hit or s.vizier_id is None:
                if not hit:
                    raise CatalogError(
                        f"{s.name}: no local file covers this field and it is not on VizieR; "
                        "add one to calibration.catalog_files"
                    )
                key: tuple[Any, ...] = ("local", s.name, hit)
                table = self._unions.get(key)
                if table is None:
                    parts = [local[i] for i in hit]
                    table = parts[0] if len(parts) == 1 else _stack(parts)
                    self._remember(self._unions, key, table)
                return key, table, "local", False
        key = ("tiles", s.name, tuple(tiles))
        source = "cache"
        truncated = False
        tables: list[Table] = []
        for t in tiles:
            table, src = self._tile(s, t)
            if src == "vizier":
                source = "vizier"
            truncated |= bool(table.meta.get("truncated", False))
            tables.append(table)
        union = self._unions.get(key)
        if union is None:
            nonempty = [t for t in tables if len(t)]
            union = _stack(nonempty) if nonempty else Table()
            self._remember(self._unions, key, union)
        return key, union, source, truncated

    @staticmethod
    def _remember(memo: dict[Any, Table], key: Any, value: Table) -> None:
        if len(memo) >= 64:
            memo.clear()
        memo[key] = value

    def raw(self, name: str, *, ra_deg: float, dec_deg: float, radius_deg: float) -> Table:
        """Return catalog ``name``'s rows in the cone with its own (VizieR) column names.

        Raise CatalogError when no source can serve the cone.
        """
        s = spec(name)
        _, union, source, truncated = self._union(s, ra_deg, dec_deg, radius_deg)
        out = union[_in_cone(union, s, ra_deg, dec_deg, radius_deg)] if len(union) else Table()
        out.meta.update({"source": source, "truncated": truncated})
        return out

    def prefetch(
        self, name: str, *, ra_deg: float, dec_deg: float, radius_deg: float
    ) -> tuple[int, int, int]:
        """Make sure every tile of the cone is cached; return (tiles, fetched now, rows).

        Raise CatalogError when a tile cannot be fetched.
        """
        s = spec(name)
        if s.vizier_id is None:
            raise CatalogError(f"{name} is read from local files only; nothing to prefetch")
        tiles = tiles_for_cone(ra_deg, dec_deg, radius_deg, self.config.tile_deg)
        before = self.network_calls
        rows = 0
        for t in tiles:
            table, _ = self._tile(s, t)
            rows += len(table)
        return len(tiles), self.network_calls - before, rows

    # -- normalised stars -----------------------------------------------------------------

    def stars(
        self, name: str, *, ra_deg: float, dec_deg: float, radius_deg: float, band: str
    ) -> Table:
        """Return catalog ``name``'s stars in the cone with ``band`` magnitudes (module doc).

        Raise CatalogError when the catalog cannot be read, has no stars there,
        cannot provide ``band``, or every magnitude in ``band`` is masked.
        """
        s = spec(name)
        key, union, source, truncated = self._union(s, ra_deg, dec_deg, radius_deg)
        norm = self._norm.get((key, band))
        if norm is None and len(union):
            norm = normalise(union, s, band, missing_err_mag=self.config.missing_err_mag)
            self._remember(self._norm, (key, band), norm)
        out = Table()
        if norm is not None:
            sep = angular_sep_deg(ra_deg, dec_deg, norm["ra_deg"], norm["dec_deg"])
            out = norm[sep <= radius_deg]
        if len(out) == 0:
            raise CatalogError(
                f"{name}: no stars within {radius_deg:.3f} deg of "
                f"{ra_deg:.5f} {dec_deg:+.5f} (outside the catalog's footprint?)"
            )
        if not np.isfinite(np.asarray(out["mag"])).any():
            raise CatalogError(f"{name}: every {band} magnitude in the field is masked")
        out.meta.update({"source": source, "truncated": truncated})
        return out


def _in_cone(
    table: Table, s: CatalogSpec, ra: float, dec: float, radius: float
) -> npt.NDArray[np.bool_]:
    if len(table) == 0:
        return np.zeros(0, dtype=bool)
    sep = angular_sep_deg(ra, dec, filled(table, s.ra_col), filled(table, s.dec_col))
    return np.asarray(sep <= radius)


def _stack(parts: list[Table]) -> Table:
    return vstack(parts, metadata_conflicts="silent")
