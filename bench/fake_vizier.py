"""A local stand-in for the VizieR cone-search service, for the calibration benchmark.

It listens on 127.0.0.1 (a free port), answers astroquery's ``/viz-bin/votable``
POST requests (``-source``, ``-c``, ``-c.rd``/``-c.rm``/``-c.rs``, ``-out``, ``-out.max``)
from an in-memory star list, and counts every request, so the benchmark can say how
many network calls soapd made. For each catalog of soapd's registry it serves the
catalog's own column names (position, every band's magnitude and error, the sort
column), with magnitudes derived from one "true" V magnitude per star and fixed
colours, nearest rows sorted as VizieR does (by the ``+column`` in ``-out``, else by
distance) and cut at ``-out.max``.
"""

from __future__ import annotations

import io
import math
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import unquote_plus

import numpy as np

# Offsets from V for a G-type star (B-V 0.65); good enough for counting calls and timing.
BAND_OFFSETS = {
    "U": 0.2,
    "B": 0.65,
    "V": 0.0,
    "R": -0.37,
    "I": -0.72,
    "u": 1.5,
    "g": 0.3,
    "r": -0.15,
    "i": -0.25,
    "z": -0.3,
    "y": -0.3,
    "G": -0.2,
    "BP": 0.1,
    "RP": -0.6,
}


class FakeVizier:
    """Serve cone searches over ``ra_deg``, ``dec_deg``, ``vmag`` (numpy arrays)."""

    def __init__(self, ra_deg: np.ndarray, dec_deg: np.ndarray, vmag: np.ndarray) -> None:
        self.ra = np.asarray(ra_deg, dtype=float)
        self.dec = np.asarray(dec_deg, dtype=float)
        self.vmag = np.asarray(vmag, dtype=float)
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def calls(self) -> int:
        return sum(self.requests.values())

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                try:
                    payload = outer.answer(body)
                    self.send_response(200)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except Exception as exc:
                    msg = str(exc).encode()
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the query --------------------------------------------------------------------------
    def answer(self, body: str) -> bytes:
        """Return the VOTable bytes answering one astroquery request body."""
        from astropy.io.votable import from_table

        from soapd.catalogs.registry import CATALOGS

        params = _parse_body(body)
        source = params["-source"]
        with self.lock:
            self.requests[source] += 1
        spec = next(s for s in CATALOGS.values() if s.vizier_id == source)
        ra_c, dec_c = (float(v) for v in params["-c"].replace("+", " +").replace("-", " -").split())
        radius = _radius_deg(params)
        cos = math.cos(math.radians(dec_c))
        near = np.abs(self.dec - dec_c) <= radius
        d = np.full(self.ra.size, np.inf)
        dra = ((self.ra[near] - ra_c + 180.0) % 360.0 - 180.0) * cos
        d[near] = np.hypot(dra, self.dec[near] - dec_c)
        idx = np.flatnonzero(d <= radius)
        table = self._table(spec, idx)
        out_cols = [c for c in params.get("-out", "").split(",") if c]
        sort_col = next((c[1:] for c in out_cols if c.startswith("+")), "")
        order = np.argsort(table[sort_col]) if sort_col in table.colnames else np.argsort(d[idx])
        table = table[order]
        limit = params.get("-out.max", "")
        if limit.isdigit():
            table = table[: int(limit)]
        wanted = [c.lstrip("+") for c in out_cols]
        keep = [c for c in table.colnames if not wanted or c in wanted]
        votable = from_table(table[keep])
        votable.get_first_table().name = source
        buf = io.BytesIO()
        votable.to_xml(buf)
        return buf.getvalue()

    def _table(self, spec, idx: np.ndarray):
        from astropy.table import Table

        rng = np.random.default_rng(idx.size)
        t = Table()
        t[spec.ra_col] = self.ra[idx]
        t[spec.dec_col] = self.dec[idx]
        v = self.vmag[idx]
        for band, cols in spec.bands.items():
            t[cols.mag] = v + BAND_OFFSETS.get(band, 0.0) + rng.normal(0.0, 0.01, idx.size)
            if cols.err:
                t[cols.err] = np.full(idx.size, 0.02)
            if cols.err_flag:
                t[cols.err_flag] = np.zeros(idx.size, dtype=np.int16)
        if spec.sort_col and spec.sort_col not in t.colnames:
            t[spec.sort_col] = v
        return t


def _parse_body(body: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in body.splitlines():
        line = unquote_plus(raw) if "%" in raw else raw
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def _radius_deg(params: dict[str, str]) -> float:
    for key, scale in (("-c.rd", 1.0), ("-c.rm", 1 / 60.0), ("-c.rs", 1 / 3600.0)):
        if key in params:
            return float(params[key]) * scale
    raise ValueError("no cone radius in the request")
