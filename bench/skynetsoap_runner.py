"""Run skynetsoap 1.0.1 on local frames, timed, offline; for the side-by-side benchmark.

This script runs inside ``bench/.skynetsoap-venv`` (made by ``bench/setup_skynetsoap.sh``),
never inside soapd's venv, and imports nothing from soapd. bench/bench_process.py
starts it as a subprocess with a JSON job file and reads a JSON report back.

skynetsoap queries VizieR through ``astroquery.vizier.Vizier`` inside
``skynetsoap.calibration.catalog``. There is no network here, so that name is
replaced by :class:`LocalVizier`, which answers the cone search from local tables
(one ECSV per VizieR catalog id) the way VizieR does: rows within the radius, nearest
first, cut at ``row_limit``. Everything else in skynetsoap runs unchanged, with its
own config defaults (``aperture.mode = "optimal"``) or ``aperture.mode = "multi"``.

Job file (JSON)::

    {"frames": ["a.fits", ...], "modes": ["default", "multi"], "repeat": 3,
     "catalogs": {"II/336/apass9": "apass.ecsv"}, "workdir": "/tmp/x",
     "table_dir": "/tmp/x/tables"}

Report (JSON, to ``--out``): one record per (frame, mode) with every repetition's
wall time (``perf_counter``, seconds, after a warm-up import), the seconds spent in
skynetsoap's row-appending step, the number of rows, the zero point, the FWHM
column and the number of stand-in catalog queries; with ``table_dir`` the last
repetition's table is written as ECSV for the accuracy comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import ClassVar

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

KEEP_COLUMNS = (
    "x_pix",
    "y_pix",
    "ra",
    "dec",
    "flux",
    "flux_err",
    "snr",
    "ins_mag",
    "calibrated_mag",
    "calibrated_mag_err",
    "zeropoint",
    "aperture_radius",
    "fwhm",
    "limiting_mag",
    "flag",
)


class LocalVizier:
    """Stand-in for ``astroquery.vizier.Vizier``: cone searches on local tables.

    ``tables`` maps a VizieR catalog id to an astropy Table with ``RAJ2000`` and
    ``DEJ2000`` in degrees (set on the class before skynetsoap runs). ``calls``
    counts the queries answered.
    """

    tables: ClassVar[dict[str, Table]] = {}
    calls: ClassVar[int] = 0

    def __init__(self, columns=None, row_limit=50, **_kwargs):
        self.columns = columns
        self.row_limit = row_limit

    def query_region(self, coordinates, radius=None, catalog=None, **_kwargs):
        LocalVizier.calls += 1
        table = self.tables.get(catalog)
        if table is None or len(table) == 0:
            return []
        radius_deg = _radius_deg(radius)
        stars = SkyCoord(table["RAJ2000"], table["DEJ2000"], unit="deg")
        dist = coordinates.separation(stars).deg
        inside = np.flatnonzero(dist <= radius_deg)
        inside = inside[np.argsort(dist[inside], kind="stable")]
        if self.row_limit is not None and self.row_limit > 0:
            inside = inside[: self.row_limit]
        return [table[inside]]


def _radius_deg(radius) -> float:
    """Return an astroquery-style radius (Quantity, or text such as '10.0m') in degrees."""
    if isinstance(radius, u.Quantity):
        return float(radius.to_value(u.deg))
    text = str(radius).strip()
    units = {"d": u.deg, "m": u.arcmin, "s": u.arcsec}
    if text and text[-1] in units:
        return float((float(text[:-1]) * units[text[-1]]).to_value(u.deg))
    return float(u.Quantity(text).to_value(u.deg))


def _install_stand_in(catalog_files: dict[str, str]) -> None:
    import skynetsoap.calibration.catalog as catalog_module

    LocalVizier.tables = {cat: Table.read(path) for cat, path in catalog_files.items()}
    catalog_module.Vizier = LocalVizier


def _timed_append(soap_cls):
    """Wrap ``Soap._append_measurement_rows`` so that its time is accumulated."""
    original = soap_cls._append_measurement_rows
    totals = {"append_s": 0.0}

    def wrapper(self, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, **kwargs)
        finally:
            totals["append_s"] += time.perf_counter() - t0

    soap_cls._append_measurement_rows = wrapper
    return totals


def run_job(job: dict) -> list[dict]:
    """Run every (frame, mode, repetition) of ``job``; return one record per (frame, mode)."""
    from skynetsoap import Soap
    from skynetsoap.config.loader import load_config

    _install_stand_in(job.get("catalogs", {}))
    totals = _timed_append(Soap)
    workdir = Path(job["workdir"])
    table_dir = Path(job["table_dir"]) if job.get("table_dir") else None
    configs = {
        "default": load_config(),
        "multi": load_config(overrides={"aperture": {"mode": "multi"}}),
    }
    records = []
    for frame in job["frames"]:
        for mode in job["modes"]:
            times, appends = [], []
            result = None
            calls_before = LocalVizier.calls
            for _ in range(int(job.get("repeat", 1))):
                soap = Soap(
                    observation_id=0,
                    config=configs[mode],
                    image_dir=workdir / "soap_images",
                    result_dir=workdir / "soap_results",
                )
                totals["append_s"] = 0.0
                t0 = time.perf_counter()
                result = soap.run(images=[frame])
                times.append(time.perf_counter() - t0)
                appends.append(totals["append_s"])
            table = result.table if result is not None else Table()
            record = {
                "frame": str(frame),
                "mode": mode,
                "times_s": times,
                "append_rows_s": appends,
                "n_rows": len(table),
                "catalog_queries": LocalVizier.calls - calls_before,
            }
            if len(table):
                record["zeropoint"] = float(np.nanmedian(np.asarray(table["zeropoint"].value)))
                record["fwhm_px"] = float(np.nanmedian(np.asarray(table["fwhm"])))
                record["radii_px"] = sorted(
                    {float(r) for r in np.asarray(table["aperture_radius"])}
                )
            if table_dir is not None and len(table):
                table_dir.mkdir(parents=True, exist_ok=True)
                out = Table()
                for name in KEEP_COLUMNS:
                    col = table[name]
                    out[name] = np.asarray(getattr(col, "value", col))
                path = table_dir / f"{Path(frame).stem}_{mode}.ecsv"
                out.write(path, overwrite=True)
                record["table"] = str(path)
            records.append(record)
            print(
                f"skynetsoap {Path(frame).name} {mode}: "
                + " ".join(f"{t:.2f}s" for t in times)
                + f" ({len(table)} rows)",
                file=sys.stderr,
                flush=True,
            )
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("job", help="JSON job file (see the module docstring)")
    parser.add_argument("--out", required=True, help="JSON report to write")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("soap").setLevel(logging.ERROR)
    job = json.loads(Path(args.job).read_text())
    records = run_job(job)
    Path(args.out).write_text(json.dumps({"records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
