"""Local catalog files for fully offline calibration.

``calibration.catalog_files`` lists ECSV, VOTable or FITS tables in VizieR
column naming (what ``astroquery`` returns and ``Table.write`` saves), or the
IRAF/NOAO Landolt (1992) ``nlandolt.dat`` text file. Which catalog a file holds
is decided, in order, by:

1. the table meta ``ID`` or ``name`` (astroquery writes ``ID: II_336_apass9``,
   ``name: II/336/apass9``; FITS files may use ``EXTNAME`` or ``CATALOG``);
2. its columns: the first registry catalog whose position and band columns
   are all present (e.g. ``RAJ2000, DEJ2000, Vmag, Bmag, g'mag, r'mag, i'mag``
   is APASS);
3. for text files, the Landolt line format.

A file that cannot be identified raises CatalogError naming the file and what
it should contain. Positions may be degrees or sexagesimal strings.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table

from soapd.catalogs.registry import CatalogSpec, identify_columns, identify_id
from soapd.columns import filled
from soapd.errors import CatalogError

__all__ = ["complete_landolt", "identify", "read_landolt_dat", "read_local"]

logger = logging.getLogger(__name__)

_LANDOLT_LINE = re.compile(
    r"^\s*(?P<name>\S+)\s+(?P<ra>\d{1,2}:\d{2}:\d{2}(?:\.\d*)?)\s+"
    r"(?P<dec>[+-]?\d{1,2}:\d{2}:\d{2}(?:\.\d*)?)\s+(?P<rest>.*)$"
)
_LANDOLT_COLS = ("Vmag", "B-V", "U-B", "V-R", "R-I", "V-I")
_LANDOLT_ERRS = tuple(f"e_{c}" for c in _LANDOLT_COLS)


def read_landolt_dat(path: Path) -> Table:
    """Return the IRAF ``nlandolt.dat`` file as a VizieR-style Landolt table.

    Columns: Star, RAJ2000, DEJ2000 (deg), Vmag, B-V, U-B, V-R, R-I, V-I,
    Nobs, Nnights, their ``e_`` errors, and the derived Umag, Bmag, Rmag, Imag
    with errors (see :func:`complete_landolt`). Raise CatalogError if no line parses.
    """
    names: list[str] = []
    ra_s: list[str] = []
    dec_s: list[str] = []
    vals: list[list[float]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CatalogError(f"cannot read Landolt file {path}: {exc.strerror}") from None
    for line in text.splitlines():
        m = _LANDOLT_LINE.match(line)
        if not m:
            continue
        rest = m.group("rest").split()
        if len(rest) < 14:
            continue
        try:
            nums = [float(x) for x in rest[:14]]
        except ValueError:
            continue
        names.append(m.group("name"))
        ra_s.append(m.group("ra"))
        dec_s.append(m.group("dec"))
        vals.append(nums)
    if not vals:
        raise CatalogError(
            f"{path}: no Landolt lines found (expected 'name hh:mm:ss +dd:mm:ss V B-V U-B "
            "V-R R-I V-I nobs nnights eV eB-V eU-B eV-R eR-I eV-I')"
        )
    coords = SkyCoord(ra_s, dec_s, unit=("hourangle", "deg"), frame="icrs")
    arr = np.array(vals)
    t = Table()
    t["Star"] = names
    t["RAJ2000"] = coords.ra.deg
    t["DEJ2000"] = coords.dec.deg
    for i, c in enumerate(_LANDOLT_COLS):
        t[c] = arr[:, i]
    t["Nobs"] = arr[:, 6].astype(int)
    t["Nnights"] = arr[:, 7].astype(int)
    for i, c in enumerate(_LANDOLT_ERRS):
        t[c] = arr[:, 8 + i]
    t.meta["ID"] = "landolt1992"
    t.meta["name"] = "Landolt (1992) AJ 104, 340"
    return complete_landolt(t)


def complete_landolt(t: Table) -> Table:
    """Add Umag, Bmag, Rmag, Imag (and errors) from V and the Landolt colours.

    B = V + (B-V), U = B + (U-B), R = V - (V-R), I = V - (V-I). Errors add the
    published errors of V and of each colour in quadrature (Landolt gives
    them separately; their covariance is not published).
    """
    t = t.copy(copy_data=False)

    def col(name: str) -> np.ndarray:
        return filled(t, name)

    def err(name: str) -> np.ndarray:
        return col(f"e_{name}") if f"e_{name}" in t.colnames else np.full(len(t), np.nan)

    V, eV = col("Vmag"), err("Vmag")
    derived = {
        "Bmag": (V + col("B-V"), np.hypot(eV, err("B-V"))),
        "Rmag": (V - col("V-R"), np.hypot(eV, err("V-R"))),
        "Imag": (V - col("V-I"), np.hypot(eV, err("V-I"))),
    }
    derived["Umag"] = (
        derived["Bmag"][0] + col("U-B"),
        np.hypot(derived["Bmag"][1], err("U-B")),
    )
    for name, (m, e) in derived.items():
        if name not in t.colnames:
            t[name] = MaskedColumn(m, mask=~np.isfinite(m), unit="mag")
            t[f"e_{name}"] = MaskedColumn(e, mask=~np.isfinite(e), unit="mag")
    return t


def identify(table: Table, path: Path) -> CatalogSpec:
    """Return the registry catalog a local table holds (see the module docstring)."""
    for key in ("ID", "id", "name", "NAME", "EXTNAME", "CATALOG"):
        value = table.meta.get(key)
        if isinstance(value, str) and (s := identify_id(value)) is not None:
            return s
    s = identify_columns(list(table.colnames))
    if s is not None:
        return s
    if {"Vmag", "B-V", "V-R"} <= set(table.colnames):
        found = identify_id("landolt1992")
        assert found is not None
        return found
    raise CatalogError(
        f"{path}: cannot tell which catalog this is; set the table meta ID to a VizieR "
        "table id (e.g. II_336_apass9) or use VizieR column names"
    )


def read_local(path: Path) -> tuple[CatalogSpec, Table]:
    """Read one local catalog file; return its catalog and the table (positions in deg).

    Raise CatalogError for missing, unreadable or unidentifiable files.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"local catalog file {path} not found (calibration.catalog_files)")
    suffix = "".join(path.suffixes).lower()
    try:
        if suffix.endswith((".dat", ".txt")):
            table = read_landolt_dat(path)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = Table.read(path, format=_format(suffix))
    except CatalogError:
        raise
    except Exception as exc:
        raise CatalogError(
            f"cannot read local catalog {path} ({type(exc).__name__}: {exc}); "
            "use ECSV, VOTable or FITS in VizieR column naming"
        ) from None
    spec = identify(table, path)
    if spec.name == "landolt":
        table = complete_landolt(table)
    missing = [c for c in (spec.ra_col, spec.dec_col) if c not in table.colnames]
    if missing:
        raise CatalogError(f"{path}: {spec.name} file lacks position columns {missing}")
    table = _positions_to_deg(table, spec, path)
    logger.info("local catalog %s: %d rows of %s", path, len(table), spec.name)
    return spec, table


def _format(suffix: str) -> str | None:
    if suffix.endswith((".ecsv", ".ecsv.gz")):
        return "ascii.ecsv"
    if suffix.endswith((".xml", ".vot", ".votable", ".xml.gz")):
        return "votable"
    if suffix.endswith((".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")):
        return "fits"
    return None


def _positions_to_deg(table: Table, spec: CatalogSpec, path: Path) -> Table:
    ra, dec = table[spec.ra_col], table[spec.dec_col]
    if ra.dtype.kind in "fiu" and dec.dtype.kind in "fiu":
        return table
    try:
        c = SkyCoord(
            [str(x) for x in ra], [str(x) for x in dec], unit=("hourangle", "deg"), frame="icrs"
        )
    except Exception as exc:
        raise CatalogError(f"{path}: cannot parse positions ({exc})") from None
    table = table.copy(copy_data=False)
    table[spec.ra_col] = c.ra.deg
    table[spec.dec_col] = c.dec.deg
    return table
