"""Fixtures for catalog tests: recorded data, a fake VizieR server on 127.0.0.1, fetch fakes."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.table import Table

from soapd.catalogs.cache import angular_sep_deg
from soapd.catalogs.registry import CatalogSpec
from soapd.config import CalibrationConfig
from soapd.errors import CatalogError

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(name="data_dir")
def fixture_data_dir() -> Path:
    """The tests/data folder."""
    return DATA


def read_recorded(name: str) -> Table:
    """Return a recorded astroquery ECSV reply from tests/data/feder_ey_uma."""
    return Table.read(DATA / "feder_ey_uma" / name)


@dataclass
class FakeVizier:
    """State of the fake VizieR server: what each -source answers and what was asked."""

    url: str
    tables: dict[str, Table] = field(default_factory=dict)
    #: -source -> "timeout" | "error" | "garbage" | raw bytes (a recorded VOTable reply).
    behaviour: dict[str, Any] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    delay_s: float = 3.0


def _parse_payload(body: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in body.splitlines():
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def _cone(table: Table, payload: dict[str, str]) -> Table:
    c = payload.get("-c", "")
    cut = max(c.rfind("+"), c.rfind("-"))
    ra, dec = float(c[:cut]), float(c[cut:])
    if "-c.rd" in payload:
        radius = float(payload["-c.rd"])
    elif "-c.rm" in payload:
        radius = float(payload["-c.rm"]) / 60.0
    else:
        radius = float(payload.get("-c.rs", "0")) / 3600.0
    racol = "RAJ2000" if "RAJ2000" in table.colnames else "RA_ICRS"
    deccol = "DEJ2000" if "DEJ2000" in table.colnames else "DE_ICRS"
    sep = angular_sep_deg(ra, dec, np.asarray(table[racol]), np.asarray(table[deccol]))
    out = table[sep <= radius]
    sort = payload.get("-sort")
    if sort and sort in out.colnames:
        key = np.ma.filled(np.ma.asarray(out[sort], dtype=float), np.inf)
        out = out[np.argsort(key, kind="stable")]
    limit = payload.get("-out.max", "")
    if limit.isdigit():
        out = out[: int(limit)]
    return out


@pytest.fixture(name="fake_vizier")
def fixture_fake_vizier() -> Iterator[FakeVizier]:
    """A VizieR look-alike on 127.0.0.1 answering cone searches from recorded tables."""
    state = FakeVizier(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", "0"))
            payload = _parse_payload(self.rfile.read(n).decode())
            state.requests.append(payload)
            source = payload.get("-source", "")
            how = state.behaviour.get(source)
            if how == "timeout":
                time.sleep(state.delay_s)
                return
            if how == "error":
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"internal error")
                return
            if isinstance(how, bytes | str) and how not in ("timeout", "error"):
                self._send(how.encode() if isinstance(how, str) else how)
                return
            table = state.tables.get(source)
            if table is None:
                self._send(_empty_votable())
                return
            buf = io.BytesIO()
            _cone(table, payload).write(buf, format="votable")
            self._send(buf.getvalue())

        def _send(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _empty_votable() -> bytes:
    return (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        b'<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        b' <RESOURCE type="results">\n'
        b'  <INFO name="QUERY_STATUS" value="OK"/>\n'
        b" </RESOURCE>\n</VOTABLE>\n"
    )


class FakeFetcher:
    """A ConeFetcher that answers from in-memory tables and counts calls."""

    def __init__(self, tables: dict[str, Table], *, fail: set[str] | None = None) -> None:
        self.tables = tables
        self.fail = fail or set()
        self.calls = 0

    def cone(self, spec: CatalogSpec, *, ra_deg: float, dec_deg: float, radius_deg: float) -> Table:
        self.calls += 1
        if spec.name in self.fail:
            raise CatalogError(f"{spec.name}: simulated outage")
        table = self.tables.get(spec.name)
        if table is None:
            return Table()
        sep = angular_sep_deg(
            ra_deg,
            dec_deg,
            np.asarray(table[spec.ra_col], dtype=float),
            np.asarray(table[spec.dec_col], dtype=float),
        )
        return table[sep <= radius_deg]


@pytest.fixture(name="cal_config")
def fixture_cal_config() -> Callable[..., CalibrationConfig]:
    """Factory: CalibrationConfig(**overrides) with the network off unless asked."""

    def _make(**kw: Any) -> CalibrationConfig:
        kw.setdefault("online", False)
        return CalibrationConfig(**kw)

    return _make


@pytest.fixture(name="recorded")
def fixture_recorded() -> Callable[[str], Table]:
    """Function: recorded(name) -> a recorded astroquery ECSV reply (tests/data/feder_ey_uma)."""
    return read_recorded


@pytest.fixture(name="fake_fetcher")
def fixture_fake_fetcher() -> type[FakeFetcher]:
    """The FakeFetcher class (in-memory ConeFetcher that counts calls)."""
    return FakeFetcher
