"""VizieR cone queries through astroquery, with every failure turned into CatalogError.

Each query names its columns, sorts by the catalog's brightness column (so a row
limit keeps the brightest stars, not an arbitrary subset; skynetsoap bug B12),
sets the row limit and the timeout explicitly, and bypasses astroquery's own
cache (soapd has its tile cache). ``server`` may be a bare mirror host
(``vizier.cds.unistra.fr``, queried over HTTPS as astroquery does) or a full
base URL with a scheme (``http://127.0.0.1:8123``), which is how tests point
the live path at a local server.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import astropy.units as u
from astropy.coordinates import SkyCoord
from astroquery.vizier import VizierClass

from soapd.errors import CatalogError

if TYPE_CHECKING:
    from astropy.table import Table

    from soapd.catalogs.registry import CatalogSpec

__all__ = ["VizierFetcher"]

logger = logging.getLogger(__name__)


class _Vizier(VizierClass):  # type: ignore[misc]
    """astroquery's Vizier that also accepts a base URL with a scheme."""

    def _server_to_url(self, return_type: str = "votable") -> str:
        server = str(self.VIZIER_SERVER).rstrip("/")
        if "://" in server:
            return f"{server}/viz-bin/{return_type}"
        return str(super()._server_to_url(return_type=return_type))


class VizierFetcher:
    """Run VizieR cone searches; count the network calls.

    Parameters
    ----------
    server
        Mirror host or base URL; empty for astroquery's default mirror.
    timeout_s
        Seconds before a query is abandoned.
    row_limit
        Most rows asked per query.
    mag_limit
        Faintest magnitude asked, applied to each catalog's sort column (0: none).
    retry_after_s
        After a timeout or a connection failure (the server, not one catalog, is
        unreachable), every query fails at once for this many seconds, so an outage
        costs one timeout rather than one per catalog and frame.
    """

    def __init__(
        self,
        *,
        server: str = "",
        timeout_s: float = 30.0,
        row_limit: int = 5000,
        mag_limit: float = 0.0,
        retry_after_s: float = 300.0,
    ) -> None:
        """Remember the query settings."""
        self.server = server
        self.timeout_s = timeout_s
        self.row_limit = row_limit
        self.mag_limit = mag_limit
        self.retry_after_s = retry_after_s
        self.calls = 0
        self._down_until = 0.0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the lock."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore and recreate the lock."""
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def cone(self, spec: CatalogSpec, *, ra_deg: float, dec_deg: float, radius_deg: float) -> Table:
        """Return the catalog's rows within ``radius_deg`` of (ra, dec), brightest first.

        The table's meta gets ``truncated`` (True when the row limit was reached).
        An empty table (no stars there) is a valid answer. Raise CatalogError on
        timeouts, connection and HTTP errors and unparsable replies.
        """
        if spec.vizier_id is None:
            raise CatalogError(f"catalog {spec.name!r} is not on VizieR; give it as a local file")
        columns = [c for c in spec.columns if c != spec.sort_col]
        if spec.sort_col:
            columns.insert(2, "+" + spec.sort_col)
        kwargs: dict[str, Any] = {
            "columns": columns,
            "row_limit": self.row_limit,
            "timeout": self.timeout_s,
        }
        if self.mag_limit > 0 and spec.sort_col:
            kwargs["column_filters"] = {spec.sort_col: f"<{self.mag_limit:g}"}
        if self.server:
            kwargs["vizier_server"] = self.server
        viz = _Vizier(**kwargs)
        where = f"VizieR {spec.vizier_id} at {self.server or 'default mirror'}"
        wait = self._down_until - time.monotonic()
        if wait > 0:
            raise CatalogError(
                f"{where} not asked: the server was unreachable moments ago (next try in "
                f"{wait:.0f} s, calibration.retry_after_s)"
            )
        with self._lock:
            self.calls += 1
        logger.info("querying %s: cone %.5f %+.5f r=%.3f deg", where, ra_deg, dec_deg, radius_deg)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = viz.query_region(
                    SkyCoord(ra_deg, dec_deg, unit="deg", frame="icrs"),
                    radius=radius_deg * u.deg,
                    catalog=spec.vizier_id,
                    cache=False,
                )
        except Exception as exc:  # astroquery/requests raise many types; all mean "no answer"
            if _unreachable(exc):
                self._down_until = time.monotonic() + self.retry_after_s
                raise CatalogError(
                    f"{where} unreachable ({_short_reason(exc, self.timeout_s)}); offline? set "
                    "calibration.online = false with calibration.catalog_files, or "
                    "calibration.vizier_server to a mirror you can reach"
                ) from None
            raise CatalogError(
                f"{where} failed ({type(exc).__name__}: {_first_line(exc)}); check the "
                "network, or set calibration.vizier_server to another mirror"
            ) from None
        if result is None or isinstance(result, str | bytes):
            raise CatalogError(f"{where} returned an unreadable reply")
        table = _pick(result, spec.vizier_id)
        table.meta["truncated"] = bool(len(table) >= self.row_limit)
        if table.meta["truncated"]:
            logger.warning(
                "%s hit the row limit (%d) in a %.3f deg cone: only the brightest stars are "
                "kept; raise calibration.row_limit or lower calibration.tile_deg",
                where,
                self.row_limit,
                radius_deg,
            )
        return table


def _unreachable(exc: BaseException) -> bool:
    """Return True for timeouts and connection failures (the server, not the query)."""
    import requests

    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """Return the first line of ``exc``'s message, cut to ``limit`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_reason(exc: BaseException, timeout_s: float) -> str:
    """Return why a server could not be reached, in a few words (no urllib3 repr chains).

    >>> import requests
    >>> _short_reason(requests.exceptions.ReadTimeout("..."), 30.0)
    'no answer within 30 s'
    """
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {timeout_s:g} s"
    text = str(exc)
    if "NameResolution" in text or "Name or service not known" in text or "resolve" in text:
        return "its host name does not resolve"
    if "Connection refused" in text:
        return "connection refused"
    if "Network is unreachable" in text:
        return "network unreachable"
    return "connection failed"


def _pick(result: Any, vizier_id: str) -> Table:
    """Return the table of ``vizier_id`` from an astroquery TableList (empty if absent)."""
    from astropy.table import Table

    keys = list(result.keys())
    if not keys:
        return Table()
    want = vizier_id.replace("/", "_").lower()
    for k in keys:
        if str(k).replace("/", "_").lower() == want:
            return result[k]
    if len(keys) == 1:
        return result[keys[0]]
    raise CatalogError(f"VizieR reply holds tables {keys}, none of them {vizier_id}")
